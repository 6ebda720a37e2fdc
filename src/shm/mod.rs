//! Shared memory between the processes of one host: lock-free SPSC rings of records
//! over memory they do not own ([`ring`]). The segments that hold them and the
//! transport over them are the next parts of issue 17 (ARCHITECTURE.md,
//! "Shared-memory rings").

mod annotate;
pub mod ring;
