//! Loss and accuracy of a model on a set, and the score input of the coordinator: the
//! held-out loss with one miner's segment substituted into the global model.
//!
//! Logits come from the same kernel and passes as training ([`crate::fused_mlp::mlp_logits`],
//! [`crate::fused_cnn::CnnForward`]), so a loss recomputed on another machine has the same
//! bits, for the MLP, the CNN and the transformer ([`crate::fused_transformer`]); the loss
//! itself is sequential f64 code in sample order.
//!
//! A transformer sample is `context` next-token predictions: its loss is their mean, and the
//! accuracy counts every position (next-byte accuracy).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::fused_cnn::CnnForward;
use crate::fused_mlp::{mlp_logits, ForwardBuffers};
use crate::fused_transformer::TransformerForward;
use crate::kernel::{Kernel, Simd};
use crate::model::{Model, ModelSpec};
use crate::samples::Samples;
use crate::train::check_samples_fit;
use crate::update::SegmentUpdate;

/// Samples per forward pass during evaluation: large enough to keep the matrix products
/// efficient, small enough to bound memory: the CNN's unfolded patches of a 28x28 batch of
/// 512 take about 60 MB.
pub const EVAL_BATCH: usize = 512;

/// Transformer samples per forward pass during evaluation: each is `context` positions, so
/// a batch of 64 windows of 64 bytes is 4,096 rows, as many as the activations need to fill
/// the matrix products, with logits of 4 MB.
pub const EVAL_BATCH_TRANSFORMER: usize = 64;

/// Quality of a model on a set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    /// Mean softmax cross-entropy (natural log).
    pub loss: f32,
    /// Fraction of samples whose largest logit is the label (first on ties); for a
    /// transformer, the fraction of positions whose next token is predicted so.
    pub accuracy: f32,
}

/// Evaluates `model` on `samples` (accumulated in f64 in sample order: deterministic), at
/// the process's SIMD level ([`Simd::from_env`]).
pub fn evaluate(model: &Model, samples: &Samples) -> Result<Eval> {
    evaluate_with_kernel(model, samples, Kernel::Reproducible(Simd::from_env()?))
}

/// [`evaluate`] with an MLP's matrix products on `kernel`.
pub fn evaluate_with_kernel(model: &Model, samples: &Samples, kernel: Kernel) -> Result<Eval> {
    check_samples_fit(model.spec(), samples)?;
    if samples.is_empty() {
        return Err(crate::LearningError::TooFewSamples {
            reason: "cannot evaluate on an empty set".into(),
        });
    }
    let d = samples.feature_count();
    let classes = model.spec().classes();
    let mut totals = Totals::default();
    let batches = samples
        .features()
        .chunks(EVAL_BATCH * d)
        .zip(samples.labels().chunks(EVAL_BATCH));
    match model.spec() {
        ModelSpec::Mlp { .. } => {
            let mut buffers = ForwardBuffers::default();
            for (features, labels) in batches {
                let logits = mlp_logits(kernel, model, features, labels.len(), &mut buffers);
                totals.add(logits, classes, labels);
            }
        }
        ModelSpec::Cnn { .. } => {
            let mut cnn = CnnForward::new(model);
            for (features, labels) in batches {
                let logits = cnn.logits(kernel, features, labels.len());
                totals.add(logits, classes, labels);
            }
        }
        ModelSpec::Transformer { context, .. } => {
            let mut lm = TransformerForward::new(model);
            let mut targets = Vec::new();
            let mut positions = 0usize;
            for features in samples.features().chunks(EVAL_BATCH_TRANSFORMER * d) {
                let rows = features.len() / d;
                let logits = lm.logits(kernel, features, rows, &mut targets);
                for (logits, targets) in logits
                    .chunks_exact(context * classes)
                    .zip(targets.chunks_exact(*context))
                {
                    let mut sample = Totals::default();
                    sample.add(logits, classes, targets);
                    totals.loss_sum += sample.loss_sum / *context as f64;
                    totals.correct += sample.correct;
                }
                positions += rows * context;
            }
            return Ok(Eval {
                loss: (totals.loss_sum / samples.len() as f64) as f32,
                accuracy: (totals.correct as f64 / positions as f64) as f32,
            });
        }
    }
    let n = samples.len() as f64;
    Ok(Eval {
        loss: (totals.loss_sum / n) as f32,
        accuracy: (totals.correct as f64 / n) as f32,
    })
}

/// Loss and hits summed over samples in order.
#[derive(Default)]
struct Totals {
    loss_sum: f64,
    correct: usize,
}

impl Totals {
    /// Adds the softmax cross-entropy and hit of each row of `logits`, in order.
    fn add(&mut self, logits: &[f32], classes: usize, labels: &[u32]) {
        for (row, &label) in logits.chunks_exact(classes).zip(labels) {
            let (argmax, max) =
                row.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |best, (i, &z)| {
                        if z > best.1 {
                            (i, z)
                        } else {
                            best
                        }
                    });
            let mut sum = 0f64;
            for &z in row {
                sum += f64::from(z - max).exp();
            }
            self.loss_sum += sum.ln() + f64::from(max) - f64::from(row[label as usize]);
            self.correct += usize::from(argmax == label as usize);
        }
    }
}

/// Evaluates `global` with the tensors of `update` substituted (what a miner's work is
/// scored on); `global` itself is not changed.
pub fn loss_with_segment(
    global: &Model,
    update: &SegmentUpdate,
    held_out: &Samples,
) -> Result<Eval> {
    let mut candidate = global.clone();
    update.apply_to(&mut candidate)?;
    evaluate(&candidate, held_out)
}
