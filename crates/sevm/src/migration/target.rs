//! The receiving side (`-incoming`): RECEIVE_START, RECEIVE_UPDATE_DATA for
//! every packet, and only after the whole stream verified RECEIVE_FINISH,
//! vCPU and device state. A reader thread parses the stream while this
//! thread feeds the packets to the firmware.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use sev_proto::abi::Policy;

use super::source::{ACK_ERROR, ACK_OK};
use super::stream::{Reader, Record, StreamError};
use super::{MigrationError, Progress, ProgressDisplay, PAGE};
use crate::machine::Machine;
use crate::memory::Gpa;
use crate::options::IncomingConfig;
use crate::sev::SevBackend;
use crate::vcpu::VcpuState;

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

/// The incoming stream and, for sockets, where the acknowledgement goes.
type Input = (Box<dyn Read + Send>, Option<Box<dyn Write + Send>>);

fn open(incoming: &IncomingConfig) -> Result<Input, MigrationError> {
    match incoming {
        IncomingConfig::File { path, offset } => {
            let mut f = File::open(path)
                .map_err(io(format!("-incoming: cannot open {}", path.display())))?;
            if *offset > 0 {
                f.seek(SeekFrom::Start(*offset))
                    .map_err(io("-incoming: cannot seek to the offset"))?;
            }
            Ok((Box::new(f), None))
        }
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
            eprintln!("sevm: incoming migration: waiting on tcp:{addr}");
            let (s, peer) = l.accept().map_err(io("-incoming: accept"))?;
            log::info!("incoming migration from {peer}");
            let w = s.try_clone().map_err(io("socket"))?;
            Ok((Box::new(s), Some(Box::new(w))))
        }
        IncomingConfig::Unix(path) => {
            let _ = std::fs::remove_file(path);
            let l = UnixListener::bind(path).map_err(io(format!(
                "-incoming: cannot listen on unix:{}",
                path.display()
            )))?;
            eprintln!(
                "sevm: incoming migration: waiting on unix:{}",
                path.display()
            );
            let (s, _) = l.accept().map_err(io("-incoming: accept"))?;
            let _ = std::fs::remove_file(path);
            let w = s.try_clone().map_err(io("socket"))?;
            Ok((Box::new(s), Some(Box::new(w))))
        }
        IncomingConfig::Defer => Err(MigrationError::Uri {
            uri: "defer".into(),
            problem: "-incoming defer (migrate-incoming) is not supported by sevm; \
                      give the URI to -incoming"
                .into(),
        }),
    }
}

/// Receives a guest into `machine` (created, never started) through
/// `backend` (attached, no guest yet). `policy` is the `-object sev-guest`
/// policy, which must equal the stream's. On success the guest is RUNNING
/// in the firmware, its memory, vCPU and device state restored, and the
/// source has been told. On failure the source is told why (sockets) and
/// nothing may run.
pub fn receive(
    machine: &Machine,
    backend: &dyn SevBackend,
    incoming: &IncomingConfig,
    policy: Policy,
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
    let (input, mut ack) = open(incoming)?;
    let result = receive_from(machine, backend, input, policy);
    if let Some(w) = ack.as_mut() {
        let msg = match &result {
            Ok(_) => vec![ACK_OK],
            Err(e) => {
                let mut m = vec![ACK_ERROR];
                let t = e.to_string();
                m.extend_from_slice(t.as_bytes().get(..1024).unwrap_or(t.as_bytes()));
                m
            }
        };
        if let Err(e) = w.write_all(&msg).and_then(|()| w.flush()) {
            log::warn!("cannot send the acknowledgement to the migration source: {e}");
            if result.is_ok() {
                // The source will cancel and keep running: this copy must
                // not run too.
                return Err(MigrationError::Io {
                    what: "sending the acknowledgement to the source".into(),
                    source: e,
                });
            }
        }
    }
    result
}

fn mismatch(s: String) -> MigrationError {
    MigrationError::Mismatch(s)
}

fn receive_from(
    machine: &Machine,
    backend: &dyn SevBackend,
    input: Box<dyn Read + Send>,
    policy: Policy,
) -> Result<Restored, MigrationError> {
    let start = Instant::now();
    let progress = Progress::default();
    let mut display = ProgressDisplay::new("incoming");
    // Records travel in batches: one channel message (and at most one
    // wake-up) per BATCH records instead of one per page.
    const BATCH: usize = 64;
    let (tx, rx) = sync_channel::<Vec<Result<Record, StreamError>>>(8);
    // Processed batches go back to the reader, which reuses their page
    // buffers (no allocation, zeroing and freeing per page).
    let (back_tx, back_rx) = sync_channel::<Vec<Record>>(10);
    let input = BufReader::with_capacity(1 << 20, input);
    let (reader, header) = Reader::new(input)?;
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
    let stream_policy = Policy::from_bits(header.policy);
    let handle = backend.receive_start(stream_policy, &header.source_pdh, &header.session)?;
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
                        | Record::Pass(_))
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
                        if len == 16 && gpa == 0 {
                            end_packet = true;
                        } else if len != PAGE || gpa % PAGE != 0 || !ram.contains(Gpa(gpa), PAGE) {
                            return Err(mismatch(format!(
                                "page record for {len:#x} bytes at {gpa:#x} is not a guest page"
                            )));
                        }
                        backend.receive_update_data(&header, Gpa(gpa), &trans)?;
                        done.push(Record::Page { gpa, header, trans });
                        packets += 1;
                        progress.pages.store(packets, Ordering::Relaxed);
                        progress.transferred.fetch_add(len + 65, Ordering::Relaxed);
                        display.tick(&progress);
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
                    Record::Device(d) => {
                        if device.replace(d).is_some() {
                            return Err(mismatch("device state appears twice".into()));
                        }
                    }
                    Record::Pass(n) => progress.pass.store(n, Ordering::Relaxed),
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
        let bytes = reader_thread.join().unwrap_or(0);
        display.finish();
        outcome?;
        let device = device.ok_or_else(|| mismatch("the stream has no device state".into()))?;
        let states: Vec<VcpuState> = vcpus
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                s.ok_or_else(|| mismatch(format!("the stream has no state for vCPU {i}")))
            })
            .collect::<Result<_, _>>()?;
        backend.receive_finish()?;
        for (i, s) in states.iter().enumerate() {
            machine
                .set_vcpu_state(i, s)
                .map_err(|e| MigrationError::Machine(format!("restoring vCPU {i}: {e}")))?;
        }
        machine
            .set_device_state(&device)
            .map_err(|e| MigrationError::Machine(e.to_string()))?;
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
