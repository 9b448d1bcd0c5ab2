#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use sev_proto::abi::{ApiVersion, Policy, Status};
use sev_proto::cert::sev::Certificate;
use sev_proto::hash::sha256;
use sev_proto::measurement::{launch_measurement_for_api, MeasureBlob};
use sev_proto::secret::build_launch_secret;
use sev_proto::session::OwnerSession;
use sev_psp::memory::{Region, VecBacking};
use sev_psp::rng::seeded_rng;
use sev_psp::{CreateOptions, Platform};

use super::*;

const API: ApiVersion = ApiVersion::new(1, 55);
const BUILD: u8 = 21;

fn template() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("platform");
        let options = CreateOptions {
            api: API,
            build: BUILD,
            ark_bits: 2048,
            max_asid: 16,
            min_sev_asid: 5,
            ..CreateOptions::default()
        };
        Platform::create(&path, options, seeded_rng(42)).unwrap();
        (tmp, path)
    })
    .1
}

/// A platform on a private copy of the template.
struct Fresh {
    _tmp: tempfile::TempDir,
    p: Platform,
}

fn fresh(seed: u64) -> Fresh {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("platform");
    sevm_testutil::copy_platform(template(), &path);
    let p = Platform::open(&path, seeded_rng(seed)).unwrap();
    Fresh { _tmp: tmp, p }
}

/// The program: `LEN` bytes of memory at `BASE` (the last page read-only),
/// descriptor 3 a `/dev/sev`.
struct Fake {
    mem: Mutex<Vec<u8>>,
    next: Mutex<u64>,
    vcpus: bool,
    limit: Option<u64>,
}

const BASE: u64 = 0x7f00_0000_0000;
const LEN: u64 = 0x40_0000;
/// Guest RAM inside the fake memory.
const RAM: u64 = BASE + 0x10_0000;
const RAM_LEN: u64 = 0x20_0000;
const READ_ONLY: u64 = BASE + LEN - PAGE_SIZE;
const SEV_FD: u32 = 3;
const TGID: u32 = 100;
const VM_FD: i32 = 7;

impl Fake {
    fn new() -> Self {
        Fake {
            mem: Mutex::new(vec![0u8; LEN as usize]),
            next: Mutex::new(BASE),
            vcpus: false,
            limit: None,
        }
    }

    /// Places `bytes` in the scratch area (below RAM), 16-byte aligned.
    fn put(&self, bytes: &[u8]) -> u64 {
        let mut next = self.next.lock().unwrap();
        let at = *next;
        *next = (at + bytes.len() as u64).next_multiple_of(16);
        assert!(*next <= RAM, "scratch area full");
        self.write(at, bytes).unwrap();
        at
    }

    fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        self.read(addr, len).unwrap()
    }

    fn range(addr: u64, len: usize) -> Result<std::ops::Range<usize>, Fault> {
        let off = addr.checked_sub(BASE).ok_or(Fault)?;
        let end = off.checked_add(len as u64).ok_or(Fault)?;
        if end > LEN {
            return Err(Fault);
        }
        Ok(off as usize..end as usize)
    }
}

impl UserMemory for Fake {
    fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, Fault> {
        let r = Self::range(addr, len)?;
        Ok(self.mem.lock().unwrap()[r].to_vec())
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fault> {
        let r = Self::range(addr, data.len())?;
        self.mem.lock().unwrap()[r].copy_from_slice(data);
        Ok(())
    }
}

impl Caller for Fake {
    fn pinnable(&self, addr: u64, len: u64, write: bool) -> bool {
        let Ok(r) = Self::range(addr, len as usize) else {
            return false;
        };
        !(write && r.end as u64 + BASE > READ_ONLY)
    }

    fn is_dev_sev(&self, fd: u32) -> bool {
        fd == SEV_FD
    }

    fn vcpus_created(&self) -> bool {
        self.vcpus
    }

    fn lock_limit_pages(&self) -> Option<u64> {
        self.limit
    }
}

/// `struct kvm_sev_cmd`: `id`, `data`, `error` preset, `sev_fd`.
fn sev_cmd(id: u32, data: u64, error: u32, sev_fd: u32) -> [u8; 24] {
    let mut c = [0u8; 24];
    c[0..4].copy_from_slice(&id.to_le_bytes());
    c[8..16].copy_from_slice(&data.to_le_bytes());
    c[16..20].copy_from_slice(&error.to_le_bytes());
    c[20..24].copy_from_slice(&sev_fd.to_le_bytes());
    c
}

/// One `KVM_MEMORY_ENCRYPT_OP`: the ioctl's result and the `error` field
/// copied back.
fn op(
    kvm: &mut KvmSev,
    p: &Platform,
    f: &Fake,
    id: u32,
    data: u64,
    sev_fd: u32,
) -> (Result<i64, Errno>, u32) {
    let at = f.put(&sev_cmd(id, data, 0xdead_beef, sev_fd));
    let r = kvm.ioctl(p, f, TGID, VM_FD, KVM_MEMORY_ENCRYPT_OP, at);
    (r, u32_at(&f.get(at, 24), 16))
}

fn region(
    kvm: &mut KvmSev,
    p: &Platform,
    f: &Fake,
    req: u32,
    addr: u64,
    size: u64,
) -> Result<i64, Errno> {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&addr.to_le_bytes());
    b[8..16].copy_from_slice(&size.to_le_bytes());
    let at = f.put(&b);
    kvm.ioctl(p, f, TGID, VM_FD, req, at)
}

