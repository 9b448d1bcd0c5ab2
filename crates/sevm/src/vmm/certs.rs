//! The certificate table of the guest's extended requests
//! (`x-sevm-certs=`, docs/snp.md#certificates-for-extended-requests): read
//! from a table file or a directory of certificates, or issued by the
//! emulated platform, once at start-up. A bad value is a start-up error
//! that names the file and what is wrong with it.

use std::path::{Path, PathBuf};

use sev_proto::snp::cert::Certificate;
use sev_proto::snp::cert_table::{self, guid, CertEntry, MAX_TABLE_LEN};

use super::files::{self, FileError};
use crate::sev::PlatformManagement;

/// The largest certificate file a directory may hold (AMD's are under
/// 2 KiB).
const MAX_CERT_FILE: u64 = 64 << 10;

/// The certificate files a directory may hold, in table order, with their
/// entries' GUIDs (the ASVK of a VLEK goes in the ASK's entry, as AMD's
/// table does).
const DIR_FILES: [(&str, [u8; 16]); 4] = [
    ("vcek", guid::VCEK),
    ("vlek", guid::VLEK),
    ("ask", guid::ASK),
    ("ark", guid::ARK),
];

const WHAT: &str = "x-sevm-certs";

fn size(path: &Path, problem: String) -> FileError {
    FileError::Size {
        what: WHAT,
        path: path.to_path_buf(),
        problem,
    }
}

