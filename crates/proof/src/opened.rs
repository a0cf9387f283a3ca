//! One opened interval of a committed run, self-describing: what a verifier's claim about the
//! interval is judged on, so anyone holding the task's start model and shard can replay it and
//! see whether the claim, or the miner's committed leaf, was false.

use learning::{model_hash, Model, Samples, TrainState};
use primitives::{sha256, Hash256};
use serde::{Deserialize, Serialize};

use crate::evidence::{train_part, EvidenceError};
use crate::response::Opening;
use crate::task::{Commitment, ReplayTask};
use crate::transcript::{checkpoint_step, leaf_count, verify_path};
use crate::verify::replay_leaf;

/// An interval of the run `commitment` commits to, opened with its Merkle paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenedInterval {
    pub interval: u64,
    /// The state at the interval's start (`TrainState::encode`), hex.
    pub start_state: String,
    pub start_path: Vec<Hash256>,
    /// The leaf the miner committed to at the interval's end.
    pub end_leaf: Hash256,
    pub end_path: Vec<Hash256>,
}

impl OpenedInterval {
    pub fn of(opening: &Opening) -> Self {
        OpenedInterval {
            interval: opening.interval,
            start_state: hex::encode(opening.start.encode()),
            start_path: opening.start_path.clone(),
            end_leaf: opening.end_leaf,
            end_path: opening.end_path.clone(),
        }
    }

    /// Replays the interval on `start_model` and `shard` (safetensors, as served) after
    /// checking that both are the task's, that the task is the commitment's, and that both
    /// leaves are in the committed transcript at their places. Returns the leaf the replay
    /// ends in: the truth a claim and the committed `end_leaf` are judged against.
    pub fn replay(
        &self,
        task: &ReplayTask,
        commitment: &Commitment,
        start_model: &Model,
        shard: &[u8],
        threads: usize,
    ) -> Result<Hash256, EvidenceError> {
        let malformed = |field: &'static str, why: String| EvidenceError::Malformed { field, why };
        if commitment.task_hash != task.hash() {
            return Err(malformed(
                "task",
                "does not hash to the commitment's task".into(),
            ));
        }
        let found = Hash256(model_hash(start_model));
        if found != task.model_hash {
            return Err(EvidenceError::WrongStartModel {
                expected: task.model_hash,
                found,
            });
        }
        let found = sha256(shard);
        if found != task.shard_hash {
            return Err(EvidenceError::WrongShard {
                expected: task.shard_hash,
                found,
            });
        }
        // Bounds before any allocation proportional to the claim: the transcript's length and
        // the interval come from the commitment.
        let k = task.checkpoint_interval;
        if k == 0 || k > crate::task::CHECKPOINT_INTERVAL_MAX || commitment.steps > task.steps_max {
            return Err(malformed("task", "interval or steps out of range".into()));
        }
        let leaves = leaf_count(commitment.steps, k);
        if leaves > crate::transcript::LEAVES_MAX || self.interval >= leaves.saturating_sub(1) {
            return Err(malformed(
                "interval",
                format!("{} of a {leaves}-leaf transcript", self.interval),
            ));
        }
        let bytes =
            hex::decode(&self.start_state).map_err(|e| malformed("start_state", e.to_string()))?;
        let start =
            TrainState::decode(&bytes).map_err(|e| malformed("start_state", e.to_string()))?;
        let step = |i| checkpoint_step(commitment.steps, k, i).expect("within the leaf count");
        let (from, to) = (step(self.interval), step(self.interval + 1));
        if start.step != from {
            return Err(malformed(
                "start_state",
                format!("at step {}, the interval starts at {from}", start.step),
            ));
        }
        let root = &commitment.transcript_root;
        if !verify_path(
            root,
            leaves,
            self.interval,
            &Hash256(start.hash()),
            &self.start_path,
        ) {
            return Err(malformed(
                "start_path",
                "not in the committed transcript".into(),
            ));
        }
        if !verify_path(
            root,
            leaves,
            self.interval + 1,
            &self.end_leaf,
            &self.end_path,
        ) {
            return Err(malformed(
                "end_path",
                "not in the committed transcript".into(),
            ));
        }
        let spec = start_model.spec();
        let samples = Samples::from_safetensors(shard, spec.input_features(), spec.classes())
            .map_err(|e| malformed("shard", e.to_string()))?;
        let train =
            train_part(&samples, task.train_samples).map_err(|why| malformed("shard", why))?;
        replay_leaf(task, start_model, &train, &start, to, threads)
            .map_err(|why| malformed("start_state", why))
    }
}
