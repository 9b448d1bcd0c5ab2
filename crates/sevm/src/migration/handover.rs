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

use super::MigrationError;

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

/// Default bound of every single wait on the migration peer
/// (`x-peer-timeout`), in milliseconds.
pub const DEFAULT_PEER_TIMEOUT_MS: u64 = 30_000;
/// Smallest settable `x-peer-timeout`.
pub const MIN_PEER_TIMEOUT_MS: u64 = 100;
/// Largest settable `x-peer-timeout` (one hour).
pub const MAX_PEER_TIMEOUT_MS: u64 = 3_600_000;

/// The effective peer timeout of a parameter value.
pub fn peer_timeout(ms: Option<u64>) -> Duration {
    Duration::from_millis(ms.unwrap_or(DEFAULT_PEER_TIMEOUT_MS))
}

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

    #[test]
    fn socket_timeouts_are_recognised() {
        assert!(is_timeout(&std::io::Error::from(
            std::io::ErrorKind::WouldBlock
        )));
        assert!(!is_timeout(&std::io::Error::from(
            std::io::ErrorKind::BrokenPipe
        )));
        assert_eq!(
            peer_timeout(None),
            Duration::from_millis(DEFAULT_PEER_TIMEOUT_MS)
        );
    }
}
