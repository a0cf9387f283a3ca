//! What a miner uploads: honest training of its replayable task, or (for devnet bad-actor
//! runs) an unchanged segment, random noise, or one of the cheats proof of training must
//! catch. Every behaviour also says what transcript it commits to; the coordinator must score
//! every one but honest training at zero.

use learning::{evaluate, Model, Samples, SegmentUpdate, TrainState};
use proof::{ReplayTask, RunRecord};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::time::Instant;

/// Early stopping: after this many validations in a row that do not lower the loss on the
/// miner's validation part of the shard, the miner stops for the cycle. The coordinator pays
/// only for a lower held-out loss, and a small shard overfits within a few epochs.
pub const PATIENCE_VALIDATIONS: u32 = 6;

/// Validations of a run besides its probes (steps 1, 2, 4, … up to the checkpoint interval,
/// where a small shard's overfitting shows first) and its deadline-cut end: one every
/// `steps_max / VALIDATIONS_PER_RUN` steps. A paced budget fills the window, and a slow
/// model's interval can be a single step: validating at every checkpoint would then spend
/// as long evaluating as training.
pub const VALIDATIONS_PER_RUN: u64 = 16;

/// A budget of more than this many epochs of the shard's training part early-stops; a smaller
/// one trains to its end and submits it. A paced budget is up to twice what fits the window
/// (`coordinator::pace::PACE_HEADROOM`), so this is about four epochs actually trained: a
/// small shard (digits: hundreds of samples, thousands of epochs a window) still early-stops,
/// a language model's (thousands of windows, a few epochs at most) never does.
pub const EARLY_STOPPING_EPOCHS: u64 = 8;

/// Largest magnitude of a noise weight: large enough to wreck the layer's output, finite.
pub const NOISE_MAGNITUDE: f32 = 1.0;

/// A cheat a rational miner might try instead of training; each is caught by the replay check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cheat {
    /// Trains on samples its task does not include (its validation part), and commits the
    /// states of that run.
    OtherData,
    /// No training: rescales its segment (a temperature found by search on the validation
    /// part), with a transcript made up to end there.
    Rescale,
    /// Runs half the steps it claims in every interval.
    SkipSteps,
    /// Trains with another batch order than the task's.
    WrongOrder,
    /// Trains with twice the task's learning rate.
    WrongRate,
    /// Trains honestly, then nudges the result (a "perturbation that helps") before uploading.
    Perturb,
}

impl Cheat {
    pub const ALL: [Cheat; 6] = [
        Cheat::OtherData,
        Cheat::Rescale,
        Cheat::SkipSteps,
        Cheat::WrongOrder,
        Cheat::WrongRate,
        Cheat::Perturb,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cheat::OtherData => "other-data",
            Cheat::Rescale => "rescale",
            Cheat::SkipSteps => "skip-steps",
            Cheat::WrongOrder => "wrong-order",
            Cheat::WrongRate => "wrong-rate",
            Cheat::Perturb => "perturb",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Trains its task for the whole window (early-stopping on its validation part).
    Honest,
    /// Uploads its segment unchanged (no training), committing to zero steps.
    Lazy,
    /// Uploads uniform noise in place of its segment.
    Noise,
    /// Cheats.
    Cheat(Cheat),
}

impl FromStr for Behaviour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "honest" => Ok(Behaviour::Honest),
            "lazy" => Ok(Behaviour::Lazy),
            "noise" => Ok(Behaviour::Noise),
            other => Cheat::ALL
                .iter()
                .find(|c| c.name() == other)
                .map(|c| Behaviour::Cheat(*c))
                .ok_or_else(|| {
                    let cheats: Vec<&str> = Cheat::ALL.iter().map(|c| c.name()).collect();
                    format!(
                        "unknown behaviour {other:?}: honest, lazy, noise or a cheat ({})",
                        cheats.join(", ")
                    )
                }),
        }
    }
}

impl std::fmt::Display for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Behaviour::Honest => "honest",
            Behaviour::Lazy => "lazy",
            Behaviour::Noise => "noise",
            Behaviour::Cheat(c) => c.name(),
        })
    }
}

/// The training a task asks for, and the miner's resources.
#[derive(Debug, Clone)]
pub struct Work {
    pub task: ReplayTask,
    pub threads: usize,
    /// Training must end by then (the submission deadline less a margin).
    pub deadline: Instant,
}

/// What a behaviour produced: the update and the record of the run it commits to.
#[derive(Debug, Clone)]
pub struct Produced {
    pub update: SegmentUpdate,
    pub record: RunRecord,
}

impl Produced {
    pub fn steps(&self) -> u64 {
        self.record.last().map_or(0, |s| s.step)
    }
}

