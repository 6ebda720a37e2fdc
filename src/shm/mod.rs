//! Shared memory between the processes of one host: lock-free SPSC rings of records
//! over memory they do not own ([`ring`]), and the segments under `/dev/shm` that hold
//! them ([`segment`]). The transport over them is the next part of issue 17
//! (ARCHITECTURE.md, "Shared-memory rings").

mod annotate;
pub mod ring;
pub mod segment;
