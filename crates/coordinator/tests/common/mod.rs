//! Test miners: what a miner does with a task, in-process (honest, lazy, noisy, broken).
#![allow(dead_code)]

use bitcoin::secp256k1::{All, Secp256k1, SecretKey};
use bitcoin::{Address, CompressedPublicKey, Network};
use coordinator::api::{Hardware, RegisterRequest, TaskInfo};
use learning::{
    encode_update, model_from_safetensors, train, Budget, Model, Samples, SegmentUpdate,
    TrainConfig,
};
use rand::{Rng, SeedableRng};

pub fn hardware() -> Hardware {
    Hardware {
        threads: 2,
        memory_bytes: 1 << 30,
    }
}

pub fn payout(secp: &Secp256k1<All>, key: &SecretKey) -> String {
    Address::p2wpkh(&CompressedPublicKey(key.public_key(secp)), Network::Regtest).to_string()
}

pub fn registration(secp: &Secp256k1<All>, key: &SecretKey, cycle: u64) -> RegisterRequest {
    RegisterRequest::new_signed(secp, key, cycle, payout(secp, key), hardware())
}

/// Trains the task's segment on the shard for a fixed number of steps; returns the upload.
pub fn honest_update(task: &TaskInfo, weights: &[u8], shard: &[u8], steps: u64) -> Vec<u8> {
    let mut model = model_from_safetensors(task.model.clone(), weights).unwrap();
    let shard = Samples::from_safetensors(shard, task.feature_count, task.class_count).unwrap();
    let config = TrainConfig {
        lr: task.hints.lr,
        momentum: task.hints.momentum,
        batch: task.hints.batch,
        budget: Budget::Steps(steps),
        seed: task.shard_index as u64,
        threads: 1,
    };
    train(
        &mut model,
        &[task.segment.segment.as_str()],
        &shard,
        &config,
    )
    .unwrap();
    encode_update(&model, &task.segment.segment).unwrap()
}

fn segment_of(task: &TaskInfo, weights: &[u8]) -> (Model, SegmentUpdate) {
    let model = model_from_safetensors(task.model.clone(), weights).unwrap();
    let update = SegmentUpdate::from_model(&model, &task.segment.segment).unwrap();
    (model, update)
}

/// The segment exactly as received: no work done.
pub fn unchanged_update(task: &TaskInfo, weights: &[u8]) -> Vec<u8> {
    segment_of(task, weights).1.to_safetensors().unwrap()
}

/// Every weight of the segment replaced by large random values.
pub fn noise_update(task: &TaskInfo, weights: &[u8], seed: u64) -> Vec<u8> {
    let (_, mut update) = segment_of(task, weights);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for t in &mut update.tensors {
        for v in &mut t.values {
            *v = rng.gen_range(-3.0..3.0);
        }
    }
    update.to_safetensors().unwrap()
}

/// A trained-looking update with one NaN weight.
pub fn nan_update(task: &TaskInfo, weights: &[u8]) -> Vec<u8> {
    let (_, mut update) = segment_of(task, weights);
    update.tensors[0].values[0] = f32::NAN;
    update.to_safetensors().unwrap()
}

/// An update whose first tensor has one row too few.
pub fn wrong_shape_update(task: &TaskInfo, weights: &[u8]) -> Vec<u8> {
    let (_, mut update) = segment_of(task, weights);
    let t = &mut update.tensors[0];
    let row: usize = t.shape[1..].iter().product();
    t.shape[0] -= 1;
    t.values.truncate(t.values.len() - row);
    update.to_safetensors().unwrap()
}
