//! The URL grammar of AMD's key distribution service (KDS)
//! (docs/protocol/snp.md#key-distribution-service): what a client asks for
//! and what a server answers, as one type that formats and parses the path
//! and query of a request.
//!
//! ```text
//! /vcek/v1/<Product>/<hwid>?[fmcSPL=n&]blSPL=n&teeSPL=n&snpSPL=n&ucodeSPL=n   VCEK (DER)
//! /vcek/v1/<Product>/cert_chain           ASK then ARK (PEM)
//! /vlek/v1/<Product>/cert_chain           ASVK then ARK (PEM)
//! /vcek/v1/<Product>/crl, /vlek/v1/<Product>/crl   the ARK's CRL (DER)
//! /cek/id/<chip id>                       legacy SEV: the chip's signed CEK
//! ```
//!
//! The hwID is the chip id in lowercase hexadecimal: all 64 bytes for Milan
//! and Genoa, the first 8 for Turin. SPLs are decimal; clients pad them
//! differently (`3` or `03`), so parsing accepts both and formatting writes
//! them unpadded.

use std::fmt;

use super::chain::VekKind;
use super::{Product, TcbVersion};

/// AMD's key distribution service.
pub const AMD_KDS_BASE: &str = "https://kdsintf.amd.com";

/// Length of a chip id (GET_ID, the report's CHIP_ID).
pub const CHIP_ID_LEN: usize = 64;

/// Bytes of the chip id that name a Turin chip in its VCEK URL.
pub const TURIN_HWID_LEN: usize = 8;

/// The longest path and query a request can have (a Milan VCEK URL is
/// under 250 bytes); longer input is refused before it is parsed.
pub const MAX_REQUEST_LEN: usize = 512;

/// One object a KDS client can ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KdsRequest {
    /// A chip's VCEK for a TCB. For Turin only the first
    /// [`TURIN_HWID_LEN`] bytes of `chip_id` are significant (the rest is
    /// zero after parsing).
    Vcek {
        /// The chip's product.
        product: Product,
        /// The chip id.
        chip_id: [u8; CHIP_ID_LEN],
        /// The TCB the key is versioned by.
        tcb: TcbVersion,
    },
    /// The intermediate and root certificates (PEM: ASK or ASVK, then ARK).
    CertChain {
        /// The product.
        product: Product,
        /// VCEK (ASK) or VLEK (ASVK) chain.
        kind: VekKind,
    },
    /// The ARK's certificate revocation list.
    Crl {
        /// The product.
        product: Product,
        /// VCEK or VLEK service.
        kind: VekKind,
    },
    /// Legacy SEV: the chip's CEK signed by the ASK (AMD's certificate
    /// format), by the 64-byte chip id of GET_ID.
    Cek {
        /// The chip id.
        chip_id: [u8; CHIP_ID_LEN],
    },
}

/// Why a path and query is not a KDS request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KdsUrlError {
    /// Longer than [`MAX_REQUEST_LEN`].
    #[error("the request is {0} bytes, more than {MAX_REQUEST_LEN}")]
    TooLong(usize),
    /// No known object at this path.
    #[error("unknown path {0:?}")]
    UnknownPath(String),
    /// Not one of Milan, Genoa, Turin.
    #[error("unknown product {0:?}")]
    UnknownProduct(String),
    /// The hwID is not the product's number of hexadecimal digits.
    #[error("the hwID must be {expected} hexadecimal digits, got {got:?}")]
    BadHwid {
        /// Digits expected.
        expected: usize,
        /// What came.
        got: String,
    },
    /// A query parameter is unknown, repeated, missing or not a number in 0..=255.
    #[error("bad query: {0}")]
    BadQuery(String),
    /// A query on a path that takes none.
    #[error("{0} takes no query")]
    UnexpectedQuery(&'static str),
}

