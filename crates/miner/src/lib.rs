//! The mining client of trainchain and the independent auditor.
//!
//! A miner ([`Miner`]) takes part in the coordinator's training cycles: it registers with its
//! hardware, trains the model segment it is given on its data shard for the training window,
//! uploads the signed update, keeps the receipt and certificates, and when it holds the
//! block-signing certificate assembles, signs and submits the block through its node. It
//! accounts where its CPU time went ([`cpu`]) and reports the useful-work fraction per cycle,
//! also as Prometheus metrics ([`metrics`]).
//!
//! The auditor ([`audit`]) walks a node's chain and the coordinator's published cycle records
//! and recomputes every lottery with the shared `consensus` code.

// Errors carry the public keys and hashes that explain an audit or block failure; they are
// returned once per failed cycle or run, so their size costs nothing measurable.
#![allow(clippy::result_large_err)]

pub mod audit;
pub mod behaviour;
pub mod block;
pub mod claims_audit;
pub mod cpu;
pub mod error;
pub mod jobs_audit;
pub mod metrics;
pub mod miner;
pub mod node_rpc;
pub mod progress;
pub mod published;
pub mod remeasure;
pub mod report;
pub mod retry;

pub use behaviour::Behaviour;
pub use error::MinerError;
pub use miner::{Miner, MinerConfig};
pub use node_rpc::NodeRpc;
pub use report::CycleReport;
