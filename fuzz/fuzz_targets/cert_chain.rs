//! `cert::chain::{PlatformChain, CaChain, FullChain}::decode`, and chain
//! verification of whatever decodes.
//!
//! Properties: no panic; every chain that decodes re-encodes to exactly the
//! input (its certificates decode strictly); the parts of a full chain are
//! what `PlatformChain`/`CaChain` decode from the same bytes; verification
//! (to the chain's own ARK as the pin) never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::cert::chain::{CaChain, Check, FullChain, PlatformChain};
use sev_proto::cert::sev::CERT_LEN;

fuzz_target!(|data: &[u8]| {
    if let Ok(platform) = PlatformChain::decode(data) {
        assert_eq!(platform.encode(), data, "PlatformChain round trip");
    }

    if let Ok(ca) = CaChain::decode(data) {
        assert_eq!(ca.encode(), data, "CaChain round trip");
        let _ = ca.verify(&ca.ark);
    }

    if let Ok(full) = FullChain::decode(data) {
        assert_eq!(full.encode(), data, "FullChain round trip");
        let (sev_part, ca_part) = data.split_at(4 * CERT_LEN);
        assert_eq!(
            PlatformChain::decode(&sev_part[CERT_LEN..]).as_ref(),
            Ok(&full.platform())
        );
        assert_eq!(CaChain::decode(ca_part).as_ref(), Ok(&full.ca()));
        let rebuilt = FullChain::from_parts(full.pdh.clone(), full.platform(), full.ca());
        assert_eq!(rebuilt, full);

        let pin = full.ark.clone();
        let verified = full.verify(&pin);
        for check in Check::ALL {
            let one = full.check(check, &pin);
            // `verify` runs every check: it cannot pass if one fails.
            if verified.is_ok() {
                assert!(one.is_ok(), "verify passed but {check:?} fails");
            }
        }
        if let Ok(v) = verified {
            let _ = (v.pdh_public_key(), v.pek_verifying_key());
            let _ = (v.pdh_api_version(), v.scope());
        }
        let _ = full.verify_owner_chain();
        let _ = full.verify_platform_part();
    }
});
