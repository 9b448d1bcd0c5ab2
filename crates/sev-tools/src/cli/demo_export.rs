//! `sev-owner demo --snp --export DIR`: the SNP demo's evidence as the
//! verifiers read it (docs/guide/sev-owner.md#exporting-the-snp-demos-evidence):
//! the report the guest received (`report.bin`, the 1184 bytes as printed
//! on its console), the emulated platform's ARK, ASK and VCEK of the
//! report's TCB (`ark.pem`, `ask.pem`, `vcek.pem`, the names
//! `snpguest verify certs DIR` and `snpguest verify attestation DIR
//! DIR/report.bin` look for), the ARK's certificate revocation list
//! (`crl.der`, for `sev-owner snp verify --crl`) and the measured firmware
//! image (`firmware.fd`, for `sev-snp-measure`).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sev_proto::snp::cert_table::{self, CertEntry};
use sev_proto::snp::chain::Chain;
use sev_proto::snp::report::REPORT_LEN;

/// The report file.
pub const REPORT_FILE: &str = "report.bin";
/// The measured firmware image.
pub const FIRMWARE_FILE: &str = "firmware.fd";
/// The ARK's certificate revocation list (DER).
pub const CRL_FILE: &str = "crl.der";
/// The certificate files, in the order they are written.
pub const CERT_FILES: [&str; 3] = ["ark.pem", "ask.pem", "vcek.pem"];

/// Every file an export writes into `dir`.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    std::iter::once(REPORT_FILE)
        .chain(CERT_FILES)
        .chain([CRL_FILE, FIRMWARE_FILE])
        .map(|f| dir.join(f))
        .collect()
}

/// Refuses `dir` if any export file exists in it already (checked before
/// the launch, so that nothing is run for an export that cannot be
/// written; the files are still created exclusively).
pub fn check_free(dir: &Path) -> Result<()> {
    if let Some(p) = files(dir)
        .into_iter()
        .find(|p| p.symlink_metadata().is_ok())
    {
        bail!(
            "--export: {} exists already: refusing to overwrite it (nothing was run)",
            p.display()
        );
    }
    Ok(())
}

/// PEM text of one DER certificate.
pub fn pem(der: &[u8]) -> Vec<u8> {
    let b64 = crate::io::b64_encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out.into_bytes()
}

/// Writes the export into `dir` (created 0755 if missing): each file
/// created exclusively (O_EXCL, O_NOFOLLOW), 0644 (a report, public
/// certificates and the firmware hold no secret). On a failure the files
/// written so far are removed. Returns the files written.
pub fn write(
    dir: &Path,
    report: &[u8],
    chain: &Chain,
    crl: &[u8],
    firmware: &[u8],
) -> Result<Vec<PathBuf>> {
    if report.len() != REPORT_LEN {
        bail!(
            "the report is {} bytes, not the {REPORT_LEN} of an attestation report",
            report.len()
        );
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("--export: creating {}", dir.display()))?;
    let contents: Vec<Vec<u8>> = vec![
        report.to_vec(),
        pem(chain.ark.der()),
        pem(chain.ask.der()),
        pem(chain.vek.der()),
        crl.to_vec(),
        firmware.to_vec(),
    ];
    let mut written: Vec<PathBuf> = Vec::new();
    for (path, bytes) in files(dir).into_iter().zip(contents) {
        let result = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()));
        if let Err(e) = result {
            for w in &written {
                let _ = std::fs::remove_file(w);
            }
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                bail!(
                    "--export: {} exists already: refusing to overwrite it (nothing was written)",
                    path.display()
                );
            }
            return Err(e).with_context(|| format!("--export: writing {}", path.display()));
        }
        written.push(path);
    }
    Ok(written)
}

