//! The emulated AMD Secure Processor.
