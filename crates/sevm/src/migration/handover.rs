//! The hand-over at the end of a live migration: who runs the guest.
//!
//! A guest must never run in two places, and the two sides of a socket
//! can fail independently. So after the stream, ownership moves in three
//! steps, each bounded by the peer timeout:
//!
//! ```text
//! source                                   target
//! ── stream … end record ─────────────────▶ RECEIVE_FINISH, state restored
//!                        ◀──────────────── READY (0x00) | ERROR (0x01 ‖ text ≤ 1 KiB, EOF)
//! point of no return: cancel refused
//! ── COMMIT (0xC0) ───────────────────────▶ the guest is now the target's
//!                        ◀──────────────── CONFIRM (0x00), then the target runs it
//! completed (SEND_FINISH)
//! ```
//!
//! * Before the source queues COMMIT, any failure on either side (a
//!   timeout, EOF, `migrate_cancel`, an error reply) ends with the source
//!   resuming (SEND_CANCEL) and the target exiting without running the
//!   guest: a target runs only after it has read COMMIT.
//! * Once the source has queued COMMIT it never runs the guest again, even
//!   if CONFIRM does not arrive (status `failed`, "hand-over unconfirmed").
//!   A connection lost in exactly that window can leave the guest running
//!   nowhere (the target never read COMMIT) — the one fault that cannot be
//!   told apart from "the target runs it" by the source, and the reason
//!   the source then stays paused instead of risking a second copy.
//!
//! A target from before this hand-over existed sends its acknowledgement
//! (0x00, as READY) and runs at once; a source of this build then commits
//! and completes, so mixed builds never split a guest either.

use std::io::{Read, Write};
use std::time::Duration;

use super::{Cancel, MigrationError};

/// Target → source: the stream was received and verified, the guest is
/// ready to run here (RECEIVE_FINISH done).
pub const READY: u8 = 0x00;
/// Target → source: the target refused the stream; an error text of at
/// most [`MAX_ERROR_LEN`] bytes and EOF follow.
pub const ERROR: u8 = 0x01;
/// Source → target: the guest is yours; the source will not run it again.
pub const COMMIT: u8 = 0xC0;
/// Target → source: COMMIT read; the target runs the guest.
pub const CONFIRM: u8 = 0x00;
/// Longest error text a target sends.
pub const MAX_ERROR_LEN: usize = 1024;

/// Whether an I/O error is a socket timeout (`SO_RCVTIMEO`/`SO_SNDTIMEO`
/// expired: Linux reports `EAGAIN`).
pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The error message a target sends with [`ERROR`].
pub fn error_message(e: &MigrationError) -> Vec<u8> {
    let text = e.to_string();
    let mut m = Vec::with_capacity(1 + MAX_ERROR_LEN);
    m.push(ERROR);
    let mut end = text.len().min(MAX_ERROR_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    m.extend_from_slice(text.as_bytes().get(..end).unwrap_or_default());
    m
}

/// What the target answered after the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// [`READY`].
    Ready,
    /// [`ERROR`] and its text.
    Refused(String),
}

/// Reads the target's answer (one byte; after [`ERROR`] its text up to
/// EOF, bounded). A timeout or EOF is an error naming what was awaited.
pub fn read_answer(r: &mut dyn Read, timeout: Duration) -> Result<Answer, MigrationError> {
    let mut b = [0u8; 1];
    match r.read(&mut b) {
        Ok(1) => {}
        Ok(_) => {
            return Err(MigrationError::TargetRefused(
                "the connection closed without an acknowledgement (target died?)".into(),
            ))
        }
        Err(e) if is_timeout(&e) => {
            return Err(MigrationError::PeerTimeout {
                what: "the target's acknowledgement of the stream",
                ms: timeout.as_millis() as u64,
            })
        }
        Err(source) => {
            return Err(MigrationError::Io {
                what: "reading the target's acknowledgement".into(),
                source,
            })
        }
    }
    match b[0] {
        READY => Ok(Answer::Ready),
        ERROR => {
            let mut text = Vec::new();
            // The text is informative: a timeout or reset keeps what came.
            let _ = r.take(MAX_ERROR_LEN as u64).read_to_end(&mut text);
            Ok(Answer::Refused(String::from_utf8_lossy(&text).into_owned()))
        }
        other => Err(MigrationError::TargetRefused(format!(
            "the target answered {other:#04x}, which is not an acknowledgement"
        ))),
    }
}

/// Reads one expected byte (COMMIT on the target, CONFIRM on the source).
/// `Ok(false)` for EOF or another byte; a timeout is an error.
pub fn read_byte(
    r: &mut dyn Read,
    want: u8,
    what: &'static str,
    timeout: Duration,
) -> Result<bool, MigrationError> {
    let mut b = [0u8; 1];
    match r.read(&mut b) {
        Ok(1) => Ok(b[0] == want),
        Ok(_) => Ok(false),
        Err(e) if is_timeout(&e) => Err(MigrationError::PeerTimeout {
            what,
            ms: timeout.as_millis() as u64,
        }),
        Err(source) => Err(MigrationError::Io {
            what: format!("reading {what}"),
            source,
        }),
    }
}

