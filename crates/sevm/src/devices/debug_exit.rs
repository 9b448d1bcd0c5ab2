//! The debug-exit port: a guest write of byte `v` ends the VM with exit
//! status `v`.
//!
//! Port 0x501 is the default `iobase` of QEMU's `isa-debug-exit`, with
//! `iosize` 1. Unlike QEMU (which exits with `(v << 1) | 1`, so a guest can
//! never report 0) sevm exits with `v` itself, so 0 means success. For wider
//! writes the low byte counts.

use super::{IoAction, PortIoDevice};

/// The debug-exit port number.
pub const DEBUG_EXIT_PORT: u16 = 0x501;

/// The debug-exit device.
#[derive(Debug, Default)]
pub struct DebugExit;

impl PortIoDevice for DebugExit {
    fn name(&self) -> &'static str {
        "debug-exit"
    }

    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0xFF);
    }

    fn write(&mut self, _offset: u16, data: &[u8]) -> IoAction {
        match data.first() {
            Some(&v) => IoAction::Exit(v),
            None => IoAction::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_ends_with_the_written_byte() {
        let mut d = DebugExit;
        assert_eq!(d.write(0, &[0]), IoAction::Exit(0));
        assert_eq!(d.write(0, &[7]), IoAction::Exit(7));
        assert_eq!(d.write(0, &[0x34, 0x12]), IoAction::Exit(0x34));
        assert_eq!(d.write(0, &[]), IoAction::Continue);
    }
}
