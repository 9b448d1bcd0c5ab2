//! QEMU's QMP protocol as sevm speaks it, parse-then-execute, independent
//! of any VM:
//!
//! * [`framing`] splits the byte stream into JSON texts (bounded);
//! * [`command`] parses one text into a typed [`QmpCommand`] or the error
//!   reply QEMU would give (base64 arguments are decoded there, by the one
//!   rule of [`base64`]);
//! * [`response`] builds the greeting, replies and events, and the typed
//!   reply bodies;
//! * [`server`] runs a unix socket: greeting, capabilities negotiation per
//!   connection, dispatch to a [`QmpHandler`] (the VMM implements it), and
//!   events;
//! * [`client`] is the client side, used by `sev-owner --qmp` and by
//!   sevm's tests and benchmarks.
//!
//! The schema is the subset of QEMU's QAPI schema sevm implements, with
//! QEMU's names and reply shapes; the types of the VMM's subsystems (its
//! migration parameters, run state, SEV state) stay with the VMM, which
//! converts to and from these wire shapes.

#![forbid(unsafe_code)]

pub mod base64;
pub mod client;
pub mod command;
pub mod error;
pub mod framing;
pub mod response;
pub mod server;

pub use base64::Base64Bytes;
pub use client::{ClientError, QmpClient};
pub use command::{
    parse_request, parse_request_in, MigrateSetParameters, QmpCommand, Request, RequestError, Stage,
};
pub use error::{ErrorClass, QmpError};
pub use response::QmpEvent;
pub use server::{EventSender, QmpHandler, QmpServer, ServerError};