fn kind_segment(kind: VekKind) -> &'static str {
    match kind {
        VekKind::Vcek => "vcek",
        VekKind::Vlek => "vlek",
    }
}

fn product_named(name: &str) -> Result<Product, KdsUrlError> {
    Product::ALL
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| KdsUrlError::UnknownProduct(name.to_string()))
}

/// The hwID digits of `chip_id` for `product`.
pub fn hwid_hex(product: Product, chip_id: &[u8; CHIP_ID_LEN]) -> String {
    match product {
        Product::Turin => hex::encode(&chip_id[..TURIN_HWID_LEN]),
        Product::Milan | Product::Genoa => hex::encode(chip_id),
    }
}

fn parse_chip_id(digits: &str, significant: usize) -> Result<[u8; CHIP_ID_LEN], KdsUrlError> {
    let bad = || KdsUrlError::BadHwid {
        expected: significant * 2,
        got: digits.chars().take(2 * CHIP_ID_LEN + 8).collect(),
    };
    if digits.len() != significant * 2 {
        return Err(bad());
    }
    let bytes = hex::decode(digits).map_err(|_| bad())?;
    let mut chip_id = [0u8; CHIP_ID_LEN];
    chip_id[..significant].copy_from_slice(&bytes);
    Ok(chip_id)
}

/// The SPL parameters of `product`, in the order AMD's tools write them,
/// with the TCB component each one sets.
fn spl_params(product: Product) -> &'static [&'static str] {
    if product.has_fmc() {
        &["fmcSPL", "blSPL", "teeSPL", "snpSPL", "ucodeSPL"]
    } else {
        &["blSPL", "teeSPL", "snpSPL", "ucodeSPL"]
    }
}

fn spl_of(tcb: &TcbVersion, param: &str) -> u8 {
    match param {
        "fmcSPL" => tcb.fmc,
        "blSPL" => tcb.bootloader,
        "teeSPL" => tcb.tee,
        "snpSPL" => tcb.snp,
        _ => tcb.microcode,
    }
}

fn parse_tcb(product: Product, query: &str) -> Result<TcbVersion, KdsUrlError> {
    let names = spl_params(product);
    let mut values: [Option<u8>; 5] = [None; 5];
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| KdsUrlError::BadQuery(format!("{pair:?} is not name=value")))?;
        let index = names
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| KdsUrlError::BadQuery(format!("unknown parameter {name:?}")))?;
        if values[index].is_some() {
            return Err(KdsUrlError::BadQuery(format!("{name} given twice")));
        }
        let ok = !value.is_empty() && value.len() <= 3 && value.bytes().all(|b| b.is_ascii_digit());
        let number =
            value.parse::<u8>().ok().filter(|_| ok).ok_or_else(|| {
                KdsUrlError::BadQuery(format!("{name}={value:?} is not in 0..=255"))
            })?;
        values[index] = Some(number);
    }
    let mut tcb = TcbVersion::default();
    for (name, value) in names.iter().zip(values) {
        let value = value.ok_or_else(|| KdsUrlError::BadQuery(format!("{name} is missing")))?;
        match *name {
            "fmcSPL" => tcb.fmc = value,
            "blSPL" => tcb.bootloader = value,
            "teeSPL" => tcb.tee = value,
            "snpSPL" => tcb.snp = value,
            _ => tcb.microcode = value,
        }
    }
    Ok(tcb)
}

