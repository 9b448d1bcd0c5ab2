//! `SEV_ISSUE_CMD` on `/dev/sev`, served the way Linux's driver serves it
//! (docs/guide/sev-emulate.md#dev-sev).
//!
//! [`issue_cmd`] takes the program's `struct sev_issue_cmd` pointer and a
//! [`UserMemory`] through which it copies the sub-command's structures and
//! blobs in and out, as the driver's `copy_from_user`/`copy_to_user` do, and
//! returns what the `ioctl` returns: success, or an errno. A firmware
//! failure is `EIO` with the firmware status in the `error` field; the
//! required lengths of a too-small (or absent) buffer are written back for
//! PEK_CSR, PDH_CERT_EXPORT and GET_ID2 (docs/protocol/linux.md#dev-sev).
//!
//! Nothing here is seccomp-specific: the unit tests serve a byte array.

use sev_proto::abi::{Owner, PlatformState};
use sev_psp::snp::buffers::SnpPlatformState;
use sev_psp::snp::{SnpCommit, SnpConfig};
use sev_psp::{FwError, Platform};

/// Largest blob the driver copies in or out for one buffer
/// (`SEV_FW_BLOB_MAX_SIZE`).
pub const SEV_FW_BLOB_MAX_SIZE: u32 = 0x4000;

/// Largest buffer the driver allocates for GET_ID2
/// (`1 << (PAGE_SHIFT + MAX_PAGE_ORDER)`): above it, ENOMEM.
pub const MAX_KMALLOC: u32 = 1 << 22;

/// Length of `struct sev_issue_cmd`.
const ISSUE_CMD_LEN: usize = 16;
/// Length of the chip id GET_ID/GET_ID2 return.
const ID_LEN: usize = 64;
/// Length of the SEV certificates (PEK CSR, PDH).
const CERT_LEN: u32 = 0x824;
/// Length of PEK ‖ OCA ‖ CEK.
const CHAIN_LEN: u32 = 3 * CERT_LEN;

/// `/dev/sev` sub-command ids (include/uapi/linux/psp-sev.h): sev-host's
/// table.
pub use sev_host::abi::sev_cmd as cmd;

/// A copy to or from the program's memory failed (the driver's `EFAULT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault;

/// The calling program's address space, as the driver sees it through
/// `copy_from_user`/`copy_to_user`.
pub trait UserMemory {
    /// Copies `len` bytes at `addr` in; a partial copy is a [`Fault`].
    fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, Fault>;
    /// Copies `data` out to `addr`; a partial copy is a [`Fault`].
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fault>;
}

/// An ioctl failure: the (positive) errno the program sees.
pub type Errno = i32;

/// The command's outcome inside the driver: errno, with `error` set on EIO.
type Served = Result<(), Errno>;

pub(crate) fn efault(_: Fault) -> Errno {
    libc::EFAULT
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

/// Serves one `ioctl(fd, SEV_ISSUE_CMD, argp)` on a `/dev/sev` opened for
/// writing (`writable`) or read-only; `Ok(())` is the ioctl's 0.
///
/// Commands run one at a time (the driver's `sev_cmd_mutex`): the caller
/// serialises calls.
pub fn issue_cmd(
    platform: &Platform,
    mem: &dyn UserMemory,
    argp: u64,
    writable: bool,
) -> Result<(), Errno> {
    let raw = mem.read(argp, ISSUE_CMD_LEN).map_err(efault)?;
    let id = u32_at(&raw, 0);
    let data = u64_at(&raw, 4);
    let mut d = Driver {
        platform,
        mem,
        data,
        writable,
        // The driver's copy of the caller's `error`: a firmware call
        // overwrites it, nothing else does.
        error: u32_at(&raw, 12),
    };
    let served = match id {
        cmd::FACTORY_RESET => d.factory_reset(),
        cmd::PLATFORM_STATUS => d.platform_status(),
        cmd::PEK_GEN => d.pek_pdh_gen(true),
        cmd::PDH_GEN => d.pek_pdh_gen(false),
        cmd::PEK_CSR => d.pek_csr(),
        cmd::PDH_CERT_EXPORT => d.pdh_cert_export(),
        cmd::PEK_CERT_IMPORT => d.pek_cert_import(),
        cmd::GET_ID => d.get_id(),
        cmd::GET_ID2 => d.get_id2(),
        cmd::SNP_PLATFORM_STATUS => d.snp_platform_status(),
        cmd::SNP_COMMIT => d.snp_commit(),
        cmd::SNP_SET_CONFIG => d.snp_set_config(),
        cmd::SNP_VLEK_LOAD => d.snp_vlek_load(),
        // Unknown: EINVAL, and the structure is not copied back.
        _ => return Err(libc::EINVAL),
    };
    if served.is_ok() {
        // Every command that succeeds ran the firmware last with success.
        d.error = 0;
    }
    let mut out = [0u8; ISSUE_CMD_LEN];
    out[0..4].copy_from_slice(&id.to_le_bytes());
    out[4..12].copy_from_slice(&data.to_le_bytes());
    out[12..16].copy_from_slice(&d.error.to_le_bytes());
    mem.write(argp, &out).map_err(efault)?;
    served
}

/// One command in progress: the `struct sev_issue_cmd` fields the driver
/// works on.
struct Driver<'a> {
    platform: &'a Platform,
    mem: &'a dyn UserMemory,
    data: u64,
    writable: bool,
    error: u32,
}

