//! The sending side: SEND_START, pre-copy passes with KVM dirty logging,
//! stop-and-copy, SEND_FINISH — or SEND_CANCEL and resume on any failure.
//!
//! Pipelining: this thread seals pages through the firmware
//! (SEND_UPDATE_DATA) while a writer thread frames them into the stream and
//! writes them to the file or socket.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant};

use sevm_qmp::response::MigrationStatus;
use sevm_qmp::QmpEvent;

use super::handover;
use super::stream::{Header, Record, Writer};
use super::{
    Cancel, Endpoint, MigrationError, Progress, ProgressDisplay, SevParts, StreamSocket, Summary,
    VmControl, PAGE,
};
use crate::sev::{es_state, MigrationTarget, SevError};
use sev_proto::cert::chain::{CaChain, PlatformChain};
use sev_proto::cert::sev::Certificate;
use sev_proto::session::SessionBuffer;

/// Largest number of pre-copy passes before stop-and-copy is forced.
pub const MAX_PASSES: u64 = 30;

/// One migration's inputs.
#[allow(missing_debug_implementations)]
pub struct Job<'a> {
    /// The VMM.
    pub vm: &'a dyn VmControl,
    /// The SEV interfaces.
    pub sev: &'a SevParts,
    /// Where to.
    pub endpoint: super::Endpoint,
    /// The parameters at `migrate` time.
    pub params: &'a super::Parameters,
    /// Live counters.
    pub progress: &'a Progress,
    /// `migrate_cancel`, quit.
    pub cancel: &'a Cancel,
    /// Whether a failed migration resumes a guest it paused (`stop`
    /// during the migration clears it).
    pub resume: &'a AtomicBool,
    /// Reports `active` (pages flow) and `device` (stop-and-copy).
    pub on_status: &'a dyn Fn(MigrationStatus),
}

/// A certificate parameter, `None` when not given or empty.
fn param(v: &Option<Vec<u8>>) -> Option<Vec<u8>> {
    v.clone().filter(|bytes| !bytes.is_empty())
}

/// Decodes a certificate parameter where it is read.
fn decoded<T, E: std::fmt::Display>(
    name: &'static str,
    meaning: &str,
    r: Result<T, E>,
) -> Result<T, MigrationError> {
    r.map_err(|e| MigrationError::Parameter {
        name,
        problem: format!("not {meaning}: {e}"),
    })
}

fn target_chain(job: &Job<'_>) -> Result<MigrationTarget, MigrationError> {
    let p = job.params;
    let pdh = param(&p.sev_pdh);
    let plat = param(&p.sev_plat_cert);
    let amd = param(&p.sev_amd_cert)
        .map(|a| decoded("sev-amd-cert", "an ASK and ARK", CaChain::decode(&a)))
        .transpose()?;
    match (pdh, plat) {
        (Some(pdh), Some(plat)) => Ok(MigrationTarget {
            pdh: decoded("sev-pdh", "a PDH certificate", Certificate::decode(&pdh))?,
            chain: decoded(
                "sev-plat-cert",
                "a PEK, OCA and CEK chain",
                PlatformChain::decode(&plat),
            )?,
            amd,
        }),
        (None, None) if matches!(job.endpoint, Endpoint::File(_)) => {
            // A snapshot for this same platform.
            let certs = job.sev.platform.pdh_cert_export()?;
            let amd = match amd {
                Some(a) => Some(a),
                None => job.sev.platform.amd_chain()?,
            };
            Ok(MigrationTarget {
                pdh: certs.pdh,
                chain: certs.chain,
                amd,
            })
        }
        (None, None) => Err(MigrationError::Parameter {
            name: "sev-pdh",
            problem: "a live migration needs the target platform's PDH and chain: set sev-pdh \
                      and sev-plat-cert (and sev-amd-cert) with migrate-set-parameters"
                .into(),
        }),
        (Some(_), None) => Err(MigrationError::Parameter {
            name: "sev-plat-cert",
            problem: "sev-pdh is set but sev-plat-cert is not".into(),
        }),
        (None, Some(_)) => Err(MigrationError::Parameter {
            name: "sev-pdh",
            problem: "sev-plat-cert is set but sev-pdh is not".into(),
        }),
    }
}

