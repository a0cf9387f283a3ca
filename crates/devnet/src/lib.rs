//! `trainchain devnet`: a whole network on one machine. A fresh chain with its coordinator
//! key, `M` node processes linked over libp2p on loopback, one coordinator process, and `N`
//! miner processes (each with its own key, report file and node), for `K` cycles; then every
//! node's tip is compared, the audit runs, and the global model is exported.
//!
//! Every role runs as a child process of the same binary (`trainchain node|coordinator|miner`):
//! that is how they run in production, a miner's CPU accounting is exactly its own process's,
//! and the coordinator can really be killed and restarted. Children are killed when their
//! [`process::Child`] guard drops, on success, error or panic.

// Errors carry the public keys and hashes that explain an audit or block failure; they are
// returned once per failed cycle or run, so their size costs nothing measurable.
#![allow(clippy::result_large_err)]

pub mod chain;
pub mod config;
pub mod error;
pub mod process;
pub mod run;
pub mod summary;

pub use config::{DevnetConfig, MinerRole, ModelArg};
pub use error::DevnetError;
pub use run::run;
pub use summary::Summary;
