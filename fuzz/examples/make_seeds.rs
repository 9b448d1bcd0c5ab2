//! Writes the checked-in seed corpora, `fuzz/seeds/<target>/`: a few small,
//! valid inputs per target, made with sevm's own encoders (an emulated
//! platform from a fixed RNG seed for the certificates; fixed keys from
//! `sevm_fuzz` for everything sealed or signed), so that a short fuzzing run
//! starts past the parsers' first checks. Nothing is copied from outside the
//! repository.
//!
//! `fuzz/run-all.sh` runs every seed before fuzzing (regression inputs).
//! Regenerate after a format change (from `fuzz/`):
//!
//! ```sh
//! cargo run --locked --release --example make_seeds -- seeds
//! ```
//!
//! The output directory's target subdirectories are replaced.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sev_proto::attestation::Report;
use sev_proto::cert::chain::{CaChain, FullChain, PlatformChain};
use sev_proto::cert::{ca, sev};
use sev_proto::measurement::{launch_measurement_for_api, MeasureBlob};
use sev_proto::ovmf::{
    FooterTable, KernelHashes, FOOTER_GUID, SEV_ES_RESET_BLOCK_GUID, SEV_HASH_TABLE_RV_GUID,
    SEV_SECRET_BLOCK_GUID,
};
use sev_proto::secret::{build_launch_secret, PacketHeader};
use sev_proto::secret_table::SecretTable;
use sev_proto::session::{wrap, SessionBuffer};
use sev_proto::snp::cert_table::{self, CertEntry};
use sev_proto::snp::guest_msg::{
    self, field_select, KeyRequest, KeyResponse, MessageHeader, MessageType, ReportRequest,
    ReportResponse,
};
use sev_proto::snp::id_block::{
    verify as verify_id_block, Expected as IdExpected, ID_AUTH_LEN, ID_BLOCK_LEN,
};
use sev_proto::snp::report::AttestationReport;
use sev_proto::Guid;
use sev_psp::rng::seeded_rng;
use sev_psp::store::sealed::{open_sealed, seal};
use sev_psp::store::{PersistentIdentity, RsaKeyBytes};
use sev_psp::{CreateOptions, Platform};
use sevm::migration::stream::{Header, Reader, Record, Writer};
use sevm::vcpu::VcpuState;
use sevm_fuzz::{signing_key, transport_keys};
use zeroize::Zeroizing;

struct Seeds {
    root: PathBuf,
    count: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, name: &str, bytes: impl AsRef<[u8]>) -> Result<()> {
        check(target, name, bytes.as_ref())?;
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(name);
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        self.count += 1;
        Ok(())
    }
}

/// Refuses a seed that its target's parser would turn away at once (the
/// seeds that are valid structures must stay valid).
fn check(target: &str, name: &str, bytes: &[u8]) -> Result<()> {
    let ok = match target {
        "sev_cert" => sev::Certificate::decode(bytes).is_ok(),
        "ca_cert" => ca::Certificate::decode(bytes).is_ok(),
        "cert_chain" => match name {
            "platform" => PlatformChain::decode(bytes).is_ok(),
            "ca" => CaChain::decode(bytes).is_ok(),
            _ => FullChain::decode(bytes).is_ok_and(|c| c.verify(&c.ark).is_ok()),
        },
        "session_buffer" if name == "wrapped" => SessionBuffer::decode(bytes).is_ok(),
        "attestation_report" => Report::decode(bytes).is_ok(),
        "snp_report" => bytes
            .get(1..1 + sev_proto::snp::report::REPORT_LEN)
            .is_some_and(|b| AttestationReport::decode(b).is_ok()),
        "id_block" => {
            let block = bytes.get(1..1 + ID_BLOCK_LEN).unwrap_or_default();
            let auth = bytes
                .get(1 + ID_BLOCK_LEN..1 + ID_BLOCK_LEN + ID_AUTH_LEN)
                .unwrap_or_default();
            let id = sevm_fuzz::id_block();
            let expected = IdExpected {
                launch_digest: id.launch_digest,
                policy: id.policy,
            };
            let author = bytes.first().is_some_and(|f| f & 1 != 0);
            verify_id_block(block, auth, author, &expected).is_ok()
        }
        "measure_blob" if name == "blob" => MeasureBlob::decode(bytes).is_ok(),
        "secret_table" => SecretTable::parse(bytes).is_ok_and(|e| e.len() == 2),
        "snp_guest_msg" => {
            let msg = bytes.get(1..).unwrap_or_default();
            match bytes.first().map(|s| s % 5) {
                Some(0) => MessageHeader::decode(msg)
                    .is_ok_and(|h| guest_msg::open(&SNP_GUEST_MSG_VMPCK, &h, msg).is_ok()),
                Some(1) => ReportRequest::decode(msg).is_ok(),
                Some(2) => ReportResponse::decode(msg).is_ok(),
                Some(3) => KeyRequest::decode(msg).is_ok(),
                _ => KeyResponse::decode(msg).is_ok(),
            }
        }
        "snp_cert_table" => cert_table::decode(bytes).is_ok_and(|e| e.len() == 3),
        "ovmf_footer" => FooterTable::parse(bytes).is_ok_and(|t| t.entries().len() == 3),
        "ovmf_hashes" => KernelHashes::locate(bytes).is_ok_and(|h| h.is_some()),
        "vcpu_state" => VcpuState::from_bytes(bytes).is_ok(),
        "migration_stream" => Reader::new(bytes).is_ok_and(|(mut r, _)| loop {
            match r.next_record() {
                Ok(Record::End { .. }) => break true,
                Ok(_) => {}
                Err(e) => {
                    eprintln!("{target}/{name}: {e}");
                    break false;
                }
            }
        }),
        "psp_record" => PersistentIdentity::decode(bytes).is_ok(),
        "psp_sealed" => open_sealed(bytes).is_ok(),
        _ => true,
    };
    if !ok {
        bail!("the {target} seed {name} does not parse");
    }
    Ok(())
}

