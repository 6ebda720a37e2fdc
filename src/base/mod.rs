//! The shared vocabulary every layer may use: epochs, the data traits and the `Push`
//! interface, keys and their stable hash, codecs (and the plain-data types that cross as bytes), the frame format that crosses a
//! process boundary, and how a worker parks and is woken (ARCHITECTURE.md, "Layers").

pub(crate) mod codec;
pub(crate) mod epoch;
pub mod frame;
pub(crate) mod key;
pub(crate) mod park;
pub(crate) mod plain;
pub(crate) mod push;
pub(crate) mod queue;
pub(crate) mod signal;
pub(crate) mod xxh3_words;
