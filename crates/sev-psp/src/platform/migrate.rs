//! SEND_* and RECEIVE_*: moving a guest between two emulated platforms
//! (docs/protocol/migration.md).
//!
//! # Trust between two emulated hosts (SEND_START)
//!
//! The source always verifies the target's platform part PDH ← PEK ←
//! {OCA, CEK} (a session to an unverified PDH would protect nothing), and:
//!
//! * policy DOMAIN: the target's OCA must be byte-for-byte this platform's
//!   OCA (same owner);
//! * policy SEV: AMD_CERTS (ASK ‖ ARK) must be given, the ARK must be a root
//!   this platform trusts — its own emulated ARK or one an administrator
//!   added with [`Platform::trust_ark`] (file `trusted-arks` in the state
//!   directory) — and ARK → ASK → CEK must verify. Without SEV, AMD_CERTS is
//!   not examined;
//! * the policy's API minimum must not exceed the target's firmware version
//!   (the API version in the target's PDH certificate).
//!
//! UNCERTAIN (docs/protocol/migration.md#send-start, docs/protocol/choices.md#u15): chose malformed
//! certificates → INVALID_CERTIFICATE, signatures that do not verify → BAD_SIGNATURE, a
//! DOMAIN/SEV/API-minimum refusal (including an untrusted root) →
//! POLICY_FAILURE, because each code names exactly that failure; chose not
//! to skip the platform-part checks when DOMAIN = SEV = 0, because the
//! session key is agreed with the PDH and an unauthenticated PDH would let
//! anyone receive the guest.
//!
//! # Transport packets
//!
//! Packets use `sev_proto::secret`'s transport MAC (context 0x02 for data,
//! 0x03 for VMSAs) with the emulator-internal **binding** appended:
//! `LE64(sequence number) ‖ LE64(guest-physical address)`. The sequence
//! number counts the packets of one SEND_START/RECEIVE_START session (data
//! and VMSA packets share it, starting at 0) and advances only on success,
//! so a replayed, dropped, reordered or re-addressed packet fails the MAC
//! check (BAD_MEASUREMENT) on the target. This is outside the (unknown) real
//! specification: a protocol between two instances of this emulator.
//!
//! Each packet covers at most one 4 KiB page and may not cross a page (as KVM
//! requires); address and length are multiples of 16.

use sev_proto::abi::{
    CommandId, GuestState, Policy, Status, PACKET_HEADER_LEN, SESSION_LEN, SEV_CERT_LEN,
};
use sev_proto::cert::chain::{self, CaChain, PlatformChain};
use sev_proto::cert::sev::Certificate;
use sev_proto::secret::{PacketHeader, TransportCipher, TransportKind};
use sev_proto::session::{self, TransportKeys};

use super::guest::{
    check_aligned16, check_len16, check_range, check_vmsa_args, packet_error, Peer, Transport,
    IV_BATCH,
};
use super::{cmd, ct_eq, FwError, Op, Platform};
use crate::memory::{self, GuestBacking, PAGE_SIZE};

fn chain_error(op: Op, e: chain::Error) -> FwError {
    use chain::Error as E;
    let status = match e {
        E::Length { .. }
        | E::DecodeSev { .. }
        | E::DecodeCa { .. }
        | E::WrongUsage { .. }
        | E::WrongAlgorithm { .. }
        | E::Key { .. } => Status::InvalidCertificate,
        E::ArkNotPinned => Status::PolicyFailure,
        E::ArkSelfSignature(_)
        | E::AskIssuer { .. }
        | E::AskSignature(_)
        | E::CekSignature(_)
        | E::OcaSignature(_)
        | E::PekByOca(_)
        | E::PekByCek(_)
        | E::PdhByPek(_) => Status::BadSignature,
    };
    FwError::new(op, status, format!("target chain: {e}"))
}

/// The MAC binding of a transport packet.
fn binding(seq: u64, gpa: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&seq.to_le_bytes());
    b[8..].copy_from_slice(&gpa.to_le_bytes());
    b
}

