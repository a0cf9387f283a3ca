//! The miner's side: running a task while recording its transcript, and the commitment it
//! signs.

use learning::{Model, Samples, SegmentUpdate, TrainState, Trainer};
use primitives::Hash256;

use crate::response::RunRecord;
use crate::task::{Commitment, ReplayTask};

/// A finished run of a task: its record (every checkpoint state) and the update it ends in.
#[derive(Debug, Clone)]
pub struct Run {
    pub record: RunRecord,
    pub update: SegmentUpdate,
}

impl Run {
    /// The commitment to sign with `update_bytes` (the update as uploaded).
    pub fn commitment(&self, task: &ReplayTask, update_hash: Hash256) -> Commitment {
        Commitment {
            task_hash: task.hash(),
            update_hash,
            transcript_root: self.record.transcript().root(),
            steps: self.record.last().map_or(0, |s| s.step),
        }
    }
}

/// Runs `task` from `start_model` on `train_samples` (the shard's first `task.train_samples`),
/// recording the state at step 0, at every power of two below the checkpoint interval (probes:
/// a run may end after a few steps when more would overfit) and at every checkpoint. After
/// each recorded state, `go_on` sees it and says whether to go on; the run stops at
/// `task.steps_max`, or when `go_on` says no, and ends in the state `choose` selects among the
/// recorded ones (for early stopping on a validation set: the best so far). The transcript is
/// cut at the chosen state: every checkpoint before it, then it.
pub fn run_task(
    task: &ReplayTask,
    start_model: &Model,
    train_samples: &Samples,
    threads: usize,
    go_on: impl FnMut(&TrainState) -> bool,
    choose: impl FnOnce(&[TrainState]) -> usize,
) -> learning::Result<Run> {
    run_task_until(
        task,
        start_model,
        train_samples,
        threads,
        None,
        go_on,
        choose,
    )
}

/// [`run_task`] that also stops at `deadline`, checked before every step: the run then ends
/// mid-interval, in the state after its last step (a run may end at any step, so the
/// transcript stays valid). Without it a run could overshoot the deadline by a whole
/// checkpoint interval, seconds on a model whose steps are slow.
pub fn run_task_until(
    task: &ReplayTask,
    start_model: &Model,
    train_samples: &Samples,
    threads: usize,
    deadline: Option<std::time::Instant>,
    mut go_on: impl FnMut(&TrainState) -> bool,
    choose: impl FnOnce(&[TrainState]) -> usize,
) -> learning::Result<Run> {
    let config = task.train_config(task.steps_max, threads);
    let mut trainer = Trainer::start(start_model, &[&task.segment], train_samples, &config)?;
    let mut record = RunRecord::new(task.checkpoint_interval);
    record.push(trainer.state()?);
    while trainer.steps_taken() < task.steps_max {
        let taken = trainer.steps_taken();
        let next_checkpoint = (taken / task.checkpoint_interval + 1) * task.checkpoint_interval;
        let next_probe = if taken == 0 { 1 } else { taken * 2 };
        let next = next_checkpoint.min(next_probe).min(task.steps_max);
        let on_time = match deadline {
            Some(deadline) => trainer.run_until(deadline, next - taken)? == next - taken,
            None => {
                trainer.run(next - taken)?;
                true
            }
        };
        if !on_time && trainer.steps_taken() == taken {
            // Out of time before this state's first step: the last recorded state ends it.
            break;
        }
        let state = trainer.state()?;
        let more = go_on(&state) && on_time;
        record.push(state);
        if !more {
            break;
        }
    }
    let pick = choose(record.states()).min(record.states().len() - 1);
    let last = record.states()[pick].clone();
    let record = record.ending_with(last);
    let update = record
        .last()
        .expect("a record has its first state")
        .to_update(start_model, &task.segment)?;
    Ok(Run { record, update })
}