impl Driver<'_> {
    /// A firmware failure: its status into `error`, EIO.
    fn fw(&mut self, e: FwError) -> Errno {
        log::debug!("firmware: {e}");
        self.error = e.status.code();
        libc::EIO
    }

    /// The firmware's outcome `r` of a command whose 12-byte `input` ends
    /// in a length: the length written (`fallback` when it is no u32), or
    /// the one the firmware needs, is written back there first; then the
    /// length, or the failure.
    fn length_back(
        &mut self,
        r: Result<usize, FwError>,
        fallback: u32,
        mut input: Vec<u8>,
    ) -> Result<u32, Errno> {
        let (result, out_len) = match r {
            Ok(n) => (Ok(()), u32::try_from(n).unwrap_or(fallback)),
            Err(e) => {
                let required = e.required_len.map_or(0, |r| r.first);
                (Err(self.fw(e)), required)
            }
        };
        input[8..12].copy_from_slice(&out_len.to_le_bytes());
        self.mem.write(self.data, &input).map_err(efault)?;
        result.map(|()| out_len)
    }

    fn require_writable(&self) -> Served {
        if self.writable {
            Ok(())
        } else {
            Err(libc::EPERM)
        }
    }

    /// The platform state, as the driver tracks it (UNINIT or not).
    fn sev_state(&mut self) -> Result<PlatformState, Errno> {
        self.platform
            .platform_status()
            .map(|s| s.state)
            .map_err(|e| self.fw(e))
    }

    /// The driver's move to INIT before a command that needs it
    /// (docs/protocol/choices.md#u75): INIT with SEV-ES when the platform
    /// offers it, as the driver does; the platform stays in INIT.
    fn ensure_init(&mut self) -> Served {
        if self.sev_state()? == PlatformState::Uninit {
            self.require_writable()?;
            let es = self.platform.config().es_capable;
            self.platform.init(es).map_err(|e| self.fw(e))?;
        }
        Ok(())
    }

    fn read_data(&self, len: usize) -> Result<Vec<u8>, Errno> {
        self.mem.read(self.data, len).map_err(efault)
    }

    fn factory_reset(&mut self) -> Served {
        self.require_writable()?;
        match self.sev_state()? {
            PlatformState::Working => return Err(libc::EBUSY),
            PlatformState::Init => self.platform.shutdown().map_err(|e| self.fw(e))?,
            PlatformState::Uninit => {}
        }
        self.platform.platform_reset().map_err(|e| self.fw(e))
    }

    fn platform_status(&mut self) -> Served {
        let s = self.platform.platform_status().map_err(|e| self.fw(e))?;
        let mut flags = 0u32;
        if s.owner == Owner::External {
            flags |= 1;
        }
        if s.es_enabled {
            flags |= 1 << 8;
        }
        let mut out = [0u8; 12];
        out[0] = s.api.major;
        out[1] = s.api.minor;
        out[2] = s.state as u8;
        out[3..7].copy_from_slice(&flags.to_le_bytes());
        out[7] = s.build;
        out[8..12].copy_from_slice(&s.guest_count.to_le_bytes());
        self.mem.write(self.data, &out).map_err(efault)
    }

    fn pek_pdh_gen(&mut self, pek: bool) -> Served {
        self.require_writable()?;
        self.ensure_init()?;
        let r = if pek {
            self.platform.pek_gen()
        } else {
            self.platform.pdh_gen()
        };
        r.map_err(|e| self.fw(e))
    }

    fn pek_csr(&mut self) -> Served {
        self.require_writable()?;
        let input = self.read_data(12)?;
        let address = u64_at(&input, 0);
        let length = u32_at(&input, 8);
        // Zero address or length: a length query (the firmware sees 0).
        let query = address == 0 || length == 0;
        if !query && length > SEV_FW_BLOB_MAX_SIZE {
            return Err(libc::EFAULT);
        }
        self.ensure_init()?;
        let mut blob = vec![0u8; if query { 0 } else { length as usize }];
        let r = self.platform.pek_csr(&mut blob);
        let out_len = self.length_back(r, CERT_LEN, input)?;
        let written = blob.get(..out_len as usize).unwrap_or(&blob);
        self.mem.write(address, written).map_err(efault)
    }

    fn pdh_cert_export(&mut self) -> Served {
        if self.sev_state()? == PlatformState::Uninit {
            self.require_writable()?;
            self.ensure_init()?;
        }
        let input = self.read_data(24)?;
        let pdh_addr = u64_at(&input, 0);
        let pdh_len = u32_at(&input, 8);
        let chain_addr = u64_at(&input, 12);
        let chain_len = u32_at(&input, 20);
        let query = pdh_addr == 0 || pdh_len == 0 || chain_addr == 0;
        if !query && (pdh_len > SEV_FW_BLOB_MAX_SIZE || chain_len > SEV_FW_BLOB_MAX_SIZE) {
            return Err(libc::EFAULT);
        }
        let (mut pdh, mut chain) = if query {
            (Vec::new(), Vec::new())
        } else {
            (vec![0u8; pdh_len as usize], vec![0u8; chain_len as usize])
        };
        let (result, lens) = match self.platform.pdh_cert_export(&mut pdh, &mut chain) {
            Ok((p, c)) => (
                Ok(()),
                (
                    u32::try_from(p).unwrap_or(CERT_LEN),
                    u32::try_from(c).unwrap_or(CHAIN_LEN),
                ),
            ),
            Err(e) => {
                let r = e.required_len;
                let lens = (
                    r.map_or(0, |r| r.first),
                    r.and_then(|r| r.second).unwrap_or(0),
                );
                (Err(self.fw(e)), lens)
            }
        };
        let mut back = input;
        back[8..12].copy_from_slice(&lens.0.to_le_bytes());
        back[20..24].copy_from_slice(&lens.1.to_le_bytes());
        self.mem.write(self.data, &back).map_err(efault)?;
        result?;
        let p = pdh.get(..lens.0 as usize).unwrap_or(&pdh);
        let c = chain.get(..lens.1 as usize).unwrap_or(&chain);
        self.mem.write(pdh_addr, p).map_err(efault)?;
        self.mem.write(chain_addr, c).map_err(efault)
    }

    /// Copies a certificate in as the driver's `psp_copy_user_blob`: a null
    /// address or a length above the blob limit is EINVAL.
    fn user_blob(&self, addr: u64, len: u32) -> Result<Vec<u8>, Errno> {
        if addr == 0 || len > SEV_FW_BLOB_MAX_SIZE {
            return Err(libc::EINVAL);
        }
        self.mem.read(addr, len as usize).map_err(efault)
    }

    fn pek_cert_import(&mut self) -> Served {
        self.require_writable()?;
        let input = self.read_data(24)?;
        let pek = self.user_blob(u64_at(&input, 0), u32_at(&input, 8))?;
        let oca = self.user_blob(u64_at(&input, 12), u32_at(&input, 20))?;
        self.ensure_init()?;
        self.platform
            .pek_cert_import(&pek, &oca)
            .map_err(|e| self.fw(e))
    }

    /// The deprecated GET_ID: the firmware is given the 128 bytes of
    /// `struct sev_user_data_get_id` and what it writes (64 bytes on a
    /// one-socket platform) is copied out.
    fn get_id(&mut self) -> Served {
        let mut id = [0u8; 2 * ID_LEN];
        let n = self.platform.get_id(&mut id).map_err(|e| self.fw(e))?;
        let written = id.get(..n).unwrap_or(&id);
        self.mem.write(self.data, written).map_err(efault)
    }

    fn get_id2(&mut self) -> Served {
        let input = self.read_data(12)?;
        let address = u64_at(&input, 0);
        let length = u32_at(&input, 8);
        let query = address == 0 || length == 0;
        // The driver allocates the caller's length for the firmware, which
        // fails for more than the page allocator's largest block.
        if !query && length > MAX_KMALLOC {
            return Err(libc::ENOMEM);
        }
        // The firmware writes 64 bytes whatever the buffer's size: only that
        // much is kept here (docs/protocol/choices.md#u77).
        let mut id = vec![
            0u8;
            if query {
                0
            } else {
                (length as usize).min(ID_LEN)
            }
        ];
        if !query && length as usize > ID_LEN {
            id.resize(ID_LEN, 0);
        }
        let r = self.platform.get_id(&mut id);
        self.length_back(r, 0, input)?;
        self.mem.write(address, &id).map_err(efault)
    }

    /// SNP commands need SNP initialised by the driver
    /// (docs/protocol/choices.md#u76).
    fn ensure_snp_init(&mut self) -> Served {
        let s = self
            .platform
            .snp_platform_status()
            .map_err(|e| self.fw(e))?;
        if s.state == SnpPlatformState::Init {
            return Ok(());
        }
        // The driver initialises SNP before SEV; an SEV platform INITed
        // without SNP and without guests is shut down first and INITed
        // again after SNP_INIT, as the driver's init sequence would have
        // left it. With guests it cannot be: EINVAL, as a driver that has
        // not initialised SNP answers.
        let sev = self.platform.platform_status().map_err(|e| self.fw(e))?;
        let reinit = match sev.state {
            PlatformState::Uninit => None,
            PlatformState::Init if sev.guest_count == 0 => Some(sev.es_enabled),
            _ => return Err(libc::EINVAL),
        };
        if reinit.is_some() {
            self.platform.shutdown().map_err(|e| self.fw(e))?;
        }
        let snp = self.platform.snp_init().map_err(|e| {
            log::debug!("SNP_INIT on behalf of the driver: {e}");
            libc::EINVAL
        });
        if let Some(es) = reinit {
            self.platform.init(es).map_err(|e| self.fw(e))?;
        }
        snp
    }

    fn snp_platform_status(&mut self) -> Served {
        if self.data == 0 {
            return Err(libc::EINVAL);
        }
        self.ensure_snp_init()?;
        let s = self
            .platform
            .snp_platform_status()
            .map_err(|e| self.fw(e))?;
        let mut out = [0u8; 32];
        out[0] = s.api.major;
        out[1] = s.api.minor;
        out[2] = s.state as u8;
        out[3] = u8::from(s.rmp_initialized);
        out[4..8].copy_from_slice(&s.build_id.to_le_bytes());
        out[8..12].copy_from_slice(&s.flags.to_le_bytes());
        out[12..16].copy_from_slice(&s.guest_count.to_le_bytes());
        out[16..24].copy_from_slice(&s.current_tcb.to_le_bytes());
        out[24..32].copy_from_slice(&s.reported_tcb.to_le_bytes());
        self.mem.write(self.data, &out).map_err(efault)
    }

    fn snp_commit(&mut self) -> Served {
        self.ensure_snp_init()?;
        self.platform.snp_commit(&SnpCommit).map_err(|e| self.fw(e))
    }

    fn snp_set_config(&mut self) -> Served {
        self.require_writable()?;
        if self.data == 0 {
            return Err(libc::EINVAL);
        }
        let buf = self.read_data(64)?;
        self.ensure_snp_init()?;
        let config = SnpConfig::decode(&buf).map_err(|e| self.fw(e))?;
        self.platform.snp_config(&config).map_err(|e| self.fw(e))
    }

    /// SNP_VLEK_LOAD: the driver's own checks, then the firmware's answer of
    /// a platform without a VLEK service (docs/protocol/choices.md#u77).
    fn snp_vlek_load(&mut self) -> Served {
        self.require_writable()?;
        if self.data == 0 {
            return Err(libc::EINVAL);
        }
        let input = self.read_data(16)?;
        if u32_at(&input, 0) != 16 || input.get(4) != Some(&0) {
            return Err(libc::EINVAL);
        }
        self.mem
            .read(u64_at(&input, 8), sev_psp_vlek_len())
            .map_err(efault)?;
        self.ensure_snp_init()?;
        self.error = sev_proto::abi::Status::InvalidCommand.code();
        Err(libc::EIO)
    }
}

