//! `sev-owner id-block`: the SNP ID block and ID authentication structure
//! for a launch digest, signed with the owner's ID key and optionally an
//! author key (docs/protocol/snp.md#id-block-and-id-authentication), as
//! sev-snp-measure's `snp-create-id-block` makes them; and their check
//! against a launch digest and policy, as SNP_LAUNCH_FINISH does.
//!
//! Keys are read from PEM files (SEC1 `EC PRIVATE KEY` or unencrypted
//! PKCS#8 `PRIVATE KEY`, P-384), decoded in zeroize-on-drop memory and never
//! printed.

use std::path::{Path, PathBuf};

use p384::ecdsa::SigningKey;
use p384::pkcs8::DecodePrivateKey as _;
use p384::SecretKey;
use sev_proto::hash::SHA384_LEN;
use sev_proto::snp::id_block::{self, Expected, IdAuth, IdBlock, IdBlockError, Identity};
use sev_proto::snp::GuestPolicy;
use zeroize::Zeroizing;

use crate::io::{self, IoError, OutputSet};

/// The largest key file read.
const MAX_KEY_FILE: u64 = 64 << 10;

/// Why an ID block could not be made or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum IdBlockToolError {
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A key file holds no usable P-384 private key.
    #[error("{}: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong (never the key material).
        reason: String,
    },
    /// A file does not hold the structure's base64.
    #[error("{}: {reason}", path.display())]
    Structure {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Creating or verifying the structures failed.
    #[error(transparent)]
    IdBlock(#[from] IdBlockError),
}

/// A P-384 private key from a PEM file: SEC1 (`-----BEGIN EC PRIVATE
/// KEY-----`, with or without an `EC PARAMETERS` block before it) or
/// unencrypted PKCS#8 (`-----BEGIN PRIVATE KEY-----`), as OpenSSL writes
/// them.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, IdBlockToolError> {
    let text = Zeroizing::new(io::read_file_max(path, MAX_KEY_FILE)?);
    let key_err = |reason: &str| IdBlockToolError::Key {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let text = std::str::from_utf8(&text).map_err(|_| key_err("not a PEM text file"))?;
    let (label, der) = pem_block(text, &["EC PRIVATE KEY", "PRIVATE KEY"]).ok_or_else(|| {
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            key_err("encrypted private keys are not supported; decrypt it first (openssl pkey)")
        } else {
            key_err("no PEM block \"EC PRIVATE KEY\" or \"PRIVATE KEY\" found")
        }
    })?;
    let der = Zeroizing::new(
        io::b64_decode("the PEM block", der).map_err(|_| key_err("the PEM block is not base64"))?,
    );
    let secret = match label {
        "EC PRIVATE KEY" => SecretKey::from_sec1_der(&der)
            .map_err(|_| key_err("not a SEC1 P-384 private key (SNP ID keys are P-384)"))?,
        _ => SecretKey::from_pkcs8_der(&der)
            .map_err(|_| key_err("not a PKCS#8 P-384 private key (SNP ID keys are P-384)"))?,
    };
    Ok(SigningKey::from(secret))
}

/// The label and base64 body of the first PEM block with one of `labels`.
fn pem_block<'a>(text: &'a str, labels: &[&'static str]) -> Option<(&'static str, &'a str)> {
    labels.iter().find_map(|&label| {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let start = text.find(&begin)? + begin.len();
        let len = text[start..].find(&end)?;
        Some((label, &text[start..start + len]))
    })
}

/// What `sev-owner id-block` signs.
#[derive(Debug, Clone)]
pub struct CreateInputs {
    /// The ID block (launch digest, ids, SVN, policy).
    pub block: IdBlock,
    /// The ID key file.
    pub id_key: PathBuf,
    /// The author key file, if any.
    pub author_key: Option<PathBuf>,
}

/// The structures and the digests the guest's reports will hold.
#[derive(Debug, Clone)]
pub struct Created {
    /// The ID block's bytes.
    pub id_block: [u8; id_block::ID_BLOCK_LEN],
    /// The ID authentication structure's bytes.
    pub id_auth: [u8; id_block::ID_AUTH_LEN],
    /// ID_KEY_DIGEST.
    pub id_key_digest: [u8; SHA384_LEN],
    /// AUTHOR_KEY_DIGEST, with an author key.
    pub author_key_digest: Option<[u8; SHA384_LEN]>,
}