/// `n` bytes counting up from `start`.
fn pattern(start: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| start.wrapping_add(i as u8)).collect()
}

/// An emulated platform's certificates (public parts only), made in a
/// temporary directory from a fixed RNG seed.
fn certificates(s: &mut Seeds) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("sevm-make-seeds-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let options = CreateOptions {
            ark_bits: 2048,
            ..CreateOptions::default()
        };
        let platform = Platform::create(&dir, options, seeded_rng(0x5eed))
            .context("creating an emulated platform")?;
        platform.init(false).context("INIT")?;
        let mut pdh = vec![0u8; 0x824];
        let mut chain = vec![0u8; 0x186c];
        let (pdh_len, chain_len) = platform
            .pdh_cert_export(&mut pdh, &mut chain)
            .context("PDH_CERT_EXPORT")?;
        pdh.truncate(pdh_len);
        chain.truncate(chain_len);
        let (ask, ark) = platform.amd_chain();
        if chain.len() != 3 * pdh.len() {
            bail!("unexpected platform chain length {}", chain.len());
        }
        let (pek, rest) = chain.split_at(pdh.len());
        let (oca, cek) = rest.split_at(pdh.len());
        for (name, cert) in [("pdh", &pdh[..]), ("pek", pek), ("oca", oca), ("cek", cek)] {
            s.put("sev_cert", name, cert)?;
        }
        s.put("ca_cert", "ask", &ask)?;
        s.put("ca_cert", "ark", &ark)?;
        s.put("cert_chain", "platform", &chain)?;
        s.put("cert_chain", "ca", [&ask[..], &ark[..]].concat())?;
        s.put(
            "cert_chain",
            "full",
            [&pdh[..], &chain, &ask, &ark].concat(),
        )?;
        Ok(())
    })();
    let _ = fs::remove_dir_all(&dir);
    result
}

/// The VMPCK of the `snp_guest_msg` target.
const SNP_GUEST_MSG_VMPCK: [u8; 32] = [0x5C; 32];

