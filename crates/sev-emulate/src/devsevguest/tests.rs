use std::cell::RefCell;

use sev_firmware::emulated::EmulatedPlatform;
use sev_proto::snp::cert::Certificate;
use sev_proto::snp::cert_table;
use sev_proto::snp::guest_msg::{KeyResponse, ReportResponse, REPORT_RSP_LEN};
use sev_proto::snp::AttestationReport;
use sev_psp::{CreateOptions, Platform};

use super::*;
use crate::devsev::Fault;
use crate::guestlaunch::{self, GuestSpec, LaunchedGuest};

/// A program's memory: one mapped range at `BASE`.
struct Mem {
    bytes: RefCell<Vec<u8>>,
}

const BASE: u64 = 0x10_0000;
const ARG: u64 = BASE;
const REQ: u64 = BASE + 0x100;
const RESP: u64 = BASE + 0x1000;
const CERTS: u64 = BASE + 0x3000;
const MEM_LEN: usize = 0x10000;
/// An address nothing is mapped at.
const UNMAPPED: u64 = 0x7000_0000;

impl Mem {
    fn new() -> Self {
        Mem {
            bytes: RefCell::new(vec![0; MEM_LEN]),
        }
    }
    fn range(&self, addr: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(addr.checked_sub(BASE)?).ok()?;
        let end = start.checked_add(len)?;
        (end <= MEM_LEN).then_some(start..end)
    }
    fn put(&self, addr: u64, data: &[u8]) {
        self.write(addr, data).unwrap();
    }
    fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        self.read(addr, len).unwrap()
    }
}

