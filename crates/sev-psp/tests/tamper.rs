//! Tamper matrix: every flip of the session buffer, the GODH, the policy, the
//! secret header and data, and the migration session and transport packets
//! is refused with the status code the emulator documents, and nothing is
//! written to guest memory (no guest created, no byte changed, no page made
//! private).
//!
//! Flips: every single bit where every bit must matter, and every byte
//! inverted (XOR 0xFF) everywhere. The GODH gets byte inversions only: a
//! single-bit flip of its algorithm code turns ECDH_SHA256 into ECDH_SHA384,
//! an equally valid name for the same key, which the firmware accepts.

// Test helpers outside #[test] functions unwrap too: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{export, fresh, owner_session, ram, Host};
use sev_proto::abi::{ApiVersion, Policy, Status};
use sev_proto::measurement::MeasureBlob;
use sev_proto::secret::build_launch_secret;
use sev_psp::memory::{firmware_read, VecBacking};
use sev_psp::{FwError, Platform};

fn status<T>(r: Result<T, FwError>) -> Status {
    match r {
        Ok(_) => Status::Success,
        Err(e) => e.status,
    }
}

/// Each single-bit flip of `bytes`.
fn bit_flips(bytes: &[u8]) -> impl Iterator<Item = (usize, Vec<u8>)> + '_ {
    (0..bytes.len() * 8).map(move |bit| {
        let mut v = bytes.to_vec();
        v[bit / 8] ^= 1 << (bit % 8);
        (bit, v)
    })
}

/// Each byte of `bytes` inverted.
fn byte_flips(bytes: &[u8]) -> impl Iterator<Item = (usize, Vec<u8>)> + '_ {
    (0..bytes.len()).map(move |i| {
        let mut v = bytes.to_vec();
        v[i] ^= 0xff;
        (i, v)
    })
}

/// The policy checks the emulator applies before any MAC (platform INIT
/// without SEV-ES, firmware API 1.55): reserved bits, ES, API minimum.
fn policy_refused(bits: u32) -> bool {
    let p = Policy::from_bits(bits);
    p.reserved_bits() != 0 || p.es() || p.min_api() > ApiVersion::new(1, 55)
}

/// What a hypervisor sees and what the guest holds at `gpa`.
fn snapshot(p: &Platform, h: u32, mem: &VecBacking, gpa: u64, len: usize) -> (Vec<u8>, Vec<u8>) {
    let mut view = vec![0u8; len];
    p.host_read(h, mem, gpa, &mut view).unwrap();
    let mut plain = vec![0u8; len];
    firmware_read(mem, gpa, &mut plain).unwrap();
    (view, plain)
}

#[test]
fn launch_start_session_godh_and_policy() {
    let f = fresh(Host::A, 1);
    let p = &f.p;
    p.init(false).unwrap();
    let policy = Policy::from_bits(Policy::NODBG);
    let (owner, godh) = owner_session(&export(p), policy, 3);
    let session = owner.session_buffer().to_bytes();
    let count = || p.platform_status().unwrap().guest_count;
    let launch = |pol: u32, g: &[u8], s: &[u8]| {
        status(p.launch_start(0, Policy::from_bits(pol), Some(g), Some(s)))
    };

    for (bit, s) in bit_flips(&session).chain(byte_flips(&session)) {
        assert_eq!(
            launch(policy.bits(), &godh, &s),
            Status::BadMeasurement,
            "session flip {bit}"
        );
    }
    for (i, g) in byte_flips(&godh) {
        assert_eq!(
            launch(policy.bits(), &g, &session),
            Status::InvalidCertificate,
            "GODH byte {i:#x}"
        );
    }
    let mut codes = std::collections::BTreeSet::new();
    let policy_bytes = policy.bits().to_le_bytes();
    for (bit, b) in bit_flips(&policy_bytes).chain(byte_flips(&policy_bytes)) {
        let flipped = u32::from_le_bytes(b.try_into().unwrap());
        let expected = if policy_refused(flipped) {
            Status::PolicyFailure
        } else {
            // The policy MAC binds the owner's policy.
            Status::BadMeasurement
        };
        assert_eq!(
            launch(flipped, &godh, &session),
            expected,
            "policy flip {bit} ({flipped:#x})"
        );
        codes.insert(expected);
    }
    assert_eq!(codes.len(), 2, "both policy outcomes exercised");
    assert_eq!(count(), 0, "no guest was created by a tampered launch");
    assert_eq!(launch(policy.bits(), &godh, &session), Status::Success);
    assert_eq!(count(), 1);
}

