#!/usr/bin/env bash
# Runs every fuzz target (every [[bin]] in fuzz/Cargo.toml) with libFuzzer for
# a bounded time, on the stable toolchain: CI's fuzz step (see README.md).
#
#   fuzz/run-all.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to $SEVM_FUZZ_SECONDS, else 10. With no TARGET,
# runs them all.
#
# cargo-fuzz needs nightly only for its sanitizer flags (-Zsanitizer); with
# `--sanitizer none` it passes nothing but stable rustc options. This builds
# with those same options itself: libFuzzer (built by libfuzzer-sys) with
# SanitizerCoverage instrumentation (8-bit counters, PC table, comparison
# tracing), i.e. coverage-guided fuzzing, plus debug assertions and overflow
# checks, in release mode. All targets are built once, then each one runs
# from the checked-in seeds (fuzz/seeds/<target>/, regression inputs: each
# is run before any mutation) and its local corpus (fuzz/corpus/<target>/,
# git-ignored, where new finds are written), for SECONDS_PER_TARGET.
#
# A crash, a panic, a failed assertion, a timeout (-timeout, seconds per
# input) or memory above -rss_limit_mb fails the target: its log (without
# progress lines and backtrace frames) and the input
# (fuzz/artifacts/<target>/crash-*, oom-*, timeout-*) are printed, the
# remaining targets still run, and the script exits 1.
#
# Environment: SEVM_FUZZ_SECONDS (time per target), SEVM_FUZZ_TIMEOUT
# (seconds per input, default 10), SEVM_FUZZ_RSS_MB (default 2048),
# CARGO_BUILD_JOBS (build parallelism), SEVM_FUZZ_ARGS (extra libFuzzer
# options, e.g. "-seed=1").
set -euo pipefail

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
cd "$fuzz_dir"

seconds=${1:-${SEVM_FUZZ_SECONDS:-10}}
[ $# -gt 0 ] && shift
case $seconds in
    '' | *[!0-9]*)
        echo "run-all.sh: SECONDS_PER_TARGET must be a whole number, not '$seconds'" >&2
        exit 2
        ;;
esac
timeout_s=${SEVM_FUZZ_TIMEOUT:-10}
rss_mb=${SEVM_FUZZ_RSS_MB:-2048}

all=$(sed -n '/^\[\[bin\]\]/,/^name/s/^name = "\(.*\)"/\1/p' Cargo.toml)
targets=${*:-$all}

host=$(rustc -vV | sed -n 's/^host: //p')
# cargo-fuzz's flags for `--sanitizer none` (cargo-fuzz src/project.rs).
# Building for an explicit --target keeps them off build scripts and proc
# macros, as cargo-fuzz does.
flags=(
    --cfg fuzzing
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    -Cllvm-args=-sanitizer-coverage-stack-depth
    -Cdebug-assertions
    -Coverflow-checks
)
target_dir=$fuzz_dir/target/stable
echo "== building the fuzz targets (release, $host, libFuzzer + SanitizerCoverage)"
RUSTFLAGS="${flags[*]}" cargo build --locked --release --target "$host" \
    --target-dir "$target_dir" --bins
bin_dir=$target_dir/$host/release

failed=()
start=$(date +%s)
for t in $targets; do
    if [ ! -x "$bin_dir/$t" ]; then
        echo "run-all.sh: no target '$t' (targets: $(echo $all))" >&2
        exit 2
    fi
    mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
    log=$(mktemp)
    t0=$(date +%s)
    # New inputs go to the first directory (corpus/), never into seeds/.
    # shellcheck disable=SC2086
    if "$bin_dir/$t" "corpus/$t" "seeds/$t" \
        -max_total_time="$seconds" -timeout="$timeout_s" -rss_limit_mb="$rss_mb" \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 ${SEVM_FUZZ_ARGS:-} \
        >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
        echo "== $t: ok, ${runs:-?} runs, $cov, $(($(date +%s) - t0)) s"
    else
        echo "== $t: FAILED after $(($(date +%s) - t0)) s; log tail (progress lines and backtrace frames left out):"
        grep -v -E '^#[0-9]+\s|^ +[0-9]+: |^ +at ' "$log" | tail -n 40
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        if [ -n "$artifact" ]; then
            echo "== $t: input: fuzz/$artifact ($(wc -c <"$artifact") bytes), base64:"
            base64 -w 76 "$artifact" | head -n 40
            echo "== reproduce: $bin_dir/$t $fuzz_dir/$artifact"
        fi
        failed+=("$t")
    fi
    rm -f "$log"
done

echo "== fuzzing took $(($(date +%s) - start)) s for $(echo $targets | wc -w) targets, $seconds s each"
if [ ${#failed[@]} -gt 0 ]; then
    echo "== FAILED: ${failed[*]}" >&2
    exit 1
fi
