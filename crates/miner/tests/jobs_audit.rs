//! The auditor's check of training jobs, on records of a coordinator's own workload giving
//! way to a posted job and resuming: the honest sequence passes, and each way a coordinator
//! could steer jobs (another first model, a silent job change, a job dropped early or run
//! past its rule, a rewritten job, a resumed workload on another model) is refused with its
//! reason.

use bitcoin::hashes::Hash;
use bitcoin::BlockHash;
use coordinator::api::{
    job_cancel_signing_hash, Announcement, CompactSignature, CycleOutcome, CycleRecord, JobState,
    JobStatus, JobTerms, PhaseName, QualityReport, SignedAnnouncement, StopRule, TrainHints,
};
use learning::{model_hash, Model, ModelSpec};
use miner::audit::AuditError;
use miner::jobs_audit::{check_jobs, check_terms};
use primitives::Hash256;
use std::collections::BTreeMap;
use testkit::{key, TestChain};

fn mlp(hidden: usize) -> ModelSpec {
    ModelSpec::Mlp {
        input: 64,
        hidden: vec![hidden],
        classes: 10,
    }
}

fn status(terms: JobTerms) -> JobStatus {
    JobStatus {
        id: terms.id(),
        terms,
        state: JobState::Done,
        submitted_at_ms: 0,
        cycles_run: 0,
        first_cycle: None,
        last_cycle: None,
        model_hash: None,
        held_out_loss: None,
        test_accuracy: None,
        ended: None,
        cancel_requested: false,
        cancel_signature: None,
    }
}

fn terms(name: &str, spec: ModelSpec, seed: u64, stop: Option<StopRule>) -> JobTerms {
    JobTerms {
        name: name.into(),
        owner: stop.map(|_| key(50).public_key(&bitcoin::secp256k1::Secp256k1::new())),
        hints: TrainHints::for_model(&spec),
        model: spec,
        model_seed: seed,
        dataset: "digits".into(),
        train_hash: None,
        held_out_hash: None,
        test_hash: None,
        stop,
    }
}

fn first_model(t: &JobTerms) -> Hash256 {
    Hash256(model_hash(
        &Model::new(t.model.clone(), t.model_seed).unwrap(),
    ))
}

/// A minimal evaluated record: what the job check reads.
fn record(
    chain: &TestChain,
    cycle: u64,
    job: Hash256,
    model: Hash256,
    next: Hash256,
    merged: Option<Hash256>,
) -> CycleRecord {
    let announcement = Announcement {
        cycle,
        chain_id: chain.params.chain_id,
        parent: BlockHash::from_byte_array([cycle as u8; 32]),
        height: cycle as u32 + 1,
        model_hash: model,
        opened_at_ms: 0,
        registration_deadline_ms: 1,
        submission_deadline_ms: 2,
        challenge_deadline_ms: 3,
        block_window_ms: 1,
        commitment: Hash256::ZERO,
        held_out_commitment: Hash256::ZERO,
        prev_record_hash: Hash256::ZERO,
        coordinator: chain.coordinator.public_key(&chain.secp),
        job,
    };
    let signature = CompactSignature::sign(
        &chain.secp,
        &chain.coordinator,
        &announcement.signing_hash(),
    );
    CycleRecord {
        announcement: SignedAnnouncement {
            announcement,
            signature,
        },
        phase: PhaseName::Closed,
        registered: 1,
        submitted: 1,
        revealed_secret: None,
        commitments_digest: None,
        global_loss_units: Some(2_000_000),
        submissions: Vec::new(),
        contributions_root: None,
        lottery_seed: None,
        draw_order: Vec::new(),
        block_certificates: Vec::new(),
        outcome: Some(CycleOutcome::Produced {
            height: cycle as u32 + 1,
            hash: BlockHash::from_byte_array([0xb0 + cycle as u8; 32]),
            attempt: 0,
            miner: key(1).public_key(&chain.secp),
        }),
        next_model_hash: Some(next),
        merged_model_hash: merged,
        held_out: None,
        record_hash: None,
        next_quality: Some(QualityReport {
            held_out_loss_units: 1_500_000,
            test_accuracy_ppm: 600_000,
        }),
        slashes: Vec::new(),
        admission: None,
        verification: Default::default(),
    }
}

struct Story {
    records: Vec<CycleRecord>,
    jobs: BTreeMap<Hash256, JobStatus>,
    own: Hash256,
    posted: Hash256,
}

/// Cycle 0 the coordinator's own workload (merge A), cycles 1 and 2 a posted job of two cycles
/// (merges B, C), cycle 3 the own workload again from A.
fn story(chain: &TestChain) -> Story {
    let own_terms = terms("coordinator", mlp(16), 1, None);
    let posted_terms = terms(
        "owner",
        mlp(8),
        7,
        Some(StopRule {
            cycles: 2,
            target_held_out_loss: None,
            target_accuracy: None,
        }),
    );
    let (own, posted) = (own_terms.id(), posted_terms.id());
    let (a, b, c) = (Hash256([0xa; 32]), Hash256([0xb; 32]), Hash256([0xc; 32]));
    let start = first_model(&posted_terms);
    let records = vec![
        record(chain, 0, own, first_model(&own_terms), start, Some(a)),
        record(chain, 1, posted, start, b, None),
        record(chain, 2, posted, b, a, Some(c)),
        record(chain, 3, own, a, Hash256([0xd; 32]), None),
    ];
    let jobs = BTreeMap::from([(own, status(own_terms)), (posted, status(posted_terms))]);
    Story {
        records,
        jobs,
        own,
        posted,
    }
}

