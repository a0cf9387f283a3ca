//! The node: chain state over the store, the mempool, the libp2p network, the JSON-RPC
//! server and the Prometheus metrics, tied together by [`service::NodeHandle`].

pub mod chain;
pub mod config;
pub mod mempool;
pub mod mempool_file;
pub mod metrics;
pub mod p2p;
pub mod persist;
pub mod rpc;
pub mod service;

pub use chain::{BlockOutcome, ChainError, ChainState};
pub use service::NodeHandle;
