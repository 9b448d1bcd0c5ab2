//! A 16550A UART, transmit side only: enough for a guest that writes THR and
//! polls LSR (firmware debug output, the demo guest, a Linux early console).
//! The receiver never has data.

use std::fmt;
use std::fs::File;
use std::io::{self, LineWriter, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::{IoAction, PortIoDevice, RateLimiter};

/// The conventional COM1 base port.
pub const COM1_BASE: u16 = 0x3F8;
/// Number of ports the UART decodes.
pub const PORT_COUNT: u16 = 8;

const THR_RBR_DLL: u16 = 0;
const IER_DLM: u16 = 1;
const IIR_FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const MSR: u16 = 6;
const SCR: u16 = 7;

const LCR_DLAB: u8 = 0x80;
const MCR_LOOP: u8 = 0x10;
/// Transmitter holding register empty | transmitter empty.
const LSR_IDLE: u8 = 0x60;
/// No interrupt pending.
const IIR_NONE: u8 = 0x01;
const IIR_FIFO_ENABLED: u8 = 0xC0;
/// DCD | DSR | CTS, as QEMU reports for a connected chardev.
const MSR_CONNECTED: u8 = 0xB0;

/// Largest amount of output a [`CaptureBuffer`] keeps; further bytes are
/// dropped (and counted) so a looping guest cannot exhaust host memory.
pub const CAPTURE_LIMIT: usize = 4 << 20;

#[derive(Default)]
struct CaptureInner {
    data: Vec<u8>,
    dropped: u64,
    closed: bool,
}

#[derive(Default)]
struct CaptureShared {
    inner: Mutex<CaptureInner>,
    cond: Condvar,
}

/// An in-memory serial sink shared with the code that reads it (tests, the
/// example runner). Clones share the same buffer. The machine closes it when
/// it exits, which releases [`CaptureBuffer::wait_for`].
#[derive(Clone, Default)]
pub struct CaptureBuffer(Arc<CaptureShared>);

impl fmt::Debug for CaptureBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("CaptureBuffer")
            .field("len", &inner.data.len())
            .field("dropped", &inner.dropped)
            .field("closed", &inner.closed)
            .finish()
    }
}

impl CaptureBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, CaptureInner> {
        self.0.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything captured so far.
    pub fn contents(&self) -> Vec<u8> {
        self.lock().data.clone()
    }

    /// Everything captured so far, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.contents()).into_owned()
    }

    /// Bytes dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Marks the output finished (the machine exited) and wakes waiters.
    pub fn close(&self) {
        self.lock().closed = true;
        self.0.cond.notify_all();
    }

    /// Whether [`CaptureBuffer::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Blocks until `needle` appears in the output (true) or the buffer is
    /// closed without it (false).
    pub fn wait_for(&self, needle: &[u8]) -> bool {
        let mut g = self.lock();
        let mut from = 0;
        loop {
            if needle.is_empty() {
                return true;
            }
            if let Some(hay) = g.data.get(from..) {
                if hay.windows(needle.len()).any(|w| w == needle) {
                    return true;
                }
            }
            // Resume the search where a match could still start.
            from = g.data.len().saturating_sub(needle.len() - 1);
            if g.closed {
                return false;
            }
            g = self.0.cond.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Write for CaptureBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        {
            let mut inner = self.lock();
            let room = CAPTURE_LIMIT.saturating_sub(inner.data.len());
            let take = room.min(buf.len());
            inner
                .data
                .extend_from_slice(buf.get(..take).unwrap_or_default());
            inner.dropped = inner.dropped.saturating_add((buf.len() - take) as u64);
        }
        self.0.cond.notify_all();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where the UART's output goes.
pub enum SerialOutput {
    /// The process's standard output.
    Stdout,
    /// A file (line buffered).
    File(File),
    /// An in-memory buffer.
    Capture(CaptureBuffer),
    /// Any writer.
    Writer(Box<dyn Write + Send>),
    /// Discarded.
    Null,
}

impl fmt::Debug for SerialOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SerialOutput::Stdout => f.write_str("Stdout"),
            SerialOutput::File(file) => f.debug_tuple("File").field(file).finish(),
            SerialOutput::Capture(c) => f.debug_tuple("Capture").field(c).finish(),
            SerialOutput::Writer(_) => f.write_str("Writer(..)"),
            SerialOutput::Null => f.write_str("Null"),
        }
    }
}

