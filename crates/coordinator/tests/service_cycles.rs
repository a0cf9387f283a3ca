//! Whole cycles through the service (state machine + store + real learning), with virtual
//! time and the coordinator reopened from its data directory before every step: what a
//! `kill -9` and restart at any point does.

mod common;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::BlockHash;
use common::*;
use coordinator::api::{CompactSignature, CycleOutcome, PhaseName};
use coordinator::cycle::Refusal;
use coordinator::{ChainView, Coordinator, CycleTiming, ServiceError, WorkSetup};
use learning::UpdateError;
use primitives::{sha256, Hash256};
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
}

#[test]
fn cycles_score_measured_work_only_and_survive_a_restart_before_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let secp = Secp256k1::new();
    let genesis = chain.params.genesis.block_hash();
    let honest = testkit::key(1);
    let lazy = testkit::key(2);
    let noisy = testkit::key(3);
    let broken = testkit::key(4);
    let silent = testkit::key(5);
    let miners = [honest, lazy, noisy, broken, silent];
    let view = |tip: BlockHash,
                h: u32,
                at: Option<(BlockHash, primitives::Certificate)>,
                tip_next_model: Option<Hash256>| ChainView {
        tip,
        tip_height: h,
        at_target: at,
        tip_next_model,
    };

    // Cycle 0 opens on genesis.
    let c = open(dir.path(), &chain);
    c.step(T0, [7; 32], Some(&view(genesis, 0, None, None)))
        .unwrap();
    drop(c);
    for key in &miners {
        let c = open(dir.path(), &chain);
        c.register(T0 + 10, [2; 32], registration(&secp, key, 0))
            .unwrap();
    }
    // Tasks exist once registration closes.
    let c = open(dir.path(), &chain);
    let early = c.task(T0 + 500, 0, &honest.public_key(&secp)).unwrap_err();
    assert!(
        matches!(
            early,
            ServiceError::Refused(Refusal::TrainingNotStarted { .. })
        ),
        "{early}"
    );
    drop(c);
    let now = T0 + 1_000;
    let task = |key: &SecretKey| {
        open(dir.path(), &chain)
            .task(now, 0, &key.public_key(&secp))
            .unwrap()
    };
    let weights = open(dir.path(), &chain).weights(0).unwrap();
    let t = task(&honest);
    let shard = open(dir.path(), &chain)
        .shard(now, 0, &honest.public_key(&secp))
        .unwrap();
    let honest_run = honest_work(&t, &weights, &shard, 60);
    let honest_bytes = honest_run.update.clone();
    let receipt = submit_update(
        &open(dir.path(), &chain),
        now + 100,
        &honest,
        0,
        &honest_bytes,
        honest_run.commitment,
    )
    .unwrap();
    assert!(receipt.verify(&secp));
    assert_eq!(receipt.update_hash, sha256(&honest_bytes));
    let lazy_task = task(&lazy);
    let lazy_bytes = unchanged_update(&lazy_task, &weights);
    submit_update(
        &open(dir.path(), &chain),
        now + 200,
        &lazy,
        0,
        &lazy_bytes,
        bare_commitment(&lazy_task),
    )
    .unwrap();
    let noisy_task = task(&noisy);
    let noise_bytes = noise_update(&noisy_task, &weights, 9);
    submit_update(
        &open(dir.path(), &chain),
        now + 300,
        &noisy,
        0,
        &noise_bytes,
        bare_commitment(&noisy_task),
    )
    .unwrap();
    // Broken uploads: NaN, wrong shape, garbage, oversized, unsigned. Each a clear error,
    // nothing stored, the other receipts intact.
    let tb = task(&broken);
    let c = open(dir.path(), &chain);
    type Expected = fn(&ServiceError) -> bool;
    let cases: Vec<(Vec<u8>, Expected)> = vec![
        (nan_update(&tb, &weights), |e| {
            matches!(e, ServiceError::BadUpdate(UpdateError::NonFinite { .. }))
        }),
        (wrong_shape_update(&tb, &weights), |e| {
            matches!(e, ServiceError::BadUpdate(UpdateError::WrongShape { .. }))
        }),
        (b"not safetensors".to_vec(), |e| {
            matches!(e, ServiceError::BadUpdate(UpdateError::Malformed(_)))
        }),
        (vec![0u8; tb.update_bytes_max + 1], |e| {
            matches!(e, ServiceError::BadUpdate(UpdateError::Oversize { .. }))
        }),
    ];
    for (bytes, expected) in cases {
        let e = submit_update(&c, now + 400, &broken, 0, &bytes, bare_commitment(&tb)).unwrap_err();
        assert!(expected(&e), "{e}");
        assert!((400..500).contains(&e.status()), "{e}: {}", e.status());
    }
    let claim = bare_commitment(&tb);
    let forged = CompactSignature::sign(
        &secp,
        &lazy,
        &proof::Commitment {
            update_hash: sha256(b"x"),
            ..claim
        }
        .signing_hash(0, &broken.public_key(&secp)),
    );
    let e = c
        .submit(
            now + 400,
            [1; 32],
            0,
            broken.public_key(&secp),
            forged,
            coordinator::SubmissionClaim {
                task_hash: claim.task_hash,
                transcript_root: claim.transcript_root,
                steps: claim.steps,
            },
            b"x",
        )
        .unwrap_err();
    assert_eq!((e.code(), e.status()), ("bad_signature", 403));
    let stranger = testkit::key(99);
    let e = submit_update(
        &c,
        now + 400,
        &stranger,
        0,
        &honest_bytes,
        bare_commitment(&tb),
    )
    .unwrap_err();
    assert_eq!(e.code(), "not_registered");
    assert_eq!(c.state().unwrap().submissions.len(), 3);
    drop(c);
    // Late: after the deadline, even a valid update is refused.
    let deadline = T0 + 5_000;
    let broken_shard = open(dir.path(), &chain)
        .shard(now, 0, &broken.public_key(&secp))
        .unwrap();
    let late = honest_work(&tb, &weights, &broken_shard, 5);
    let e = submit_update(
        &open(dir.path(), &chain),
        deadline,
        &broken,
        0,
        &late.update,
        late.commitment,
    )
    .unwrap_err();
    assert_eq!((e.code(), e.status()), ("late", 409));

    // The challenge: only the honest miner opens its intervals; a wrong signature and a
    // second answer are refused.
    let c = open(dir.path(), &chain);
    let challenge = c
        .challenge(deadline + 10, 0, &honest.public_key(&secp))
        .unwrap();
    let answer = honest_run.record.respond(&challenge.intervals).encode();
    let sign_answer = |key: &SecretKey, bytes: &[u8]| {
        CompactSignature::sign(
            &secp,
            key,
            &coordinator::api::answer_signing_hash(0, &honest.public_key(&secp), &sha256(bytes)),
        )
    };
    let e = c
        .answer(
            deadline + 20,
            [1; 32],
            0,
            honest.public_key(&secp),
            sign_answer(&lazy, &answer),
            &answer,
        )
        .unwrap_err();
    assert_eq!(e.code(), "bad_signature");
    c.answer(
        deadline + 30,
        [1; 32],
        0,
        honest.public_key(&secp),
        sign_answer(&honest, &answer),
        &answer,
    )
    .unwrap();
    drop(c);
    let c = open(dir.path(), &chain);
    let e = c
        .answer(
            deadline + 40,
            [1; 32],
            0,
            honest.public_key(&secp),
            sign_answer(&honest, &answer),
            &answer,
        )
        .unwrap_err();
    assert_eq!(e.code(), "already_answered");
    drop(c);

    // Until evaluation neither the held-out batch nor any update is published.
    let c = open(dir.path(), &chain);
    let before = c.record(0).unwrap();
    assert!(before.held_out.is_none() && before.record_hash.is_none());
    assert_eq!(c.held_out_batch(0).unwrap_err().code(), "not_revealed");
    let some_update = c
        .state()
        .unwrap()
        .submissions
        .values()
        .next()
        .unwrap()
        .update_hash;
    assert_eq!(
        c.published_update(0, &some_update).unwrap_err().code(),
        "not_revealed"
    );
    drop(c);

    // Evaluation at the challenge deadline (a fresh process does it: nothing receipted or
    // answered was lost).
    let deadline = deadline + 1_000;
    let c = open(dir.path(), &chain);
    c.step(deadline + 1, [3; 32], None).unwrap();
    let record = c.record(0).unwrap();
    // The reveal opens the commitment made at announcement, the served batch is the one
    // revealed, every receipted update is served by its hash, and the digest the certificates
    // carry is the record's.
    let reveal = record.held_out.expect("revealed at evaluation");
    assert_eq!(
        reveal.commitment(),
        record.announcement.announcement.held_out_commitment
    );
    assert_eq!(sha256(&c.held_out_batch(0).unwrap()), reveal.batch_hash);
    for s in &record.submissions {
        assert_eq!(
            sha256(&c.published_update(0, &s.update_hash).unwrap()),
            s.update_hash
        );
    }
    assert_eq!(
        c.published_update(0, &Hash256([0xee; 32]))
            .unwrap_err()
            .code(),
        "unknown_update"
    );
    assert_eq!(
        record.record_hash,
        Some(coordinator::api::record_digest(&record))
    );
    assert_eq!(record.phase, PhaseName::BlockWindow);
    let by = |key: &SecretKey| {
        record
            .submissions
            .iter()
            .find(|s| s.miner == key.public_key(&secp))
            .unwrap()
            .clone()
    };
    assert!(
        by(&honest).score > 0 && by(&honest).params_trained > 0 && by(&honest).loss_reduction > 0
    );
    assert!(by(&honest).verification.passed());
    assert_eq!(by(&lazy).verification, proof::Verdict::Unanswered);
    assert_eq!(by(&noisy).verification, proof::Verdict::Unanswered);
    assert_eq!((by(&lazy).params_trained, by(&lazy).score), (0, 0));
    assert!(
        by(&noisy).params_trained > 0 && by(&noisy).loss_reduction < 0 && by(&noisy).score == 0
    );
    assert_eq!(
        record.submissions.len(),
        3,
        "the silent and the broken miner have no entry"
    );
    assert_eq!(
        record.draw_order,
        vec![honest.public_key(&secp)],
        "only positive scores are drawn"
    );
    let certs = c.certificates(0, &honest.public_key(&secp)).unwrap();
    let block_cert = certs.block_signing[0].0.clone();
    consensus::verify_block_certificate(&block_cert, &chain.params).unwrap();
    assert_eq!(Some(block_cert.body.record_hash), record.record_hash);
    assert_eq!(
        Some(block_cert.body.next_model_hash),
        record.next_model_hash
    );
    assert_eq!(
        block_cert.body.expires_at,
        (deadline + 1 + timing().block_window_ms) / 1000,
        "valid until the end of attempt 0's window"
    );
    assert_eq!(
        (block_cert.body.height, block_cert.body.prev_block_hash),
        (1, genesis)
    );
    for key in [&lazy, &noisy] {
        let contribution = c
            .certificates(0, &key.public_key(&secp))
            .unwrap()
            .contribution
            .unwrap()
            .0;
        consensus::verify_certificate_signature(&contribution, &chain.params).unwrap();
        assert!(consensus::verify_block_certificate(&contribution, &chain.params).is_err());
    }
    drop(c);

    // The winner's block arrives; the cycle closes and cycle 1 opens on it with the new model.
    let block = BlockHash::from_byte_array([0xb1; 32]);
    let c = open(dir.path(), &chain);
    c.step(
        deadline + 900,
        [4; 32],
        Some(&view(genesis, 1, Some((block, block_cert.clone())), None)),
    )
    .unwrap();
    assert!(matches!(
        c.record(0).unwrap().outcome,
        Some(CycleOutcome::Produced {
            attempt: 0,
            height: 1,
            ..
        })
    ));
    drop(c);
    let c = open(dir.path(), &chain);
    c.step(
        deadline + 1_000,
        [5; 32],
        Some(&view(block, 1, None, Some(block_cert.body.next_model_hash))),
    )
    .unwrap();
    let next = c.state().unwrap();
    assert_eq!(next.cycle(), 1);
    assert_eq!(
        (next.announcement().parent, next.announcement().height),
        (block, 2)
    );
    assert_eq!(Some(next.announcement().model_hash), record.next_model_hash);
    assert_ne!(
        next.announcement().model_hash,
        record.announcement.announcement.model_hash
    );
    let (_, card) = c.latest_model().unwrap();
    assert_eq!(
        card.lineage,
        vec![record.announcement.announcement.model_hash.to_string()]
    );
    assert!(dir.path().join("model/global.safetensors").exists());
    // The honest miner's budget in cycle 1 is paced to its verified run of cycle 0: its steps
    // in the 100 ms to its submission, scaled to twice the 4 s window over 128 intervals (not the
    // configured 16 every new miner starts at).
    c.register(deadline + 1_010, [2; 32], registration(&secp, &honest, 1))
        .unwrap();
    c.register(deadline + 1_020, [2; 32], registration(&secp, &lazy, 1))
        .unwrap();
    c.step(deadline + 2_000, [9; 32], None).unwrap();
    let paced = c
        .task(deadline + 2_000, 1, &honest.public_key(&secp))
        .unwrap();
    let run = record
        .submissions
        .iter()
        .find(|s| s.miner == honest.public_key(&secp))
        .unwrap();
    assert_eq!(
        run.received_at_ms - record.announcement.announcement.registration_deadline_ms,
        100
    );
    let k = (run.commitment.steps * 4_000 * coordinator::pace::PACE_HEADROOM).div_ceil(100 * 128);
    assert!(k > 16, "{k}");
    assert_eq!(paced.replay.checkpoint_interval, k);
    assert_eq!(paced.replay.steps_max, 128 * k);
    // The lazy miner's run of cycle 0 failed its check: it earned no pace.
    let unpaced = c
        .task(deadline + 2_000, 1, &lazy.public_key(&secp))
        .unwrap();
    assert_eq!(unpaced.replay.checkpoint_interval, 16);
    // Cycle 1 nobody submits: it closes without a block, and cycle 2 builds on the same tip.
    let c1 = deadline + 1_000;
    c.step(c1 + 5_000, [6; 32], None).unwrap();
    assert_eq!(
        c.record(1).unwrap().outcome,
        Some(CycleOutcome::NoEligibleEntries)
    );
    c.step(
        c1 + 5_100,
        [8; 32],
        Some(&view(block, 1, None, Some(block_cert.body.next_model_hash))),
    )
    .unwrap();
    assert_eq!(c.state().unwrap().cycle(), 2);
    assert_eq!(c.records(0, 10).unwrap().len(), 3);
    // The records form a hash chain, and every cycle is scored on a batch of its own.
    let records = c.records(0, 10).unwrap();
    for pair in records.windows(2) {
        assert_eq!(
            pair[1].announcement.announcement.prev_record_hash,
            coordinator::api::record_digest(&pair[0])
        );
        assert_ne!(
            pair[1].announcement.announcement.held_out_commitment,
            pair[0].announcement.announcement.held_out_commitment
        );
    }
}
