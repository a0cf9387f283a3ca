//! The node: chain state over the store, and the mempool. Networking and RPC build on these.

pub mod chain;
pub mod mempool;

pub use chain::{BlockOutcome, ChainError, ChainState};