/// The open destination.
enum Conn {
    File {
        tmp: PathBuf,
        file: File,
    },
    Socket {
        /// The half we read the acknowledgement from.
        read: Box<dyn Read + Send>,
        /// The half the writer thread writes to.
        write: Box<dyn Write + Send>,
        /// Shuts the socket down (wakes a blocked writer or reader).
        shutdown: Box<dyn Fn() + Send>,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MigrationError {
    let what = what.into();
    move |source| MigrationError::Io { what, source }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".sevm-tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Creates the snapshot's temporary file: exclusively (an existing file or
/// a planted symlink is an error, never followed or truncated), mode 0600
/// (it holds the vCPU registers in plaintext).
pub(crate) fn create_temp(tmp: &Path) -> Result<File, MigrationError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(tmp)
        .map_err(io(format!("cannot create {}", tmp.display())))
}

/// Bounds every read and write by `timeout`, and makes `cancel` shut the
/// socket down (which wakes a writer or reader blocked on it).
fn socket_conn<S: StreamSocket>(
    s: S,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<Conn, MigrationError> {
    s.set_peer_timeout(timeout).map_err(io("socket timeouts"))?;
    let w = s.duplicate().map_err(io("socket"))?;
    let sd = s.duplicate().map_err(io("socket"))?;
    let on_cancel = s.duplicate().map_err(io("socket"))?;
    cancel.on_cancel(Box::new(move || on_cancel.shut(std::net::Shutdown::Both)));
    Ok(Conn::Socket {
        read: Box::new(s),
        write: Box::new(w),
        shutdown: Box::new(move || sd.shut(std::net::Shutdown::Write)),
    })
}

fn connect_tcp(addr: &str, timeout: Duration) -> Result<TcpStream, MigrationError> {
    use std::net::ToSocketAddrs;
    let what = || format!("cannot connect to tcp:{addr}");
    let mut last = None;
    for a in addr.to_socket_addrs().map_err(io(what()))? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if handover::is_timeout(&e) => MigrationError::PeerTimeout {
            what: "connecting to the target",
            ms: timeout.as_millis() as u64,
        },
        Some(e) => io(what())(e),
        None => io(what())(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the host name has no address",
        )),
    })
}

fn open(endpoint: &Endpoint, timeout: Duration, cancel: &Cancel) -> Result<Conn, MigrationError> {
    Ok(match endpoint {
        Endpoint::File(path) => {
            let tmp = temp_path(path);
            let file = create_temp(&tmp)?;
            Conn::File { tmp, file }
        }
        Endpoint::Tcp(addr) => {
            let s = connect_tcp(addr, timeout)?;
            let _ = s.set_nodelay(true);
            socket_conn(s, timeout, cancel)?
        }
        Endpoint::Unix(path) => {
            let s = UnixStream::connect(path)
                .map_err(io(format!("cannot connect to unix:{}", path.display())))?;
            socket_conn(s, timeout, cancel)?
        }
    })
}

/// Bytes written between two early-writeback requests of a snapshot file.
const EARLY_SYNC_EVERY: u64 = 64 << 20;

/// The writer thread: frames records and writes them (one vectored write
/// per batch); returns the output after the end record (flushed) or the
/// first error. Written batches go back to the sealing thread through
/// `back` so their page buffers are reused. With `sync`, every so many
/// bytes ([`EARLY_SYNC_EVERY`] in a snapshot) it asks the flusher thread to `fdatasync` what
/// was written so far (skipped while the previous one still runs): the disk
/// works while the stream is sealed instead of all at the end.
fn writer_thread<W: Write>(
    out: W,
    header: &Header,
    rx: &Receiver<Vec<Record>>,
    back: &SyncSender<Vec<Record>>,
    sync: Option<(&SyncSender<()>, u64)>,
    progress: &Progress,
) -> Result<W, MigrationError> {
    let mut w = Writer::new(out, header)?;
    progress.transferred.store(w.bytes(), Ordering::Relaxed);
    let mut synced_at = 0;
    for batch in rx {
        let end = batch.iter().any(|r| matches!(r, Record::End { .. }));
        w.records(&batch)?;
        progress.transferred.store(w.bytes(), Ordering::Relaxed);
        if let Some((s, every)) = sync {
            if w.bytes() - synced_at >= every {
                synced_at = w.bytes();
                let _ = s.try_send(());
            }
        }
        if end {
            w.flush()?;
            return Ok(w.into_inner());
        }
        // Full (the sealer has enough) or gone: the batch is dropped.
        let _ = back.try_send(batch);
    }
    Err(MigrationError::Cancelled)
}