/// Step 2 of the data packets: a 16-byte aligned, non-zero multiple of 16,
/// at most one page, not crossing a page, inside guest memory.
// UNCERTAIN (docs/protocol/linux.md#kvm, docs/protocol/migration.md#transport-packets): chose to
// enforce KVM's one-page rule in the firmware too, because every caller (KVM, QEMU) sends single
// pages and a packet then always matches one page's address binding.
fn check_data_packet(op: Op, mem: &dyn GuestBacking, gpa: u64, len: u32) -> Result<(), FwError> {
    check_aligned16(op, "GUEST_PADDR", gpa)?;
    check_len16(op, "GUEST_LEN", u64::from(len))?;
    if u64::from(len) > PAGE_SIZE {
        return Err(FwError::new(
            op,
            Status::InvalidLen,
            format!("GUEST_LEN {len:#x} exceeds one page"),
        ));
    }
    if gpa % PAGE_SIZE + u64::from(len) > PAGE_SIZE {
        return Err(FwError::new(
            op,
            Status::InvalidAddress,
            format!("{len:#x} bytes at {gpa:#x} cross a page boundary"),
        ));
    }
    check_range(op, mem, gpa, u64::from(len))
}

impl Platform {
    /// SEND_START: starts sending guest `handle` to the platform whose PDH
    /// certificate is `pdh`, platform chain (PEK ‖ OCA ‖ CEK) `plat_certs`
    /// and AMD chain (ASK ‖ ARK) `amd_certs` (may be empty unless the policy
    /// has SEV). Writes the 0x80-byte session for RECEIVE_START into
    /// `session_out` and returns the guest's policy; RUNNING → SUPDATE.
    /// `session_out` shorter than 0x80 → INVALID_LEN with 0x80. See the
    /// module documentation for the trust rules.
    pub fn send_start(
        &self,
        handle: u32,
        pdh: &[u8],
        plat_certs: &[u8],
        amd_certs: &[u8],
        session_out: &mut [u8],
    ) -> Result<Policy, FwError> {
        let op = cmd(CommandId::SendStart);
        let out_len = session_out.len();
        let dst = session_out.get_mut(..SESSION_LEN).ok_or_else(|| {
            FwError::invalid_len(
                op,
                SESSION_LEN,
                format!("session buffer is {out_len} bytes"),
            )
        })?;
        if pdh.len() != SEV_CERT_LEN {
            return Err(FwError::invalid_len(
                op,
                SEV_CERT_LEN,
                format!("PDH certificate is {} bytes", pdh.len()),
            ));
        }
        let mut inner = self.lock();
        inner.guest(op, CommandId::SendStart, handle, false)?;
        self.refresh(&mut inner, op)?;
        let policy = inner.guest(op, CommandId::SendStart, handle, false)?.policy;
        let refuse = |d: String| FwError::new(op, Status::PolicyFailure, d);
        if policy.nosend() {
            return Err(refuse("guest policy has NOSEND".into()));
        }
        let bad_cert = |d: String| FwError::new(op, Status::InvalidCertificate, d);
        let pdh_cert =
            Certificate::decode(pdh).map_err(|e| bad_cert(format!("target PDH: {e}")))?;
        let platform = PlatformChain::decode(plat_certs).map_err(|e| chain_error(op, e))?;
        let verified =
            chain::verify_platform_part(&pdh_cert, &platform).map_err(|e| chain_error(op, e))?;
        let (major, minor) = verified.pdh_api_version();
        let target_api = sev_proto::abi::ApiVersion::new(major, minor);
        if policy.min_api() > target_api {
            return Err(refuse(format!(
                "policy requires firmware API {} but the target runs {target_api}",
                policy.min_api()
            )));
        }
        if policy.domain() && !ct_eq(&platform.oca.encode(), &inner.identity.oca_cert_bytes) {
            return Err(refuse(
                "policy DOMAIN: the target's OCA is not this platform's owner".into(),
            ));
        }
        if policy.sev() {
            if amd_certs.is_empty() {
                return Err(refuse(
                    "policy SEV: no AMD certificates (ASK, ARK) given".into(),
                ));
            }
            let ca = CaChain::decode(amd_certs).map_err(|e| chain_error(op, e))?;
            let ark = ca.ark.encode();
            let trusted = self.trusted_roots(&inner, op)?;
            if !trusted.iter().any(|root| ct_eq(root, &ark)) {
                return Err(refuse(
                    "policy SEV: the target's ARK is not a root this platform trusts".into(),
                ));
            }
            ca.verify(&ca.ark).map_err(|e| chain_error(op, e))?;
            platform
                .cek
                .verify_signed_by_ca(&ca.ask)
                .map_err(|e| chain_error(op, chain::Error::CekSignature(e)))?;
        }
        let keys = TransportKeys::random(&mut inner.rng);
        let mut nonce = [0u8; 16];
        let mut wrap_iv = [0u8; 16];
        inner.rng.fill_bytes(&mut nonce);
        inner.rng.fill_bytes(&mut wrap_iv);
        let z = session::shared_secret(&inner.identity.pdh, verified.pdh_public_key());
        let session = session::wrap(z.as_slice(), &nonce, &wrap_iv, &keys, policy.bits());
        let guest = inner.guest(op, CommandId::SendStart, handle, false)?;
        guest.publish_state(&self.dir, op, GuestState::SendUpdate)?;
        guest.send = Some(Transport::new(TransportCipher::new(&keys)));
        guest.state = GuestState::SendUpdate;
        dst.copy_from_slice(&session.to_bytes());
        log::debug!("SEND_START: guest {handle}");
        Ok(policy)
    }