/// Produces the upload from the task's start `model` and the miner's `shard`. Blocking
/// (CPU-bound): run it off the async executor.
pub fn produce(
    behaviour: Behaviour,
    model: &Model,
    shard: &Samples,
    work: &Work,
) -> learning::Result<Produced> {
    let task = &work.task;
    let (train, validation) = split(shard, task.train_samples)?;
    let initial = TrainState::initial(model, &[&task.segment], task.momentum)?;
    match behaviour {
        Behaviour::Honest => honest(model, &train, &validation, work),
        Behaviour::Lazy => Ok(untrained(model, task, initial, None)?),
        Behaviour::Noise => {
            let mut rng = rand::thread_rng();
            let mut update = SegmentUpdate::from_model(model, &task.segment)?;
            for tensor in &mut update.tensors {
                for value in &mut tensor.values {
                    *value = rng.gen_range(-NOISE_MAGNITUDE..=NOISE_MAGNITUDE);
                }
            }
            untrained(model, task, initial, Some(update))
        }
        Behaviour::Cheat(cheat) => cheat_run(cheat, model, &train, &validation, work),
    }
}

/// Most validation samples an honest miner evaluates at each recorded state. Early stopping
/// needs a trend, not the whole part: on a text shard the part is thousands of 64-token
/// windows, and evaluating all of them at each of a run's ~140 states would take a fifth of
/// the window from training. 256 windows are 16k tokens (a digits shard's part is smaller).
pub const VALIDATION_SAMPLES_MAX: usize = 256;

/// The task's training part and the miner's validation part of its shard (its first
/// [`VALIDATION_SAMPLES_MAX`] samples after the training part).
fn split(shard: &Samples, train_samples: u64) -> learning::Result<(Samples, Samples)> {
    let n = (train_samples as usize).min(shard.len());
    let train = shard.select(&(0..n).collect::<Vec<_>>());
    let validation = if n < shard.len() {
        let end = shard.len().min(n + VALIDATION_SAMPLES_MAX);
        shard.select(&(n..end).collect::<Vec<_>>())
    } else {
        train.clone()
    };
    Ok((train, validation))
}

/// A zero-step run (only the step-0 state), uploading `update` or the segment unchanged.
fn untrained(
    model: &Model,
    task: &ReplayTask,
    initial: TrainState,
    update: Option<SegmentUpdate>,
) -> learning::Result<Produced> {
    let mut record = RunRecord::new(task.checkpoint_interval);
    record.push(initial);
    let update = match update {
        Some(u) => u,
        None => SegmentUpdate::from_model(model, &task.segment)?,
    };
    Ok(Produced { update, record })
}

fn validation_loss(
    model: &Model,
    segment: &str,
    state: &TrainState,
    validation: &Samples,
) -> learning::Result<f32> {
    let mut trial = model.clone();
    state.to_update(model, segment)?.apply_to(&mut trial)?;
    Ok(evaluate(&trial, validation)?.loss)
}

/// The task's run until the deadline or the step budget, ending in its last state; or, when
/// the budget is more than [`EARLY_STOPPING_EPOCHS`] epochs of the shard, until
/// [`PATIENCE_VALIDATIONS`] validations without a better validation loss; it ends at the validated state with the
/// lowest validation loss. If none beats the start, it ends at the first recorded state after
/// it: the smallest real step, which the coordinator's held-out measurement may still find
/// useful (an unchanged segment is sure to score zero).
fn honest(
    model: &Model,
    train: &Samples,
    validation: &Samples,
    work: &Work,
) -> learning::Result<Produced> {
    let task = &work.task;
    // Within a few epochs a run cannot overfit its shard much (a language model's shard
    // is far larger than a window's steps): it trains to its deadline or budget and submits
    // its end. Beyond that it early-stops on its validation part.
    let early_stopping = task.steps_max.saturating_mul(u64::from(task.batch))
        > (train.len() as u64).saturating_mul(EARLY_STOPPING_EPOCHS);
    if !early_stopping {
        // It submits where it ended, validated by the coordinator's held-out measurement
        // alone: falling back to an earlier state would both waste the run and make its
        // next budget, paced from the steps it commits to, too small.
        let run = proof::run_task_until(
            task,
            model,
            train,
            work.threads,
            Some(work.deadline),
            |_| true,
            |states| states.len() - 1,
        )?;
        return Ok(Produced {
            update: run.update,
            record: run.record,
        });
    }
    // The run's end is validated after training stops: keep that time (one validation, as
    // the start's takes) out of the window so the submission is not late.
    let timed = Instant::now();
    let start = evaluate(model, validation)?.loss;
    let deadline = work
        .deadline
        .checked_sub(timed.elapsed())
        .unwrap_or(work.deadline);
    let spacing = (task.steps_max / VALIDATIONS_PER_RUN).max(1);
    let mut next_validation = spacing;
    // Index of the state `go_on` sees among the recorded ones (the start is 0).
    let mut recorded = 0usize;
    // (loss, index among the recorded states) of the best validated state, and the index of
    // the last state validated; read again when the run picks its end.
    let best = std::cell::Cell::new((start, 0usize));
    let validated = std::cell::Cell::new(0usize);
    let mut failures = 0;
    let better = |loss: f32, index: usize| {
        validated.set(index);
        if loss < best.get().0 {
            best.set((loss, index));
            true
        } else {
            false
        }
    };
    let run = proof::run_task_until(
        task,
        model,
        train,
        work.threads,
        Some(deadline),
        |state| {
            recorded += 1;
            let probe = state.step.is_power_of_two() && state.step <= task.checkpoint_interval;
            if !(probe || state.step >= next_validation) {
                return true;
            }
            while next_validation <= state.step {
                next_validation = next_validation.saturating_add(spacing);
            }
            let loss = validation_loss(model, &task.segment, state, validation).unwrap_or(f32::MAX);
            if better(loss, recorded) {
                failures = 0;
            } else {
                failures += 1;
            }
            failures < PATIENCE_VALIDATIONS
        },
        |states| {
            // The run's end (its deadline or budget) is always a candidate: validate it if
            // no validation fell on it, so no training is dropped unweighed.
            let last = states.len() - 1;
            if validated.get() < last {
                let loss = validation_loss(model, &task.segment, &states[last], validation)
                    .unwrap_or(f32::MAX);
                better(loss, last);
            }
            match best.get().1 {
                0 => 1.min(last),
                index => index,
            }
        },
    )?;
    Ok(Produced {
        update: run.update,
        record: run.record,
    })
}