fn le(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

struct Owner {
    session: OwnerSession,
    godh: Vec<u8>,
}

/// The guest owner's session for the platform's PDH (exported as
/// `sevctl export` would, the driver initialising the platform first).
fn owner(p: &Platform, policy: u32) -> Owner {
    if p.platform_status().unwrap().state == sev_proto::abi::PlatformState::Uninit {
        p.init(true).unwrap();
    }
    let (mut pdh, mut chain) = (vec![0; 0x824], vec![0; 0x186c]);
    p.pdh_cert_export(&mut pdh, &mut chain).unwrap();
    let pdh_key = *Certificate::decode(&pdh).unwrap().ec_public_key().unwrap();
    let mut rng = seeded_rng(9);
    let session = OwnerSession::new(&pdh_key, policy, &mut rng);
    let godh = Certificate::godh(&session.godh_public()).encode();
    Owner {
        session,
        godh: godh.to_vec(),
    }
}

/// LAUNCH_START params with the owner's blobs.
fn launch_start_params(f: &Fake, o: &Owner, policy: u32) -> u64 {
    let dh = f.put(&o.godh);
    let session = f.put(&o.session.session_buffer().to_bytes());
    f.put(&le(&[
        &0u32.to_le_bytes(),
        &policy.to_le_bytes(),
        &dh.to_le_bytes(),
        &(o.godh.len() as u32).to_le_bytes(),
        &[0; 4],
        &session.to_le_bytes(),
        &0x80u32.to_le_bytes(),
        &[0; 4],
    ]))
}

fn addr_len(addr: u64, len: u32) -> Vec<u8> {
    le(&[&addr.to_le_bytes(), &len.to_le_bytes(), &[0; 4]])
}

/// A firmware image of `len` bytes.
fn firmware(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
}

/// INIT, RAM registered, LAUNCH_START with the owner's session,
/// LAUNCH_UPDATE_DATA of `fw` at RAM, LAUNCH_MEASURE: the measure blob.
fn launch_to_measure(
    kvm: &mut KvmSev,
    p: &Platform,
    f: &Fake,
    o: &Owner,
    policy: u32,
    fw: &[u8],
) -> MeasureBlob {
    // The platform is initialised already: no firmware command, so `error`
    // comes back as it was.
    assert_eq!(op(kvm, p, f, cmd::INIT, 0, SEV_FD), (Ok(0), 0xdead_beef));
    assert_eq!(
        region(kvm, p, f, KVM_MEMORY_ENCRYPT_REG_REGION, RAM, RAM_LEN),
        Ok(0)
    );
    assert_eq!(
        kvm.vm(TGID, VM_FD).unwrap().pages_locked(),
        RAM_LEN / PAGE_SIZE
    );
    let params = launch_start_params(f, o, policy);
    assert_eq!(op(kvm, p, f, cmd::LAUNCH_START, params, SEV_FD), (Ok(0), 0));
    let handle = u32_at(&f.get(params, 4), 0);
    assert_ne!(handle, 0);
    assert_eq!(kvm.vm(TGID, VM_FD).unwrap().handle(), handle);
    f.write(RAM, fw).unwrap();
    let upd = f.put(&addr_len(RAM, fw.len() as u32));
    assert_eq!(op(kvm, p, f, cmd::LAUNCH_UPDATE_DATA, upd, 0), (Ok(0), 0));
    // The plaintext stays in the program's mapping (KVM runs the guest
    // unencrypted).
    assert_eq!(f.get(RAM, fw.len()), fw);
    // Length query: EIO with INVALID_LEN and the length written back.
    let q = f.put(&addr_len(0, 0));
    assert_eq!(
        op(kvm, p, f, cmd::LAUNCH_MEASURE, q, 0),
        (Err(libc::EIO), Status::InvalidLen.code())
    );
    assert_eq!(u32_at(&f.get(q, 16), 8), 48);
    let buf = f.put(&[0u8; 48]);
    let m = f.put(&addr_len(buf, 48));
    assert_eq!(op(kvm, p, f, cmd::LAUNCH_MEASURE, m, 0), (Ok(0), 0));
    assert_eq!(u32_at(&f.get(m, 16), 8), 48);
    MeasureBlob::decode(&f.get(buf, 48)).unwrap()
}

/// DBG_DECRYPT/DBG_ENCRYPT params: `len` bytes from `src` to `dst`.
fn dbg_params(f: &Fake, src: u64, dst: u64, len: u32) -> u64 {
    f.put(&le(&[
        &src.to_le_bytes(),
        &dst.to_le_bytes(),
        &len.to_le_bytes(),
        &[0; 4],
    ]))
}

/// A guest launched and finished on a fresh platform (`seed`):
/// [`launch_to_measure`] of a two-page firmware for an owner with policy 0,
/// then LAUNCH_FINISH.
struct Launched {
    fx: Fresh,
    f: Fake,
    kvm: KvmSev,
    fw: Vec<u8>,
}

fn launched(seed: u64) -> Launched {
    let fx = fresh(seed);
    let f = Fake::new();
    let mut kvm = KvmSev::new();
    let o = owner(&fx.p, 0);
    let fw = firmware(0x2000);
    launch_to_measure(&mut kvm, &fx.p, &f, &o, 0, &fw);
    assert_eq!(
        op(&mut kvm, &fx.p, &f, cmd::LAUNCH_FINISH, 0, 0),
        (Ok(0), 0)
    );
    Launched { fx, f, kvm, fw }
}

fn guest_status(kvm: &mut KvmSev, p: &Platform, f: &Fake) -> (u32, u32, u32) {
    let at = f.put(&[0u8; 12]);
    assert_eq!(op(kvm, p, f, cmd::GUEST_STATUS, at, 0), (Ok(0), 0));
    let b = f.get(at, 12);
    (u32_at(&b, 0), u32_at(&b, 4), u32_at(&b, 8))
}

#[test]
fn a_plain_sev_launch_measures_as_sevm_does_and_injects_the_secret() {
    let fx = fresh(1);
    let p = &fx.p;
    let f = Fake::new();
    let mut kvm = KvmSev::new();
    let policy = Policy::NODBG;
    let o = owner(p, policy);
    // Three pages and a bit: more than one firmware command would need if
    // the frames were not consecutive.
    let fw = firmware(0x3400);
    let blob = launch_to_measure(&mut kvm, p, &f, &o, policy, &fw);

    // The guest owner's expectation, from the same inputs.
    let ld = sha256(&fw);
    let tik = &o.session.keys().tik;
    let expected =
        launch_measurement_for_api(tik, API.major, API.minor, BUILD, policy, &ld, &blob.mnonce);
    assert_eq!(blob.measurement, expected);

    // sevm's emulated launch of the same image with the same session: the
    // same launch digest, so the same measurement for that MNONCE.
    // (A copy of the same platform: the same PDH.)
    let other = fresh(2);
    other.p.init(true).unwrap();
    let mem = VecBacking::new(&[Region {
        gpa: 0,
        len: 0x10_0000,
    }])
    .unwrap();
    sev_psp::memory::GuestBacking::write_plain(&mem, 0, &fw).unwrap();
    let h = other
        .p
        .launch_start(
            0,
            Policy::from_bits(policy),
            Some(&o.godh),
            Some(&o.session.session_buffer().to_bytes()),
        )
        .unwrap();
    other.p.activate_free_asid(h).unwrap();
    other
        .p
        .launch_update_data(h, &mem, 0, fw.len() as u32)
        .unwrap();
    let mut out = [0u8; 48];
    other.p.launch_measure(h, &mut out).unwrap();
    let sevm = MeasureBlob::decode(&out).unwrap();
    assert_eq!(
        launch_measurement_for_api(tik, API.major, API.minor, BUILD, policy, &ld, &sevm.mnonce),
        sevm.measurement
    );

    let (handle, pol, state) = guest_status(&mut kvm, p, &f);
    assert_eq!((pol, state), (policy, 2));
    assert_eq!(handle, kvm.vm(TGID, VM_FD).unwrap().handle());

    // LAUNCH_SECRET into guest RAM: the plaintext appears at that user
    // address.
    let secret: Vec<u8> = (0u8..64).collect();
    let (hdr, trans) =
        build_launch_secret(o.session.keys(), &[5; 16], &secret, Some(&blob.measurement));
    let hdr_at = f.put(&hdr.to_bytes());
    let trans_at = f.put(&trans);
    let dest = RAM + 0x10_0000 + 0x40;
    let params = f.put(&le(&[
        &addr_len(hdr_at, 0x34),
        &addr_len(dest, 64),
        &addr_len(trans_at, trans.len() as u32),
    ]));
    assert_eq!(
        op(&mut kvm, p, &f, cmd::LAUNCH_SECRET, params, 0),
        (Ok(0), 0)
    );
    assert_eq!(f.get(dest, 64), secret);

    // A tampered packet: the firmware's BAD_MEASUREMENT, nothing written.
    let mut bad = trans.clone();
    bad[0] ^= 1;
    let bad_at = f.put(&bad);
    let dest2 = dest + 0x100;
    let params = f.put(&le(&[
        &addr_len(hdr_at, 0x34),
        &addr_len(dest2, 64),
        &addr_len(bad_at, 64),
    ]));
    assert_eq!(
        op(&mut kvm, p, &f, cmd::LAUNCH_SECRET, params, 0),
        (Err(libc::EIO), Status::BadMeasurement.code())
    );
    assert_eq!(f.get(dest2, 64), vec![0u8; 64]);

    // NODBG: DBG_DECRYPT refused by the firmware.
    let out = f.put(&[0u8; 32]);
    let dbg = dbg_params(&f, RAM, out, 32);
    assert_eq!(
        op(&mut kvm, p, &f, cmd::DBG_DECRYPT, dbg, 0),
        (Err(libc::EIO), Status::PolicyFailure.code())
    );

    assert_eq!(op(&mut kvm, p, &f, cmd::LAUNCH_FINISH, 0, 0), (Ok(0), 0));
    assert_eq!(guest_status(&mut kvm, p, &f).2, 3);

    // The attestation report: length query, then the report.
    let q = f.put(&le(&[
        &[7u8; 16],
        &0u64.to_le_bytes(),
        &0u32.to_le_bytes(),
        &[0; 4],
    ]));
    assert_eq!(
        op(&mut kvm, p, &f, cmd::GET_ATTESTATION_REPORT, q, 0),
        (Err(libc::EIO), Status::InvalidLen.code())
    );
    let len = u32_at(&f.get(q, 32), 24);
    assert_eq!(len, 0xD0);
    let buf = f.put(&vec![0u8; len as usize]);
    let r = f.put(&le(&[
        &[7u8; 16],
        &buf.to_le_bytes(),
        &len.to_le_bytes(),
        &[0; 4],
    ]));
    assert_eq!(
        op(&mut kvm, p, &f, cmd::GET_ATTESTATION_REPORT, r, 0),
        (Ok(0), 0)
    );
    let report = f.get(buf, len as usize);
    assert_eq!(&report[..16], &[7u8; 16]);
    assert_eq!(&report[16..48], &ld);

    // Unregistering and releasing the VM: the guest is decommissioned.
    assert_eq!(
        region(
            &mut kvm,
            p,
            &f,
            KVM_MEMORY_ENCRYPT_UNREG_REGION,
            RAM,
            RAM_LEN
        ),
        Ok(0)
    );
    assert_eq!(kvm.vm(TGID, VM_FD).unwrap().pages_locked(), 0);
    kvm.release_process(p, TGID);
    assert!(kvm.vm(TGID, VM_FD).is_none());
    assert!(p.guest_status(handle).is_err());
}

#[test]
fn debug_commands_read_and_write_guest_memory_at_any_alignment() {
    let Launched { fx, f, mut kvm, fw } = launched(3);
    let p = &fx.p;
    // Decrypt 0x1234 bytes from an odd offset, across pages.
    let src = RAM + 5;
    let out = f.put(&vec![0u8; 0x1234]);
    let dbg = dbg_params(&f, src, out, 0x1234);
    assert_eq!(op(&mut kvm, p, &f, cmd::DBG_DECRYPT, dbg, 0), (Ok(0), 0));
    assert_eq!(f.get(out, 0x1234), fw[5..5 + 0x1234].to_vec());
    // Encrypt 32 aligned bytes, then 16 bytes at an aligned address.
    let data: Vec<u8> = (100u8..132).collect();
    let src = f.put(&data);
    let dst = RAM + 0x800;
    let dbg = dbg_params(&f, src, dst, 32);
    assert_eq!(op(&mut kvm, p, &f, cmd::DBG_ENCRYPT, dbg, 0), (Ok(0), 0));
    assert_eq!(f.get(dst, 32), data);
    // Unaligned length: read-modify-write of the block, neighbours kept.
    let dst = RAM + 0x900;
    let before = f.get(dst, 16);
    let dbg = dbg_params(&f, src, dst, 5);
    assert_eq!(op(&mut kvm, p, &f, cmd::DBG_ENCRYPT, dbg, 0), (Ok(0), 0));
    let after = f.get(dst, 16);
    assert_eq!(&after[..5], &data[..5]);
    assert_eq!(&after[5..], &before[5..]);
    // Length zero and a null destination: EINVAL.
    let dbg = dbg_params(&f, src, dst, 0);
    assert_eq!(
        op(&mut kvm, p, &f, cmd::DBG_DECRYPT, dbg, 0).0,
        Err(libc::EINVAL)
    );
    let dbg = dbg_params(&f, src, 0, 16);
    assert_eq!(
        op(&mut kvm, p, &f, cmd::DBG_DECRYPT, dbg, 0).0,
        Err(libc::EINVAL)
    );
}

#[test]
fn bad_calls_get_the_kernels_answers() {
    let fx = fresh(4);
    let p = &fx.p;
    let f = Fake::new();
    let mut kvm = KvmSev::new();
    // A null argument is KVM's "is SEV enabled" probe.
    assert_eq!(
        kvm.ioctl(p, &f, TGID, VM_FD, KVM_MEMORY_ENCRYPT_OP, 0),
        Ok(0)
    );
    // An unreadable argument.
    assert_eq!(
        kvm.ioctl(p, &f, TGID, VM_FD, KVM_MEMORY_ENCRYPT_OP, 8),
        Err(libc::EFAULT)
    );
    assert_eq!(
        kvm.ioctl(p, &f, TGID, VM_FD, KVM_MEMORY_ENCRYPT_REG_REGION, 8),
        Err(libc::EFAULT)
    );
    // Another request on the VM: not served here.
    assert_eq!(kvm.ioctl(p, &f, TGID, VM_FD, 0xAE41, 0), Err(libc::ENOTTY));
    // Before INIT.
    let params = f.put(&[0u8; 48]);
    for id in [
        cmd::LAUNCH_START,
        cmd::LAUNCH_UPDATE_DATA,
        cmd::LAUNCH_MEASURE,
        cmd::LAUNCH_FINISH,
        cmd::GUEST_STATUS,
    ] {
        assert_eq!(
            op(&mut kvm, p, &f, id, params, SEV_FD),
            (Err(libc::ENOTTY), 0xdead_beef),
            "{id}"
        );
    }
    assert_eq!(
        op(&mut kvm, p, &f, cmd::RECEIVE_UPDATE_DATA, params, SEV_FD).0,
        Err(libc::EINVAL)
    );
    assert_eq!(
        region(
            &mut kvm,
            p,
            &f,
            KVM_MEMORY_ENCRYPT_REG_REGION,
            RAM,
            PAGE_SIZE
        ),
        Err(libc::ENOTTY)
    );
    // Unknown ids: EINVAL, and the structure is not copied back.
    for id in [
        cmd::INIT2,
        cmd::CERT_EXPORT,
        cmd::SEND_UPDATE_VMSA,
        cmd::RECEIVE_UPDATE_VMSA,
        23,
        99,
        103,
        u32::MAX,
    ] {
        assert_eq!(
            op(&mut kvm, p, &f, id, params, SEV_FD),
            (Err(libc::EINVAL), 0xdead_beef),
            "{id}"
        );
    }
    // Not offered: SEV-ES; SNP on a VM of the default type.
    assert_eq!(
        op(&mut kvm, p, &f, cmd::ES_INIT, 0, SEV_FD).0,
        Err(libc::ENOTTY)
    );
    assert_eq!(
        op(&mut kvm, p, &f, cmd::SNP_LAUNCH_START, params, SEV_FD).0,
        Err(libc::ENOTTY)
    );
    assert_eq!(
        op(&mut kvm, p, &f, cmd::SNP_LAUNCH_UPDATE, params, SEV_FD).0,
        Err(libc::EINVAL)
    );
    // INIT after vCPUs exist, and twice.
    let with_vcpus = Fake {
        vcpus: true,
        ..Fake::new()
    };
    assert_eq!(
        op(&mut kvm, p, &with_vcpus, cmd::INIT, 0, SEV_FD).0,
        Err(libc::EINVAL)
    );
    assert_eq!(op(&mut kvm, p, &f, cmd::INIT, 0, SEV_FD), (Ok(0), 0));
    assert_eq!(
        op(&mut kvm, p, &f, cmd::INIT, 0, SEV_FD).0,
        Err(libc::EINVAL)
    );
    assert_eq!(
        op(&mut kvm, p, &f, cmd::LAUNCH_UPDATE_VMSA, 0, SEV_FD).0,
        Err(libc::ENOTTY)
    );

    // LAUNCH_START: a descriptor that is not /dev/sev; blobs too large or
    // at a null address; the firmware's refusal of a bad GODH.
    let o = owner(p, 0);
    let good = launch_start_params(&f, &o, 0);
    assert_eq!(
        op(&mut kvm, p, &f, cmd::LAUNCH_START, good, 4).0,
        Err(libc::EBADF)
    );
    let big = f.put(&le(&[
        &[0u8; 8],
        &f.put(&[1]).to_le_bytes(),
        &0x4001u32.to_le_bytes(),
        &[0u8; 20],
    ]));
    assert_eq!(
        op(&mut kvm, p, &f, cmd::LAUNCH_START, big, SEV_FD).0,
        Err(libc::EINVAL)
    );
    let null = f.put(&le(&[
        &[0u8; 24],
        &0u64.to_le_bytes(),
        &0x80u32.to_le_bytes(),
        &[0u8; 4],
    ]));
    assert_eq!(
        op(&mut kvm, p, &f, cmd::LAUNCH_START, null, SEV_FD),
        (Ok(0), 0),
        "both blobs absent: the firmware's own keys"
    );
    kvm.release(p, TGID, VM_FD);
    // The platform is initialised already: no firmware command, `error`
    // comes back as it was.
    assert_eq!(
        op(&mut kvm, p, &f, cmd::INIT, 0, SEV_FD),
        (Ok(0), 0xdead_beef)
    );
    let mut godh = o.godh.clone();
    godh[0x10] ^= 0xff;
    let bad = Owner {
        session: o.session,
        godh,
    };
    let params = launch_start_params(&f, &bad, 0);
    let (r, error) = op(&mut kvm, p, &f, cmd::LAUNCH_START, params, SEV_FD);
    assert_eq!(r, Err(libc::EIO));
    assert_ne!(error, 0);
    assert_ne!(error, 0xdead_beef);

    // Before LAUNCH_START the saved descriptor is 0: not /dev/sev.
    let upd = f.put(&addr_len(RAM, 4096));
    assert_eq!(
        op(&mut kvm, p, &f, cmd::LAUNCH_UPDATE_DATA, upd, 0).0,
        Err(libc::EBADF)
    );
    assert_eq!(
        op(&mut kvm, p, &f, cmd::LAUNCH_START, good, SEV_FD),
        (Ok(0), 0)
    );

    // Pinning: empty, wrapping, unmapped, read-only, over the lock limit.
    for (addr, len, errno) in [
        (RAM, 0, libc::EINVAL),
        (u64::MAX - 10, 100, libc::EINVAL),
        (BASE + LEN, 4096, libc::ENOMEM),
        (READ_ONLY, 16, libc::ENOMEM),
    ] {
        let upd = f.put(&addr_len(addr, len));
        assert_eq!(
            op(&mut kvm, p, &f, cmd::LAUNCH_UPDATE_DATA, upd, 0).0,
            Err(errno),
            "{addr:#x}+{len:#x}"
        );
    }
    let limited = Fake {
        limit: Some(2),
        ..Fake::new()
    };
    let upd = limited.put(&addr_len(RAM, 3 * 4096));
    let at = limited.put(&sev_cmd(cmd::LAUNCH_UPDATE_DATA, upd, 0, 0));
    assert_eq!(
        kvm.ioctl(p, &limited, TGID, VM_FD, KVM_MEMORY_ENCRYPT_OP, at),
        Err(libc::ENOMEM)
    );
    assert_eq!(
        region(
            &mut kvm,
            p,
            &f,
            KVM_MEMORY_ENCRYPT_REG_REGION,
            READ_ONLY,
            16
        ),
        Err(libc::ENOMEM)
    );
    // UNREG of a region never registered (or with another size).
    assert_eq!(
        region(&mut kvm, p, &f, KVM_MEMORY_ENCRYPT_REG_REGION, RAM, RAM_LEN),
        Ok(0)
    );
    assert_eq!(
        region(
            &mut kvm,
            p,
            &f,
            KVM_MEMORY_ENCRYPT_UNREG_REGION,
            RAM,
            PAGE_SIZE
        ),
        Err(libc::EINVAL)
    );

    // The firmware's checks come back as EIO with its status: a secret
    // before the measurement; a misaligned update.
    let params = f.put(&le(&[
        &addr_len(f.put(&[0u8; 0x34]), 0x34),
        &addr_len(RAM, 16),
        &addr_len(f.put(&[0u8; 16]), 16),
    ]));
    assert_eq!(
        op(&mut kvm, p, &f, cmd::LAUNCH_SECRET, params, 0),
        (Err(libc::EIO), Status::InvalidGuestState.code())
    );
    let upd = f.put(&addr_len(RAM + 8, 16));
    assert_eq!(
        op(&mut kvm, p, &f, cmd::LAUNCH_UPDATE_DATA, upd, 0),
        (Err(libc::EIO), Status::InvalidAddress.code())
    );
    // LAUNCH_MEASURE: a buffer above the blob limit; one too small.
    let m = f.put(&addr_len(RAM, 0x4001));
    assert_eq!(
        op(&mut kvm, p, &f, cmd::LAUNCH_MEASURE, m, 0).0,
        Err(libc::EINVAL)
    );
    let m = f.put(&addr_len(RAM, 16));
    assert_eq!(
        op(&mut kvm, p, &f, cmd::LAUNCH_MEASURE, m, 0),
        (Err(libc::EIO), Status::InvalidLen.code())
    );
    // A secret whose destination pages got non-consecutive frames: EINVAL.
    let first = f.put(&addr_len(RAM + RAM_LEN + 0x2000, 16));
    assert_eq!(
        op(&mut kvm, p, &f, cmd::LAUNCH_UPDATE_DATA, first, 0),
        (Ok(0), 0)
    );
    let params = f.put(&le(&[
        &addr_len(f.put(&[0u8; 0x34]), 0x34),
        &addr_len(RAM + RAM_LEN + 0x1ff0, 32),
        &addr_len(f.put(&[0u8; 32]), 32),
    ]));
    assert_eq!(
        op(&mut kvm, p, &f, cmd::LAUNCH_SECRET, params, 0).0,
        Err(libc::EINVAL)
    );
}

#[test]
fn frames_are_stable_and_consecutive_within_a_command() {
    let mut m = FrameMap::default();
    let a = m.frames(0x10000, 4).unwrap();
    assert_eq!(
        a,
        vec![Chunk {
            hva: 0x10000,
            pa: 0,
            pages: 4
        }]
    );
    // Overlapping the end: the known pages keep their frames, new ones
    // follow.
    let b = m.frames(0x12000, 4).unwrap();
    assert_eq!(
        b,
        vec![Chunk {
            hva: 0x12000,
            pa: 0x2000,
            pages: 4
        }]
    );
    // A gap before a known run: two pieces, not consecutive.
    let c = m.frames(0x0e000, 3).unwrap();
    assert_eq!(
        c,
        vec![
            Chunk {
                hva: 0x0e000,
                pa: 0x6000,
                pages: 2
            },
            Chunk {
                hva: 0x10000,
                pa: 0,
                pages: 1
            }
        ]
    );
    assert_eq!(m.translate(0x6ff0, 0x20).unwrap(), vec![(0x0eff0, 0x20)]);
    // Across two runs.
    assert_eq!(
        m.translate(0x3ff0, 0x20).unwrap(),
        vec![(0x13ff0, 0x10), (0x14000, 0x10)]
    );
    assert!(m.translate(0x8000, 1).is_err());
    assert_eq!(m.frames(PAGE_MASK, 2), Err(libc::EINVAL));
    let mut full = FrameMap::default();
    assert_eq!(
        full.frames(0, PHYS_SPACE / PAGE_SIZE + 1),
        Err(libc::ENOMEM)
    );
}

#[test]
fn a_guest_is_sent_and_received_between_two_vms_with_the_same_layout() {
    let Launched {
        fx,
        f: src,
        mut kvm,
        fw,
    } = launched(5);
    let p = &fx.p;

    // The target platform's certificates (here the same platform).
    let (mut pdh, mut chain) = (vec![0; 0x824], vec![0; 0x186c]);
    p.pdh_cert_export(&mut pdh, &mut chain).unwrap();
    let (ask, ark) = p.amd_chain();
    let amd = [ask, ark].concat();
    let blob = |f: &Fake, b: &[u8]| (f.put(b), b.len() as u32);
    // SEND_START: the session length query, then the session.
    let q = src.put(&[0u8; 72]);
    assert_eq!(
        op(&mut kvm, p, &src, cmd::SEND_START, q, 0),
        (Err(libc::EIO), Status::InvalidLen.code())
    );
    assert_eq!(u32_at(&src.get(q, 72), 64), 0x80);
    let (pdh_at, pdh_len) = blob(&src, &pdh);
    let (chain_at, chain_len) = blob(&src, &chain);
    let (amd_at, amd_len) = blob(&src, &amd);
    let session_at = src.put(&[0u8; 0x80]);
    let start = src.put(&le(&[
        &[0u8; 8],
        &addr_len(pdh_at, pdh_len),
        &addr_len(chain_at, chain_len),
        &addr_len(amd_at, amd_len),
        &addr_len(session_at, 0x80),
    ]));
    assert_eq!(op(&mut kvm, p, &src, cmd::SEND_START, start, 0), (Ok(0), 0));
    let session = src.get(session_at, 0x80);
    assert_ne!(session, vec![0u8; 0x80]);
    // SEND_UPDATE_DATA: the lengths query, then the first page.
    let q = src.put(&[0u8; 48]);
    assert_eq!(
        op(&mut kvm, p, &src, cmd::SEND_UPDATE_DATA, q, 0),
        (Err(libc::EIO), Status::InvalidLen.code())
    );
    assert_eq!(u32_at(&src.get(q, 48), 8), 0x34);
    let (hdr_at, trans_at) = (src.put(&[0u8; 0x34]), src.put(&[0u8; 4096]));
    let upd = src.put(&le(&[
        &addr_len(hdr_at, 0x34),
        &addr_len(RAM, 4096),
        &addr_len(trans_at, 4096),
    ]));
    assert_eq!(
        op(&mut kvm, p, &src, cmd::SEND_UPDATE_DATA, upd, 0),
        (Ok(0), 0)
    );
    let (hdr, trans) = (src.get(hdr_at, 0x34), src.get(trans_at, 4096));
    assert_ne!(trans, fw[..4096].to_vec(), "sent in the clear");
    // Across a page: EINVAL.
    let cross = src.put(&le(&[
        &addr_len(hdr_at, 0x34),
        &addr_len(RAM + 16, 4096),
        &addr_len(trans_at, 4096),
    ]));
    assert_eq!(
        op(&mut kvm, p, &src, cmd::SEND_UPDATE_DATA, cross, 0).0,
        Err(libc::EINVAL)
    );
    assert_eq!(op(&mut kvm, p, &src, cmd::SEND_FINISH, 0, 0), (Ok(0), 0));
    assert_eq!(guest_status(&mut kvm, p, &src).2, 6);

    // The target: another process, its RAM registered as the source's was.
    let dst = Fake::new();
    let dst_op = |kvm: &mut KvmSev, id: u32, data: u64| {
        let at = dst.put(&sev_cmd(id, data, 0, SEV_FD));
        let r = kvm.ioctl(p, &dst, TGID + 1, VM_FD, KVM_MEMORY_ENCRYPT_OP, at);
        (r, u32_at(&dst.get(at, 24), 16))
    };
    assert_eq!(dst_op(&mut kvm, cmd::INIT, 0).0, Ok(0));
    let reg = dst.put(&le(&[&RAM.to_le_bytes(), &RAM_LEN.to_le_bytes()]));
    assert_eq!(
        kvm.ioctl(p, &dst, TGID + 1, VM_FD, KVM_MEMORY_ENCRYPT_REG_REGION, reg),
        Ok(0)
    );
    let (pdh_at, _) = blob(&dst, &pdh);
    let session_at = dst.put(&session);
    let rs = dst.put(&le(&[
        &[0u8; 8],
        &addr_len(pdh_at, 0x824),
        &addr_len(session_at, 0x80),
    ]));
    assert_eq!(dst_op(&mut kvm, cmd::RECEIVE_START, rs), (Ok(0), 0));
    assert_ne!(u32_at(&dst.get(rs, 4), 0), 0);
    let (hdr_at, trans_at) = (dst.put(&hdr), dst.put(&trans));
    let ru = dst.put(&le(&[
        &addr_len(hdr_at, 0x34),
        &addr_len(RAM, 4096),
        &addr_len(trans_at, 4096),
    ]));
    assert_eq!(dst_op(&mut kvm, cmd::RECEIVE_UPDATE_DATA, ru), (Ok(0), 0));
    assert_eq!(dst.get(RAM, 4096), fw[..4096].to_vec());
    assert_eq!(dst_op(&mut kvm, cmd::RECEIVE_FINISH, 0), (Ok(0), 0));
}

/// Random commands on random structures: every answer is one KVM gives,
/// nothing panics, and the VM stays usable.
#[test]
fn random_commands_get_kvm_answers_and_never_panic() {
    let fx = fresh(6);
    let p = &fx.p;
    let f = Fake::new();
    let mut kvm = KvmSev::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let known = [
        libc::EINVAL,
        libc::ENOTTY,
        libc::EFAULT,
        libc::ENOMEM,
        libc::EBADF,
        libc::EIO,
    ];
    let mut served = 0;
    for i in 0..1500 {
        let id = match next() % 4 {
            0 => (next() % 24) as u32,
            1 => 100 + (next() % 4) as u32,
            2 => next() as u32,
            _ => [
                cmd::INIT,
                cmd::LAUNCH_START,
                cmd::LAUNCH_UPDATE_DATA,
                cmd::LAUNCH_MEASURE,
            ][(next() % 4) as usize],
        };
        // The structure: random bytes whose address fields point into the
        // scratch area, at RAM, or anywhere.
        let mut data = [0u8; 72];
        for chunk in data.chunks_mut(8) {
            let v = match next() % 4 {
                0 => RAM + (next() % RAM_LEN),
                1 => next() % 0x5000,
                2 => next(),
                _ => BASE + (next() % 0x1000),
            };
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        let at = match next() % 8 {
            0 => next(),
            _ => f.put(&data),
        };
        let sev_fd = if next() % 4 == 0 { 4 } else { SEV_FD };
        let (r, _) = op(&mut kvm, p, &f, id, at, sev_fd);
        match r {
            Ok(v) => {
                assert_eq!(v, 0);
                served += 1;
            }
            Err(e) => assert!(known.contains(&e), "iteration {i}: id {id}: errno {e}"),
        }
        let req = [
            KVM_MEMORY_ENCRYPT_REG_REGION,
            KVM_MEMORY_ENCRYPT_UNREG_REGION,
        ][(next() % 2) as usize];
        let r = region(
            &mut kvm,
            p,
            &f,
            req,
            RAM + (next() % RAM_LEN),
            next() % 0x10_0000,
        );
        assert!(
            r.is_ok() || known.contains(&r.unwrap_err()),
            "iteration {i}: {r:?}"
        );
    }
    assert!(served > 0);
    // Still usable: the guest's status can be asked whenever it exists.
    if kvm.vm(TGID, VM_FD).is_some_and(|v| v.handle() != 0) {
        let at = f.put(&[0u8; 12]);
        assert_eq!(op(&mut kvm, p, &f, cmd::GUEST_STATUS, at, SEV_FD).0, Ok(0));
    }
}
