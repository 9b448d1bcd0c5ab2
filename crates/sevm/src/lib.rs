//! sevm

pub mod options;
pub mod qmp;