/// Runs one migration to completion (SEND_FINISH) or failure (SEND_CANCEL,
/// the guest resumed if this paused it).
pub fn run(job: &Job<'_>) -> Result<Summary, MigrationError> {
    let start = Instant::now();
    if job.vm.machine().registers_protected() && !job.sev.backend.migrates_vmsas() {
        // An SEV-ES guest's registers leave only as SEND_UPDATE_VMSA
        // packets, which KVM does not expose (docs/sev-es.md#migration).
        return Err(SevError::Unsupported {
            command: "SEND_UPDATE_VMSA",
            reason: "the guest's register state is protected (SEV-ES) and this platform does \
                     not migrate it: sevm cannot migrate or snapshot this SEV-ES guest"
                .into(),
        }
        .into());
    }
    let chain = target_chain(job)?;
    let timeout = job.params.peer_timeout();
    let conn = open(&job.endpoint, timeout, job.cancel)?;
    let backend = &job.sev.backend;
    let (policy, session) = match backend.send_start(&chain) {
        Ok(v) => v,
        Err(e) => {
            discard(&conn);
            return Err(e.into());
        }
    };
    let mut paused_here = false;
    let result = send(
        job,
        conn,
        policy.bits(),
        session,
        start,
        timeout,
        &mut paused_here,
    );
    match result {
        Ok(_) | Err(MigrationError::Unconfirmed(_)) => {
            // The target has the guest (or may have it): whatever
            // SEND_FINISH says, this copy must not run again.
            if let Err(e) = backend.send_finish() {
                log::error!("SEND_FINISH after the hand-over failed: {e}");
            }
            result
        }
        Err(e) => {
            if let Err(c) = backend.send_cancel() {
                log::error!("SEND_CANCEL after a failed migration failed: {c}");
            }
            if paused_here && job.resume.load(Ordering::SeqCst) {
                if let Err(r) = job.vm.resume_vm() {
                    log::error!("cannot resume the guest after a failed migration: {r}");
                }
            }
            Err(e)
        }
    }
}

fn discard(conn: &Conn) {
    if let Conn::File { tmp, .. } = conn {
        let _ = std::fs::remove_file(tmp);
    }
}

/// Pages of every slot (RAM and firmware) as (slot, gpa) lists.
fn all_pages(job: &Job<'_>) -> Vec<u64> {
    let mut v = Vec::new();
    for s in job.vm.machine().slots() {
        let mut gpa = s.gpa;
        while gpa < s.gpa + s.len {
            v.push(gpa);
            gpa += PAGE;
        }
    }
    v
}

/// Collects and clears the dirty pages of every slot.
fn dirty_pages(job: &Job<'_>) -> Result<Vec<u64>, MigrationError> {
    let m = job.vm.machine();
    let mut v = Vec::new();
    for s in m.slots() {
        let bitmap = m
            .dirty_log(s.slot)
            .map_err(|e| MigrationError::Machine(format!("KVM_GET_DIRTY_LOG: {e}")))?;
        for (w, word) in bitmap.iter().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                let b = u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                let gpa = s.gpa + (w as u64 * 64 + b) * PAGE;
                if gpa < s.gpa + s.len {
                    v.push(gpa);
                }
            }
        }
    }
    Ok(v)
}

/// Records per hand-over from the sealing thread to the writer: one
/// channel message (and at most one wake-up) per batch instead of per page.
const BATCH: usize = 64;
/// Batches in flight between the sealing thread and the writer.
const CHANNEL_BATCHES: usize = 4;

struct Sender<'a> {
    job: &'a Job<'a>,
    tx: SyncSender<Vec<Record>>,
    /// Batches the writer has written, for their buffers.
    back: Receiver<Vec<Record>>,
    /// Page buffers (packet header, transport) to fill again.
    spare: Vec<(Vec<u8>, Vec<u8>)>,
    /// Records not yet handed to the writer (see [`BATCH`]).
    batch: Vec<Record>,
    bandwidth: Option<u64>,
    started: Instant,
    sent_bytes: u64,
}

