//! The verifier role of trainchain: a bonded client that takes replay assignments from the
//! coordinator, replays each assigned interval of a miner's training from the opened start
//! state, and signs the leaf the replay ends in. Its bond answers for every claim: a claim the
//! coordinator's replay shows false (an echoed flag, a false accusation) forfeits it, and a
//! claim that exposes a miner's false leaf earns the chain's finder share of that miner's bond.
//!
//! [`replay`] is the pure part (one assignment to one leaf); [`verifier`] the loop over cycles.

pub mod replay;
pub mod verifier;

pub use replay::{replay_assignment, ReplayError};
pub use verifier::{Verifier, VerifierConfig, VerifierCycleReport, VerifierError};
