//! Coordinator benchmark: time to close a cycle (scores, contributions root, seed, draw order,
//! contribution and block-signing certificates) for 10 / 1,000 / 10,000 entries, and the
//! held-out evaluation cost of one submission relative to the miner's training for a cycle.
//!
//! `cargo run -p coordinator --release --bin coordinator-bench` (or without `--release`: the
//! workspace builds dependencies optimised in dev too). Prints medians of interleaved repeats.

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{Address, BlockHash, CompressedPublicKey, Network};
use coordinator::api::{CompactSignature, Hardware, RegisterRequest};
use coordinator::cycle::{
    tick, CycleEnv, CycleState, EvaluationInput, Event, Measurement, ProofParams, SegmentSize,
};
use coordinator::work::{measure, Workload};
use coordinator::{CycleTiming, WorkSetup};
use learning::{evaluate, train, Budget, SegmentUpdate, TrainConfig};
use primitives::{sha256, Hash256};
use std::time::Instant;

const REPEATS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn key(i: u32) -> SecretKey {
    let mut b = [0x22u8; 32];
    b[28..].copy_from_slice(&(i + 1).to_be_bytes());
    SecretKey::from_slice(&b).expect("valid key")
}

/// A cycle in its evaluation phase with `n` receipted submissions, and their measurements.
fn cycle_with(env: &CycleEnv, n: u32) -> (CycleState, EvaluationInput) {
    let t0 = 1_000_000;
    let mut state = CycleState::open(
        env,
        0,
        BlockHash::from_byte_array([1; 32]),
        0,
        Hash256([2; 32]),
        t0,
        [3; 32],
        Hash256([5; 32]),
        Hash256::ZERO,
    );
    let hw = Hardware {
        threads: 4,
        memory_bytes: 1 << 30,
    };
    let mut measurements = Vec::new();
    for i in 0..n {
        let k = key(i);
        let pk = k.public_key(&env.secp);
        let address = Address::p2wpkh(&CompressedPublicKey(pk), Network::Regtest).to_string();
        let req = RegisterRequest::new_signed(&env.secp, &k, 0, address, hw);
        state = tick(state, env, t0, [0; 32], Event::Register(req)).0;
        measurements.push(Measurement {
            miner: pk,
            params_trained: 1_000 + u64::from(i),
            // A fifth of the entries made things worse (score 0).
            loss_reduction: if i % 5 == 0 {
                -100
            } else {
                1 + i64::from(i % 977)
            },
            verification: proof::Verdict::Verified {
                intervals: vec![0, 5, 63],
                replayed_steps: 48,
            },
        });
    }
    let t1 = t0 + env.timing.registration_ms;
    for i in 0..n {
        let k = key(i);
        let pk = k.public_key(&env.secp);
        let commitment = proof::Commitment {
            task_hash: Hash256([1; 32]),
            update_hash: sha256(&i.to_le_bytes()),
            transcript_root: Hash256([2; 32]),
            steps: 1_024,
        };
        let signature = CompactSignature::sign(&env.secp, &k, &commitment.signing_hash(0, &pk));
        state = tick(
            state,
            env,
            t1,
            [0; 32],
            Event::Submit {
                cycle: 0,
                miner: pk,
                commitment,
                signature,
            },
        )
        .0;
    }
    // Nobody answers: evaluation starts at the challenge deadline.
    let deadline = t1 + env.timing.training_ms + env.timing.challenge_ms;
    state = tick(state, env, deadline, [0; 32], Event::Tick).0;
    let input = EvaluationInput {
        claims: Default::default(),
        global_loss_units: 2_300_000,
        measurements,
        next_model_hash: Hash256([4; 32]),
        merged_model_hash: None,
        held_out: coordinator::api::HeldOutReveal {
            salt: Hash256([6; 32]),
            batch_hash: Hash256([7; 32]),
            samples: 54,
            pass: 0,
        },
        next_quality: coordinator::api::QualityReport {
            held_out_loss_units: 2_000_000,
            test_accuracy_ppm: 500_000,
        },
    };
    (state, input)
}