impl Sender<'_> {
    fn page(&mut self, gpa: u64, len: u64) -> Result<(), MigrationError> {
        if self.job.cancel.is_cancelled() {
            return Err(MigrationError::Cancelled);
        }
        if self.spare.is_empty() {
            while let Ok(mut done) = self.back.try_recv() {
                for r in done.drain(..) {
                    if let Record::Page { header, trans, .. } = r {
                        self.spare.push((header, trans));
                    }
                }
            }
        }
        let (mut header, mut trans) = self.spare.pop().unwrap_or_default();
        self.job
            .sev
            .backend
            .send_update_data_into(gpa, len, &mut header, &mut trans)?;
        self.sent_bytes += len + 65;
        self.send(Record::Page { gpa, header, trans })?;
        self.job.progress.pages.fetch_add(1, Ordering::Relaxed);
        if let Some(bw) = self.bandwidth {
            // max-bandwidth: wait until the bytes sent fit the budget.
            let due = Duration::from_secs_f64(self.sent_bytes as f64 / bw as f64);
            let el = self.started.elapsed();
            if due > el {
                self.flush()?;
                if !self.job.cancel.sleep(due - el) {
                    return Err(MigrationError::Cancelled);
                }
            }
        }
        Ok(())
    }

    /// Queues `r` for the writer; a full batch or any record other than
    /// a page is handed over at once.
    fn send(&mut self, r: Record) -> Result<(), MigrationError> {
        let page = matches!(r, Record::Page { .. });
        self.batch.push(r);
        if !page || self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the queued records to the writer.
    fn flush(&mut self) -> Result<(), MigrationError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.tx.send(batch).map_err(|_| {
            // The writer thread ended: its error is reported at join.
            MigrationError::Stream(super::StreamError::Truncated(
                "the writer (connection lost)",
            ))
        })
    }

    fn pass(
        &mut self,
        n: u64,
        pages: &[u64],
        display: &mut ProgressDisplay,
    ) -> Result<(), MigrationError> {
        let p = self.job.progress;
        p.pass.store(n, Ordering::Relaxed);
        self.send(Record::Pass(n))?;
        self.job.vm.emit_event(&QmpEvent::MigrationPass { pass: n });
        let mut left = pages.len() as u64 * PAGE;
        p.remaining.store(left, Ordering::Relaxed);
        for &gpa in pages {
            self.page(gpa, PAGE)?;
            left -= PAGE;
            p.remaining.store(left, Ordering::Relaxed);
            display.tick(p);
        }
        self.flush()
    }
}

