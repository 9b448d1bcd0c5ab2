//! A GDB remote-protocol stub (`-gdb tcp::PORT`, `-s` = `tcp::1234`).
//!
//! As QEMU's gdbstub: one client at a time; attaching stops the VM (a guest
//! started with `-S` stays in prelaunch until `continue`); threads are
//! vCPUs (ids from 1); `continue` resumes the VM (for a guest waiting in
//! launch-secret state that is QMP `cont`: LAUNCH_FINISH, then run); `^C`
//! stops it again (`T02`); when the guest ends the stub reports `W<code>`;
//! `detach` resumes a VM that was running when GDB attached; `kill` quits
//! the VM.
//!
//! Registers come from the stopped vCPU (KVM_GET_REGS/SREGS). Memory reads
//! and writes take guest-virtual addresses (translated with the vCPU's page
//! tables) and go through DBG_DECRYPT/DBG_ENCRYPT
//! ([`GuestDebug`]): GDB sees plaintext of a
//! debuggable SEV guest, and for a NODBG guest every memory access fails
//! (the firmware's POLICY_FAILURE, logged; GDB shows "Cannot access memory
//! at address ...").
//!
//! `stepi` single-steps the selected vCPU (KVM_SET_GUEST_DEBUG). Software
//! breakpoints (`Z0`, what `break` uses) are implemented by single-stepping
//! every vCPU and stopping when the next instruction's linear address is a
//! breakpoint: no `int3` is written into guest memory (an SEV guest's
//! memory could only take it through DBG_ENCRYPT, and this KVM cannot
//! emulate `int3` anyway), at the price of one KVM exit per guest
//! instruction while any breakpoint is set. Breakpoint addresses are linear
//! addresses, i.e. `$pc` once the guest runs with flat segments.
//!
//! Not supported (answered as unsupported or with an error): hardware
//! breakpoints and watchpoints (`Z1`..`Z4`), writing registers, `X` binary
//! writes (GDB falls back to `M`), no-ack mode.

pub mod protocol;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::GdbConfig;
use crate::control::VmControl;
use crate::debug::{hmp::error_text, DebugError, GuestDebug, View};
use crate::machine::{MachineExit, MachineState};
use crate::vcpu::VcpuState;
use protocol::{Command, Incoming, PacketReader};

/// Most breakpoints one session may set.
const MAX_BREAKPOINTS: usize = 64;

/// How often a continuing stub checks whether the guest ended.
const POLL: Duration = Duration::from_millis(20);

/// What the stub debugs: the VM, through its control interface.
pub struct Target {
    /// Memory and vCPU access.
    pub debug: GuestDebug,
    /// Run-state changes (QMP's `cont`, `stop` and `quit`, with their
    /// events).
    pub vm: Arc<dyn VmControl>,
}

impl Target {
    /// The target of `vm`.
    pub fn new(vm: Arc<dyn VmControl>) -> Self {
        Target {
            debug: vm.debug(),
            vm,
        }
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("debug", &self.debug)
            .finish_non_exhaustive()
    }
}

/// Why the stub could not start.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// The listening socket.
    #[error("cannot listen on tcp:{host}:{port}")]
    Bind {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The connected client, shared with [`GdbServer::vm_exited`].
#[derive(Default)]
struct Client {
    writer: Mutex<Option<TcpStream>>,
    continuing: AtomicBool,
}

impl Client {
    fn send(&self, payload: &[u8]) -> std::io::Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        match w.as_mut() {
            Some(s) => s.write_all(&protocol::encode(payload)),
            None => Err(ErrorKind::NotConnected.into()),
        }
    }

    /// Sends the answer to a `continue`/`step` once: whoever (the session or
    /// [`GdbServer::vm_exited`]) takes `continuing` sends, under the writer
    /// lock, so the answer is never lost between the two nor sent twice.
    fn answer_continue(&self, payload: &[u8]) -> std::io::Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.continuing.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        match w.as_mut() {
            Some(s) => s.write_all(&protocol::encode(payload)),
            None => Err(ErrorKind::NotConnected.into()),
        }
    }
}

