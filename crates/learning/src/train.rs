//! SGD training of chosen segments on a shard, for a step or wall-clock budget.
//!
//! MLPs train through [`crate::fused_mlp`], CNNs through [`crate::fused_cnn`], transformers
//! through [`crate::fused_transformer`]: hand-fused
//! steps on reused buffers, checked in tests against candle's autograd ([`crate::autograd`]).
//! Both draw batches from the same seeded [`BatchOrder`] and touch only the parameters of the
//! segments they are given. Their matrix products run on [`crate::kernel`] at the process's
//! SIMD level ([`Simd::from_env`]) or one the caller pins ([`train_with_kernel`]).

use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::TrainState;
use crate::error::{LearningError, Result};
use crate::kernel::{Kernel, Simd};
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

/// The endless seeded sample order: consecutive epochs cut into batches (a batch may straddle
/// two epochs). Epoch `e` is `0..sample_count` shuffled (`SliceRandom::shuffle`) by
/// `ChaCha8Rng::seed_from_u64(seed)` on stream `e`: each epoch depends only on (seed, e), so
/// a replay can start at any step without drawing the epochs before it.
pub struct BatchOrder {
    seed: u64,
    next_epoch: u64,
    epoch: Vec<usize>,
    position: usize,
}

impl BatchOrder {
    /// The order for a shard of `sample_count` samples under `seed`.
    pub fn new(sample_count: usize, seed: u64) -> Self {
        Self::starting_at(sample_count, seed, 0)
    }

    /// The same order with its first `skipped` samples already drawn.
    pub fn starting_at(sample_count: usize, seed: u64, skipped: u64) -> Self {
        let mut order = Self {
            seed,
            next_epoch: 0,
            epoch: (0..sample_count).collect(),
            position: sample_count,
        };
        if sample_count > 0 && skipped > 0 {
            let n = sample_count as u64;
            order.next_epoch = skipped / n;
            order.position = sample_count;
            // The partly drawn epoch is shuffled now; the position continues inside it.
            let within = (skipped % n) as usize;
            if within > 0 {
                order.shuffle_next_epoch();
                order.position = within;
            }
        }
        order
    }

    fn shuffle_next_epoch(&mut self) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(self.next_epoch);
        for (i, slot) in self.epoch.iter_mut().enumerate() {
            *slot = i;
        }
        self.epoch.shuffle(&mut rng);
        self.next_epoch += 1;
        self.position = 0;
    }

    /// Fills `batch` with the next sample indices.
    pub fn next_batch(&mut self, batch: &mut [usize]) {
        for slot in batch {
            if self.position == self.epoch.len() {
                self.shuffle_next_epoch();
            }
            *slot = self.epoch[self.position];
            self.position += 1;
        }
    }
}

/// One SGD step over the given sample indices, returning the mean batch loss; `state` reads
/// the trained parameters and their momentum; `finish` writes the trained parameters back into
/// the model.
pub(crate) trait Stepper: Send {
    fn step(&mut self, batch: &[usize]) -> Result<f32>;
    /// Values and velocity of every trained parameter, in model order. The velocity is empty
    /// when momentum is 0 and all zeros before the first step.
    fn state(&self) -> Result<Vec<(Vec<f32>, Vec<f32>)>>;
    /// Replaces the velocity of every trained parameter (in model order), to resume a run.
    fn set_velocity(&mut self, velocity: &[Vec<f32>]) -> Result<()>;
    fn finish(self: Box<Self>, model: &mut Model) -> Result<()>;
}

/// Which implementation runs the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    /// The fused step on the reproducible kernel (MLP or CNN).
    Fastest,
    /// candle autograd for every model (a reference to check the fused step against).
    #[cfg(test)]
    Autograd,
}

/// Trains the segments named in `segments` of `model` on `shard`; every other parameter
/// stays bit-identical. Same model, shard, segments and config (any `threads`) give
/// bit-identical weights, on any CPU and at any SIMD level for MLPs (see
/// [`crate::kernel`]). The level is the process's ([`Simd::from_env`]): an unknown or
/// unavailable `TRAINCHAIN_SIMD` is an error.
pub fn train<S: AsRef<str>>(
    model: &mut Model,
    segments: &[S],
    shard: &Samples,
    config: &TrainConfig,
) -> Result<TrainReport> {
    let kernel = Kernel::Reproducible(Simd::from_env()?);
    train_with(model, segments, shard, config, Engine::Fastest, kernel)
}

