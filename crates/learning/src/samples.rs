//! A set of labelled samples (a split, a shard) and its safetensors wire form.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors};

use crate::error::{LearningError, Result};

/// Largest serialised shard accepted from outside. A shard of the full MNIST training set
/// (60,000 x 784 f32 + labels) is about 188 MB; 256 MiB leaves room for that and refuses
/// anything that would make a miner allocate without bound.
pub const SHARD_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Tensor names of a serialised shard.
const FEATURES: &str = "features";
const LABELS: &str = "labels";

/// Labelled samples stored row-major: sample `i` is `features[i*d..(i+1)*d]` with label
/// `labels[i]`. A shard handed to a miner is one of these.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    features: Vec<f32>,
    labels: Vec<u32>,
    feature_count: usize,
}

/// A data shard is a set of samples; the alias names the role.
pub type Shard = Samples;

impl Samples {
    /// Builds a set, checking that the buffers describe the same number of samples.
    pub fn new(features: Vec<f32>, labels: Vec<u32>, feature_count: usize) -> Result<Self> {
        if feature_count == 0 {
            return Err(LearningError::InconsistentSamples(
                "feature count is zero".into(),
            ));
        }
        if features.len() != labels.len() * feature_count {
            return Err(LearningError::InconsistentSamples(format!(
                "{} feature values for {} labels of {feature_count} features",
                features.len(),
                labels.len()
            )));
        }
        Ok(Self {
            features,
            labels,
            feature_count,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Features per sample.
    pub fn feature_count(&self) -> usize {
        self.feature_count
    }

    /// All features, row-major `[len, feature_count]`.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// Mutable features, for in-place preprocessing.
    pub fn features_mut(&mut self) -> &mut [f32] {
        &mut self.features
    }

    /// All labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Features of sample `index`.
    pub fn row(&self, index: usize) -> &[f32] {
        &self.features[index * self.feature_count..(index + 1) * self.feature_count]
    }

    /// The samples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Self {
        let mut features = Vec::with_capacity(indices.len() * self.feature_count);
        let mut labels = Vec::with_capacity(indices.len());
        for &index in indices {
            features.extend_from_slice(self.row(index));
            labels.push(self.labels[index]);
        }
        Self {
            features,
            labels,
            feature_count: self.feature_count,
        }
    }

    /// Serialises as safetensors: `features` f32 `[n, d]` and `labels` u32 `[n]`.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let feature_bytes = f32_to_le_bytes(&self.features);
        let label_bytes: Vec<u8> = self.labels.iter().flat_map(|l| l.to_le_bytes()).collect();
        let tensors = [
            (
                FEATURES,
                safetensors::tensor::TensorView::new(
                    Dtype::F32,
                    vec![self.len(), self.feature_count],
                    &feature_bytes,
                )?,
            ),
            (
                LABELS,
                safetensors::tensor::TensorView::new(Dtype::U32, vec![self.len()], &label_bytes)?,
            ),
        ];
        Ok(safetensors::serialize(
            tensors,
            None::<HashMap<String, String>>,
        )?)
    }

    /// Parses a shard received from outside, checking size, names, dtypes, shapes,
    /// finiteness, the expected feature count and that every label is below `class_count`.
    pub fn from_safetensors(
        bytes: &[u8],
        feature_count: usize,
        class_count: usize,
    ) -> Result<Self> {
        let bad = |reason: String| LearningError::BadShard(reason);
        if bytes.len() > SHARD_BYTES_MAX {
            return Err(bad(format!(
                "{} bytes exceeds SHARD_BYTES_MAX ({SHARD_BYTES_MAX})",
                bytes.len()
            )));
        }
        let parsed = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        for name in parsed.names() {
            if name != FEATURES && name != LABELS {
                return Err(bad(format!("unexpected tensor {name:?}")));
            }
        }
        let features = parsed
            .tensor(FEATURES)
            .map_err(|_| bad("missing tensor \"features\"".into()))?;
        let labels = parsed
            .tensor(LABELS)
            .map_err(|_| bad("missing tensor \"labels\"".into()))?;
        if features.dtype() != Dtype::F32 || labels.dtype() != Dtype::U32 {
            return Err(bad(format!(
                "dtypes {:?}/{:?}, expected F32/U32",
                features.dtype(),
                labels.dtype()
            )));
        }
        let n = match labels.shape() {
            [n] => *n,
            other => return Err(bad(format!("labels shape {other:?}, expected [n]"))),
        };
        if features.shape() != [n, feature_count] {
            return Err(bad(format!(
                "features shape {:?}, expected [{n}, {feature_count}]",
                features.shape()
            )));
        }
        let feature_values = f32_from_le_bytes(features.data());
        if let Some(index) = feature_values.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("feature value {index} is not finite")));
        }
        let label_values: Vec<u32> = labels
            .data()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(label) = label_values.iter().find(|&&l| l as usize >= class_count) {
            return Err(bad(format!(
                "label {label} is not below the class count {class_count}"
            )));
        }
        Self::new(feature_values, label_values, feature_count)
    }
}

/// Little-endian bytes of f32 values (the safetensors byte order).
pub(crate) fn f32_to_le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// f32 values from little-endian bytes; a trailing partial value is ignored (callers
/// check lengths through the tensor shape first).
pub(crate) fn f32_from_le_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_samples() -> Samples {
        Samples::new(vec![1.0, 2.0, 3.0, 4.0], vec![0, 1], 2).unwrap()
    }

    #[test]
    fn shard_round_trips_through_safetensors() {
        let shard = two_samples();
        let bytes = shard.to_safetensors().unwrap();
        assert_eq!(Samples::from_safetensors(&bytes, 2, 2).unwrap(), shard);
    }

    #[test]
    fn shard_decoder_rejects_wrong_width_labels_out_of_range_and_garbage() {
        let bytes = two_samples().to_safetensors().unwrap();
        assert!(matches!(
            Samples::from_safetensors(&bytes, 3, 2),
            Err(LearningError::BadShard(_))
        ));
        assert!(matches!(
            Samples::from_safetensors(&bytes, 2, 1),
            Err(LearningError::BadShard(_))
        ));
        assert!(matches!(
            Samples::from_safetensors(&bytes[..bytes.len() - 3], 2, 2),
            Err(LearningError::BadShard(_))
        ));
        let nan = Samples::new(vec![f32::NAN, 0.0], vec![0], 2).unwrap();
        assert!(matches!(
            Samples::from_safetensors(&nan.to_safetensors().unwrap(), 2, 2),
            Err(LearningError::BadShard(_))
        ));
    }

    #[test]
    fn mismatched_buffers_are_refused() {
        assert!(Samples::new(vec![1.0; 5], vec![0, 1], 2).is_err());
    }
}
