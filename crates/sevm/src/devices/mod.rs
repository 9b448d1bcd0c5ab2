//! Port-I/O devices of the sevm machine and the bus that dispatches guest
//! `in`/`out` instructions to them.
//!
//! | port(s) | device |
//! |---|---|
//! | 0x3F8–0x3FF | [`serial::Serial`], a 16550 UART (transmit only) |
//! | 0x501 | [`debug_exit::DebugExit`]: a byte write `v` ends the VM with exit status `v` |
//! | 0x502 | [`control::GuestControl`]: the host's "finish now" request to the demo guest |
//!
//! Any other port reads as all-ones and ignores writes; such accesses are
//! logged, rate-limited.

pub mod control;
pub mod debug_exit;
pub mod serial;

use std::sync::{Arc, Mutex, PoisonError};

/// What the vCPU loop must do after a device handled a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoAction {
    /// Nothing: continue running the guest.
    Continue,
    /// End the machine with this guest exit status.
    Exit(u8),
}

/// A device on the port-I/O bus. Offsets are relative to the device's base.
pub trait PortIoDevice: Send {
    /// Short name for logs.
    fn name(&self) -> &'static str;
    /// Guest `in` of `data.len()` bytes at `offset`.
    fn read(&mut self, offset: u16, data: &mut [u8]);
    /// Guest `out` of `data` at `offset`.
    fn write(&mut self, offset: u16, data: &[u8]) -> IoAction;
    /// The machine has exited: flush, release waiters.
    fn machine_exited(&mut self) {}
}

/// Counts repeated events and says which ones to log: the first `burst`
/// occurrences, then one in every `every`. Deterministic (count based) so a
/// guest cannot flood the log however fast it loops.
#[derive(Debug)]
pub struct RateLimiter {
    seen: u64,
    burst: u64,
    every: u64,
}

impl RateLimiter {
    /// Log the first `burst` events, then every `every`-th.
    pub const fn new(burst: u64, every: u64) -> Self {
        RateLimiter {
            seen: 0,
            burst,
            every,
        }
    }

    /// Records one event; returns `Some(count)` (the event's 1-based number)
    /// when it should be logged.
    pub fn hit(&mut self) -> Option<u64> {
        self.seen = self.seen.saturating_add(1);
        let n = self.seen;
        if n <= self.burst || (self.every != 0 && (n - self.burst).is_multiple_of(self.every)) {
            Some(n)
        } else {
            None
        }
    }

    /// Total events recorded.
    pub fn count(&self) -> u64 {
        self.seen
    }
}

type SharedDevice = Arc<Mutex<dyn PortIoDevice>>;

struct BusEntry {
    base: u16,
    len: u16,
    device: SharedDevice,
}

/// Dispatches port I/O to the registered devices.
pub struct IoBus {
    entries: Vec<BusEntry>,
    unhandled: Mutex<RateLimiter>,
}

impl std::fmt::Debug for IoBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for e in &self.entries {
            let name = e.device.lock().map(|d| d.name()).unwrap_or("<poisoned>");
            list.entry(&format_args!("{:#x}+{} {}", e.base, e.len, name));
        }
        list.finish()
    }
}

/// Why a device could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The new range overlaps a registered one or wraps past 0xFFFF.
    #[error("port range {base:#x}+{len} overlaps another device or is invalid")]
    Overlap {
        /// First port of the refused range.
        base: u16,
        /// Number of ports.
        len: u16,
    },
}

impl Default for IoBus {
    fn default() -> Self {
        Self::new()
    }
}

impl IoBus {
    /// An empty bus.
    pub fn new() -> Self {
        IoBus {
            entries: Vec::new(),
            unhandled: Mutex::new(RateLimiter::new(10, 1000)),
        }
    }

