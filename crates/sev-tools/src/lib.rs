//! The guest owner's tool `sev-owner` and the platform owner's tool
//! `sev-platform`, as a library with thin binaries on top.
//!
//! * [`chain`], [`roots`]: certificate chains and the roots they are verified to;
//! * [`cek`]: a real host's signed CEK (file, cache, key distribution server);
//! * [`session`]: the launch session files (`sevctl session` format);
//! * [`measure`]: expected launch digest and measurement, and their check;
//! * [`secret`]: the secret table and LAUNCH_SECRET packet (`sevctl secret build`);
//! * [`attest`]: attestation report verification;
//! * [`qmp`]: a small QMP client;
//! * [`platform`]: `/dev/sev` and emulated platform backends for `sev-platform`;
//! * [`error`]: an error and its sources on one line;
//! * [`io`]: bounded reads, path-or-base64 arguments, atomic output files.

pub mod attest;
pub mod cek;
pub mod chain;
pub mod cli;
pub mod error;
pub mod io;
pub mod launch;
pub mod measure;
pub mod platform;
pub mod qmp;
pub mod roots;
pub mod secret;
pub mod session;