/// Writes one byte and flushes.
pub fn write_byte(w: &mut dyn Write, b: u8, what: &'static str) -> Result<(), MigrationError> {
    w.write_all(&[b])
        .and_then(|()| w.flush())
        .map_err(|source| MigrationError::Io {
            what: format!("sending {what}"),
            source,
        })
}

/// The source's side after the stream: READY, the point of no return,
/// COMMIT, CONFIRM. `Ok` and [`MigrationError::Unconfirmed`] mean COMMIT was
/// queued (this side must never run the guest again); any other error
/// means it was not (this side may resume the guest).
pub fn source_side(
    cancel: &Cancel,
    r: &mut dyn Read,
    w: &mut dyn Write,
    timeout: Duration,
) -> Result<(), MigrationError> {
    match read_answer(r, timeout) {
        Ok(Answer::Ready) => {}
        Ok(Answer::Refused(text)) => return Err(MigrationError::TargetRefused(text)),
        Err(_) if cancel.is_cancelled() => return Err(MigrationError::Cancelled),
        Err(e) => return Err(e),
    }
    if !cancel.begin_commit() {
        return Err(MigrationError::Cancelled);
    }
    // A failed write queued nothing: the target cannot have read COMMIT and
    // will not run the guest, so this side may resume it.
    write_byte(w, COMMIT, "COMMIT to the target")?;
    match read_byte(r, CONFIRM, "the target's confirmation", timeout) {
        Ok(true) => Ok(()),
        Ok(false) => Err(MigrationError::Unconfirmed(
            "the connection closed before the target confirmed".into(),
        )),
        Err(e) => Err(MigrationError::Unconfirmed(e.to_string())),
    }
}

/// The target's side once the guest is restored: READY, then `Ok(true)`
/// only if COMMIT arrives (the guest is now this side's to run; CONFIRM is
/// sent, and a lost CONFIRM does not change that). `Ok(false)`: no COMMIT
/// (EOF, another byte, a timeout, `cancel`) — the guest must not run here.
pub fn target_side(
    cancel: &Cancel,
    r: &mut dyn Read,
    w: &mut dyn Write,
    timeout: Duration,
) -> Result<bool, MigrationError> {
    write_byte(w, READY, "READY to the source")?;
    let committed = read_byte(r, COMMIT, "the source's COMMIT", timeout).unwrap_or(false);
    if !committed || cancel.is_cancelled() {
        return Ok(false);
    }
    if let Err(e) = write_byte(w, CONFIRM, "CONFIRM") {
        // The source committed: it will not run the guest, so this side
        // runs it even if the confirmation is lost.
        log::warn!("{e}");
    }
    Ok(true)
}

/// Faults injected into a simulated hand-over ([`simulate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults {
    /// The network loses the source's COMMIT (the target sees EOF).
    pub drop_commit: bool,
    /// What reaches the source from the target: 0 nothing (EOF), 1 READY
    /// only (CONFIRM lost), 2 everything, 3 this garbage byte instead of
    /// READY ([`Faults::garbage`]).
    pub back: u8,
    /// The byte sent instead of READY when `back == 3`.
    pub garbage: u8,
    /// `migrate_cancel` timing: 0 none, 1 before the hand-over starts,
    /// 2 during it (a plain cancel, refused after the point of no return),
    /// 3 during it forced (quit).
    pub cancel: u8,
}

/// How a simulated hand-over ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The source may resume the guest (it did not queue COMMIT).
    pub source_runs: bool,
    /// The target runs the guest (it read COMMIT).
    pub target_runs: bool,
    /// The source reported the migration completed.
    pub completed: bool,
}

