//! Send → receive between two platform directories (two "hosts" with their
//! own identities and roots: A runs API 1.55, B API 1.51), with the NOSEND,
//! DOMAIN, SEV and API-minimum policies each refused or allowed as they
//! should be, SEND_CANCEL and SEV-ES VMSAs.

// Test helpers outside #[test] functions unwrap too: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{export, fresh, owner_session, ram, Exported, Host};
use p384::ecdsa::SigningKey;
use p384::SecretKey;
use sev_proto::abi::{ApiVersion, GuestState, Owner, Policy, Status};
use sev_proto::cert::sev::{Certificate, Slot};
use sev_proto::cert::{Algorithm, Usage};
use sev_psp::memory::{firmware_read, firmware_write, VecBacking};
use sev_psp::rng::seeded_rng;
use sev_psp::{FwError, Platform};

const PAGES: u64 = 16;
const BASE: u64 = 0x10_0000;

fn status<T>(r: Result<T, FwError>) -> Status {
    match r {
        Ok(_) => Status::Success,
        Err(e) => e.status,
    }
}

fn contents() -> Vec<u8> {
    (0..PAGES * 4096)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// A guest launched with the owner's session on `p`, its pages measured,
/// running.
fn running_guest(p: &Platform, policy: Policy, asid: u32, seed: u64) -> (u32, VecBacking) {
    let mem = ram(0x40_0000);
    let (owner, godh) = owner_session(&export(p), policy, seed);
    let h = p
        .launch_start(
            0,
            policy,
            Some(&godh),
            Some(&owner.session_buffer().to_bytes()),
        )
        .unwrap();
    p.activate(h, asid).unwrap();
    firmware_write(&mem, BASE, &contents()).unwrap();
    p.launch_update_data(h, &mem, BASE, (PAGES * 4096) as u32)
        .unwrap();
    p.launch_measure(h, &mut [0; 48]).unwrap();
    p.launch_finish(h).unwrap();
    (h, mem)
}

/// SEND_START with the target's exported certificates and `amd` as
/// AMD_CERTS.
fn send_start(p: &Platform, h: u32, target: &Exported, amd: &[u8]) -> Result<[u8; 0x80], FwError> {
    let mut session = [0u8; 0x80];
    let policy = p.send_start(h, &target.pdh, &target.chain, amd, &mut session)?;
    assert_eq!(policy, p.guest_status(h).unwrap().policy);
    Ok(session)
}

/// Completes a migration after SEND_START: RECEIVE_START on `t`, every page,
/// both FINISHes. Returns the target guest and memory.
fn complete(
    s: &Platform,
    h: u32,
    smem: &VecBacking,
    t: &Platform,
    session: &[u8; 0x80],
    asid: u32,
) -> (u32, VecBacking) {
    let policy = s.guest_status(h).unwrap().policy;
    let r = t.receive_start(0, policy, &export(s).pdh, session).unwrap();
    t.activate(r, asid).unwrap();
    let tmem = ram(0x40_0000);
    let mut hdr = [0u8; 0x34];
    let mut trans = vec![0u8; 4096];
    for page in 0..PAGES {
        let gpa = BASE + page * 4096;
        s.send_update_data(h, smem, gpa, 4096, &mut hdr, &mut trans)
            .unwrap();
        t.receive_update_data(r, &tmem, &hdr, gpa, 4096, &trans)
            .unwrap();
    }
    s.send_finish(h).unwrap();
    t.receive_finish(r).unwrap();
    (r, tmem)
}

fn check_arrived(s: &Platform, h: u32, smem: &VecBacking, t: &Platform, r: u32, tmem: &VecBacking) {
    let len = (PAGES * 4096) as usize;
    let mut plain = vec![0u8; len];
    firmware_read(tmem, BASE, &mut plain).unwrap();
    assert_eq!(plain, contents(), "the guest's memory arrived");
    let mut src_view = vec![0u8; len];
    let mut dst_view = vec![0u8; len];
    s.host_read(h, smem, BASE, &mut src_view).unwrap();
    t.host_read(r, tmem, BASE, &mut dst_view).unwrap();
    assert_ne!(dst_view, plain, "private on the target");
    assert_ne!(dst_view, src_view, "under a new key on the target");
    assert_eq!(s.guest_status(h).unwrap().state, GuestState::Sent);
    assert_eq!(t.guest_status(r).unwrap().state, GuestState::Running);
}

#[test]
fn send_and_receive_between_two_hosts() {
    let (a, b) = (fresh(Host::A, 1), fresh(Host::B, 2));
    a.p.init(false).unwrap();
    b.p.init(false).unwrap();
    let (h, smem) = running_guest(&a.p, Policy::from_bits(Policy::NODBG), 5, 10);
    let target = export(&b.p);
    // A length query first, as KVM does.
    let e =
        a.p.send_start(h, &target.pdh, &target.chain, &[], &mut [])
            .unwrap_err();
    assert_eq!(
        (e.status, e.required_len.unwrap().first),
        (Status::InvalidLen, 0x80)
    );
    let session = send_start(&a.p, h, &target, &[]).unwrap();
    let (r, tmem) = complete(&a.p, h, &smem, &b.p, &session, 5);
    check_arrived(&a.p, h, &smem, &b.p, r, &tmem);
    // A session made for B is useless to another host.
    let (h2, _) = running_guest(&a.p, Policy::from_bits(0), 6, 11);
    let session = send_start(&a.p, h2, &target, &[]).unwrap();
    let other = fresh(Host::A, 3);
    other.p.init(false).unwrap();
    assert_eq!(
        status(
            other
                .p
                .receive_start(0, Policy::from_bits(0), &export(&a.p).pdh, &session)
        ),
        Status::BadMeasurement
    );
    // A tampered target chain is refused.
    let mut bad = export(&b.p);
    bad.chain[0x430] ^= 1; // inside R of the PEK's SIG1 (the OCA's signature)
    a.p.send_cancel(h2).unwrap();
    assert_eq!(
        status(send_start(&a.p, h2, &bad, &[])),
        Status::BadSignature
    );
}

#[test]
fn nosend_is_refused_and_cancel_keeps_the_source() {
    let (a, b) = (fresh(Host::A, 4), fresh(Host::B, 5));
    a.p.init(false).unwrap();
    b.p.init(false).unwrap();
    let target = export(&b.p);
    let (h, _) = running_guest(&a.p, Policy::from_bits(Policy::NOSEND), 5, 12);
    assert_eq!(
        status(send_start(&a.p, h, &target, &[])),
        Status::PolicyFailure
    );
    assert_eq!(a.p.guest_status(h).unwrap().state, GuestState::Running);

    let (h, smem) = running_guest(&a.p, Policy::from_bits(0), 6, 13);
    send_start(&a.p, h, &target, &[]).unwrap();
    assert_eq!(a.p.guest_status(h).unwrap().state, GuestState::SendUpdate);
    a.p.send_cancel(h).unwrap();
    assert_eq!(a.p.guest_status(h).unwrap().state, GuestState::Running);
    // The source runs on, and a retry succeeds.
    let session = send_start(&a.p, h, &target, &[]).unwrap();
    let (r, tmem) = complete(&a.p, h, &smem, &b.p, &session, 5);
    check_arrived(&a.p, h, &smem, &b.p, r, &tmem);
}

/// The owner takes both platforms: PEK_CSR, signs with its OCA,
/// PEK_CERT_IMPORT.
fn take_ownership(p: &Platform, oca_key: &SigningKey, oca: &Certificate) {
    let mut csr = [0u8; 0x824];
    p.pek_csr(&mut csr).unwrap();
    let mut pek = Certificate::decode(&csr).unwrap();
    pek.sign(Slot::Sig1, Usage::Oca, oca_key, Algorithm::EcdsaSha256)
        .unwrap();
    p.pek_cert_import(&pek.encode(), &oca.encode()).unwrap();
    assert_eq!(p.platform_status().unwrap().owner, Owner::External);
}

#[test]
fn domain_needs_the_same_owner() {
    let (a, b, stranger) = (fresh(Host::A, 6), fresh(Host::B, 7), fresh(Host::B, 8));
    for p in [&a.p, &b.p, &stranger.p] {
        p.init(false).unwrap();
    }
    let policy = Policy::from_bits(Policy::DOMAIN);
    // Self-owned platforms have their own OCAs: refused.
    let (h, _) = running_guest(&a.p, policy, 5, 14);
    assert_eq!(
        status(send_start(&a.p, h, &export(&b.p), &[])),
        Status::PolicyFailure
    );
    a.p.deactivate(h).unwrap();
    a.p.decommission(h).unwrap();

    // One owner's OCA imported into A and B.
    let key = SecretKey::random(&mut seeded_rng(77));
    let signer = SigningKey::from(&key);
    let mut oca =
        Certificate::new_ec(Usage::Oca, Algorithm::EcdsaSha256, 0, 0, &key.public_key()).unwrap();
    oca.sign(Slot::Sig1, Usage::Oca, &signer, Algorithm::EcdsaSha256)
        .unwrap();
    a.p.df_flush().unwrap();
    take_ownership(&a.p, &signer, &oca);
    take_ownership(&b.p, &signer, &oca);

    let (h, smem) = running_guest(&a.p, policy, 5, 15);
    assert_eq!(
        status(send_start(&a.p, h, &export(&stranger.p), &[])),
        Status::PolicyFailure
    );
    let session = send_start(&a.p, h, &export(&b.p), &[]).unwrap();
    let (r, tmem) = complete(&a.p, h, &smem, &b.p, &session, 5);
    check_arrived(&a.p, h, &smem, &b.p, r, &tmem);
}

#[test]
fn sev_needs_a_trusted_root() {
    let (a, b, sibling) = (fresh(Host::A, 9), fresh(Host::B, 10), fresh(Host::A, 11));
    for p in [&a.p, &b.p, &sibling.p] {
        p.init(false).unwrap();
    }
    let policy = Policy::from_bits(Policy::SEV);
    let target = export(&b.p);
    let (h, smem) = running_guest(&a.p, policy, 5, 16);
    // No AMD chain, or one rooted in an ARK A does not trust.
    assert_eq!(
        status(send_start(&a.p, h, &target, &[])),
        Status::PolicyFailure
    );
    assert_eq!(
        status(send_start(&a.p, h, &target, &target.amd_certs())),
        Status::PolicyFailure
    );
    // A's own (trusted) AMD chain does not certify B's CEK.
    assert_eq!(
        status(send_start(&a.p, h, &target, &export(&a.p).amd_certs())),
        Status::BadSignature
    );
    assert_eq!(a.p.guest_status(h).unwrap().state, GuestState::Running);
    // A platform rooted in A's own ARK is trusted without further ado.
    let own_root = export(&sibling.p);
    send_start(&a.p, h, &own_root, &own_root.amd_certs()).unwrap();
    a.p.send_cancel(h).unwrap();
    // The administrator trusts B's root: allowed.
    a.p.trust_ark(&target.ark).unwrap();
    let session = send_start(&a.p, h, &target, &target.amd_certs()).unwrap();
    let (r, tmem) = complete(&a.p, h, &smem, &b.p, &session, 5);
    check_arrived(&a.p, h, &smem, &b.p, r, &tmem);
}

#[test]
fn api_minimum_against_the_target() {
    let (a, b) = (fresh(Host::A, 12), fresh(Host::B, 13));
    a.p.init(false).unwrap();
    b.p.init(false).unwrap();
    let target = export(&b.p);
    // Needs 1.52: runs on A (1.55), may not go to B (1.51).
    let (h, _) = running_guest(&a.p, Policy::new(0, ApiVersion::new(1, 52)), 5, 17);
    assert_eq!(
        status(send_start(&a.p, h, &target, &[])),
        Status::PolicyFailure
    );
    let (h, smem) = running_guest(&a.p, Policy::new(0, ApiVersion::new(1, 51)), 6, 18);
    let session = send_start(&a.p, h, &target, &[]).unwrap();
    let (r, tmem) = complete(&a.p, h, &smem, &b.p, &session, 5);
    check_arrived(&a.p, h, &smem, &b.p, r, &tmem);
}

#[test]
fn sev_es_guest_with_its_vmsa() {
    let (a, b) = (fresh(Host::A, 14), fresh(Host::B, 15));
    a.p.init(true).unwrap();
    let policy = Policy::from_bits(Policy::ES);
    let (h, smem) = {
        let mem = ram(0x40_0000);
        let h = a.p.launch_start(0, policy, None, None).unwrap();
        a.p.activate(h, 1).unwrap();
        firmware_write(&mem, BASE, &contents()).unwrap();
        a.p.launch_update_data(h, &mem, BASE, (PAGES * 4096) as u32)
            .unwrap();
        firmware_write(&mem, 0x3000, &[0xcc; 4096]).unwrap();
        a.p.launch_update_vmsa(h, &mem, 0x3000, 4096).unwrap();
        a.p.launch_measure(h, &mut [0; 48]).unwrap();
        a.p.launch_finish(h).unwrap();
        (h, mem)
    };
    b.p.init(false).unwrap();
    let target = export(&b.p);
    let session = send_start(&a.p, h, &target, &[]).unwrap();
    // B was INIT without SEV-ES: an ES guest cannot be received there.
    assert_eq!(
        status(b.p.receive_start(0, policy, &export(&a.p).pdh, &session)),
        Status::PolicyFailure
    );
    b.p.shutdown().unwrap();
    b.p.init(true).unwrap();
    let r =
        b.p.receive_start(0, policy, &export(&a.p).pdh, &session)
            .unwrap();
    b.p.activate(r, 1).unwrap();
    let tmem = ram(0x40_0000);
    let mut hdr = [0u8; 0x34];
    let mut trans = vec![0u8; 4096];
    a.p.send_update_vmsa(h, &smem, 0x3000, 4096, &mut hdr, &mut trans)
        .unwrap();
    b.p.receive_update_vmsa(r, &tmem, &hdr, 0x3000, 4096, &trans)
        .unwrap();
    // A VMSA packet is not a data packet (different MAC context).
    a.p.send_update_vmsa(h, &smem, 0x3000, 4096, &mut hdr, &mut trans)
        .unwrap();
    assert_eq!(
        status(b.p.receive_update_data(r, &tmem, &hdr, 0x3000, 4096, &trans)),
        Status::BadMeasurement
    );
    let mut vmsa = [0u8; 4096];
    firmware_read(&tmem, 0x3000, &mut vmsa).unwrap();
    assert_eq!(vmsa, [0xcc; 4096]);
    b.p.receive_finish(r).unwrap();
}
