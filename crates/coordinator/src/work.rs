//! The learning side of a cycle: the dataset split (held-out pool and test set stay here),
//! shards, checking uploaded updates, measuring them, and aggregating the accepted ones. CPU
//! work, no I/O once the dataset is loaded. [`evaluate_submissions`] is the whole measurement
//! and merge of a cycle as a pure function of public inputs (start model, revealed held-out
//! batch, published updates, verdicts), so the auditor runs the same code and gets the same bits.

use crate::api::{QualityReport, TrainHints};
use crate::cycle::{EvaluationInput, Measurement, SegmentSize};
use crate::held_out::{HeldOutPool, HeldOutSecret};
use bitcoin::secp256k1::PublicKey;
use learning::{
    aggregate, decode_update, evaluate, loss_with_segment, model_hash, AcceptedUpdate, Aggregation,
    Dataset, DatasetSource, ExpectedSegment, LearningError, Model, ModelSpec, Normalisation,
    Samples, SegmentUpdate, Split, SplitFractions, UpdateError,
};
use primitives::Hash256;
use proof::Verdict;
use serde::{Deserialize, Serialize};

/// Most registrations accepted per cycle. Each submission costs one forward pass over the
/// held-out set at the deadline; 1,000 keeps a cycle's evaluation to seconds for the shipped
/// models and the persisted cycle state (rewritten on every receipt) well under a megabyte.
pub const REGISTRATIONS_PER_CYCLE_MAX: usize = 1_000;

/// Fewest training samples a shard may have: below one batch of SGD a miner cannot do
/// meaningful work, so the registration cap shrinks for small datasets.
pub const SHARD_SAMPLES_MIN: usize = 16;

/// The training speed new miners' first budgets assume, in multiply-adds per second of the
/// forward pass (a step is taken as three forward passes). A miner on the 2-core development
/// machine, sharing it with two others, a coordinator and two nodes, trains the default
/// language model at about 14 steps per second, which is this figure. Assuming less would make
/// a new miner's budget end its first run before the deadline (its run stops at 128 · k
/// steps); assuming more would make its first intervals longer than its verifiers can replay
/// in their window. Either way pacing takes over from the first verified run. A constant, not
/// a timing, so every new miner gets the same interval on any machine and the record shows
/// it.
pub const ASSUMED_FORWARD_MACS_PER_SEC: f64 = 1e10;

/// Multiply-adds of one sample's forward pass, roughly: the parameters, times the positions
/// they are applied at (a transformer's tokens, a convolution's pixels).
fn forward_macs_per_sample(model: &ModelSpec) -> f64 {
    let params = model.param_shapes().map_or(0, |shapes| {
        shapes
            .iter()
            .map(|(_, shape)| shape.iter().product::<usize>())
            .sum::<usize>()
    }) as f64;
    match model {
        ModelSpec::Mlp { .. } => params,
        ModelSpec::Cnn { height, width, .. } => params * (height * width) as f64 / 4.0,
        ModelSpec::Transformer { context, .. } => params * *context as f64,
    }
}

/// The checkpoint interval of a miner's first task: what fills
/// [`crate::pace::PACE_HEADROOM`] training windows of `window_ms` in
/// [`crate::pace::TRANSCRIPT_INTERVALS`] intervals at [`ASSUMED_FORWARD_MACS_PER_SEC`] (as
/// pacing does from a measured speed), never more than `configured`. For a small model it is the
/// configured one; a slow model's (the language model's steps take a tenth of a second) is
/// smaller, so that its first run's intervals replay within the verifiers' window and its
/// deadline check comes often. Each cycle record publishes it; pacing takes over from the
/// first verified run.
pub fn initial_checkpoint_interval(
    model: &ModelSpec,
    batch: usize,
    window_ms: u64,
    configured: u64,
) -> u64 {
    let step_macs = 3.0 * forward_macs_per_sample(model) * batch.max(1) as f64;
    let steps = ASSUMED_FORWARD_MACS_PER_SEC / step_macs.max(1.0) * window_ms as f64 / 1000.0;
    let paced = (steps * crate::pace::PACE_HEADROOM as f64
        / crate::pace::TRANSCRIPT_INTERVALS as f64)
        .ceil();
    if paced.is_finite() && paced >= 1.0 {
        (paced as u64).min(configured.max(1))
    } else {
        1
    }
}