fn crypto(s: &mut Seeds) -> Result<()> {
    let keys = transport_keys();

    // snp_guest_msg: a selector byte, then a REPORT_REQ sealed under the
    // target's VMPCK (selector 0), or one of the four payloads (1-4).
    let report_req = ReportRequest::new([0x11; 64], 1).encode();
    let header = MessageHeader::new(MessageType::REPORT_REQ, 1, 0x60, 1, 1);
    let sealed = guest_msg::seal(&SNP_GUEST_MSG_VMPCK, &header, &report_req)
        .context("sealing a guest message")?;
    s.put(
        "snp_guest_msg",
        "report-req",
        [&[0u8][..], &sealed].concat(),
    )?;
    s.put(
        "snp_guest_msg",
        "report-payload",
        [&[1u8][..], &report_req].concat(),
    )?;
    let response = ReportResponse {
        status: 0,
        report: Box::new([0; sev_proto::snp::report::REPORT_LEN]),
    };
    s.put(
        "snp_guest_msg",
        "report-rsp",
        [&[2u8][..], &response.encode()[..]].concat(),
    )?;
    let key_req = KeyRequest {
        guest_field_select: field_select::MEASUREMENT | field_select::POLICY,
        vmpl: 1,
        ..KeyRequest::default()
    };
    s.put(
        "snp_guest_msg",
        "key-req",
        [&[3u8][..], &key_req.encode()].concat(),
    )?;
    let key_rsp = KeyResponse {
        status: 0,
        derived_key: Zeroizing::new([0x22; 32]),
    };
    s.put(
        "snp_guest_msg",
        "key-rsp",
        [&[4u8][..], &key_rsp.encode()[..]].concat(),
    )?;

    // snp_cert_table: the three certificates a VCEK-signed report needs.
    let table = cert_table::encode(&[
        CertEntry {
            guid: cert_table::guid::VCEK,
            data: vec![0x30; 40],
        },
        CertEntry {
            guid: cert_table::guid::ASK,
            data: vec![0x31; 24],
        },
        CertEntry {
            guid: cert_table::guid::ARK,
            data: vec![0x32; 24],
        },
    ])
    .context("encoding a certificate table")?;
    s.put("snp_cert_table", "three", table)?;

    // session_buffer: a genuine buffer, and the field layout the target
    // reads (Z, policy, flip, nonce, IV, TEK, TIK).
    let session = wrap(&[0x5a; 48], &[1; 16], &[2; 16], &keys, 0x0005_0001);
    s.put("session_buffer", "wrapped", session.to_bytes())?;
    s.put(
        "session_buffer",
        "fields",
        pattern(0x10, 48 + 4 + 2 + 16 * 4),
    )?;

    // packet: selector, header, GUEST_LENGTH, TRANS of a launch secret.
    let secret = pattern(0x40, 64);
    for (name, selector, measurement) in [("secret", 0u8, None), ("measured", 1, Some(&[0x4d; 32]))]
    {
        let (header, trans) = build_launch_secret(&keys, &[7; 16], &secret, measurement);
        let len = u32::try_from(trans.len()).context("secret length")?;
        let mut bytes = vec![selector];
        bytes.extend_from_slice(&header.to_bytes());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&trans);
        s.put("packet", name, bytes)?;
    }
    s.put("packet", "vmsa", {
        let mut b = vec![2u8];
        b.extend(pattern(0, PacketHeader::SIZE + 4 + 32));
        b
    })?;

    // attestation_report: signed with the targets' fixed key.
    let report = Report::sign([0x11; 16], [0x22; 32], 0x0005_0001, &signing_key())
        .context("signing a report")?;
    s.put("attestation_report", "signed", report.encode())?;

    // snp_report: flags, the report signed with the targets' fixed key, then
    // the tamper check's index and mask.
    let mut snp_report = sevm_fuzz::snp_report();
    snp_report
        .sign(&signing_key())
        .context("signing an SNP report")?;
    s.put(
        "snp_report",
        "signed",
        [&[0u8][..], &snp_report.encode()].concat(),
    )?;
    s.put(
        "snp_report",
        "tamper",
        [&[1u8][..], &snp_report.encode(), &[0x90, 0x00, 0x01]].concat(),
    )?;

    // id_block: flags, ID block, ID auth (with and without the author key),
    // then the tamper check's index and mask.
    let block = sevm_fuzz::id_block();
    for (name, flags, author) in [("author", 1u8, true), ("id-only", 0, false)] {
        let author_key = sevm_fuzz::author_signing_key();
        let auth = block
            .sign(&signing_key(), author.then_some(&author_key))
            .context("signing an ID block")?;
        s.put(
            "id_block",
            name,
            [&[flags][..], &block.encode(), &auth.encode()].concat(),
        )?;
        if author {
            s.put(
                "id_block",
                "tamper",
                [
                    &[3u8][..],
                    &block.encode(),
                    &auth.encode(),
                    &[0x44, 0x02, 0x10],
                ]
                .concat(),
            )?;
        }
    }

    // measure_blob: the target reads API version, build, flip, policy, LD
    // and MNONCE from the front; a 48-byte blob is also decoded as is.
    let measurement = launch_measurement_for_api(&keys.tik, 1, 55, 21, 1, &[3; 32], &[4; 16]);
    let blob = MeasureBlob {
        measurement,
        mnonce: [4; 16],
    };
    s.put("measure_blob", "blob", blob.to_bytes())?;
    s.put("measure_blob", "fields", pattern(1, 5 + 4 + 32 + 16))?;
    Ok(())
}

