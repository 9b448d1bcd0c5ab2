//! SNP_GUEST_REQUEST (docs/protocol/snp.md#guest-messages) on [`Platform`]:
//! a guest's message, sealed under one of its VMPCKs, is checked in the
//! firmware's order (docs/protocol/snp.md#request-processing), answered
//! (an attestation report, docs/protocol/snp.md#attestation-report-generation,
//! or a derived key, docs/protocol/snp.md#derived-keys) and the answer
//! sealed under the same VMPCK with the next sequence number.

use p384::ecdsa::SigningKey;
use sev_proto::abi::{ApiVersion, Status};
use sev_proto::hash::SHA384_LEN;
use sev_proto::kdf::kdf;
use sev_proto::snp::guest_msg::{
    self, field_select, GuestMsgError, KeyRequest, KeyResponse, KeySelect, MessageHeader,
    MessageType, ReportRequest, ReportResponse, RootKey, DERIVED_KEY_LEN, MAX_REQUEST_SEQNO,
    PAGE_LEN,
};
use sev_proto::snp::report::{AttestationReport, Cpuid, FirmwareVersion, MitigationVectors};
use sev_proto::snp::report::{ReportSigner, REPORT_LEN, SIG_ALGO_ECDSA_P384_SHA384};
use sev_proto::snp::{Product, TcbVersion};
use zeroize::Zeroizing;

use super::snp::reported_tcb;
use super::snp_guest::{GuestCtx, SnpGuest};
use super::{FwError, Inner, Op, Platform};
use crate::snp::buffers::init_flags;
use crate::snp::guest::fms;
use crate::snp::identity::VCEK_SEED_LEN;
use crate::snp::vcek;
use crate::snp::{SnpCommand, SnpGuestState, SnpIdentity};

const OP: Op = Op::Snp(SnpCommand::GuestRequest);

/// The highest MSG_VERSION of each request type this firmware answers.
const REPORT_REQ_VERSION: u8 = 1;
const KEY_REQ_VERSION: u8 = 1;

/// The lowest API version whose reports are version 5 on every product
/// (docs/protocol/choices.md#u61).
const REPORT_V5_API: ApiVersion = ApiVersion::new(1, 58);

/// The KDF label of a derived key (docs/protocol/snp.md#derived-keys).
const DERIVED_KEY_LABEL: &str = "gmsg-keyreq";
/// Length of the derived key's context (MIX_DATA).
const MIX_DATA_LEN: usize = 0xA8;

/// The last VCEK derived, kept so that a report costs one signature rather
/// than a key derivation (thousands of hashes) and a signature.
pub(super) struct VcekCache {
    seed: Zeroizing<[u8; VCEK_SEED_LEN]>,
    product: Product,
    tcb: TcbVersion,
    key: SigningKey,
}

impl std::fmt::Debug for VcekCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VcekCache")
            .field("product", &self.product)
            .field("tcb", &self.tcb)
            .finish_non_exhaustive()
    }
}

fn fail(status: Status, detail: impl Into<String>) -> FwError {
    FwError::new(OP, status, detail)
}

/// The report version the platform produces: 5 on Turin and from API 1.58
/// on, 3 before (docs/protocol/choices.md#u61).
pub(crate) fn report_version(product: Product, api: ApiVersion) -> u32 {
    if product == Product::Turin || api >= REPORT_V5_API {
        5
    } else {
        3
    }
}

/// A payload-level refusal: the status in the encrypted response.
struct Refusal(Status, String);

fn encode_tcb(tcb: &TcbVersion, product: Product) -> Result<u64, FwError> {
    tcb.encode(product)
        .map_err(|e| fail(Status::SecureDataInvalid, e.to_string()))
}