/// What the coordinator trains: fixed at first start and checked on every restart. The split
/// seed is not here: it comes from the coordinator's secret (`held_out`), never published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkSetup {
    pub dataset: DatasetSource,
    pub model: ModelSpec,
    /// Seeds the initial global model.
    pub model_seed: u64,
    pub hints: TrainHints,
    /// The task owner's own held-out samples (same format and features as the dataset), given
    /// to the coordinator and nobody else: the held-out pool is this file instead of a secret
    /// split of the (possibly public) dataset. `None`: the secret split.
    #[serde(default)]
    pub held_out: Option<DatasetSource>,
    /// The task owner's own test samples, likewise for the coordinator only: the reported test
    /// accuracy is on them instead of a secret split. `None`: the split (or the dataset's own
    /// test files, for MNIST).
    #[serde(default)]
    pub test: Option<DatasetSource>,
}

impl WorkSetup {
    /// A small MLP on the shipped digits: the fast setup for tests.
    pub fn digits_mlp(hidden: Vec<usize>) -> Self {
        let model = ModelSpec::Mlp {
            input: 64,
            hidden,
            classes: 10,
        };
        WorkSetup {
            dataset: DatasetSource::Digits,
            hints: TrainHints::for_model(&model),
            model,
            model_seed: 1,
            held_out: None,
            test: None,
        }
    }

    /// `model` on `dataset`, with the training hints that suit the model.
    pub fn new(dataset: DatasetSource, model: ModelSpec) -> Self {
        WorkSetup {
            dataset,
            hints: TrainHints::for_model(&model),
            model,
            model_seed: 1,
            held_out: None,
            test: None,
        }
    }
}

/// The loaded, normalised split and what is derived from it. `split.held_out` is the whole
/// secret pool; each cycle scores on its own batch of it (`held_out`).
pub struct Workload {
    pub setup: WorkSetup,
    pub split: Split,
    pub held_out: HeldOutPool,
    pub normalisation: Normalisation,
    pub class_count: usize,
}

/// An owner's held-out or test file must have the dataset's features and no class it lacks.
fn check_fits(
    source: &DatasetSource,
    owner: &Dataset,
    dataset: &Dataset,
) -> Result<(), LearningError> {
    if owner.samples.feature_count() != dataset.samples.feature_count()
        || owner.class_count > dataset.class_count
    {
        return Err(LearningError::SamplesDoNotFitModel(format!(
            "file {source} has {} features and {} classes, the dataset {} and {}",
            owner.samples.feature_count(),
            owner.class_count,
            dataset.samples.feature_count(),
            dataset.class_count
        )));
    }
    Ok(())
}

/// Held-out and test quality of a global model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelQuality {
    /// On the batch of the cycle that produced the model (or cycle 0's, for the initial one).
    pub held_out_loss: f32,
    pub test_accuracy: f32,
}

impl ModelQuality {
    /// The integer form published in records.
    pub fn report(&self) -> QualityReport {
        QualityReport {
            held_out_loss_units: consensus::score::loss_reduction_units(
                f64::from(self.held_out_loss),
                0.0,
            )
            .unwrap_or(i64::MAX),
            test_accuracy_ppm: (f64::from(self.test_accuracy) * 1e6).round() as u32,
        }
    }
}

/// Result of a cycle's evaluation: the numbers for the state machine and the next model.
pub struct CycleEvaluation {
    pub input: EvaluationInput,
    pub next_model: Model,
    pub next_quality: ModelQuality,
}

/// The measurement and merge of one cycle, from public inputs only.
pub struct Evaluated {
    /// Held-out loss of the start model on the batch, in 10^-6 nat.
    pub global_loss_units: i64,
    pub measurements: Vec<Measurement>,
    pub next_model: Model,
}