    /// SEND_UPDATE_DATA: encrypts `len` bytes of guest memory at `gpa` (read
    /// with the guest's key, as the C-bit address KVM passes implies: a page
    /// that is not private reads as garbage, as on hardware; after
    /// LAUNCH_FINISH every page is private) for the target: the 0x34-byte
    /// header into `hdr_out`, the ciphertext into `trans_out[..len]`.
    /// Buffers too small → INVALID_LEN with both required lengths (0x34,
    /// `len`); `gpa`/`len` as in the module documentation. SUPDATE, active.
    pub fn send_update_data(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        len: u32,
        hdr_out: &mut [u8],
        trans_out: &mut [u8],
    ) -> Result<(), FwError> {
        let op = cmd(CommandId::SendUpdateData);
        self.send_update(
            op,
            CommandId::SendUpdateData,
            TransportKind::Data,
            handle,
            mem,
            gpa,
            len,
            hdr_out,
            trans_out,
        )
    }

    /// SEND_UPDATE_VMSA: as [`Platform::send_update_data`] for one 4 KiB VMSA
    /// page (page aligned, `len` 4096); the policy must have ES
    /// (POLICY_FAILURE).
    pub fn send_update_vmsa(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        len: u32,
        hdr_out: &mut [u8],
        trans_out: &mut [u8],
    ) -> Result<(), FwError> {
        let op = cmd(CommandId::SendUpdateVmsa);
        self.send_update(
            op,
            CommandId::SendUpdateVmsa,
            TransportKind::Vmsa,
            handle,
            mem,
            gpa,
            len,
            hdr_out,
            trans_out,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn send_update(
        &self,
        op: Op,
        command: CommandId,
        kind: TransportKind,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        len: u32,
        hdr_out: &mut [u8],
        trans_out: &mut [u8],
    ) -> Result<(), FwError> {
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        let (Some(hdr_dst), Some(trans_dst)) =
            (hdr_out.get_mut(..PACKET_HEADER_LEN), trans_out.get_mut(..n))
        else {
            return Err(FwError::invalid_len2(
                op,
                PACKET_HEADER_LEN,
                Some(n),
                format!(
                    "header buffer is {} bytes, transport buffer {} bytes",
                    hdr_out.len(),
                    trans_out.len()
                ),
            ));
        };
        match kind {
            TransportKind::Data => check_data_packet(op, mem, gpa, len)?,
            TransportKind::Vmsa => check_vmsa_args(op, mem, gpa, len)?,
        }
        let mut inner = self.lock();
        let refill = inner
            .guests
            .get(&handle)
            .and_then(|g| g.send.as_ref())
            .is_some_and(|t| t.ivs.is_empty());
        let mut fresh = Vec::new();
        if refill {
            let mut b = [0u8; 16 * IV_BATCH];
            inner.rng.fill_bytes(&mut b);
            fresh = b
                .chunks_exact(16)
                .rev()
                .map(|c| {
                    let mut iv = [0u8; 16];
                    iv.copy_from_slice(c);
                    iv
                })
                .collect();
        }
        let guest = inner.guest(op, command, handle, true)?;
        if kind == TransportKind::Vmsa && !guest.policy.es() {
            return Err(FwError::new(
                op,
                Status::PolicyFailure,
                "SEND_UPDATE_VMSA needs policy ES",
            ));
        }
        let state = guest.memory(op, mem)?;
        let transport = guest
            .send
            .as_mut()
            .ok_or_else(|| FwError::new(op, Status::InvalidGuestState, "no send session"))?;
        if transport.ivs.is_empty() {
            transport.ivs = fresh;
        }
        let iv = transport
            .ivs
            .pop()
            .ok_or_else(|| FwError::new(op, Status::InvalidGuestState, "no IV drawn"))?;
        memory::decrypt_from_guest(mem, &state, gpa, trans_dst)
            .map_err(|e| FwError::new(op, Status::InvalidAddress, e.to_string()))?;
        let header =
            transport
                .cipher
                .seal_in_place(kind, &iv, trans_dst, &binding(transport.seq, gpa));
        transport.seq = transport.seq.wrapping_add(1);
        hdr_dst.copy_from_slice(&header.to_bytes());
        Ok(())
    }

    /// SEND_FINISH: SUPDATE → SENT.
    pub fn send_finish(&self, handle: u32) -> Result<(), FwError> {
        let op = cmd(CommandId::SendFinish);
        let mut inner = self.lock();
        let guest = inner.guest(op, CommandId::SendFinish, handle, false)?;
        guest.publish_state(&self.dir, op, GuestState::Sent)?;
        guest.send = None;
        guest.state = GuestState::Sent;
        Ok(())
    }

    /// SEND_CANCEL: SUPDATE → RUNNING (the source keeps running; a later
    /// SEND_START may retry).
    pub fn send_cancel(&self, handle: u32) -> Result<(), FwError> {
        let op = cmd(CommandId::SendCancel);
        let mut inner = self.lock();
        let guest = inner.guest(op, CommandId::SendCancel, handle, false)?;
        guest.publish_state(&self.dir, op, GuestState::Running)?;
        guest.send = None;
        guest.state = GuestState::Running;
        Ok(())
    }

    /// RECEIVE_START: creates a guest in RUPDATE from the source's session
    /// (`session`, 0x80 bytes, made by SEND_START for this platform's PDH)
    /// and the source platform's PDH certificate `pdh`; returns its handle.
    /// A new VEK unless `share_handle` names a guest to share one with (NOKS
    /// → POLICY_FAILURE). The policy must match the one the session was made
    /// for (POLICY_MAC → BAD_MEASUREMENT) and pass this platform's checks
    /// (ES, API minimum, reserved bits → POLICY_FAILURE).
    pub fn receive_start(
        &self,
        share_handle: u32,
        policy: Policy,
        pdh: &[u8],
        session: &[u8],
    ) -> Result<u32, FwError> {
        let op = cmd(CommandId::ReceiveStart);
        if pdh.len() != SEV_CERT_LEN {
            return Err(FwError::invalid_len(
                op,
                SEV_CERT_LEN,
                format!("source PDH certificate is {} bytes", pdh.len()),
            ));
        }
        if session.len() != SESSION_LEN {
            return Err(FwError::invalid_len(
                op,
                SESSION_LEN,
                format!("session buffer is {} bytes", session.len()),
            ));
        }
        let mut inner = self.lock();
        let mut shared = Self::snapshot_for_new_guest(&inner, op, share_handle)?;
        self.refresh(&mut inner, op)?;
        inner.check_new_guest_policy(&shared, op, policy, share_handle)?;
        let keys = inner.unwrap_session(op, pdh, session, policy, Peer::SourcePdh)?;
        let cipher = TransportCipher::new(&keys);
        let handle = inner.create_guest(
            &mut shared,
            op,
            share_handle,
            policy,
            GuestState::ReceiveUpdate,
            keys,
        )?;
        if let Some(g) = inner.guests.get_mut(&handle) {
            g.digest = None;
            g.recv = Some(Transport::new(cipher));
        }
        log::debug!("RECEIVE_START: guest {handle}, policy {policy}");
        Ok(handle)
    }

    /// RECEIVE_UPDATE_DATA: checks a packet from SEND_UPDATE_DATA (header
    /// `hdr`, ciphertext `trans` of `len` bytes) and writes its plaintext at
    /// `gpa` under the guest's key (the pages turn private). Nothing is
    /// written unless every check passed. RUPDATE, active; MAC (including
    /// the sequence number and address binding) → BAD_MEASUREMENT.
    pub fn receive_update_data(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        hdr: &[u8],
        gpa: u64,
        len: u32,
        trans: &[u8],
    ) -> Result<(), FwError> {
        let op = cmd(CommandId::ReceiveUpdateData);
        self.receive_update(
            op,
            CommandId::ReceiveUpdateData,
            TransportKind::Data,
            handle,
            mem,
            hdr,
            gpa,
            len,
            trans,
        )
    }

    /// RECEIVE_UPDATE_VMSA: as [`Platform::receive_update_data`] for one
    /// VMSA page; the policy must have ES (POLICY_FAILURE).
    pub fn receive_update_vmsa(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        hdr: &[u8],
        gpa: u64,
        len: u32,
        trans: &[u8],
    ) -> Result<(), FwError> {
        let op = cmd(CommandId::ReceiveUpdateVmsa);
        self.receive_update(
            op,
            CommandId::ReceiveUpdateVmsa,
            TransportKind::Vmsa,
            handle,
            mem,
            hdr,
            gpa,
            len,
            trans,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn receive_update(
        &self,
        op: Op,
        command: CommandId,
        kind: TransportKind,
        handle: u32,
        mem: &dyn GuestBacking,
        hdr: &[u8],
        gpa: u64,
        len: u32,
        trans: &[u8],
    ) -> Result<(), FwError> {
        let header = PacketHeader::decode(hdr)
            .map_err(|e| FwError::invalid_len(op, PACKET_HEADER_LEN, e.to_string()))?;
        if trans.len() as u64 != u64::from(len) {
            return Err(FwError::new(
                op,
                Status::InvalidLen,
                format!(
                    "TRANS_LEN {:#x} differs from GUEST_LEN {len:#x}",
                    trans.len()
                ),
            ));
        }
        match kind {
            TransportKind::Data => check_data_packet(op, mem, gpa, len)?,
            TransportKind::Vmsa => check_vmsa_args(op, mem, gpa, len)?,
        }
        let mut inner = self.lock();
        let guest = inner.guest(op, command, handle, true)?;
        if kind == TransportKind::Vmsa && !guest.policy.es() {
            return Err(FwError::new(
                op,
                Status::PolicyFailure,
                "RECEIVE_UPDATE_VMSA needs policy ES",
            ));
        }
        let state = guest.memory(op, mem)?;
        let transport = guest
            .recv
            .as_mut()
            .ok_or_else(|| FwError::new(op, Status::InvalidGuestState, "no receive session"))?;
        // Decrypted into the session's reusable buffer: no allocation, no
        // extra copy and no wipe per packet (the buffer is wiped when the
        // session ends).
        let plain = &mut transport.scratch;
        transport
            .cipher
            .open_into(
                kind,
                &header,
                len,
                trans,
                &binding(transport.seq, gpa),
                plain,
            )
            .map_err(|e| packet_error(op, e))?;
        memory::firmware_write(mem, gpa, plain)
            .map_err(|e| FwError::new(op, Status::InvalidAddress, e.to_string()))?;
        state
            .mark_private(gpa, u64::from(len))
            .map_err(|e| FwError::new(op, Status::InvalidAddress, e.to_string()))?;
        transport.seq = transport.seq.wrapping_add(1);
        Ok(())
    }

    /// RECEIVE_FINISH: RUPDATE → RUNNING; all guest memory turns private.
    pub fn receive_finish(&self, handle: u32) -> Result<(), FwError> {
        let op = cmd(CommandId::ReceiveFinish);
        let mut inner = self.lock();
        let guest = inner.guest(op, CommandId::ReceiveFinish, handle, false)?;
        guest.publish_state(&self.dir, op, GuestState::Running)?;
        guest.recv = None;
        guest.state = GuestState::Running;
        guest.mark_all_private();
        log::debug!("RECEIVE_FINISH: guest {handle} running");
        Ok(())
    }
}