fn tables(s: &mut Seeds) -> Result<()> {
    // secret_table: two entries, as a guest owner would inject.
    let table = SecretTable::new()
        .add(Guid::from_bytes([0x11; 16]), b"disk passphrase")
        .add(Guid::from_bytes([0x22; 16]), pattern(0, 40));
    s.put(
        "secret_table",
        "two",
        table.to_padded_bytes().context("secret table")?.as_slice(),
    )?;

    // ovmf_footer: [entries][table length][footer GUID][32 bytes], each
    // entry `data ‖ u16 length ‖ GUID`, walked back from the footer.
    let entries: [(Guid, Vec<u8>); 3] = [
        (
            SEV_SECRET_BLOCK_GUID,
            [0x0080_d000u32.to_le_bytes(), 0x1000u32.to_le_bytes()].concat(),
        ),
        (
            SEV_HASH_TABLE_RV_GUID,
            [0x0080_cc00u32.to_le_bytes(), 0x400u32.to_le_bytes()].concat(),
        ),
        (
            SEV_ES_RESET_BLOCK_GUID,
            0xffff_f000u32.to_le_bytes().to_vec(),
        ),
    ];
    let mut image = pattern(0x90, 64);
    let mut table_len = 18usize;
    for (guid, data) in &entries {
        let len = data.len() + 18;
        image.extend_from_slice(data);
        image.extend_from_slice(&u16::try_from(len)?.to_le_bytes());
        image.extend_from_slice(guid.as_bytes());
        table_len += len;
    }
    image.extend_from_slice(&u16::try_from(table_len)?.to_le_bytes());
    image.extend_from_slice(FOOTER_GUID.as_bytes());
    image.extend_from_slice(&[0; 32]);
    s.put("ovmf_footer", "table", &image)?;

    // ovmf_hashes: a table alone, and inside other bytes.
    let hashes = KernelHashes::new(Some(b"console=ttyS0\0"), Some(b"initrd"), b"kernel");
    let table = hashes.to_table();
    s.put("ovmf_hashes", "table", table)?;
    s.put(
        "ovmf_hashes",
        "embedded",
        [&pattern(0, 40)[..], &table].concat(),
    )?;
    Ok(())
}

