//! Model hashes, and export of the global model as `.safetensors` plus a JSON model card
//! that lets someone with only numpy or PyTorch rebuild it and preprocess inputs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dataset::DatasetSource;
use crate::error::{LearningError, Result};
use crate::model::{Model, ModelSpec, NamedTensor, LAYER_NORM_EPS};
use crate::normalisation::Normalisation;
use crate::samples::{f32_from_le_bytes, f32_to_le_bytes};

/// Domain tag hashed first, so a model hash can never equal a hash of anything else.
const MODEL_HASH_DOMAIN: &[u8] = b"trainchain/model-hash/v1";

/// Format name written into every card.
pub const MODEL_CARD_FORMAT: &str = "trainchain-model-card/1";

/// SHA-256 of the model's canonical serialisation:
///
/// ```text
/// "trainchain/model-hash/v1"
/// for each parameter, sorted by name (bytewise):
///     u64 LE byte length of the name, the name in UTF-8,
///     u64 LE rank, each dimension as u64 LE,
///     the values as f32 little-endian, row-major
/// ```
///
/// Only the parameters are hashed (the spec is implied by names and shapes), so two
/// models hash equal exactly when every weight is bit-identical.
pub fn model_hash(model: &Model) -> [u8; 32] {
    let mut params: Vec<&NamedTensor> = model.params().iter().collect();
    params.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let mut hasher = Sha256::new();
    hasher.update(MODEL_HASH_DOMAIN);
    for param in params {
        hasher.update((param.name.len() as u64).to_le_bytes());
        hasher.update(param.name.as_bytes());
        hasher.update((param.shape.len() as u64).to_le_bytes());
        for dim in &param.shape {
            hasher.update((*dim as u64).to_le_bytes());
        }
        for value in &param.values {
            hasher.update(value.to_le_bytes());
        }
    }
    hasher.finalize().into()
}

/// [`model_hash`] as lowercase hex.
pub fn model_hash_hex(model: &Model) -> String {
    hex::encode(model_hash(model))
}

