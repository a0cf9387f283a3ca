//! Subcommand glue, one module each.

pub mod audit;
pub mod coordinator;
pub mod dashboard;
pub mod devnet;
pub mod init;
pub mod job;
pub mod logging;
pub mod miner;
pub mod node;
pub mod params;
pub mod role_config;
pub mod rpc;
pub mod verifier;
pub mod verify_evidence;
pub mod wallet;
