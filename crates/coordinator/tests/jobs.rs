//! Training jobs through the service: an owner posts a job with its own files, it runs for its
//! cycles after the coordinator's own workload gives way, ends with its model downloadable,
//! and the coordinator's workload resumes from where it stopped; and each way a job post or a
//! cancel can be bad is refused with its reason. Virtual time, the coordinator reopened from
//! its data directory between cycles (a restart loses no job).

mod common;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{All, Secp256k1, SecretKey};
use bitcoin::BlockHash;
use common::*;
use coordinator::api::{
    job_cancel_signing_hash, job_request_signing_hash, CompactSignature, CycleOutcome, CycleRecord,
    JobData, JobEnd, JobFormat, JobRequest, JobState, StopRule,
};
use coordinator::jobs::JobPolicy;
use coordinator::{ChainView, Coordinator, CycleTiming, WorkSetup};
use learning::{model_from_safetensors, model_hash, Dataset, DatasetSource, Model, Samples};
use primitives::Hash256;
use std::path::Path;
use testkit::TestChain;

const T0: u64 = 1_700_000_000_000;

fn timing() -> CycleTiming {
    CycleTiming {
        registration_ms: 1_000,
        training_ms: 4_000,
        challenge_ms: 1_000,
        block_window_ms: 2_000,
    }
}

fn open(dir: &Path, chain: &TestChain) -> Coordinator {
    Coordinator::open(
        dir,
        chain.coordinator,
        &chain.params,
        WorkSetup::digits_mlp(vec![16]),
        timing(),
    )
    .unwrap()
    .accept_jobs(JobPolicy::Open)
}

/// `samples` as CSV text (features, then the label).
fn csv(samples: &Samples) -> String {
    let mut text = String::new();
    for i in 0..samples.len() {
        let row: Vec<String> = samples.row(i).iter().map(|v| v.to_string()).collect();
        text.push_str(&format!("{},{}\n", row.join(","), samples.labels()[i]));
    }
    text
}

/// An owner's job on its own digits files: 1,000 training rows, 200 held out, 200 test.
fn digits_job(owner: &SecretKey, secp: &Secp256k1<All>, cycles: u64) -> JobRequest {
    let digits = Dataset::load(&DatasetSource::Digits).unwrap().samples;
    let rows = |from: usize, to: usize| digits.select(&(from..to).collect::<Vec<_>>());
    JobRequest {
        owner: owner.public_key(secp),
        name: "my digits".into(),
        model: "mlp:8".into(),
        data: JobData::Upload {
            format: JobFormat::Csv,
            train: csv(&rows(0, 1_000)),
            held_out: Some(csv(&rows(1_000, 1_200))),
            test: Some(csv(&rows(1_200, 1_400))),
        },
        hints: None,
        model_seed: 7,
        stop: StopRule {
            cycles,
            target_held_out_loss: None,
            target_accuracy: None,
        },
    }
}

fn post(
    c: &Coordinator,
    key: &SecretKey,
    secp: &Secp256k1<All>,
    request: &JobRequest,
) -> Result<coordinator::api::JobStatus, coordinator::ServiceError> {
    let body = serde_json::to_vec(request).unwrap();
    let signature = CompactSignature::sign(
        secp,
        key,
        &job_request_signing_hash(&c.env().coordinator(), &body),
    );
    c.submit_job(T0, &body, signature)
}

/// Where the chain stands between cycles.
struct Tip {
    block: BlockHash,
    height: u32,
    next_model: Option<Hash256>,
    now: u64,
}

