//! sevm's own hardware path to `/dev/sev` — `sev_host::SevDevice`, which
//! sev-firmware's hardware backend and `sevm sev-device=/dev/sev` use — run
//! under the launcher: the SEV platform commands and the SNP ones (status,
//! config, commit, VLEK load) that no machine of this project could run
//! before. The test re-runs itself under the launcher (see bad_calls.rs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sev_host::snp::SnpConfig;
use sev_host::{HostError, SevDevice};

#[test]
fn sev_host_device_commands_under_the_launcher() {
    const NAME: &str = "sev_host_device_commands_under_the_launcher";
    if in_child() {
        let dev = SevDevice::open().unwrap();
        let s = dev.platform_status().unwrap();
        assert_eq!((s.api_major, s.api_minor, s.build), (1, 55, 21));
        assert!(!s.externally_owned());
        let id = dev.get_id().unwrap();
        assert_eq!(id.len(), 64);
        // Length query then export, as sev-host does it.
        let (pdh, chain) = dev.pdh_cert_export().unwrap();
        assert_eq!((pdh.len(), chain.len()), (0x824, 3 * 0x824));
        let csr = dev.pek_csr().unwrap();
        assert_eq!(csr.len(), 0x824);
        dev.pdh_gen().unwrap();
        let (pdh2, chain2) = dev.pdh_cert_export().unwrap();
        assert_ne!(pdh2, pdh);
        assert_eq!(chain2, chain);

        // SNP: initialised by the driver on first use (U76).
        let st = dev.snp_platform_status().unwrap();
        assert_eq!(st.state, 1);
        assert!(st.rmp_initialized);
        assert!(!st.chip_id_masked());
        dev.snp_set_config(SnpConfig {
            reported_tcb: 0,
            mask_chip_id: true,
            mask_chip_key: false,
        })
        .unwrap();
        let st2 = dev.snp_platform_status().unwrap();
        assert!(st2.chip_id_masked());
        assert_eq!(st2.current_tcb, st.current_tcb);
        dev.snp_commit().unwrap();
        // A TCB above the installed one: the firmware's INVALID_PARAM.
        let e = dev
            .snp_set_config(SnpConfig {
                reported_tcb: u64::MAX,
                mask_chip_id: false,
                mask_chip_key: false,
            })
            .unwrap_err();
        assert!(matches!(e, HostError::Firmware { code: 0x16, .. }), "{e}");
        // No VLEK for an emulated chip: INVALID_COMMAND.
        let e = dev.snp_vlek_load(&[0u8; 432]).unwrap_err();
        assert!(matches!(e, HostError::Firmware { code: 0x11, .. }), "{e}");
        // SEV is still served after SNP's initialisation.
        assert_eq!(dev.platform_status().unwrap().api_minor, 55);
        dev.factory_reset().unwrap();
        println!(
            "ID={}",
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let plat = platform_copy(tmp.path());
    let out = ok(rerun_under_launcher(&plat, NAME), NAME);
    assert!(out.contains("1 passed"), "{out}");
    let id = out.split("ID=").nth(1).and_then(|t| t.get(..128)).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&ok(platform_tool(&[&emu(&plat), "--json", "id"]), "id")).unwrap();
    assert_eq!(v["id"].as_str().unwrap(), id);
}
