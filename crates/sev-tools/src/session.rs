//! The guest owner's launch session, written as `sevctl session` writes it
//! (virtee/sevctl `src/session.rs`; docs/protocol/session.md#session-buffer): `<name>_godh.b64`
//! (the GODH certificate, base64), `<name>_session.b64` (the 0x80-byte
//! session buffer, base64), `<name>_tek.bin` and `<name>_tik.bin` (raw
//! 16-byte keys). All four are created 0600 and appear together or not at
//! all.

use std::path::{Path, PathBuf};

use sev_proto::cert::chain::VerifiedChain;
use sev_proto::cert::sev;
use sev_proto::session::{OwnerSession, Tek, Tik, TransportKeys};
use zeroize::Zeroizing;

use crate::io::{self, IoError, OutputSet};

/// Why session files could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A session name that would escape the output directory.
    #[error("session name {0:?} must be a plain file-name prefix (no '/', not empty)")]
    BadName(String),
    /// A read-back file has the wrong size.
    #[error("{} holds {actual} bytes, expected {expected}", path.display())]
    Size {
        /// The file.
        path: PathBuf,
        /// Required size.
        expected: usize,
        /// Actual size.
        actual: usize,
    },
}

/// The four file paths of a session named `name` in `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPaths {
    /// `<name>_godh.b64`.
    pub godh: PathBuf,
    /// `<name>_session.b64`.
    pub session: PathBuf,
    /// `<name>_tek.bin`.
    pub tek: PathBuf,
    /// `<name>_tik.bin`.
    pub tik: PathBuf,
}

impl SessionPaths {
    /// The paths sevctl uses for `--name NAME` (default "vm"), in `dir`.
    pub fn new(dir: &Path, name: &str) -> Result<Self, SessionError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(SessionError::BadName(name.to_string()));
        }
        Ok(SessionPaths {
            godh: dir.join(format!("{name}_godh.b64")),
            session: dir.join(format!("{name}_session.b64")),
            tek: dir.join(format!("{name}_tek.bin")),
            tik: dir.join(format!("{name}_tik.bin")),
        })
    }
}

/// The session's public files and kept keys, as bytes.
#[derive(Debug, Clone)]
pub struct SessionFiles {
    /// The GODH certificate (0x824 bytes).
    pub godh_cert: [u8; sev::CERT_LEN],
    /// The session buffer (0x80 bytes).
    pub session: [u8; 0x80],
    /// TEK and TIK.
    pub keys: TransportKeys,
    /// The policy the POLICY_MAC covers.
    pub policy: u32,
}

/// Creates a session for the verified PDH of `chain`.
pub fn create(
    chain: &VerifiedChain,
    policy: u32,
    rng: &mut impl rand_core::CryptoRngCore,
) -> SessionFiles {
    from_owner_session(&OwnerSession::new(chain.pdh_public_key(), policy, rng))
}

/// The files of an existing [`OwnerSession`].
pub fn from_owner_session(s: &OwnerSession) -> SessionFiles {
    SessionFiles {
        godh_cert: sev::Certificate::godh(&s.godh_public()).encode(),
        session: s.session_buffer().to_bytes(),
        keys: s.keys().clone(),
        policy: s.policy(),
    }
}

impl SessionFiles {
    /// Writes the four files (0600, all-or-nothing, fsynced).
    pub fn write(&self, paths: &SessionPaths) -> Result<(), SessionError> {
        self.write_to(paths, OutputSet::new())
    }

    /// Writes the four files into `set` and commits it.
    pub fn write_to(&self, paths: &SessionPaths, mut set: OutputSet) -> Result<(), SessionError> {
        set.stage(
            &paths.godh,
            io::b64_encode(&self.godh_cert).as_bytes(),
            0o600,
        )?;
        set.stage(
            &paths.session,
            io::b64_encode(&self.session).as_bytes(),
            0o600,
        )?;
        set.stage(&paths.tek, self.keys.tek.as_bytes(), 0o600)?;
        set.stage(&paths.tik, self.keys.tik.as_bytes(), 0o600)?;
        set.commit()?;
        Ok(())
    }
}