impl Platform {
    /// SNP_GUEST_REQUEST for guest `handle` (RUNNING): the guest's message
    /// page `request`; returns the response page (header and sealed payload,
    /// the rest zero).
    ///
    /// Mailbox errors, in the firmware's order (no response, counters
    /// unchanged): SNP not INIT → INVALID_PLATFORM_STATE; no such guest →
    /// INVALID_GUEST; not RUNNING → INVALID_GUEST_STATE; a malformed header
    /// or MSG_VMPCK > 3 → INVALID_PARAM; the payload does not authenticate
    /// under the VMPCK → BAD_MEASUREMENT; MSG_SEQNO not the one after the
    /// VMPCK's counter, or the counter exhausted → AEAD_OFLOW; an unknown
    /// MSG_TYPE or MSG_VERSION → INVALID_PARAM. A request the payload checks
    /// refuse gets a sealed response with a non-zero STATUS.
    pub fn snp_guest_request(
        &self,
        handle: u32,
        request: &[u8; PAGE_LEN],
    ) -> Result<Box<[u8; PAGE_LEN]>, FwError> {
        let mut inner = self.lock();
        let ctx = self.snp_guest_ctx(&mut inner, OP)?;
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, OP, handle)?;
        guest.require_state(OP, &[SnpGuestState::Running])?;
        let header = MessageHeader::decode(request)
            .map_err(|e| fail(Status::InvalidParam, e.to_string()))?;
        let vmpck = usize::from(header.vmpck);
        let key = Zeroizing::new(guest.vmpcks[vmpck]);
        let payload = guest_msg::open(&key, &header, request).map_err(|e| match e {
            GuestMsgError::Authentication => fail(
                Status::BadMeasurement,
                format!("the message does not authenticate under VMPCK{vmpck}"),
            ),
            other => fail(Status::InvalidParam, other.to_string()),
        })?;
        let counter = guest.seqnos[vmpck];
        let expected = counter.checked_add(1).filter(|s| *s <= MAX_REQUEST_SEQNO);
        match expected {
            None => {
                return Err(fail(
                    Status::AeadOflow,
                    format!("the sequence counter of VMPCK{vmpck} is exhausted"),
                ))
            }
            Some(s) if s != header.seqno => {
                return Err(fail(
                    Status::AeadOflow,
                    format!(
                        "MSG_SEQNO {} is not the next of VMPCK{vmpck} ({s})",
                        header.seqno
                    ),
                ))
            }
            Some(_) => {}
        }
        let max_version = match header.msg_type {
            MessageType::REPORT_REQ => REPORT_REQ_VERSION,
            MessageType::KEY_REQ => KEY_REQ_VERSION,
            other => {
                return Err(fail(
                    Status::InvalidParam,
                    format!("message type {other} is not supported"),
                ))
            }
        };
        if header.msg_version == 0 || header.msg_version > max_version {
            return Err(fail(
                Status::InvalidParam,
                format!(
                    "{} version {} (this firmware answers version 1)",
                    header.msg_type.name(),
                    header.msg_version
                ),
            ));
        }
        let plaintext: Zeroizing<Vec<u8>> = match header.msg_type {
            MessageType::REPORT_REQ => {
                let response =
                    match self.report_response(&mut inner, &ctx, handle, &header, &payload)? {
                        Ok(report) => ReportResponse { status: 0, report },
                        Err(Refusal(status, why)) => {
                            log::debug!("SNP_GUEST_REQUEST: report refused: {why}");
                            ReportResponse {
                                status: status.code(),
                                report: Box::new([0; REPORT_LEN]),
                            }
                        }
                    };
                Zeroizing::new(response.encode().to_vec())
            }
            _ => {
                let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, OP, handle)?;
                let response =
                    match derive_key(guest, &ctx, &header, &payload, ctx.snp.snp.mask_chip_key) {
                        Ok(derived_key) => KeyResponse {
                            status: 0,
                            derived_key,
                        },
                        Err(Refusal(status, why)) => {
                            log::debug!("SNP_GUEST_REQUEST: key refused: {why}");
                            KeyResponse {
                                status: status.code(),
                                derived_key: Zeroizing::new([0; DERIVED_KEY_LEN]),
                            }
                        }
                    };
                Zeroizing::new(response.encode().to_vec())
            }
        };
        let response_seqno = header.seqno + 1;
        let response_header = MessageHeader::new(
            header.msg_type.response(),
            1,
            // Both response payloads are shorter than a page.
            u16::try_from(plaintext.len()).unwrap_or(u16::MAX),
            header.vmpck,
            response_seqno,
        );
        let sealed = guest_msg::seal(&key, &response_header, &plaintext)
            .map_err(|e| fail(Status::HwErrorPlatform, e.to_string()))?;
        let mut page = Box::new([0u8; PAGE_LEN]);
        page[..sealed.len()].copy_from_slice(&sealed);
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, OP, handle)?;
        guest.seqnos[vmpck] = response_seqno;
        Ok(page)
    }

    /// MSG_REPORT_REQ: the signed report, or the payload-level refusal.
    fn report_response(
        &self,
        inner: &mut Inner,
        ctx: &GuestCtx,
        handle: u32,
        header: &MessageHeader,
        payload: &[u8],
    ) -> Result<Result<Box<[u8; REPORT_LEN]>, Refusal>, FwError> {
        let request = match ReportRequest::decode(payload) {
            Ok(r) => r,
            Err(e) => return Ok(Err(Refusal(Status::InvalidParam, e.to_string()))),
        };
        let snp = &ctx.snp.snp;
        let api = inner.identity.api;
        let build = inner.identity.build;
        let chip_id = inner.identity.chip_id;
        let guest = Self::snp_guest(inner, snp, OP, handle)?;
        let signer = match select_key(request.key_sel, guest.vcek_disabled) {
            Ok(()) if snp.mask_chip_key => ReportSigner::None,
            Ok(()) => ReportSigner::Vcek,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if request.vmpl < u32::from(header.vmpck) || request.vmpl > 3 {
            return Ok(Err(Refusal(
                Status::InvalidParam,
                format!(
                    "VMPL {} with VMPCK{} (the VMPL must be {}..=3)",
                    request.vmpl, header.vmpck, header.vmpck
                ),
            )));
        }
        let id = &ctx.id;
        let product = id.product;
        let reported = reported_tcb(id, snp, OP)?;
        let version = report_version(product, api);
        let fms = fms(product);
        let identity = guest.identity;
        let mut platform_info = u64::from(id.smt);
        if snp.init_flags & init_flags::RAPL_DIS != 0 {
            platform_info |= 1 << 3;
        }
        let mut report = AttestationReport {
            version,
            guest_svn: identity.map_or(0, |i| i.guest_svn),
            policy: guest
                .policy
                .ok_or_else(|| fail(Status::InvalidGuestState, "the guest has no policy"))?,
            family_id: identity.map_or([0; 16], |i| i.family_id),
            image_id: identity.map_or([0; 16], |i| i.image_id),
            vmpl: request.vmpl,
            signature_algo: SIG_ALGO_ECDSA_P384_SHA384,
            current_tcb: encode_tcb(&id.current_tcb, product)?,
            platform_info,
            author_key_en: guest.auth_key_en,
            mask_chip_key: snp.mask_chip_key,
            signing_key: signer,
            report_data: request.report_data,
            measurement: *guest.digest.bytes(),
            host_data: guest.host_data,
            id_key_digest: identity.map_or([0; SHA384_LEN], |i| i.id_key_digest),
            author_key_digest: identity
                .and_then(|i| i.author_key_digest)
                .unwrap_or([0; SHA384_LEN]),
            report_id: guest.report_id,
            report_id_ma: [0xFF; 32],
            reported_tcb: encode_tcb(&reported, product)?,
            cpuid: Some(Cpuid {
                family: (((fms >> 20) & 0xFF) + ((fms >> 8) & 0xF)) as u8,
                model: ((((fms >> 16) & 0xF) << 4) | ((fms >> 4) & 0xF)) as u8,
                stepping: (fms & 0xF) as u8,
            }),
            chip_id: if snp.mask_chip_id { [0; 64] } else { chip_id },
            committed_tcb: encode_tcb(&id.committed_tcb, product)?,
            current_version: FirmwareVersion {
                major: api.major,
                minor: api.minor,
                build,
            },
            committed_version: FirmwareVersion {
                major: id.committed_version.0.major,
                minor: id.committed_version.0.minor,
                build: id.committed_version.1,
            },
            launch_tcb: encode_tcb(&guest.launch_tcb, product)?,
            mitigation_vectors: Some(MitigationVectors::default()),
            signature: sev_proto::snp::report::ReportSignature::ZERO,
        };
        if signer == ReportSigner::Vcek {
            let key = vcek_for(inner, id, &reported)?;
            report
                .sign(key)
                .map_err(|e| fail(Status::HwErrorPlatform, e.to_string()))?;
        }
        Ok(Ok(Box::new(report.encode())))
    }
}

