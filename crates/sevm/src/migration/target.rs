//! The receiving side (`-incoming`): RECEIVE_START, RECEIVE_UPDATE_DATA for
//! every packet, and only after the whole stream verified RECEIVE_FINISH,
//! vCPU and device state. A reader thread parses the stream while this
//! thread feeds the packets to the firmware.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use sev_proto::abi::Policy;

use super::handover;
use super::stream::{Header, Reader, Record, StreamError};
use super::{Cancel, MigrationError, Progress, ProgressDisplay, StreamSocket, PAGE};
use crate::config::IncomingConfig;
use crate::machine::Machine;
use crate::memory::Gpa;
use crate::sev::{es_state, MigrationCommands, SevError, VmsaPage};
use crate::vcpu::VcpuState;
use sev_proto::cert::sev::Certificate;

/// What a finished restore produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// The guest's handle on this platform.
    pub handle: u32,
    /// The policy it was received with.
    pub policy: Policy,
    /// Stream bytes read.
    pub bytes: u64,
    /// Page packets received.
    pub packets: u64,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MigrationError {
    let what = what.into();
    move |source| MigrationError::Io { what, source }
}

/// How the VMM controls an incoming migration: cancellation (quit,
/// `migrate_cancel`), live counters and the bound of every wait on the
/// source.
#[allow(missing_debug_implementations)]
pub struct Control<'a> {
    /// Stops the accept loop and shuts the connection down.
    pub cancel: &'a Cancel,
    /// Live counters (`query-migrate` on the target).
    pub progress: &'a Progress,
    /// `x-peer-timeout`.
    pub timeout: Duration,
    /// Called when a source's stream is accepted (`active`).
    pub on_active: &'a (dyn Fn() + Sync),
}

/// Connections whose headers are read at the same time; more are closed
/// at once (a flood of silent peers cannot hide the real source).
const MAX_CANDIDATES: usize = 8;

/// One accepted connection.
struct Conn {
    /// The stream (read through the header thread's buffered reader).
    read: Box<dyn Read + Send>,
    /// The same socket, for the hand-over's COMMIT after the stream.
    commit: Box<dyn Read + Send>,
    write: Box<dyn Write + Send>,
    shutdown: Box<dyn Fn(std::net::Shutdown) + Send + Sync>,
    peer: String,
}

fn conn_of<S: StreamSocket>(s: S, peer: String, timeout: Duration) -> std::io::Result<Conn> {
    s.set_peer_timeout(timeout)?;
    let w = s.duplicate()?;
    let sd = s.duplicate()?;
    let c = s.duplicate()?;
    Ok(Conn {
        read: Box::new(s),
        commit: Box::new(c),
        write: Box::new(w),
        shutdown: Box::new(move |how| sd.shut(how)),
        peer,
    })
}

