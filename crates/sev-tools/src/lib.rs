//! The guest owner's tool `sev-owner` and the platform owner's tool
//! `sev-platform`, as a library with thin binaries on top.
//!
//! * [`chain`], [`roots`]: certificate chains and the roots they are verified to;
//! * [`cek`]: a real host's signed CEK (file, cache, key distribution server);
//! * [`session`]: the launch session files (`sevctl session` format);
//! * [`measure`]: expected launch digest and measurement, and their check;
//! * [`id_block`]: SNP ID blocks and ID authentication structures from PEM keys;
//! * [`secret`]: the secret table and LAUNCH_SECRET packet (`sevctl secret build`);
//! * [`attest`]: attestation report verification;
//! * [`snp_verify`]: SNP attestation reports, their VCEK chain and the owner's checks;
//! * [`platform`]: `sev-firmware`'s platform management (`/dev/sev` or an
//!   emulated platform) as `sev-platform` reports it, and the owner-CA side;
//! * [`error`]: an error and its sources on one line;
//! * [`io`]: bounded reads, path-or-base64 arguments, atomic output files.
//!
//! QMP (`sev-owner --qmp`, the launch driver) goes through the client of
//! the `sevm-qmp` crate.
//!
//! No `unsafe` but one function: `measure` maps the files it hashes
//! (read-only, see its safety comment).

#![deny(unsafe_code)]

pub mod attest;
pub mod cek;
pub mod chain;
pub mod cli;
pub mod error;
pub mod id_block;
pub mod io;
pub mod kds;
pub mod launch;
pub mod measure;
pub mod platform;
pub mod roots;
pub mod secret;
pub mod session;
pub mod snp_verify;