/// Runs the open cycle to its block with one honest miner: register, train, submit, answer
/// the challenge, evaluate, produce the block, and open the next cycle on it. Returns the
/// evaluated record and the new tip.
fn run_cycle(
    dir: &Path,
    chain: &TestChain,
    miner: &SecretKey,
    tip: Tip,
    produce: bool,
) -> (CycleRecord, Tip, f32) {
    let secp = Secp256k1::new();
    let c = open(dir, chain);
    let cycle = c.state().unwrap().cycle();
    let opened = c.state().unwrap().announcement().opened_at_ms;
    c.register(opened + 10, [2; 32], registration(&secp, miner, cycle))
        .unwrap();
    let training = opened + timing().registration_ms;
    let task = c.task(training, cycle, &miner.public_key(&secp)).unwrap();
    let weights = c.weights(cycle).unwrap();
    let shard = c.shard(training, cycle, &miner.public_key(&secp)).unwrap();
    let run = honest_work(&task, &weights, &shard, 40);
    submit_update(
        &c,
        training + 100,
        miner,
        cycle,
        &run.update,
        run.commitment,
    )
    .unwrap();
    let deadline = training + timing().training_ms;
    c.step(deadline + 1, [3; 32], None).unwrap();
    let challenge = c
        .challenge(deadline + 10, cycle, &miner.public_key(&secp))
        .unwrap();
    let answer = run.record.respond(&challenge.intervals).encode();
    let signature = CompactSignature::sign(
        &secp,
        miner,
        &coordinator::api::answer_signing_hash(
            cycle,
            &miner.public_key(&secp),
            &primitives::sha256(&answer),
        ),
    );
    c.answer(
        deadline + 20,
        [1; 32],
        cycle,
        miner.public_key(&secp),
        signature,
        &answer,
    )
    .unwrap();
    let evaluation = deadline + timing().challenge_ms + 1;
    c.step(evaluation, [4; 32], None).unwrap();
    let record = c.record(cycle).unwrap();
    let view = |tip: BlockHash, h: u32, at, next| ChainView {
        tip,
        tip_height: h,
        at_target: at,
        tip_next_model: next,
    };
    let close = evaluation + 100;
    let next_tip = if produce {
        let cert = c
            .certificates(cycle, &miner.public_key(&secp))
            .unwrap()
            .block_signing[0]
            .0
            .clone();
        let block = BlockHash::from_byte_array([cycle as u8 + 1; 32]);
        c.step(
            close,
            [5; 32],
            Some(&view(
                tip.block,
                tip.height + 1,
                Some((block, cert.clone())),
                tip.next_model,
            )),
        )
        .unwrap();
        Tip {
            block,
            height: tip.height + 1,
            next_model: Some(cert.body.next_model_hash),
            now: close + 100,
        }
    } else {
        // Every drawn winner stays silent: the cycle closes without a block, a window each.
        let mut now = close;
        while c.record(cycle).unwrap().outcome.is_none() {
            now += timing().block_window_ms + 1;
            c.step(
                now,
                [5; 32],
                Some(&view(tip.block, tip.height, None, tip.next_model)),
            )
            .unwrap();
        }
        Tip {
            now: now + 100,
            ..tip
        }
    };
    c.step(
        next_tip.now,
        [6; 32],
        Some(&view(
            next_tip.block,
            next_tip.height,
            None,
            next_tip.next_model,
        )),
    )
    .unwrap();
    (record, next_tip, task.replay.lr)
}

