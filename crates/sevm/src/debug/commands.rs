//! The QMP debug commands, executed against a [`GuestDebug`]:
//!
//! * `human-monitor-command` with `x`/`xp` (see [`super::hmp`]);
//! * `pmemsave {val, size, filename}` and `memsave {val, size, filename,
//!   cpu-index?}`: what the hypervisor sees (ciphertext for private SEV
//!   memory), as QEMU writes them;
//! * `sev-dbg-decrypt {gpa, size, filename?}` → `{data}` (base64, at most
//!   [`MAX_INLINE`] bytes inline; any size up to the end of guest memory with
//!   `filename`) and `sev-dbg-encrypt {gpa, data}`: DBG_DECRYPT /
//!   DBG_ENCRYPT, any alignment. With NODBG the error carries the
//!   firmware's `POLICY_FAILURE (0x07)`.
//!
//! Virtual addresses need the vCPU's control registers; a running VM is
//! paused for the moment it takes to read them (no STOP/RESUME events, as
//! QEMU's `cpu_synchronize_state`).

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use serde_json::{json, Value};
use sevm_qmp::QmpError;

use super::hmp::error_text;
use super::{DebugError, GuestDebug, View, MAX_INLINE};
use crate::machine::MachineState;
use crate::vcpu::VcpuState;

fn generic(desc: impl Into<String>) -> QmpError {
    QmpError::generic(desc)
}

/// vCPU `index`'s state, pausing a running VM around the read. `control`
/// serialises this with the VMM's run-state changes.
pub fn vcpu_state(
    dbg: &GuestDebug,
    control: &Mutex<()>,
    index: usize,
) -> Result<VcpuState, DebugError> {
    let _g = control.lock().unwrap_or_else(PoisonError::into_inner);
    let machine = dbg.machine();
    let err = |e: crate::machine::MachineError| DebugError::Vcpu {
        index,
        reason: e.to_string(),
    };
    let running = machine.run_state() == MachineState::Running;
    if running {
        machine.pause().map_err(err)?;
    }
    let state = machine.vcpu_state(index).map_err(err);
    if running {
        machine.resume().map_err(err)?;
    }
    state
}

fn cpu_index(dbg: &GuestDebug, cpu_index: Option<i64>) -> Result<usize, QmpError> {
    let i = cpu_index.unwrap_or(0);
    usize::try_from(i)
        .ok()
        .filter(|&i| i < dbg.machine().vcpu_count())
        .ok_or_else(|| generic("Parameter 'cpu-index' expects a CPU number"))
}

fn non_negative(name: &str, v: i64) -> Result<u64, QmpError> {
    u64::try_from(v)
        .map_err(|_| generic(format!("Parameter '{name}' expects a non-negative value")))
}

fn save_error(path: &str, addr: u64, size: u64, e: &DebugError) -> QmpError {
    match e {
        DebugError::File { source, .. } => generic(format!("Could not open '{path}': {source}")),
        DebugError::Sev(_) => generic(error_text(e)),
        _ => generic(format!(
            "Invalid addr 0x{addr:016x}/size {size} specified: {}",
            error_text(e)
        )),
    }
}

/// How a command reads vCPU `index`'s state: the VM's control interface,
/// which pauses a running VM around the read ([`vcpu_state`]).
pub type ReadVcpu<'a> = &'a dyn Fn(usize) -> Result<VcpuState, DebugError>;

/// `human-monitor-command`.
pub fn human_monitor_command(
    dbg: &GuestDebug,
    read_vcpu: ReadVcpu<'_>,
    command_line: &str,
    cpu: Option<i64>,
) -> Result<Value, QmpError> {
    let cpu = cpu_index(dbg, cpu)?;
    let out = super::hmp::execute(command_line, dbg, || read_vcpu(cpu));
    Ok(Value::String(out))
}

/// `pmemsave`: guest-physical memory as the hypervisor sees it.
pub fn pmemsave(dbg: &GuestDebug, val: i64, size: i64, filename: &str) -> Result<Value, QmpError> {
    let addr = val as u64;
    let size = non_negative("size", size)?;
    dbg.save(View::Host, None, addr, size, Path::new(filename))
        .map_err(|e| save_error(filename, addr, size, &e))?;
    Ok(json!({}))
}

