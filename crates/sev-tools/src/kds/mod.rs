//! The key distribution service (KDS) on the tools' side
//! (docs/guide/kds.md): the owner's client of any such service, AMD's
//! included ([`client`]); exporting an emulated platform's ARK, ASK and VCEK
//! as files ([`export_certs`], `sev-platform snp certs`) and serving them
//! over HTTP with AMD's URL grammar ([`server`], `sev-platform kds serve`).

pub mod client;
pub mod http;
pub mod server;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use sev_firmware::emulated::{EmulatedPlatform, KdsError};
use sev_proto::snp::cert::{CertError, Certificate};
use sev_proto::snp::chain::{Chain, ChainError, Trust, VekKind};
use sev_proto::snp::kds::KdsRequest;
use sev_proto::snp::{Product, TcbVersion};

/// Why certificates could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum KdsToolError {
    /// The platform could not answer (not SNP capable, damaged state).
    #[error("the emulated platform: {0}")]
    Platform(String),
    /// The issuer refused or failed.
    #[error(transparent)]
    Issuer(#[from] KdsError),
    /// What the issuer made does not decode (a bug).
    #[error("the issued certificates: {0}")]
    Cert(#[from] CertError),
    /// What the issuer made does not verify (a bug, or a damaged platform).
    #[error("the issued chain does not verify: {0}")]
    Chain(#[from] ChainError),
    /// An output file exists already: nothing was written.
    #[error("{} exists already: refusing to overwrite it (nothing was written)", .0.display())]
    Exists(PathBuf),
    /// An output file could not be written (the ones written before it were
    /// removed).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Which TCB's VCEK to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcbChoice {
    /// The reported TCB (what reports carry and verifiers ask for).
    Reported,
    /// The installed firmware's TCB.
    Current,
    /// The committed TCB.
    Committed,
    /// A TCB_VERSION value, in the product's layout.
    Raw(u64),
}

impl FromStr for TcbChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reported" => Ok(TcbChoice::Reported),
            "current" => Ok(TcbChoice::Current),
            "committed" => Ok(TcbChoice::Committed),
            _ => {
                let digits = s.strip_prefix("0x").unwrap_or(s);
                u64::from_str_radix(digits, 16)
                    .map(TcbChoice::Raw)
                    .map_err(|_| {
                        format!(
                            "{s:?}: expected reported, current, committed or a TCB_VERSION in hex (0x...)"
                        )
                    })
            }
        }
    }
}

/// The encoding of exported certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CertFormat {
    /// PEM text (`*.pem`).
    Pem,
    /// DER (`*.der`).
    Der,
}

impl CertFormat {
    fn extension(self) -> &'static str {
        match self {
            CertFormat::Pem => "pem",
            CertFormat::Der => "der",
        }
    }
}

/// What [`export_certs`] wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The files, ARK, ASK, VCEK.
    pub written: Vec<PathBuf>,
    /// The platform's product.
    pub product: Product,
    /// The VCEK's TCB.
    pub tcb: TcbVersion,
    /// SHA-256 of the (emulated) ARK's DER, hex.
    pub ark_sha256: String,
}

fn pem(der: &[u8]) -> Vec<u8> {
    let b64 = crate::io::b64_encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out.into_bytes()
}

/// The TCB `choice` names on platform `p`.
pub fn resolve_tcb(p: &EmulatedPlatform, choice: TcbChoice) -> Result<TcbVersion, KdsToolError> {
    let fw = p.firmware();
    let snp = fw
        .snp_identity()
        .map_err(|e| KdsToolError::Platform(e.to_string()))?;
    match choice {
        TcbChoice::Current => Ok(snp.current_tcb),
        TcbChoice::Committed => Ok(snp.committed_tcb),
        TcbChoice::Raw(raw) => TcbVersion::decode(raw, snp.product)
            .map_err(|e| KdsToolError::Platform(format!("TCB {raw:#x}: {e}"))),
        TcbChoice::Reported => match fw.kds_vcek_request(None) {
            Ok(KdsRequest::Vcek { tcb, .. }) => Ok(tcb),
            Ok(other) => Err(KdsToolError::Platform(format!(
                "unexpected request {other}"
            ))),
            Err(e) => Err(KdsToolError::Platform(e.to_string())),
        },
    }
}

/// The emulated platform's ARK, ASK and VCEK (for `tcb`), checked to
/// verify as a chain to that ARK, in the order ARK, ASK, VCEK.
pub fn chain_of(p: &EmulatedPlatform, tcb: TcbVersion) -> Result<(Chain, Product), KdsToolError> {
    let fw = p.firmware();
    let req = fw
        .kds_vcek_request(Some(tcb))
        .map_err(|e| KdsToolError::Platform(e.to_string()))?;
    let KdsRequest::Vcek { product, .. } = req else {
        return Err(KdsToolError::Platform(format!("unexpected request {req}")));
    };
    let vcek = Certificate::from_der(&fw.kds_object(&req)?.bytes)?;
    let pems = fw
        .kds_object(&KdsRequest::CertChain {
            product,
            kind: VekKind::Vcek,
        })?
        .bytes;
    let mut certs = Certificate::from_pem_chain(&pems)?.into_iter();
    let (Some(ask), Some(ark)) = (certs.next(), certs.next()) else {
        return Err(KdsToolError::Platform(
            "the cert_chain does not hold an ASK and an ARK".into(),
        ));
    };
    let chain = Chain {
        ark,
        ask,
        vek: vcek,
    };
    chain.verify(
        Trust::Explicit(&chain.ark),
        Some(product),
        SystemTime::now(),
    )?;
    Ok((chain, product))
}

/// Writes `ark.EXT`, `ask.EXT` and `vcek.EXT` into `dir` (created 0755 if
/// missing) as `snpguest verify certs DIR` reads them. Files are created
/// exclusively (0644: certificates are public); an existing one is refused
/// before anything is written.
pub fn export_certs(
    p: &EmulatedPlatform,
    dir: &Path,
    tcb: TcbChoice,
    format: CertFormat,
) -> Result<Exported, KdsToolError> {
    let tcb = resolve_tcb(p, tcb)?;
    let (chain, product) = chain_of(p, tcb)?;
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KdsToolError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    let files: Vec<(PathBuf, Vec<u8>)> = [
        ("ark", &chain.ark),
        ("ask", &chain.ask),
        ("vcek", &chain.vek),
    ]
    .into_iter()
    .map(|(name, cert)| {
        let path = dir.join(format!("{name}.{}", format.extension()));
        let bytes = match format {
            CertFormat::Der => cert.der().to_vec(),
            CertFormat::Pem => pem(cert.der()),
        };
        (path, bytes)
    })
    .collect();
    if let Some((path, _)) = files
        .iter()
        .find(|(path, _)| path.symlink_metadata().is_ok())
    {
        return Err(KdsToolError::Exists(path.clone()));
    }
    let mut written: Vec<PathBuf> = Vec::with_capacity(files.len());
    for (path, bytes) in &files {
        let result = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
        if let Err(source) = result {
            for w in &written {
                let _ = std::fs::remove_file(w);
            }
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                return Err(KdsToolError::Exists(path.clone()));
            }
            return Err(KdsToolError::Write {
                path: path.clone(),
                source,
            });
        }
        written.push(path.clone());
    }
    Ok(Exported {
        written,
        product,
        tcb,
        ark_sha256: hex::encode(chain.ark.sha256()),
    })
}