/// KEY_SEL against the keys this platform has: a VCEK (unless the guest
/// was launched with VCEK_DISABLED), never a VLEK (no SNP_VLEK_LOAD).
fn select_key(key_sel: KeySelect, vcek_disabled: bool) -> Result<(), Refusal> {
    match key_sel {
        KeySelect::Reserved => Err(Refusal(Status::InvalidKey, "KEY_SEL 3 is reserved".into())),
        KeySelect::Vlek => Err(Refusal(
            Status::InvalidKey,
            "KEY_SEL asks for the VLEK, and none is loaded".into(),
        )),
        KeySelect::Auto | KeySelect::Vcek if vcek_disabled => Err(Refusal(
            Status::InvalidKey,
            "the guest was launched with VCEK_DISABLED and no VLEK is loaded".into(),
        )),
        KeySelect::Auto | KeySelect::Vcek => Ok(()),
    }
}

/// The VCEK for `tcb`, from the cache when it holds that key.
fn vcek_for<'a>(
    inner: &'a mut Inner,
    id: &SnpIdentity,
    tcb: &TcbVersion,
) -> Result<&'a SigningKey, FwError> {
    let fresh = !inner.vcek_cache.as_ref().is_some_and(|c| {
        c.product == id.product && c.tcb == *tcb && c.seed[..] == id.vcek_seed[..]
    });
    if fresh {
        let key = vcek::vcek_signing_key(&id.vcek_seed, id.product, tcb)
            .ok_or_else(|| fail(Status::HwErrorPlatform, "no VCEK scalar could be derived"))?;
        inner.vcek_cache = Some(VcekCache {
            seed: Zeroizing::new(*id.vcek_seed),
            product: id.product,
            tcb: *tcb,
            key,
        });
    }
    inner
        .vcek_cache
        .as_ref()
        .map(|c| &c.key)
        .ok_or_else(|| fail(Status::HwErrorPlatform, "VCEK cache"))
}

