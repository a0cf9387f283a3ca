//! The state of a training run at one step: what a miner commits to every few steps and what a
//! verifier resumes from to replay an interval (see [`crate::Trainer`]).

use sha2::{Digest, Sha256};

use crate::error::{LearningError, Result};
use crate::model::Model;
use crate::update::SegmentUpdate;

/// Domain separation of [`TrainState::hash`].
const STATE_HASH_DOMAIN: &[u8] = b"trainchain/train-state/v1";

/// Largest encoded state a decoder accepts: two copies (values and velocity) of the largest
/// model's parameters, plus framing.
pub const STATE_BYTES_MAX: usize = 2 * 4 * crate::model::PARAMS_MAX + 4096;

/// Values and momentum velocity of every trained parameter after `step` SGD steps.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainState {
    /// Steps taken since the run started (0 = before the first step).
    pub step: u64,
    /// Values of each trained parameter, in model order.
    pub weights: Vec<Vec<f32>>,
    /// Velocity of each trained parameter, in model order; all zeros at step 0, and every
    /// vector empty when the run has no momentum.
    pub velocity: Vec<Vec<f32>>,
}

impl TrainState {
    /// The state of a run of `segments` of `model` before its first step.
    pub fn initial<S: AsRef<str>>(model: &Model, segments: &[S], momentum: f32) -> Result<Self> {
        let trainable = crate::train::trainable_params(model, segments)?;
        let trained = model.params().iter().zip(&trainable).filter(|(_, t)| **t);
        let (weights, velocity) = trained
            .map(|(p, _)| {
                let velocity = if momentum > 0.0 {
                    vec![0.0; p.values.len()]
                } else {
                    Vec::new()
                };
                (p.values.clone(), velocity)
            })
            .unzip();
        Ok(TrainState {
            step: 0,
            weights,
            velocity,
        })
    }

    /// SHA-256 of `"trainchain/train-state/v1" || step u64 LE || count u64 LE || (len u64 LE ||
    /// values f32 LE × len || velocity len u64 LE || velocity f32 LE × len) × count`. Bitwise:
    /// two states hash the same only if every value has the same bits (so `-0.0 != 0.0`).
    pub fn hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(STATE_HASH_DOMAIN);
        hasher.update(self.step.to_le_bytes());
        hasher.update((self.weights.len() as u64).to_le_bytes());
        for (values, velocity) in self.weights.iter().zip(&self.velocity) {
            for tensor in [values, velocity] {
                hasher.update((tensor.len() as u64).to_le_bytes());
                for value in tensor {
                    hasher.update(value.to_le_bytes());
                }
            }
        }
        hasher.finalize().into()
    }

    /// `step u64 LE || count u32 LE || (len u32 LE || f32 LE × len || velocity len u32 LE ||
    /// f32 LE × len) × count`.
    pub fn encode(&self) -> Vec<u8> {
        let floats: usize = self
            .weights
            .iter()
            .chain(&self.velocity)
            .map(Vec::len)
            .sum();
        let mut out = Vec::with_capacity(12 + 8 * self.weights.len() + 4 * floats);
        out.extend(self.step.to_le_bytes());
        out.extend((self.weights.len() as u32).to_le_bytes());
        for (values, velocity) in self.weights.iter().zip(&self.velocity) {
            for tensor in [values, velocity] {
                out.extend((tensor.len() as u32).to_le_bytes());
                for value in tensor {
                    out.extend(value.to_le_bytes());
                }
            }
        }
        out
    }

    /// Decodes exactly one [`TrainState::encode`] output; refuses inputs over
    /// [`STATE_BYTES_MAX`], truncated or trailing bytes, and lengths that overrun the input
    /// (checked before any allocation).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |why: String| LearningError::InvalidState(why);
        if bytes.len() > STATE_BYTES_MAX {
            return Err(bad(format!(
                "{} bytes, over the {STATE_BYTES_MAX}-byte limit",
                bytes.len()
            )));
        }
        let mut rest = bytes;
        let mut take = |n: usize| -> Result<&[u8]> {
            if rest.len() < n {
                return Err(bad(format!(
                    "truncated: {n} bytes wanted, {} left",
                    rest.len()
                )));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let step = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let mut weights = Vec::new();
        let mut velocity = Vec::new();
        for _ in 0..count {
            for out in [&mut weights, &mut velocity] {
                let len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
                let raw = take(
                    len.checked_mul(4)
                        .ok_or_else(|| bad("length overflow".into()))?,
                )?;
                out.push(
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                        .collect(),
                );
            }
        }
        if !rest.is_empty() {
            return Err(bad(format!("{} trailing bytes", rest.len())));
        }
        Ok(TrainState {
            step,
            weights,
            velocity,
        })
    }

    /// Checks that this state can be the state of a run of `trainable` parameters of `model`
    /// with `momentum`: one tensor per trained parameter with its element count, finite values,
    /// and a velocity of the same size (or none without momentum).
    pub(crate) fn check_fits(
        &self,
        model: &Model,
        trainable: &[bool],
        momentum: f32,
    ) -> Result<()> {
        let bad = |why: String| Err(LearningError::InvalidState(why));
        let trained: Vec<_> = model
            .params()
            .iter()
            .zip(trainable)
            .filter(|(_, t)| **t)
            .map(|(p, _)| p)
            .collect();
        if self.weights.len() != trained.len() || self.velocity.len() != trained.len() {
            return bad(format!(
                "{} tensors for {} trained parameters",
                self.weights.len(),
                trained.len()
            ));
        }
        for ((param, values), velocity) in trained.iter().zip(&self.weights).zip(&self.velocity) {
            let want_velocity = if momentum > 0.0 {
                param.values.len()
            } else {
                0
            };
            if values.len() != param.values.len() || velocity.len() != want_velocity {
                return bad(format!(
                    "{}: {} values and {} velocity, expected {} and {want_velocity}",
                    param.name,
                    values.len(),
                    velocity.len(),
                    param.values.len()
                ));
            }
            if values.iter().chain(velocity).any(|v| !v.is_finite()) {
                return bad(format!("{}: a value is not finite", param.name));
            }
        }
        Ok(())
    }

    /// The trained parameters of segment `segment` of `model` replaced by this state's values:
    /// the update a run that ended in this state uploads. The segment must be the only one the
    /// run trained.
    pub fn to_update(&self, model: &Model, segment: &str) -> Result<SegmentUpdate> {
        let mut update = SegmentUpdate::from_model(model, segment)?;
        if update.tensors.len() != self.weights.len() {
            return Err(LearningError::InvalidState(format!(
                "{} tensors in the state, segment {segment} has {}",
                self.weights.len(),
                update.tensors.len()
            )));
        }
        for (tensor, values) in update.tensors.iter_mut().zip(&self.weights) {
            if tensor.values.len() != values.len() {
                return Err(LearningError::InvalidState(format!(
                    "{}: {} values, expected {}",
                    tensor.name,
                    values.len(),
                    tensor.values.len()
                )));
            }
            tensor.values.clone_from(values);
        }
        Ok(update)
    }
}
