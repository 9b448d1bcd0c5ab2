//! Tests of SNP_GUEST_REQUEST: a guest-side helper that seals requests
//! with the VMPCKs read from its secrets page, the report's every field
//! against the launch, the tamper matrices (replayed, reordered, flipped
//! header fields and payload bits, wrong VMPCK, exhausted counter), the
//! payload-level refusals, SNP_CONFIG's masks and the derived keys.

use p384::ecdsa::VerifyingKey;
use sev_proto::abi::Status;
use sev_proto::snp::guest_msg::{
    self, field_select, KeyRequest, KeyResponse, KeySelect, MessageHeader, MessageType,
    ReportRequest, ReportResponse, RootKey, PAGE_LEN,
};
use sev_proto::snp::report::{AttestationReport, ReportError, ReportSigner};
use sev_proto::snp::{id_block, GuestPolicy, PageType, Product, TcbVersion};

use super::guest_tests::{launched, mem, page_of, status_of, QEMU_POLICY};
use super::*;
use crate::memory::GuestBacking;
use crate::platform::tests::Fresh;
use crate::rng::seeded_rng;
use crate::{CreateOptions, Platform};

const SECRETS_GPA: u64 = 0x4000;

/// The guest's side: its VMPCKs (from the secrets page) and the sequence
/// number each VMPCK's next request carries.
struct Guest {
    vmpcks: [[u8; 32]; 4],
    next: [u64; 4],
}

impl Guest {
    fn from_secrets(page: &[u8; 4096]) -> Self {
        let mut vmpcks = [[0u8; 32]; 4];
        for (i, k) in vmpcks.iter_mut().enumerate() {
            k.copy_from_slice(&page[0x20 + 32 * i..0x40 + 32 * i]);
        }
        Guest {
            vmpcks,
            next: [1; 4],
        }
    }

    /// A request page: `payload` of `msg_type` sealed under VMPCK `vmpck`
    /// with sequence number `seqno`.
    fn page(&self, vmpck: u8, seqno: u64, msg_type: MessageType, payload: &[u8]) -> [u8; PAGE_LEN] {
        let header = MessageHeader::new(msg_type, 1, payload.len() as u16, vmpck, seqno);
        let msg = guest_msg::seal(&self.vmpcks[usize::from(vmpck)], &header, payload).unwrap();
        let mut page = [0u8; PAGE_LEN];
        page[..msg.len()].copy_from_slice(&msg);
        page
    }

    /// Sends `payload` with the next sequence number and opens the
    /// response, checking its header as Linux does.
    fn ask(
        &mut self,
        p: &Platform,
        h: u32,
        vmpck: u8,
        msg_type: MessageType,
        payload: &[u8],
    ) -> Vec<u8> {
        let v = usize::from(vmpck);
        let seqno = self.next[v];
        let response = p
            .snp_guest_request(h, &self.page(vmpck, seqno, msg_type, payload))
            .unwrap();
        let header = MessageHeader::decode(&response[..]).unwrap();
        assert_eq!(header.seqno, seqno + 1);
        assert_eq!(header.msg_type, msg_type.response());
        assert_eq!((header.msg_version, header.vmpck), (1, vmpck));
        self.next[v] = seqno.wrapping_add(2);
        let plain = guest_msg::open(&self.vmpcks[v], &header, &response[..]).unwrap();
        assert!(response[0x60 + plain.len()..].iter().all(|b| *b == 0));
        plain.to_vec()
    }

    fn report(&mut self, p: &Platform, h: u32, vmpck: u8, req: &ReportRequest) -> ReportResponse {
        let plain = self.ask(p, h, vmpck, MessageType::REPORT_REQ, &req.encode());
        ReportResponse::decode(&plain).unwrap()
    }

    fn key(&mut self, p: &Platform, h: u32, vmpck: u8, req: &KeyRequest) -> KeyResponse {
        let plain = self.ask(p, h, vmpck, MessageType::KEY_REQ, &req.encode());
        KeyResponse::decode(&plain).unwrap()
    }
}

fn signing_key(seed: u64) -> p384::ecdsa::SigningKey {
    p384::ecdsa::SigningKey::from(p384::SecretKey::random(&mut seeded_rng(seed)))
}