fn send(
    job: &Job<'_>,
    conn: Conn,
    policy: u32,
    session: SessionBuffer,
    start: Instant,
    timeout: Duration,
    paused_here: &mut bool,
) -> Result<Summary, MigrationError> {
    let machine = job.vm.machine();
    let ram = machine.guest_memory();
    let own_pdh = job.sev.platform.pdh_cert_export()?.pdh.encode().to_vec();
    let header = Header {
        policy,
        ram_size: ram.ram_size(),
        firmware_size: ram.firmware_size(),
        vcpus: machine.vcpu_count() as u32,
        source_pdh: own_pdh,
        session,
    };
    let progress = job.progress;
    let pages = all_pages(job);
    progress
        .total
        .store(pages.len() as u64 * PAGE, Ordering::Relaxed);
    (job.on_status)(MigrationStatus::Active);

    let (tx, rx) = sync_channel::<Vec<Record>>(CHANNEL_BATCHES);
    let (back_tx, back_rx) = sync_channel::<Vec<Record>>(CHANNEL_BATCHES + 2);
    // A snapshot file's pages are handed to the kernel's writeback while the
    // stream is still being written (see `writer_thread`), so the final
    // fsync has only the tail left.
    let mut early_sync: Option<File> = None;
    let (out, mut ack, shutdown): (Box<dyn Write + Send>, _, _) = match conn {
        Conn::File { file, .. } => {
            early_sync = file.try_clone().ok();
            (Box::new(file), None, None)
        }
        Conn::Socket {
            read,
            write,
            shutdown,
        } => (write, Some(read), Some(shutdown)),
    };
    let file = match &job.endpoint {
        Endpoint::File(path) => Some((temp_path(path), path.clone())),
        _ => None,
    };

    let mut display = ProgressDisplay::new("migrate");
    let result = std::thread::scope(|scope| {
        let header = &header;
        let sync_tx = early_sync.map(|f| {
            let (sync_tx, sync_rx) = sync_channel::<()>(1);
            // Errors are left to the final fsync, which reports them.
            scope.spawn(move || {
                for () in sync_rx {
                    let _ = f.sync_data();
                }
            });
            sync_tx
        });
        let writer = scope.spawn(move || {
            writer_thread(
                out,
                header,
                &rx,
                &back_tx,
                sync_tx.as_ref().map(|s| (s, EARLY_SYNC_EVERY)),
                progress,
            )
        });
        let mut s = Sender {
            job,
            tx,
            back: back_rx,
            spare: Vec::new(),
            batch: Vec::with_capacity(BATCH),
            bandwidth: job.params.bandwidth_limit(),
            started: Instant::now(),
            sent_bytes: 0,
        };
        let body = (|| -> Result<(Instant, bool, u64), MigrationError> {
            let running = machine.run_state() == crate::machine::MachineState::Running;
            let precopy = running && machine.dirty_logging();
            if running && !machine.dirty_logging() {
                log::warn!(
                    "KVM dirty page logging is not available: migrating with stop-and-copy only"
                );
            }
            let mut remaining = pages.clone();
            let mut pass = 1;
            if precopy {
                dirty_pages(job)?; // clear the log: pass 1 sends everything
                let limit_ms = job.params.downtime_limit_ms();
                loop {
                    let t = Instant::now();
                    s.pass(pass, &remaining, &mut display)?;
                    let secs = t.elapsed().as_secs_f64().max(1e-3);
                    let rate = (remaining.len() as f64 * PAGE as f64 / secs).max(1.0);
                    remaining = dirty_pages(job)?;
                    progress.dirty_syncs.fetch_add(1, Ordering::Relaxed);
                    pass += 1;
                    let expect_ms = remaining.len() as f64 * PAGE as f64 / rate * 1000.0;
                    log::info!(
                        "migration pass {} done: {} dirty pages, expected downtime {expect_ms:.1} ms",
                        pass - 1,
                        remaining.len()
                    );
                    if expect_ms <= limit_ms as f64 || pass > MAX_PASSES {
                        break;
                    }
                }
            }
            // Stop and copy.
            let was_running = job.vm.pause_vm().map_err(MigrationError::Machine)?;
            *paused_here = was_running;
            (job.on_status)(MigrationStatus::Device);
            let down = Instant::now();
            let before = progress.transferred.load(Ordering::Relaxed);
            progress.downtime_bytes.store(0, Ordering::Relaxed);
            if precopy {
                remaining.extend(dirty_pages(job)?);
                remaining.sort_unstable();
                remaining.dedup();
                progress.dirty_syncs.fetch_add(1, Ordering::Relaxed);
            }
            s.pass(pass, &remaining, &mut display)?;
            let es = machine.registers_protected();
            for i in 0..machine.vcpu_count() {
                let st = if es {
                    machine.vcpu_state_for_vmsa(i)
                } else {
                    machine.vcpu_state(i)
                };
                let mut st =
                    st.map_err(|e| MigrationError::Machine(format!("vCPU {i} state: {e}")))?;
                if es {
                    // An SEV-ES vCPU's registers leave only in its VMSA,
                    // as a SEND_UPDATE_VMSA packet (docs/sev-es.md#migration).
                    let vmsa = es_state::to_vmsa(&st);
                    let (header, trans) = job.sev.backend.send_update_vmsa(i, &vmsa)?;
                    s.send(Record::Vmsa {
                        index: i as u32,
                        header,
                        trans,
                    })?;
                    es_state::strip(&mut st);
                }
                s.send(Record::Vcpu {
                    index: i as u32,
                    state: st.to_bytes(),
                })?;
            }
            s.send(Record::Device(machine.device_state()))?;
            // The authenticated end packet (module documentation).
            s.page(0, 16)?;
            s.send(Record::End {
                packets: 0,
                digest: [0; 32],
            })?;
            Ok((down, precopy, before))
        })();
        drop(s);
        if body.is_err() {
            if let Some(sd) = &shutdown {
                sd();
            }
        }
        let written = writer.join();
        (body, written)
    });
    display.finish();
    let (body, written) = result;
    let written = match written {
        Ok(w) => w,
        Err(_) => Err(MigrationError::Machine(
            "the migration writer panicked".into(),
        )),
    };
    let (down, precopy, before, mut out) = match (body, written) {
        (Ok((d, p, b)), Ok(out)) => (d, p, b, out),
        (Err(MigrationError::Cancelled), _) => {
            discard_file(&file);
            return Err(MigrationError::Cancelled);
        }
        // The writer's error (I/O) explains a body error ("writer gone").
        (Ok(_), Err(e))
        | (Err(_), Err(e @ (MigrationError::Stream(_) | MigrationError::Io { .. }))) => {
            discard_file(&file);
            let e = e.with_timeout("writing the stream (the target stopped reading)", timeout);
            return Err(target_said(ack.as_mut(), e));
        }
        (Err(e), _) => {
            discard_file(&file);
            return Err(target_said(ack.as_mut(), e));
        }
    };
    if let Some((tmp, path)) = &file {
        if !job.cancel.begin_commit() {
            discard_file(&file);
            return Err(MigrationError::Cancelled);
        }
        let f = File::open(tmp).map_err(io("snapshot file"))?;
        f.sync_all().map_err(io("fsync of the snapshot"))?;
        std::fs::rename(tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(tmp);
            MigrationError::Io {
                what: format!("cannot rename the snapshot to {}", path.display()),
                source: e,
            }
        })?;
    }
    if let Some(r) = ack.as_mut() {
        handover::source_side(job.cancel, r.as_mut(), out.as_mut(), timeout)?;
    }
    let downtime = down.elapsed();
    progress.remaining.store(0, Ordering::Relaxed);
    let bytes = progress.transferred.load(Ordering::Relaxed);
    progress
        .downtime_bytes
        .store(bytes.saturating_sub(before), Ordering::Relaxed);
    Ok(Summary {
        total_ms: start.elapsed().as_millis() as u64,
        downtime_ms: downtime.as_millis() as u64,
        bytes,
        precopy,
    })
}

