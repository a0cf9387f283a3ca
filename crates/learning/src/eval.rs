//! Loss and accuracy of a model on a set, and the score input of the coordinator: the
//! held-out loss with one miner's segment substituted into the global model.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::Model;
use crate::samples::Samples;
use crate::train::check_samples_fit;
use crate::update::SegmentUpdate;

/// Samples per forward pass during evaluation: large enough to keep the matrix products
/// efficient, small enough to bound memory: the CNN's unfolded patches of a 28x28 batch of
/// 512 take about 60 MB.
pub const EVAL_BATCH: usize = 512;

/// Quality of a model on a set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    /// Mean softmax cross-entropy (natural log).
    pub loss: f32,
    /// Fraction of samples whose largest logit is the label (first on ties).
    pub accuracy: f32,
}

/// Evaluates `model` on `samples` (accumulated in f64 in sample order: deterministic).
pub fn evaluate(model: &Model, samples: &Samples) -> Result<Eval> {
    check_samples_fit(model.spec(), samples)?;
    if samples.is_empty() {
        return Err(crate::LearningError::TooFewSamples {
            reason: "cannot evaluate on an empty set".into(),
        });
    }
    let params = model.tensors(&Device::Cpu)?;
    let d = samples.feature_count();
    let classes = model.spec().classes();
    let mut loss_sum = 0f64;
    let mut correct = 0usize;
    for (features, labels) in samples
        .features()
        .chunks(EVAL_BATCH * d)
        .zip(samples.labels().chunks(EVAL_BATCH))
    {
        let inputs = Tensor::from_slice(features, (labels.len(), d), &Device::Cpu)?;
        let logits: Vec<f32> = crate::model::forward(model.spec(), &params, &inputs)?
            .flatten_all()?
            .to_vec1()?;
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
            let sum: f64 = row.iter().map(|&z| f64::from(z - max).exp()).sum();
            loss_sum += sum.ln() + f64::from(max) - f64::from(row[label as usize]);
            correct += usize::from(argmax == label as usize);
        }
    }
    let n = samples.len() as f64;
    Ok(Eval {
        loss: (loss_sum / n) as f32,
        accuracy: (correct as f64 / n) as f32,
    })
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
