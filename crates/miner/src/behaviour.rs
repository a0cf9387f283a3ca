//! What a miner uploads: honest training, or (for devnet bad-actor tests) an unchanged or a
//! random segment. The coordinator must score the last two at zero.

use learning::{evaluate, train, Budget, Model, Samples, SegmentUpdate, TrainConfig, TrainReport};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Early stopping, one checkpoint per epoch over the miner's training part of the shard: the
/// coordinator pays only for a lower held-out loss, and a small shard overfits within a few
/// epochs (a 3-second devnet window is hundreds of epochs of a digits shard). An epoch that does
/// not improve the validation loss is undone and the learning rate halved (backtracking), so a
/// miner starting from an already good global model still finds a step that helps; after this
/// many such epochs in a row the miner stops for the cycle.
pub const PATIENCE_EPOCHS: u32 = 4;

/// Upper bound on epochs per cycle, a guard for a window far longer than the shard needs; the
/// window and [`PATIENCE_EPOCHS`] end training well before it in practice.
pub const EPOCHS_MAX: u32 = 10_000;

/// Fraction of the shard kept aside for validation (the rest is trained on).
pub const VALIDATION_FRACTION: f64 = 0.2;

/// Largest magnitude of a noise weight: large enough to wreck the layer's output, finite.
pub const NOISE_MAGNITUDE: f32 = 1.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Trains its segment for the whole training window.
    Honest,
    /// Uploads its segment unchanged (no training).
    Lazy,
    /// Uploads uniform noise in place of its segment.
    Noise,
}

impl FromStr for Behaviour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "honest" => Ok(Behaviour::Honest),
            "lazy" => Ok(Behaviour::Lazy),
            "noise" => Ok(Behaviour::Noise),
            other => Err(format!(
                "unknown behaviour {other:?}: honest, lazy or noise"
            )),
        }
    }
}

impl std::fmt::Display for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Behaviour::Honest => "honest",
            Behaviour::Lazy => "lazy",
            Behaviour::Noise => "noise",
        })
    }
}

/// The training a task asks for.
#[derive(Debug, Clone)]
pub struct Work {
    pub segment: String,
    pub lr: f32,
    pub momentum: f32,
    pub batch: usize,
    pub seed: u64,
    pub threads: usize,
    pub window: Duration,
}

/// Produces the segment to upload, changing `model` in place. Blocking (CPU-bound): run it
/// off the async executor.
pub fn produce(
    behaviour: Behaviour,
    model: &mut Model,
    shard: &Samples,
    work: &Work,
) -> learning::Result<Option<TrainReport>> {
    match behaviour {
        Behaviour::Honest => train_with_early_stopping(model, shard, work).map(Some),
        Behaviour::Lazy => Ok(None),
        Behaviour::Noise => {
            let mut rng = rand::thread_rng();
            let mut update = SegmentUpdate::from_model(model, &work.segment)?;
            for tensor in &mut update.tensors {
                for value in &mut tensor.values {
                    *value = rng.gen_range(-NOISE_MAGNITUDE..=NOISE_MAGNITUDE);
                }
            }
            update.apply_to(model)?;
            Ok(None)
        }
    }
}

