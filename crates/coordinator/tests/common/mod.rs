//! Test miners: what a miner does with a task, in-process (honest, lazy, noisy, broken).
#![allow(dead_code)]

use bitcoin::secp256k1::{All, Secp256k1, SecretKey};
use bitcoin::{Address, CompressedPublicKey, Network};
use coordinator::api::{Hardware, RegisterRequest, TaskInfo};
use learning::{model_from_safetensors, Model, Samples, SegmentUpdate};
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

/// What an honest miner uploads and keeps: the update bytes, the commitment it signs, and the
/// record of its run (to answer its challenge).
pub struct HonestWork {
    pub update: Vec<u8>,
    pub commitment: proof::Commitment,
    pub record: proof::RunRecord,
}

/// Runs the task's replayable training for `steps` steps (at most the task's budget),
/// recording its transcript.
pub fn honest_work(task: &TaskInfo, weights: &[u8], shard: &[u8], steps: u64) -> HonestWork {
    let model = model_from_safetensors(task.model.clone(), weights).unwrap();
    let shard = Samples::from_safetensors(shard, task.feature_count, task.class_count).unwrap();
    let train = proof::evidence::train_part(&shard, task.replay.train_samples).unwrap();
    let run = proof::run_task(
        &task.replay,
        &model,
        &train,
        1,
        |state| state.step < steps,
        |states| states.len() - 1,
    )
    .unwrap();
    let update = run.update.to_safetensors().unwrap();
    let commitment = run.commitment(&task.replay, primitives::sha256(&update));
    HonestWork {
        update,
        commitment,
        record: run.record,
    }
}

/// The upload of [`honest_work`].
pub fn honest_update(task: &TaskInfo, weights: &[u8], shard: &[u8], steps: u64) -> Vec<u8> {
    honest_work(task, weights, shard, steps).update
}

/// A commitment for an update with no transcript behind it (its check fails or goes
/// unanswered; for tests of everything before the check).
pub fn bare_commitment(task: &TaskInfo) -> proof::Commitment {
    proof::Commitment {
        task_hash: task.replay.hash(),
        update_hash: primitives::Hash256::ZERO,
        transcript_root: primitives::Hash256::ZERO,
        steps: 0,
    }
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

/// Submits `bytes` under `commitment` (its update hash set to that of `bytes`), signed by `key`.
pub fn submit_update(
    c: &coordinator::Coordinator,
    now: u64,
    key: &SecretKey,
    cycle: u64,
    bytes: &[u8],
    commitment: proof::Commitment,
) -> Result<coordinator::api::Receipt, coordinator::ServiceError> {
    let secp = Secp256k1::new();
    let miner = key.public_key(&secp);
    let commitment = proof::Commitment {
        update_hash: primitives::sha256(bytes),
        ..commitment
    };
    let sig = coordinator::api::CompactSignature::sign(
        &secp,
        key,
        &commitment.signing_hash(cycle, &miner),
    );
    let claim = coordinator::SubmissionClaim {
        task_hash: commitment.task_hash,
        transcript_root: commitment.transcript_root,
        steps: commitment.steps,
    };
    c.submit(now, [1; 32], cycle, miner, sig, claim, bytes)
}