impl KdsRequest {
    /// Parses the path and query of a request (`/vcek/v1/...?...`).
    pub fn parse(path_and_query: &str) -> Result<Self, KdsUrlError> {
        if path_and_query.len() > MAX_REQUEST_LEN {
            return Err(KdsUrlError::TooLong(path_and_query.len()));
        }
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let unknown = || KdsUrlError::UnknownPath(path.to_string());
        let segments: Vec<&str> = path
            .strip_prefix('/')
            .ok_or_else(unknown)?
            .split('/')
            .collect();
        let no_query = |what: &'static str| match query {
            Some(q) if !q.is_empty() => Err(KdsUrlError::UnexpectedQuery(what)),
            _ => Ok(()),
        };
        match segments.as_slice() {
            ["cek", "id", id] => {
                no_query("a CEK request")?;
                Ok(KdsRequest::Cek {
                    chip_id: parse_chip_id(id, CHIP_ID_LEN)?,
                })
            }
            [service @ ("vcek" | "vlek"), "v1", product, object] => {
                let kind = if *service == "vcek" {
                    VekKind::Vcek
                } else {
                    VekKind::Vlek
                };
                let product = product_named(product)?;
                match *object {
                    "cert_chain" => {
                        no_query("cert_chain")?;
                        Ok(KdsRequest::CertChain { product, kind })
                    }
                    "crl" => {
                        no_query("crl")?;
                        Ok(KdsRequest::Crl { product, kind })
                    }
                    hwid if kind == VekKind::Vcek => {
                        let significant = match product {
                            Product::Turin => TURIN_HWID_LEN,
                            Product::Milan | Product::Genoa => CHIP_ID_LEN,
                        };
                        let chip_id = parse_chip_id(hwid, significant)?;
                        let tcb = parse_tcb(product, query.unwrap_or(""))?;
                        Ok(KdsRequest::Vcek {
                            product,
                            chip_id,
                            tcb,
                        })
                    }
                    _ => Err(unknown()),
                }
            }
            _ => Err(unknown()),
        }
    }

    /// The request's path and query, to append to a base URL.
    pub fn path_and_query(&self) -> String {
        self.to_string()
    }

    /// The full URL of the request under `base` (e.g. [`AMD_KDS_BASE`]);
    /// a trailing `/` of `base` is dropped.
    pub fn url(&self, base: &str) -> String {
        format!("{}{self}", base.trim_end_matches('/'))
    }
}