/// [`train`] with the MLP step's matrix products on `kernel` (a pinned SIMD level, or
/// the `gemm` crate for benchmarks). CNNs train through candle whatever `kernel` is.
pub fn train_with_kernel<S: AsRef<str>>(
    model: &mut Model,
    segments: &[S],
    shard: &Samples,
    config: &TrainConfig,
    kernel: Kernel,
) -> Result<TrainReport> {
    train_with(model, segments, shard, config, Engine::Fastest, kernel)
}

pub(crate) fn train_with<S: AsRef<str>>(
    model: &mut Model,
    segments: &[S],
    shard: &Samples,
    config: &TrainConfig,
    engine: Engine,
    kernel: Kernel,
) -> Result<TrainReport> {
    let mut trainer = Trainer::start_with(model, segments, shard, config, None, engine, kernel)?;
    match config.budget {
        Budget::Steps(limit) => trainer.run(limit)?,
        Budget::WallClock(limit) => {
            trainer.run_until(Instant::now() + limit, u64::MAX)?;
        }
    }
    trainer.finish(model)
}

/// A training run that can be stopped, inspected and resumed at any step: what a miner needs
/// to commit to its training state every few steps, and what a verifier needs to replay one
/// interval of someone else's run from its committed state.
///
/// The run is a pure function of (model, segments, shard, config without `budget` and
/// `threads`, start state, steps): resuming from the state a run had at step `s` and running
/// `n` steps gives the same bits as the run had at step `s + n`.
pub struct Trainer<'a> {
    stepper: Box<dyn Stepper + 'a>,
    order: BatchOrder,
    batch: Vec<usize>,
    pool: std::sync::Arc<rayon::ThreadPool>,
    steps: u64,
    batch_size: usize,
    loss_curve: Vec<f32>,
    train_secs: f64,
}

impl<'a> Trainer<'a> {
    /// A run from `model`'s current weights at step 0 (velocity zero).
    pub fn start<S: AsRef<str>>(
        model: &Model,
        segments: &[S],
        shard: &'a Samples,
        config: &TrainConfig,
    ) -> Result<Self> {
        let kernel = Kernel::Reproducible(Simd::from_env()?);
        Self::start_with(
            model,
            segments,
            shard,
            config,
            None,
            Engine::Fastest,
            kernel,
        )
    }

    /// [`Trainer::start`] with the MLP step's matrix products on `kernel`.
    pub fn start_with_kernel<S: AsRef<str>>(
        model: &Model,
        segments: &[S],
        shard: &'a Samples,
        config: &TrainConfig,
        kernel: Kernel,
    ) -> Result<Self> {
        Self::start_with(
            model,
            segments,
            shard,
            config,
            None,
            Engine::Fastest,
            kernel,
        )
    }

    /// The run that had `state` at `state.step`: `model` is the run's start model (every
    /// parameter not trained is taken from it), the trained parameters and their velocity
    /// from `state`, and the batch order is advanced past `state.step` batches.
    pub fn resume<S: AsRef<str>>(
        model: &Model,
        segments: &[S],
        shard: &'a Samples,
        config: &TrainConfig,
        state: &TrainState,
    ) -> Result<Self> {
        let kernel = Kernel::Reproducible(Simd::from_env()?);
        Self::start_with(
            model,
            segments,
            shard,
            config,
            Some(state),
            Engine::Fastest,
            kernel,
        )
    }