/// A running guest: one NORMAL page, the secrets page, optionally an ID
/// block (with an author key) and VCEK_DISABLED; host data 0x42….
struct Running {
    f: Fresh,
    h: u32,
    guest: Guest,
    block: Option<id_block::IdBlock>,
}

fn running_with(f: Fresh, h: u32, id: Option<bool>, vcek_disabled: bool) -> Running {
    let m = mem();
    m.write_plain(0, &[3; 4096]).unwrap();
    f.p.snp_launch_update(h, &m, &SnpLaunchUpdate::page(PageType::Normal, 0))
        .unwrap();
    f.p.snp_launch_update(
        h,
        &m,
        &SnpLaunchUpdate::page(PageType::Secrets, SECRETS_GPA),
    )
    .unwrap();
    let guest = Guest::from_secrets(&page_of(&m, SECRETS_GPA));
    let policy = GuestPolicy::new(QEMU_POLICY).unwrap();
    let (block, input) = match id {
        None => (None, None),
        Some(author) => {
            let mut block = id_block::IdBlock::new(f.p.snp_launch_digest(h).unwrap(), policy);
            block.family_id = [1; 16];
            block.image_id = [2; 16];
            block.guest_svn = 7;
            let author_key = signing_key(2);
            let auth = block
                .sign(&signing_key(1), author.then_some(&author_key))
                .unwrap();
            let input = IdBlockInput {
                id_block: block.encode().to_vec(),
                id_auth: auth.encode().to_vec(),
            };
            (Some(block), Some(input))
        }
    };
    f.p.snp_launch_finish(
        h,
        &SnpLaunchFinish {
            id: input,
            auth_key_en: id == Some(true),
            vcek_disabled,
            host_data: [0x42; 32],
        },
    )
    .unwrap();
    Running { f, h, guest, block }
}

fn running(seed: u64) -> Running {
    let (f, h) = launched(seed, QEMU_POLICY);
    running_with(f, h, None, false)
}

fn vcek(p: &Platform) -> VerifyingKey {
    p.snp_vcek_public(None).unwrap()
}

fn report_of(r: &ReportResponse) -> AttestationReport {
    assert_eq!(r.status, 0);
    AttestationReport::decode(&r.report[..]).unwrap()
}

#[test]
fn every_report_field_is_the_launchs() {
    for author in [false, true] {
        let (f, h) = launched(40, QEMU_POLICY);
        let Running {
            f,
            h,
            mut guest,
            block,
        } = running_with(f, h, Some(author), false);
        let block = block.unwrap();
        let p = &f.p;
        let mut req = ReportRequest::new([0x5A; 64], 1);
        req.key_sel = KeySelect::Vcek;
        let report = report_of(&guest.report(p, h, 1, &req));
        report.verify_signature(&vcek(p)).unwrap();

        let id = p.snp_identity().unwrap();
        let ids = p.snp_launch_identity(h).unwrap().id_block.unwrap();
        let enc = |t: &TcbVersion| t.encode(Product::Genoa).unwrap();
        let mut chip_id = [0u8; 64];
        p.get_id(&mut chip_id).unwrap();
        assert_eq!(report.version, 3, "Genoa at API 1.55");
        assert_eq!(report.guest_svn, 7);
        assert_eq!(report.policy.bits(), QEMU_POLICY);
        assert_eq!(report.family_id, block.family_id);
        assert_eq!(report.image_id, block.image_id);
        assert_eq!(report.vmpl, 1);
        assert_eq!(report.current_tcb, enc(&id.current_tcb));
        assert_eq!(report.platform_info, u64::from(id.smt));
        assert_eq!(report.author_key_en, author);
        assert!(!report.mask_chip_key);
        assert_eq!(report.signing_key, ReportSigner::Vcek);
        assert_eq!(report.report_data, [0x5A; 64]);
        assert_eq!(report.measurement, p.snp_launch_digest(h).unwrap());
        assert_eq!(report.host_data, [0x42; 32]);
        assert_eq!(report.id_key_digest, ids.id_key_digest);
        assert_eq!(
            report.author_key_digest,
            ids.author_key_digest.unwrap_or([0; 48])
        );
        assert_eq!(report.author_key_digest != [0; 48], author);
        assert_ne!(report.report_id, [0; 32]);
        assert_eq!(report.report_id_ma, [0xFF; 32]);
        assert_eq!(report.reported_tcb, enc(&id.current_tcb));
        assert_eq!(report.product(), Some(Product::Genoa));
        let c = report.cpuid.unwrap();
        assert_eq!((c.family, c.model, c.stepping), (0x19, 0x11, 1));
        assert_eq!(report.chip_id, chip_id);
        assert_eq!(report.committed_tcb, enc(&id.committed_tcb));
        assert_eq!(report.launch_tcb, enc(&id.committed_tcb));
        let v = report.current_version;
        assert_eq!((v.major, v.minor, v.build), (1, 55, 21));
        let v = report.committed_version;
        let (api, build) = id.committed_version;
        assert_eq!((v.major, v.minor, v.build), (api.major, api.minor, build));

        // The same guest keeps its REPORT_ID; a report over other data
        // differs only there and in the signature.
        let again = report_of(&guest.report(p, h, 1, &ReportRequest::new([1; 64], 1)));
        assert_eq!(again.report_id, report.report_id);
        assert_eq!(
            AttestationReport {
                report_data: report.report_data,
                signature: report.signature,
                ..again
            },
            report
        );
    }
}

