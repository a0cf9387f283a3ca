//! One assignment to one leaf: decode what the coordinator served and replay it.

use coordinator_api::api::{ReplayAssignment, TaskInfo};
use learning::{model_from_safetensors, Samples, TrainState};
use primitives::Hash256;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReplayError {
    #[error("the task is for miner {task}, the assignment for {assignment}")]
    WrongTask { task: String, assignment: String },
    #[error("the cycle's weights do not decode: {0}")]
    Weights(String),
    #[error("the {what} served is not the task's (hash {found}, the task names {expected})")]
    NotTheTasks {
        what: &'static str,
        expected: Hash256,
        found: Hash256,
    },
    #[error("the miner's shard does not decode: {0}")]
    Shard(String),
    #[error("the start state does not decode: {0}")]
    StartState(String),
    #[error("the start state is at step {found}, the assignment starts at {expected}")]
    WrongStartStep { expected: u64, found: u64 },
    #[error("{0}")]
    Replay(String),
}

/// The leaf replaying `assignment` ends in, from the miner's `task`, the cycle's `weights`
/// (safetensors) and the miner's `shard` (safetensors), with `threads` threads (the bits do
/// not depend on it).
pub fn replay_assignment(
    assignment: &ReplayAssignment,
    task: &TaskInfo,
    weights: &[u8],
    shard: &[u8],
    threads: usize,
) -> Result<Hash256, ReplayError> {
    if task.miner != assignment.miner || task.cycle != assignment.cycle {
        return Err(ReplayError::WrongTask {
            task: task.miner.to_string(),
            assignment: assignment.miner.to_string(),
        });
    }
    let model = model_from_safetensors(task.model.clone(), weights)
        .map_err(|e| ReplayError::Weights(e.to_string()))?;
    // The claim signs the task's hash: replay only on the inputs that task names, so a claim
    // is never about weights or data other than the miner's.
    let found = Hash256(learning::model_hash(&model));
    if found != task.replay.model_hash {
        return Err(ReplayError::NotTheTasks {
            what: "model",
            expected: task.replay.model_hash,
            found,
        });
    }
    let found = primitives::sha256(shard);
    if found != task.replay.shard_hash {
        return Err(ReplayError::NotTheTasks {
            what: "shard",
            expected: task.replay.shard_hash,
            found,
        });
    }
    let shard = Samples::from_safetensors(shard, task.feature_count, task.class_count)
        .map_err(|e| ReplayError::Shard(e.to_string()))?;
    let train = proof::evidence::train_part(&shard, task.replay.train_samples)
        .map_err(ReplayError::Shard)?;
    let bytes =
        hex::decode(&assignment.start_state).map_err(|e| ReplayError::StartState(e.to_string()))?;
    let start = TrainState::decode(&bytes).map_err(|e| ReplayError::StartState(e.to_string()))?;
    if start.step != assignment.from_step {
        return Err(ReplayError::WrongStartStep {
            expected: assignment.from_step,
            found: start.step,
        });
    }
    proof::replay_leaf(
        &task.replay,
        &model,
        &train,
        &start,
        assignment.to_step,
        threads,
    )
    .map_err(ReplayError::Replay)
}
