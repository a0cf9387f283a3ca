//! Checking a submission's transcript against its challenges by replaying the challenged
//! intervals, and the reasons a check fails.

use learning::{Model, Samples, SegmentUpdate, TrainState, Trainer};
use primitives::Hash256;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

use crate::response::{ChallengeResponse, Opening};
use crate::task::{Commitment, ReplayTask};
use crate::transcript::{checkpoint_steps, leaf_count, verify_path, LEAVES_MAX};

/// Why a submission failed its check. Each is a property of signed or public data, so anyone
/// holding the task's start model and shard can recheck it (see [`crate::evidence`]).
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Failure {
    #[error("claims {steps} steps, the task allows {max}")]
    StepsOverBudget { steps: u64, max: u64 },
    #[error("the transcript would have {leaves} leaves, over the limit")]
    TranscriptTooLong { leaves: u64 },
    #[error("checkpoint interval {interval} is outside 1..={max}")]
    IntervalOutOfRange { interval: u64, max: u64 },
    #[error("the transcript's step-0 leaf is not the task's start model")]
    StartNotTaskModel,
    #[error("the answer opens intervals {answered:?}, the challenge asked for {asked:?}")]
    WrongIntervals { asked: Vec<u64>, answered: Vec<u64> },
    #[error("interval {interval}: the opened state is not at step {expected_step} or does not fit the task: {why}")]
    StateDoesNotFit {
        interval: u64,
        expected_step: u64,
        why: String,
    },
    #[error(
        "interval {interval}: the opened start state is not leaf {interval} of the transcript"
    )]
    StartNotInTranscript { interval: u64 },
    #[error("interval {interval}: the opened end leaf is not leaf {} of the transcript", interval + 1)]
    EndNotInTranscript { interval: u64 },
    #[error("interval {interval}: replaying {steps} steps gives state {replayed}, the transcript commits to {committed}")]
    ReplayMismatch {
        interval: u64,
        steps: u64,
        replayed: Hash256,
        committed: Hash256,
    },
    #[error("the submitted update is not the state the transcript's last interval ends in")]
    UpdateNotFinalState,
    #[error("the replay could not run: {0}")]
    ReplayFailed(String),
}

/// Outcome of checking one submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Every challenged interval replayed to its committed leaf.
    Verified {
        intervals: Vec<u64>,
        replayed_steps: u64,
    },
    /// No answer (or none before the challenge deadline): treated as failed, but it proves no
    /// fraud by itself.
    Unanswered,
    /// A check failed: fraud evidence.
    Failed { failure: Failure },
}

impl Verdict {
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Verified { .. })
    }

    /// The one-word name used in records and summaries.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Verified { .. } => "verified",
            Verdict::Unanswered => "unanswered",
            Verdict::Failed { .. } => "failed",
        }
    }
}

/// What a check needs besides the answer.
pub struct CheckInputs<'a> {
    pub task: &'a ReplayTask,
    /// The model the task starts from (its hash is `task.model_hash`).
    pub start_model: &'a Model,
    /// The shard's first `task.train_samples` samples.
    pub train_samples: &'a Samples,
    pub commitment: &'a Commitment,
    /// The decoded update the commitment's `update_hash` names.
    pub update: &'a SegmentUpdate,
    /// Threads for the replay (the bits do not depend on it).
    pub threads: usize,
}

/// The checks that need no answer: the step budget and the transcript's size.
pub fn check_claims(task: &ReplayTask, commitment: &Commitment) -> Result<u64, Failure> {
    let interval = task.checkpoint_interval;
    if interval == 0 || interval > crate::task::CHECKPOINT_INTERVAL_MAX {
        return Err(Failure::IntervalOutOfRange {
            interval,
            max: crate::task::CHECKPOINT_INTERVAL_MAX,
        });
    }
    if commitment.steps > task.steps_max {
        return Err(Failure::StepsOverBudget {
            steps: commitment.steps,
            max: task.steps_max,
        });
    }
    let leaves = leaf_count(commitment.steps, task.checkpoint_interval);
    if leaves > LEAVES_MAX {
        return Err(Failure::TranscriptTooLong { leaves });
    }
    Ok(leaves - 1)
}

/// Checks `response` to the challenge `asked` (from [`crate::challenged_intervals`]).
pub fn check(
    inputs: &CheckInputs<'_>,
    asked: &[u64],
    response: Option<&ChallengeResponse>,
) -> Verdict {
    check_trusting(inputs, asked, response, &BTreeSet::new())
}