#[test]
fn report_ids_differ_between_guests_and_versions_follow_the_product() {
    let a = running(41);
    let b = running(42);
    let mut ga = a.guest;
    let mut gb = b.guest;
    let ra = report_of(&ga.report(&a.f.p, a.h, 0, &ReportRequest::new([0; 64], 0)));
    let rb = report_of(&gb.report(&b.f.p, b.h, 0, &ReportRequest::new([0; 64], 0)));
    assert_ne!(ra.report_id, rb.report_id);

    let tmp = tempfile::tempdir().unwrap();
    let options = CreateOptions {
        ark_bits: 2048,
        snp: SnpOptions {
            product: Product::Turin,
            ..SnpOptions::default()
        },
        ..CreateOptions::default()
    };
    let path = tmp.path().join("p");
    let p = Platform::create(&path, options, seeded_rng(43)).unwrap();
    p.snp_init().unwrap();
    let h = p.snp_gctx_create().unwrap();
    p.snp_launch_start(h, &SnpLaunchStart::with_policy(QEMU_POLICY))
        .unwrap();
    p.snp_activate(h, 1).unwrap();
    let f = Fresh { _tmp: tmp, path, p };
    let mut r = running_with(f, h, None, false);
    let report = report_of(
        &r.guest
            .report(&r.f.p, r.h, 0, &ReportRequest::new([0; 64], 0)),
    );
    assert_eq!(report.version, 5);
    assert_eq!(report.product(), Some(Product::Turin));
    let c = report.cpuid.unwrap();
    assert_eq!((c.family, c.model, c.stepping), (0x1A, 0x02, 1));
    assert_eq!(report.mitigation_vectors.unwrap().current, 0);
    assert_eq!(&report.chip_id[8..], &[0u8; 56]);
    report.verify_signature(&vcek(&r.f.p)).unwrap();
}

#[test]
fn replayed_and_reordered_messages_are_aead_oflow_and_change_nothing() {
    let Running {
        f, h, mut guest, ..
    } = running(44);
    let p = &f.p;
    let req = ReportRequest::new([0; 64], 0).encode();
    let first = guest.page(0, 1, MessageType::REPORT_REQ, &req);
    p.snp_guest_request(h, &first).unwrap();
    guest.next[0] = 3;
    // Replayed.
    assert_eq!(status_of(p.snp_guest_request(h, &first)), Status::AeadOflow);
    // Reordered: a number skipped, a response's (even) number, an old one.
    for seqno in [5, 2, 4, u64::MAX - 1] {
        let page = guest.page(0, seqno, MessageType::REPORT_REQ, &req);
        assert_eq!(
            status_of(p.snp_guest_request(h, &page)),
            Status::AeadOflow,
            "{seqno}"
        );
    }
    // The counter did not move: 3 is still the next, on VMPCK0 only.
    guest.report(p, h, 0, &ReportRequest::new([0; 64], 0));
    guest.report(p, h, 1, &ReportRequest::new([0; 64], 1));
    guest.report(p, h, 0, &ReportRequest::new([0; 64], 0));
    assert_eq!(guest.next, [7, 3, 1, 1]);
}

