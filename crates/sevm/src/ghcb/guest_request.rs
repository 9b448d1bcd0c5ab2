//! SNP guest requests through the GHCB (docs/snp.md#guest-requests): NAE
//! exit 0x8000_0011 (SW_EXITINFO1 = the guest's request page, SW_EXITINFO2
//! = its response page, both shared) and the extended request 0x8000_0012
//! (RAX = a page-aligned certificate buffer, RBX = its size in pages), as
//! KVM handles them: the request page is copied out, the firmware's
//! SNP_GUEST_REQUEST runs on the copy, the response page is copied back,
//! and the result goes to the guest in SW_EXITINFO2 as
//! `VMM_ERROR << 32 | FW_ERROR`. Firmware and host failures are answered,
//! never fatal to the guest.
//!
//! Requests are rate-limited per VM by a token bucket
//! (docs/protocol/choices.md#u69); a throttled request is answered
//! [`VMM_ERR_BUSY`] and the guest retries.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::page::{self, Ghcb, GHCB_LEN};
use super::{GhcbPlatform, Outcome, PlatformError};

/// NAE exit code of a guest request.
pub const EXIT_GUEST_REQUEST: u64 = 0x8000_0011;
/// NAE exit code of an extended guest request (with certificates).
pub const EXIT_EXT_GUEST_REQUEST: u64 = 0x8000_0012;

/// VMM error: the certificate buffer is too small (RBX = pages needed).
pub const VMM_ERR_INVALID_LEN: u32 = 1;
/// VMM error: throttled, retry later.
pub const VMM_ERR_BUSY: u32 = 2;
/// VMM error for any other host failure (docs/protocol/choices.md#u70).
pub const VMM_ERR_GENERIC: u32 = u32::MAX;

/// The empty certificate table: one all-zero terminator entry (what
/// mainline KVM writes, having no certificate store).
pub const EMPTY_CERT_TABLE: [u8; 24] = [0; 24];

/// MSG_TYPE's offset in the (clear) guest message header, and the type of
/// MSG_REPORT_REQ, the only request the certificates go with.
const MSG_TYPE_OFFSET: usize = 0x34;
const MSG_REPORT_REQ: u8 = 5;

/// SW_EXITINFO2 of a handled guest request.
pub fn exit_info2(vmm_error: u32, fw_error: u32) -> u64 {
    (u64::from(vmm_error) << 32) | u64::from(fw_error)
}

/// Where the extended request's certificate table comes from.
pub trait CertTableProvider: Send + Sync + fmt::Debug {
    /// The certificate table (GHCB format: 24-byte entries up to an
    /// all-zero one, then the certificates) to hand out with a report.
    fn cert_table(&self) -> Result<Vec<u8>, PlatformError>;
}

/// No certificates configured: the empty table, as mainline KVM answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCertificates;

impl CertTableProvider for NoCertificates {
    fn cert_table(&self) -> Result<Vec<u8>, PlatformError> {
        Ok(EMPTY_CERT_TABLE.to_vec())
    }
}

/// A fixed certificate table (e.g. the platform's VCEK chain, encoded once).
#[derive(Debug, Clone)]
pub struct StaticCertTable(pub Vec<u8>);

impl CertTableProvider for StaticCertTable {
    fn cert_table(&self) -> Result<Vec<u8>, PlatformError> {
        Ok(self.0.clone())
    }
}

/// A token bucket: up to `burst` requests at once, one more token every
/// `interval / burst`.
#[derive(Debug)]
pub struct RateLimiter {
    burst: u32,
    interval: Duration,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// Linux's default rate limit, which KVM applied to guest requests:
    /// a burst of 10 per 5 seconds (docs/protocol/choices.md#u69).
    pub const DEFAULT_BURST: u32 = 10;
    /// The interval of [`Self::DEFAULT_BURST`].
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

    /// A bucket of `burst` tokens (at least 1) refilled over `interval`.
    pub fn new(burst: u32, interval: Duration) -> Self {
        let burst = burst.max(1);
        RateLimiter {
            burst,
            interval,
            state: Mutex::new((f64::from(burst), Instant::now())),
        }
    }

    /// Takes a token if one is left.
    pub fn try_acquire(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(state.1).as_secs_f64();
        let rate = if self.interval.is_zero() {
            f64::INFINITY
        } else {
            f64::from(self.burst) / self.interval.as_secs_f64()
        };
        state.0 = (state.0 + elapsed * rate).min(f64::from(self.burst));
        state.1 = now;
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(Self::DEFAULT_BURST, Self::DEFAULT_INTERVAL)
    }
}