#[test]
fn a_posted_job_runs_its_cycles_ends_with_its_model_and_the_coordinators_workload_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let secp = Secp256k1::new();
    let miner = testkit::key(1);
    let owner = testkit::key(40);
    let genesis = chain.params.genesis.block_hash();
    let c = open(dir.path(), &chain);
    let own = c.jobs().unwrap()[0].clone();
    assert_eq!((own.terms.owner, own.state), (None, JobState::Running));
    c.step(
        T0,
        [7; 32],
        Some(&ChainView {
            tip: genesis,
            tip_height: 0,
            at_target: None,
            tip_next_model: None,
        }),
    )
    .unwrap();
    drop(c);
    let tip = Tip {
        block: genesis,
        height: 0,
        next_model: None,
        now: T0,
    };
    // Cycle 0: the coordinator's own workload; the job is posted while it runs.
    let c = open(dir.path(), &chain);
    let job = post(&c, &owner, &secp, &digits_job(&owner, &secp, 2)).unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.id, job.terms.id());
    assert!(job.terms.train_hash.is_some() && job.terms.test_hash.is_some());
    assert_eq!(job.terms.dataset, "csv upload");
    drop(c);
    let (r0, tip, _) = run_cycle(dir.path(), &chain, &miner, tip, true);
    assert_eq!(r0.announcement.announcement.job, own.id);
    // It ends the own workload's turn: the merge is kept, the next model is the job's first.
    let first = Model::new(job.terms.model.clone(), 7).unwrap();
    assert_eq!(r0.next_model_hash, Some(Hash256(model_hash(&first))));
    let own_merge = r0.merged_model_hash.expect("a job change keeps the merge");
    assert_ne!(Some(own_merge), r0.next_model_hash);

    // Cycles 1 and 2 train the job, on its own data (its model takes 64 features).
    let c = open(dir.path(), &chain);
    let s1 = c.state().unwrap();
    assert_eq!(s1.announcement().job, job.id);
    assert_eq!(s1.announcement().model_hash, Hash256(model_hash(&first)));
    assert_eq!(c.job(&job.id).unwrap().state, JobState::Running);
    assert_eq!(c.job(&own.id).unwrap().state, JobState::Waiting);
    drop(c);
    let (r1, tip, lr) = run_cycle(dir.path(), &chain, &miner, tip, true);
    // The job's first task anneals from the job's own rate, not from cycle 1's.
    assert_eq!(lr, job.terms.hints.lr);
    assert_eq!(r1.merged_model_hash, None, "the job goes on");
    let (r2, _, _) = run_cycle(dir.path(), &chain, &miner, tip, true);
    assert_eq!(r2.announcement.announcement.job, job.id);
    let job_model = r2.merged_model_hash.expect("the job's last cycle");
    // The coordinator's workload resumes from its own last merge.
    assert_eq!(r2.next_model_hash, Some(own_merge));

    let c = open(dir.path(), &chain);
    let s3 = c.state().unwrap();
    assert_eq!(s3.announcement().job, own.id);
    assert_eq!(s3.announcement().model_hash, own_merge);
    let done = c.job(&job.id).unwrap();
    assert_eq!(
        (done.state, done.ended, done.cycles_run),
        (JobState::Done, Some(JobEnd::Cycles), 2)
    );
    assert_eq!((done.first_cycle, done.last_cycle), (Some(1), Some(2)));
    assert_eq!(done.model_hash, Some(job_model));
    // Its model and card are downloadable: the card's lineage is the job's own start models.
    let (bytes, card) = c.job_model(&job.id).unwrap();
    let fetched = model_from_safetensors(job.terms.model.clone(), &bytes).unwrap();
    assert_eq!(Hash256(model_hash(&fetched)), job_model);
    assert_eq!(card.model_hash, job_model.to_string());
    assert_eq!(
        card.lineage,
        vec![
            r1.announcement.announcement.model_hash.to_string(),
            r2.announcement.announcement.model_hash.to_string()
        ]
    );
    assert_eq!(card.dataset, "csv upload");
    assert_eq!(c.job(&own.id).unwrap().state, JobState::Running);
    // A finished job cannot be cancelled.
    let cancel = CompactSignature::sign(
        &secp,
        &owner,
        &job_cancel_signing_hash(&chain.coordinator.public_key(&secp), &job.id),
    );
    assert_eq!(
        c.cancel_job(&job.id, cancel).unwrap_err().code(),
        "job_ended"
    );
    // The records chain across the job changes.
    let records = c.records(0, 10).unwrap();
    for pair in records.windows(2) {
        assert_eq!(
            pair[1].announcement.announcement.prev_record_hash,
            coordinator::api::record_digest(&pair[0])
        );
    }
    assert_eq!(
        records[1].record_hash,
        Some(coordinator::api::record_digest(&records[1]))
    );
}

#[test]
fn a_jobs_last_cycle_without_a_block_is_run_again_and_a_cancel_ends_a_running_job() {
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let secp = Secp256k1::new();
    let miner = testkit::key(1);
    let owner = testkit::key(41);
    let genesis = chain.params.genesis.block_hash();
    let c = open(dir.path(), &chain);
    c.step(
        T0,
        [7; 32],
        Some(&ChainView {
            tip: genesis,
            tip_height: 0,
            at_target: None,
            tip_next_model: None,
        }),
    )
    .unwrap();
    let job = post(&c, &owner, &secp, &digits_job(&owner, &secp, 100)).unwrap();
    drop(c);
    let tip = Tip {
        block: genesis,
        height: 0,
        next_model: None,
        now: T0,
    };
    // Cycle 0 chooses the job but makes no block: cycle 1 trains the coordinator's model again.
    let (r0, tip, _) = run_cycle(dir.path(), &chain, &miner, tip, false);
    assert!(r0.merged_model_hash.is_some());
    assert!(!matches!(r0.outcome, Some(CycleOutcome::Produced { .. })));
    let c = open(dir.path(), &chain);
    assert_eq!(
        c.state().unwrap().announcement().job,
        r0.announcement.announcement.job
    );
    assert_eq!(c.job(&job.id).unwrap().state, JobState::Queued);
    drop(c);
    let (_, tip, _) = run_cycle(dir.path(), &chain, &miner, tip, true);
    let c = open(dir.path(), &chain);
    assert_eq!(c.state().unwrap().announcement().job, job.id);
    // Only the owner can cancel; the cancel ends the job at its next evaluation.
    let forged = CompactSignature::sign(
        &secp,
        &miner,
        &job_cancel_signing_hash(&chain.coordinator.public_key(&secp), &job.id),
    );
    assert_eq!(
        c.cancel_job(&job.id, forged).unwrap_err().code(),
        "job_bad_signature"
    );
    let signature = CompactSignature::sign(
        &secp,
        &owner,
        &job_cancel_signing_hash(&chain.coordinator.public_key(&secp), &job.id),
    );
    let cancelled = c.cancel_job(&job.id, signature).unwrap();
    assert!(cancelled.cancel_requested && cancelled.cancel_signature.is_some());
    drop(c);
    let (r2, _, _) = run_cycle(dir.path(), &chain, &miner, tip, true);
    assert!(
        r2.merged_model_hash.is_some(),
        "cancelled: the job ends here"
    );
    let c = open(dir.path(), &chain);
    let status = c.job(&job.id).unwrap();
    assert_eq!(
        (status.ended, status.cycles_run),
        (Some(JobEnd::Cancelled), 1)
    );
    assert_ne!(c.state().unwrap().announcement().job, job.id);
}