fn discard_file(file: &Option<(PathBuf, PathBuf)>) {
    if let Some((tmp, _)) = file {
        let _ = std::fs::remove_file(tmp);
    }
}

/// A write failed: the target may have said why before closing.
fn target_said(ack: Option<&mut Box<dyn Read + Send>>, e: MigrationError) -> MigrationError {
    let Some(r) = ack else { return e };
    if matches!(e, MigrationError::PeerTimeout { .. }) {
        // A target that stopped reading has nothing to say: do not wait
        // another timeout for it.
        return e;
    }
    let mut buf = Vec::new();
    // Bounded by the socket's read timeout and the length.
    let _ = r
        .take(1 + handover::MAX_ERROR_LEN as u64)
        .read_to_end(&mut buf);
    match buf.split_first() {
        Some((&handover::ERROR, msg)) if !msg.is_empty() => {
            MigrationError::TargetRefused(String::from_utf8_lossy(msg).into_owned())
        }
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::stream::Reader;
    use sev_proto::abi::{SESSION_LEN, SEV_CERT_LEN};

    /// The writer thread writes every batch, asks for early writeback every
    /// `every` bytes while it writes, recycles the batches and ends after the
    /// end record with a stream that reads back whole.
    #[test]
    fn writer_thread_writes_everything_and_requests_early_syncs() {
        let header = Header {
            policy: 1,
            ram_size: 1 << 20,
            firmware_size: 0x10000,
            vcpus: 1,
            source_pdh: vec![7; SEV_CERT_LEN],
            session: SessionBuffer::from_bytes(&[9; SESSION_LEN]),
        };
        let (tx, rx) = sync_channel::<Vec<Record>>(16);
        let (back_tx, back_rx) = sync_channel::<Vec<Record>>(16);
        let (sync_tx, sync_rx) = sync_channel::<()>(16);
        for b in 0..4u64 {
            let batch = (0..8u64)
                .map(|i| Record::Page {
                    gpa: (b * 8 + i) << 12,
                    header: vec![1; 52],
                    trans: vec![2; 4096],
                })
                .collect();
            tx.send(batch).unwrap();
        }
        tx.send(vec![Record::End {
            packets: 0,
            digest: [0; 32],
        }])
        .unwrap();
        let progress = Progress::default();
        let out = writer_thread(
            Vec::new(),
            &header,
            &rx,
            &back_tx,
            Some((&sync_tx, 64 << 10)),
            &progress,
        )
        .unwrap();
        // 4 batches of 8 pages (~33 KiB each): a request every other batch.
        let syncs = std::iter::from_fn(|| sync_rx.try_recv().ok()).count();
        assert_eq!(syncs, 2);
        assert_eq!(std::iter::from_fn(|| back_rx.try_recv().ok()).count(), 4);
        assert_eq!(
            progress.transferred.load(Ordering::Relaxed),
            out.len() as u64
        );
        let (mut r, h) = Reader::new(out.as_slice()).unwrap();
        assert_eq!(h, header);
        let mut pages = 0;
        loop {
            match r.next_record().unwrap() {
                Record::Page { .. } => pages += 1,
                Record::End { packets, .. } => {
                    assert_eq!(packets, 32);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(pages, 32);
    }
}
