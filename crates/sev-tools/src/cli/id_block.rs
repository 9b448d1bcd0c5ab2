//! `sev-owner id-block`: create an SNP ID block and ID authentication
//! structure for a launch digest, or check given ones
//! (docs/protocol/snp.md#id-block-and-id-authentication).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use sev_proto::hash::SHA384_LEN;
use sev_proto::snp::id_block::{key_digest, IdBlock, Identity};
use sev_proto::snp::GuestPolicy;

use crate::id_block::{self, CreateInputs};
use crate::io;

/// Options of `sev-owner id-block`.
#[derive(Debug, Args)]
pub struct IdBlockArgs {
    /// The SNP launch digest the guest must have (48 bytes: 96 hex digits, or base64 as
    /// snp-create-id-block takes it).
    #[arg(long, value_name = "DIGEST")]
    measurement: String,
    /// The SNP guest policy the guest is launched with (decimal or 0x hex).
    #[arg(long, value_parser = parse_snp_policy, default_value = "0x30000")]
    policy: GuestPolicy,
    /// The ID key: a P-384 private key in PEM (SEC1 or PKCS#8). With --verify: check that the
    /// ID authentication structure holds this key.
    #[arg(long, value_name = "FILE", required_unless_present = "verify")]
    id_key: Option<PathBuf>,
    /// The author key, which signs the ID key (QEMU then needs author-key-enabled=on). With
    /// --verify: check that the structure holds this author key.
    #[arg(long, value_name = "FILE")]
    author_key: Option<PathBuf>,
    /// FAMILY_ID (32 hex digits; default zero). With --verify: the expected one.
    #[arg(long, value_name = "HEX", value_parser = parse_id)]
    family_id: Option<[u8; 16]>,
    /// IMAGE_ID (32 hex digits; default zero). With --verify: the expected one.
    #[arg(long, value_name = "HEX", value_parser = parse_id)]
    image_id: Option<[u8; 16]>,
    /// GUEST_SVN (decimal or 0x hex; default 0). With --verify: the expected one.
    #[arg(long, value_name = "N", value_parser = parse_u32)]
    svn: Option<u32>,
    /// The ID block file (base64, what QEMU's id-block= takes): written, or read with --verify.
    #[arg(long, value_name = "FILE", requires = "id_auth")]
    id_block: Option<PathBuf>,
    /// The ID authentication file (base64, what QEMU's id-auth= takes): written, or read with
    /// --verify.
    #[arg(long, value_name = "FILE", requires = "id_block")]
    id_auth: Option<PathBuf>,
    /// Check --id-block and --id-auth as SNP_LAUNCH_FINISH does, against --measurement and
    /// --policy, instead of creating them.
    #[arg(long, requires = "id_block")]
    verify: bool,
    /// With --verify: the launch sets AUTH_KEY_EN (QEMU's author-key-enabled=on), so the author
    /// key and its signature of the ID key are checked too.
    #[arg(long, requires = "verify")]
    author_key_enabled: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Parses an SNP guest policy (decimal or `0x` hex; bit 17 set, reserved
/// bits clear).
fn parse_snp_policy(text: &str) -> Result<GuestPolicy, String> {
    let value = parse_number(text, u64::from_str_radix, str::parse::<u64>)?;
    GuestPolicy::new(value).map_err(|e| e.to_string())
}

fn parse_u32(text: &str) -> Result<u32, String> {
    parse_number(text, u32::from_str_radix, str::parse::<u32>)
}

fn parse_number<T>(
    text: &str,
    radix: fn(&str, u32) -> Result<T, std::num::ParseIntError>,
    decimal: fn(&str) -> Result<T, std::num::ParseIntError>,
) -> Result<T, String> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => radix(h, 16),
        None => decimal(t),
    }
    .map_err(|e| format!("{text:?} is not a number (decimal or 0x hex): {e}"))
}

/// 16 bytes as 32 hex digits.
fn parse_id(text: &str) -> Result<[u8; 16], String> {
    let bytes = hex::decode(text.trim()).map_err(|_| format!("{text:?} is not 32 hex digits"))?;
    <[u8; 16]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "{text:?} is {} bytes, expected 16 (32 hex digits)",
            bytes.len()
        )
    })
}

