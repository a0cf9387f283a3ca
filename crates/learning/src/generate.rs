//! Text from a byte-level language model: a seeded sampler, to show what a model has
//! learnt ("generated text before and after training"). Not part of any proof: its output
//! is deterministic for a seed on one machine, and the same everywhere unless two libms
//! round an `exp` differently.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{LearningError, Result};
use crate::fused_transformer::TransformerForward;
use crate::kernel::{Kernel, Simd};
use crate::model::{Model, ModelSpec};

/// Softmax temperature of [`sample_text`]: below 1 sharpens the distribution, so that a
/// small model's text is less noisy than its raw samples while still varying with the seed.
pub const SAMPLE_TEMPERATURE: f64 = 0.8;

/// Most bytes one [`sample_text`] call may generate: each costs a forward pass over the
/// context, so the bound keeps a request from outside cheap.
pub const SAMPLE_LEN_MAX: usize = 1 << 16;

/// `len` bytes continuing `prompt`, drawn one at a time from the byte-level transformer
/// `model` at [`SAMPLE_TEMPERATURE`] with a ChaCha8 stream seeded by `seed`. The model sees
/// the last `context` bytes of prompt and text so far (a newline when both are empty).
/// Only the new bytes are returned. Fails for a model that is not a transformer over bytes
/// (vocab 256), or `len` above [`SAMPLE_LEN_MAX`].
pub fn sample_text(model: &Model, prompt: &[u8], len: usize, seed: u64) -> Result<Vec<u8>> {
    let ModelSpec::Transformer { vocab, context, .. } = *model.spec() else {
        return Err(LearningError::InvalidSpec(
            "sample_text needs a transformer".into(),
        ));
    };
    if vocab != 256 {
        return Err(LearningError::InvalidSpec(format!(
            "sample_text needs a byte-level model (vocab 256), not vocab {vocab}"
        )));
    }
    if len > SAMPLE_LEN_MAX {
        return Err(LearningError::InvalidSpec(format!(
            "{len} bytes asked, at most SAMPLE_LEN_MAX ({SAMPLE_LEN_MAX})"
        )));
    }
    let kernel = Kernel::Reproducible(Simd::from_env()?);
    let mut forward = TransformerForward::new(model);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut text: Vec<u8> = if prompt.is_empty() {
        vec![b'\n']
    } else {
        prompt.to_vec()
    };
    let start = text.len();
    let mut weights = vec![0f64; vocab];
    for _ in 0..len {
        let window = &text[text.len().saturating_sub(context)..];
        let logits = forward.sequence_logits(kernel, window);
        let last = &logits[(window.len() - 1) * vocab..];
        let max = last.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f64;
        for (w, &z) in weights.iter_mut().zip(last) {
            *w = (f64::from(z - max) / SAMPLE_TEMPERATURE).exp();
            sum += *w;
        }
        let mut u = rng.gen::<f64>() * sum;
        let mut next = vocab - 1;
        for (i, &w) in weights.iter().enumerate() {
            if u < w {
                next = i;
                break;
            }
            u -= w;
        }
        text.push(next as u8);
    }
    Ok(text.split_off(start))
}