impl fmt::Display for KdsRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KdsRequest::Vcek {
                product,
                chip_id,
                tcb,
            } => {
                write!(f, "/vcek/v1/{product}/{}", hwid_hex(*product, chip_id))?;
                for (i, name) in spl_params(*product).iter().enumerate() {
                    let sep = if i == 0 { '?' } else { '&' };
                    write!(f, "{sep}{name}={}", spl_of(tcb, name))?;
                }
                Ok(())
            }
            KdsRequest::CertChain { product, kind } => {
                write!(f, "/{}/v1/{product}/cert_chain", kind_segment(*kind))
            }
            KdsRequest::Crl { product, kind } => {
                write!(f, "/{}/v1/{product}/crl", kind_segment(*kind))
            }
            KdsRequest::Cek { chip_id } => write!(f, "/cek/id/{}", hex::encode(chip_id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn milan_tcb() -> TcbVersion {
        TcbVersion {
            fmc: 0,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        }
    }

    #[test]
    fn vcek_urls_round_trip_per_product() {
        let mut chip_id = [0u8; CHIP_ID_LEN];
        for (i, b) in chip_id.iter_mut().enumerate() {
            *b = i as u8 + 0xA0;
        }
        let milan = KdsRequest::Vcek {
            product: Product::Milan,
            chip_id,
            tcb: milan_tcb(),
        };
        let url = milan.url("https://kdsintf.amd.com/");
        assert_eq!(
            url,
            format!(
                "https://kdsintf.amd.com/vcek/v1/Milan/{}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115",
                hex::encode(chip_id)
            )
        );
        assert_eq!(KdsRequest::parse(&milan.path_and_query()), Ok(milan));

        let mut turin_id = [0u8; CHIP_ID_LEN];
        turin_id[..8].copy_from_slice(&chip_id[..8]);
        let turin = KdsRequest::Vcek {
            product: Product::Turin,
            chip_id: turin_id,
            tcb: TcbVersion {
                fmc: 1,
                ..milan_tcb()
            },
        };
        let path = turin.path_and_query();
        assert_eq!(
            path,
            "/vcek/v1/Turin/a0a1a2a3a4a5a6a7?fmcSPL=1&blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"
        );
        assert_eq!(KdsRequest::parse(&path), Ok(turin));
    }

    #[test]
    fn padded_reordered_spls_and_uppercase_hwid_parse() {
        // snpguest pads SPLs to two digits; order does not matter.
        let id = "AB".repeat(64);
        let req = KdsRequest::parse(&format!(
            "/vcek/v1/Genoa/{id}?ucodeSPL=072&snpSPL=03&teeSPL=00&blSPL=09"
        ))
        .unwrap();
        let KdsRequest::Vcek { chip_id, tcb, .. } = req else {
            panic!("not a VCEK request: {req:?}");
        };
        assert_eq!(chip_id, [0xAB; 64]);
        assert_eq!((tcb.bootloader, tcb.snp, tcb.microcode), (9, 3, 72));
    }

    #[test]
    fn other_objects_round_trip() {
        for product in Product::ALL {
            for kind in [VekKind::Vcek, VekKind::Vlek] {
                for req in [
                    KdsRequest::CertChain { product, kind },
                    KdsRequest::Crl { product, kind },
                ] {
                    assert_eq!(KdsRequest::parse(&req.to_string()), Ok(req));
                }
            }
        }
        let cek = KdsRequest::Cek {
            chip_id: [0x5A; 64],
        };
        assert_eq!(cek.to_string(), format!("/cek/id/{}", "5a".repeat(64)));
        assert_eq!(KdsRequest::parse(&cek.to_string()), Ok(cek));
    }

    #[test]
    fn bad_requests_are_refused_naming_the_part() {
        let id = "00".repeat(64);
        let cases: Vec<(String, &str)> = vec![
            ("/vcek/v1/Rome/cert_chain".into(), "unknown product"),
            ("/vcek/v2/Milan/cert_chain".into(), "unknown path"),
            ("vcek/v1/Milan/cert_chain".into(), "unknown path"),
            ("/vcek/v1/Milan/cert_chain?x=1".into(), "takes no query"),
            ("/vlek/v1/Milan/00".into(), "unknown path"),
            (format!("/vcek/v1/Milan/{}", "0".repeat(127)), "hwID"),
            (format!("/vcek/v1/Milan/{}", "zz".repeat(64)), "hwID"),
            (format!("/vcek/v1/Turin/{id}"), "hwID"),
            (
                format!("/vcek/v1/Milan/{id}?blSPL=1&teeSPL=0&snpSPL=1"),
                "ucodeSPL is missing",
            ),
            (
                format!("/vcek/v1/Milan/{id}?blSPL=1&blSPL=1&teeSPL=0&snpSPL=1&ucodeSPL=1"),
                "given twice",
            ),
            (
                format!("/vcek/v1/Milan/{id}?blSPL=256&teeSPL=0&snpSPL=1&ucodeSPL=1"),
                "not in 0..=255",
            ),
            (
                format!("/vcek/v1/Milan/{id}?blSPL=-1&teeSPL=0&snpSPL=1&ucodeSPL=1"),
                "not in 0..=255",
            ),
            (
                format!("/vcek/v1/Milan/{id}?fmcSPL=1&blSPL=1&teeSPL=0&snpSPL=1&ucodeSPL=1"),
                "unknown parameter",
            ),
            (format!("/vcek/v1/Milan/{id}?blSPL"), "not name=value"),
            (format!("/cek/id/{id}?a=b"), "takes no query"),
            (format!("/x{}", "a".repeat(MAX_REQUEST_LEN)), "more than"),
        ];
        for (path, want) in cases {
            let err = KdsRequest::parse(&path).expect_err(&path).to_string();
            assert!(err.contains(want), "{path}: {err} (wanted {want:?})");
        }
    }
}