#[test]
fn a_job_whose_files_are_lost_is_skipped_and_the_chain_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let secp = Secp256k1::new();
    let miner = testkit::key(1);
    let owner = testkit::key(45);
    let genesis = chain.params.genesis.block_hash();
    let c = open(dir.path(), &chain);
    c.step(
        T0,
        [7; 32],
        Some(&ChainView {
            tip: genesis,
            tip_height: 0,
            at_target: None,
            tip_next_model: None,
        }),
    )
    .unwrap();
    let job = post(&c, &owner, &secp, &digits_job(&owner, &secp, 2)).unwrap();
    drop(c);
    // The coordinator restarts with the job's files gone (a disk lost, an operator's rm).
    std::fs::remove_dir_all(dir.path().join(coordinator::jobs::JOBS_DIR)).unwrap();
    let tip = Tip {
        block: genesis,
        height: 0,
        next_model: None,
        now: T0,
    };
    let (r0, _, _) = run_cycle(dir.path(), &chain, &miner, tip, true);
    // The evaluation skips the job instead of failing every tick: the own workload goes on.
    assert_eq!(r0.merged_model_hash, None);
    let c = open(dir.path(), &chain);
    assert_eq!(c.state().unwrap().cycle(), 1);
    assert_eq!(
        c.state().unwrap().announcement().job,
        r0.announcement.announcement.job
    );
    let skipped = c.job(&job.id).unwrap();
    assert_eq!(
        (skipped.state, skipped.ended),
        (JobState::Cancelled, Some(JobEnd::Failed))
    );
}

