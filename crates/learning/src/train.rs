//! SGD training of chosen segments on a shard, for a step or wall-clock budget.
//!
//! MLPs train through [`crate::fused_mlp`], a hand-fused step on reused buffers; CNNs
//! through candle's autograd ([`crate::autograd`]). Both draw batches from the same
//! seeded [`BatchOrder`] and touch only the parameters of the segments they are given.

use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{LearningError, Result};
use crate::model::{segment_of, Model, ModelSpec};
use crate::samples::Samples;

/// Largest thread count a config may ask for; more is a configuration mistake, and a
/// bound keeps a hostile task from making a miner spawn threads without end.
pub const THREADS_MAX: usize = 1024;

/// Largest batch a config may ask for: the step allocates buffers of this many rows, so a task
/// from a hostile coordinator must not choose it freely. Far above any useful SGD batch.
pub const BATCH_MAX: usize = 65_536;

/// How long to train.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Budget {
    /// Exactly this many SGD steps (what verification replays).
    Steps(u64),
    /// Steps until this much time has passed (checked before each step). The report
    /// says how many steps ran, so the run can be replayed with [`Budget::Steps`].
    WallClock(Duration),
}

/// Hyper-parameters and resources of one training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Learning rate.
    pub lr: f32,
    /// SGD momentum in `[0, 1)`; 0 is plain SGD. The velocity starts at zero each run
    /// and is updated as in PyTorch: `v = momentum * v + g; w -= lr * v`.
    pub momentum: f32,
    /// Samples per step.
    pub batch: usize,
    /// When to stop.
    pub budget: Budget,
    /// Seeds the batch order.
    pub seed: u64,
    /// Worker threads the run may use (a dedicated pool; results do not depend on it).
    pub threads: usize,
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// SGD steps taken.
    pub steps: u64,
    /// Samples processed (`steps * batch`).
    pub samples: u64,
    /// Seconds spent in the training loop.
    pub train_secs: f64,
    /// Mean batch loss of every step, in order.
    pub loss_curve: Vec<f32>,
}

/// The endless seeded sample order: consecutive epochs, each a fresh ChaCha8 shuffle of
/// the shard, cut into batches (a batch may straddle two epochs).
pub struct BatchOrder {
    rng: ChaCha8Rng,
    epoch: Vec<usize>,
    position: usize,
}

impl BatchOrder {
    /// The order for a shard of `sample_count` samples under `seed`.
    pub fn new(sample_count: usize, seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            epoch: (0..sample_count).collect(),
            position: sample_count,
        }
    }

    /// Fills `batch` with the next sample indices.
    pub fn next_batch(&mut self, batch: &mut [usize]) {
        for slot in batch {
            if self.position == self.epoch.len() {
                self.epoch.shuffle(&mut self.rng);
                self.position = 0;
            }
            *slot = self.epoch[self.position];
            self.position += 1;
        }
    }
}

/// One SGD step over the given sample indices, returning the mean batch loss; `finish`
/// writes the trained parameters back into the model.
pub(crate) trait Stepper {
    fn step(&mut self, batch: &[usize]) -> Result<f32>;
    fn finish(self, model: &mut Model) -> Result<()>;
}

/// Which implementation runs the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    /// The fused MLP step for MLPs, candle autograd otherwise.
    Fastest,
    /// candle autograd for every model (a reference to check the fused step against).
    #[cfg(test)]
    Autograd,
}

/// Trains the segments named in `segments` of `model` on `shard`; every other parameter
/// stays bit-identical. Same model, shard, segments and config (any `threads`) give
/// bit-identical weights.
pub fn train<S: AsRef<str>>(
    model: &mut Model,
    segments: &[S],
    shard: &Samples,
    config: &TrainConfig,
) -> Result<TrainReport> {
    train_with(model, segments, shard, config, Engine::Fastest)
}