impl Workload {
    pub fn load(setup: WorkSetup, secret: HeldOutSecret) -> Result<Self, LearningError> {
        let mut dataset = Dataset::load(&setup.dataset)?;
        if let Some(source) = &setup.test {
            let owner = Dataset::load(source)?;
            check_fits(source, &owner, &dataset)?;
            dataset.given_test = Some(owner.samples);
        }
        let mut split = dataset.split(SplitFractions::default(), secret.split_seed())?;
        // Standardised features for images and tables; byte tokens are left as they are.
        let normalisation = Normalisation::for_dataset(&dataset, &split.train)?;
        normalisation.apply(&mut split.train)?;
        normalisation.apply(&mut split.held_out)?;
        normalisation.apply(&mut split.test)?;
        if setup.model.input_features() != split.train.feature_count() {
            return Err(LearningError::SamplesDoNotFitModel(format!(
                "model takes {} features, dataset has {}",
                setup.model.input_features(),
                split.train.feature_count()
            )));
        }
        let pool = match &setup.held_out {
            None => split.held_out.clone(),
            Some(source) => {
                let owner = Dataset::load(source)?;
                check_fits(source, &owner, &dataset)?;
                let mut samples = owner.samples;
                // The same normalisation as the training data, so losses are comparable.
                normalisation.apply(&mut samples)?;
                samples
            }
        };
        let held_out = HeldOutPool::new(secret, pool);
        Ok(Workload {
            setup,
            split,
            held_out,
            normalisation,
            class_count: dataset.class_count,
        })
    }

    pub fn initial_model(&self) -> Result<Model, LearningError> {
        Model::new(self.setup.model.clone(), self.setup.model_seed)
    }

    /// Registration cap: [`REGISTRATIONS_PER_CYCLE_MAX`], or fewer if the training set cannot
    /// give every miner [`SHARD_SAMPLES_MIN`] samples.
    pub fn registrations_max(&self) -> usize {
        REGISTRATIONS_PER_CYCLE_MAX.min(self.split.train.len() / SHARD_SAMPLES_MIN)
    }

    pub fn segments(model: &Model) -> Vec<SegmentSize> {
        model
            .segments()
            .into_iter()
            .map(|s| SegmentSize {
                name: s.name,
                params: s.param_count as u64,
            })
            .collect()
    }

    /// Every shard of a cycle (disjoint, from the announcement's shard seed).
    pub fn shards(&self, seed: u64, count: u32) -> Result<Vec<Samples>, LearningError> {
        learning::make_shards(&self.split.train, seed, count as usize)
    }

    /// Loss of `model` on `held_out` (a cycle's batch) and its accuracy on the secret test set.
    pub fn quality(
        &self,
        model: &Model,
        held_out: &Samples,
    ) -> Result<ModelQuality, LearningError> {
        Ok(ModelQuality {
            held_out_loss: evaluate(model, held_out)?.loss,
            test_accuracy: evaluate(model, &self.split.test)?.accuracy,
        })
    }

    /// Evaluates every submission of `cycle` against `global` on the cycle's held-out batch
    /// and merges the ones that passed their replay check and scored above zero. `updates` are
    /// (miner, segment, bytes, replay verdict) of receipted submissions.
    pub fn evaluate_cycle(
        &self,
        cycle: u64,
        global: &Model,
        updates: &[(PublicKey, String, Vec<u8>, Verdict)],
    ) -> Result<CycleEvaluation, crate::ServiceError> {
        let batch = self.held_out.batch(cycle)?;
        let evaluated = evaluate_submissions(global, &batch.samples, updates)?;
        let next_quality = self.quality(&evaluated.next_model, &batch.samples)?;
        Ok(CycleEvaluation {
            input: EvaluationInput {
                global_loss_units: evaluated.global_loss_units,
                measurements: evaluated.measurements,
                next_model_hash: Hash256(model_hash(&evaluated.next_model)),
                merged_model_hash: None,
                held_out: batch.reveal,
                next_quality: next_quality.report(),
                claims: Default::default(),
            },
            next_model: evaluated.next_model,
            next_quality,
        })
    }
}

