//! The platform's emulated key server objects ([`Platform::kds_object`]):
//! the ARK, ASK, VCEKs, CRL and CEK of this chip, made by
//! [`crate::issuer`] over the identity's keys (docs/guide/kds.md).

use std::time::SystemTime;

use sev_proto::abi::Status;
use sev_proto::snp::chain::VekKind;
use sev_proto::snp::kds::{KdsRequest, CHIP_ID_LEN, TURIN_HWID_LEN};
use sev_proto::snp::{Product, SnpCommand};
use x509_cert::der::pem::LineEnding;
use x509_cert::der::EncodePem;

use super::{read_identity, store_err, FwError, Op, Platform};
use crate::issuer::{start_of_year, ContentType, Issuer, KdsError, KdsObject};

/// The state file listing the serial numbers the emulated ARK revokes.
const REVOKED_FILE: &str = "kds-revoked";

fn failed(e: impl std::fmt::Display) -> KdsError {
    KdsError::Failed(e.to_string())
}

fn not_found(what: impl Into<String>) -> KdsError {
    KdsError::NotFound(what.into())
}

fn decode_serials(payload: &[u8]) -> Result<Vec<u32>, String> {
    if !payload.len().is_multiple_of(4) {
        return Err(format!("{} bytes is not a list of serials", payload.len()));
    }
    Ok(payload
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

impl Platform {
    /// What AMD's key distribution service would answer for `req`, for this
    /// platform's chip and product: a VCEK (DER) for any TCB valid for the
    /// product, the `cert_chain` (PEM, ASK then ARK), the CRL (DER), the
    /// legacy CEK (AMD's SEV format, signed by the ASK). Another chip's id,
    /// another product, or a VLEK path (this platform has no VLEK) →
    /// [`KdsError::NotFound`]. The same request gives the same bytes
    /// (docs/protocol/choices.md#u66) within a calendar year.
    pub fn kds_object(&self, req: &KdsRequest) -> Result<KdsObject, KdsError> {
        self.kds_object_at(req, SystemTime::now())
    }

    /// [`Platform::kds_object`] as issued at `now` (the VCEK's and CRL's
    /// issue date is the start of `now`'s year).
    pub fn kds_object_at(&self, req: &KdsRequest, now: SystemTime) -> Result<KdsObject, KdsError> {
        let (chip_id, cek) = {
            let inner = self.lock();
            (inner.identity.chip_id, inner.identity.cek_cert_bytes)
        };
        if let KdsRequest::Cek { chip_id: wanted } = req {
            if *wanted != chip_id {
                return Err(not_found("no CEK for that chip id on this platform"));
            }
            return Ok(KdsObject {
                bytes: cek.to_vec(),
                content_type: ContentType::OctetStream,
            });
        }
        let snp = self.snp_identity().map_err(failed)?;
        let product = snp.product;
        let (asked_product, kind) = match req {
            KdsRequest::Vcek { product, .. } => (*product, VekKind::Vcek),
            KdsRequest::CertChain { product, kind } | KdsRequest::Crl { product, kind } => {
                (*product, *kind)
            }
            KdsRequest::Cek { .. } => return Err(failed("unreachable: CEK handled above")),
        };
        if asked_product != product {
            return Err(not_found(format!(
                "this platform is a {product}, not a {asked_product}"
            )));
        }
        if kind == VekKind::Vlek {
            return Err(not_found("this platform has no VLEK (no ASVK either)"));
        }
        let issuer = self.issuer(product)?;
        let issued = start_of_year(now).map_err(failed)?;
        match req {
            KdsRequest::Vcek {
                chip_id: wanted,
                tcb,
                ..
            } => {
                let significant = match product {
                    Product::Turin => TURIN_HWID_LEN,
                    Product::Milan | Product::Genoa => CHIP_ID_LEN,
                };
                if wanted[..significant] != chip_id[..significant] {
                    return Err(not_found("no VCEK for that hwID on this platform"));
                }
                let key = self.snp_vcek_public(Some(*tcb)).map_err(|e| {
                    if e.status == Status::InvalidParam {
                        not_found(format!("no VCEK for that TCB: {e}"))
                    } else {
                        failed(e)
                    }
                })?;
                let cert = issuer
                    .vcek_cert(&chip_id, tcb, &key, issued)
                    .map_err(failed)?;
                log::debug!("issued an emulated VCEK for TCB {tcb}");
                Ok(KdsObject {
                    bytes: x509_cert::der::Encode::to_der(&cert).map_err(failed)?,
                    content_type: ContentType::PkixCert,
                })
            }
            KdsRequest::CertChain { .. } => {
                let mut pem = issuer
                    .ask_cert()
                    .map_err(failed)?
                    .to_pem(LineEnding::LF)
                    .map_err(failed)?;
                pem.push_str(
                    &issuer
                        .ark_cert()
                        .map_err(failed)?
                        .to_pem(LineEnding::LF)
                        .map_err(failed)?,
                );
                Ok(KdsObject {
                    bytes: pem.into_bytes(),
                    content_type: ContentType::PemFile,
                })
            }
            KdsRequest::Crl { .. } => {
                let revoked = self.kds_revoked().map_err(failed)?;
                Ok(KdsObject {
                    bytes: issuer.crl(&revoked, issued).map_err(failed)?,
                    content_type: ContentType::PkixCrl,
                })
            }
            KdsRequest::Cek { .. } => Err(failed("unreachable: CEK handled above")),
        }
    }

    /// The issuer over the identity's ARK and ASK keys (read from the state
    /// directory for this call, dropped, and zeroized, after it).
    fn issuer(&self, product: Product) -> Result<Issuer, KdsError> {
        let record = read_identity(&self.dir, Op::Issuer).map_err(failed)?;
        Issuer::new(product, &record.ark, &record.ask).map_err(failed)
    }

    /// The serial numbers the emulated ARK's CRL lists (none unless
    /// [`Platform::kds_revoke_ask`] was called).
    pub fn kds_revoked(&self) -> Result<Vec<u32>, FwError> {
        let op = Op::Issuer;
        match self.dir.read_sealed(REVOKED_FILE).map_err(store_err(op))? {
            None => Ok(Vec::new()),
            Some(payload) => {
                decode_serials(&payload).map_err(|e| FwError::new(op, Status::SecureDataInvalid, e))
            }
        }
    }

    /// Lists (`revoked`) or unlists the ASK in the emulated ARK's CRL, so
    /// that verifiers' revocation checks can be tested. Not a firmware
    /// command: AMD's decision on real parts, the administrator's here.
    pub fn kds_revoke_ask(&self, revoked: bool) -> Result<(), FwError> {
        let op = Op::Issuer;
        let product = self.snp_identity()?.product;
        let serial = self
            .issuer(product)
            .and_then(|i| i.ask_serial().map_err(failed))
            .map_err(|e| FwError::new(op, Status::HwErrorPlatform, e.to_string()))?;
        let _lock = self.dir.lock().map_err(store_err(op))?;
        let mut serials = self.kds_revoked()?;
        serials.retain(|s| *s != serial);
        if revoked {
            serials.push(serial);
        }
        let payload: Vec<u8> = serials.iter().flat_map(|s| s.to_be_bytes()).collect();
        self.dir
            .write_sealed(REVOKED_FILE, &payload)
            .map_err(store_err(op))?;
        log::info!(
            "the emulated ARK's CRL {} the ASK (serial {serial:#x})",
            if revoked { "lists" } else { "no longer lists" }
        );
        Ok(())
    }

    /// This chip's VCEK request for `tcb` (the reported TCB when `None`).
    pub fn kds_vcek_request(
        &self,
        tcb: Option<sev_proto::snp::TcbVersion>,
    ) -> Result<KdsRequest, FwError> {
        let op = Op::Snp(SnpCommand::PlatformStatus);
        let product = self.snp_identity()?.product;
        let tcb = match tcb {
            Some(tcb) => tcb,
            None => {
                let raw = self.snp_platform_status()?.reported_tcb;
                sev_proto::snp::TcbVersion::decode(raw, product)
                    .map_err(|e| FwError::new(op, Status::SecureDataInvalid, e.to_string()))?
            }
        };
        let mut chip_id = self.lock().identity.chip_id;
        if product == Product::Turin {
            chip_id[TURIN_HWID_LEN..].fill(0);
        }
        Ok(KdsRequest::Vcek {
            product,
            chip_id,
            tcb,
        })
    }
}
