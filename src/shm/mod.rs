//! Shared memory between the processes of one host: lock-free SPSC rings of records
//! over memory they do not own ([`ring`]), the segments under `/dev/shm` that hold them
//! ([`segment`]), and the doorbells by which a process wakes another's parked worker
//! ([`bell`]). The transport built on them is `transport::shm` (ARCHITECTURE.md,
//! "Transports").

mod annotate;
pub mod bell;
pub mod ring;
pub mod segment;
