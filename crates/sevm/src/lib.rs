//! sevm