#[test]
fn every_flipped_header_or_payload_bit_is_refused_and_the_counter_stays() {
    let Running {
        f, h, mut guest, ..
    } = running(45);
    let p = &f.p;
    let payload = ReportRequest::new([7; 64], 0).encode();
    let good = guest.page(0, 1, MessageType::REPORT_REQ, &payload);
    let end = 0x60 + payload.len();
    for byte in 0..end {
        for bit in [0u8, 5] {
            let mut bad = good;
            bad[byte] ^= 1 << bit;
            let status = status_of(p.snp_guest_request(h, &bad));
            let expected: &[Status] = match byte {
                // The tag, MSG_SEQNO (the IV) and the payload: only the
                // authentication can tell.
                0x00..=0x0F | 0x20..=0x27 | 0x60.. => &[Status::BadMeasurement],
                // Reserved bytes outside the AAD, and the header fields
                // checked before the tag.
                0x10..=0x1F | 0x28..=0x33 | 0x38..=0x3B | 0x3D..=0x5F => &[Status::InvalidParam],
                // MSG_SIZE: some sizes are malformed, the others do not
                // authenticate; MSG_VMPCK likewise; MSG_TYPE and
                // MSG_VERSION are in the AAD.
                _ => &[Status::InvalidParam, Status::BadMeasurement],
            };
            assert!(
                expected.contains(&status),
                "byte {byte:#x} bit {bit}: {status:?}"
            );
        }
    }
    // Bytes after the payload are not part of the message.
    let mut padded = good;
    padded[end] = 0xFF;
    p.snp_guest_request(h, &padded).unwrap();
    guest.next[0] = 3;
    guest.report(p, h, 0, &ReportRequest::new([0; 64], 0));
}

#[test]
fn a_wrong_vmpck_is_bad_measurement_or_invalid_param() {
    let Running { f, h, guest, .. } = running(46);
    let p = &f.p;
    let payload = ReportRequest::new([0; 64], 1).encode();
    // Sealed under VMPCK1 but labelled VMPCK0: the tag does not verify.
    let mut page = guest.page(1, 1, MessageType::REPORT_REQ, &payload);
    page[0x3C] = 0;
    assert_eq!(
        status_of(p.snp_guest_request(h, &page)),
        Status::BadMeasurement
    );
    page[0x3C] = 4;
    assert_eq!(
        status_of(p.snp_guest_request(h, &page)),
        Status::InvalidParam
    );
    // Another guest's key.
    let other = running(47);
    let page = other.guest.page(0, 1, MessageType::REPORT_REQ, &payload);
    assert_eq!(
        status_of(p.snp_guest_request(h, &page)),
        Status::BadMeasurement
    );
}

#[test]
fn an_exhausted_counter_is_aead_oflow() {
    let Running {
        f, h, mut guest, ..
    } = running(48);
    let p = &f.p;
    let req = ReportRequest::new([0; 64], 2);
    // The last exchange a counter allows: request 2^64 − 2, response 2^64 − 1.
    p.snp_set_seqno_for_test(h, 2, u64::MAX - 2);
    guest.next[2] = u64::MAX - 1;
    let report = report_of(&guest.report(p, h, 2, &req));
    assert_eq!(report.vmpl, 2);
    for seqno in [u64::MAX, 1] {
        let page = guest.page(2, seqno, MessageType::REPORT_REQ, &req.encode());
        assert_eq!(status_of(p.snp_guest_request(h, &page)), Status::AeadOflow);
    }
    // The other VMPCKs go on.
    guest.report(p, h, 3, &ReportRequest::new([0; 64], 3));
}

#[test]
fn unknown_types_and_versions_are_invalid_param() {
    let Running { f, h, guest, .. } = running(49);
    let p = &f.p;
    let payload = [0u8; 0x60];
    for t in [0u8, 1, 2, 4, 6, 7, 13, 17, 200] {
        let page = guest.page(0, 1, MessageType(t), &payload);
        assert_eq!(
            status_of(p.snp_guest_request(h, &page)),
            Status::InvalidParam,
            "type {t}"
        );
    }
    for version in [0u8, 2] {
        let header = MessageHeader::new(MessageType::REPORT_REQ, version, 0x60, 0, 1);
        let msg = guest_msg::seal(&guest.vmpcks[0], &header, &payload).unwrap();
        let mut page = [0u8; PAGE_LEN];
        page[..msg.len()].copy_from_slice(&msg);
        assert_eq!(
            status_of(p.snp_guest_request(h, &page)),
            Status::InvalidParam,
            "version {version}"
        );
    }
}

