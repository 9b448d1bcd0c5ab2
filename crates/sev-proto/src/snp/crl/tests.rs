use super::*;
use crate::snp::chain::Trust;
use crate::snp::testing::TestIssuer;
use crate::snp::{Product, TcbVersion};

fn tcb() -> TcbVersion {
    TcbVersion {
        fmc: 0,
        bootloader: 3,
        tee: 0,
        snp: 8,
        microcode: 115,
    }
}

fn milan() -> (TestIssuer, Chain) {
    let issuer = TestIssuer::new(Product::Milan, 0x1_0001).unwrap();
    let (vcek, _) = issuer.vcek(&[7; 64], tcb()).unwrap();
    let chain = issuer.chain(vcek);
    chain
        .verify(Trust::Explicit(&issuer.ark), None, SystemTime::now())
        .unwrap();
    (issuer, chain)
}

#[test]
fn the_arks_crl_passes_a_chain_whose_ask_is_not_listed() {
    let (issuer, chain) = milan();
    let der = issuer.crl(&[&[0x01, 0x00, 0x05]]).unwrap();
    let crl = Crl::from_der(&der).unwrap();
    assert_eq!(crl.der(), der);
    assert_eq!(crl.issuer_cn(), "ARK-Milan");
    assert_eq!(crl.revoked_serials(), [&[1u8, 0, 5][..]]);
    assert!(crl.this_update() < SystemTime::now());
    assert!(crl.next_update().unwrap() > SystemTime::now());
    crl.check_chain(&chain).unwrap();
    let empty = Crl::from_der(&issuer.crl(&[]).unwrap()).unwrap();
    assert!(empty.revoked_serials().is_empty());
    empty.check_chain(&chain).unwrap();
}

#[test]
fn a_listed_ask_is_revoked() {
    let (issuer, chain) = milan();
    assert_eq!(chain.ask.serial_number(), [0x01, 0x00, 0x01]);
    let crl = Crl::from_der(&issuer.crl(&[&[9], &[0x01, 0x00, 0x01]]).unwrap()).unwrap();
    assert!(crl.lists(&chain.ask));
    assert_eq!(
        crl.check_chain(&chain).unwrap_err(),
        CrlError::Revoked {
            which: "ASK",
            serial: "010001".into()
        }
    );
    assert_eq!(
        crl.check_chain(&chain).unwrap_err().to_string(),
        "ASK (serial 010001) is revoked by the ARK's CRL"
    );

    // Serials compare by value: a high bit makes DER add a zero byte.
    let high = TestIssuer::new(Product::Milan, 0x80).unwrap();
    assert_eq!(high.ask.serial_number(), [0x80]);
    let crl = Crl::from_der(&high.crl(&[&[0x80]]).unwrap()).unwrap();
    assert!(crl.lists(&high.ask));
}

#[test]
fn a_crl_of_another_key_or_root_is_refused() {
    let (_, chain) = milan();
    // Same names, another key: the signature does not verify.
    let other = TestIssuer::new(Product::Milan, 0x1_0001).unwrap();
    let crl = Crl::from_der(&other.crl(&[]).unwrap()).unwrap();
    assert_eq!(
        crl.check_chain(&chain).unwrap_err(),
        CrlError::BadSignature("ARK-Milan".into())
    );
    // Another product's root: the issuer name differs.
    let genoa = TestIssuer::new(Product::Genoa, 0x1_0001).unwrap();
    let crl = Crl::from_der(&genoa.crl(&[]).unwrap()).unwrap();
    assert_eq!(
        crl.check_chain(&chain).unwrap_err(),
        CrlError::Issuer {
            found: "ARK-Genoa".into(),
            expected: "ARK-Milan".into()
        }
    );
}

#[test]
fn bad_crl_bytes_are_refused() {
    let (issuer, chain) = milan();
    assert!(matches!(Crl::from_der(b"not a crl"), Err(CrlError::Der(_))));
    assert_eq!(
        Crl::from_der(&vec![0; MAX_CRL_LEN + 1]).unwrap_err(),
        CrlError::TooLarge(MAX_CRL_LEN + 1)
    );
    // A flipped bit in the signed part.
    let mut der = issuer.crl(&[]).unwrap();
    let at = der.len() / 3;
    der[at] ^= 1;
    match Crl::from_der(&der) {
        Err(CrlError::Der(_)) => {}
        Ok(crl) => assert!(crl.check_chain(&chain).is_err()),
        Err(e) => panic!("{e}"),
    }
}