impl UserMemory for Mem {
    fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, Fault> {
        let r = self.range(addr, len).ok_or(Fault)?;
        Ok(self.bytes.borrow()[r].to_vec())
    }
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fault> {
        let r = self.range(addr, data.len()).ok_or(Fault)?;
        self.bytes.borrow_mut()[r].copy_from_slice(data);
        Ok(())
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    platform: EmulatedPlatform,
    guest: LaunchedGuest,
    image: Vec<u8>,
    spec: GuestSpec,
}

fn fixture(seed: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let opts = CreateOptions {
        ark_bits: 2048,
        ..Default::default()
    };
    let p = Platform::create(dir.path().join("p"), opts, sev_psp::rng::seeded_rng(seed)).unwrap();
    let platform = EmulatedPlatform::from_firmware(p);
    let image = sevm_demo::build(&sevm_demo::DemoOptions::default()).unwrap();
    let fw = dir.path().join("demo.fd");
    std::fs::write(&fw, &image).unwrap();
    let spec = GuestSpec::parse(&format!(
        "firmware={},policy=0x30000,host-data={},vcpus=2",
        fw.display(),
        "ab".repeat(32)
    ))
    .unwrap();
    let guest = guestlaunch::launch(&platform, &spec).unwrap();
    Fixture {
        _dir: dir,
        platform,
        guest,
        image,
        spec,
    }
}

fn device(f: &Fixture) -> SevGuestDevice {
    f.guest
        .device(guestlaunch::cert_table(&f.platform).unwrap())
}

/// `struct snp_guest_request_ioctl` with a sentinel in `exitinfo2`.
fn ioctl_arg(version: u8, req: u64, resp: u64) -> [u8; IOCTL_LEN] {
    let mut a = [0u8; IOCTL_LEN];
    a[0] = version;
    a[8..16].copy_from_slice(&req.to_le_bytes());
    a[16..24].copy_from_slice(&resp.to_le_bytes());
    a[24..32].copy_from_slice(&0x5a5a_5a5au64.to_le_bytes());
    a
}

fn exitinfo2(m: &Mem) -> u64 {
    u64_at(&m.get(ARG, IOCTL_LEN), 24)
}

fn report_req(data: [u8; 64], vmpl: u32) -> [u8; REPORT_REQ_LEN] {
    let mut r = [0u8; REPORT_REQ_LEN];
    r[..64].copy_from_slice(&data);
    r[64..68].copy_from_slice(&vmpl.to_le_bytes());
    r
}

fn decode_report(m: &Mem) -> AttestationReport {
    let resp = m.get(RESP, REPORT_RESP_LEN);
    assert!(resp[REPORT_RSP_LEN..].iter().all(|b| *b == 0));
    let r = ReportResponse::decode(&resp[..REPORT_RSP_LEN]).unwrap();
    assert_eq!(r.status, 0);
    AttestationReport::decode(&r.report[..]).unwrap()
}

fn vcek_of(table: &[u8]) -> Certificate {
    let entries = cert_table::decode(table).unwrap();
    let vcek = entries
        .iter()
        .find(|e| e.guid == cert_table::guid::VCEK)
        .unwrap();
    Certificate::from_der(&vcek.data).unwrap()
}

#[test]
fn report_carries_the_launch_and_verifies_against_the_emulated_vcek() {
    let f = fixture(11);
    let table = guestlaunch::cert_table(&f.platform).unwrap();
    let mut d = f.guest.device(table.clone());
    let m = Mem::new();
    m.put(ARG, &ioctl_arg(1, REQ, RESP));
    m.put(REQ, &report_req([7; 64], 1));
    d.ioctl(&m, SNP_GET_REPORT, ARG).unwrap();
    // Success leaves the caller's exitinfo2 alone, as the driver does.
    assert_eq!(exitinfo2(&m), 0x5a5a_5a5a);
    assert_eq!(d.seqno(), 2);
    let report = decode_report(&m);
    assert_eq!(report.report_data, [7; 64]);
    assert_eq!(report.vmpl, 1);
    assert_eq!(report.host_data, [0xab; 32]);
    assert_eq!(report.measurement, f.guest.measurement);
    // The measurement is what the owner computes for these inputs.
    let expected = sev_proto::snp::snp_launch_digest(
        &f.image,
        &sev_proto::snp::SnpLaunch {
            ovmf_hash: None,
            kernel_hashes: None,
            vcpus: 2,
            vmsa: f.spec.vmsa_config().unwrap(),
        },
    )
    .unwrap();
    assert_eq!(&report.measurement, expected.bytes());
    let key = vcek_of(&table).p384_public_key().unwrap();
    report.verify_signature(&key).unwrap();

    // A second report: the next sequence number, fresh data.
    m.put(REQ, &report_req([8; 64], 2));
    d.ioctl(&m, SNP_GET_REPORT, ARG).unwrap();
    assert_eq!(d.seqno(), 4);
    let second = decode_report(&m);
    assert_eq!((second.report_data, second.vmpl), ([8; 64], 2));
    second.verify_signature(&key).unwrap();
}

fn key_req(gfs: u64, vmpl: u32) -> [u8; KEY_REQ_LEN] {
    let mut r = [0u8; KEY_REQ_LEN];
    r[8..16].copy_from_slice(&gfs.to_le_bytes());
    r[16..20].copy_from_slice(&vmpl.to_le_bytes());
    r
}

#[test]
fn derived_keys_follow_the_request() {
    let f = fixture(12);
    let mut d = device(&f);
    let m = Mem::new();
    let mut key = |gfs: u64| {
        m.put(ARG, &ioctl_arg(1, REQ, RESP));
        m.put(REQ, &key_req(gfs, 1));
        d.ioctl(&m, SNP_GET_DERIVED_KEY, ARG).unwrap();
        let resp = m.get(RESP, KEY_RESP_LEN);
        let k = KeyResponse::decode(&resp).unwrap();
        assert_eq!(k.status, 0);
        *k.derived_key
    };
    let a = key(0);
    assert_ne!(a, [0; 32]);
    assert_eq!(key(0), a);
    // Mixing the measurement in gives another key.
    assert_ne!(key(1 << 3), a);
    assert_eq!(d.seqno(), 6);
}

fn ext_req(certs: u64, len: u32) -> [u8; EXT_REPORT_REQ_LEN] {
    let mut r = [0u8; EXT_REPORT_REQ_LEN];
    r[..REPORT_REQ_LEN].copy_from_slice(&report_req([9; 64], 1));
    r[96..104].copy_from_slice(&certs.to_le_bytes());
    r[104..108].copy_from_slice(&len.to_le_bytes());
    r
}

#[test]
fn extended_reports_follow_the_drivers_length_protocol() {
    let f = fixture(13);
    let table = guestlaunch::cert_table(&f.platform).unwrap();
    let needed = u32::try_from(table.len().div_ceil(4096) * 4096).unwrap();
    assert!(needed <= MAX_CERTS_LEN, "{needed}");
    let mut d = f.guest.device(table.clone());
    let m = Mem::new();

    // No buffer: EIO, vmm_error 1, the length needed written back; the
    // report was requested (the sequence number advanced), not copied.
    m.put(ARG, &ioctl_arg(1, REQ, RESP));
    m.put(REQ, &ext_req(0, 0));
    assert_eq!(d.ioctl(&m, SNP_GET_EXT_REPORT, ARG), Err(libc::EIO));
    assert_eq!(exitinfo2(&m), VMM_ERR_INVALID_LEN);
    assert_eq!(u32_at(&m.get(REQ, EXT_REPORT_REQ_LEN), 104), needed);
    assert_eq!(d.seqno(), 2);
    assert!(m.get(RESP, 64).iter().all(|b| *b == 0));
    assert!(!d.vmpck_disabled());

    // A buffer one page short: the same.
    if needed > 4096 {
        m.put(ARG, &ioctl_arg(1, REQ, RESP));
        m.put(REQ, &ext_req(CERTS, needed - 4096));
        assert_eq!(d.ioctl(&m, SNP_GET_EXT_REPORT, ARG), Err(libc::EIO));
        assert_eq!(u32_at(&m.get(REQ, EXT_REPORT_REQ_LEN), 104), needed);
    }
    let seq = d.seqno();

    // Lengths the driver refuses before any request.
    for bad in [needed + 1, 0x5000, 100] {
        m.put(ARG, &ioctl_arg(1, REQ, RESP));
        m.put(REQ, &ext_req(CERTS, bad));
        assert_eq!(
            d.ioctl(&m, SNP_GET_EXT_REPORT, ARG),
            Err(libc::EINVAL),
            "{bad}"
        );
        assert_eq!(exitinfo2(&m), NO_FW_CALL);
    }
    // A buffer outside the user address space.
    m.put(REQ, &ext_req(u64::MAX - 4095, 4096));
    assert_eq!(d.ioctl(&m, SNP_GET_EXT_REPORT, ARG), Err(libc::EFAULT));
    assert_eq!(d.seqno(), seq);

    // The length asked for: the table, zero-padded, and the report.
    m.put(ARG, &ioctl_arg(1, REQ, RESP));
    m.put(REQ, &ext_req(CERTS, needed));
    d.ioctl(&m, SNP_GET_EXT_REPORT, ARG).unwrap();
    let certs = m.get(CERTS, needed as usize);
    assert_eq!(&certs[..table.len()], &table[..]);
    let entries = cert_table::decode(&certs).unwrap();
    let guids: Vec<_> = entries.iter().map(|e| e.guid).collect();
    assert_eq!(
        guids,
        [
            cert_table::guid::VCEK,
            cert_table::guid::ASK,
            cert_table::guid::ARK
        ]
    );
    let report = decode_report(&m);
    assert_eq!(report.report_data, [9; 64]);
    report
        .verify_signature(&vcek_of(&certs).p384_public_key().unwrap())
        .unwrap();
    assert_eq!(d.seqno(), seq + 2);
}

#[test]
fn bad_calls_get_the_drivers_answers() {
    let f = fixture(14);
    let mut d = device(&f);
    let m = Mem::new();
    // The argument itself unreadable.
    assert_eq!(d.ioctl(&m, SNP_GET_REPORT, UNMAPPED), Err(libc::EFAULT));
    // Message version 0: EINVAL, nothing written back.
    m.put(ARG, &ioctl_arg(0, REQ, RESP));
    assert_eq!(d.ioctl(&m, SNP_GET_REPORT, ARG), Err(libc::EINVAL));
    assert_eq!(exitinfo2(&m), 0x5a5a_5a5a);
    // Null buffers: EINVAL with "no firmware call" written back.
    for (req, resp) in [(0, RESP), (REQ, 0)] {
        for r in [SNP_GET_REPORT, SNP_GET_DERIVED_KEY, SNP_GET_EXT_REPORT] {
            m.put(ARG, &ioctl_arg(1, req, resp));
            assert_eq!(d.ioctl(&m, r, ARG), Err(libc::EINVAL));
            assert_eq!(exitinfo2(&m), NO_FW_CALL);
        }
    }
    // An unreadable request: EFAULT before the firmware is asked.
    m.put(ARG, &ioctl_arg(1, UNMAPPED, RESP));
    assert_eq!(d.ioctl(&m, SNP_GET_REPORT, ARG), Err(libc::EFAULT));
    assert_eq!(d.seqno(), 0);
    // Another request number.
    m.put(ARG, &ioctl_arg(1, REQ, RESP));
    assert_eq!(d.ioctl(&m, 0xC020_5303, ARG), Err(libc::ENOTTY));
    // An unwritable response: EFAULT after the request (counted).
    m.put(ARG, &ioctl_arg(1, REQ, UNMAPPED));
    m.put(REQ, &report_req([1; 64], 1));
    assert_eq!(d.ioctl(&m, SNP_GET_REPORT, ARG), Err(libc::EFAULT));
    assert_eq!(d.seqno(), 2);
    // A report with a VMPL the firmware refuses: a sealed non-zero status.
    m.put(ARG, &ioctl_arg(1, REQ, RESP));
    m.put(REQ, &report_req([1; 64], 4));
    d.ioctl(&m, SNP_GET_REPORT, ARG).unwrap();
    let resp = m.get(RESP, REPORT_RSP_LEN);
    assert_ne!(u32_at(&resp, 0), 0);
    // A message version the firmware does not know: EIO with its status
    // (INVALID_PARAM), and VMPCK0 is wiped: every later call is ENOTTY.
    m.put(ARG, &ioctl_arg(9, REQ, RESP));
    m.put(REQ, &report_req([1; 64], 1));
    assert_eq!(d.ioctl(&m, SNP_GET_REPORT, ARG), Err(libc::EIO));
    assert_eq!(exitinfo2(&m), 0x16);
    assert!(d.vmpck_disabled());
    m.put(ARG, &ioctl_arg(1, REQ, RESP));
    assert_eq!(d.ioctl(&m, SNP_GET_REPORT, ARG), Err(libc::ENOTTY));
    assert_eq!(exitinfo2(&m), NO_FW_CALL);
    m.put(REQ, &ext_req(0, 0));
    assert_eq!(d.ioctl(&m, SNP_GET_EXT_REPORT, ARG), Err(libc::ENOTTY));
    assert_eq!(exitinfo2(&m), NO_FW_CALL);
}