fn refused(story: &Story, expect: &str) {
    let e = check_jobs(&story.records, &story.jobs).unwrap_err();
    assert!(matches!(e, AuditError::Job { .. }), "{e}");
    assert!(e.to_string().contains(expect), "{e}");
}

#[test]
fn an_honest_job_change_and_resumption_pass() {
    let chain = TestChain::new();
    let story = story(&chain);
    assert_eq!(check_jobs(&story.records, &story.jobs).unwrap(), 2);
    for r in &story.records {
        check_terms(r, &story.jobs[&r.announcement.announcement.job]).unwrap();
    }
}

#[test]
fn a_coordinator_steering_jobs_is_caught() {
    let chain = TestChain::new();
    // The job's first cycle trains another model than its terms' seed gives.
    let mut s = story(&chain);
    let other = Hash256([0xee; 32]);
    s.records[0].next_model_hash = Some(other);
    s.records[1] = record(&chain, 1, s.posted, other, Hash256([0xb; 32]), None);
    refused(&s, "another model was put in its place");
    // A job change with no job end recorded (the merge silently dropped).
    let mut s = story(&chain);
    s.records[0].merged_model_hash = None;
    refused(&s, "recorded no job end");
    // The next cycle trains something else than the model the job end named.
    let mut s = story(&chain);
    s.records[0].next_model_hash = Some(Hash256([0x99; 32]));
    refused(&s, "named");
    // The coordinator's workload resumes from another model than its last merge.
    let mut s = story(&chain);
    let bad = Hash256([0x77; 32]);
    s.records[2].next_model_hash = Some(bad);
    s.records[3] = record(&chain, 3, s.own, bad, Hash256([0xd; 32]), None);
    refused(&s, "another model was put in its place");
    // A job end that made a block, followed by the same job.
    let mut s = story(&chain);
    s.records[1].merged_model_hash = Some(Hash256([0x55; 32]));
    refused(&s, "ended the job and made a block");
    // A job's published terms rewritten (here its seed): they no longer hash to its id.
    let s = story(&chain);
    let mut rewritten = s.jobs[&s.posted].clone();
    rewritten.terms.model_seed = 8;
    let e = check_terms(&s.records[1], &rewritten).unwrap_err();
    assert!(e.to_string().contains("the job was rewritten"), "{e}");
}

#[test]
fn a_job_dropped_before_its_rule_is_caught_unless_its_owner_signed_a_cancel() {
    let chain = TestChain::new();
    let secp = bitcoin::secp256k1::Secp256k1::new();
    // The job ends after its first cycle: no target reached, no cancel.
    let dropped = |s: &mut Story| {
        let (b, a) = (Hash256([0xb; 32]), Hash256([0xa; 32]));
        s.records[1].next_model_hash = Some(a);
        s.records[1].merged_model_hash = Some(b);
        s.records.remove(2);
    };
    let mut s = story(&chain);
    dropped(&mut s);
    refused(&s, "the job was dropped");
    // With the owner's signed cancel it may end.
    let mut s = story(&chain);
    dropped(&mut s);
    let id = s.posted;
    let job = s.jobs.get_mut(&id).unwrap();
    job.cancel_signature = Some(CompactSignature::sign(
        &secp,
        &key(50),
        &job_cancel_signing_hash(&chain.coordinator.public_key(&chain.secp), &id),
    ));
    check_jobs(&s.records, &s.jobs).unwrap();
    // A cancel signed by anyone else is no cancel.
    let job = s.jobs.get_mut(&id).unwrap();
    job.cancel_signature = Some(CompactSignature::sign(
        &secp,
        &key(51),
        &job_cancel_signing_hash(&chain.coordinator.public_key(&chain.secp), &id),
    ));
    refused(&s, "the job was dropped");
    // A cancel the owner signed for another coordinator is no cancel here.
    let job = s.jobs.get_mut(&id).unwrap();
    job.cancel_signature = Some(CompactSignature::sign(
        &secp,
        &key(50),
        &job_cancel_signing_hash(&key(99).public_key(&secp), &id),
    ));
    refused(&s, "the job was dropped");
    // With its loss target reached at that cycle it may end too.
    let mut s = story(&chain);
    dropped(&mut s);
    let job = s.jobs.get_mut(&id).unwrap();
    job.terms.stop = Some(StopRule {
        cycles: 2,
        target_held_out_loss: Some(1.5),
        target_accuracy: None,
    });
    // (New terms, new id: the records name it.)
    let new_id = job.terms.id();
    job.id = new_id;
    let job = s.jobs.remove(&id).unwrap();
    s.jobs.insert(new_id, job);
    let start = first_model(&s.jobs[&new_id].terms);
    s.records[0].next_model_hash = Some(start);
    s.records[1] = record(
        &chain,
        1,
        new_id,
        start,
        Hash256([0xa; 32]),
        Some(Hash256([0xb; 32])),
    );
    check_jobs(&s.records, &s.jobs).unwrap();
}

#[test]
fn a_job_run_past_its_rule_is_caught() {
    let chain = TestChain::new();
    let mut s = story(&chain);
    // A third block-making cycle of a two-cycle job.
    let (b, c) = (Hash256([0xb; 32]), Hash256([0xc; 32]));
    s.records[2] = record(&chain, 2, s.posted, b, c, None);
    s.records.insert(
        3,
        record(
            &chain,
            3,
            s.posted,
            c,
            Hash256([0xa; 32]),
            Some(Hash256([0x3c; 32])),
        ),
    );
    s.records[4] = record(
        &chain,
        4,
        s.own,
        Hash256([0xa; 32]),
        Hash256([0xd; 32]),
        None,
    );
    refused(&s, "past its stopping rule");
}
