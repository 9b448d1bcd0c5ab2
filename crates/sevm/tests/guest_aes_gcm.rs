//! The demo guest's AES-256-GCM (the cipher of its SNP guest messages),
//! run by the real `sevm` binary under KVM in the self-test mode and
//! compared with the `aes-gcm` crate on the same vectors: ciphertext, tag
//! and the opened plaintext, and a tampered tag and ciphertext refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use common::*;
use sevm_demo::{aes_gcm_self_test_vectors, DemoMode, DemoOptions};

/// What the guest must print for `v`, computed with the `aes-gcm` crate.
fn expected(i: usize, v: &sevm_demo::AesGcmVector) -> String {
    let cipher = Aes256Gcm::new_from_slice(&v.key).unwrap();
    let mut ct = v.plaintext.clone();
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&v.iv), &v.aad, &mut ct)
        .unwrap();
    format!(
        "aes-gcm {i} seal: {} tag {}\n\
         aes-gcm {i} open: ok {}\n\
         aes-gcm {i} open with a tampered tag: refused\n\
         aes-gcm {i} open with a tampered ciphertext: refused\n",
        hex::encode(&ct),
        hex::encode(tag),
        hex::encode(&v.plaintext),
    )
}

#[test]
fn the_guests_aes_gcm_matches_the_aes_gcm_crate() {
    if !sevm_testutil::kvm("the_guests_aes_gcm_matches_the_aes_gcm_crate") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fw = tmp.path().join("aes.fd");
    let image = sevm_demo::build(&DemoOptions {
        mode: DemoMode::AesSelfTest,
        ..DemoOptions::default()
    })
    .unwrap();
    std::fs::write(&fw, image).unwrap();
    let mut vm = Sevm::spawn(["-bios", fw.to_str().unwrap(), "-m", "16"]);
    let st = vm.wait();
    let out = vm.stdout_text();
    assert_exit(st, 0, &format!("{}\nstdout:\n{out}", vm.stderr_text()));
    let vectors = aes_gcm_self_test_vectors();
    let mut want = String::new();
    for (i, v) in vectors.iter().enumerate() {
        want.push_str(&expected(i, v));
    }
    want.push_str("aes-gcm self-test: done\n");
    let got = out
        .lines()
        .filter(|l| l.starts_with("aes-gcm"))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    assert_eq!(got, want, "full output:\n{out}");
    // The guest-message example of docs/protocol/snp.md#guest-messages.
    assert!(got.starts_with(
        "aes-gcm 0 seal: e22c823fa4afec074a0405c33cc188cbcc61cf2e7ca86b124e1f5dfe1d268770"
    ));
    assert!(got
        .lines()
        .next()
        .unwrap()
        .ends_with(" tag f82ad6a7637d3333e57fd9adeb832a0f"));
}
