//! The demo guest (to be written).
