#!/usr/bin/env bash
# Builds seed corpora in fuzz/corpus/<target>/ (git-ignored): the real
# certificates and OVMF images of ../../shared/sev-testdata (read in place,
# never copied into the repository), and a few hand-written QMP requests,
# command lines and policies. Safe to re-run; libFuzzer adds its own finds to
# the same directories.
set -euo pipefail

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
testdata=${SEVM_TESTDATA:-$fuzz_dir/../../shared/sev-testdata}
corpus=$fuzz_dir/corpus

seed() { # seed TARGET NAME < bytes
    mkdir -p "$corpus/$1"
    cat > "$corpus/$1/$2"
}

if [ -d "$testdata" ]; then
    for gen in naples rome; do
        d=$testdata/certs/$gen
        for c in pdh pek oca cek; do
            seed sev_cert "$gen-$c" < "$d/$c.cert"
        done
        cat "$d/pek.cert" "$d/oca.cert" "$d/cek.cert" | seed cert_chain "$gen-platform"
        cat "$testdata/amd-roots/$gen-ask.cert" "$testdata/amd-roots/$gen-ark.cert" |
            seed cert_chain "$gen-ca"
        cat "$d/pdh.cert" "$d/pek.cert" "$d/oca.cert" "$d/cek.cert" \
            "$testdata/amd-roots/$gen-ask.cert" "$testdata/amd-roots/$gen-ark.cert" |
            seed cert_chain "$gen-full"
    done
    for c in "$testdata"/amd-roots/*.cert; do
        seed ca_cert "$(basename "$c" .cert)" < "$c"
    done
    for img in "$testdata"/ovmf/*.bin; do
        seed ovmf_footer "$(basename "$img" .bin)" < "$img"
        seed ovmf_hashes "$(basename "$img" .bin)" < "$img"
    done
else
    echo "seed.sh: $testdata not found; only hand-written seeds" >&2
fi

n=0
while IFS= read -r line; do
    n=$((n + 1))
    printf '%s' "$line" | seed qmp_request "req$n"
    printf '%s\n' "$line" | seed qmp_framing "req$n"
done <<'JSON'
{"execute": "qmp_capabilities"}
{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}, "id": 1}
{"execute": "query-status", "id": "a"}
{"execute": "query-sev"}
{"execute": "query-sev-launch-measure"}
{"execute": "sev-inject-launch-secret", "arguments": {"packet-header": "AAAA", "secret": "AAAAAAAAAAAAAAAAAAAAAA==", "gpa": 8388608}}
{"execute": "query-sev-attestation-report", "arguments": {"mnonce": "AAAAAAAAAAAAAAAAAAAAAA=="}}
{"execute": "migrate", "arguments": {"uri": "unix:/tmp/m.sock"}}
{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 1000}}
{"execute": "human-monitor-command", "arguments": {"command-line": "info status"}}
{"execute": "pmemsave", "arguments": {"val": 0, "size": 4096, "filename": "/tmp/x"}}
{"exec-oob": "cont", "id": [1, {"x": null}]}
JSON
printf '{"execute":"stop"}{"execute":"cont"} [1,[2]] "s\\"}" 42 @ }' | seed qmp_framing stream

args() { # args NAME ARG... : arguments joined with NUL bytes
    local name=$1
    shift
    local IFS=$'\001'
    printf '%s' "$*" | tr '\001' '\000' | seed options "$name"
}
args sev -machine q35,confidential-guest-support=sev0 \
    -object sev-guest,id=sev0,policy=0x1,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on \
    -bios /x/OVMF.fd -kernel /x/bzImage -initrd /x/initrd -append "console=ttyS0" \
    -m 2G -smp 2 -qmp unix:/tmp/q.sock,server,wait=off -serial stdio -nodefaults
args pflash -M q35,memory-encryption=sev0 -object sev-guest,id=sev0,sev-device=/dev/sev \
    -drive if=pflash,format=raw,unit=0,file=/x/code.fd,readonly=on \
    -drive if=pflash,format=raw,unit=1,file=/x/vars.fd -S -incoming defer -gdb tcp::1234
args help -help
args version -version

for p in 0x1 0x5 1 0x00050001 0xFFFF003F " 0X3f "; do
    printf '%s' "$p" | seed policy "p-$(printf '%s' "$p" | tr -c '[:alnum:]' _)"
done
printf '736869e5-84f0-4973-92ec-06879ce3da0b' | seed guid g1
printf ' 1E74F542-71DD-4D66-963E-EF4287FF173B\n' | seed guid g2

echo "seeds written to $corpus"