/// A listening socket of either family (non-blocking accept).
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    fn bind(incoming: &IncomingConfig) -> Result<(Listener, String), MigrationError> {
        match incoming {
            IncomingConfig::Tcp { host, port } => {
                let h = if host.is_empty() {
                    "0.0.0.0"
                } else {
                    host.as_str()
                };
                let h = h.trim_start_matches('[').trim_end_matches(']');
                let addr = if h.contains(':') {
                    format!("[{h}]:{port}")
                } else {
                    format!("{h}:{port}")
                };
                let l = TcpListener::bind(&addr)
                    .map_err(io(format!("-incoming: cannot listen on tcp:{addr}")))?;
                l.set_nonblocking(true).map_err(io("-incoming: listener"))?;
                Ok((Listener::Tcp(l), format!("tcp:{addr}")))
            }
            IncomingConfig::Unix(path) => {
                // Only a stale socket may be replaced: a regular file (or a
                // live socket) at PATH is refused, never deleted.
                sevm_qmp::server::clear_stale_socket(path).map_err(|e| MigrationError::Uri {
                    uri: format!("unix:{}", path.display()),
                    problem: crate::sev::error_chain(&e),
                })?;
                let l = UnixListener::bind(path).map_err(io(format!(
                    "-incoming: cannot listen on unix:{}",
                    path.display()
                )))?;
                l.set_nonblocking(true).map_err(io("-incoming: listener"))?;
                Ok((
                    Listener::Unix(l, path.clone()),
                    format!("unix:{}", path.display()),
                ))
            }
            IncomingConfig::File { .. } | IncomingConfig::Defer => Err(MigrationError::Uri {
                uri: "-incoming".into(),
                problem: "not a socket".into(),
            }),
        }
    }

    fn accept(&self, timeout: Duration) -> std::io::Result<Conn> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                let _ = s.set_nodelay(true);
                conn_of(s, peer.to_string(), timeout)
            }
            Listener::Unix(l, path) => {
                let (s, _) = l.accept()?;
                conn_of(s, format!("unix:{}", path.display()), timeout)
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

type Candidate = (Conn, Reader<BufReader<Box<dyn Read + Send>>>, Header);

/// Checks a stream header against this VM.
fn check_header(machine: &Machine, header: &Header, policy: Policy) -> Result<(), MigrationError> {
    let ram = machine.guest_memory();
    if header.ram_size != ram.ram_size() {
        return Err(mismatch(format!(
            "the stream's guest has {} bytes of RAM, this VM {} (-m must match the source)",
            header.ram_size,
            ram.ram_size()
        )));
    }
    if header.firmware_size != ram.firmware_size() {
        return Err(mismatch(format!(
            "the stream's firmware image is {} bytes, this VM's {} (-bios must match the source)",
            header.firmware_size,
            ram.firmware_size()
        )));
    }
    if header.vcpus as usize != machine.vcpu_count() {
        return Err(mismatch(format!(
            "the stream's guest has {} vCPUs, this VM {} (-smp must match the source)",
            header.vcpus,
            machine.vcpu_count()
        )));
    }
    if header.policy != policy.bits() {
        return Err(mismatch(format!(
            "the stream's guest policy is {:#x}, -object sev-guest says {:#x} (they must match)",
            header.policy,
            policy.bits()
        )));
    }
    Ok(())
}

/// Listens until a connection delivers a sevm stream header (each
/// connection's header is read on its own thread, within the peer timeout,
/// so a silent or garbage-sending peer neither blocks nor ends the wait);
/// then closes the listener.
fn accept_source(
    listener: Listener,
    where_: &str,
    ctl: &Control<'_>,
) -> Result<Candidate, MigrationError> {
    eprintln!("sevm: incoming migration: waiting on {where_}");
    let (tx, rx) = std::sync::mpsc::channel::<Result<Candidate, (String, StreamError)>>();
    let pending = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Strangers can connect as often as they like: at most one line a second.
    let mut said = RateLimit::default();
    loop {
        if ctl.cancel.is_cancelled() {
            return Err(MigrationError::Cancelled);
        }
        match listener.accept(ctl.timeout) {
            Ok(conn) => {
                if pending.load(Ordering::SeqCst) >= MAX_CANDIDATES {
                    said.say(format!(
                        "incoming migration: closed a connection from {}: {MAX_CANDIDATES} \
                         connections are already being read",
                        conn.peer
                    ));
                    continue;
                }
                pending.fetch_add(1, Ordering::SeqCst);
                let tx = tx.clone();
                let count = std::sync::Arc::clone(&pending);
                let spawned = std::thread::Builder::new()
                    .name("incoming-header".into())
                    .spawn(move || {
                        let Conn {
                            read,
                            commit,
                            write,
                            shutdown,
                            peer,
                        } = conn;
                        let input = BufReader::with_capacity(1 << 20, read);
                        let msg = match Reader::new(input) {
                            Ok((r, h)) => Ok((
                                Conn {
                                    read: Box::new(std::io::empty()),
                                    commit,
                                    write,
                                    shutdown,
                                    peer,
                                },
                                r,
                                h,
                            )),
                            Err(e) => Err((peer, e)),
                        };
                        count.fetch_sub(1, Ordering::SeqCst);
                        let _ = tx.send(msg);
                    });
                if spawned.is_err() {
                    pending.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => said.say(format!("incoming migration: accept failed: {e}")),
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(Ok(c)) => {
                log::info!("incoming migration from {}", c.0.peer);
                return Ok(c);
            }
            Ok(Err((peer, e))) => {
                let e = MigrationError::from(e).with_timeout("the stream header", ctl.timeout);
                said.say(format!(
                    "incoming migration: dropped a connection from {peer}: {e}"
                ));
            }
            Err(_) => {}
        }
    }
}

/// Lines on stderr about things a peer can repeat at will: at most one a
/// second, with a count of what was left out.
#[derive(Default)]
struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    fn say(&mut self, line: String) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            eprintln!(
                "sevm: {line} ({} similar lines suppressed)",
                self.suppressed
            );
        } else {
            eprintln!("sevm: {line}");
        }
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

/// Receives a guest into `machine` (created, never started) through
/// `backend` (attached, no guest yet). `policy` is the `-object sev-guest`
/// policy, which must equal the stream's. On success the guest is RUNNING
/// in the firmware, its memory, vCPU and device state restored, and (over a
/// socket) the source has committed the hand-over: the caller may run it.
/// On failure the source is told why (sockets) and nothing may run.
pub fn receive(
    machine: &Machine,
    backend: &dyn MigrationCommands,
    incoming: &IncomingConfig,
    policy: Policy,
    ctl: &Control<'_>,
) -> Result<Restored, MigrationError> {
    let t = Instant::now();
    match machine.guest_memory().preallocate() {
        Ok(true) => log::info!(
            "incoming migration: guest memory allocated in {} ms",
            t.elapsed().as_millis()
        ),
        Ok(false) => log::info!(
            "incoming migration: this kernel cannot preallocate memory (MADV_POPULATE_WRITE); \
             pages are allocated as they arrive"
        ),
        Err(e) => {
            return Err(MigrationError::Machine(format!(
                "cannot allocate the incoming guest's memory: {e}"
            )))
        }
    }
    match incoming {
        IncomingConfig::File { path, offset } => {
            let mut f = File::open(path)
                .map_err(io(format!("-incoming: cannot open {}", path.display())))?;
            if *offset > 0 {
                f.seek(SeekFrom::Start(*offset))
                    .map_err(io("-incoming: cannot seek to the offset"))?;
            }
            let input: Box<dyn Read + Send> = Box::new(f);
            let (reader, header) = Reader::new(BufReader::with_capacity(1 << 20, input))?;
            check_header(machine, &header, policy)?;
            (ctl.on_active)();
            receive_from(machine, backend, reader, &header, ctl, &|| {})
        }
        IncomingConfig::Defer => Err(MigrationError::Uri {
            uri: "defer".into(),
            problem: "no URI yet (migrate-incoming gives it)".into(),
        }),
        IncomingConfig::Tcp { .. } | IncomingConfig::Unix(_) => {
            let (listener, where_) = Listener::bind(incoming)?;
            let (mut conn, reader, header) = accept_source(listener, &where_, ctl)?;
            let sd = std::sync::Arc::new(conn.shutdown);
            let on_cancel = std::sync::Arc::clone(&sd);
            ctl.cancel
                .on_cancel(Box::new(move || on_cancel(std::net::Shutdown::Both)));
            let result = check_header(machine, &header, policy).and_then(|()| {
                (ctl.on_active)();
                receive_from(machine, backend, reader, &header, ctl, &|| {
                    sd(std::net::Shutdown::Read)
                })
            });
            let result = result.map_err(|e| e.with_timeout("the stream", ctl.timeout));
            let restored = match result {
                Ok(r) => r,
                Err(e) => {
                    if let Err(w) = conn
                        .write
                        .write_all(&handover::error_message(&e))
                        .and_then(|()| conn.write.flush())
                    {
                        log::warn!("cannot tell the migration source why: {w}");
                    }
                    sd(std::net::Shutdown::Both);
                    return Err(e);
                }
            };
            // The hand-over (handover.rs): READY, then run only after COMMIT.
            let committed = handover::target_side(
                ctl.cancel,
                conn.commit.as_mut(),
                conn.write.as_mut(),
                ctl.timeout,
            )?;
            if !committed {
                sd(std::net::Shutdown::Both);
                return Err(MigrationError::TargetRefused(
                    "the source did not commit the hand-over (it keeps the guest): this copy \
                     will not run"
                        .into(),
                ));
            }
            Ok(restored)
        }
    }
}

fn mismatch(s: String) -> MigrationError {
    MigrationError::Mismatch(s)
}

fn receive_from(
    machine: &Machine,
    backend: &dyn MigrationCommands,
    reader: Reader<BufReader<Box<dyn Read + Send>>>,
    header: &Header,
    ctl: &Control<'_>,
    interrupt: &(dyn Fn() + Sync),
) -> Result<Restored, MigrationError> {
    let start = Instant::now();
    let progress = ctl.progress;
    let mut display = ProgressDisplay::new("incoming");
    // Records travel in batches: one channel message (and at most one
    // wake-up) per BATCH records instead of one per page.
    const BATCH: usize = 64;
    let (tx, rx) = sync_channel::<Vec<Result<Record, StreamError>>>(8);
    // Processed batches go back to the reader, which reuses their page
    // buffers (no allocation, zeroing and freeing per page).
    let (back_tx, back_rx) = sync_channel::<Vec<Record>>(10);
    let ram = machine.guest_memory();
    // A source sends every page once per pass, at most MAX_PASSES + 1
    // passes, and one end packet: more page records than that (or passes
    // out of order) are not a sevm source, whatever their MACs say.
    let guest_pages = (ram.ram_size() + ram.firmware_size()) / PAGE;
    let max_passes = super::source::MAX_PASSES + 1;
    let max_packets = guest_pages.saturating_mul(max_passes).saturating_add(1);
    let mut last_pass = 0u64;
    let stream_policy = Policy::from_bits(header.policy);
    let source_pdh = Certificate::decode(&header.source_pdh).map_err(|e| SevError::Host {
        command: "RECEIVE_START",
        detail: format!("the stream's source PDH does not decode: {e}"),
    })?;
    let handle = backend.receive_start(stream_policy, &source_pdh, &header.session)?;
    progress.total.store(
        (ram.ram_size() + ram.firmware_size()) / PAGE * PAGE,
        Ordering::Relaxed,
    );

    std::thread::scope(|scope| {
        let reader_thread = scope.spawn(move || {
            let mut r = reader;
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                while let Ok(done) = back_rx.try_recv() {
                    for rec in done {
                        r.recycle(rec);
                    }
                }
                let rec = r.next_record();
                let stop = !matches!(
                    rec,
                    Ok(Record::Page { .. }
                        | Record::Vcpu { .. }
                        | Record::Device(_)
                        | Record::Pass(_)
                        | Record::Vmsa { .. })
                );
                batch.push(rec);
                if stop || batch.len() >= BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.send(full).is_err() || stop {
                        return r.bytes();
                    }
                }
            }
        });
        let mut vcpus: Vec<Option<VcpuState>> = vec![None; machine.vcpu_count()];
        let mut vmsas: Vec<Option<Box<VmsaPage>>> = vec![None; machine.vcpu_count()];
        let mut device: Option<Vec<u8>> = None;
        let mut end_packet = false;
        let mut packets = 0u64;
        let outcome = (|| -> Result<(), MigrationError> {
            let mut pending = Vec::new().into_iter();
            let mut done = Vec::with_capacity(BATCH);
            loop {
                let Some(rec) = pending.next() else {
                    if !done.is_empty() {
                        // Full (the reader has enough) or gone: dropped.
                        let _ = back_tx
                            .try_send(std::mem::replace(&mut done, Vec::with_capacity(BATCH)));
                    }
                    pending = rx
                        .recv()
                        .map_err(|_| StreamError::Truncated("the record list"))?
                        .into_iter();
                    continue;
                };
                let rec = rec?;
                match rec {
                    Record::Page { gpa, header, trans } => {
                        if end_packet {
                            return Err(mismatch("a page after the end packet".into()));
                        }
                        let len = trans.len() as u64;
                        if packets >= max_packets {
                            return Err(mismatch(format!(
                                "more than {max_packets} page records ({max_passes} passes over \
                                 {guest_pages} pages): not a sevm source"
                            )));
                        }
                        if ctl.cancel.is_cancelled() {
                            return Err(MigrationError::Cancelled);
                        }
                        if len == 16 && gpa == 0 {
                            end_packet = true;
                        } else if len != PAGE || gpa % PAGE != 0 || !ram.contains(Gpa(gpa), PAGE) {
                            return Err(mismatch(format!(
                                "page record for {len:#x} bytes at {gpa:#x} is not a guest page"
                            )));
                        }
                        backend.receive_update_data(&header, gpa, &trans)?;
                        done.push(Record::Page { gpa, header, trans });
                        packets += 1;
                        progress.pages.store(packets, Ordering::Relaxed);
                        progress.transferred.fetch_add(len + 65, Ordering::Relaxed);
                        display.tick(progress);
                    }
                    Record::Vcpu { index, state } => {
                        let slot = vcpus.get_mut(index as usize).ok_or_else(|| {
                            mismatch(format!(
                                "vCPU record for vCPU {index}, which does not exist"
                            ))
                        })?;
                        if slot.is_some() {
                            return Err(mismatch(format!("vCPU {index} appears twice")));
                        }
                        *slot = Some(
                            VcpuState::from_bytes(&state)
                                .map_err(|e| mismatch(format!("vCPU {index} state: {e}")))?,
                        );
                    }
                    Record::Vmsa {
                        index,
                        header,
                        trans,
                    } => {
                        // The reader takes VMSA records from SEV-ES streams
                        // only (stream version 3).
                        let slot = vmsas.get_mut(index as usize).ok_or_else(|| {
                            mismatch(format!(
                                "VMSA record for vCPU {index}, which does not exist"
                            ))
                        })?;
                        if slot.is_some() {
                            return Err(mismatch(format!("vCPU {index}'s VMSA appears twice")));
                        }
                        *slot =
                            Some(backend.receive_update_vmsa(index as usize, &header, &trans)?);
                    }
                    Record::Device(d) => {
                        if device.replace(d).is_some() {
                            return Err(mismatch("device state appears twice".into()));
                        }
                    }
                    Record::Pass(n) => {
                        if n <= last_pass || n > max_passes {
                            return Err(mismatch(format!(
                                "pass record {n} after pass {last_pass} (passes count up from 1 \
                                 to at most {max_passes})"
                            )));
                        }
                        last_pass = n;
                        progress.pass.store(n, Ordering::Relaxed);
                    }
                    Record::End { .. } => {
                        if !end_packet {
                            return Err(mismatch(
                                "the stream has no authenticated end packet (cut short?)".into(),
                            ));
                        }
                        return Ok(());
                    }
                }
            }
        })();
        drop(rx);
        if outcome.is_err() {
            // The reader may be blocked in a read: wake it (shut the
            // socket's read side) instead of waiting for the source.
            interrupt();
        }
        let bytes = reader_thread.join().unwrap_or(0);
        display.finish();
        outcome?;
        let device = device.ok_or_else(|| mismatch("the stream has no device state".into()))?;
        let mut states: Vec<VcpuState> = vcpus
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                s.ok_or_else(|| mismatch(format!("the stream has no state for vCPU {i}")))
            })
            .collect::<Result<_, _>>()?;
        let es = stream_policy.es();
        if es {
            // The registers of an SEV-ES guest's vCPUs arrive only in its
            // VMSAs; the vCPUs resume from them (docs/sev-es.md#migration).
            for (i, (state, vmsa)) in states.iter_mut().zip(&vmsas).enumerate() {
                let vmsa = vmsa
                    .as_ref()
                    .ok_or_else(|| mismatch(format!("the stream has no VMSA for vCPU {i}")))?;
                es_state::apply_vmsa(state, vmsa);
            }
        }
        backend.receive_finish()?;
        for (i, s) in states.iter().enumerate() {
            machine
                .set_vcpu_state(i, s)
                .map_err(|e| MigrationError::Machine(format!("restoring vCPU {i}: {e}")))?;
        }
        machine
            .set_device_state(&device)
            .map_err(|e| MigrationError::Machine(e.to_string()))?;
        if es {
            machine.protect_registers();
        }
        let ms = start.elapsed().as_millis().max(1);
        eprintln!(
            "sevm: incoming migration complete: {packets} packets, {:.1} MiB in {ms} ms ({:.0} MB/s)",
            bytes as f64 / 1048576.0,
            bytes as f64 / (ms as f64 / 1000.0) / 1e6
        );
        Ok(Restored {
            handle,
            policy: stream_policy,
            bytes,
            packets,
        })
    })
}