pub(crate) fn train_with<S: AsRef<str>>(
    model: &mut Model,
    segments: &[S],
    shard: &Samples,
    config: &TrainConfig,
    engine: Engine,
) -> Result<TrainReport> {
    let trainable = trainable_params(model, segments)?;
    check_config(config)?;
    check_samples_fit(model.spec(), shard)?;
    if shard.is_empty() {
        return Err(LearningError::TooFewSamples {
            reason: "cannot train on an empty shard".into(),
        });
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()?;
    pool.install(|| match (model.spec(), engine) {
        (ModelSpec::Mlp { .. }, Engine::Fastest) => {
            let stepper = crate::fused_mlp::MlpStepper::new(model, &trainable, shard, config)?;
            run_loop(stepper, model, shard, config)
        }
        _ => {
            let stepper = crate::autograd::AutogradStepper::new(model, &trainable, shard, config)?;
            run_loop(stepper, model, shard, config)
        }
    })
}

fn run_loop(
    mut stepper: impl Stepper,
    model: &mut Model,
    shard: &Samples,
    config: &TrainConfig,
) -> Result<TrainReport> {
    let mut order = BatchOrder::new(shard.len(), config.seed);
    let mut batch = vec![0usize; config.batch];
    let mut loss_curve = Vec::new();
    let started = Instant::now();
    let mut steps = 0u64;
    loop {
        let more = match config.budget {
            Budget::Steps(limit) => steps < limit,
            Budget::WallClock(limit) => started.elapsed() < limit,
        };
        if !more {
            break;
        }
        order.next_batch(&mut batch);
        let loss = stepper.step(&batch)?;
        if !loss.is_finite() {
            return Err(LearningError::Diverged { step: steps });
        }
        loss_curve.push(loss);
        steps += 1;
    }
    let train_secs = started.elapsed().as_secs_f64();
    stepper.finish(model)?;
    Ok(TrainReport {
        steps,
        samples: steps * config.batch as u64,
        train_secs,
        loss_curve,
    })
}

/// For each parameter in model order, whether it is trained; errors on unknown or no
/// segments.
fn trainable_params<S: AsRef<str>>(model: &Model, segments: &[S]) -> Result<Vec<bool>> {
    if segments.is_empty() {
        return Err(LearningError::InvalidTrainConfig(
            "no segment to train".into(),
        ));
    }
    let known = model.segments();
    for name in segments {
        if !known.iter().any(|s| s.name == name.as_ref()) {
            return Err(LearningError::UnknownSegment(name.as_ref().to_owned()));
        }
    }
    Ok(model
        .params()
        .iter()
        .map(|p| segments.iter().any(|s| s.as_ref() == segment_of(&p.name)))
        .collect())
}

fn check_config(config: &TrainConfig) -> Result<()> {
    let bad = |why: String| Err(LearningError::InvalidTrainConfig(why));
    if !(config.lr.is_finite() && config.lr > 0.0) {
        return bad(format!(
            "learning rate {} must be finite and positive",
            config.lr
        ));
    }
    if !(0.0..1.0).contains(&config.momentum) {
        return bad(format!("momentum {} must be in [0, 1)", config.momentum));
    }
    if config.batch == 0 || config.batch > BATCH_MAX {
        return bad(format!("batch {} must be in 1..={BATCH_MAX}", config.batch));
    }
    if config.threads == 0 || config.threads > THREADS_MAX {
        return bad(format!(
            "threads {} must be in 1..={THREADS_MAX}",
            config.threads
        ));
    }
    Ok(())
}

/// Checks the samples' width and labels against the model.
pub(crate) fn check_samples_fit(spec: &ModelSpec, samples: &Samples) -> Result<()> {
    if samples.feature_count() != spec.input_features() {
        return Err(LearningError::SamplesDoNotFitModel(format!(
            "{} features per sample, model takes {}",
            samples.feature_count(),
            spec.input_features()
        )));
    }
    if let Some(label) = samples
        .labels()
        .iter()
        .find(|&&l| l as usize >= spec.classes())
    {
        return Err(LearningError::SamplesDoNotFitModel(format!(
            "label {label} but the model has {} classes",
            spec.classes()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused MLP step must compute what candle's autograd computes (up to float
    /// rounding), with and without momentum, and with a frozen layer in the middle.
    #[test]
    fn fused_mlp_step_matches_candle_autograd() {
        let spec = ModelSpec::Mlp {
            input: 12,
            hidden: vec![16, 8],
            classes: 5,
        };
        let features: Vec<f32> = (0..40 * 12)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let labels: Vec<u32> = (0..40).map(|i| (i * 7 % 5) as u32).collect();
        let shard = Samples::new(features, labels, 12).unwrap();
        for (momentum, segments) in [
            (0.0, vec!["layer0", "layer1", "layer2"]),
            (0.9, vec!["layer0", "layer2"]),
        ] {
            let config = TrainConfig {
                lr: 0.1,
                momentum,
                batch: 8,
                budget: Budget::Steps(15),
                seed: 3,
                threads: 1,
            };
            let mut fused = Model::new(spec.clone(), 9).unwrap();
            let mut reference = fused.clone();
            let fused_report =
                train_with(&mut fused, &segments, &shard, &config, Engine::Fastest).unwrap();
            let reference_report =
                train_with(&mut reference, &segments, &shard, &config, Engine::Autograd).unwrap();
            for (a, b) in fused_report
                .loss_curve
                .iter()
                .zip(&reference_report.loss_curve)
            {
                assert!((a - b).abs() < 1e-4, "loss {a} vs {b}");
            }
            for (a, b) in fused.params().iter().zip(reference.params()) {
                for (x, y) in a.values.iter().zip(&b.values) {
                    assert!((x - y).abs() < 1e-4, "{}: {x} vs {y}", a.name);
                }
            }
            assert_ne!(fused, Model::new(spec.clone(), 9).unwrap());
        }
    }
}