fn cheat_run(
    cheat: Cheat,
    model: &Model,
    train: &Samples,
    validation: &Samples,
    work: &Work,
) -> learning::Result<Produced> {
    let task = &work.task;
    // Each cheat stays within the window by running at most a quarter of the budget.
    let steps = (task.steps_max / 4).max(task.checkpoint_interval);
    let run_with = |task: &ReplayTask, samples: &Samples, stride: u64| {
        let mut t = task.clone();
        t.steps_max = steps / stride;
        proof::run_task_until(
            &t,
            model,
            samples,
            work.threads,
            Some(work.deadline),
            |_| true,
            |s| s.len() - 1,
        )
    };
    let relabel = |record: &RunRecord, factor: u64| {
        let mut out = RunRecord::new(task.checkpoint_interval);
        for state in record.states() {
            let mut state = state.clone();
            state.step *= factor;
            if out.is_checkpoint(state.step)
                || state.step == record.last().map_or(0, |l| l.step) * factor
            {
                out.push(state);
            }
        }
        out
    };
    match cheat {
        Cheat::OtherData => {
            let run = run_with(task, validation, 1)?;
            Ok(Produced {
                update: run.update,
                record: run.record,
            })
        }
        Cheat::WrongOrder => {
            let mut t = task.clone();
            t.batch_seed = t.batch_seed.wrapping_add(1);
            let run = run_with(&t, train, 1)?;
            Ok(Produced {
                update: run.update,
                record: run.record,
            })
        }
        Cheat::WrongRate => {
            let mut t = task.clone();
            t.lr *= 2.0;
            let run = run_with(&t, train, 1)?;
            Ok(Produced {
                update: run.update,
                record: run.record,
            })
        }
        Cheat::SkipSteps => {
            // Half the steps with half the interval, each state labelled with twice its step.
            let mut t = task.clone();
            t.checkpoint_interval = (task.checkpoint_interval / 2).max(1);
            let run = run_with(&t, train, 2)?;
            let record = relabel(&run.record, 2);
            let update = record
                .last()
                .expect("a run has a state")
                .to_update(model, &task.segment)?;
            Ok(Produced { update, record })
        }
        Cheat::Perturb => {
            let mut run = run_with(task, train, 1)?;
            let mut rng = rand::thread_rng();
            for tensor in &mut run.update.tensors {
                for value in &mut tensor.values {
                    *value += rng.gen_range(-1e-3..=1e-3);
                }
            }
            Ok(Produced {
                update: run.update,
                record: run.record,
            })
        }
        Cheat::Rescale => {
            let base = SegmentUpdate::from_model(model, &task.segment)?;
            let mut best = (evaluate(model, validation)?.loss, base.clone());
            for factor in [0.5f32, 0.8, 1.25, 1.5, 2.0, 3.0] {
                let mut scaled = base.clone();
                scaled
                    .tensors
                    .iter_mut()
                    .for_each(|t| t.values.iter_mut().for_each(|v| *v *= factor));
                let mut trial = model.clone();
                scaled.apply_to(&mut trial)?;
                let loss = evaluate(&trial, validation)?.loss;
                if loss < best.0 {
                    best = (loss, scaled);
                }
            }
            // A transcript that claims a run ending in the rescaled weights.
            let initial = TrainState::initial(model, &[&task.segment], task.momentum)?;
            let mut record = RunRecord::new(task.checkpoint_interval);
            let claimed = steps;
            record.push(initial.clone());
            for step in proof::checkpoint_steps(claimed, task.checkpoint_interval)
                .into_iter()
                .skip(1)
            {
                record.push(TrainState {
                    step,
                    weights: best.1.tensors.iter().map(|t| t.values.clone()).collect(),
                    velocity: initial.velocity.clone(),
                });
            }
            Ok(Produced {
                update: best.1,
                record,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::{Secp256k1, SecretKey};
    use learning::{evaluate, model_hash, ModelSpec};
    use primitives::Hash256;
    use std::time::Duration;

    fn setup() -> (Model, Samples, Work) {
        let spec = ModelSpec::Mlp {
            input: 4,
            hidden: vec![8],
            classes: 2,
        };
        let features: Vec<f32> = (0..80 * 4)
            .map(|i| ((i * 13 % 17) as f32 / 8.0) - 1.0)
            .collect();
        let labels: Vec<u32> = (0..80)
            .map(|i| u32::from(features[i * 4] + features[i * 4 + 1] > 0.0))
            .collect();
        let shard = Samples::new(features, labels, 4).unwrap();
        let model = Model::new(spec, 3).unwrap();
        let task = ReplayTask {
            cycle: 1,
            miner: SecretKey::from_slice(&[3; 32])
                .unwrap()
                .public_key(&Secp256k1::new()),
            model_hash: Hash256(model_hash(&model)),
            segment: "layer0".into(),
            shard_hash: Hash256::ZERO,
            train_samples: 64,
            lr: 0.1,
            momentum: 0.0,
            batch: 16,
            steps_max: 256,
            checkpoint_interval: 4,
            batch_seed: 5,
        };
        let work = Work {
            task,
            threads: 1,
            deadline: Instant::now() + Duration::from_secs(30),
        };
        (model, shard, work)
    }

    #[test]
    fn honest_trains_lazy_changes_nothing_noise_changes_only_the_segment() {
        let (initial, shard, work) = setup();

        let honest = produce(Behaviour::Honest, &initial, &shard, &work).unwrap();
        assert!(honest.steps() > 0);
        assert!(honest.record.is_complete());
        let mut trained = initial.clone();
        honest.update.apply_to(&mut trained).unwrap();
        assert!(
            evaluate(&trained, &shard).unwrap().loss < evaluate(&initial, &shard).unwrap().loss
        );

        let lazy = produce(Behaviour::Lazy, &initial, &shard, &work).unwrap();
        assert_eq!(lazy.steps(), 0);
        assert_eq!(
            lazy.update,
            SegmentUpdate::from_model(&initial, "layer0").unwrap()
        );

        let noise = produce(Behaviour::Noise, &initial, &shard, &work).unwrap();
        assert_ne!(noise.update, lazy.update);
        assert!("greedy".parse::<Behaviour>().is_err());
        for cheat in Cheat::ALL {
            assert_eq!(
                cheat.name().parse::<Behaviour>(),
                Ok(Behaviour::Cheat(cheat))
            );
            let produced = produce(Behaviour::Cheat(cheat), &initial, &shard, &work).unwrap();
            assert!(produced.record.is_complete(), "{}", cheat.name());
        }
    }

    #[test]
    fn a_budget_within_one_epoch_trains_to_its_end_and_a_longer_one_stops_early() {
        let (initial, shard, mut work) = setup();
        // 4 steps of 16 are the 64 training samples once: nothing to overfit, so no early
        // stop: the run takes its whole budget.
        work.task.steps_max = 4;
        let within = produce(Behaviour::Honest, &initial, &shard, &work).unwrap();
        assert_eq!(within.steps(), 4);
        // 4,096 steps are 1,024 epochs of the 64 samples. With the validation part labelled
        // against the training rule (what training on it does to unseen data when it
        // overfits), the validation loss rises from the first steps and the run stops early.
        work.task.steps_max = 4_096;
        work.task.checkpoint_interval = 32;
        let features = (0..shard.len())
            .flat_map(|i| shard.row(i).to_vec())
            .collect::<Vec<f32>>();
        let labels = (0..shard.len())
            .map(|i| {
                let rule = u32::from(shard.row(i)[0] + shard.row(i)[1] > 0.0);
                if i < 64 {
                    rule
                } else {
                    1 - rule
                }
            })
            .collect();
        let overfitting = Samples::new(features, labels, 4).unwrap();
        let long = produce(Behaviour::Honest, &initial, &overfitting, &work).unwrap();
        assert!(long.steps() < 4_096, "{}", long.steps());
    }
}
