//! The chip's persistent SNP identity (docs/protocol/snp.md#snp-identity):
//! what an SNP chip keeps in fuses and non-volatile storage besides the
//! chip id it shares with the SEV firmware.
//!
//! Stored sealed in the platform directory's `snp-identity` file, next to
//! the SEV identity (`identity`), in the same record format.

use std::fmt;

use rand_core::CryptoRngCore;
use sev_proto::abi::ApiVersion;
use sev_proto::snp::{Product, TcbVersion};
use zeroize::Zeroizing;

use crate::store::record::{RecordReader, RecordWriter};
use crate::store::RecordError;

/// The file name in the platform directory.
pub(crate) const SNP_IDENTITY_FILE: &str = "snp-identity";

/// Length of the secret seed the chip's VCEKs are derived from.
pub const VCEK_SEED_LEN: usize = 48;

/// Most sockets an emulated platform may claim.
pub const MAX_SOCKETS: u8 = 2;

mod tag {
    pub const PRODUCT: u16 = 0x0001;
    pub const VCEK_SEED: u16 = 0x0002;
    pub const CURRENT_TCB: u16 = 0x0003;
    pub const COMMITTED_TCB: u16 = 0x0004;
    pub const COMMITTED_VERSION: u16 = 0x0005;
    pub const SMT: u16 = 0x0006;
    pub const SOCKETS: u16 = 0x0007;
}

/// How to make the SNP identity of a new platform (part of
/// [`crate::CreateOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpOptions {
    /// The EPYC generation the platform emulates: the TCB layout, and for
    /// Turin a chip id with 8 significant bytes.
    pub product: Product,
    /// The installed firmware's TCB; `None`: the product's default
    /// ([`default_tcb`]).
    pub tcb: Option<TcbVersion>,
    /// Whether SMT is enabled on the emulated host (policy bit SMT is
    /// checked against it; PLATFORM_INFO bit 0).
    pub smt: bool,
    /// Number of sockets (policy bit SINGLE_SOCKET is checked against it).
    pub sockets: u8,
}

impl Default for SnpOptions {
    /// Genoa, its default TCB, SMT on, one socket.
    fn default() -> Self {
        SnpOptions {
            product: Product::Genoa,
            tcb: None,
            smt: true,
            sockets: 1,
        }
    }
}

/// The TCB an emulated platform of `product` runs unless told otherwise.
/// Plausible SVNs of a current firmware of that generation, chosen by the
/// emulator (docs/protocol/choices.md#u27), not read from a real part.
pub const fn default_tcb(product: Product) -> TcbVersion {
    match product {
        Product::Milan => TcbVersion {
            fmc: 0,
            bootloader: 4,
            tee: 0,
            snp: 23,
            microcode: 213,
        },
        Product::Genoa => TcbVersion {
            fmc: 0,
            bootloader: 9,
            tee: 0,
            snp: 23,
            microcode: 72,
        },
        Product::Turin => TcbVersion {
            fmc: 1,
            bootloader: 1,
            tee: 1,
            snp: 3,
            microcode: 70,
        },
    }
}

/// The chip's SNP identity as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SnpIdentity {
    /// The emulated product.
    pub product: Product,
    /// The secret the VCEKs derive from; never leaves the PSP.
    pub(crate) vcek_seed: Zeroizing<[u8; VCEK_SEED_LEN]>,
    /// The installed firmware's TCB (CURRENT_TCB).
    pub current_tcb: TcbVersion,
    /// The TCB made permanent by the last SNP_COMMIT (COMMITTED_TCB).
    pub committed_tcb: TcbVersion,
    /// The firmware version of the last SNP_COMMIT (API version, build).
    pub committed_version: (ApiVersion, u8),
    /// Whether SMT is enabled on the emulated host.
    pub smt: bool,
    /// Number of sockets.
    pub sockets: u8,
}

impl fmt::Debug for SnpIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnpIdentity")
            .field("product", &self.product)
            .field("vcek_seed", &"<secret>")
            .field("current_tcb", &self.current_tcb)
            .field("committed_tcb", &self.committed_tcb)
            .field("committed_version", &self.committed_version)
            .field("smt", &self.smt)
            .field("sockets", &self.sockets)
            .finish()
    }
}

fn product_code(p: Product) -> u8 {
    match p {
        Product::Milan => 0,
        Product::Genoa => 1,
        Product::Turin => 2,
    }
}

fn product_from_code(b: u8) -> Option<Product> {
    Product::ALL.into_iter().find(|p| product_code(*p) == b)
}

impl SnpIdentity {
    /// A new identity for a platform whose firmware runs `version`: a fresh
    /// VCEK seed, the TCB of `options` committed as installed.
    pub fn generate(
        rng: &mut dyn CryptoRngCore,
        options: &SnpOptions,
        version: (ApiVersion, u8),
    ) -> Result<Self, String> {
        let tcb = options.tcb.unwrap_or(default_tcb(options.product));
        tcb.encode(options.product).map_err(|e| e.to_string())?;
        if options.sockets == 0 || options.sockets > MAX_SOCKETS {
            return Err(format!(
                "sockets must be in 1..={MAX_SOCKETS}, not {}",
                options.sockets
            ));
        }
        let mut seed = Zeroizing::new([0u8; VCEK_SEED_LEN]);
        rng.fill_bytes(&mut seed[..]);
        Ok(SnpIdentity {
            product: options.product,
            vcek_seed: seed,
            current_tcb: tcb,
            committed_tcb: tcb,
            committed_version: version,
            smt: options.smt,
            sockets: options.sockets,
        })
    }

