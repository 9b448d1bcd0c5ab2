//! `/dev/sev-guest`: SNP_GET_REPORT, SNP_GET_DERIVED_KEY and
//! SNP_GET_EXT_REPORT served the way Linux's SEV guest driver serves them
//! (docs/guide/sev-emulate.md#dev-sev-guest), for an emulated SNP guest
//! that a real SNP launch on the emulated platform created
//! ([`crate::guestlaunch`]).
//!
//! The program plays the guest's software; this module plays the guest
//! kernel's driver: it builds the guest message (header, payload sealed
//! with AES-256-GCM under VMPCK0, the driver's sequence number), hands it to
//! the firmware's SNP_GUEST_REQUEST, checks and opens the response and
//! copies it out. As in the driver, a firmware failure is EIO with the
//! firmware status in `exitinfo2` and wipes VMPCK0 (every later request is
//! ENOTTY); the extended report's certificate buffer follows the driver's
//! length protocol (a buffer too small for the host's certificates: the
//! report is requested without them, the ioctl fails with EIO, `vmm_error`
//! is 1 and `certs_len` is set to the length needed).
//!
//! Nothing here is seccomp-specific: the unit tests serve a byte array.

use std::fmt;
use std::sync::Arc;

use sev_firmware::SnpLaunchCommands;
use sev_proto::snp::guest_msg::{self, MessageHeader, MessageType, PAGE_LEN, VMPCK_LEN};
use zeroize::Zeroizing;

use crate::devsev::{efault, u32_at, u64_at, Errno, UserMemory};

/// The device node served.
pub const DEV_SEV_GUEST: &str = "/dev/sev-guest";

/// `SNP_GET_REPORT = _IOWR('S', 0x0, struct snp_guest_request_ioctl)`
/// (the structure is 32 bytes).
pub const SNP_GET_REPORT: u32 = 0xC020_5300;
/// `SNP_GET_DERIVED_KEY = _IOWR('S', 0x1, struct snp_guest_request_ioctl)`.
pub const SNP_GET_DERIVED_KEY: u32 = 0xC020_5301;
/// `SNP_GET_EXT_REPORT = _IOWR('S', 0x2, struct snp_guest_request_ioctl)`.
pub const SNP_GET_EXT_REPORT: u32 = 0xC020_5302;

/// Length of `struct snp_guest_request_ioctl`.
pub const IOCTL_LEN: usize = 32;
/// Length of `struct snp_report_req`.
pub const REPORT_REQ_LEN: usize = 96;
/// Length of `struct snp_report_resp`.
pub const REPORT_RESP_LEN: usize = 4000;
/// Length of `struct snp_derived_key_req`.
pub const KEY_REQ_LEN: usize = 32;
/// Length of `struct snp_derived_key_resp`.
pub const KEY_RESP_LEN: usize = 64;
/// Length of `struct snp_ext_report_req` (96 + 8 + 4, padded to 8).
pub const EXT_REPORT_REQ_LEN: usize = 112;
/// The largest certificate buffer the driver accepts (`SEV_FW_BLOB_MAX_SIZE`).
pub const MAX_CERTS_LEN: u32 = 0x4000;

/// `exitinfo2` when no firmware call was made (`SEV_RET_NO_FW_CALL`, -1).
pub const NO_FW_CALL: u64 = u64::MAX;
/// `exitinfo2` of a certificate buffer too small
/// (`SNP_GUEST_VMM_ERR(SNP_GUEST_VMM_ERR_INVALID_LEN)`: `vmm_error` 1).
pub const VMM_ERR_INVALID_LEN: u64 = 1 << 32;

/// The highest user address `access_ok` admits on x86-64 (`TASK_SIZE_MAX`).
const TASK_SIZE_MAX: u64 = (1 << 47) - 4096;
const PAGE: u64 = 4096;

/// The guest driver's state for one emulated SNP guest: its firmware
/// context, VMPCK0 (read from the secrets page the firmware filled) and the
/// message sequence number, shared by every open of `/dev/sev-guest`.
pub struct SevGuestDevice {
    guest: Arc<dyn SnpLaunchCommands>,
    /// None once wiped after a failed request (as `snp_disable_vmpck`).
    vmpck: Option<Zeroizing<[u8; VMPCK_LEN]>>,
    /// The last sequence number used (the secrets page's `msg_seqno_0`).
    seqno: u64,
    /// The host's certificate table for extended reports.
    certs: Vec<u8>,
}

impl fmt::Debug for SevGuestDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SevGuestDevice")
            .field("guest", &self.guest)
            .field("vmpck0", &self.vmpck.as_ref().map(|_| "<present>"))
            .field("seqno", &self.seqno)
            .field("certs_len", &self.certs.len())
            .finish()
    }
}

