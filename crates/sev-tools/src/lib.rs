//! sev-tools