    /// Registers `device` on ports `base..base+len`.
    pub fn register(&mut self, base: u16, len: u16, device: SharedDevice) -> Result<(), BusError> {
        let end = u32::from(base) + u32::from(len);
        if len == 0 || end > 0x1_0000 {
            return Err(BusError::Overlap { base, len });
        }
        let overlaps = self.entries.iter().any(|e| {
            let e_end = u32::from(e.base) + u32::from(e.len);
            u32::from(base) < e_end && u32::from(e.base) < end
        });
        if overlaps {
            return Err(BusError::Overlap { base, len });
        }
        self.entries.push(BusEntry { base, len, device });
        Ok(())
    }

    fn find(&self, port: u16) -> Option<(&BusEntry, u16)> {
        self.entries.iter().find_map(|e| {
            let off = port.checked_sub(e.base)?;
            (off < e.len).then_some((e, off))
        })
    }

    fn log_unhandled(&self, what: &str, port: u16, size: usize) {
        let mut rl = self
            .unhandled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = rl.hit() {
            log::debug!(
                "unhandled guest port {what} at {port:#x} ({size} bytes; unhandled access #{n})"
            );
        }
    }

    /// Tells every device that the machine has exited.
    pub fn machine_exited(&self) {
        for e in &self.entries {
            e.device
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .machine_exited();
        }
    }

    /// Guest `in` at `port`: fills `data`.
    pub fn read(&self, port: u16, data: &mut [u8]) {
        match self.find(port) {
            Some((e, off)) => e
                .device
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .read(off, data),
            None => {
                data.fill(0xFF);
                self.log_unhandled("read", port, data.len());
            }
        }
    }

    /// Guest `out` of `data` at `port`.
    pub fn write(&self, port: u16, data: &[u8]) -> IoAction {
        match self.find(port) {
            Some((e, off)) => e
                .device
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .write(off, data),
            None => {
                self.log_unhandled("write", port, data.len());
                IoAction::Continue
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe(Vec<(u16, Vec<u8>)>);
    impl PortIoDevice for Probe {
        fn name(&self) -> &'static str {
            "probe"
        }
        fn read(&mut self, offset: u16, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u16, data: &[u8]) -> IoAction {
            self.0.push((offset, data.to_vec()));
            IoAction::Continue
        }
    }

    #[test]
    fn dispatch_by_range_and_default_for_unknown_ports() {
        let mut bus = IoBus::new();
        let probe = Arc::new(Mutex::new(Probe(Vec::new())));
        bus.register(0x100, 4, probe.clone()).unwrap();
        let mut b = [0u8; 2];
        bus.read(0x102, &mut b);
        assert_eq!(b, [2, 2]);
        bus.read(0x104, &mut b);
        assert_eq!(b, [0xFF, 0xFF]);
        assert_eq!(bus.write(0x103, &[9]), IoAction::Continue);
        assert_eq!(bus.write(0x99, &[9]), IoAction::Continue);
        assert_eq!(probe.lock().unwrap().0, vec![(3, vec![9])]);
    }

    #[test]
    fn overlapping_or_wrapping_ranges_are_refused() {
        let mut bus = IoBus::new();
        let p = || Arc::new(Mutex::new(Probe(Vec::new())));
        bus.register(0x100, 4, p()).unwrap();
        assert!(bus.register(0x103, 1, p()).is_err());
        assert!(bus.register(0xFE, 3, p()).is_err());
        assert!(bus.register(0xFFFF, 2, p()).is_err());
        assert!(bus.register(0x200, 0, p()).is_err());
        bus.register(0x104, 1, p()).unwrap();
        bus.register(0xFFFF, 1, p()).unwrap();
    }

    #[test]
    fn rate_limiter_logs_burst_then_sparse() {
        let mut rl = RateLimiter::new(3, 10);
        let logged: Vec<u64> = (0..40).filter_map(|_| rl.hit()).collect();
        assert_eq!(logged, vec![1, 2, 3, 13, 23, 33]);
        assert_eq!(rl.count(), 40);
    }
}