#[test]
fn requests_need_a_running_guest() {
    let (f, h) = launched(50, QEMU_POLICY);
    let page = [0u8; PAGE_LEN];
    assert_eq!(
        status_of(f.p.snp_guest_request(h, &page)),
        Status::InvalidGuestState
    );
    assert_eq!(
        status_of(f.p.snp_guest_request(h + 100, &page)),
        Status::InvalidGuest
    );
}

#[test]
fn payload_refusals_are_sealed_responses_with_a_status() {
    let Running {
        f, h, mut guest, ..
    } = running(51);
    let p = &f.p;
    let mut cases: Vec<(u8, Vec<u8>, Status)> = Vec::new();
    // A VMPL more privileged than the key's, or no VMPL at all.
    cases.push((
        2,
        ReportRequest::new([0; 64], 1).encode().to_vec(),
        Status::InvalidParam,
    ));
    cases.push((
        0,
        ReportRequest::new([0; 64], 4).encode().to_vec(),
        Status::InvalidParam,
    ));
    for (sel, status) in [
        (KeySelect::Vlek, Status::InvalidKey),
        (KeySelect::Reserved, Status::InvalidKey),
    ] {
        let mut r = ReportRequest::new([0; 64], 0);
        r.key_sel = sel;
        cases.push((0, r.encode().to_vec(), status));
    }
    let mut reserved = ReportRequest::new([0; 64], 0).encode();
    reserved[0x50] = 1;
    cases.push((0, reserved.to_vec(), Status::InvalidParam));
    cases.push((0, vec![0u8; 0x70], Status::InvalidParam));
    for (vmpck, payload, status) in cases {
        let plain = guest.ask(p, h, vmpck, MessageType::REPORT_REQ, &payload);
        let r = ReportResponse::decode(&plain).unwrap();
        assert_eq!(r.status, status.code(), "{payload:02x?}");
        assert!(r.report.iter().all(|b| *b == 0));
    }
    // VCEK_DISABLED: no key signs (no VLEK either).
    let (f, h) = launched(52, QEMU_POLICY);
    let mut r = running_with(f, h, None, true);
    let resp = r
        .guest
        .report(&r.f.p, r.h, 0, &ReportRequest::new([0; 64], 0));
    assert_eq!(resp.status, Status::InvalidKey.code());
}

#[test]
fn snp_config_masks_and_reported_tcb_are_honoured() {
    let Running {
        f, h, mut guest, ..
    } = running(53);
    let p = &f.p;
    let id = p.snp_identity().unwrap();
    let older = TcbVersion {
        snp: id.current_tcb.snp - 1,
        ..id.current_tcb
    };
    p.snp_config(&SnpConfig {
        reported_tcb: older.encode(id.product).unwrap(),
        mask_chip_id: true,
        mask_chip_key: false,
    })
    .unwrap();
    let report = report_of(&guest.report(p, h, 0, &ReportRequest::new([0; 64], 0)));
    assert_eq!(report.chip_id, [0; 64]);
    assert_eq!(report.reported_tcb, older.encode(id.product).unwrap());
    assert_eq!(
        report.current_tcb,
        id.current_tcb.encode(id.product).unwrap()
    );
    // Signed by the VCEK of the reported TCB, not the current one.
    report
        .verify_signature(&p.snp_vcek_public(Some(older)).unwrap())
        .unwrap();
    assert!(matches!(
        report.verify_signature(&p.snp_vcek_public(Some(id.current_tcb)).unwrap()),
        Err(ReportError::BadSignature(_))
    ));

    p.snp_config(&SnpConfig {
        reported_tcb: 0,
        mask_chip_id: false,
        mask_chip_key: true,
    })
    .unwrap();
    let report = report_of(&guest.report(p, h, 0, &ReportRequest::new([0; 64], 0)));
    assert_ne!(report.chip_id, [0; 64]);
    assert!(report.mask_chip_key);
    assert_eq!(report.signing_key, ReportSigner::None);
    assert_eq!(
        report.signature,
        sev_proto::snp::report::ReportSignature::ZERO
    );
    assert_eq!(
        report.verify_signature(&vcek(p)),
        Err(ReportError::Unsigned)
    );
    // A VCEK-rooted key is refused, a VMRK-rooted one is not.
    let vcek_key = guest.key(p, h, 0, &KeyRequest::default());
    assert_eq!(vcek_key.status, Status::InvalidKey.code());
    let vmrk_key = guest.key(
        p,
        h,
        0,
        &KeyRequest {
            root: RootKey::Vmrk,
            ..KeyRequest::default()
        },
    );
    assert_eq!(vmrk_key.status, 0);
}

