//! The key distribution service (KDS) on the tools' side: the owner's
//! client of any such service, AMD's included ([`client`]).

pub mod client;