fn firmware_and_state(s: &mut Seeds) -> Result<()> {
    // abi_codes: command ids, status codes and state bytes as the firmware
    // and the kernel return them (little-endian words and single bytes).
    let mut codes = Vec::new();
    for v in [0x01u32, 0x04, 0x0B, 0x12, 0x22, 0x36, 0x27, 0x42] {
        codes.extend(v.to_le_bytes());
    }
    s.put("abi_codes", "codes", codes)?;
    s.put("abi_codes", "states", vec![0, 1, 2, 3, 4, 5, 6, 7])?;

    // vcpu_state: a vCPU at the reset vector, with two MSRs.
    let mut state = VcpuState {
        regs: Default::default(),
        sregs: Default::default(),
        msrs: vec![(0x10, 12345), (0xc000_0080, 0x500)],
        runnable: true,
        halted: false,
    };
    state.regs.rip = 0xfff0;
    state.regs.rflags = 2;
    state.sregs.cs.base = 0xffff_0000;
    state.sregs.cs.selector = 0xf000;
    let vcpu = state.to_bytes();
    s.put("vcpu_state", "reset", &vcpu)?;

    // migration_stream: header, a pass, a page, a vCPU, device state, end.
    let header = Header {
        policy: 1,
        ram_size: 2 << 20,
        firmware_size: 1 << 20,
        vcpus: 1,
        // The reader wants a certificate's and a session buffer's length.
        source_pdh: pattern(0, sev::CERT_LEN),
        session: SessionBuffer::decode(&pattern(0x80, SessionBuffer::SIZE))
            .context("session buffer")?,
    };
    let mut w = Writer::new(Vec::new(), &header).context("stream header")?;
    w.records(&[
        Record::Pass(1),
        Record::Page {
            gpa: 0x1000,
            header: pattern(0, PacketHeader::SIZE),
            trans: pattern(0x20, 64),
        },
        Record::Vcpu {
            index: 0,
            state: vcpu,
        },
        Record::Device(pattern(0x30, 24)),
        Record::End {
            packets: 0,
            digest: [0; 32],
        },
    ])
    .context("stream records")?;
    s.put("migration_stream", "small", w.into_inner())?;

    // psp_record / psp_sealed: an identity with placeholder keys (the
    // codec does not check them).
    let rsa = |b: u8| RsaKeyBytes {
        n: pattern(b, 16),
        e: vec![1, 0, 1],
        d: Zeroizing::new(pattern(b ^ 0x40, 16)),
        p: Zeroizing::new(pattern(b ^ 0x80, 8)),
        q: Zeroizing::new(pattern(b ^ 0xc0, 8)),
    };
    let identity = PersistentIdentity {
        api_major: 1,
        api_minor: 55,
        build: 21,
        chip_id: [0x43; 64],
        cek_private: Zeroizing::new([1; 48]),
        pek_private: Zeroizing::new([2; 48]),
        oca_private: Some(Zeroizing::new([3; 48])),
        pdh_private: Zeroizing::new([4; 48]),
        ark: rsa(0x10),
        ask: rsa(0x20),
        ark_cert: pattern(0, 24),
        ask_cert: pattern(1, 24),
        cek_cert: pattern(2, 24),
        oca_cert: pattern(3, 24),
        pek_cert: pattern(4, 24),
        pdh_cert: pattern(5, 24),
        externally_owned: false,
    };
    let payload = identity.encode().context("identity")?;
    s.put("psp_record", "identity", &payload[..])?;
    s.put(
        "psp_sealed",
        "identity",
        &seal(&payload).context("seal")?[..],
    )?;
    s.put(
        "psp_sealed",
        "small",
        &seal(b"payload").context("seal")?[..],
    )?;
    Ok(())
}

const QMP_REQUESTS: &[&str] = &[
    r#"{"execute": "qmp_capabilities"}"#,
    r#"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}, "id": 1}"#,
    r#"{"execute": "query-status", "id": "a"}"#,
    r#"{"execute": "query-sev"}"#,
    r#"{"execute": "sev-inject-launch-secret", "arguments": {"packet-header": "AAAA", "secret": "AAAAAAAAAAAAAAAAAAAAAA==", "gpa": 8388608}}"#,
    r#"{"execute": "query-sev-attestation-report", "arguments": {"mnonce": "AAAAAAAAAAAAAAAAAAAAAA=="}}"#,
    r#"{"execute": "migrate", "arguments": {"uri": "unix:/tmp/m.sock"}}"#,
    r#"{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 1000}}"#,
    r#"{"execute": "human-monitor-command", "arguments": {"command-line": "info status"}}"#,
    r#"{"execute": "pmemsave", "arguments": {"val": 0, "size": 4096, "filename": "/tmp/x"}}"#,
    r#"{"exec-oob": "cont", "id": [1, {"x": null}]}"#,
];

/// `qmp_session` input: flags (bit 0: offer oob, 1: incoming VM, 2: client
/// gone after `gone` messages, 3: read fails at `fail_at`), then the ops
/// (`[template, (uri,) style]`, or `[0xf0.., len, bytes]`).
fn session(flags: u8, gone: u8, seed: u32, fail_at: u16, ops: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![flags, gone];
    out.extend_from_slice(&seed.to_le_bytes());
    out.extend_from_slice(&fail_at.to_le_bytes());
    for op in ops {
        out.extend_from_slice(op);
    }
    out
}