/// Measures every update against `global` on `held_out` and merges the ones that passed their
/// replay check and scored above zero: the score-weighted mean per segment, or, if that is
/// worse on `held_out` than the best single accepted update, that update alone (so the merge
/// never scores worse than the start model on the batch). Pure and bitwise reproducible (the
/// MLP forward pass and the f64 loss have a fixed order): the auditor calls it too.
pub fn evaluate_submissions(
    global: &Model,
    held_out: &Samples,
    updates: &[(PublicKey, String, Vec<u8>, Verdict)],
) -> Result<Evaluated, LearningError> {
    let global_loss = f64::from(evaluate(global, held_out)?.loss);
    let mut measurements = Vec::with_capacity(updates.len());
    let mut accepted = Vec::new();
    let mut best_single: Option<(f32, SegmentUpdate)> = None;
    for (miner, segment, bytes, verification) in updates {
        // Bytes were checked at upload; a failure here means the stored copy is damaged,
        // which scores as no work rather than stopping the cycle.
        let Ok(update) = check_update(global, segment, bytes) else {
            measurements.push(Measurement {
                miner: *miner,
                params_trained: 0,
                loss_reduction: 0,
                verification: verification.clone(),
            });
            continue;
        };
        let measured = measure(global, global_loss, &update, held_out)?;
        // An update whose training did not replay has no say in the merge and no weight in
        // the lottery, however much it lowers the held-out loss.
        let score = crate::api::verified_score(
            verification,
            measured.params_trained,
            measured.loss_reduction,
        );
        measurements.push(Measurement {
            miner: *miner,
            params_trained: measured.params_trained,
            loss_reduction: measured.loss_reduction,
            verification: verification.clone(),
        });
        if score > 0 {
            let candidate_loss = (global_loss - measured.loss_reduction as f64 / 1e6) as f32;
            if best_single
                .as_ref()
                .is_none_or(|(l, _)| candidate_loss < *l)
            {
                best_single = Some((candidate_loss, update.clone()));
            }
            accepted.push(AcceptedUpdate {
                update,
                weight: score as f64,
            });
        }
    }
    let next_model = merge(global, held_out, &accepted, best_single)?;
    Ok(Evaluated {
        global_loss_units: consensus::score::loss_reduction_units(global_loss, 0.0)
            .unwrap_or(i64::MAX),
        measurements,
        next_model,
    })
}

/// Score-weighted mean per segment; if the merged model is worse on `held_out` than the best
/// single accepted update, that update alone is applied instead.
fn merge(
    global: &Model,
    held_out: &Samples,
    accepted: &[AcceptedUpdate],
    best_single: Option<(f32, SegmentUpdate)>,
) -> Result<Model, LearningError> {
    let Some((best_loss, best_update)) = best_single else {
        return Ok(global.clone());
    };
    let mut merged = global.clone();
    aggregate(&mut merged, accepted, Aggregation::WeightedMean)?;
    let merged_loss = evaluate(&merged, held_out)?.loss;
    if merged_loss <= best_loss {
        Ok(merged)
    } else {
        let mut single = global.clone();
        best_update.apply_to(&mut single)?;
        Ok(single)
    }
}

/// Decodes and checks an upload for `segment` of `global`: size, format, names, shapes, dtype,
/// finiteness (see [`learning::decode_update`]).
pub fn check_update(
    global: &Model,
    segment: &str,
    bytes: &[u8],
) -> Result<SegmentUpdate, UpdateError> {
    let expected = ExpectedSegment::of(global, segment)
        .map_err(|e| UpdateError::Malformed(format!("no segment {segment}: {e}")))?;
    decode_update(bytes, &expected)
}

/// Parameters changed and held-out loss reduction of one update, measured here.
pub fn measure(
    global: &Model,
    global_loss: f64,
    update: &SegmentUpdate,
    held_out: &Samples,
) -> Result<Measured, LearningError> {
    let mut params_trained = 0u64;
    for tensor in &update.tensors {
        let before = global.param(&tensor.name)?;
        params_trained += tensor
            .values
            .iter()
            .zip(&before.values)
            .filter(|(a, b)| a != b)
            .count() as u64;
    }
    let candidate_loss = f64::from(loss_with_segment(global, update, held_out)?.loss);
    // A finite update can still overflow the loss; that is infinitely worse, never better.
    let loss_reduction =
        consensus::score::loss_reduction_units(global_loss, candidate_loss).unwrap_or(i64::MIN);
    Ok(Measured {
        params_trained,
        loss_reduction,
    })
}