#[test]
fn derived_keys_are_stable_and_differ_per_field() {
    let (f, h) = launched(54, QEMU_POLICY);
    let Running {
        f, h, mut guest, ..
    } = running_with(f, h, Some(true), false);
    let p = &f.p;
    let id = p.snp_identity().unwrap();
    let tcb = id.committed_tcb.encode(id.product).unwrap();
    let base = KeyRequest {
        vmpl: 1,
        guest_svn: 7,
        tcb_version: tcb,
        ..KeyRequest::default()
    };
    let mut key = |req: &KeyRequest| {
        let r = guest.key(p, h, 0, req);
        assert_eq!(r.status, 0, "{req:?}");
        *r.derived_key
    };
    let k0 = key(&base);
    assert_ne!(k0, [0; 32]);
    assert_eq!(key(&base), k0, "stable");
    let mut seen = vec![k0];
    let mut variants = vec![
        KeyRequest { vmpl: 2, ..base },
        KeyRequest {
            root: RootKey::Vmrk,
            ..base
        },
    ];
    for bit in 0..6 {
        variants.push(KeyRequest {
            guest_field_select: 1 << bit,
            ..base
        });
    }
    variants.push(KeyRequest {
        guest_field_select: field_select::GUEST_SVN,
        guest_svn: 6,
        ..base
    });
    let older = TcbVersion {
        snp: id.committed_tcb.snp - 1,
        ..id.committed_tcb
    };
    variants.push(KeyRequest {
        guest_field_select: field_select::TCB_VERSION,
        tcb_version: older.encode(id.product).unwrap(),
        ..base
    });
    for v in &variants {
        let k = key(v);
        assert!(!seen.contains(&k), "{v:?} gave a key seen before");
        seen.push(k);
    }
    // Unselected fields do not count.
    assert_eq!(
        key(&KeyRequest {
            guest_svn: 0,
            tcb_version: 0,
            ..base
        }),
        k0
    );
    // Refusals: unknown selector bits, a GUEST_SVN above the ID block's, a
    // TCB above the committed one, no such VMPL, the VLEK.
    let refusals = [
        (
            KeyRequest {
                guest_field_select: 1 << 6,
                ..base
            },
            Status::InvalidParam,
        ),
        (
            KeyRequest {
                guest_field_select: field_select::GUEST_SVN,
                guest_svn: 8,
                ..base
            },
            Status::InvalidParam,
        ),
        (
            KeyRequest {
                guest_field_select: field_select::TCB_VERSION,
                tcb_version: TcbVersion {
                    snp: id.committed_tcb.snp + 1,
                    ..id.committed_tcb
                }
                .encode(id.product)
                .unwrap(),
                ..base
            },
            Status::InvalidParam,
        ),
        (KeyRequest { vmpl: 4, ..base }, Status::InvalidParam),
        (
            KeyRequest {
                key_sel: KeySelect::Vlek,
                ..base
            },
            Status::InvalidKey,
        ),
    ];
    for (req, status) in refusals {
        let r = guest.key(p, h, 0, &req);
        assert_eq!(r.status, status.code(), "{req:?}");
        assert_eq!(*r.derived_key, [0; 32]);
    }
    // A VMPL below the VMPCK's.
    let r = guest.key(p, h, 2, &base);
    assert_eq!(r.status, Status::InvalidParam.code());
}

#[test]
fn concurrent_requests_never_share_a_sequence_number() {
    let Running { f, h, guest, .. } = running(55);
    let p = &f.p;
    let page = guest.page(
        0,
        1,
        MessageType::REPORT_REQ,
        &ReportRequest::new([0; 64], 0).encode(),
    );
    let outcomes: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| p.snp_guest_request(h, &page).is_ok()))
            .collect();
        handles.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1);
}
