//! The network tier: processes of one cluster exchanging frames over TCP.
//!
//! Used only when `-a` lists more than one process; within a process, workers exchange
//! batches through rings (see `exchange`). See ARCHITECTURE.md, "The network tier".
//!
//! * frames (their layout, and the reader that splits a byte stream into them) are
//!   shared with the shared-memory transport: [`crate::base::frame`];
//! * [`hello`]: the handshake;
//! * `form`: connecting the processes (listen, connect with back-off, accept);
//! * `io`: the per-process mio loop and the workers' ports.

pub(crate) mod form;
pub mod hello;
pub(crate) mod io;
