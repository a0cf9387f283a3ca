//! A coordinator that misreports, swaps or reuses the held-out batch, rewrites a record or
//! merges other weights than it published is caught by the auditor's re-measurement, each with
//! its own reason. The honest cycle is computed with the coordinator's own code, then each
//! test double changes one thing.

use bitcoin::secp256k1::{Secp256k1, SecretKey};
use coordinator::api::{
    record_digest, Announcement, CompactSignature, CycleRecord, PhaseName, ScoredSubmission,
    SignedAnnouncement,
};
use coordinator::held_out::HeldOutSecret;
use coordinator::work::{evaluate_submissions, WorkSetup, Workload};
use learning::{encode_update, model_hash, model_to_safetensors, train, Budget, TrainConfig};
use miner::audit::check_receipts;
use miner::remeasure::{check_record_chain, remeasure, PublishedCycle};
use primitives::{sha256, Hash256};

struct Honest {
    spec: learning::ModelSpec,
    record: CycleRecord,
    published: PublishedCycle,
    work: Workload,
}

fn key(i: u8) -> SecretKey {
    SecretKey::from_slice(&[i; 32]).unwrap()
}

/// One cycle with two trained submissions, recorded as an honest coordinator would.
fn honest_cycle() -> Honest {
    let secp = Secp256k1::new();
    let work = Workload::load(
        WorkSetup::digits_mlp(vec![16]),
        HeldOutSecret::from_bytes([3; 32]),
    )
    .unwrap();
    let start = work.initial_model().unwrap();
    let shards = work.shards(9, 2).unwrap();
    let segments = ["layer0", "layer1"];
    let mut inputs = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let mut model = start.clone();
        let config = TrainConfig {
            lr: 0.05,
            momentum: 0.9,
            batch: 32,
            budget: Budget::Steps(40),
            seed: i as u64,
            threads: 1,
        };
        train(&mut model, &[*segment], &shards[i], &config).unwrap();
        let verdict = proof::Verdict::Verified {
            intervals: vec![0],
            replayed_steps: 40,
        };
        inputs.push((
            key(i as u8 + 1).public_key(&secp),
            segment.to_string(),
            encode_update(&model, segment).unwrap(),
            verdict,
        ));
    }
    inputs.sort_by_key(|(miner, ..)| *miner);
    let batch = work.held_out.batch(0).unwrap();
    let evaluated = evaluate_submissions(&start, &batch.samples, &inputs).unwrap();
    let coordinator_key = key(9);
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
        .collect::<Vec<_>>();
    assert!(
        submissions.iter().any(|s| s.score > 0),
        "a real cycle scores"
    );
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
        registered: 2,
        submitted: 2,
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
        next_quality: Some(
            work.quality(&evaluated.next_model, &batch.samples)
                .unwrap()
                .report(),
        ),
        slashes: Vec::new(),
        admission: None,
        verification: coordinator::verifier_api::VerificationRecord {
            checkpoint_interval: 16,
            ..Default::default()
        },
    };
    record.record_hash = Some(record_digest(&record));
    let published = PublishedCycle {
        start_model: model_to_safetensors(&start).unwrap(),
        held_out: batch.bytes,
        updates: inputs.into_iter().map(|(_, _, bytes, _)| bytes).collect(),
    };
    Honest {
        spec: work.setup.model.clone(),
        record,
        published,
        work,
    }
}

fn reason(h: &Honest, record: &CycleRecord, earlier: &[CycleRecord]) -> String {
    remeasure(&h.spec, record, earlier, &h.published)
        .unwrap_err()
        .to_string()
}

/// Re-signs nothing: a test double edits the record and recomputes the digest it publishes,
/// as a coordinator covering its tracks would.
fn republished(mut record: CycleRecord) -> CycleRecord {
    record.record_hash = Some(record_digest(&record));
    record
}

#[test]
fn an_honest_cycle_remeasures_bit_for_bit() {
    let h = honest_cycle();
    remeasure(&h.spec, &h.record, &[], &h.published).unwrap();
}

#[test]
fn a_misreported_loss_is_caught() {
    let h = honest_cycle();
    let mut record = h.record.clone();
    record.submissions[0].loss_reduction += 1;
    let why = reason(&h, &republished(record), &[]);
    assert!(why.contains("misreported measurement"), "{why}");
}

#[test]
fn a_misreported_quality_of_the_merge_is_caught() {
    // A job's loss target is judged on the merge's loss: a coordinator ending a job early by
    // reporting a lower one is caught.
    let h = honest_cycle();
    let mut record = h.record.clone();
    if let Some(q) = record.next_quality.as_mut() {
        q.held_out_loss_units -= 1;
    }
    let why = reason(&h, &republished(record), &[]);
    assert!(why.contains("misreported quality"), "{why}");
}