/// The driver's copy of the caller's `struct snp_guest_request_ioctl`.
struct Io {
    raw: [u8; IOCTL_LEN],
    msg_version: u8,
    req_data: u64,
    resp_data: u64,
    exitinfo2: u64,
    /// A request reached the host.
    sent: bool,
}

impl SevGuestDevice {
    /// The driver of `guest` (RUNNING), which holds `vmpck0`; extended
    /// reports come with `cert_table` (GHCB format,
    /// `sev_proto::snp::cert_table::encode`).
    pub fn new(
        guest: Arc<dyn SnpLaunchCommands>,
        vmpck0: Zeroizing<[u8; VMPCK_LEN]>,
        cert_table: Vec<u8>,
    ) -> Self {
        SevGuestDevice {
            guest,
            vmpck: Some(vmpck0),
            seqno: 0,
            certs: cert_table,
        }
    }

    /// The last message sequence number used (0 before the first request).
    pub fn seqno(&self) -> u64 {
        self.seqno
    }

    /// Whether VMPCK0 was wiped after a failed request.
    pub fn vmpck_disabled(&self) -> bool {
        self.vmpck.is_none()
    }

    /// Serves `ioctl(fd, request, argp)` on `/dev/sev-guest`; `Ok(())` is
    /// the ioctl's 0. Requests other than the three are ENOTTY.
    pub fn ioctl(&mut self, mem: &dyn UserMemory, request: u32, argp: u64) -> Result<(), Errno> {
        let raw = mem.read(argp, IOCTL_LEN).map_err(efault)?;
        let mut buf = [0u8; IOCTL_LEN];
        buf.copy_from_slice(&raw);
        let mut io = Io {
            raw: buf,
            msg_version: buf[0],
            req_data: u64_at(&buf, 8),
            resp_data: u64_at(&buf, 16),
            exitinfo2: NO_FW_CALL,
            sent: false,
        };
        // Message version must be non-zero.
        if io.msg_version == 0 {
            return Err(libc::EINVAL);
        }
        let ret = match request {
            SNP_GET_REPORT => self.get_report(mem, &mut io),
            SNP_GET_DERIVED_KEY => self.get_derived_key(mem, &mut io),
            SNP_GET_EXT_REPORT => self.get_ext_report(mem, &mut io),
            _ => Err(libc::ENOTTY),
        };
        if io.exitinfo2 != 0 {
            let mut out = io.raw;
            out[24..32].copy_from_slice(&io.exitinfo2.to_le_bytes());
            mem.write(argp, &out).map_err(efault)?;
        }
        ret
    }

    fn get_report(&mut self, mem: &dyn UserMemory, io: &mut Io) -> Result<(), Errno> {
        if io.req_data == 0 || io.resp_data == 0 {
            return Err(libc::EINVAL);
        }
        let req = mem.read(io.req_data, REPORT_REQ_LEN).map_err(efault)?;
        let payload = self.send(io, MessageType::REPORT_REQ, &req, REPORT_RESP_LEN)?;
        let mut resp = Zeroizing::new(vec![0u8; REPORT_RESP_LEN]);
        resp[..payload.len()].copy_from_slice(&payload);
        mem.write(io.resp_data, &resp).map_err(efault)
    }

    fn get_derived_key(&mut self, mem: &dyn UserMemory, io: &mut Io) -> Result<(), Errno> {
        if io.req_data == 0 || io.resp_data == 0 {
            return Err(libc::EINVAL);
        }
        let req = mem.read(io.req_data, KEY_REQ_LEN).map_err(efault)?;
        let payload = self.send(io, MessageType::KEY_REQ, &req, KEY_RESP_LEN)?;
        let mut resp = Zeroizing::new([0u8; KEY_RESP_LEN]);
        resp[..payload.len()].copy_from_slice(&payload);
        mem.write(io.resp_data, &resp[..]).map_err(efault)
    }