/// `memsave`: guest-virtual memory of vCPU `cpu-index` as the hypervisor
/// sees it.
pub fn memsave(
    dbg: &GuestDebug,
    read_vcpu: ReadVcpu<'_>,
    val: i64,
    size: i64,
    filename: &str,
    cpu: Option<i64>,
) -> Result<Value, QmpError> {
    let cpu = cpu_index(dbg, cpu)?;
    let addr = val as u64;
    let size = non_negative("size", size)?;
    let state = read_vcpu(cpu).map_err(|e| generic(error_text(&e)))?;
    dbg.save(View::Host, Some(&state), addr, size, Path::new(filename))
        .map_err(|e| save_error(filename, addr, size, &e))?;
    Ok(json!({}))
}

fn require_sev(dbg: &GuestDebug) -> Result<(), QmpError> {
    if dbg.is_sev() {
        Ok(())
    } else {
        Err(generic(
            "SEV debug is not available: SEV is not enabled for this guest",
        ))
    }
}

/// `sev-dbg-decrypt`.
pub fn dbg_decrypt(
    dbg: &GuestDebug,
    gpa: u64,
    size: u64,
    filename: Option<&str>,
) -> Result<Value, QmpError> {
    require_sev(dbg)?;
    if let Some(f) = filename {
        dbg.save(View::Decrypted, None, gpa, size, Path::new(f))
            .map_err(|e| match e {
                DebugError::File { source, .. } => {
                    generic(format!("Could not open '{f}': {source}"))
                }
                e => generic(error_text(&e)),
            })?;
        return Ok(json!({}));
    }
    if size > MAX_INLINE {
        return Err(generic(format!(
            "SEV: sev-dbg-decrypt of {size} bytes is too large for a reply (at most {MAX_INLINE}; \
             give 'filename' for more)"
        )));
    }
    dbg.check_range(gpa, size)
        .map_err(|e| generic(format!("SEV: {}", error_text(&e))))?;
    let mut buf = vec![0u8; size as usize];
    dbg.decrypt(gpa, &mut buf)
        .map_err(|e| generic(error_text(&e)))?;
    Ok(json!({ "data": sevm_qmp::base64::encode(&buf) }))
}

/// `sev-dbg-encrypt`: exactly one of `data` (base64 on the wire, decoded
/// by the schema, limited by the QMP message size) and `filename` (any
/// size up to the end of guest memory, written in chunks after the whole
/// range was checked).
pub fn dbg_encrypt(
    dbg: &GuestDebug,
    gpa: u64,
    data: Option<&[u8]>,
    filename: Option<&str>,
) -> Result<Value, QmpError> {
    require_sev(dbg)?;
    let range_err = |e: DebugError| generic(format!("SEV: {}", error_text(&e)));
    match (data, filename) {
        (Some(bytes), None) => {
            dbg.check_range(gpa, bytes.len() as u64)
                .map_err(range_err)?;
            dbg.encrypt(gpa, bytes)
                .map_err(|e| generic(error_text(&e)))?;
        }
        (None, Some(f)) => {
            let open_err = |e: std::io::Error| generic(format!("Could not open '{f}': {e}"));
            let mut file = std::fs::File::open(f).map_err(open_err)?;
            let len = file.metadata().map_err(open_err)?.len();
            dbg.check_range(gpa, len).map_err(range_err)?;
            let mut buf = vec![0u8; len.min(1 << 20) as usize];
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(buf.len() as u64) as usize;
                let chunk = buf
                    .get_mut(..n)
                    .ok_or_else(|| generic("SEV: internal buffer error"))?;
                std::io::Read::read_exact(&mut file, chunk)
                    .map_err(|e| generic(format!("Could not read '{f}': {e}")))?;
                dbg.encrypt(gpa + done, chunk)
                    .map_err(|e| generic(error_text(&e)))?;
                done += n as u64;
            }
        }
        _ => {
            return Err(generic(
                "SEV: sev-dbg-encrypt needs exactly one of 'data' and 'filename'",
            ))
        }
    }
    Ok(json!({}))
}