#[test]
fn at_a_jobs_end_the_merge_is_checked_against_the_recorded_merge() {
    // The next model is the next job's; the merge recorded as the job's result must be the
    // one the published data gives.
    let h = honest_cycle();
    let mut record = h.record.clone();
    let merge = record.next_model_hash;
    record.merged_model_hash = merge;
    record.next_model_hash = Some(Hash256([0x4e; 32]));
    remeasure(&h.spec, &republished(record.clone()), &[], &h.published).unwrap();
    record.merged_model_hash = Some(Hash256([0x4f; 32]));
    let why = reason(&h, &republished(record), &[]);
    assert!(why.contains("merged with other weights"), "{why}");
}

#[test]
fn a_dropped_update_is_caught() {
    let h = honest_cycle();
    let mut published = PublishedCycle {
        start_model: h.published.start_model.clone(),
        held_out: h.published.held_out.clone(),
        updates: h.published.updates.clone(),
    };
    published.updates.pop();
    let why = remeasure(&h.spec, &h.record, &[], &published)
        .unwrap_err()
        .to_string();
    assert!(why.contains("not every receipted update"), "{why}");
}

#[test]
fn a_swapped_held_out_batch_is_caught() {
    let h = honest_cycle();
    let other = h.work.held_out.batch(1).unwrap();
    let mut record = h.record.clone();
    record.held_out = Some(other.reveal);
    let why = remeasure(
        &h.spec,
        &republished(record),
        &[],
        &PublishedCycle {
            start_model: h.published.start_model.clone(),
            held_out: other.bytes,
            updates: h.published.updates.clone(),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(why.contains("batch was swapped"), "{why}");
}

#[test]
fn a_reused_held_out_batch_is_caught() {
    let h = honest_cycle();
    let mut earlier = h.record.clone();
    earlier.announcement.announcement.cycle = 0;
    let mut record = h.record.clone();
    record.announcement.announcement.cycle = 1;
    let why = reason(&h, &republished(record), &[earlier]);
    assert!(why.contains("never reused"), "{why}");
}

#[test]
fn a_rewritten_record_is_caught_by_its_anchor_and_by_the_next_announcement() {
    let h = honest_cycle();
    let anchored = h.record.clone();
    let mut rewritten = h.record.clone();
    rewritten.submissions[1].score = rewritten.submissions[1].score.saturating_add(7);
    // The chain's certificate carries the digest of the record as first published.
    let secp = Secp256k1::new();
    let chain = testkit::TestChain::new();
    let mut body = chain.certificate_body(
        1,
        anchored.announcement.announcement.parent,
        0,
        key(1).public_key(&secp),
    );
    body.record_hash = record_digest(&anchored);
    rewritten.block_certificates = vec![coordinator::api::CertificateHex(
        chain.sign_certificate(body),
    )];
    let why = reason(&h, &republished(rewritten.clone()), &[]);
    assert!(why.contains("record was rewritten"), "{why}");
    // The next cycle's announcement chains to the digest first published.
    let next = paced_next(&h);
    check_record_chain(&anchored, &next).unwrap();
    let why = check_record_chain(&rewritten, &next)
        .unwrap_err()
        .to_string();
    assert!(why.contains("record was rewritten"), "{why}");
}

/// The next cycle of `h`, chained to its record, with a 12 s training window and each
/// submission's checkpoint interval as the pacing rule gives it.
fn paced_next(h: &Honest) -> CycleRecord {
    let mut next = h.record.clone();
    let a = &mut next.announcement.announcement;
    a.cycle = 1;
    a.prev_record_hash = record_digest(&h.record);
    a.registration_deadline_ms = 10_000;
    a.submission_deadline_ms = 22_000;
    let samples = coordinator::pace::samples(&h.record);
    for s in &mut next.submissions {
        s.checkpoint_interval =
            coordinator::pace::checkpoint_interval(samples.get(&s.miner).copied(), 12_000, 16);
    }
    next
}

#[test]
fn a_step_budget_the_coordinator_chose_is_caught() {
    let h = honest_cycle();
    let next = paced_next(&h);
    // Both miners finished 40 steps at once: paced to fill the window, 16 times their k.
    assert!(next
        .submissions
        .iter()
        .all(|s| s.checkpoint_interval == 256));
    check_record_chain(&h.record, &next).unwrap();
    // A coordinator steering the lottery gives one miner more training than its pace.
    let mut favoured = next.clone();
    favoured.submissions[0].checkpoint_interval *= 2;
    let why = check_record_chain(&h.record, &favoured)
        .unwrap_err()
        .to_string();
    assert!(why.contains("a budget the coordinator chose"), "{why}");
    // Rewriting the earlier record to make the favour look earned (an earlier submission
    // time: a faster run) breaks the anchor the next announcement carries.
    let mut rewritten = h.record.clone();
    rewritten.submissions[0].received_at_ms = 0;
    rewritten.submissions[0].checkpoint_interval *= 2;
    let why = check_record_chain(&rewritten, &favoured)
        .unwrap_err()
        .to_string();
    assert!(why.contains("record was rewritten"), "{why}");
    // Or starves one: a miner whose last run was verified keeps the budget it earned.
    let mut starved = next;
    starved.submissions[1].checkpoint_interval = 16;
    let why = check_record_chain(&h.record, &starved)
        .unwrap_err()
        .to_string();
    assert!(why.contains("a budget the coordinator chose"), "{why}");
}

#[test]
fn an_unverified_run_earns_no_pace() {
    let h = honest_cycle();
    let mut previous = h.record.clone();
    previous.submissions[0].verification = proof::Verdict::Unanswered;
    let samples = coordinator::pace::samples(&previous);
    assert!(!samples.contains_key(&previous.submissions[0].miner));
    assert!(samples.contains_key(&previous.submissions[1].miner));
}

#[test]
fn a_merge_of_other_weights_is_caught() {
    let h = honest_cycle();
    let mut record = h.record.clone();
    record.next_model_hash = Some(Hash256([0xab; 32]));
    let why = reason(&h, &republished(record), &[]);
    assert!(why.contains("merged with other weights"), "{why}");
}

#[test]
fn a_served_start_model_other_than_announced_is_caught() {
    let h = honest_cycle();
    let mut other = h.work.initial_model().unwrap();
    let name = other.params()[0].name.clone();
    let mut values = other.params()[0].values.clone();
    values[0] += 1.0;
    other.set_param(&name, &values).unwrap();
    let why = remeasure(
        &h.spec,
        &h.record,
        &[],
        &PublishedCycle {
            start_model: model_to_safetensors(&other).unwrap(),
            held_out: h.published.held_out.clone(),
            updates: h.published.updates.clone(),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(why.contains("not the announced one"), "{why}");
}

/// The receipts the coordinator signed for `record`'s submissions, with `coordinator`'s key.
fn receipts_for(record: &CycleRecord, coordinator: &SecretKey) -> Vec<coordinator::api::Receipt> {
    let secp = Secp256k1::new();
    record
        .submissions
        .iter()
        .map(|s| {
            let mut receipt = coordinator::api::Receipt {
                cycle: record.announcement.announcement.cycle,
                miner: s.miner,
                update_hash: s.update_hash,
                transcript_root: s.commitment.transcript_root,
                steps: s.commitment.steps,
                received_at_ms: s.received_at_ms,
                coordinator: coordinator.public_key(&secp),
                signature: CompactSignature::sign(&secp, coordinator, &Hash256::ZERO),
            };
            receipt.signature = CompactSignature::sign(&secp, coordinator, &receipt.signing_hash());
            receipt
        })
        .collect()
}

#[test]
fn a_record_that_drops_a_receipted_submission_is_caught_by_the_receipt() {
    let h = honest_cycle();
    let chain = testkit::TestChain::new();
    let receipts = receipts_for(&h.record, &chain.coordinator);
    let records = [h.record.clone()];
    assert_eq!(
        check_receipts(&records, &receipts, &chain.params).unwrap(),
        2
    );

    // The coordinator drops one receipted update from the record (and re-publishes its digest).
    let mut dropped = h.record.clone();
    let gone = dropped.submissions.remove(0);
    let why = check_receipts(&[republished(dropped)], &receipts, &chain.params)
        .unwrap_err()
        .to_string();
    assert!(why.contains("the record omits it"), "{why}");
    assert!(why.contains(&gone.update_hash.to_string()), "{why}");

    // The coordinator moves a submission earlier in the record than it receipted it (a faster
    // run, to pace the miner up next cycle; later would pace it down).
    let mut moved = h.record.clone();
    moved.submissions[1].received_at_ms = moved.submissions[1].received_at_ms.saturating_sub(1);
    let why = check_receipts(&[republished(moved)], &receipts, &chain.params)
        .unwrap_err()
        .to_string();
    assert!(why.contains("misrecorded submission"), "{why}");

    // A cycle not evaluated yet lists no submissions: its receipts are not due.
    let mut open = h.record.clone();
    open.submissions.clear();
    open.next_model_hash = None;
    assert_eq!(
        check_receipts(&[open], &receipts, &chain.params).unwrap(),
        0
    );
}

#[test]
fn a_receipt_not_signed_by_a_chain_coordinator_proves_nothing() {
    let h = honest_cycle();
    let chain = testkit::TestChain::new();
    // A miner forging a receipt (to accuse an honest coordinator) with a key of its own.
    let forged = receipts_for(&h.record, &key(42));
    let why = check_receipts(std::slice::from_ref(&h.record), &forged, &chain.params)
        .unwrap_err()
        .to_string();
    assert!(why.contains("not signed by a coordinator key"), "{why}");
    // The chain's key, but the signature does not cover the receipt's fields.
    let mut tampered = receipts_for(&h.record, &chain.coordinator);
    tampered[0].steps += 1;
    let why = check_receipts(std::slice::from_ref(&h.record), &tampered, &chain.params)
        .unwrap_err()
        .to_string();
    assert!(why.contains("not signed by a coordinator key"), "{why}");
}