/// The running stub.
pub struct GdbServer {
    client: Arc<Client>,
    addr: std::net::SocketAddr,
}

impl std::fmt::Debug for GdbServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GdbServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl GdbServer {
    /// Listens on `config` (all addresses for `tcp::PORT`, as QEMU) and
    /// serves clients on a thread. Logs `gdb stub listening on ADDR`.
    pub fn start(config: &GdbConfig, target: Target) -> Result<GdbServer, GdbError> {
        let host = config.host.clone().unwrap_or_else(|| "0.0.0.0".into());
        let listener =
            TcpListener::bind((host.as_str(), config.port)).map_err(|source| GdbError::Bind {
                host: host.clone(),
                port: config.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| GdbError::Bind {
            host,
            port: config.port,
            source,
        })?;
        log::info!("gdb stub listening on {addr}");
        let client = Arc::new(Client::default());
        let c = Arc::clone(&client);
        let target = Arc::new(target);
        std::thread::Builder::new()
            .name("gdbstub".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    match stream {
                        Ok(s) => {
                            if let Err(e) = serve(&s, &target, &c) {
                                log::info!("gdb client ended: {e}");
                            }
                            *c.writer.lock().unwrap_or_else(PoisonError::into_inner) = None;
                            c.continuing.store(false, Ordering::SeqCst);
                        }
                        Err(e) => log::warn!("gdb stub: accept failed: {e}"),
                    }
                }
            })
            .map_err(|source| GdbError::Bind {
                host: addr.ip().to_string(),
                port: addr.port(),
                source,
            })?;
        Ok(GdbServer { client, addr })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The VM ended: a client waiting in `continue` gets `W<code>`; the
    /// connection is closed.
    pub fn vm_exited(&self, exit: &MachineExit) {
        let _ = self.client.answer_continue(exit_packet(exit).as_bytes());
        let mut w = self
            .client
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = w.take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// `W<status>` for a guest exit (the debug-exit port's status; 0 for a
/// shutdown or quit), `X06` (SIGABRT) when the VMM stopped the machine on
/// an error.
fn exit_packet(exit: &MachineExit) -> String {
    match exit {
        MachineExit::GuestExit(code) => format!("W{code:02x}"),
        MachineExit::Error(_) => "X06".into(),
        _ => "W00".into(),
    }
}

/// Per-connection state.
struct Session {
    /// The vCPU for `g`/`m` (index from 0).
    cpu: usize,
    was_running: bool,
    /// Breakpoints (linear addresses).
    breakpoints: std::collections::BTreeSet<u64>,
    /// The vCPU being single-stepped.
    stepping: Option<usize>,
}

/// Guest debugging for this session: `step` single-steps that vCPU, and
/// every vCPU stops at the breakpoints (see [`Machine::set_debug`]).
///
/// [`Machine::set_debug`]: crate::machine::Machine::set_debug
fn apply_guest_debug(
    target: &Target,
    session: &Session,
    step: Option<usize>,
) -> Result<(), String> {
    let bps: Vec<u64> = session.breakpoints.iter().copied().collect();
    target
        .debug
        .machine()
        .set_debug(step, &bps)
        .map_err(|e| error_text(&e))
}

/// Removes the session's breakpoints and turns guest debugging off (when
/// GDB leaves). A VM left running with breakpoints (GDB vanished during
/// `continue`) is paused for the change and resumed.
fn cleanup(target: &Target, session: &mut Session) {
    let had = !session.breakpoints.is_empty() || session.stepping.is_some();
    session.breakpoints.clear();
    session.stepping = None;
    if !had {
        return;
    }
    let machine = target.debug.machine();
    let running = machine.run_state() == MachineState::Running;
    if running {
        if let Err(e) = target.vm.stop() {
            log::warn!("gdb: cannot stop the VM to remove breakpoints: {e}");
        }
    }
    if let Err(e) = apply_guest_debug(target, session, None) {
        log::warn!("gdb: cannot turn guest debugging off: {e}");
    }
    let _ = machine.take_debug_stop();
    if running {
        if let Err(e) = target.vm.cont() {
            log::warn!("gdb: cannot resume the VM: {e}");
        }
    }
}

fn vcpu_state(target: &Target, cpu: usize) -> Result<VcpuState, DebugError> {
    target
        .debug
        .machine()
        .vcpu_state(cpu)
        .map_err(|e| DebugError::Vcpu {
            index: cpu,
            reason: e.to_string(),
        })
}

fn serve(stream: &TcpStream, target: &Target, client: &Client) -> std::io::Result<()> {
    let peer = stream.peer_addr()?;
    log::info!("gdb client connected from {peer}");
    stream.set_nodelay(true)?;
    *client.writer.lock().unwrap_or_else(PoisonError::into_inner) = Some(stream.try_clone()?);
    let machine = Arc::clone(target.debug.machine());
    let mut session = Session {
        cpu: 0,
        was_running: machine.run_state() == MachineState::Running,
        breakpoints: std::collections::BTreeSet::new(),
        stepping: None,
    };
    if let Err(e) = target.vm.stop() {
        log::warn!("gdb: cannot stop the VM: {e}");
    }
    let result = session_loop(stream, target, client, &mut session);
    if machine.exit().is_none() {
        cleanup(target, &mut session);
    }
    result
}

fn session_loop(
    stream: &TcpStream,
    target: &Target,
    client: &Client,
    session: &mut Session,
) -> std::io::Result<()> {
    let peer = stream.peer_addr()?;
    let mut reader = PacketReader::default();
    let mut buf = vec![0u8; 4096];
    let mut input = stream;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            log::info!("gdb client {peer} disconnected");
            return Ok(());
        }
        for item in reader.feed(buf.get(..n).unwrap_or_default()) {
            match item {
                Incoming::Ack | Incoming::Nack | Incoming::Interrupt => {}
                Incoming::BadChecksum | Incoming::TooLong => input.write_all(b"-")?,
                Incoming::Packet(p) => {
                    input.write_all(b"+")?;
                    let cmd = protocol::parse(&p);
                    // A resumed guest can end before `run_until_stop` runs:
                    // mark the client as waiting first, so that
                    // `GdbServer::vm_exited` sends it the `W` packet.
                    let resumes = matches!(cmd, Command::Continue { addr: None } | Command::Step);
                    if resumes {
                        client.continuing.store(true, Ordering::SeqCst);
                    }
                    match handle(cmd, target, session) {
                        Reply::Packet(r) if resumes => {
                            // Not resumed after all (an error, or the VM had
                            // ended): answer unless `vm_exited` already did.
                            client.answer_continue(r.as_bytes())?
                        }
                        Reply::Packet(r) => client.send(r.as_bytes())?,
                        Reply::Continue => {
                            if !run_until_stop(input, target, client, &mut reader, session)? {
                                return Ok(());
                            }
                        }
                        Reply::Close(r) => {
                            if let Some(r) = r {
                                client.send(r.as_bytes())?;
                            }
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

enum Reply {
    Packet(String),
    /// Resume and answer with a stop reply later.
    Continue,
    /// Answer (optionally) and end the session.
    Close(Option<String>),
}

fn thread_count(target: &Target) -> usize {
    target.debug.machine().vcpu_count()
}

fn stop_reply(target: &Target, signal: u8, cpu: usize) -> String {
    match target.debug.machine().exit() {
        Some(exit) => exit_packet(&exit),
        None => format!("T{signal:02x}thread:{:02x};", cpu + 1),
    }
}

fn handle(cmd: Command, target: &Target, session: &mut Session) -> Reply {
    let p = |s: &str| Reply::Packet(s.to_string());
    match cmd {
        Command::StopReason => Reply::Packet(stop_reply(target, 5, session.cpu)),
        Command::Supported => p(&format!(
            "PacketSize={:x};qXfer:features:read+",
            protocol::PACKET_SIZE
        )),
        Command::ReadFeatures { annex, offset, len } => {
            if annex != "target.xml" {
                return p("E00");
            }
            let xml = protocol::target_xml();
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(xml.len());
            let len = usize::try_from(len)
                .unwrap_or(usize::MAX)
                .min(protocol::PACKET_SIZE - 16);
            let end = start.saturating_add(len).min(xml.len());
            let part = xml.get(start..end).unwrap_or_default();
            let more = if end < xml.len() { 'm' } else { 'l' };
            Reply::Packet(format!("{more}{part}"))
        }
        Command::Attached => p("1"),
        Command::Symbol => p("OK"),
        Command::CurrentThread => p(&format!("QC{:x}", session.cpu + 1)),
        Command::FirstThreadInfo => {
            let ids: Vec<String> = (1..=thread_count(target))
                .map(|i| format!("{i:x}"))
                .collect();
            p(&format!("m{}", ids.join(",")))
        }
        Command::NextThreadInfo => p("l"),
        Command::SetThread { op, thread } => {
            let n = thread_count(target) as i64;
            match thread {
                -1 | 0 => p("OK"),
                t if (1..=n).contains(&t) => {
                    if op == b'g' {
                        session.cpu = (t - 1) as usize;
                    }
                    p("OK")
                }
                _ => p("E22"),
            }
        }
        Command::ThreadAlive(t) => {
            if (1..=thread_count(target) as i64).contains(&t) {
                p("OK")
            } else {
                p("E22")
            }
        }
        Command::ReadRegisters => match vcpu_state(target, session.cpu) {
            Ok(state) => Reply::Packet(protocol::registers(&state)),
            Err(e) => {
                log::warn!("gdb: {}", error_text(&e));
                p("E14")
            }
        },
        Command::ReadMemory { addr, len } => {
            if len > protocol::MAX_MEMORY_READ {
                return p("E22");
            }
            let mut buf = vec![0u8; len as usize];
            let res = vcpu_state(target, session.cpu).and_then(|st| {
                target
                    .debug
                    .read_in(View::Decrypted, Some(&st), addr, &mut buf)
            });
            match res {
                Ok(()) => Reply::Packet(protocol::encode_hex(&buf)),
                Err(e) => {
                    log::warn!("gdb: read of {len} bytes at {addr:#x}: {}", error_text(&e));
                    p("E14")
                }
            }
        }
        Command::WriteMemory { addr, data } => {
            let res = vcpu_state(target, session.cpu)
                .and_then(|st| target.debug.write_in(Some(&st), addr, &data));
            match res {
                Ok(()) => p("OK"),
                Err(e) => {
                    log::warn!(
                        "gdb: write of {} bytes at {addr:#x}: {}",
                        data.len(),
                        error_text(&e)
                    );
                    p("E14")
                }
            }
        }
        Command::Continue { addr: Some(_) } => p("E22"),
        Command::Continue { addr: None } => {
            if target.debug.machine().exit().is_some() {
                return Reply::Packet(stop_reply(target, 5, session.cpu));
            }
            match target.vm.cont() {
                Ok(()) => Reply::Continue,
                Err(e) => {
                    log::warn!("gdb: continue failed: {e}");
                    p("E01")
                }
            }
        }
        Command::Step => {
            if target.debug.machine().exit().is_some() {
                return Reply::Packet(stop_reply(target, 5, session.cpu));
            }
            if let Err(e) = apply_guest_debug(target, session, Some(session.cpu)) {
                log::warn!("gdb: cannot single-step: {e}");
                return p("E01");
            }
            session.stepping = Some(session.cpu);
            match target.vm.cont() {
                Ok(()) => Reply::Continue,
                Err(e) => {
                    log::warn!("gdb: step failed: {e}");
                    session.stepping = None;
                    p("E01")
                }
            }
        }
        Command::InsertBreakpoint(addr) => {
            if session.breakpoints.len() >= MAX_BREAKPOINTS && !session.breakpoints.contains(&addr)
            {
                return p("E28");
            }
            session.breakpoints.insert(addr);
            match apply_guest_debug(target, session, None) {
                Ok(()) => p("OK"),
                Err(e) => {
                    session.breakpoints.remove(&addr);
                    log::warn!("gdb: cannot set a breakpoint at {addr:#x}: {e}");
                    p("E01")
                }
            }
        }
        Command::RemoveBreakpoint(addr) => {
            session.breakpoints.remove(&addr);
            match apply_guest_debug(target, session, None) {
                Ok(()) => p("OK"),
                Err(e) => {
                    log::warn!("gdb: {e}");
                    p("E01")
                }
            }
        }
        Command::Breakpoint => p(""),
        Command::Detach => {
            cleanup(target, session);
            if session.was_running {
                if let Err(e) = target.vm.cont() {
                    log::warn!("gdb: cannot resume the VM on detach: {e}");
                }
            }
            Reply::Close(Some("OK".into()))
        }
        Command::Kill => {
            target.vm.quit();
            Reply::Close(None)
        }
        Command::Malformed => p("E01"),
        Command::Unsupported => p(""),
    }
}

/// Waits while the VM runs: `^C` stops it (`T02`), the guest's end gives
/// `W<code>` (sent by [`GdbServer::vm_exited`] or here). Returns false
/// when the session is over.
fn run_until_stop(
    mut input: &TcpStream,
    target: &Target,
    client: &Client,
    reader: &mut PacketReader,
    session: &mut Session,
) -> std::io::Result<bool> {
    // `continuing` was set before the VM was resumed (session_loop).
    input.set_read_timeout(Some(POLL))?;
    let mut buf = [0u8; 256];
    let machine = target.debug.machine();
    let result = loop {
        if let Some(exit) = machine.exit() {
            client.answer_continue(exit_packet(&exit).as_bytes())?;
            break Ok(false);
        }
        if machine.debug_stop_pending() {
            // A single-step or breakpoint trap parked the vCPUs: pause the
            // machine (STOP event) and report SIGTRAP on that vCPU.
            client.continuing.store(false, Ordering::SeqCst);
            if let Err(e) = target.vm.stop() {
                log::warn!("gdb: cannot stop the VM: {e}");
            }
            if let Some((cpu, _pc)) = machine.take_debug_stop() {
                session.cpu = cpu;
            }
            if session.stepping.take().is_some() {
                if let Err(e) = apply_guest_debug(target, session, None) {
                    log::warn!("gdb: {e}");
                }
            }
            client.send(stop_reply(target, 5, session.cpu).as_bytes())?;
            break Ok(true);
        }
        match input.read(&mut buf) {
            Ok(0) => break Ok(false),
            Ok(n) => {
                let interrupted = reader
                    .feed(buf.get(..n).unwrap_or_default())
                    .contains(&Incoming::Interrupt);
                if interrupted {
                    client.continuing.store(false, Ordering::SeqCst);
                    if let Err(e) = target.vm.stop() {
                        log::warn!("gdb: cannot stop the VM: {e}");
                    }
                    let _ = machine.take_debug_stop();
                    if session.stepping.take().is_some() {
                        if let Err(e) = apply_guest_debug(target, session, None) {
                            log::warn!("gdb: {e}");
                        }
                    }
                    client.send(stop_reply(target, 2, session.cpu).as_bytes())?;
                    break Ok(true);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => break Err(e),
        }
    };
    input.set_read_timeout(None)?;
    result
}