#[test]
fn launch_secret_header_and_data() {
    let f = fresh(Host::A, 2);
    let p = &f.p;
    let mem = ram(0x10_0000);
    p.init(false).unwrap();
    let policy = Policy::from_bits(Policy::NODBG);
    let (owner, godh) = owner_session(&export(p), policy, 4);
    let h = p
        .launch_start(
            0,
            policy,
            Some(&godh),
            Some(&owner.session_buffer().to_bytes()),
        )
        .unwrap();
    p.activate(h, 5).unwrap();
    p.launch_update_data(h, &mem, 0, 0x1000).unwrap();
    let mut blob = [0u8; 48];
    p.launch_measure(h, &mut blob).unwrap();
    let blob = MeasureBlob::from_bytes(&blob);
    let secret: Vec<u8> = (0..64u8).collect();
    let (hdr, trans) =
        build_launch_secret(owner.keys(), &[7; 16], &secret, Some(&blob.measurement));
    let hdr = hdr.to_bytes();
    let gpa = 0x8000;
    let before = snapshot(p, h, &mem, gpa, 4096);
    let inject = |hd: &[u8], t: &[u8]| status(p.launch_secret(h, &mem, hd, gpa, 64, t));

    for (bit, hd) in bit_flips(&hdr) {
        let expected = match bit {
            0 => Status::Unsupported,       // FLAGS.COMPRESSED
            1..=31 => Status::InvalidParam, // reserved FLAGS bits
            _ => Status::BadMeasurement,    // IV, MAC
        };
        assert_eq!(inject(&hd, &trans), expected, "header bit {bit}");
        assert_eq!(snapshot(p, h, &mem, gpa, 4096), before);
    }
    for (i, hd) in byte_flips(&hdr) {
        let expected = match i {
            0 => Status::Unsupported,
            1..=3 => Status::InvalidParam,
            _ => Status::BadMeasurement,
        };
        assert_eq!(inject(&hd, &trans), expected, "header byte {i}");
    }
    for (bit, t) in bit_flips(&trans).chain(byte_flips(&trans)) {
        assert_eq!(inject(&hdr, &t), Status::BadMeasurement, "data flip {bit}");
        assert_eq!(snapshot(p, h, &mem, gpa, 4096), before);
    }
    assert_eq!(snapshot(p, h, &mem, gpa, 4096), before, "nothing written");
    assert_eq!(inject(&hdr, &trans), Status::Success);
    let (view, plain) = snapshot(p, h, &mem, gpa, 64);
    assert_eq!(plain, secret);
    assert_ne!(view, secret);
}

#[test]
fn migration_session_and_transport_packets() {
    let src = fresh(Host::A, 3);
    let dst = fresh(Host::B, 4);
    let (s, t) = (&src.p, &dst.p);
    let smem = ram(0x10_0000);
    let tmem = ram(0x10_0000);
    s.init(false).unwrap();
    t.init(false).unwrap();
    let policy = Policy::from_bits(0);
    let h = s.launch_start(0, policy, None, None).unwrap();
    s.activate(h, 5).unwrap();
    let page: Vec<u8> = (0..4096u32).map(|i| (i * 13 + 1) as u8).collect();
    s.dbg_encrypt(h, &smem, &page, 0x3000).unwrap();
    s.launch_measure(h, &mut [0; 48]).unwrap();
    s.launch_finish(h).unwrap();
    let target = export(t);
    let mut session = [0u8; 0x80];
    s.send_start(h, &target.pdh, &target.chain, &[], &mut session)
        .unwrap();
    let source_pdh = export(s).pdh;

    // The migration session.
    let count = || t.platform_status().unwrap().guest_count;
    for (bit, sb) in bit_flips(&session).chain(byte_flips(&session)) {
        assert_eq!(
            status(t.receive_start(0, policy, &source_pdh, &sb)),
            Status::BadMeasurement,
            "session flip {bit}"
        );
    }
    assert_eq!(count(), 0);
    let r = t.receive_start(0, policy, &source_pdh, &session).unwrap();
    t.activate(r, 5).unwrap();

    // A data packet.
    let mut hdr = [0u8; 0x34];
    let mut trans = vec![0u8; 4096];
    s.send_update_data(h, &smem, 0x3000, 4096, &mut hdr, &mut trans)
        .unwrap();
    let before = snapshot(t, r, &tmem, 0x3000, 4096);
    let receive = |hd: &[u8], gpa: u64, tr: &[u8]| {
        status(t.receive_update_data(r, &tmem, hd, gpa, tr.len() as u32, tr))
    };
    for (bit, hd) in bit_flips(&hdr) {
        let expected = match bit {
            0 => Status::Unsupported,
            1..=31 => Status::InvalidParam,
            _ => Status::BadMeasurement,
        };
        assert_eq!(receive(&hd, 0x3000, &trans), expected, "header bit {bit}");
    }
    for (i, tr) in byte_flips(&trans) {
        assert_eq!(
            receive(&hdr, 0x3000, &tr),
            Status::BadMeasurement,
            "data byte {i}"
        );
    }
    for bit in (0..4096 * 8).step_by(61) {
        let mut tr = trans.clone();
        tr[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            receive(&hdr, 0x3000, &tr),
            Status::BadMeasurement,
            "data bit {bit}"
        );
    }
    // Moved to another address: the binding covers it.
    assert_eq!(receive(&hdr, 0x4000, &trans), Status::BadMeasurement);
    assert_eq!(
        snapshot(t, r, &tmem, 0x3000, 4096),
        before,
        "nothing written"
    );
    assert_eq!(snapshot(t, r, &tmem, 0x4000, 4096).1, vec![0u8; 4096]);
    assert_eq!(receive(&hdr, 0x3000, &trans), Status::Success);
    // Replayed: the sequence number has moved on.
    assert_eq!(receive(&hdr, 0x3000, &trans), Status::BadMeasurement);
    // Reordered: packet 2 before packet 1.
    let mut hdr1 = [0u8; 0x34];
    let mut tr1 = vec![0u8; 16];
    s.send_update_data(h, &smem, 0x5000, 16, &mut hdr1, &mut tr1)
        .unwrap();
    let mut hdr2 = [0u8; 0x34];
    let mut tr2 = vec![0u8; 16];
    s.send_update_data(h, &smem, 0x6000, 16, &mut hdr2, &mut tr2)
        .unwrap();
    assert_eq!(receive(&hdr2, 0x6000, &tr2), Status::BadMeasurement);
    assert_eq!(receive(&hdr1, 0x5000, &tr1), Status::Success);
    assert_eq!(receive(&hdr2, 0x6000, &tr2), Status::Success);
    let (_, plain) = snapshot(t, r, &tmem, 0x3000, 4096);
    assert_eq!(plain, page);
}