impl SerialOutput {
    fn into_writer(self) -> Box<dyn Write + Send> {
        match self {
            SerialOutput::Stdout => Box::new(io::stdout()),
            SerialOutput::File(f) => Box::new(LineWriter::new(f)),
            SerialOutput::Capture(c) => Box::new(c),
            SerialOutput::Writer(w) => w,
            SerialOutput::Null => Box::new(io::sink()),
        }
    }
}

/// The UART.
pub struct Serial {
    out: Box<dyn Write + Send>,
    /// The capture buffer, when that is the output (closed on exit).
    capture: Option<CaptureBuffer>,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    fcr: u8,
    write_errors: RateLimiter,
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serial")
            .field("lcr", &self.lcr)
            .field("mcr", &self.mcr)
            .finish_non_exhaustive()
    }
}

impl Serial {
    /// A UART writing to `output`.
    pub fn new(output: SerialOutput) -> Self {
        let capture = match &output {
            SerialOutput::Capture(c) => Some(c.clone()),
            _ => None,
        };
        Serial {
            out: output.into_writer(),
            capture,
            ier: 0,
            lcr: 0x03,
            mcr: 0,
            scr: 0,
            // 115200 baud
            dll: 0x01,
            dlm: 0,
            fcr: 0,
            write_errors: RateLimiter::new(1, 1000),
        }
    }

    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    fn transmit(&mut self, byte: u8) {
        let mut r = self.out.write_all(&[byte]);
        if r.is_ok() && byte == b'\n' {
            r = self.out.flush();
        }
        if let Err(e) = r {
            if let Some(n) = self.write_errors.hit() {
                log::warn!("serial output failed (error #{n}): {e}");
            }
        }
    }

    /// The guest-visible register state (IER, LCR, MCR, SCR, DLL, DLM,
    /// FCR), for snapshots and migration.
    pub fn registers(&self) -> [u8; 7] {
        [
            self.ier, self.lcr, self.mcr, self.scr, self.dll, self.dlm, self.fcr,
        ]
    }

    /// Restores what [`Serial::registers`] returned (masked as guest writes
    /// are).
    pub fn set_registers(&mut self, r: [u8; 7]) {
        let [ier, lcr, mcr, scr, dll, dlm, fcr] = r;
        self.ier = ier & 0x0F;
        self.lcr = lcr;
        self.mcr = mcr & 0x1F;
        self.scr = scr;
        self.dll = dll;
        self.dlm = dlm;
        self.fcr = fcr;
    }

    /// Flushes buffered output.
    pub fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            log::warn!("serial output flush failed: {e}");
        }
    }

    fn read_reg(&mut self, offset: u16) -> u8 {
        match offset {
            THR_RBR_DLL if self.dlab() => self.dll,
            THR_RBR_DLL => 0,
            IER_DLM if self.dlab() => self.dlm,
            IER_DLM => self.ier,
            IIR_FCR => {
                let fifo = if self.fcr & 1 != 0 {
                    IIR_FIFO_ENABLED
                } else {
                    0
                };
                IIR_NONE | fifo
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => LSR_IDLE,
            MSR => {
                if self.mcr & MCR_LOOP != 0 {
                    // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
                    let m = self.mcr;
                    ((m & 0x01) << 5) | ((m & 0x02) << 3) | ((m & 0x04) << 4) | ((m & 0x08) << 4)
                } else {
                    MSR_CONNECTED
                }
            }
            SCR => self.scr,
            _ => 0xFF,
        }
    }

    fn write_reg(&mut self, offset: u16, v: u8) {
        match offset {
            THR_RBR_DLL if self.dlab() => self.dll = v,
            THR_RBR_DLL if self.mcr & MCR_LOOP == 0 => self.transmit(v),
            THR_RBR_DLL => {} // loopback: nothing leaves the UART
            IER_DLM if self.dlab() => self.dlm = v,
            IER_DLM => self.ier = v & 0x0F,
            IIR_FCR => self.fcr = v,
            LCR => self.lcr = v,
            MCR => self.mcr = v & 0x1F,
            SCR => self.scr = v,
            _ => {} // LSR/MSR are read-only
        }
    }
}

