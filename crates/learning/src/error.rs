//! The error type of the crate's fallible operations other than update decoding
//! (which has its own enum, [`crate::UpdateError`], because the coordinator maps each
//! of its variants to a rejection reason).

use std::path::PathBuf;

/// Why a learning operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LearningError {
    /// A `--dataset` value that is none of `digits`, `mnist:DIR`, `csv:FILE`.
    #[error("unknown dataset {0:?}: expected `digits`, `mnist:DIR` or `csv:FILE`")]
    UnknownDataset(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A dataset file that does not parse as its format says it should.
    #[error("malformed dataset {source_name}: {reason}")]
    MalformedDataset {
        /// File or built-in name.
        source_name: String,
        /// What is wrong, with the position where known.
        reason: String,
    },
    /// Too few samples to carve the requested split or shards.
    #[error("dataset too small: {reason}")]
    TooFewSamples {
        /// What could not be satisfied.
        reason: String,
    },
    /// Feature and label buffers that do not describe the same samples.
    #[error("inconsistent samples: {0}")]
    InconsistentSamples(String),
    /// A model spec that cannot be built (zero sizes, even kernel, ...).
    #[error("invalid model spec: {0}")]
    InvalidSpec(String),
    /// A segment name that the model does not have.
    #[error("unknown segment {0:?}")]
    UnknownSegment(String),
    /// A parameter name that the model does not have.
    #[error("unknown parameter {0:?}")]
    UnknownParameter(String),
    /// Samples whose feature count or labels do not fit the model.
    #[error("samples do not fit the model: {0}")]
    SamplesDoNotFitModel(String),
    /// A training configuration that cannot run (zero batch, zero threads, bad rate).
    #[error("invalid training config: {0}")]
    InvalidTrainConfig(String),
    /// A training state that does not fit the run it is for, or bytes that are not one.
    #[error("invalid training state: {0}")]
    InvalidState(String),
    /// Aggregation inputs that cannot be merged.
    #[error("cannot aggregate: {0}")]
    InvalidAggregation(String),
    /// Training diverged: the loss or a weight stopped being finite.
    #[error("training diverged at step {step}: loss is not finite")]
    Diverged {
        /// The step whose loss was not finite.
        step: u64,
    },
    /// A serialised shard that fails its checks.
    #[error("bad shard: {0}")]
    BadShard(String),
    /// The model card could not be serialised or parsed.
    #[error("model card: {0}")]
    ModelCard(#[from] serde_json::Error),
    /// safetensors refused to write or read a buffer.
    #[error("safetensors: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    /// A tensor operation failed inside candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// A SIMD level that is unknown or that this CPU does not offer.
    #[error("{0}")]
    Simd(#[from] crate::kernel::SimdError),
    /// The worker thread pool could not be created.
    #[error("thread pool: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
}

/// Result alias for this crate.
pub type Result<T, E = LearningError> = std::result::Result<T, E>;