/// Trains epoch by epoch on most of the shard until the window ends, patience runs out or
/// [`EPOCHS_MAX`], and leaves `model` at the epoch with the lowest loss on the rest of the shard
/// (the starting weights included).
fn train_with_early_stopping(
    model: &mut Model,
    shard: &Samples,
    work: &Work,
) -> learning::Result<TrainReport> {
    let started = Instant::now();
    let validation_len = ((shard.len() as f64) * VALIDATION_FRACTION) as usize;
    let (train_set, validation) = if validation_len == 0 || validation_len == shard.len() {
        (shard.clone(), shard.clone())
    } else {
        let split = shard.len() - validation_len;
        (
            shard.select(&(0..split).collect::<Vec<_>>()),
            shard.select(&(split..shard.len()).collect::<Vec<_>>()),
        )
    };
    let epoch_steps = train_set.len().div_ceil(work.batch.max(1)).max(1) as u64;
    let mut best = (evaluate(model, &validation)?.loss, model.clone());
    let mut total = TrainReport {
        steps: 0,
        samples: 0,
        train_secs: 0.0,
        loss_curve: Vec::new(),
    };
    let mut lr = work.lr;
    let mut failures = 0;
    let mut last_epoch = Duration::ZERO;
    // The weights of the last epoch that did not improve: trained with the smallest rate tried.
    let mut smallest_step: Option<Model> = None;
    let mut improved = false;
    for epoch in 0..EPOCHS_MAX {
        // Stop before an epoch that would not finish inside the window.
        if started.elapsed() + last_epoch >= work.window || failures >= PATIENCE_EPOCHS {
            break;
        }
        let epoch_started = Instant::now();
        let config = TrainConfig {
            lr,
            momentum: work.momentum,
            batch: work.batch,
            budget: Budget::Steps(epoch_steps),
            seed: work.seed.wrapping_add(u64::from(epoch)),
            threads: work.threads,
        };
        let report = train(model, &[&work.segment], &train_set, &config)?;
        total.steps += report.steps;
        total.samples += report.samples;
        total.train_secs += report.train_secs;
        total.loss_curve.extend(report.loss_curve);
        let loss = evaluate(model, &validation)?.loss;
        last_epoch = epoch_started.elapsed();
        if loss < best.0 {
            best = (loss, model.clone());
            improved = true;
            failures = 0;
        } else {
            smallest_step = Some(model.clone());
            model.clone_from(&best.1);
            lr /= 2.0;
            failures += 1;
        }
    }
    *model = match smallest_step {
        // No epoch beat the starting weights on the validation part, which is too small to tell
        // a tiny step from noise: submit the smallest step tried (real SGD on the shard) rather
        // than the unchanged segment, which is sure to score zero. The coordinator's held-out
        // measurement decides whether it helped.
        Some(step) if !improved => step,
        _ => best.1,
    };
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use learning::{evaluate, ModelSpec};

    fn setup() -> (Model, Samples, Work) {
        let spec = ModelSpec::Mlp {
            input: 4,
            hidden: vec![8],
            classes: 2,
        };
        let features: Vec<f32> = (0..64 * 4)
            .map(|i| ((i * 13 % 17) as f32 / 8.0) - 1.0)
            .collect();
        let labels: Vec<u32> = (0..64)
            .map(|i| u32::from(features[i * 4] + features[i * 4 + 1] > 0.0))
            .collect();
        let shard = Samples::new(features, labels, 4).unwrap();
        let work = Work {
            segment: "layer0".into(),
            lr: 0.1,
            momentum: 0.0,
            batch: 16,
            seed: 1,
            threads: 1,
            window: Duration::from_millis(100),
        };
        (Model::new(spec, 3).unwrap(), shard, work)
    }

    #[test]
    fn honest_trains_lazy_changes_nothing_noise_changes_only_the_segment() {
        let (initial, shard, work) = setup();

        let mut honest = initial.clone();
        let report = produce(Behaviour::Honest, &mut honest, &shard, &work)
            .unwrap()
            .unwrap();
        assert!(report.steps > 0);
        assert!(evaluate(&honest, &shard).unwrap().loss < evaluate(&initial, &shard).unwrap().loss);

        let mut lazy = initial.clone();
        assert!(produce(Behaviour::Lazy, &mut lazy, &shard, &work)
            .unwrap()
            .is_none());
        assert_eq!(lazy, initial);

        let mut noise = initial.clone();
        produce(Behaviour::Noise, &mut noise, &shard, &work).unwrap();
        assert_ne!(
            noise.param("layer0.weight").unwrap(),
            initial.param("layer0.weight").unwrap()
        );
        assert_eq!(
            noise.param("layer1.weight").unwrap(),
            initial.param("layer1.weight").unwrap()
        );
        assert!("greedy".parse::<Behaviour>().is_err());
    }
}