    /// The sealed file's payload.
    pub(crate) fn encode(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        let tcb = |t: &TcbVersion| t.encode(self.product).map_err(|e| e.to_string());
        let (api, build) = self.committed_version;
        let mut w = RecordWriter::new();
        let put = |w: &mut RecordWriter, t: u16, v: &[u8]| -> Result<(), String> {
            w.put(t, v).map_err(|e: RecordError| e.to_string())
        };
        put(&mut w, tag::PRODUCT, &[product_code(self.product)])?;
        put(&mut w, tag::VCEK_SEED, &self.vcek_seed[..])?;
        put(
            &mut w,
            tag::CURRENT_TCB,
            &tcb(&self.current_tcb)?.to_le_bytes(),
        )?;
        put(
            &mut w,
            tag::COMMITTED_TCB,
            &tcb(&self.committed_tcb)?.to_le_bytes(),
        )?;
        put(
            &mut w,
            tag::COMMITTED_VERSION,
            &[api.major, api.minor, build],
        )?;
        put(&mut w, tag::SMT, &[u8::from(self.smt)])?;
        put(&mut w, tag::SOCKETS, &[self.sockets])?;
        Ok(w.finish())
    }

    /// Decodes the sealed file's payload; every record must be present
    /// exactly once and well-formed.
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, String> {
        let mut product = None;
        let mut seed: Option<Zeroizing<[u8; VCEK_SEED_LEN]>> = None;
        let (mut current, mut committed, mut version) = (None, None, None);
        let (mut smt, mut sockets) = (None, None);
        let u64_of = |v: &[u8]| -> Option<u64> { Some(u64::from_le_bytes(v.try_into().ok()?)) };
        for record in RecordReader::new(payload) {
            let (t, v) = record.map_err(|e| e.to_string())?;
            let ok = match (t, v) {
                (tag::PRODUCT, [b]) if product.is_none() => {
                    product = product_from_code(*b);
                    product.is_some()
                }
                (tag::VCEK_SEED, v) if seed.is_none() && v.len() == VCEK_SEED_LEN => {
                    let mut s = Zeroizing::new([0u8; VCEK_SEED_LEN]);
                    s.copy_from_slice(v);
                    seed = Some(s);
                    true
                }
                (tag::CURRENT_TCB, v) if current.is_none() => {
                    current = u64_of(v);
                    current.is_some()
                }
                (tag::COMMITTED_TCB, v) if committed.is_none() => {
                    committed = u64_of(v);
                    committed.is_some()
                }
                (tag::COMMITTED_VERSION, [a, b, c]) if version.is_none() => {
                    version = Some((ApiVersion::new(*a, *b), *c));
                    true
                }
                (tag::SMT, [b @ (0 | 1)]) if smt.is_none() => {
                    smt = Some(*b == 1);
                    true
                }
                (tag::SOCKETS, [b @ 1..=MAX_SOCKETS]) if sockets.is_none() => {
                    sockets = Some(*b);
                    true
                }
                _ => false,
            };
            if !ok {
                return Err(format!("unexpected or malformed record {t:#06x}"));
            }
        }
        let (
            Some(product),
            Some(vcek_seed),
            Some(current),
            Some(committed),
            Some(version),
            Some(smt),
            Some(sockets),
        ) = (product, seed, current, committed, version, smt, sockets)
        else {
            return Err("missing record".into());
        };
        let tcb = |raw| TcbVersion::decode(raw, product).map_err(|e| e.to_string());
        Ok(SnpIdentity {
            product,
            vcek_seed,
            current_tcb: tcb(current)?,
            committed_tcb: tcb(committed)?,
            committed_version: version,
            smt,
            sockets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::seeded_rng;

    #[test]
    fn identity_round_trips_for_every_product() {
        for product in Product::ALL {
            let options = SnpOptions {
                product,
                ..SnpOptions::default()
            };
            let id =
                SnpIdentity::generate(&mut seeded_rng(1), &options, (ApiVersion::new(1, 55), 21))
                    .unwrap();
            assert_eq!(id.current_tcb, default_tcb(product));
            assert_eq!(id.committed_tcb, id.current_tcb);
            let back = SnpIdentity::decode(&id.encode().unwrap()).unwrap();
            assert_eq!(back, id);
            assert_ne!(*back.vcek_seed, [0u8; VCEK_SEED_LEN]);
        }
    }

    #[test]
    fn debug_hides_the_seed() {
        let id = SnpIdentity::generate(
            &mut seeded_rng(2),
            &SnpOptions::default(),
            (ApiVersion::new(1, 55), 21),
        )
        .unwrap();
        let text = format!("{id:?}");
        assert!(
            text.contains("<secret>") && text.contains("Genoa"),
            "{text}"
        );
        assert!(
            !text.contains(&format!("{:?}", &id.vcek_seed[..4])),
            "{text}"
        );
    }

    #[test]
    fn bad_options_and_damaged_payloads_are_refused() {
        let version = (ApiVersion::new(1, 55), 21);
        let fmc_on_milan = SnpOptions {
            product: Product::Milan,
            tcb: Some(TcbVersion {
                fmc: 1,
                ..TcbVersion::default()
            }),
            ..SnpOptions::default()
        };
        assert!(SnpIdentity::generate(&mut seeded_rng(3), &fmc_on_milan, version).is_err());
        let three_sockets = SnpOptions {
            sockets: 3,
            ..SnpOptions::default()
        };
        assert!(SnpIdentity::generate(&mut seeded_rng(3), &three_sockets, version).is_err());
        let id =
            SnpIdentity::generate(&mut seeded_rng(3), &SnpOptions::default(), version).unwrap();
        let payload = id.encode().unwrap();
        assert!(SnpIdentity::decode(&payload[..payload.len() - 1]).is_err());
        assert_eq!(
            SnpIdentity::decode(&[]).unwrap_err(),
            "missing record".to_string()
        );
    }
}
