//! The guest control port: how the host asks a cooperating guest (the demo
//! guest's memtest mode) to finish its work now.
//!
//! Protocol (port 0x502, byte access):
//! * guest `in al, 0x502` returns 1 when the host has requested "finish now"
//!   (for memtest: stop rewriting, verify the whole range, report, exit),
//!   0 otherwise. The request stays set once made.
//! * guest writes are ignored.
//!
//! The host side is a [`ControlHandle`]; the request survives pause/resume
//! and is visible to every vCPU.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{IoAction, PortIoDevice};

/// The control port number.
pub const CONTROL_PORT: u16 = 0x502;

/// Host side of the control port. Clones share the same flag.
#[derive(Debug, Clone, Default)]
pub struct ControlHandle(Arc<AtomicBool>);

impl ControlHandle {
    /// A handle with no request made.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the guest to finish (the next poll of the port returns 1).
    pub fn request_finish(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a finish request has been made.
    pub fn finish_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The device the guest polls.
#[derive(Debug)]
pub struct GuestControl {
    handle: ControlHandle,
}

impl GuestControl {
    /// A port answering from `handle`.
    pub fn new(handle: ControlHandle) -> Self {
        GuestControl { handle }
    }
}

impl PortIoDevice for GuestControl {
    fn name(&self) -> &'static str {
        "guest-control"
    }

    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = u8::from(self.handle.finish_requested());
        }
    }

    fn write(&mut self, _offset: u16, _data: &[u8]) -> IoAction {
        IoAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_zero_until_requested() {
        let h = ControlHandle::new();
        let mut dev = GuestControl::new(h.clone());
        let mut b = [0xAAu8; 2];
        dev.read(0, &mut b);
        assert_eq!(b, [0, 0]);
        h.request_finish();
        dev.read(0, &mut b);
        assert_eq!(b, [1, 0]);
        assert_eq!(dev.write(0, &[1]), IoAction::Continue);
    }
}