    pub(crate) fn start_with<S: AsRef<str>>(
        model: &Model,
        segments: &[S],
        shard: &'a Samples,
        config: &TrainConfig,
        resume: Option<&TrainState>,
        engine: Engine,
        kernel: Kernel,
    ) -> Result<Self> {
        let trainable = trainable_params(model, segments)?;
        check_config(config)?;
        check_samples_fit(model.spec(), shard)?;
        if shard.is_empty() {
            return Err(LearningError::TooFewSamples {
                reason: "cannot train on an empty shard".into(),
            });
        }
        let mut start = model.clone();
        if let Some(state) = resume {
            state.check_fits(&start, &trainable, config.momentum)?;
            let trained = start
                .params_mut()
                .iter_mut()
                .zip(&trainable)
                .filter(|(_, t)| **t)
                .map(|(p, _)| p);
            for (param, values) in trained.zip(&state.weights) {
                param.values.clone_from(values);
            }
        }
        let pool = pool_of(config.threads)?;
        let mut stepper: Box<dyn Stepper + 'a> = match (start.spec(), engine) {
            (ModelSpec::Mlp { .. }, Engine::Fastest) => Box::new(
                crate::fused_mlp::MlpStepper::new(&start, &trainable, shard, config, kernel)?,
            ),
            (ModelSpec::Cnn { .. }, Engine::Fastest) => Box::new(
                crate::fused_cnn::CnnStepper::new(&start, &trainable, shard, config, kernel)?,
            ),
            (ModelSpec::Transformer { .. }, Engine::Fastest) => {
                Box::new(crate::fused_transformer::TransformerStepper::new(
                    &start, &trainable, shard, config, kernel,
                )?)
            }
            #[cfg(test)]
            (_, Engine::Autograd) => Box::new(crate::autograd::AutogradStepper::new(
                &start, &trainable, shard, config,
            )?),
        };
        let skipped = resume.map_or(0, |s| s.step.saturating_mul(config.batch as u64));
        let order = BatchOrder::starting_at(shard.len(), config.seed, skipped);
        let batch = vec![0usize; config.batch];
        let mut steps = 0;
        if let Some(state) = resume {
            if config.momentum > 0.0 {
                stepper.set_velocity(&state.velocity)?;
            }
            steps = state.step;
        }
        Ok(Self {
            stepper,
            order,
            batch,
            pool,
            steps,
            batch_size: config.batch,
            loss_curve: Vec::new(),
            train_secs: 0.0,
        })
    }

    /// Steps this run has taken since step 0 (a resumed run counts the steps before it).
    pub fn steps_taken(&self) -> u64 {
        self.steps
    }

    /// Takes `steps` more SGD steps.
    pub fn run(&mut self, steps: u64) -> Result<()> {
        self.run_bounded(steps, None)
    }

    /// Takes SGD steps until `deadline` (checked before each step) or `steps_max` more steps.
    /// Returns how many it took.
    pub fn run_until(&mut self, deadline: Instant, steps_max: u64) -> Result<u64> {
        let before = self.steps;
        self.run_bounded(steps_max, Some(deadline))?;
        Ok(self.steps - before)
    }

    fn run_bounded(&mut self, steps: u64, deadline: Option<Instant>) -> Result<()> {
        let started = Instant::now();
        let Self {
            stepper,
            order,
            batch,
            pool,
            steps: taken,
            loss_curve,
            ..
        } = self;
        let result = pool.install(|| {
            for _ in 0..steps {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                order.next_batch(batch);
                let loss = stepper.step(batch)?;
                if !loss.is_finite() {
                    return Err(LearningError::Diverged { step: *taken });
                }
                loss_curve.push(loss);
                *taken += 1;
            }
            Ok(())
        });
        self.train_secs += started.elapsed().as_secs_f64();
        result
    }

    /// The trained parameters and their velocity now.
    pub fn state(&self) -> Result<TrainState> {
        let (weights, velocity) = self.stepper.state()?.into_iter().unzip();
        Ok(TrainState {
            step: self.steps,
            weights,
            velocity,
        })
    }

    /// Writes the trained parameters into `model` and reports what this run did.
    pub fn finish(self, model: &mut Model) -> Result<TrainReport> {
        let steps = self.loss_curve.len() as u64;
        self.stepper.finish(model)?;
        Ok(TrainReport {
            steps,
            samples: steps * self.batch_size as u64,
            train_secs: self.train_secs,
            loss_curve: self.loss_curve,
        })
    }
}

/// Most distinct thread counts whose pools are kept (a process uses one or two).
const POOLS_KEPT_MAX: usize = 8;

/// The worker pool of `threads` threads, built once per thread count and shared by every run
/// with that count: a verifier replays many short intervals, and building a pool (spawning its
/// threads) each time would cost more than the replay of a small model.
fn pool_of(threads: usize) -> Result<std::sync::Arc<rayon::ThreadPool>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(pool) = pools.get(&threads) {
        return Ok(pool.clone());
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?,
    );
    if pools.len() < POOLS_KEPT_MAX {
        pools.insert(threads, pool.clone());
    }
    Ok(pool)
}