/// Size of the wrapped VLEK SNP_VLEK_LOAD copies in.
const fn sev_psp_vlek_len() -> usize {
    432
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use sev_psp::rng::seeded_rng;
    use sev_psp::CreateOptions;

    use super::*;

    /// The program's memory: `bytes` mapped at `BASE`, nothing elsewhere.
    struct Mem {
        bytes: RefCell<Vec<u8>>,
    }

    const BASE: u64 = 0x10_0000;
    const ARG: u64 = BASE;
    const DATA: u64 = BASE + 0x100;
    const BUF: u64 = BASE + 0x1000;
    const BUF2: u64 = BASE + 0x3000;

    impl Mem {
        fn new() -> Self {
            Mem {
                bytes: RefCell::new(vec![0; 0x8000]),
            }
        }

        fn range(&self, addr: u64, len: usize) -> Result<std::ops::Range<usize>, Fault> {
            let start = usize::try_from(addr.checked_sub(BASE).ok_or(Fault)?).map_err(|_| Fault)?;
            let end = start.checked_add(len).ok_or(Fault)?;
            if end > self.bytes.borrow().len() {
                return Err(Fault);
            }
            Ok(start..end)
        }

        fn put(&self, addr: u64, data: &[u8]) {
            self.write(addr, data).unwrap();
        }

        fn get(&self, addr: u64, len: usize) -> Vec<u8> {
            self.read(addr, len).unwrap()
        }

        /// `struct sev_issue_cmd` at ARG with `data`, and `error` preset.
        fn cmd(&self, id: u32, data: u64) {
            let mut b = [0u8; 16];
            b[0..4].copy_from_slice(&id.to_le_bytes());
            b[4..12].copy_from_slice(&data.to_le_bytes());
            b[12..16].copy_from_slice(&0xAAAA_AAAAu32.to_le_bytes());
            self.put(ARG, &b);
        }

        fn error(&self) -> u32 {
            u32_at(&self.get(ARG, 16), 12)
        }
    }

    impl UserMemory for Mem {
        fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, Fault> {
            let r = self.range(addr, len)?;
            Ok(self.bytes.borrow()[r].to_vec())
        }

        fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fault> {
            let r = self.range(addr, data.len())?;
            self.bytes.borrow_mut()[r].copy_from_slice(data);
            Ok(())
        }
    }

    fn platform() -> (tempfile::TempDir, Platform) {
        let tmp = tempfile::tempdir().unwrap();
        let options = CreateOptions {
            ark_bits: 2048,
            ..CreateOptions::default()
        };
        let p = Platform::create(tmp.path().join("p"), options, seeded_rng(7)).unwrap();
        (tmp, p)
    }

    fn sev_state(p: &Platform) -> PlatformState {
        p.platform_status().unwrap().state
    }

    #[test]
    fn status_and_ids_are_copied_out_in_the_drivers_layouts() {
        let (_t, p) = platform();
        let m = Mem::new();
        m.cmd(cmd::PLATFORM_STATUS, DATA);
        issue_cmd(&p, &m, ARG, false).unwrap();
        let s = m.get(DATA, 12);
        assert_eq!((s[0], s[1], s[2], s[7]), (1, 55, 0, 21));
        assert_eq!(m.error(), 0, "a successful command clears error");

        let mut chip = [0u8; 64];
        p.get_id(&mut chip).unwrap();
        // GET_ID2: length query, then the id.
        m.put(DATA, &[0u8; 12]);
        m.cmd(cmd::GET_ID2, DATA);
        assert_eq!(issue_cmd(&p, &m, ARG, false), Err(libc::EIO));
        assert_eq!(m.error(), sev_proto::abi::Status::InvalidLen.code());
        assert_eq!(u32_at(&m.get(DATA, 12), 8), 64);
        let mut q = BUF.to_le_bytes().to_vec();
        q.extend_from_slice(&16u32.to_le_bytes());
        m.put(DATA, &q);
        assert_eq!(issue_cmd(&p, &m, ARG, false), Err(libc::EIO), "short");
        assert_eq!(u32_at(&m.get(DATA, 12), 8), 64);
        q[8..12].copy_from_slice(&100u32.to_le_bytes());
        m.put(DATA, &q);
        issue_cmd(&p, &m, ARG, false).unwrap();
        assert_eq!(u32_at(&m.get(DATA, 12), 8), 64);
        assert_eq!(m.get(BUF, 64), chip);
        assert_eq!(m.get(BUF + 64, 36), vec![0u8; 36], "only 64 bytes written");
        // A length the driver cannot allocate.
        q[8..12].copy_from_slice(&(MAX_KMALLOC + 1).to_le_bytes());
        m.put(DATA, &q);
        assert_eq!(issue_cmd(&p, &m, ARG, false), Err(libc::ENOMEM));
        // The deprecated GET_ID.
        m.cmd(cmd::GET_ID, BUF2);
        issue_cmd(&p, &m, ARG, false).unwrap();
        assert_eq!(m.get(BUF2, 64), chip);
    }

    #[test]
    fn bad_pointers_unknown_commands_and_read_only_opens() {
        let (_t, p) = platform();
        let m = Mem::new();
        // The structure itself unreadable.
        assert_eq!(issue_cmd(&p, &m, 8, true), Err(libc::EFAULT));
        assert_eq!(
            issue_cmd(&p, &m, BASE + 0x8000 - 8, true),
            Err(libc::EFAULT)
        );
        // Unknown: EINVAL, nothing written back.
        m.cmd(99, DATA);
        assert_eq!(issue_cmd(&p, &m, ARG, true), Err(libc::EINVAL));
        assert_eq!(m.error(), 0xAAAA_AAAA);
        // Data pointer unwritable.
        m.cmd(cmd::PLATFORM_STATUS, 16);
        assert_eq!(issue_cmd(&p, &m, ARG, true), Err(libc::EFAULT));
        // Read-only: the state-changing commands are EPERM, error untouched.
        for c in [
            cmd::FACTORY_RESET,
            cmd::PEK_GEN,
            cmd::PDH_GEN,
            cmd::PEK_CSR,
            cmd::PEK_CERT_IMPORT,
            cmd::SNP_SET_CONFIG,
        ] {
            m.cmd(c, DATA);
            assert_eq!(issue_cmd(&p, &m, ARG, false), Err(libc::EPERM), "{c}");
            assert_eq!(m.error(), 0xAAAA_AAAA, "{c}");
        }
        // PDH_CERT_EXPORT read-only needs an INITed platform.
        m.cmd(cmd::PDH_CERT_EXPORT, DATA);
        assert_eq!(issue_cmd(&p, &m, ARG, false), Err(libc::EPERM));
        assert_eq!(sev_state(&p), PlatformState::Uninit);
    }

    #[test]
    fn length_queries_and_blob_limits() {
        let (_t, p) = platform();
        let m = Mem::new();
        // PEK_CSR length query (moves the platform to INIT, U75).
        m.put(DATA, &[0u8; 12]);
        m.cmd(cmd::PEK_CSR, DATA);
        assert_eq!(issue_cmd(&p, &m, ARG, true), Err(libc::EIO));
        assert_eq!(m.error(), sev_proto::abi::Status::InvalidLen.code());
        assert_eq!(u32_at(&m.get(DATA, 12), 8), CERT_LEN);
        assert_eq!(sev_state(&p), PlatformState::Init);
        // Too large: EFAULT, as the driver answers.
        let mut q = BUF.to_le_bytes().to_vec();
        q.extend_from_slice(&(SEV_FW_BLOB_MAX_SIZE + 1).to_le_bytes());
        m.put(DATA, &q);
        assert_eq!(issue_cmd(&p, &m, ARG, true), Err(libc::EFAULT));
        // The CSR itself.
        q[8..12].copy_from_slice(&CERT_LEN.to_le_bytes());
        m.put(DATA, &q);
        issue_cmd(&p, &m, ARG, true).unwrap();
        let mut csr = vec![0u8; CERT_LEN as usize];
        p.pek_csr(&mut csr).unwrap();
        assert_eq!(m.get(BUF, CERT_LEN as usize), csr);
        // A buffer the program cannot write: EFAULT after the command ran.
        q[0..8].copy_from_slice(&0x1000u64.to_le_bytes());
        m.put(DATA, &q);
        assert_eq!(issue_cmd(&p, &m, ARG, true), Err(libc::EFAULT));

        // PDH_CERT_EXPORT: query, then both blobs.
        m.put(DATA, &[0u8; 24]);
        m.cmd(cmd::PDH_CERT_EXPORT, DATA);
        assert_eq!(issue_cmd(&p, &m, ARG, false), Err(libc::EIO));
        let d = m.get(DATA, 24);
        assert_eq!((u32_at(&d, 8), u32_at(&d, 20)), (CERT_LEN, CHAIN_LEN));
        let mut e = BUF.to_le_bytes().to_vec();
        e.extend_from_slice(&CERT_LEN.to_le_bytes());
        e.extend_from_slice(&BUF2.to_le_bytes());
        e.extend_from_slice(&(SEV_FW_BLOB_MAX_SIZE + 1).to_le_bytes());
        m.put(DATA, &e);
        assert_eq!(issue_cmd(&p, &m, ARG, false), Err(libc::EFAULT), "huge");
        e[20..24].copy_from_slice(&CHAIN_LEN.to_le_bytes());
        m.put(DATA, &e);
        issue_cmd(&p, &m, ARG, false).unwrap();
        let (mut pdh, mut chain) = (vec![0u8; CERT_LEN as usize], vec![0u8; CHAIN_LEN as usize]);
        p.pdh_cert_export(&mut pdh, &mut chain).unwrap();
        assert_eq!(m.get(BUF, pdh.len()), pdh);
        assert_eq!(m.get(BUF2, chain.len()), chain);

        // PEK_CERT_IMPORT: null or oversized blobs are EINVAL.
        let mut i = 0u64.to_le_bytes().to_vec();
        i.extend_from_slice(&CERT_LEN.to_le_bytes());
        i.extend_from_slice(&BUF2.to_le_bytes());
        i.extend_from_slice(&CERT_LEN.to_le_bytes());
        m.put(DATA, &i);
        m.cmd(cmd::PEK_CERT_IMPORT, DATA);
        assert_eq!(issue_cmd(&p, &m, ARG, true), Err(libc::EINVAL));
        i[0..8].copy_from_slice(&BUF.to_le_bytes());
        i[20..24].copy_from_slice(&(SEV_FW_BLOB_MAX_SIZE + 1).to_le_bytes());
        m.put(DATA, &i);
        assert_eq!(issue_cmd(&p, &m, ARG, true), Err(libc::EINVAL));
        // Unsigned certificates: the firmware refuses (EIO with its status).
        i[20..24].copy_from_slice(&CERT_LEN.to_le_bytes());
        m.put(DATA, &i);
        assert_eq!(issue_cmd(&p, &m, ARG, true), Err(libc::EIO));
        assert_ne!(m.error(), 0);
    }

    #[test]
    fn reset_rotation_and_snp_commands() {
        let (_t, p) = platform();
        let m = Mem::new();
        let pdh = |p: &Platform| {
            let (mut a, mut b) = (vec![0u8; CERT_LEN as usize], vec![0u8; CHAIN_LEN as usize]);
            p.pdh_cert_export(&mut a, &mut b).unwrap();
            a
        };
        p.init(true).unwrap();
        let before = pdh(&p);
        m.cmd(cmd::PDH_GEN, 0);
        issue_cmd(&p, &m, ARG, true).unwrap();
        assert_ne!(pdh(&p), before, "rotated");
        assert_eq!(sev_state(&p), PlatformState::Init);
        m.cmd(cmd::FACTORY_RESET, 0);
        issue_cmd(&p, &m, ARG, true).unwrap();
        assert_eq!(sev_state(&p), PlatformState::Uninit);

        // SNP: the driver initialises SNP first (U76).
        m.cmd(cmd::SNP_PLATFORM_STATUS, 0);
        assert_eq!(
            issue_cmd(&p, &m, ARG, false),
            Err(libc::EINVAL),
            "null data"
        );
        m.cmd(cmd::SNP_PLATFORM_STATUS, DATA);
        issue_cmd(&p, &m, ARG, false).unwrap();
        let s = m.get(DATA, 32);
        assert_eq!(s[2], 1, "SNP INIT");
        // SNP_SET_CONFIG: MASK_CHIP_ID, then seen in the status.
        let mut c = [0u8; 64];
        c[8] = 1;
        m.put(BUF, &c);
        m.cmd(cmd::SNP_SET_CONFIG, BUF);
        issue_cmd(&p, &m, ARG, true).unwrap();
        m.cmd(cmd::SNP_PLATFORM_STATUS, DATA);
        issue_cmd(&p, &m, ARG, false).unwrap();
        assert_eq!(u32_at(&m.get(DATA, 32), 8) & 1, 1);
        // Reserved bits: the firmware's INVALID_PARAM.
        c[9] = 1;
        m.put(BUF, &c);
        m.cmd(cmd::SNP_SET_CONFIG, BUF);
        assert_eq!(issue_cmd(&p, &m, ARG, true), Err(libc::EIO));
        assert_eq!(m.error(), sev_proto::abi::Status::InvalidParam.code());
        m.cmd(cmd::SNP_COMMIT, 0);
        issue_cmd(&p, &m, ARG, false).unwrap();
        // SEV INIT after SNP: PEK_GEN still works.
        m.cmd(cmd::PEK_GEN, 0);
        issue_cmd(&p, &m, ARG, true).unwrap();
    }

    #[test]
    fn snp_init_after_sev_init_reinitialises_sev() {
        let (_t, p) = platform();
        let m = Mem::new();
        m.cmd(cmd::PEK_GEN, 0);
        issue_cmd(&p, &m, ARG, true).unwrap();
        assert_eq!(sev_state(&p), PlatformState::Init);
        m.cmd(cmd::SNP_PLATFORM_STATUS, DATA);
        issue_cmd(&p, &m, ARG, false).unwrap();
        assert_eq!(m.get(DATA, 32)[2], 1);
        let s = p.platform_status().unwrap();
        assert_eq!(s.state, PlatformState::Init);
        assert!(s.es_enabled);
    }

    /// Random commands with random structures, lengths and pointers (into
    /// the mapped range, at its edges and outside it): every answer is one
    /// the driver gives, nothing panics, and the structure is written back
    /// only for known commands.
    #[test]
    fn random_calls_get_driver_answers() {
        use rand::{Rng, SeedableRng};
        let (_t, p) = platform();
        let m = Mem::new();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let ptrs = [
            0u64,
            8,
            BASE - 4,
            BASE,
            DATA,
            BUF,
            BUF2,
            BASE + 0x8000 - 12,
            BASE + 0x8000,
            u64::MAX - 7,
        ];
        let lens = [
            0u32,
            1,
            16,
            63,
            64,
            65,
            CERT_LEN - 1,
            CERT_LEN,
            CHAIN_LEN,
            0x4000,
            0x4001,
            MAX_KMALLOC + 1,
            u32::MAX,
        ];
        for _ in 0..250 {
            let id = if rng.gen_bool(0.9) {
                rng.gen_range(0..14)
            } else {
                rng.gen()
            };
            let data = ptrs[rng.gen_range(0..ptrs.len())];
            let mut fields = [0u8; 64];
            rng.fill(&mut fields[..]);
            for at in [0usize, 12] {
                fields[at..at + 8]
                    .copy_from_slice(&ptrs[rng.gen_range(0..ptrs.len())].to_le_bytes());
            }
            for at in [8usize, 20] {
                fields[at..at + 4]
                    .copy_from_slice(&lens[rng.gen_range(0..lens.len())].to_le_bytes());
            }
            m.put(DATA, &fields);
            m.cmd(id, data);
            let writable = rng.gen_bool(0.7);
            let r = issue_cmd(&p, &m, ARG, writable);
            if let Err(e) = r {
                assert!(
                    [
                        libc::EINVAL,
                        libc::EFAULT,
                        libc::EIO,
                        libc::EPERM,
                        libc::ENOMEM,
                        libc::EBUSY
                    ]
                    .contains(&e),
                    "cmd {id}: errno {e}"
                );
                if e == libc::EIO {
                    assert_ne!(m.error(), 0xAAAA_AAAA, "cmd {id}: EIO without a status");
                }
            } else {
                assert_eq!(m.error(), 0, "cmd {id}");
            }
            if id > cmd::SNP_VLEK_LOAD {
                assert_eq!(r, Err(libc::EINVAL));
                assert_eq!(m.error(), 0xAAAA_AAAA);
            }
        }
        // Still a working platform.
        m.cmd(cmd::PLATFORM_STATUS, DATA);
        issue_cmd(&p, &m, ARG, false).unwrap();
    }
}