/// A 48-byte launch digest as hex or base64.
fn parse_measurement(text: &str) -> Result<[u8; SHA384_LEN]> {
    let t = text.trim();
    let bytes = if t.len() == 2 * SHA384_LEN && t.chars().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(t).context("--measurement hex")?
    } else {
        io::b64_decode("--measurement", t)
            .context("--measurement is neither 96 hex digits nor base64")?
    };
    <[u8; SHA384_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        anyhow::anyhow!(
            "--measurement is {} bytes, expected {SHA384_LEN}",
            bytes.len()
        )
    })
}

/// Runs `sev-owner id-block`.
pub fn run(a: IdBlockArgs) -> Result<()> {
    let launch_digest = parse_measurement(&a.measurement)?;
    if a.verify {
        verify(&a, launch_digest)
    } else {
        create(&a, launch_digest)
    }
}

fn create(a: &IdBlockArgs, launch_digest: [u8; SHA384_LEN]) -> Result<()> {
    let Some(id_key) = a.id_key.clone() else {
        bail!("--id-key is needed to sign the ID block");
    };
    let mut block = IdBlock::new(launch_digest, a.policy);
    block.family_id = a.family_id.unwrap_or_default();
    block.image_id = a.image_id.unwrap_or_default();
    block.guest_svn = a.svn.unwrap_or_default();
    let created = id_block::create(&CreateInputs {
        block,
        id_key,
        author_key: a.author_key.clone(),
    })?;
    let files = match (&a.id_block, &a.id_auth) {
        (Some(b), Some(auth)) => {
            id_block::write(&created, b, auth)?;
            Some((b, auth))
        }
        _ => None,
    };
    let id_block_b64 = io::b64_encode(&created.id_block);
    let id_auth_b64 = io::b64_encode(&created.id_auth);
    if a.json {
        let mut report = json!({
            "launch_digest": hex::encode(launch_digest),
            "policy": a.policy.bits(),
            "family_id": hex::encode(block.family_id),
            "image_id": hex::encode(block.image_id),
            "guest_svn": block.guest_svn,
            "id_block": id_block_b64,
            "id_auth": id_auth_b64,
            "author_key_enabled": created.author_key_digest.is_some(),
            "id_key_digest": hex::encode(created.id_key_digest),
            "author_key_digest": created.author_key_digest.map(hex::encode),
        });
        if let Some((b, auth)) = files {
            report["id_block_file"] = json!(b.display().to_string());
            report["id_auth_file"] = json!(auth.display().to_string());
        }
        println!("{report:#}");
        return Ok(());
    }
    println!(
        "ID block for launch digest {}, policy {}, guest SVN {}",
        hex::encode(launch_digest),
        a.policy,
        block.guest_svn
    );
    println!("QEMU sev-snp-guest properties:");
    println!("{}", created.qemu_properties());
    println!(
        "id_key_digest:     {} (base64 {})",
        hex::encode(created.id_key_digest),
        io::b64_encode(&created.id_key_digest)
    );
    match created.author_key_digest {
        Some(d) => println!(
            "author_key_digest: {} (base64 {})",
            hex::encode(d),
            io::b64_encode(&d)
        ),
        None => println!("author_key_digest: none (no --author-key: author-key-enabled=off)"),
    }
    if let Some((b, auth)) = files {
        println!("wrote {}", b.display());
        println!("wrote {}", auth.display());
    }
    Ok(())
}