impl Created {
    /// QEMU's `sev-snp-guest` properties for these structures:
    /// `id-block=…,id-auth=…[,author-key-enabled=on]`.
    pub fn qemu_properties(&self) -> String {
        let mut s = format!(
            "id-block={},id-auth={}",
            io::b64_encode(&self.id_block),
            io::b64_encode(&self.id_auth)
        );
        if self.author_key_digest.is_some() {
            s.push_str(",author-key-enabled=on");
        }
        s
    }
}

/// Signs the block (see [`IdBlock::sign`]) and checks the result as the
/// firmware will before returning it.
pub fn create(inputs: &CreateInputs) -> Result<Created, IdBlockToolError> {
    let id_key = load_signing_key(&inputs.id_key)?;
    let author_key = match &inputs.author_key {
        Some(path) => Some(load_signing_key(path)?),
        None => None,
    };
    let auth: IdAuth = inputs.block.sign(&id_key, author_key.as_ref())?;
    let created = Created {
        id_block: inputs.block.encode(),
        id_auth: auth.encode(),
        id_key_digest: auth.id_key_digest(),
        author_key_digest: auth.author_key_digest(),
    };
    id_block::verify(
        &created.id_block,
        &created.id_auth,
        author_key.is_some(),
        &Expected {
            launch_digest: inputs.block.launch_digest,
            policy: inputs.block.policy,
        },
    )?;
    Ok(created)
}

/// Writes the two base64 files (what QEMU's `id-block=` and `id-auth=`
/// take), all or nothing.
pub fn write(
    created: &Created,
    id_block_file: &Path,
    id_auth_file: &Path,
) -> Result<(), IdBlockToolError> {
    let mut set = OutputSet::new();
    set.stage(
        id_block_file,
        format!("{}\n", io::b64_encode(&created.id_block)).as_bytes(),
        0o600,
    )?;
    set.stage(
        id_auth_file,
        format!("{}\n", io::b64_encode(&created.id_auth)).as_bytes(),
        0o600,
    )?;
    set.commit()?;
    Ok(())
}

/// Reads a structure of `len` bytes from a file holding its base64 (as
/// `sev-owner id-block` writes it) or the raw bytes.
pub fn read_structure(path: &Path, len: usize) -> Result<Vec<u8>, IdBlockToolError> {
    let raw = io::read_file(path)?;
    if raw.len() == len {
        return Ok(raw);
    }
    let text = String::from_utf8_lossy(&raw);
    let bytes = io::b64_decode(&path.display().to_string(), &text).map_err(|_| {
        IdBlockToolError::Structure {
            path: path.to_path_buf(),
            reason: format!("neither {len} raw bytes nor base64"),
        }
    })?;
    if bytes.len() != len {
        return Err(IdBlockToolError::Structure {
            path: path.to_path_buf(),
            reason: format!("holds {} bytes, expected {len}", bytes.len()),
        });
    }
    Ok(bytes)
}

/// Checks an ID block and ID authentication structure (files as
/// [`read_structure`] reads them) against a launch digest and policy as
/// SNP_LAUNCH_FINISH does with ID_BLOCK_EN (and AUTH_KEY_EN when
/// `author_key_en`).
pub fn verify_files(
    id_block_file: &Path,
    id_auth_file: &Path,
    author_key_en: bool,
    launch_digest: [u8; SHA384_LEN],
    policy: GuestPolicy,
) -> Result<Identity, IdBlockToolError> {
    let block = read_structure(id_block_file, id_block::ID_BLOCK_LEN)?;
    let auth = read_structure(id_auth_file, id_block::ID_AUTH_LEN)?;
    Ok(id_block::verify(
        &block,
        &auth,
        author_key_en,
        &Expected {
            launch_digest,
            policy,
        },
    )?)
}

#[cfg(test)]
mod tests;