/// What a guest request needs from the VM.
#[derive(Debug)]
pub struct GuestRequestHost<'a> {
    /// The shared pages and the firmware.
    pub platform: &'a dyn GhcbPlatform,
    /// The VM's rate limit.
    pub limiter: &'a RateLimiter,
    /// The certificates of extended requests.
    pub certs: &'a dyn CertTableProvider,
}

fn page_aligned(gpa: u64) -> bool {
    gpa.is_multiple_of(GHCB_LEN as u64)
}

/// Handles a guest request exit (`code` is one of the two exit codes)
/// described by `ghcb` and writes the answer into it.
pub fn handle(ghcb: &mut Ghcb, code: u64, host: &GuestRequestHost<'_>) -> Outcome {
    use page::*;
    let usage = ghcb.usage();
    let info1 = ghcb.valid(SW_EXIT_INFO_1);
    let info2 = ghcb.valid(SW_EXIT_INFO_2);
    let rax = ghcb.valid(RAX);
    let rbx = ghcb.valid(RBX);
    ghcb.clear_valid();
    if usage != 0 {
        ghcb.set_error(ERR_INVALID_USAGE);
        return Outcome::Continue;
    }
    let (Some(req_gpa), Some(rsp_gpa)) = (info1, info2) else {
        ghcb.set_error(ERR_MISSING_INPUT);
        return Outcome::Continue;
    };
    let certs = if code == EXIT_EXT_GUEST_REQUEST {
        let (Some(buf), Some(pages)) = (rax, rbx) else {
            ghcb.set_error(ERR_MISSING_INPUT);
            return Outcome::Continue;
        };
        Some((buf, pages))
    } else {
        None
    };
    // The request and response are whole pages; so is the certificate buffer.
    if !page_aligned(req_gpa)
        || !page_aligned(rsp_gpa)
        || certs.is_some_and(|(buf, _)| !page_aligned(buf))
    {
        ghcb.set_error(ERR_INVALID_INPUT);
        return Outcome::Continue;
    }
    let answer = |ghcb: &mut Ghcb, value: u64| {
        ghcb.set(SW_EXIT_INFO_1, 0);
        ghcb.set(SW_EXIT_INFO_2, value);
        Outcome::Continue
    };
    let generic = |ghcb: &mut Ghcb, what: &str, e: &PlatformError| {
        log::warn!("SNP guest request: {what}: {e}");
        answer(ghcb, exit_info2(VMM_ERR_GENERIC, 0))
    };
    if !host.limiter.try_acquire() {
        log::debug!("SNP guest request throttled");
        return answer(ghcb, exit_info2(VMM_ERR_BUSY, 0));
    }
    let mut request = Box::new([0u8; GHCB_LEN]);
    if let Err(e) = host.platform.read_ghcb(req_gpa, &mut request) {
        return generic(
            ghcb,
            &format!("cannot read the request page {req_gpa:#x}"),
            &e,
        );
    }
    if let Some((buf, pages)) = certs {
        if request[MSG_TYPE_OFFSET] == MSG_REPORT_REQ {
            let table = match host.certs.cert_table() {
                Ok(t) => t,
                Err(e) => return generic(ghcb, "no certificate table", &e),
            };
            let needed = table.len().div_ceil(GHCB_LEN) as u64;
            if pages < needed {
                ghcb.set(RBX, needed);
                return answer(ghcb, exit_info2(VMM_ERR_INVALID_LEN, 0));
            }
            for (i, chunk) in table.chunks(GHCB_LEN).enumerate() {
                let mut page = Box::new([0u8; GHCB_LEN]);
                page[..chunk.len()].copy_from_slice(chunk);
                let gpa = buf + (i * GHCB_LEN) as u64;
                if let Err(e) = host.platform.write_ghcb(gpa, &page) {
                    return generic(
                        ghcb,
                        &format!("cannot write the certificates at {gpa:#x}"),
                        &e,
                    );
                }
            }
        }
    }
    let mut response = Box::new([0u8; GHCB_LEN]);
    match host.platform.guest_request(&request, &mut response) {
        Ok(0) => {
            if let Err(e) = host.platform.write_ghcb(rsp_gpa, &response) {
                return generic(
                    ghcb,
                    &format!("cannot write the response page {rsp_gpa:#x}"),
                    &e,
                );
            }
            answer(ghcb, 0)
        }
        Ok(status) => {
            log::debug!("SNP guest request: firmware status {status:#x}");
            answer(ghcb, exit_info2(0, status))
        }
        Err(e) => generic(ghcb, "the firmware command failed", &e),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ghcb::msr::PageState;
    use page::*;

    const REQ: u64 = 0x62000;
    const RSP: u64 = 0x63000;
    const CERTS: u64 = 0x64000;

    /// Shared pages in a map (a missing page is private: the host cannot
    /// touch it) and a firmware that answers `status`, echoing the request
    /// with its first byte incremented.
    #[derive(Debug, Default)]
    struct Fake {
        pages: Mutex<HashMap<u64, Box<[u8; GHCB_LEN]>>>,
        status: u32,
        calls: Mutex<u32>,
    }

    impl Fake {
        fn shared(pages: &[u64], status: u32) -> Self {
            let f = Fake {
                status,
                ..Default::default()
            };
            for &p in pages {
                f.pages.lock().unwrap().insert(p, Box::new([0; GHCB_LEN]));
            }
            f
        }
        fn page(&self, gpa: u64) -> Box<[u8; GHCB_LEN]> {
            self.pages.lock().unwrap()[&gpa].clone()
        }
    }

    impl GhcbPlatform for Fake {
        fn read_ghcb(&self, gpa: u64, page: &mut [u8; GHCB_LEN]) -> Result<(), PlatformError> {
            let pages = self.pages.lock().unwrap();
            let p = pages
                .get(&gpa)
                .ok_or_else(|| PlatformError(format!("{gpa:#x} is private")))?;
            page.copy_from_slice(&p[..]);
            Ok(())
        }
        fn write_ghcb(&self, gpa: u64, page: &[u8; GHCB_LEN]) -> Result<(), PlatformError> {
            let mut pages = self.pages.lock().unwrap();
            let p = pages
                .get_mut(&gpa)
                .ok_or_else(|| PlatformError(format!("{gpa:#x} is private")))?;
            p.copy_from_slice(page);
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
            response.copy_from_slice(request);
            response[0] = request[0].wrapping_add(1);
            Ok(self.status)
        }
    }

    fn exit(code: u64, rax_rbx: Option<(u64, u64)>) -> Ghcb {
        let mut g = Ghcb::default();
        g.set(SW_EXIT_CODE, code);
        g.set(SW_EXIT_INFO_1, REQ);
        g.set(SW_EXIT_INFO_2, RSP);
        if let Some((rax, rbx)) = rax_rbx {
            g.set(RAX, rax);
            g.set(RBX, rbx);
        }
        g
    }

    fn run(f: &Fake, limiter: &RateLimiter, certs: &dyn CertTableProvider, g: &mut Ghcb) {
        let code = g.qword(SW_EXIT_CODE);
        let host = GuestRequestHost {
            platform: f,
            limiter,
            certs,
        };
        assert_eq!(handle(g, code, &host), Outcome::Continue);
    }

    fn answer(g: &Ghcb) -> (Option<u64>, Option<u64>) {
        (g.valid(SW_EXIT_INFO_1), g.valid(SW_EXIT_INFO_2))
    }

    #[test]
    fn a_request_runs_the_firmware_and_copies_the_response_back() {
        let f = Fake::shared(&[REQ, RSP], 0);
        f.pages.lock().unwrap().get_mut(&REQ).unwrap()[0] = 41;
        let mut g = exit(EXIT_GUEST_REQUEST, None);
        run(&f, &RateLimiter::default(), &NoCertificates, &mut g);
        assert_eq!(answer(&g), (Some(0), Some(0)));
        assert_eq!(f.page(RSP)[0], 42);
    }

    #[test]
    fn a_firmware_error_is_reported_and_writes_no_response() {
        let f = Fake::shared(&[REQ, RSP], 0x1D);
        f.pages.lock().unwrap().get_mut(&REQ).unwrap()[0] = 41;
        let mut g = exit(EXIT_GUEST_REQUEST, None);
        run(&f, &RateLimiter::default(), &NoCertificates, &mut g);
        assert_eq!(answer(&g), (Some(0), Some(0x1D)));
        assert_eq!(f.page(RSP)[0], 0);
    }

    #[test]
    fn private_or_unaligned_pages_are_refused_without_killing_the_guest() {
        // The response page is private: the host cannot write it.
        let f = Fake::shared(&[REQ], 0);
        let mut g = exit(EXIT_GUEST_REQUEST, None);
        run(&f, &RateLimiter::default(), &NoCertificates, &mut g);
        assert_eq!(answer(&g), (Some(0), Some(exit_info2(VMM_ERR_GENERIC, 0))));
        // The request page is private: the firmware is not called.
        let f = Fake::shared(&[RSP], 0);
        let mut g = exit(EXIT_GUEST_REQUEST, None);
        run(&f, &RateLimiter::default(), &NoCertificates, &mut g);
        assert_eq!(*f.calls.lock().unwrap(), 0);
        assert_eq!(answer(&g), (Some(0), Some(exit_info2(VMM_ERR_GENERIC, 0))));
        let mut g = exit(EXIT_GUEST_REQUEST, None);
        g.set(SW_EXIT_INFO_1, REQ + 8);
        run(&f, &RateLimiter::default(), &NoCertificates, &mut g);
        assert_eq!(answer(&g), (Some(2), Some(ERR_INVALID_INPUT)));
    }

    #[test]
    fn a_throttled_request_answers_busy() {
        let f = Fake::shared(&[REQ, RSP], 0);
        let limiter = RateLimiter::new(2, Duration::from_secs(3600));
        for want in [0, 0, exit_info2(VMM_ERR_BUSY, 0)] {
            let mut g = exit(EXIT_GUEST_REQUEST, None);
            run(&f, &limiter, &NoCertificates, &mut g);
            assert_eq!(answer(&g), (Some(0), Some(want)));
        }
        assert_eq!(*f.calls.lock().unwrap(), 2);
    }

    #[test]
    fn an_extended_report_request_gets_the_certificate_table() {
        let f = Fake::shared(&[REQ, RSP, CERTS, CERTS + 0x1000], 0);
        f.pages.lock().unwrap().get_mut(&REQ).unwrap()[MSG_TYPE_OFFSET] = MSG_REPORT_REQ;
        f.pages.lock().unwrap().get_mut(&CERTS).unwrap().fill(0xEE);
        // No provider: the empty table of 24 zero bytes.
        let mut g = exit(EXIT_EXT_GUEST_REQUEST, Some((CERTS, 1)));
        run(&f, &RateLimiter::default(), &NoCertificates, &mut g);
        assert_eq!(answer(&g), (Some(0), Some(0)));
        assert_eq!(f.page(CERTS)[..24], [0; 24]);
        // A table of 5000 bytes needs two pages.
        let table = StaticCertTable((0..5000).map(|i| i as u8).collect());
        let mut g = exit(EXIT_EXT_GUEST_REQUEST, Some((CERTS, 1)));
        run(&f, &RateLimiter::default(), &table, &mut g);
        assert_eq!(
            answer(&g),
            (Some(0), Some(exit_info2(VMM_ERR_INVALID_LEN, 0)))
        );
        assert_eq!(g.valid(RBX), Some(2));
        let mut g = exit(EXIT_EXT_GUEST_REQUEST, Some((CERTS, 2)));
        run(&f, &RateLimiter::default(), &table, &mut g);
        assert_eq!(answer(&g), (Some(0), Some(0)));
        let mut got = f.page(CERTS).to_vec();
        got.extend_from_slice(&f.page(CERTS + 0x1000)[..]);
        assert_eq!(got[..5000], table.0[..]);
        assert_eq!(got[5000..], vec![0; 2 * GHCB_LEN - 5000][..]);
    }

    #[test]
    fn an_extended_request_needs_rax_and_rbx_and_an_aligned_buffer() {
        let f = Fake::shared(&[REQ, RSP, CERTS], 0);
        let mut g = exit(EXIT_EXT_GUEST_REQUEST, None);
        run(&f, &RateLimiter::default(), &NoCertificates, &mut g);
        assert_eq!(answer(&g), (Some(2), Some(ERR_MISSING_INPUT)));
        let mut g = exit(EXIT_EXT_GUEST_REQUEST, Some((CERTS + 1, 1)));
        run(&f, &RateLimiter::default(), &NoCertificates, &mut g);
        assert_eq!(answer(&g), (Some(2), Some(ERR_INVALID_INPUT)));
        // Not a report request: no certificates written, the request runs.
        f.pages.lock().unwrap().get_mut(&CERTS).unwrap().fill(0xEE);
        let mut g = exit(EXIT_EXT_GUEST_REQUEST, Some((CERTS, 1)));
        run(&f, &RateLimiter::default(), &NoCertificates, &mut g);
        assert_eq!(answer(&g), (Some(0), Some(0)));
        assert_eq!(f.page(CERTS)[0], 0xEE);
    }

    #[test]
    fn the_bucket_allows_a_burst_then_throttles() {
        let limiter = RateLimiter::new(3, Duration::from_secs(3600));
        assert!((0..3).all(|_| limiter.try_acquire()));
        assert!(!limiter.try_acquire());
        let fast = RateLimiter::new(2, Duration::ZERO);
        assert!((0..100).all(|_| fast.try_acquire()));
    }

    #[test]
    fn exit_info2_puts_the_vmm_error_above_the_firmware_status() {
        assert_eq!(exit_info2(VMM_ERR_BUSY, 0), 2 << 32);
        assert_eq!(exit_info2(0, 0x1D), 0x1D);
        assert_eq!(exit_info2(VMM_ERR_INVALID_LEN, 0), 1 << 32);
    }
}