/// For each parameter in model order, whether it is trained; errors on unknown or no
/// segments.
pub(crate) fn trainable_params<S: AsRef<str>>(model: &Model, segments: &[S]) -> Result<Vec<bool>> {
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
    if let ModelSpec::Transformer { vocab, .. } = spec {
        // The features are token ids that index the embedding: anything else must not
        // reach it.
        if let Some(bad) = samples
            .features()
            .iter()
            .find(|&&v| !(v >= 0.0 && v < *vocab as f32 && v.fract() == 0.0))
        {
            return Err(LearningError::SamplesDoNotFitModel(format!(
                "feature {bad} is not a token id in 0..{vocab}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_started_part_way_continues_exactly_like_the_whole_order() {
        for (n, batch) in [(7usize, 3usize), (10, 10), (23, 4)] {
            let mut whole = BatchOrder::new(n, 42);
            let mut drawn = Vec::new();
            let mut buf = vec![0; batch];
            for _ in 0..20 {
                whole.next_batch(&mut buf);
                drawn.extend_from_slice(&buf);
            }
            for skip_batches in [0usize, 1, 2, 5, 13] {
                let mut resumed = BatchOrder::starting_at(n, 42, (skip_batches * batch) as u64);
                let mut rest = Vec::new();
                for _ in skip_batches..20 {
                    resumed.next_batch(&mut buf);
                    rest.extend_from_slice(&buf);
                }
                assert_eq!(
                    rest,
                    drawn[skip_batches * batch..],
                    "n {n}, skip {skip_batches}"
                );
            }
            // Every epoch is a permutation of the shard.
            for epoch in drawn.chunks_exact(n) {
                let mut sorted = epoch.to_vec();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..n).collect::<Vec<_>>());
            }
        }
    }

    /// The fused CNN step must compute what candle's autograd computes (up to float
    /// rounding), with and without momentum, for every subset of trained segments (the
    /// backward pass stops at the lowest one), through resumable runs' velocity too.
    #[test]
    fn fused_cnn_step_matches_candle_autograd() {
        let spec = ModelSpec::Cnn {
            height: 8,
            width: 8,
            channels: [3, 5],
            kernel: 3,
            classes: 4,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let values: Vec<f32> = (0..40 * 64)
            .map(|_| rand::Rng::gen_range(&mut rng, -1.0..1.0))
            .collect();
        let labels: Vec<u32> = (0..40).map(|i| (i % 4) as u32).collect();
        let shard = Samples::new(values, labels, 64).unwrap();
        let subsets: [&[&str]; 4] = [
            &["conv0", "conv1", "linear"],
            &["conv0"],
            &["conv1"],
            &["linear"],
        ];
        for momentum in [0.0, 0.9] {
            for segments in subsets {
                let config = TrainConfig {
                    lr: 0.05,
                    momentum,
                    batch: 8,
                    budget: Budget::Steps(10),
                    seed: 3,
                    threads: 1,
                };
                let mut fused = Model::new(spec.clone(), 9).unwrap();
                let mut reference = fused.clone();
                let kernel = Kernel::Reproducible(Simd::best());
                let fused_report = train_with(
                    &mut fused,
                    segments,
                    &shard,
                    &config,
                    Engine::Fastest,
                    kernel,
                )
                .unwrap();
                let reference_report = train_with(
                    &mut reference,
                    segments,
                    &shard,
                    &config,
                    Engine::Autograd,
                    kernel,
                )
                .unwrap();
                for (a, b) in fused_report
                    .loss_curve
                    .iter()
                    .zip(&reference_report.loss_curve)
                {
                    assert!((a - b).abs() < 1e-4, "{segments:?}: loss {a} vs {b}");
                }
                for (a, b) in fused.params().iter().zip(reference.params()) {
                    for (x, y) in a.values.iter().zip(&b.values) {
                        assert!((x - y).abs() < 1e-4, "{segments:?} {}: {x} vs {y}", a.name);
                    }
                }
                for (p, initial) in fused
                    .params()
                    .iter()
                    .zip(Model::new(spec.clone(), 9).unwrap().params())
                {
                    let trained = segments
                        .iter()
                        .any(|s| p.name.starts_with(&format!("{s}.")));
                    assert_eq!(
                        p.values != initial.values,
                        trained,
                        "{segments:?} {}",
                        p.name
                    );
                }
            }
        }
    }

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
            let kernel = Kernel::Reproducible(Simd::best());
            let fused_report = train_with(
                &mut fused,
                &segments,
                &shard,
                &config,
                Engine::Fastest,
                kernel,
            )
            .unwrap();
            let reference_report = train_with(
                &mut reference,
                &segments,
                &shard,
                &config,
                Engine::Autograd,
                kernel,
            )
            .unwrap();
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