fn verify(a: &IdBlockArgs, launch_digest: [u8; SHA384_LEN]) -> Result<()> {
    let (Some(block_file), Some(auth_file)) = (&a.id_block, &a.id_auth) else {
        bail!("--verify needs --id-block and --id-auth");
    };
    if a.author_key.is_some() && !a.author_key_enabled {
        bail!("--author-key with --verify needs --author-key-enabled (without it the firmware does not look at the author key)");
    }
    let identity = id_block::verify_files(
        block_file,
        auth_file,
        a.author_key_enabled,
        launch_digest,
        a.policy,
    )
    .map_err(|e| {
        let status = match &e {
            id_block::IdBlockToolError::IdBlock(inner) => {
                format!(" (SNP_LAUNCH_FINISH would fail with {})", inner.status())
            }
            _ => String::new(),
        };
        anyhow::Error::new(e).context(format!("the ID block does not verify{status}"))
    })?;
    check_expectations(a, &identity)?;
    if a.json {
        let report = json!({
            "verified": true,
            "launch_digest": hex::encode(launch_digest),
            "policy": a.policy.bits(),
            "family_id": hex::encode(identity.family_id),
            "image_id": hex::encode(identity.image_id),
            "guest_svn": identity.guest_svn,
            "author_key_enabled": a.author_key_enabled,
            "id_key_digest": hex::encode(identity.id_key_digest),
            "author_key_digest": identity.author_key_digest.map(hex::encode),
        });
        println!("{report:#}");
        return Ok(());
    }
    println!("ID block verified as SNP_LAUNCH_FINISH checks it:");
    println!(
        "  launch digest {} (as expected)",
        hex::encode(launch_digest)
    );
    println!("  policy {} (as expected)", a.policy);
    println!(
        "  the ID key signs the ID block{}",
        if a.author_key_enabled {
            "; the author key signs the ID key"
        } else {
            " (author key not checked: no --author-key-enabled)"
        }
    );
    println!("the guest's reports will hold:");
    println!("  family_id:         {}", hex::encode(identity.family_id));
    println!("  image_id:          {}", hex::encode(identity.image_id));
    println!("  guest_svn:         {}", identity.guest_svn);
    println!(
        "  id_key_digest:     {}",
        hex::encode(identity.id_key_digest)
    );
    println!(
        "  author_key_digest: {}",
        identity
            .author_key_digest
            .map(hex::encode)
            .unwrap_or_else(|| "zero (author-key-enabled=off)".to_string())
    );
    Ok(())
}

/// The keys and fields given with --verify must be the ones in the files.
fn check_expectations(a: &IdBlockArgs, identity: &Identity) -> Result<()> {
    if let Some(path) = &a.id_key {
        let key = id_block::load_signing_key(path)?;
        if key_digest(&p384::PublicKey::from(key.verifying_key())) != identity.id_key_digest {
            bail!(
                "the ID authentication structure holds another ID key than {}",
                path.display()
            );
        }
    }
    if let Some(path) = &a.author_key {
        let key = id_block::load_signing_key(path)?;
        let digest = key_digest(&p384::PublicKey::from(key.verifying_key()));
        if identity.author_key_digest != Some(digest) {
            bail!(
                "the ID authentication structure holds another author key than {}",
                path.display()
            );
        }
    }
    let fields = [
        (
            "FAMILY_ID",
            a.family_id.map(hex::encode),
            hex::encode(identity.family_id),
        ),
        (
            "IMAGE_ID",
            a.image_id.map(hex::encode),
            hex::encode(identity.image_id),
        ),
        (
            "GUEST_SVN",
            a.svn.map(|s| s.to_string()),
            identity.guest_svn.to_string(),
        ),
    ];
    for (name, want, got) in fields {
        if let Some(want) = want {
            if want != got {
                bail!("the ID block's {name} is {got}, expected {want}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_are_parsed_strictly() {
        assert_eq!(
            parse_snp_policy("0x30000").unwrap(),
            GuestPolicy::QEMU_DEFAULT
        );
        assert_eq!(
            parse_snp_policy("196608").unwrap(),
            GuestPolicy::QEMU_DEFAULT
        );
        assert!(parse_snp_policy("0x10000").unwrap_err().contains("bit 17"));
        assert!(parse_snp_policy("x").is_err());
        assert_eq!(parse_u32("0x10").unwrap(), 16);
        assert!(parse_u32("4294967296").is_err());
        assert_eq!(parse_id(&"ab".repeat(16)).unwrap(), [0xab; 16]);
        assert!(parse_id("abcd").unwrap_err().contains("is 2 bytes"));
        assert!(parse_id("zz").is_err());
        let hex_ld = "11".repeat(48);
        assert_eq!(parse_measurement(&hex_ld).unwrap(), [0x11; 48]);
        assert_eq!(
            parse_measurement(&io::b64_encode(&[0x22; 48])).unwrap(),
            [0x22; 48]
        );
        let e = parse_measurement(&io::b64_encode(&[0; 32])).unwrap_err();
        assert!(e.to_string().contains("32 bytes, expected 48"), "{e}");
    }
}