fn main() {
    let secp = Secp256k1::new();
    let env = CycleEnv {
        block_reward_sats: primitives::params::DEFAULT_INITIAL_SUBSIDY_SATS,
        job: primitives::Hash256::ZERO,
        secp,
        key: key(1_000_000),
        chain_id: 1,
        network: Network::Regtest,
        timing: CycleTiming::from_cycle_secs(15),
        registrations_max: 10_000,
        segments: vec![SegmentSize {
            name: "layer0".into(),
            params: 2_080,
        }],
        proof: ProofParams::default(),
        bonds: coordinator::cycle::BondPolicy::new(
            consensus::bond::BondTerms {
                slash_key: key(1_000_001).public_key(&Secp256k1::new()),
                lock_blocks: primitives::params::DEFAULT_BOND_LOCK_BLOCKS,
                bond_min: primitives::params::DEFAULT_BOND_MIN,
                finder_share_percent: primitives::params::DEFAULT_SLASH_FINDER_SHARE_PERCENT,
            },
            false,
        ),
    };
    println!("closing a cycle (scores, root, seed, draws, certificates), median of {REPEATS}:");
    println!(
        "{:>8} | {:>12} | {:>12} | {:>14} | {:>16}",
        "entries", "close ms", "us/entry", "persist ms", "state JSON bytes"
    );
    let sizes = [10u32, 1_000, 10_000];
    let prepared: Vec<_> = sizes.iter().map(|&n| cycle_with(&env, n)).collect();
    let mut close_ms: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    let mut persist_ms: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    let mut json_bytes = vec![0usize; sizes.len()];
    // Interleave sizes across repeats so machine noise spreads evenly.
    for _ in 0..REPEATS {
        for (i, (state, input)) in prepared.iter().enumerate() {
            let (state, input) = (state.clone(), input.clone());
            let deadline = state.announcement().challenge_deadline_ms;
            let started = Instant::now();
            let (closed, _) = tick(state, &env, deadline + 10, [5; 32], Event::Evaluated(input));
            close_ms[i].push(started.elapsed().as_secs_f64() * 1e3);
            let started = Instant::now();
            let json = serde_json::to_vec(&closed).expect("serialises");
            persist_ms[i].push(started.elapsed().as_secs_f64() * 1e3);
            json_bytes[i] = json.len();
        }
    }
    for (i, n) in sizes.iter().enumerate() {
        let m = median(close_ms[i].clone());
        println!(
            "{n:>8} | {m:>12.2} | {:>12.2} | {:>14.2} | {:>16}",
            m * 1e3 / f64::from(*n),
            median(persist_ms[i].clone()),
            json_bytes[i]
        );
    }

    // Evaluation vs training, on the shipped digits with the devnet's MLP.
    let work = Workload::load(
        WorkSetup::digits_mlp(vec![32]),
        coordinator::held_out::HeldOutSecret::from_bytes([1; 32]),
    )
    .expect("digits load");
    let global = work.initial_model().expect("model");
    let shards = work.shards(7, 3).expect("shards");
    let global_loss = f64::from(evaluate(&global, &work.split.held_out).expect("eval").loss);
    let steps = 200u64;
    let mut train_ms = Vec::new();
    let mut eval_ms = Vec::new();
    for r in 0..REPEATS {
        let mut model = global.clone();
        let config = TrainConfig {
            lr: 0.05,
            momentum: 0.9,
            batch: 32,
            budget: Budget::Steps(steps),
            seed: r as u64,
            threads: 1,
        };
        let started = Instant::now();
        train(&mut model, &["layer0"], &shards[0], &config).expect("train");
        train_ms.push(started.elapsed().as_secs_f64() * 1e3);
        let update = SegmentUpdate::from_model(&model, "layer0").expect("segment");
        let started = Instant::now();
        let measured =
            measure(&global, global_loss, &update, &work.split.held_out).expect("measure");
        eval_ms.push(started.elapsed().as_secs_f64() * 1e3);
        assert!(measured.params_trained > 0);
    }
    let (t, e) = (median(train_ms), median(eval_ms));
    let per_step = t / steps as f64;
    println!();
    println!(
        "evaluation of one submission vs the miner's training (digits, MLP 64-32-10, 1 thread):"
    );
    println!("{:>36} | {:>12}", "quantity", "value");
    println!(
        "{:>36} | {:>12.3}",
        "held-out evaluation per submission ms", e
    );
    println!(
        "{:>36} | {:>12.4}",
        "training per SGD step (batch 32) ms", per_step
    );
    println!("{:>36} | {:>12.3}", format!("training {steps} steps ms"), t);
    println!(
        "{:>36} | {:>12.4}",
        format!("eval / {steps}-step training"),
        e / t
    );
    for (label, cycle_secs) in [
        ("15 s devnet cycle", 15u64),
        ("20 min default cycle", 1_200),
    ] {
        let window_ms = CycleTiming::from_cycle_secs(cycle_secs).training_ms as f64;
        println!(
            "{:>36} | {:>12.2e}",
            format!("eval / training window, {label}"),
            e / window_ms
        );
    }
}