/// Reads a raw 16-byte key file (`<name>_tek.bin`, `<name>_tik.bin`).
pub fn read_key(path: &Path) -> Result<Zeroizing<Vec<u8>>, SessionError> {
    let bytes = Zeroizing::new(io::read_file_max(path, 4096)?);
    if bytes.len() != 16 {
        return Err(SessionError::Size {
            path: path.to_path_buf(),
            expected: 16,
            actual: bytes.len(),
        });
    }
    Ok(bytes)
}

/// Reads a TEK file.
pub fn read_tek(path: &Path) -> Result<Tek, SessionError> {
    let bytes = read_key(path)?;
    Tek::from_slice(&bytes).map_err(|_| SessionError::Size {
        path: path.to_path_buf(),
        expected: 16,
        actual: bytes.len(),
    })
}

/// Reads a TIK file.
pub fn read_tik(path: &Path) -> Result<Tik, SessionError> {
    let bytes = read_key(path)?;
    Tik::from_slice(&bytes).map_err(|_| SessionError::Size {
        path: path.to_path_buf(),
        expected: 16,
        actual: bytes.len(),
    })
}

/// Reads the TEK and TIK of a session.
pub fn read_keys(paths: &SessionPaths) -> Result<TransportKeys, SessionError> {
    Ok(TransportKeys {
        tek: read_tek(&paths.tek)?,
        tik: read_tik(&paths.tik)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p384::SecretKey;
    use sev_proto::session::{unwrap, SessionBuffer};
    use std::os::unix::fs::PermissionsExt;

    struct TestRng(u64);
    impl rand_core::RngCore for TestRng {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = (self.next_u64() >> 33) as u8;
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl rand_core::CryptoRng for TestRng {}

    /// The files decode as the firmware reads them: the platform side
    /// (PDH private key) unwraps the TEK/TIK written to the .bin files and
    /// the POLICY_MAC covers the policy.
    #[test]
    fn written_files_unwrap_on_the_platform_side() {
        let mut rng = TestRng(7);
        let pdh = SecretKey::random(&mut rng);
        let owner = OwnerSession::new(&pdh.public_key(), 0x3, &mut rng);
        let files = from_owner_session(&owner);
        let dir = tempfile::tempdir().unwrap();
        let paths = SessionPaths::new(dir.path(), "vm").unwrap();
        files.write(&paths).unwrap();
        for p in [&paths.godh, &paths.session, &paths.tek, &paths.tik] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let godh = io::read_b64_file(&paths.godh).unwrap();
        let godh_key = sev::Certificate::validate_godh_bytes(&godh).unwrap();
        let session = SessionBuffer::decode(&io::read_b64_file(&paths.session).unwrap()).unwrap();
        let z = sev_proto::session::shared_secret(&pdh, &godh_key);
        let keys = unwrap(z.as_slice(), &session, 0x3).unwrap();
        let read = read_keys(&paths).unwrap();
        assert_eq!(keys.tek.as_bytes(), read.tek.as_bytes());
        assert_eq!(keys.tik.as_bytes(), read.tik.as_bytes());
        assert!(
            unwrap(z.as_slice(), &session, 0x1).is_err(),
            "policy not bound"
        );
        assert_eq!(
            paths.godh.file_name().unwrap().to_str().unwrap(),
            "vm_godh.b64"
        );
    }

    #[test]
    fn bad_names_and_key_sizes() {
        assert!(SessionPaths::new(Path::new("."), "a/b").is_err());
        assert!(SessionPaths::new(Path::new("."), "").is_err());
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("k.bin");
        std::fs::write(&k, [1u8; 17]).unwrap();
        let e = read_key(&k).unwrap_err().to_string();
        assert!(e.contains("holds 17 bytes, expected 16"), "{e}");
    }
}