/// Runs [`source_side`] and [`target_side`] against each other over a
/// socket pair through a lossy relay that applies `faults`; used by the
/// unit tests and the `migration_control` fuzz target to check that no
/// fault ever lets both sides run the guest.
pub fn simulate(faults: Faults) -> std::io::Result<Outcome> {
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    let timeout = Duration::from_secs(2);
    let (src, relay_s) = UnixStream::pair()?;
    let (relay_t, tgt) = UnixStream::pair()?;
    for s in [&src, &relay_s, &relay_t, &tgt] {
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
    }
    let cancel = Arc::new(Cancel::default());
    let target_cancel = Cancel::default();
    if faults.cancel == 1 {
        cancel.cancel(false);
    }
    // source → target: COMMIT, unless lost.
    let (mut from_s, mut to_t) = (relay_s.try_clone()?, relay_t.try_clone()?);
    let forward = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        if let Ok(1) = from_s.read(&mut b) {
            if !faults.drop_commit {
                let _ = to_t.write_all(&b);
            }
        }
        let _ = to_t.shutdown(std::net::Shutdown::Write);
    });
    // target → source: READY (or garbage), then CONFIRM, as allowed.
    let (mut from_t, mut to_s) = (relay_t, relay_s);
    let back = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        let mut n = 0u8;
        while let Ok(1) = from_t.read(&mut b) {
            n += 1;
            let out = match (faults.back, n) {
                (3, 1) => faults.garbage,
                (1, 1) | (2, _) => b[0],
                _ => break,
            };
            if to_s.write_all(&[out]).is_err() {
                break;
            }
        }
        let _ = to_s.shutdown(std::net::Shutdown::Write);
    });
    let c2 = Arc::clone(&cancel);
    let canceller = std::thread::spawn(move || match faults.cancel {
        2 => {
            c2.cancel(false);
        }
        3 => {
            c2.cancel(true);
        }
        _ => {}
    });
    let target = std::thread::spawn(move || {
        let (mut r, mut w) = (tgt.try_clone()?, tgt);
        target_side(&target_cancel, &mut r, &mut w, timeout)
            .map_err(|e| std::io::Error::other(e.to_string()))
    });
    let (mut r, mut w) = (src.try_clone()?, src);
    let result = source_side(&cancel, &mut r, &mut w, timeout);
    drop((r, w));
    let _ = canceller.join();
    let target_runs = matches!(target.join(), Ok(Ok(true)));
    let _ = forward.join();
    let _ = back.join();
    Ok(Outcome {
        source_runs: !matches!(result, Ok(()) | Err(MigrationError::Unconfirmed(_))),
        target_runs,
        completed: result.is_ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_and_bounded() {
        let t = Duration::from_secs(1);
        assert_eq!(read_answer(&mut &[READY][..], t).unwrap(), Answer::Ready);
        let mut msg = vec![ERROR];
        msg.extend(std::iter::repeat_n(b'x', 5000));
        match read_answer(&mut msg.as_slice(), t).unwrap() {
            Answer::Refused(text) => assert_eq!(text.len(), MAX_ERROR_LEN),
            other => panic!("{other:?}"),
        }
        let e = read_answer(&mut &[][..], t).unwrap_err();
        assert!(e.to_string().contains("without an acknowledgement"), "{e}");
        let e = read_answer(&mut &[0x7f][..], t).unwrap_err();
        assert!(e.to_string().contains("0x7f"), "{e}");
        assert!(read_byte(&mut &[COMMIT][..], COMMIT, "COMMIT", t).unwrap());
        assert!(!read_byte(&mut &[0][..], COMMIT, "COMMIT", t).unwrap());
        assert!(!read_byte(&mut &[][..], COMMIT, "COMMIT", t).unwrap());
    }

    #[test]
    fn error_messages_are_cut_on_a_character_boundary() {
        let e = MigrationError::Mismatch("é".repeat(1000));
        let m = error_message(&e);
        assert_eq!(m[0], ERROR);
        assert!(m.len() <= 1 + MAX_ERROR_LEN);
        assert!(std::str::from_utf8(&m[1..]).is_ok());
    }

    /// Every fault combination of the model: never both sides running; a
    /// completed migration means the target runs; a target runs only if the
    /// COMMIT arrived; a cancel before the hand-over always keeps the guest
    /// at the source.
    #[test]
    fn no_fault_lets_both_sides_run_the_guest() {
        for drop_commit in [false, true] {
            for back in 0..4u8 {
                for cancel in 0..4u8 {
                    let f = Faults {
                        drop_commit,
                        back,
                        garbage: 0x5a,
                        cancel,
                    };
                    let o = simulate(f).unwrap();
                    assert!(!(o.source_runs && o.target_runs), "{f:?}: {o:?}");
                    if o.completed {
                        assert!(o.target_runs, "{f:?}: {o:?}");
                    }
                    if o.target_runs {
                        assert!(!drop_commit, "{f:?}: {o:?}");
                    }
                    if cancel == 1 || back == 0 || back == 3 {
                        assert!(o.source_runs && !o.target_runs, "{f:?}: {o:?}");
                    }
                    if !drop_commit && back == 2 && cancel == 0 {
                        assert!(o.completed && o.target_runs, "{f:?}: {o:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn socket_timeouts_are_recognised() {
        assert!(is_timeout(&std::io::Error::from(
            std::io::ErrorKind::WouldBlock
        )));
        assert!(!is_timeout(&std::io::Error::from(
            std::io::ErrorKind::BrokenPipe
        )));
        assert_eq!(
            super::super::parameters::peer_timeout(None),
            Duration::from_millis(super::super::parameters::DEFAULT_PEER_TIMEOUT_MS)
        );
    }
}