/// The two measured numbers of a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    pub params_trained: u64,
    /// In 10^-6 nat; `i64::MIN` when the candidate's loss is not finite.
    pub loss_reduction: i64,
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_slow_models_first_interval_is_short_and_a_fast_ones_is_the_configured_one() {
        use super::initial_checkpoint_interval as k;
        let window = 12_000;
        // The digits MLP: a step is a few hundred thousand multiply-adds, thousands of steps
        // per window: the configured 16.
        let mlp = super::WorkSetup::digits_mlp(vec![32]).model;
        assert_eq!(k(&mlp, 32, window, 16), 16);
        // The default language model: a step is about 3 * 137,216 * 64 * 32 multiply-adds,
        // about 12 steps per second assumed, 142 in the window, twice that with the headroom:
        // k = 3.
        let lm = learning::LM_DEFAULT
            .spec(learning::TEXT_CONTEXT + 1, learning::TEXT_VOCAB)
            .unwrap();
        assert_eq!(k(&lm, 32, window, 16), 3);
        assert_eq!(k(&lm, 32, window / 4, 16), 1);
        // Never above the configured interval, never below 1.
        assert_eq!(k(&mlp, 1, u64::MAX, 16), 16);
        assert_eq!(k(&lm, usize::MAX, 0, 16), 1);
    }

    use super::*;

    /// `samples` as a CSV file (features, then the label), the format `csv:FILE` reads.
    fn write_csv(path: &std::path::Path, samples: &Samples) {
        let mut text = String::new();
        for i in 0..samples.len() {
            let row: Vec<String> = samples.row(i).iter().map(|v| v.to_string()).collect();
            text.push_str(&format!("{},{}\n", row.join(","), samples.labels()[i]));
        }
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn an_owner_held_out_file_is_the_pool_and_no_split_of_public_data() {
        let dir = tempfile::tempdir().unwrap();
        let digits = Dataset::load(&DatasetSource::Digits).unwrap();
        // The owner's samples: 100 rows nobody else has (here: the last 100 digits, reversed).
        let rows: Vec<usize> = (digits.samples.len() - 100..digits.samples.len())
            .rev()
            .collect();
        let owner = digits.samples.select(&rows);
        let file = dir.path().join("owner-held-out.csv");
        write_csv(&file, &owner);

        let secret = HeldOutSecret::from_bytes([5; 32]);
        let mut setup = WorkSetup::digits_mlp(vec![8]);
        let split_only = Workload::load(setup.clone(), secret.clone()).unwrap();
        setup.held_out = Some(DatasetSource::Csv(file.clone()));
        let work = Workload::load(setup.clone(), secret.clone()).unwrap();

        // The pool is the owner's 100 samples, normalised like the training data.
        let mut expected = owner.clone();
        work.normalisation.apply(&mut expected).unwrap();
        let per_pass = work.held_out.batches_per_pass();
        let mut seen = 0;
        for cycle in 0..per_pass {
            let batch = work.held_out.batch(cycle).unwrap().samples;
            for i in 0..batch.len() {
                assert!(
                    (0..expected.len()).any(|j| expected.row(j) == batch.row(i)),
                    "a batch sample is not from the owner's file"
                );
            }
            seen += batch.len();
        }
        assert_eq!(seen, work.held_out.batch_size() * per_pass as usize);
        assert_ne!(
            work.held_out.batch(0).unwrap().reveal.batch_hash,
            split_only.held_out.batch(0).unwrap().reveal.batch_hash
        );

        // A file that does not fit the dataset is refused with the reason.
        let narrow = Samples::new(vec![0.0; 20], vec![1, 2], 10).unwrap();
        let bad = dir.path().join("narrow.csv");
        write_csv(&bad, &narrow);
        setup.held_out = Some(DatasetSource::Csv(bad));
        let error = Workload::load(setup, secret).err().unwrap().to_string();
        assert!(error.contains("10 features"), "{error}");
    }
}