/// [`check`], except that the intervals in `trusted` are not replayed: a bonded verifier
/// replayed them (with [`replay_leaf`]) and signed the leaf the transcript commits to. Every path is still checked, and the run's last interval is always
/// replayed here (the uploaded update must be the state it ends in, which its leaf alone
/// cannot show). `replayed_steps` counts only the steps replayed here.
pub fn check_trusting(
    inputs: &CheckInputs<'_>,
    asked: &[u64],
    response: Option<&ChallengeResponse>,
    trusted: &BTreeSet<u64>,
) -> Verdict {
    check_with_replays(inputs, asked, response, trusted, &BTreeMap::new())
}

/// [`check_trusting`], with the end leaves of intervals the caller already replayed from
/// their opened start states (`replayed`, by interval): those are compared with the committed
/// leaves, after the same path checks, without replaying them again. The run's last interval
/// is always replayed here.
pub fn check_with_replays(
    inputs: &CheckInputs<'_>,
    asked: &[u64],
    response: Option<&ChallengeResponse>,
    trusted: &BTreeSet<u64>,
    replayed: &BTreeMap<u64, Hash256>,
) -> Verdict {
    match check_inner(inputs, asked, response, trusted, replayed) {
        Ok(Some(replayed_steps)) => Verdict::Verified {
            intervals: asked.to_vec(),
            replayed_steps,
        },
        Ok(None) => Verdict::Unanswered,
        Err(failure) => Verdict::Failed { failure },
    }
}

fn check_inner(
    inputs: &CheckInputs<'_>,
    asked: &[u64],
    response: Option<&ChallengeResponse>,
    trusted: &BTreeSet<u64>,
    known: &BTreeMap<u64, Hash256>,
) -> Result<Option<u64>, Failure> {
    let task = inputs.task;
    let commitment = inputs.commitment;
    let intervals = check_claims(task, commitment)?;
    let Some(response) = response else {
        return Ok(None);
    };
    let leaves = intervals + 1;
    let root = &commitment.transcript_root;
    let initial = TrainState::initial(inputs.start_model, &[&task.segment], task.momentum)
        .map_err(|e| Failure::ReplayFailed(e.to_string()))?;
    let initial_leaf = Hash256(initial.hash());
    if !verify_path(root, leaves, 0, &initial_leaf, &response.first_path) {
        return Err(Failure::StartNotTaskModel);
    }
    let answered: Vec<u64> = response.openings.iter().map(|o| o.interval).collect();
    if answered != asked || asked.iter().any(|&i| i >= intervals) {
        return Err(Failure::WrongIntervals {
            asked: asked.to_vec(),
            answered,
        });
    }
    let steps = checkpoint_steps(commitment.steps, task.checkpoint_interval);
    let mut replayed_steps = 0;
    for opening in &response.openings {
        let i = opening.interval as usize;
        let (from, to) = (steps[i], steps[i + 1]);
        let ends_run = opening.interval + 1 == intervals;
        // A trusted interval's paths are checked like any other; only its replay is skipped.
        // An interval replayed already is compared by its known end leaf.
        let mut final_state = None;
        let replayed_leaf = if trusted.contains(&opening.interval) && !ends_run {
            check_opening_paths(inputs, opening, from)?;
            None
        } else if let Some(leaf) = known.get(&opening.interval).filter(|_| !ends_run) {
            check_opening_paths(inputs, opening, from)?;
            Some(*leaf)
        } else {
            replayed_steps += to - from;
            let state = replay_opening(inputs, opening, from, to)?;
            let leaf = Hash256(state.hash());
            final_state = Some(state);
            Some(leaf)
        };
        if !verify_path(
            root,
            leaves,
            opening.interval + 1,
            &opening.end_leaf,
            &opening.end_path,
        ) {
            return Err(Failure::EndNotInTranscript {
                interval: opening.interval,
            });
        }
        let Some(replayed_leaf) = replayed_leaf else {
            continue;
        };
        if replayed_leaf != opening.end_leaf {
            return Err(Failure::ReplayMismatch {
                interval: opening.interval,
                steps: to - from,
                replayed: replayed_leaf,
                committed: opening.end_leaf,
            });
        }
        if ends_run && !final_state.is_some_and(|s| same_bits(&s, inputs.update)) {
            return Err(Failure::UpdateNotFinalState);
        }
    }
    if intervals == 0 && !same_bits(&initial, inputs.update) {
        return Err(Failure::UpdateNotFinalState);
    }
    Ok(Some(replayed_steps))
}

