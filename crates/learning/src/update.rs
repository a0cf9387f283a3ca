//! Updates: a trained segment as safetensors bytes, and the strict decoder the
//! coordinator runs on what miners upload.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors};

use crate::error::{LearningError, Result};
use crate::model::{Model, NamedTensor};
use crate::samples::{f32_from_le_bytes, f32_to_le_bytes};

/// Room allowed for the safetensors header (8-byte length plus JSON naming each tensor's
/// dtype, shape and offsets) on top of the tensor data. A segment has a handful of
/// tensors, whose header is a few hundred bytes; 64 KiB is generous and still stops a
/// miner from padding an upload with megabytes of header.
pub const UPDATE_HEADER_BYTES_MAX: usize = 64 * 1024;

/// Why an uploaded update was refused. One variant per check, in the order they run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpdateError {
    /// Larger than the segment's data plus [`UPDATE_HEADER_BYTES_MAX`].
    #[error("update is {bytes} bytes, limit for this segment is {limit_bytes} (data + UPDATE_HEADER_BYTES_MAX)")]
    Oversize {
        /// Size received.
        bytes: usize,
        /// Size allowed.
        limit_bytes: usize,
    },
    /// Not a well-formed safetensors buffer.
    #[error("update is not valid safetensors: {0}")]
    Malformed(String),
    /// A tensor that is not part of the segment.
    #[error("update has tensor {0:?}, which is not in the segment")]
    UnknownTensor(String),
    /// A tensor of the segment that the update lacks.
    #[error("update lacks tensor {0:?}")]
    MissingTensor(String),
    /// A tensor stored as something other than f32.
    #[error("tensor {name:?} is {found}, expected F32")]
    WrongDtype {
        /// Tensor name.
        name: String,
        /// dtype found.
        found: String,
    },
    /// A tensor whose shape differs from the model's.
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    WrongShape {
        /// Tensor name.
        name: String,
        /// Shape in the model.
        expected: Vec<usize>,
        /// Shape received.
        found: Vec<usize>,
    },
    /// A NaN or infinite weight.
    #[error("tensor {name:?} has a non-finite value at index {index}")]
    NonFinite {
        /// Tensor name.
        name: String,
        /// Flat index of the first offending value.
        index: usize,
    },
}

/// What an update for one segment must contain: the task a miner was given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExpectedSegment {
    /// Segment name.
    pub segment: String,
    /// Names and shapes of its tensors, in model order.
    pub tensors: Vec<(String, Vec<usize>)>,
}

impl ExpectedSegment {
    /// The expectation for segment `segment` of `model`.
    pub fn of(model: &Model, segment: &str) -> Result<Self> {
        let seg = model.segment(segment)?;
        let tensors = seg
            .param_names
            .iter()
            .map(|name| Ok((name.clone(), model.param(name)?.shape.clone())))
            .collect::<Result<_>>()?;
        Ok(Self {
            segment: seg.name,
            tensors,
        })
    }

    /// Largest acceptable encoded size.
    pub fn limit_bytes(&self) -> usize {
        let values: usize = self
            .tensors
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        values * 4 + UPDATE_HEADER_BYTES_MAX
    }
}

/// A decoded, checked update: new values for every tensor of one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentUpdate {
    /// Segment name.
    pub segment: String,
    /// Its tensors, in model order.
    pub tensors: Vec<NamedTensor>,
}

impl SegmentUpdate {
    /// The current values of `segment` in `model` (what a miner uploads after training).
    pub fn from_model(model: &Model, segment: &str) -> Result<Self> {
        let seg = model.segment(segment)?;
        let tensors = seg
            .param_names
            .iter()
            .map(|name| model.param(name).cloned())
            .collect::<Result<_>>()?;
        Ok(Self {
            segment: seg.name,
            tensors,
        })
    }

    /// Writes these tensors into `model`.
    pub fn apply_to(&self, model: &mut Model) -> Result<()> {
        for tensor in &self.tensors {
            if model.param(&tensor.name)?.shape != tensor.shape {
                return Err(LearningError::InvalidSpec(format!(
                    "update tensor {} has shape {:?}",
                    tensor.name, tensor.shape
                )));
            }
            model.set_param(&tensor.name, &tensor.values)?;
        }
        Ok(())
    }

    /// Serialises as safetensors (f32 tensors named as in the model).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let bytes: Vec<Vec<u8>> = self
            .tensors
            .iter()
            .map(|t| f32_to_le_bytes(&t.values))
            .collect();
        let views = self
            .tensors
            .iter()
            .zip(&bytes)
            .map(|(t, b)| {
                Ok((
                    t.name.as_str(),
                    safetensors::tensor::TensorView::new(Dtype::F32, t.shape.clone(), b)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(safetensors::serialize(
            views,
            None::<HashMap<String, String>>,
        )?)
    }
}

/// The update a miner uploads: segment `segment` of its trained `model` as safetensors.
pub fn encode_update(model: &Model, segment: &str) -> Result<Vec<u8>> {
    SegmentUpdate::from_model(model, segment)?.to_safetensors()
}

/// Decodes and checks an uploaded update against the task: size, format, names, dtype,
/// shapes, finiteness.
pub fn decode_update(
    bytes: &[u8],
    expected: &ExpectedSegment,
) -> Result<SegmentUpdate, UpdateError> {
    let limit_bytes = expected.limit_bytes();
    if bytes.len() > limit_bytes {
        return Err(UpdateError::Oversize {
            bytes: bytes.len(),
            limit_bytes,
        });
    }
    let parsed =
        SafeTensors::deserialize(bytes).map_err(|e| UpdateError::Malformed(e.to_string()))?;
    let mut names = parsed.names();
    names.sort_unstable();
    if let Some(unknown) = names
        .iter()
        .find(|n| !expected.tensors.iter().any(|(name, _)| name == *n))
    {
        return Err(UpdateError::UnknownTensor((*unknown).to_owned()));
    }
    let mut tensors = Vec::with_capacity(expected.tensors.len());
    for (name, shape) in &expected.tensors {
        let view = parsed
            .tensor(name)
            .map_err(|_| UpdateError::MissingTensor(name.clone()))?;
        if view.dtype() != Dtype::F32 {
            return Err(UpdateError::WrongDtype {
                name: name.clone(),
                found: format!("{:?}", view.dtype()),
            });
        }
        if view.shape() != shape.as_slice() {
            return Err(UpdateError::WrongShape {
                name: name.clone(),
                expected: shape.clone(),
                found: view.shape().to_vec(),
            });
        }
        let values = f32_from_le_bytes(view.data());
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(UpdateError::NonFinite {
                name: name.clone(),
                index,
            });
        }
        tensors.push(NamedTensor {
            name: name.clone(),
            shape: shape.clone(),
            values,
        });
    }
    Ok(SegmentUpdate {
        segment: expected.segment.clone(),
        tensors,
    })
}