/// The model's parameters as a safetensors file (f32, names as in the model, PyTorch
/// layouts), with the model hash in the metadata.
pub fn model_to_safetensors(model: &Model) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = model
        .params()
        .iter()
        .map(|p| f32_to_le_bytes(&p.values))
        .collect();
    let views = model
        .params()
        .iter()
        .zip(&bytes)
        .map(|(p, b)| {
            Ok((
                p.name.as_str(),
                safetensors::tensor::TensorView::new(Dtype::F32, p.shape.clone(), b)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([("model_hash".to_owned(), model_hash_hex(model))]);
    Ok(safetensors::serialize(views, Some(metadata))?)
}

/// Reads a model written by [`model_to_safetensors`] back, given its spec.
pub fn model_from_safetensors(spec: ModelSpec, bytes: &[u8]) -> Result<Model> {
    let parsed = SafeTensors::deserialize(bytes)?;
    let params = parsed
        .iter()
        .map(|(name, view)| {
            if view.dtype() != Dtype::F32 {
                return Err(LearningError::InvalidSpec(format!(
                    "{name} is {:?}, expected F32",
                    view.dtype()
                )));
            }
            Ok(NamedTensor {
                name: name.to_owned(),
                shape: view.shape().to_vec(),
                values: f32_from_le_bytes(view.data()),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Model::from_params(spec, params)
}

/// How raw inputs are turned into model inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// The formula, for people: `x' = (x - mean) / std`, per feature.
    pub formula: String,
    /// What a raw input row is.
    pub input_layout: String,
    /// Statistics from the training split.
    pub normalisation: Normalisation,
}

/// Everything needed to rebuild and use the exported model without this crate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// [`MODEL_CARD_FORMAT`].
    pub format: String,
    /// The architecture, as built by this crate.
    pub spec: ModelSpec,
    /// The forward pass in words, with tensor layouts.
    pub forward: String,
    /// The dataset, as given to `--dataset`.
    pub dataset: String,
    /// Number of output classes.
    pub classes: usize,
    /// Input preprocessing.
    pub preprocessing: Preprocessing,
    /// Scalar parameters.
    pub param_count: usize,
    /// Accuracy on the test split.
    pub test_accuracy: f32,
    /// [`model_hash_hex`] of this model.
    pub model_hash: String,
    /// Hashes of the earlier global models this one descends from, oldest first.
    pub lineage: Vec<String>,
}

impl ModelCard {
    /// The card of `model`.
    pub fn new(
        model: &Model,
        dataset: &DatasetSource,
        normalisation: &Normalisation,
        test_accuracy: f32,
        lineage: Vec<String>,
    ) -> Self {
        let (forward, input_layout) = match model.spec() {
            ModelSpec::Mlp { .. } => (
                "for each layer i: x = x @ layer{i}.weight.T + layer{i}.bias, \
                 then ReLU except after the last layer; the output is the class logits"
                    .to_owned(),
                "a row of features in dataset order".to_owned(),
            ),
            ModelSpec::Cnn { kernel, .. } => (
                format!(
                    "x reshaped to NCHW [n, 1, height, width]; for conv0 then conv1: \
                     conv2d(stride 1, padding {}) + bias, ReLU, 2x2 max-pool (stride 2); \
                     flatten in C,H,W order; x @ linear.weight.T + linear.bias = logits",
                    kernel / 2
                ),
                "the image row-major, height x width, one channel".to_owned(),
            ),
            ModelSpec::Transformer {
                context, heads, ..
            } => (
                format!(
                    "byte-level causal transformer (see the learning crate's README for PyTorch): \
                     tokens x [n, T] (T <= {context}); h = embed.tok.weight[x] + embed.pos.weight[:T]; \
                     for each block i: h = h + attn(ln1(h)), h = h + mlp(ln2(h)) where \
                     LayerNorm(eps {LAYER_NORM_EPS:e}, block{{i}}.ln1/ln2 weight and bias), \
                     attn: qkv = a @ block{{i}}.attn.qkv.weight.T + bias, split into q, k, v \
                     [n, T, dim] each and into {heads} heads of dim/{heads} \
                     (view(n, T, heads, head_dim).transpose(1, 2)), causal softmax(q k^T / \
                     sqrt(head_dim)) v, heads merged back, @ block{{i}}.attn.proj.weight.T + bias; \
                     mlp: relu(m @ block{{i}}.mlp.fc.weight.T + bias) @ block{{i}}.mlp.proj.weight.T \
                     + bias; then head.norm LayerNorm and logits = h @ head.out.weight.T + \
                     head.out.bias [n, T, vocab], position t predicting token t + 1"
                ),
                "context + 1 consecutive bytes as values 0..=255; the model reads the \
                 first context"
                    .to_owned(),
            ),
        };
        let formula = if let ModelSpec::Transformer { .. } = model.spec() {
            "none: inputs are the raw byte values (the normalisation is the identity)"
        } else {
            "x' = (x - mean) / std, per feature"
        };
        Self {
            format: MODEL_CARD_FORMAT.to_owned(),
            spec: model.spec().clone(),
            forward,
            dataset: dataset.to_string(),
            classes: model.spec().classes(),
            preprocessing: Preprocessing {
                formula: formula.to_owned(),
                input_layout,
                normalisation: normalisation.clone(),
            },
            param_count: model.param_count(),
            test_accuracy,
            model_hash: model_hash_hex(model),
            lineage,
        }
    }
}

/// Where [`write_export`] put the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPaths {
    /// `<stem>.safetensors`.
    pub weights: PathBuf,
    /// `<stem>.json`, the model card.
    pub card: PathBuf,
}

/// Writes `<dir>/<stem>.safetensors` and `<dir>/<stem>.json`.
pub fn write_export(
    dir: &Path,
    stem: &str,
    model: &Model,
    card: &ModelCard,
) -> Result<ExportPaths> {
    let paths = ExportPaths {
        weights: dir.join(format!("{stem}.safetensors")),
        card: dir.join(format!("{stem}.json")),
    };
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes).map_err(|source| LearningError::Io {
            path: path.to_owned(),
            source,
        })
    };
    write(&paths.weights, &model_to_safetensors(model)?)?;
    write(&paths.card, serde_json::to_string_pretty(card)?.as_bytes())?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_changes_with_any_bit_and_ignores_nothing() {
        let spec = ModelSpec::Mlp {
            input: 3,
            hidden: vec![2],
            classes: 2,
        };
        let model = Model::new(spec.clone(), 5).unwrap();
        let same = Model::new(spec, 5).unwrap();
        assert_eq!(model_hash(&model), model_hash(&same));
        let mut tweaked = model.clone();
        let mut values = tweaked.param("layer1.bias").unwrap().values.clone();
        values[0] = f32::from_bits(values[0].to_bits() ^ 1);
        tweaked.set_param("layer1.bias", &values).unwrap();
        assert_ne!(model_hash(&model), model_hash(&tweaked));
        assert_eq!(model_hash_hex(&model).len(), 64);
    }
}
