//! QEMU's QMP protocol on a unix socket, parse-then-execute.
//!
//! * [`framing`] splits the byte stream into JSON texts (bounded);
//! * [`command`] parses one text into a typed [`QmpCommand`] or the error
//!   reply QEMU would give; it knows nothing of the VM;
//! * [`response`] builds the greeting, replies and events, and the typed
//!   reply bodies;
//! * [`server`] runs the socket: greeting, capabilities negotiation per
//!   connection, dispatch to a [`QmpHandler`] the VMM implements, and
//!   events.

pub mod command;
pub mod error;
pub mod framing;
pub mod response;
pub mod server;

pub use command::{parse_request, parse_request_in, QmpCommand, Request, RequestError, Stage};
pub use error::{ErrorClass, QmpError};
pub use response::QmpEvent;
pub use server::{EventSender, QmpHandler, QmpServer, ServerError};
