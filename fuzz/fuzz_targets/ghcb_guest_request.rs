//! `sevm::ghcb::guest_request::handle`: an SNP guest's request exit
//! (0x8000_0011 / 0x8000_0012), the GHCB page and the shared pages all
//! chosen by the guest.
//!
//! Input: a flags byte (bit 0: extended request; bits 1-4: which of the
//! request, response and first two certificate pages are shared; bit 5: the
//! firmware refuses; bit 6: a two-page certificate table is configured),
//! the GHCB page (zero-padded), then the request page.
//!
//! Properties: no panic, the guest always resumes; the answer is either a
//! GHCB error (SW_EXITINFO1 2, reason missing or invalid input or invalid
//! usage) or SW_EXITINFO1 0 with a VMM error of 0, 1, 2 or 0xFFFFFFFF over
//! the firmware status; the firmware runs only on a readable, aligned
//! request page; certificates are written only for MSG_REPORT_REQ, and a
//! buffer too small is answered VMM error 1 with RBX = the pages needed.
#![no_main]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sevm::ghcb::guest_request::{
    exit_info2, handle, CertTableProvider, GuestRequestHost, NoCertificates, RateLimiter,
    StaticCertTable, EXIT_EXT_GUEST_REQUEST, EXIT_GUEST_REQUEST, VMM_ERR_GENERIC,
    VMM_ERR_INVALID_LEN,
};
use sevm::ghcb::msr::PageState;
use sevm::ghcb::page::{self, Ghcb, GHCB_LEN};
use sevm::ghcb::{GhcbPlatform, Outcome, PlatformError};
use sevm_fuzz::Cursor;

const SHARED: [u64; 4] = [0x62000, 0x63000, 0x64000, 0x65000];

#[derive(Debug, Default)]
struct Fake {
    pages: Mutex<HashMap<u64, Box<[u8; GHCB_LEN]>>>,
    refuse: bool,
    calls: Mutex<u32>,
    writes: Mutex<Vec<u64>>,
}

impl GhcbPlatform for Fake {
    fn read_ghcb(&self, gpa: u64, page: &mut [u8; GHCB_LEN]) -> Result<(), PlatformError> {
        let pages = self.pages.lock().unwrap();
        let p = pages
            .get(&gpa)
            .ok_or_else(|| PlatformError("private".into()))?;
        page.copy_from_slice(&p[..]);
        Ok(())
    }
    fn write_ghcb(&self, gpa: u64, page: &[u8; GHCB_LEN]) -> Result<(), PlatformError> {
        let mut pages = self.pages.lock().unwrap();
        let p = pages
            .get_mut(&gpa)
            .ok_or_else(|| PlatformError("private".into()))?;
        p.copy_from_slice(page);
        self.writes.lock().unwrap().push(gpa);
        Ok(())
    }
    fn page_state_change(&self, _: u64, _: PageState) -> Result<(), PlatformError> {
        Ok(())
    }
    fn guest_request(
        &self,
        request: &[u8; GHCB_LEN],
        response: &mut [u8; GHCB_LEN],
    ) -> Result<u32, PlatformError> {
        *self.calls.lock().unwrap() += 1;
        if self.refuse {
            return Ok(0x0B);
        }
        response.copy_from_slice(request);
        Ok(0)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let flags = c.u8();
    let mut ghcb = Ghcb(Box::new(c.array()));
    let request: [u8; GHCB_LEN] = c.array();
    let code = if flags & 1 != 0 {
        EXIT_EXT_GUEST_REQUEST
    } else {
        EXIT_GUEST_REQUEST
    };
    let fake = Fake {
        refuse: flags & 0x20 != 0,
        ..Fake::default()
    };
    for (i, &gpa) in SHARED.iter().enumerate() {
        if flags & (2 << i) != 0 {
            let page = if i == 0 { request } else { [0; GHCB_LEN] };
            fake.pages.lock().unwrap().insert(gpa, Box::new(page));
        }
    }
    let table = StaticCertTable(vec![0xA5; GHCB_LEN + 1]);
    let certs: &dyn CertTableProvider = if flags & 0x40 != 0 {
        &table
    } else {
        &NoCertificates
    };
    let req_gpa = ghcb.valid(page::SW_EXIT_INFO_1);
    let rsp_gpa = ghcb.valid(page::SW_EXIT_INFO_2);
    let pages = ghcb.valid(page::RBX);
    let needed = if flags & 0x40 != 0 { 2 } else { 1 };
    let limiter = RateLimiter::new(1, Duration::from_secs(3600));
    let host = GuestRequestHost {
        platform: &fake,
        limiter: &limiter,
        certs,
    };
    assert_eq!(handle(&mut ghcb, code, &host), Outcome::Continue);
    let info1 = ghcb.valid(page::SW_EXIT_INFO_1).expect("answered");
    let info2 = ghcb.valid(page::SW_EXIT_INFO_2).expect("answered");
    let calls = *fake.calls.lock().unwrap();
    match info1 {
        2 => {
            assert!(matches!(info2, 2 | 4 | 5), "GHCB error {info2}");
            assert_eq!(calls, 0);
        }
        0 => {
            let vmm = (info2 >> 32) as u32;
            assert!(
                matches!(vmm, 0 | VMM_ERR_INVALID_LEN | VMM_ERR_GENERIC),
                "VMM error {vmm:#x}"
            );
            if vmm == VMM_ERR_INVALID_LEN {
                assert_eq!(ghcb.valid(page::RBX), Some(needed));
                assert!(pages.is_some_and(|p| p < needed));
                assert_eq!(calls, 0);
            }
            if calls > 0 {
                let req_gpa = req_gpa.expect("the firmware ran on a named page");
                assert!(fake.pages.lock().unwrap().contains_key(&req_gpa));
            }
            if info2 == 0 {
                assert_eq!(calls, 1);
            }
            if info2 == exit_info2(0, 0x0B) {
                assert!(fake.refuse);
            }
        }
        other => panic!("SW_EXITINFO1 {other}"),
    }
    // Certificates only for a report request, only into the buffer.
    let writes = fake.writes.lock().unwrap();
    let certs_written = writes.iter().any(|&w| Some(w) != rsp_gpa);
    if certs_written {
        assert_eq!(code, EXIT_EXT_GUEST_REQUEST);
        assert_eq!(request[0x34], 5);
    }
});