#[test]
fn bad_job_posts_are_refused_with_their_reason_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let secp = Secp256k1::new();
    let owner = testkit::key(42);
    let c = open(dir.path(), &chain);
    let good = digits_job(&owner, &secp, 3);
    let body = serde_json::to_vec(&good).unwrap();
    // Signed by someone else, or over other bytes: refused before anything is written.
    let stranger = CompactSignature::sign(
        &secp,
        &testkit::key(43),
        &job_request_signing_hash(&chain.coordinator.public_key(&secp), &body),
    );
    assert_eq!(
        c.submit_job(T0, &body, stranger).unwrap_err().code(),
        "job_bad_signature"
    );
    let mut other = body.clone();
    other.push(b' ');
    let wrong_bytes = CompactSignature::sign(
        &secp,
        &owner,
        &job_request_signing_hash(&chain.coordinator.public_key(&secp), &other),
    );
    assert_eq!(
        c.submit_job(T0, &body, wrong_bytes).unwrap_err().code(),
        "job_bad_signature"
    );
    // A coordinator that admits only listed owners (or none, its default) refuses anyone
    // else's job after checking the signature, before reading its data.
    let listed = testkit::key(44).public_key(&secp);
    let signed = CompactSignature::sign(
        &secp,
        &owner,
        &job_request_signing_hash(&chain.coordinator.public_key(&secp), &body),
    );
    for (policy, code) in [
        (JobPolicy::Closed, "jobs_closed"),
        (
            JobPolicy::Owners([listed].into_iter().collect()),
            "job_owner_not_admitted",
        ),
    ] {
        let other_dir = tempfile::tempdir().unwrap();
        let closed = Coordinator::open(
            other_dir.path(),
            chain.coordinator,
            &chain.params,
            WorkSetup::digits_mlp(vec![16]),
            timing(),
        )
        .unwrap()
        .accept_jobs(policy);
        let e = closed.submit_job(T0, &body, signed).unwrap_err();
        assert_eq!((e.code(), e.status()), (code, 403));
    }
    let garbage = CompactSignature::sign(
        &secp,
        &owner,
        &job_request_signing_hash(&chain.coordinator.public_key(&secp), b"{"),
    );
    let e = c.submit_job(T0, b"{", garbage).unwrap_err();
    assert_eq!((e.code(), e.status()), ("job_invalid", 400));
    type Change = fn(&mut JobRequest);
    let invalid: Vec<(Change, &str)> = vec![
        (|r| r.stop.cycles = 0, "job_invalid"),
        (|r| r.stop.target_accuracy = Some(2.0), "job_invalid"),
        (|r| r.name = String::new(), "job_invalid"),
        (|r| r.name = "x".repeat(65), "job_invalid"),
        (|r| r.model = "transformer".into(), "job_invalid"),
        (|r| r.model = "mlp:5000,5000".into(), "job_invalid"),
        (
            |r| {
                r.hints = Some(coordinator::api::TrainHints {
                    lr: f32::NAN,
                    momentum: 0.9,
                    batch: 32,
                })
            },
            "job_invalid",
        ),
        (
            |r| {
                r.data = JobData::Shipped {
                    dataset: "imagenet".into(),
                }
            },
            "job_invalid",
        ),
        // Files that do not load or fit: a ragged CSV, a held-out set of other width, a
        // CNN on rows that are not square images, too few rows for a shard.
        (
            |r| {
                r.data = JobData::Upload {
                    format: JobFormat::Csv,
                    train: "1,2,3\n4,5\n".into(),
                    held_out: None,
                    test: None,
                }
            },
            "job_bad_data",
        ),
        (
            |r| {
                if let JobData::Upload { held_out, .. } = &mut r.data {
                    *held_out = Some("1,2,3\n".into());
                }
            },
            "job_bad_data",
        ),
        (
            |r| {
                r.data = JobData::Upload {
                    format: JobFormat::Csv,
                    train: "1,2,0\n3,4,1\n".into(),
                    held_out: None,
                    test: None,
                }
            },
            "job_bad_data",
        ),
    ];
    for (change, code) in invalid {
        let mut request = good.clone();
        change(&mut request);
        let e = post(&c, &owner, &secp, &request).unwrap_err();
        assert_eq!(e.code(), code, "{e}");
        assert!((400..500).contains(&e.status()), "{e}");
    }
    // Nothing of a refused job is queued or left on disk.
    assert_eq!(c.jobs().unwrap().len(), 1);
    let jobs_dir = dir.path().join(coordinator::jobs::JOBS_DIR);
    let left = std::fs::read_dir(&jobs_dir).map_or(0, |d| d.count());
    assert_eq!(left, 0);
    // The good one is taken once; the same bytes again are a duplicate (a replayed post).
    let job = post(&c, &owner, &secp, &good).unwrap();
    let e = post(&c, &owner, &secp, &good).unwrap_err();
    assert_eq!((e.code(), e.status()), ("job_duplicate", 409));
    // One owner cannot fill the queue: its fifth waiting job is refused.
    for seed in 2..=4 {
        let mut more = good.clone();
        more.model_seed = seed;
        post(&c, &owner, &secp, &more).unwrap();
    }
    let mut fifth = good.clone();
    fifth.model_seed = 5;
    assert_eq!(
        post(&c, &owner, &secp, &fifth).unwrap_err().code(),
        "owner_jobs_full"
    );
    // A queued job cancelled by its owner never runs; the coordinator's own cannot be.
    let signature = CompactSignature::sign(
        &secp,
        &owner,
        &job_cancel_signing_hash(&chain.coordinator.public_key(&secp), &job.id),
    );
    let files = || std::fs::read_dir(&jobs_dir).unwrap().count();
    assert_eq!(files(), 4);
    let cancelled = c.cancel_job(&job.id, signature).unwrap();
    assert_eq!(
        (cancelled.state, cancelled.ended),
        (JobState::Cancelled, Some(JobEnd::Cancelled))
    );
    // A job that never ran leaves no files behind.
    assert_eq!(files(), 3);
    let own = c.jobs().unwrap()[0].id;
    let signature = CompactSignature::sign(
        &secp,
        &owner,
        &job_cancel_signing_hash(&chain.coordinator.public_key(&secp), &own),
    );
    assert_eq!(
        c.cancel_job(&own, signature).unwrap_err().code(),
        "job_not_cancellable"
    );
    assert_eq!(c.job(&Hash256([9; 32])).unwrap_err().code(), "unknown_job");
    // The queue survives a restart.
    drop(c);
    let c = open(dir.path(), &chain);
    assert_eq!(c.jobs().unwrap().len(), 5);
    assert_eq!(c.job(&job.id).unwrap().state, JobState::Cancelled);
}
