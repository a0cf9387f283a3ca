//! Proof of training: what makes a block "training-verified".
//!
//! A coordinator's task fixes everything a replay needs ([`ReplayTask`]). The miner commits to
//! the hash of its training state every `k` steps ([`Transcript`]) and signs the root with its
//! update ([`Commitment`]). After the submission deadline, randomness no miner knew
//! ([`challenge_seed`]) picks intervals ([`challenged_intervals`]); the miner opens them
//! ([`ChallengeResponse`]) and the verifier replays each one on the shard and compares the
//! result bit for bit with the next leaf ([`check`]). A failed check is [`FraudEvidence`] that
//! anyone holding the start model and the shard can recheck.
//!
//! This crate does no I/O: the coordinator, the miner and the auditor call it.

pub mod challenge;
pub mod evidence;
pub mod opened;
pub mod prove;
pub mod response;
pub mod task;
pub mod transcript;
pub mod verify;

pub use challenge::{
    challenge_seed, challenged_intervals, commitments_digest, escape_probability,
    CHALLENGES_DEFAULT, CHALLENGES_MAX,
};
pub use evidence::{EvidenceError, FraudEvidence};
pub use opened::OpenedInterval;
pub use prove::{run_task, run_task_until, Run};
pub use response::{ChallengeResponse, Opening, ResponseDecodeError, RunRecord};
pub use task::{batch_seed, Commitment, ReplayTask, CHECKPOINT_INTERVAL_DEFAULT};
pub use transcript::{
    checkpoint_step, checkpoint_steps, leaf_count, verify_path, Transcript, LEAVES_MAX,
};
pub use verify::{
    check, check_claims, check_trusting, check_with_replays, replay_leaf, CheckInputs, Failure,
    Verdict,
};