/// The table of `path`: a directory of certificates, or a file holding a
/// table in the GHCB format (checked to decode, then handed out as it is:
/// the table is opaque to the host, as KVM's is).
pub(super) fn read_path(path: &Path) -> Result<Vec<u8>, FileError> {
    let meta = std::fs::metadata(path).map_err(|source| FileError::Io {
        what: WHAT,
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        return read_dir(path);
    }
    let table = files::read(WHAT, path, MAX_TABLE_LEN as u64)?;
    cert_table::decode(&table).map_err(|e| {
        size(
            path,
            format!("is neither a directory of certificates nor a certificate table: {e}"),
        )
    })?;
    Ok(table)
}

/// The table of the certificates in `dir`: `vcek`, `vlek`, `ask`, `ark`,
/// each `.der` or `.pem` (one of the two), each one X.509 certificate,
/// stored as DER. At least a VCEK or a VLEK; other files are ignored.
fn read_dir(dir: &Path) -> Result<Vec<u8>, FileError> {
    let mut entries = Vec::new();
    for (name, guid) in DIR_FILES {
        let found: Vec<PathBuf> = ["der", "pem"]
            .iter()
            .map(|ext| dir.join(format!("{name}.{ext}")))
            .filter(|p| p.exists())
            .collect();
        let path = match found.as_slice() {
            [] => continue,
            [one] => one,
            _ => {
                return Err(size(
                    dir,
                    format!("holds both {name}.der and {name}.pem: keep one"),
                ))
            }
        };
        let bytes = files::read(WHAT, path, MAX_CERT_FILE)?;
        let cert = Certificate::from_der_or_pem(&bytes)
            .map_err(|e| size(path, format!("is not an X.509 certificate: {e}")))?;
        entries.push(CertEntry {
            guid,
            data: cert.der().to_vec(),
        });
    }
    if !entries
        .iter()
        .any(|e| e.guid == guid::VCEK || e.guid == guid::VLEK)
    {
        return Err(size(
            dir,
            "holds no vcek.der, vcek.pem, vlek.der or vlek.pem: a certificate table names \
             the key that signs the reports"
                .into(),
        ));
    }
    cert_table::encode(&entries).map_err(|e| size(dir, e.to_string()))
}

/// The emulated platform's table: its VCEK of the TCB its reports carry
/// now, then the ASK and the ARK (DER), or why it has none.
pub(super) fn from_platform(platform: &dyn PlatformManagement) -> Result<Vec<u8>, String> {
    let chain = platform
        .snp_vcek_chain()
        .map_err(|e| format!("the platform's VCEK chain: {e}"))?
        .ok_or_else(|| {
            format!(
                "{} issues no certificates of its own; give a table file or a directory \
                 of certificates instead",
                platform.describe()
            )
        })?;
    let entries = [
        (guid::VCEK, chain.vcek),
        (guid::ASK, chain.ask),
        (guid::ARK, chain.ark),
    ]
    .map(|(guid, data)| CertEntry { guid, data });
    cert_table::encode(&entries).map_err(|e| format!("the platform's VCEK chain: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that are no certificate (the table file is opaque).
    fn junk(seed: u8) -> Vec<u8> {
        vec![seed; 4]
    }

    fn pem(der: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn the_emulated_platform_and_a_directory_of_its_certificates_give_the_same_table() {
        use sev_firmware::emulated::{CreateOptions, EmulatedPlatform};
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        let opts = CreateOptions {
            ark_bits: 2048,
            ..Default::default()
        };
        EmulatedPlatform::create(&dir, opts).unwrap();
        let p = EmulatedPlatform::open(&dir).unwrap();
        let table = from_platform(&p).unwrap();
        let entries = cert_table::decode(&table).unwrap();
        let guids: Vec<_> = entries.iter().map(|e| e.guid).collect();
        assert_eq!(guids, [guid::VCEK, guid::ASK, guid::ARK]);
        let vcek = Certificate::from_der(&entries[0].data).unwrap();
        assert_eq!(
            vcek.p384_public_key().unwrap(),
            p.firmware().snp_vcek_public(None).unwrap()
        );
        // The same certificates as snpguest's files, PEM and DER mixed.
        let certs = tmp.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        std::fs::write(certs.join("vcek.der"), &entries[0].data).unwrap();
        std::fs::write(certs.join("ask.pem"), pem(&entries[1].data)).unwrap();
        std::fs::write(certs.join("ark.der"), &entries[2].data).unwrap();
        std::fs::write(certs.join("notes.txt"), b"ignored").unwrap();
        assert_eq!(read_path(&certs).unwrap(), table);
    }

    #[test]
    fn a_table_file_is_checked_and_handed_out_as_it_is() {
        let tmp = tempfile::tempdir().unwrap();
        let entries = vec![CertEntry {
            guid: guid::VCEK,
            data: junk(7),
        }];
        let mut table = cert_table::encode(&entries).unwrap();
        // Trailing padding stays: the table is opaque.
        table.extend_from_slice(&[0; 8]);
        let path = tmp.path().join("table.bin");
        std::fs::write(&path, &table).unwrap();
        assert_eq!(read_path(&path).unwrap(), table);

        // No terminator: refused, naming the file and the problem.
        let bad = tmp.path().join("bad.bin");
        std::fs::write(&bad, [0xAA; 48]).unwrap();
        let e = read_path(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.bin"), "{e}");
        assert!(e.contains("no all-zero terminator"), "{e}");

        // Missing.
        let e = read_path(&tmp.path().join("none")).unwrap_err().to_string();
        assert!(e.contains("x-sevm-certs") && e.contains("none"), "{e}");

        // Too large: refused without reading it all.
        let big = tmp.path().join("big.bin");
        std::fs::write(&big, vec![0u8; MAX_TABLE_LEN + 1]).unwrap();
        let e = read_path(&big).unwrap_err().to_string();
        assert!(
            e.contains("big.bin") && e.contains("larger than 1048576"),
            "{e}"
        );
    }

    #[test]
    fn a_directory_needs_a_vcek_and_real_certificates() {
        let tmp = tempfile::tempdir().unwrap();
        let e = read_path(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("holds no vcek.der"), "{e}");
        std::fs::write(tmp.path().join("vcek.der"), junk(1)).unwrap();
        let e = read_path(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains("vcek.der") && e.contains("not an X.509 certificate"),
            "{e}"
        );
        std::fs::write(tmp.path().join("vcek.pem"), b"x").unwrap();
        let e = read_path(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("both vcek.der and vcek.pem"), "{e}");
    }
}