impl PortIoDevice for Serial {
    fn name(&self) -> &'static str {
        "serial"
    }

    fn read(&mut self, offset: u16, data: &mut [u8]) {
        // Wider accesses read consecutive registers, as on an 8-bit ISA bus.
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.read_reg(offset.saturating_add(i as u16));
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> IoAction {
        for (i, &b) in data.iter().enumerate() {
            self.write_reg(offset.saturating_add(i as u16), b);
        }
        IoAction::Continue
    }

    fn machine_exited(&mut self) {
        self.flush();
        if let Some(c) = &self.capture {
            c.close();
        }
    }
}

impl Drop for Serial {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uart() -> (Serial, CaptureBuffer) {
        let cap = CaptureBuffer::new();
        (Serial::new(SerialOutput::Capture(cap.clone())), cap)
    }

    #[test]
    fn thr_writes_reach_the_sink_and_lsr_says_idle() {
        let (mut s, cap) = uart();
        let mut lsr = [0u8];
        s.read(LSR, &mut lsr);
        assert_eq!(lsr[0] & 0x20, 0x20, "THRE set");
        assert_eq!(lsr[0] & 0x01, 0, "no received data");
        for &b in b"hi\n" {
            assert_eq!(s.write(THR_RBR_DLL, &[b]), IoAction::Continue);
        }
        assert_eq!(cap.text(), "hi\n");
    }

    #[test]
    fn divisor_latch_does_not_transmit() {
        let (mut s, cap) = uart();
        s.write(LCR, &[0x83]);
        s.write(THR_RBR_DLL, &[0x0C]);
        s.write(IER_DLM, &[0x00]);
        s.write(LCR, &[0x03]);
        let mut dll = [0u8];
        s.read(THR_RBR_DLL, &mut dll);
        assert_eq!(dll[0], 0, "RBR reads empty when DLAB is clear");
        s.write(LCR, &[0x83]);
        s.read(THR_RBR_DLL, &mut dll);
        assert_eq!(dll[0], 0x0C);
        assert!(cap.contents().is_empty());
    }

    #[test]
    fn loopback_suppresses_output_and_scratch_register_works() {
        let (mut s, cap) = uart();
        s.write(MCR, &[MCR_LOOP | 0x0F]);
        s.write(THR_RBR_DLL, b"x");
        let mut msr = [0u8];
        s.read(MSR, &mut msr);
        assert_eq!(msr[0], 0xF0);
        s.write(SCR, &[0x5A]);
        let mut scr = [0u8];
        s.read(SCR, &mut scr);
        assert_eq!(scr[0], 0x5A);
        assert!(cap.contents().is_empty());
        let mut iir = [0u8];
        s.read(IIR_FCR, &mut iir);
        assert_eq!(iir[0], IIR_NONE);
    }

    #[test]
    fn wait_for_sees_output_and_is_released_by_close() {
        let (mut s, cap) = uart();
        for &b in b"abc\ndef" {
            s.write(THR_RBR_DLL, &[b]);
        }
        assert!(cap.wait_for(b"c\nd"));
        assert!(cap.wait_for(b""));
        let waiter = {
            let cap = cap.clone();
            std::thread::spawn(move || (cap.wait_for(b"xyz"), cap.wait_for(b"never")))
        };
        for &b in b"xy" {
            s.write(THR_RBR_DLL, &[b]);
        }
        s.write(THR_RBR_DLL, b"z");
        s.machine_exited();
        assert_eq!(waiter.join().unwrap(), (true, false));
        assert!(cap.is_closed());
    }

    #[test]
    fn capture_is_bounded() {
        let mut cap = CaptureBuffer::new();
        let chunk = vec![b'a'; CAPTURE_LIMIT - 1];
        cap.write_all(&chunk).unwrap();
        cap.write_all(b"bcd").unwrap();
        assert_eq!(cap.contents().len(), CAPTURE_LIMIT);
        assert_eq!(cap.dropped(), 2);
    }
}