/// The certificate table the demo guest printed (`snp cert:` lines,
/// docs/guide/demo-guest.md#the-report-request), as entries; an entry
/// whose bytes were outside its buffer, or an unterminated table, is an
/// error.
pub fn printed_cert_table(output: &str) -> Result<Vec<CertEntry>> {
    let mut entries: Vec<(CertEntry, usize)> = Vec::new();
    for line in output.lines() {
        if let Some(hex_text) = line.strip_prefix("snp cert data: ") {
            let Some((entry, _)) = entries.last_mut() else {
                bail!("the guest printed certificate data before an entry");
            };
            if entry.data.len() + hex_text.len() / 2 > cert_table::MAX_TABLE_LEN {
                bail!("the guest printed more certificate data than a table holds");
            }
            entry.data.extend(
                hex::decode(hex_text)
                    .context("the guest printed certificate data that is not hex")?,
            );
            continue;
        }
        let Some(rest) = line.strip_prefix("snp cert: ") else {
            continue;
        };
        if rest == "end" {
            return entries
                .into_iter()
                .map(|(e, len)| {
                    if e.data.len() == len {
                        Ok(e)
                    } else {
                        bail!(
                            "certificate table entry {} has {} of its {len} bytes printed",
                            cert_table::guid_name(&e.guid).unwrap_or("(unknown GUID)"),
                            e.data.len()
                        )
                    }
                })
                .collect();
        }
        if rest == "outside the buffer" {
            bail!("the guest's certificate table has an entry outside its buffer");
        }
        let fields: Vec<&str> = rest.split(' ').collect();
        let [guid, _offset, length] = fields.as_slice() else {
            bail!("the guest printed an unexpected certificate line {line:?}");
        };
        let guid: [u8; 16] = hex::decode(guid)
            .ok()
            .and_then(|g| g.try_into().ok())
            .with_context(|| format!("the guest printed a bad GUID in {line:?}"))?;
        let length = u32::from_str_radix(length, 16)
            .with_context(|| format!("the guest printed a bad length in {line:?}"))?;
        entries.push((
            CertEntry {
                guid,
                data: Vec::new(),
            },
            length as usize,
        ));
    }
    bail!("the guest printed no complete certificate table")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sev_proto::snp::cert_table::guid;

    #[test]
    fn the_printed_table_is_read_back_or_its_problem_named() {
        let out = format!(
            "snp report: certificate table entries: 2\n\
             snp cert: {} 00000048 00000022\n\
             snp cert data: {}\n\
             snp cert data: 0102\n\
             snp cert: {} 0000006a 00000000\n\
             snp cert: end\n\
             snp report: 00\n",
            hex::encode(guid::VCEK),
            "ab".repeat(32),
            hex::encode(guid::ARK),
        );
        let entries = printed_cert_table(&out).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].guid, guid::VCEK);
        assert_eq!(entries[0].data.len(), 34);
        assert_eq!(&entries[0].data[32..], &[1, 2]);
        assert_eq!(entries[1].guid, guid::ARK);
        assert!(entries[1].data.is_empty());

        let short = out.replace("snp cert data: 0102\n", "");
        let e = printed_cert_table(&short).unwrap_err().to_string();
        assert!(e.contains("VCEK has 32 of its 34 bytes"), "{e}");
        let outside = format!(
            "snp cert: {} 00005000 00000010\nsnp cert: outside the buffer\nsnp cert: end\n",
            hex::encode(guid::VCEK)
        );
        let e = printed_cert_table(&outside).unwrap_err().to_string();
        assert!(e.contains("outside its buffer"), "{e}");
        let e = printed_cert_table("snp report: end\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no complete certificate table"), "{e}");
    }

    #[test]
    fn an_export_never_overwrites_and_leaves_nothing_half_written() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        check_free(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("vcek.pem"), b"mine").unwrap();
        let e = check_free(&dir).unwrap_err().to_string();
        assert!(e.contains("vcek.pem exists already"), "{e}");
        // A symlink counts as existing (and is never followed).
        std::fs::remove_file(dir.join("vcek.pem")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("report.bin")).unwrap();
        let e = check_free(&dir).unwrap_err().to_string();
        assert!(e.contains("report.bin exists already"), "{e}");
        std::fs::remove_file(dir.join("report.bin")).unwrap();

        // A real chain (the emulated issuer's) and a file that appears
        // between the check and the write: refused, the files before it removed.
        use crate::platform::{CreateOptions, EmulatedPlatform};
        let pdir = tmp.path().join("p");
        let opts = CreateOptions {
            ark_bits: 2048,
            ..Default::default()
        };
        EmulatedPlatform::create(&pdir, opts).unwrap();
        let p = EmulatedPlatform::open(&pdir).unwrap();
        let tcb = crate::kds::resolve_tcb(&p, crate::kds::TcbChoice::Reported).unwrap();
        let (chain, _) = crate::kds::chain_of(&p, tcb).unwrap();
        let report = vec![0u8; REPORT_LEN];
        std::fs::write(dir.join(FIRMWARE_FILE), b"mine").unwrap();
        let e = write(&dir, &report, &chain, b"crl", b"fw")
            .unwrap_err()
            .to_string();
        assert!(e.contains("firmware.fd exists already"), "{e}");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "only the user's file is left");
        assert_eq!(std::fs::read(dir.join(FIRMWARE_FILE)).unwrap(), b"mine");
        // A short report is refused before anything is written.
        let e = write(
            &tmp.path().join("new"),
            &report[..100],
            &chain,
            b"crl",
            b"fw",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("100 bytes"), "{e}");
        assert!(!tmp.path().join("new").exists());

        // Into a fresh directory: every file, 0644, the chain in PEM.
        std::fs::remove_file(dir.join(FIRMWARE_FILE)).unwrap();
        let written = write(&dir, &report, &chain, b"crl", b"fw").unwrap();
        assert_eq!(written, files(&dir));
        for f in &written {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "{}", f.display());
        }
        let vcek = sev_proto::snp::cert::Certificate::from_der_or_pem(
            &std::fs::read(dir.join("vcek.pem")).unwrap(),
        )
        .unwrap();
        assert_eq!(vcek.der(), chain.vek.der());
        assert_eq!(std::fs::read(dir.join(REPORT_FILE)).unwrap(), report);
    }
}
