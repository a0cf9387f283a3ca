//! The useful work of trainchain: real models trained on real data shards, scored,
//! merged and exported. Built on candle and a reproducible matrix kernel of its own; the
//! chain's work runs on the CPU ([`ComputeDevice`] says why a GPU is refused). This crate
//! knows nothing about blocks or networks; the coordinator and the miner call it.
//!
//! A cycle, from the coordinator's side:
//! 1. [`Dataset::load`] a [`DatasetSource`], [`Dataset::split`] it with a fixed seed,
//!    [`Normalisation::for_dataset`] on the training split (a [`Normalisation::fit`], or the
//!    identity for text datasets, whose features are token ids: [`Dataset::normalises`])
//!    and [`Normalisation::apply`] to all three sets; size the model with
//!    [`ModelChoice::spec`] (`lm:` models for `text:FILE` and `wordnet`);
//! 2. [`make_shards`] of the training set, each sent as [`Samples::to_safetensors`];
//! 3. miners [`train`] the [`Segment`]s they are given and upload [`encode_update`];
//! 4. the coordinator [`decode_update`]s against the [`ExpectedSegment`], scores with
//!    [`loss_with_segment`] on the held-out set, and [`aggregate`]s the accepted ones;
//! 5. [`write_export`] the global model with its [`ModelCard`].
//!
//! Training is bitwise reproducible: same weights, shard, segments and [`TrainConfig`]
//! (any thread count) give the same [`model_hash`]; for MLPs, training and evaluation give
//! the same bits on any x86-64 CPU with FMA under any SIMD level ([`kernel`]), and so do
//! transformers (whose softmaxes call `f32::exp`, as the MLP's loss does).

mod aggregate;
#[cfg(test)]
mod autograd;
mod checkpoint;
mod choice;
mod dataset;
mod device;
mod error;
mod eval;
mod export;
mod fused_cnn;
mod fused_mlp;
mod fused_transformer;
mod generate;
pub mod kernel;
mod model;
mod normalisation;
mod samples;
mod shard;
mod train;
mod update;

pub use aggregate::{aggregate, AcceptedUpdate, Aggregation};
pub use checkpoint::{TrainState, STATE_BYTES_MAX};
pub use choice::{ModelChoice, CNN_KERNEL_DEFAULT, LM_DEFAULT};
pub use dataset::{
    parse_csv, parse_idx_images, parse_idx_labels, text_windows, Dataset, DatasetSource,
    ImageShape, Split, SplitFractions, CLASSES_MAX, DATASET_FILE_BYTES_MAX, TEXT_CONTEXT,
    TEXT_VOCAB,
};
pub use device::{ComputeDevice, DeviceError};
pub use error::{LearningError, Result};
pub use eval::{
    evaluate, evaluate_with_kernel, loss_with_segment, Eval, EVAL_BATCH, EVAL_BATCH_TRANSFORMER,
};
pub use export::{
    model_from_safetensors, model_hash, model_hash_hex, model_to_safetensors, write_export,
    ExportPaths, ModelCard, Preprocessing, MODEL_CARD_FORMAT,
};
pub use generate::{sample_text, SAMPLE_LEN_MAX, SAMPLE_TEMPERATURE};
pub use kernel::{Kernel, Simd, SimdError, SimdLevel, SIMD_ENV};
pub use model::{
    segment_of, Model, ModelSpec, NamedTensor, Segment, LAYER_NORM_EPS, PARAMS_MAX,
    TRANSFORMER_CONTEXT_MAX, TRANSFORMER_INIT_STD,
};
pub use normalisation::{Normalisation, STD_FLOOR};
pub use samples::{Samples, Shard, SHARD_BYTES_MAX};
pub use shard::{make_shards, shard_assignment};
pub use train::{
    train, train_with_kernel, BatchOrder, Budget, TrainConfig, TrainReport, Trainer, BATCH_MAX,
    THREADS_MAX,
};
pub use update::{
    decode_update, encode_update, ExpectedSegment, SegmentUpdate, UpdateError,
    UPDATE_HEADER_BYTES_MAX,
};
