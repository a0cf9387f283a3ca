//! `cargo bench -p miner --bench remeasure`: the auditor's re-measurement of one cycle against
//! the coordinator's own evaluation of it, at 10, 100 and 1,000 entries, interleaved in one
//! run; and the bytes a cycle publishes (record, updates, held-out batch, start model).
//!
//! Both sides run the same `coordinator::work::evaluate_submissions` (the audit must agree bit
//! for bit), so the ratio shows what the audit adds: hashing every published byte, opening the
//! held-out commitment and decoding the start model.

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use coordinator::api::{
    record_digest, Announcement, CompactSignature, CycleRecord, PhaseName, ScoredSubmission,
    SignedAnnouncement,
};
use coordinator::held_out::HeldOutSecret;
use coordinator::work::{evaluate_submissions, WorkSetup, Workload};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use learning::{
    encode_update, model_from_safetensors, model_hash, model_to_safetensors, train, Budget,
    Samples, TrainConfig,
};
use miner::remeasure::{remeasure, PublishedCycle};
use primitives::{sha256, Hash256};

type Input = (PublicKey, String, Vec<u8>, proof::Verdict);

fn miner_key(i: u32) -> SecretKey {
    let mut bytes = [1u8; 32];
    bytes[28..].copy_from_slice(&i.to_be_bytes());
    SecretKey::from_slice(&bytes).expect("valid key")
}

struct Cycle {
    spec: learning::ModelSpec,
    record: CycleRecord,
    published: PublishedCycle,
    inputs: Vec<Input>,
}

