//! Hardware SEV backend.
