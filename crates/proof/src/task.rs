//! A replayable task: everything a replay of a miner's training needs, fixed by the coordinator
//! before training starts, and the miner's signed commitment to its run of it.

use bitcoin::secp256k1::PublicKey;
use learning::{Budget, TrainConfig};
use primitives::{tagged_hash, Hash256};
use serde::{Deserialize, Serialize};

/// Tag of the per-miner batch-order seed.
pub const BATCH_SEED_TAG: &str = "trainchain/proof/batch-seed";
/// Tag of [`ReplayTask::hash`].
pub const TASK_TAG: &str = "trainchain/proof/task";
/// Tag of what a miner signs when it submits an update with its transcript.
pub const COMMITMENT_TAG: &str = "trainchain/proof/commitment";

/// Largest checkpoint interval a check accepts: one opening replays at most this many steps,
/// so a task (or evidence) from elsewhere cannot make a verifier train without end.
pub const CHECKPOINT_INTERVAL_MAX: u64 = 1 << 16;

/// Default checkpoint interval k: with the default challenge count q the coordinator replays
/// (q + 1) intervals of a run of `steps` steps, a fraction (q + 1)·k / steps of the training.
pub const CHECKPOINT_INTERVAL_DEFAULT: u64 = 16;

/// The training a task fixes (besides the start model and the shard, named by hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayTask {
    pub cycle: u64,
    pub miner: PublicKey,
    /// Hash of the model training starts from (`learning::model_hash`).
    pub model_hash: Hash256,
    /// The only segment trained; every other parameter stays as in the start model.
    pub segment: String,
    /// SHA-256 of the shard's safetensors bytes as served.
    pub shard_hash: Hash256,
    /// Samples of the shard the run trains on: the first `train_samples`; the rest is the
    /// miner's own validation part, never trained on.
    pub train_samples: u64,
    pub lr: f32,
    pub momentum: f32,
    pub batch: u32,
    /// Most steps the run may take; the miner says how many it took (it may stop early).
    pub steps_max: u64,
    /// Checkpoint interval k of the transcript.
    pub checkpoint_interval: u64,
    /// Seed of the batch order ([`batch_seed`]); the miner cannot choose it.
    pub batch_seed: u64,
}

/// The batch-order seed of `miner` in a cycle: the first 8 bytes (LE) of
/// `H_batch-seed(commitment 32 || cycle u64 LE || miner 33)`. The commitment is fixed in the
/// announcement before registration, so neither the miner nor (after announcing) the
/// coordinator can pick it.
pub fn batch_seed(commitment: &Hash256, cycle: u64, miner: &PublicKey) -> u64 {
    let h = tagged_hash(
        BATCH_SEED_TAG,
        &[&commitment.0, &cycle.to_le_bytes(), &miner.serialize()],
    );
    u64::from_le_bytes(h.0[..8].try_into().expect("8 bytes"))
}

impl ReplayTask {
    /// `H_task(cycle u64 || miner 33 || model_hash 32 || len(segment) u32 || segment UTF-8 ||
    /// shard_hash 32 || train_samples u64 || lr f32 bits u32 || momentum f32 bits u32 || batch
    /// u32 || steps_max u64 || checkpoint_interval u64 || batch_seed u64)`, integers LE.
    pub fn hash(&self) -> Hash256 {
        tagged_hash(
            TASK_TAG,
            &[
                &self.cycle.to_le_bytes(),
                &self.miner.serialize(),
                &self.model_hash.0,
                &(self.segment.len() as u32).to_le_bytes(),
                self.segment.as_bytes(),
                &self.shard_hash.0,
                &self.train_samples.to_le_bytes(),
                &self.lr.to_bits().to_le_bytes(),
                &self.momentum.to_bits().to_le_bytes(),
                &self.batch.to_le_bytes(),
                &self.steps_max.to_le_bytes(),
                &self.checkpoint_interval.to_le_bytes(),
                &self.batch_seed.to_le_bytes(),
            ],
        )
    }

    /// The training configuration of a run of this task (`threads` never changes the bits).
    pub fn train_config(&self, steps: u64, threads: usize) -> TrainConfig {
        TrainConfig {
            lr: self.lr,
            momentum: self.momentum,
            batch: self.batch as usize,
            budget: Budget::Steps(steps),
            seed: self.batch_seed,
            threads,
        }
    }
}

/// What a miner signs with its update: the task it ran, the update, its transcript root and
/// how many steps it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    pub task_hash: Hash256,
    /// SHA-256 of the uploaded update bytes.
    pub update_hash: Hash256,
    pub transcript_root: Hash256,
    /// Steps the run took (the transcript's last leaf is the state after them).
    pub steps: u64,
}

impl Commitment {
    /// `H_commitment(cycle u64 LE || miner 33 || task_hash 32 || update_hash 32 ||
    /// transcript_root 32 || steps u64 LE)`.
    pub fn signing_hash(&self, cycle: u64, miner: &PublicKey) -> Hash256 {
        tagged_hash(
            COMMITMENT_TAG,
            &[
                &cycle.to_le_bytes(),
                &miner.serialize(),
                &self.task_hash.0,
                &self.update_hash.0,
                &self.transcript_root.0,
                &self.steps.to_le_bytes(),
            ],
        )
    }
}