/// MSG_KEY_REQ: the derived key (docs/protocol/snp.md#derived-keys), or
/// the payload-level refusal.
fn derive_key(
    guest: &SnpGuest,
    ctx: &GuestCtx,
    header: &MessageHeader,
    payload: &[u8],
    mask_chip_key: bool,
) -> Result<Zeroizing<[u8; DERIVED_KEY_LEN]>, Refusal> {
    let request =
        KeyRequest::decode(payload).map_err(|e| Refusal(Status::InvalidParam, e.to_string()))?;
    let id = &ctx.id;
    if request.root == RootKey::Vcek {
        if mask_chip_key {
            return Err(Refusal(
                Status::InvalidKey,
                "the chip key is masked (SNP_CONFIG MASK_CHIP_KEY)".into(),
            ));
        }
        select_key(request.key_sel, guest.vcek_disabled)?;
    }
    if request.vmpl < u32::from(header.vmpck) || request.vmpl > 3 {
        return Err(Refusal(
            Status::InvalidParam,
            format!(
                "VMPL {} with VMPCK{} (the VMPL must be {}..=3)",
                request.vmpl, header.vmpck, header.vmpck
            ),
        ));
    }
    let select = request.guest_field_select;
    if select & !field_select::ALL_V1 != 0 {
        return Err(Refusal(
            Status::InvalidParam,
            format!("GUEST_FIELD_SELECT {select:#x} has unknown bits"),
        ));
    }
    let tcb = if select & field_select::TCB_VERSION != 0 {
        let tcb = TcbVersion::decode(request.tcb_version, id.product)
            .map_err(|e| Refusal(Status::InvalidParam, e.to_string()))?;
        if !tcb.le(&id.committed_tcb) {
            return Err(Refusal(
                Status::InvalidParam,
                format!(
                    "TCB_VERSION {tcb} is above the committed TCB {}",
                    id.committed_tcb
                ),
            ));
        }
        tcb
    } else {
        id.current_tcb
    };
    let identity = guest.identity;
    let id_svn = identity.map_or(0, |i| i.guest_svn);
    if select & field_select::GUEST_SVN != 0 && request.guest_svn > id_svn {
        return Err(Refusal(
            Status::InvalidParam,
            format!(
                "GUEST_SVN {} is above the ID block's {id_svn}",
                request.guest_svn
            ),
        ));
    }
    let root: Zeroizing<Vec<u8>> = match request.root {
        RootKey::Vcek => {
            Zeroizing::new(vcek::vcek_secret(&id.vcek_seed, id.product, &tcb).to_vec())
        }
        RootKey::Vmrk => Zeroizing::new(guest.vmrk.to_vec()),
    };
    let id_key_select: u32 = match identity {
        Some(i) if i.author_key_digest.is_some() => 2,
        Some(_) => 1,
        None => 0,
    };
    let mut mix = Zeroizing::new([0u8; MIX_DATA_LEN]);
    let mut put = |at: usize, b: &[u8]| mix[at..at + b.len()].copy_from_slice(b);
    put(
        0x00,
        &(u32::from(request.root == RootKey::Vmrk) | id_key_select << 1).to_le_bytes(),
    );
    put(0x08, &select.to_le_bytes());
    put(0x10, &request.vmpl.to_le_bytes());
    if select & field_select::GUEST_SVN != 0 {
        put(0x14, &request.guest_svn.to_le_bytes());
    }
    if select & field_select::TCB_VERSION != 0 {
        put(0x18, &request.tcb_version.to_le_bytes());
    }
    if select & field_select::POLICY != 0 {
        put(0x20, &guest.policy.map_or(0, |p| p.bits()).to_le_bytes());
    }
    if let (true, Some(i)) = (select & field_select::IMAGE_ID != 0, identity) {
        put(0x28, &i.image_id);
    }
    if let (true, Some(i)) = (select & field_select::FAMILY_ID != 0, identity) {
        put(0x38, &i.family_id);
    }
    if select & field_select::MEASUREMENT != 0 {
        put(0x48, &guest.digest.bytes()[..32]);
    }
    put(0x68, &guest.host_data);
    if let Some(i) = identity {
        let digest = i.author_key_digest.unwrap_or(i.id_key_digest);
        put(0x88, &digest[..32]);
    }
    let derived = kdf(&root, DERIVED_KEY_LEN, DERIVED_KEY_LABEL, &mix[..]);
    let mut key = Zeroizing::new([0u8; DERIVED_KEY_LEN]);
    key.copy_from_slice(&derived);
    Ok(key)
}

#[cfg(test)]
impl Platform {
    /// Test hook: sets the sequence counter of guest `handle`'s VMPCK
    /// `vmpck` (to reach exhaustion without 2^63 requests).
    pub(crate) fn snp_set_seqno_for_test(&self, handle: u32, vmpck: usize, value: u64) {
        let mut inner = self.lock();
        if let Some(g) = inner.snp_guests.get_mut(&handle) {
            g.seqnos[vmpck] = value;
        }
    }
}
