//! TCB versions and the processor generations whose layouts they follow
//! (docs/protocol/snp.md#tcb-version).

use std::fmt;
use std::str::FromStr;

/// An EPYC generation with SEV-SNP, as AMD's key distribution service names
/// it. It decides the byte layout of a [`TcbVersion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Product {
    /// 3rd generation EPYC (Zen 3).
    Milan,
    /// 4th generation EPYC (Zen 4), with Bergamo and Siena.
    Genoa,
    /// 5th generation EPYC (Zen 5).
    Turin,
}

impl Product {
    /// Every product, oldest first.
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// The name AMD's key distribution service uses (`Milan`, `Genoa`, `Turin`).
    pub const fn name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    /// Whether TCB versions of this product carry an FMC component (Turin).
    pub const fn has_fmc(self) -> bool {
        matches!(self, Product::Turin)
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A product name that is not one of [`Product::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown SNP product {0:?}: expected Milan, Genoa or Turin")]
pub struct UnknownProduct(pub String);

impl FromStr for Product {
    type Err = UnknownProduct;

    /// Case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Product::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownProduct(s.chars().take(32).collect()))
    }
}

/// Why eight bytes are not a TCB version of a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TcbError {
    /// A byte the product's layout reserves is not zero.
    #[error("TCB version 0x{raw:016x} sets byte {byte}, which {product} reserves")]
    ReservedByte {
        /// The whole value.
        raw: u64,
        /// The offending byte's index.
        byte: usize,
        /// The layout used.
        product: Product,
    },
    /// An FMC SVN was given for a product without FMC.
    #[error("{product} TCB versions have no FMC component (FMC SVN {fmc} given)")]
    NoFmc {
        /// The layout used.
        product: Product,
        /// The refused SVN.
        fmc: u8,
    },
}

/// The security version numbers of the firmware components, one byte each.
/// `fmc` exists on Turin only and is zero elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcbVersion {
    /// First mutable code (Turin).
    pub fmc: u8,
    /// The PSP boot loader.
    pub bootloader: u8,
    /// The PSP's trusted OS.
    pub tee: u8,
    /// The SNP firmware.
    pub snp: u8,
    /// The CPU microcode.
    pub microcode: u8,
}

impl TcbVersion {
    /// Byte positions of (fmc, bootloader, tee, snp, microcode) in `product`'s
    /// layout; `None` for a component the layout lacks.
    const fn positions(product: Product) -> [Option<usize>; 5] {
        match product {
            Product::Milan | Product::Genoa => [None, Some(0), Some(1), Some(6), Some(7)],
            Product::Turin => [Some(0), Some(1), Some(2), Some(3), Some(7)],
        }
    }

    fn components(&self) -> [u8; 5] {
        [
            self.fmc,
            self.bootloader,
            self.tee,
            self.snp,
            self.microcode,
        ]
    }

    /// Decodes the eight bytes (a little-endian u64) in `product`'s layout.
    pub fn decode(raw: u64, product: Product) -> Result<Self, TcbError> {
        let bytes = raw.to_le_bytes();
        let mut used = [false; 8];
        let mut c = [0u8; 5];
        for (slot, pos) in c.iter_mut().zip(Self::positions(product)) {
            if let Some(pos) = pos {
                *slot = bytes[pos];
                used[pos] = true;
            }
        }
        if let Some(byte) = (0..8).find(|&i| !used[i] && bytes[i] != 0) {
            return Err(TcbError::ReservedByte { raw, byte, product });
        }
        Ok(TcbVersion {
            fmc: c[0],
            bootloader: c[1],
            tee: c[2],
            snp: c[3],
            microcode: c[4],
        })
    }

    /// Encodes in `product`'s layout.
    pub fn encode(&self, product: Product) -> Result<u64, TcbError> {
        if !product.has_fmc() && self.fmc != 0 {
            return Err(TcbError::NoFmc {
                product,
                fmc: self.fmc,
            });
        }
        let mut bytes = [0u8; 8];
        for (value, pos) in self.components().into_iter().zip(Self::positions(product)) {
            if let Some(pos) = pos {
                bytes[pos] = value;
            }
        }
        Ok(u64::from_le_bytes(bytes))
    }

    /// Whether every component is at most `other`'s (the firmware's order).
    pub fn le(&self, other: &TcbVersion) -> bool {
        self.components()
            .iter()
            .zip(other.components())
            .all(|(a, b)| *a <= b)
    }
}

impl fmt::Display for TcbVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bootloader {}, TEE {}, SNP {}, microcode {}",
            self.bootloader, self.tee, self.snp, self.microcode
        )?;
        if self.fmc != 0 {
            write!(f, ", FMC {}", self.fmc)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milan_sample_decodes_and_round_trips() {
        // Bytes 03 00 00 00 00 00 08 73: boot loader 3, TEE 0, SNP 8, microcode 0x73.
        let raw = u64::from_le_bytes([3, 0, 0, 0, 0, 0, 8, 0x73]);
        let tcb = TcbVersion::decode(raw, Product::Milan).unwrap();
        assert_eq!(
            tcb,
            TcbVersion {
                fmc: 0,
                bootloader: 3,
                tee: 0,
                snp: 8,
                microcode: 0x73
            }
        );
        assert_eq!(tcb.encode(Product::Milan), Ok(raw));
        assert_eq!(tcb.encode(Product::Genoa), Ok(raw));
        assert_eq!(tcb.to_string(), "bootloader 3, TEE 0, SNP 8, microcode 115");
    }

    #[test]
    fn turin_has_fmc_first_and_snp_in_byte_3() {
        let tcb = TcbVersion {
            fmc: 1,
            bootloader: 2,
            tee: 3,
            snp: 4,
            microcode: 5,
        };
        let raw = tcb.encode(Product::Turin).unwrap();
        assert_eq!(raw.to_le_bytes(), [1, 2, 3, 4, 0, 0, 0, 5]);
        assert_eq!(TcbVersion::decode(raw, Product::Turin), Ok(tcb));
        assert_eq!(
            tcb.encode(Product::Genoa),
            Err(TcbError::NoFmc {
                product: Product::Genoa,
                fmc: 1
            })
        );
        // Byte 2 is reserved on Genoa, used on Turin.
        assert_eq!(
            TcbVersion::decode(raw, Product::Genoa),
            Err(TcbError::ReservedByte {
                raw,
                byte: 2,
                product: Product::Genoa
            })
        );
    }

    #[test]
    fn order_is_per_component() {
        let a = TcbVersion {
            bootloader: 3,
            snp: 8,
            microcode: 100,
            ..Default::default()
        };
        let mut b = a;
        assert!(a.le(&b) && b.le(&a));
        b.microcode = 101;
        assert!(a.le(&b) && !b.le(&a));
        b.bootloader = 2;
        assert!(!a.le(&b) && !b.le(&a));
    }

    #[test]
    fn product_names_parse() {
        assert_eq!("genoa".parse::<Product>(), Ok(Product::Genoa));
        assert_eq!("Turin".parse::<Product>(), Ok(Product::Turin));
        let err = "Naples".parse::<Product>().unwrap_err().to_string();
        assert!(err.contains("Milan, Genoa or Turin"), "{err}");
    }
}