/// A cycle with `entries` submissions (two really trained updates, one per segment, shared
/// round-robin: evaluation cost does not depend on the update's values) recorded as the
/// coordinator records it.
fn cycle(entries: u32) -> Cycle {
    let secp = Secp256k1::new();
    let work = Workload::load(
        WorkSetup::digits_mlp(vec![32]),
        HeldOutSecret::from_bytes([3; 32]),
    )
    .expect("digits workload");
    let start = work.initial_model().expect("initial model");
    let shards = work.shards(9, 2).expect("shards");
    let trained: Vec<(String, Vec<u8>)> = ["layer0", "layer1"]
        .iter()
        .enumerate()
        .map(|(i, segment)| {
            let mut model = start.clone();
            let config = TrainConfig {
                lr: 0.05,
                momentum: 0.9,
                batch: 32,
                budget: Budget::Steps(40),
                seed: i as u64,
                threads: 1,
            };
            train(&mut model, &[*segment], &shards[i], &config).expect("training");
            (
                segment.to_string(),
                encode_update(&model, segment).expect("update"),
            )
        })
        .collect();
    let verdict = proof::Verdict::Verified {
        intervals: vec![0],
        replayed_steps: 40,
    };
    let mut inputs: Vec<Input> = (0..entries)
        .map(|i| {
            let (segment, bytes) = &trained[i as usize % 2];
            (
                miner_key(i).public_key(&secp),
                segment.clone(),
                bytes.clone(),
                verdict.clone(),
            )
        })
        .collect();
    inputs.sort_by_key(|(miner, ..)| *miner);
    let batch = work.held_out.batch(0).expect("batch");
    let evaluated = evaluate_submissions(&start, &batch.samples, &inputs).expect("evaluation");
    let coordinator_key = miner_key(u32::MAX);
    let announcement = Announcement {
        cycle: 0,
        chain_id: 1,
        parent: bitcoin::hashes::Hash::from_byte_array([7; 32]),
        height: 1,
        model_hash: Hash256(model_hash(&start)),
        opened_at_ms: 0,
        registration_deadline_ms: 1,
        submission_deadline_ms: 2,
        challenge_deadline_ms: 3,
        block_window_ms: 4,
        commitment: Hash256([1; 32]),
        held_out_commitment: batch.reveal.commitment(),
        prev_record_hash: Hash256::ZERO,
        coordinator: coordinator_key.public_key(&secp),
        job: Hash256::ZERO,
    };
    let submissions = inputs
        .iter()
        .zip(&evaluated.measurements)
        .map(|((miner, segment, bytes, verdict), m)| ScoredSubmission {
            miner: *miner,
            payout_address: String::new(),
            segment: segment.clone(),
            update_hash: sha256(bytes),
            commitment: proof::Commitment {
                task_hash: Hash256([2; 32]),
                update_hash: sha256(bytes),
                transcript_root: Hash256([3; 32]),
                steps: 40,
            },
            received_at_ms: 1,
            params_trained: m.params_trained,
            loss_reduction: m.loss_reduction,
            score: coordinator::api::verified_score(verdict, m.params_trained, m.loss_reduction),
            verification: verdict.clone(),
            checkpoint_interval: 16,
        })
        .collect();
    let mut record = CycleRecord {
        announcement: SignedAnnouncement {
            signature: CompactSignature::sign(
                &secp,
                &coordinator_key,
                &announcement.signing_hash(),
            ),
            announcement,
        },
        phase: PhaseName::Closed,
        registered: u64::from(entries),
        submitted: u64::from(entries),
        revealed_secret: Some(Hash256([1; 32])),
        commitments_digest: Some(Hash256([4; 32])),
        global_loss_units: Some(evaluated.global_loss_units),
        submissions,
        contributions_root: Some(Hash256([5; 32])),
        lottery_seed: Some(Hash256([6; 32])),
        draw_order: vec![],
        block_certificates: vec![],
        outcome: None,
        next_model_hash: Some(Hash256(model_hash(&evaluated.next_model))),
        merged_model_hash: None,
        held_out: Some(batch.reveal),
        record_hash: None,
        next_quality: None,
        slashes: Vec::new(),
        admission: None,
        verification: Default::default(),
    };
    record.record_hash = Some(record_digest(&record));
    let published = PublishedCycle {
        start_model: model_to_safetensors(&start).expect("weights"),
        held_out: batch.bytes,
        updates: inputs
            .iter()
            .map(|(_, _, bytes, _)| bytes.clone())
            .collect(),
    };
    remeasure(&work.setup.model, &record, &[], &published).expect("an honest cycle audits");
    Cycle {
        spec: work.setup.model.clone(),
        record,
        published,
        inputs,
    }
}

fn published_bytes(c: &Cycle) {
    let record = serde_json::to_vec(&c.record).expect("record JSON").len();
    let updates: usize = c.published.updates.iter().map(Vec::len).sum();
    println!(
        "entries {:>5}: record {} B, updates {} B, held-out batch {} B, start model {} B, total {} B per cycle",
        c.record.submissions.len(),
        record,
        updates,
        c.published.held_out.len(),
        c.published.start_model.len(),
        record + updates + c.published.held_out.len() + c.published.start_model.len()
    );
}

fn bench(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("cycle_evaluation");
    group.sample_size(10);
    for entries in [10u32, 100, 1_000] {
        let c = cycle(entries);
        published_bytes(&c);
        // The coordinator's side: decode its start model and batch, evaluate every entry.
        group.bench_with_input(BenchmarkId::new("coordinator", entries), &c, |b, c| {
            b.iter(|| {
                let start = model_from_safetensors(c.spec.clone(), &c.published.start_model)
                    .expect("start");
                let held_out = Samples::from_safetensors(
                    &c.published.held_out,
                    c.spec.input_features(),
                    c.spec.classes(),
                )
                .expect("batch");
                evaluate_submissions(&start, &held_out, &c.inputs).expect("evaluation")
            })
        });
        // The auditor's side: everything the coordinator did, plus every check of the record.
        group.bench_with_input(BenchmarkId::new("audit", entries), &c, |b, c| {
            b.iter(|| remeasure(&c.spec, &c.record, &[], &c.published).expect("audit"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