    fn get_ext_report(&mut self, mem: &dyn UserMemory, io: &mut Io) -> Result<(), Errno> {
        if io.req_data == 0 || io.resp_data == 0 {
            return Err(libc::EINVAL);
        }
        let mut req = mem.read(io.req_data, EXT_REPORT_REQ_LEN).map_err(efault)?;
        let certs_address = u64_at(&req, REPORT_REQ_LEN);
        let certs_len = u32_at(&req, REPORT_REQ_LEN + 8);
        let mut npages = 0u64;
        // A zero length or address: the caller does not want certificates.
        if certs_len != 0 && certs_address != 0 {
            if certs_len > MAX_CERTS_LEN || u64::from(certs_len) % PAGE != 0 {
                return Err(libc::EINVAL);
            }
            // access_ok.
            match certs_address.checked_add(u64::from(certs_len)) {
                Some(end) if end <= TASK_SIZE_MAX => {}
                _ => return Err(libc::EFAULT),
            }
            npages = u64::from(certs_len) / PAGE;
        }
        let needed = (self.certs.len() as u64).div_ceil(PAGE);
        if npages < needed {
            // The host answers INVALID_LEN with the pages it needs; the
            // driver then sends the request as a plain guest request (so
            // that the sequence number is not reused) and reports EIO.
            let sent = self.send_as(
                io,
                MessageType::REPORT_REQ,
                &req[..REPORT_REQ_LEN],
                REPORT_RESP_LEN,
                true,
            );
            if !io.sent {
                // Refused before the host was asked (VMPCK0 wiped).
                return sent.map(drop);
            }
            io.exitinfo2 = VMM_ERR_INVALID_LEN;
            let needed_len = u32::try_from(needed * PAGE).unwrap_or(u32::MAX);
            req[REPORT_REQ_LEN + 8..REPORT_REQ_LEN + 12].copy_from_slice(&needed_len.to_le_bytes());
            mem.write(io.req_data, &req).map_err(efault)?;
            // A firmware failure after INVALID_LEN is still EIO and keeps
            // the VMPCK (the driver sees its own INVALID_LEN).
            return match sent {
                Ok(_) | Err(libc::EIO) => Err(libc::EIO),
                Err(e) => Err(e),
            };
        }
        let payload = self.send(
            io,
            MessageType::REPORT_REQ,
            &req[..REPORT_REQ_LEN],
            REPORT_RESP_LEN,
        )?;
        if npages > 0 {
            let mut certs = vec![0u8; certs_len as usize];
            certs[..self.certs.len()].copy_from_slice(&self.certs);
            mem.write(certs_address, &certs).map_err(efault)?;
        }
        let mut resp = Zeroizing::new(vec![0u8; REPORT_RESP_LEN]);
        resp[..payload.len()].copy_from_slice(&payload);
        mem.write(io.resp_data, &resp).map_err(efault)
    }

    fn disable(&mut self) {
        if self.vmpck.take().is_some() {
            log::warn!(
                "{DEV_SEV_GUEST}: a guest request failed: VMPCK0 wiped, no further requests"
            );
        }
    }

    /// `snp_send_guest_request`: seals `payload` as `msg_type` with the
    /// caller's message version, sends it, checks and opens the response
    /// (whose payload must fit `resp_len` bytes).
    fn send(
        &mut self,
        io: &mut Io,
        msg_type: MessageType,
        payload: &[u8],
        resp_len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, Errno> {
        self.send_as(io, msg_type, payload, resp_len, false)
    }

    /// [`Self::send`]; `after_invalid_len`: the retry of an extended
    /// request whose certificate buffer was too small, whose firmware
    /// failure the driver does not treat as fatal to the key.
    fn send_as(
        &mut self,
        io: &mut Io,
        msg_type: MessageType,
        payload: &[u8],
        resp_len: usize,
        after_invalid_len: bool,
    ) -> Result<Zeroizing<Vec<u8>>, Errno> {
        let Some(key) = self.vmpck.clone() else {
            log::warn!("{DEV_SEV_GUEST}: VMPCK0 is disabled");
            return Err(libc::ENOTTY);
        };
        // The secrets page's counter is 32 bits wide.
        let seqno = self.seqno + 1;
        if seqno >= u64::from(u32::MAX) {
            log::warn!("{DEV_SEV_GUEST}: request message sequence counter overflow");
            return Err(libc::EIO);
        }
        let size = u16::try_from(payload.len()).map_err(|_| libc::EINVAL)?;
        let header = MessageHeader::new(msg_type, io.msg_version, size, 0, seqno);
        let msg = guest_msg::seal(&key, &header, payload).map_err(|_| libc::EINVAL)?;
        let mut page = Box::new([0u8; PAGE_LEN]);
        page[..msg.len()].copy_from_slice(&msg);
        io.sent = true;
        let answer = self.guest.snp_guest_request(&page);
        // The driver advances its counter whatever the outcome: a failure
        // wipes the key anyway.
        self.seqno += 2;
        let response = match answer {
            Ok(r) => r,
            Err(e) => {
                io.exitinfo2 = e.status().map_or(NO_FW_CALL, |s| u64::from(s.0));
                log::warn!("{DEV_SEV_GUEST}: SNP_GUEST_REQUEST failed: {e}");
                if !after_invalid_len {
                    self.disable();
                }
                return Err(libc::EIO);
            }
        };
        io.exitinfo2 = 0;
        let opened = MessageHeader::decode(&response[..])
            .ok()
            .filter(|h| {
                h.msg_type == msg_type.response()
                    && h.msg_version == io.msg_version
                    && h.seqno == seqno + 1
                    && usize::from(h.msg_size) <= resp_len
            })
            .and_then(|h| guest_msg::open(&key, &h, &response[..]).ok());
        match opened {
            Some(p) => Ok(p),
            None => {
                log::warn!("{DEV_SEV_GUEST}: unexpected decode failure of the firmware's response");
                self.disable();
                Err(libc::EBADMSG)
            }
        }
    }
}

#[cfg(test)]
mod tests;