/// Checks that the opened start state is at step `from` and is its leaf of the transcript.
fn check_opening_paths(
    inputs: &CheckInputs<'_>,
    opening: &Opening,
    from: u64,
) -> Result<(), Failure> {
    let task = inputs.task;
    let leaves = leaf_count(inputs.commitment.steps, task.checkpoint_interval);
    if opening.start.step != from {
        return Err(Failure::StateDoesNotFit {
            interval: opening.interval,
            expected_step: from,
            why: format!("it is at step {}", opening.start.step),
        });
    }
    let start_leaf = Hash256(opening.start.hash());
    if !verify_path(
        &inputs.commitment.transcript_root,
        leaves,
        opening.interval,
        &start_leaf,
        &opening.start_path,
    ) {
        return Err(Failure::StartNotInTranscript {
            interval: opening.interval,
        });
    }
    Ok(())
}

/// Checks the opened start state against the transcript and replays it from `from` to `to`.
pub(crate) fn replay_opening(
    inputs: &CheckInputs<'_>,
    opening: &Opening,
    from: u64,
    to: u64,
) -> Result<TrainState, Failure> {
    check_opening_paths(inputs, opening, from)?;
    replay(
        inputs.task,
        inputs.start_model,
        inputs.train_samples,
        &opening.start,
        to - from,
        inputs.threads,
    )
    .map_err(|e| match e {
        ReplayError::Resume(why) => Failure::StateDoesNotFit {
            interval: opening.interval,
            expected_step: from,
            why,
        },
        ReplayError::Run(why) => Failure::ReplayFailed(why),
    })
}

/// Why a replay did not run: the start state does not fit the task, or training failed.
enum ReplayError {
    Resume(String),
    Run(String),
}

/// Runs `steps` steps of `task` from `start`: the one replay the checker and a verifier share.
fn replay(
    task: &ReplayTask,
    start_model: &Model,
    train_samples: &Samples,
    start: &TrainState,
    steps: u64,
    threads: usize,
) -> Result<TrainState, ReplayError> {
    let config = task.train_config(steps, threads);
    let mut trainer = Trainer::resume(start_model, &[&task.segment], train_samples, &config, start)
        .map_err(|e| ReplayError::Resume(e.to_string()))?;
    trainer
        .run(steps)
        .map_err(|e| ReplayError::Run(e.to_string()))?;
    trainer.state().map_err(|e| ReplayError::Run(e.to_string()))
}

/// True if `update` holds exactly the values of `state` (bit for bit, in model order).
fn same_bits(state: &TrainState, update: &SegmentUpdate) -> bool {
    state.weights.len() == update.tensors.len()
        && state
            .weights
            .iter()
            .zip(&update.tensors)
            .all(|(values, tensor)| {
                values.len() == tensor.values.len()
                    && values
                        .iter()
                        .zip(&tensor.values)
                        .all(|(a, b)| a.to_bits() == b.to_bits())
            })
}

/// The leaf of the state that replaying `task` from `start` to step `to` reaches: what a
/// verifier computes for a replay assignment (it is shown the start state, no path). At most
/// one checkpoint interval ([`crate::task::CHECKPOINT_INTERVAL_MAX`] steps), so a request
/// cannot make it train without bound.
pub fn replay_leaf(
    task: &ReplayTask,
    start_model: &Model,
    train_samples: &Samples,
    start: &TrainState,
    to: u64,
    threads: usize,
) -> Result<Hash256, String> {
    let max = crate::task::CHECKPOINT_INTERVAL_MAX;
    let steps = to
        .checked_sub(start.step)
        .filter(|&steps| steps <= max)
        .ok_or_else(|| {
            format!(
                "cannot replay from step {} to step {to}: the end must be 0..={max} steps after the start",
                start.step
            )
        })?;
    let end =
        replay(task, start_model, train_samples, start, steps, threads).map_err(|e| match e {
            ReplayError::Resume(why) => format!("the start state does not fit the task: {why}"),
            ReplayError::Run(why) => format!("the replay could not run: {why}"),
        })?;
    Ok(Hash256(end.hash()))
}