fn text(s: &mut Seeds) -> Result<()> {
    for (i, req) in QMP_REQUESTS.iter().enumerate() {
        s.put("qmp_request", &format!("req{i}"), req)?;
        s.put("qmp_framing", &format!("req{i}"), format!("{req}\n"))?;
    }
    s.put(
        "qmp_framing",
        "stream",
        r#"{"execute":"stop"}{"execute":"cont"} [1,[2]] "s\"}" 42 @ }"#,
    )?;

    // Styles: bits 0-1 id (none, number, string, object), bit 2 exec-oob,
    // bit 3 QEMU spacing, high nibble the separator after the request.
    let seeds: [(&str, Vec<u8>); 6] = [
        (
            "run",
            session(
                1,
                0,
                1,
                0,
                &[
                    &[0, 1],
                    &[3, 0x81],
                    &[5, 2],
                    &[3, 0x83],
                    &[4, 0xc9],
                    &[11, 1],
                    &[13, 2],
                    &[14, 1],
                ],
            ),
        ),
        (
            "migrate",
            session(
                0,
                0,
                2,
                0,
                &[
                    &[0, 1],
                    &[5, 1],
                    &[9, 2, 1],
                    &[10, 1],
                    &[9, 0, 1],
                    &[3, 1],
                    &[11, 1],
                    &[5, 1],
                    &[8, 1],
                ],
            ),
        ),
        (
            "incoming",
            session(
                2,
                0,
                3,
                0,
                &[
                    &[0, 1],
                    &[5, 1],
                    &[12, 1, 1],
                    &[12, 0, 1],
                    &[3, 1],
                    &[5, 1],
                    &[16, 0x10, 0x27, 1],
                ],
            ),
        ),
        (
            "early-oob-garbage",
            session(
                1,
                0,
                4,
                0,
                &[
                    &[3, 1],
                    &[0xf0, 6, b'{', b'"', b'a', b'"', b']', b'\n'],
                    &[1, 1],
                    &[4, 5],
                    &[2, 1],
                    &[0xf1, 3, b'4', b'2', b' '],
                    &[18, 2],
                    &[19, 3],
                ],
            ),
        ),
        (
            "client-gone",
            session(5, 3, 5, 0, &[&[0, 1], &[4, 1], &[5, 1], &[3, 1]]),
        ),
        (
            "read-fails",
            session(9, 0, 6, 60, &[&[0, 1], &[7, 1], &[6, 1], &[3, 1], &[5, 1]]),
        ),
    ];
    for (name, bytes) in seeds {
        s.put("qmp_session", name, bytes)?;
    }

    // migration_control: the faults (COMMIT dropped, the target's answer,
    // garbage byte, when migrate_cancel comes), one seed per answer.
    for back in 0..4u8 {
        s.put(
            "migration_control",
            &format!("back{back}"),
            [back & 1, back, 0x5a * (back & 1), back],
        )?;
    }

    let args: [(&str, &[&str]); 4] = [
        (
            "sev",
            &[
                "-machine",
                "q35,confidential-guest-support=sev0",
                "-object",
                "sev-guest,id=sev0,policy=0x1,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on",
                "-bios",
                "/x/OVMF.fd",
                "-kernel",
                "/x/bzImage",
                "-initrd",
                "/x/initrd",
                "-append",
                "console=ttyS0",
                "-m",
                "2G",
                "-smp",
                "2",
                "-qmp",
                "unix:/tmp/q.sock,server,wait=off",
                "-serial",
                "stdio",
                "-nodefaults",
            ],
        ),
        (
            "pflash",
            &[
                "-M",
                "q35,memory-encryption=sev0",
                "-object",
                "sev-guest,id=sev0,sev-device=/dev/sev",
                "-drive",
                "if=pflash,format=raw,unit=0,file=/x/code.fd,readonly=on",
                "-drive",
                "if=pflash,format=raw,unit=1,file=/x/vars.fd",
                "-S",
                "-incoming",
                "defer",
                "-gdb",
                "tcp::1234",
            ],
        ),
        ("help", &["-help"]),
        ("version", &["-version"]),
    ];
    for (name, argv) in args {
        s.put("options", name, argv.join("\0"))?;
    }

    for (i, p) in ["0x1", "0x5", "1", "0x00050001", "0xFFFF003F", " 0X3f "]
        .iter()
        .enumerate()
    {
        s.put("policy", &format!("p{i}"), p)?;
    }
    s.put("guid", "g1", "736869e5-84f0-4973-92ec-06879ce3da0b")?;
    s.put("guid", "g2", " 1E74F542-71DD-4D66-963E-EF4287FF173B\n")?;
    Ok(())
}

fn main() -> Result<()> {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("seeds").to_path_buf());
    if root.exists() {
        for entry in fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                fs::remove_dir_all(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    let mut s = Seeds { root, count: 0 };
    certificates(&mut s)?;
    crypto(&mut s)?;
    tables(&mut s)?;
    firmware_and_state(&mut s)?;
    text(&mut s)?;
    println!("{} seeds written to {}", s.count, s.root.display());
    Ok(())
}
