//! `cargo run -p proof --bin proof-figures` (`--release` works too): what proof of training costs and buys on
//! the default devnet workload (digits, MLP 64-32-10, one shard of three, the first layer as
//! the segment, the coordinator's task parameters: k = 16, a 2,048-step budget of 128 intervals).
//!
//! - Verification cost: time to check one submission (replay the challenged intervals) over the
//!   time of the training it verifies, for q = 1, 2, 4. Medians of interleaved repeats.
//! - Detection: a miner that skips the steps of a fraction f of its intervals and trains honestly
//!   in the others, checked under many challenge seeds: the share of checks that fail, next to
//!   1 - (1 - f)^q and the exact value of this design (the last interval always, q others
//!   without replacement). The faked intervals avoid the last one, as a cheater who knows the
//!   protocol would (faking it is always caught).
//! - Bytes and round trips a submission adds.

use bitcoin::secp256k1::{Secp256k1, SecretKey};
use learning::{
    model_hash, Dataset, DatasetSource, Model, ModelSpec, Normalisation, Samples, SplitFractions,
    TrainState, Trainer,
};
use primitives::Hash256;
use proof::{
    challenge_seed, challenged_intervals, check, escape_probability, leaf_count, CheckInputs,
    Commitment, ReplayTask, RunRecord,
};
use rand::seq::index::sample;
use rand::SeedableRng;
use std::time::Instant;

const REPEATS: usize = 5;
const SEEDS: u32 = 400;
/// The coordinator's default budget (`coordinator::pace::TRANSCRIPT_INTERVALS` × k).
const STEPS: u64 = 2_048;
const K: u64 = 16;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn setup() -> (Model, Samples, ReplayTask) {
    let dataset = Dataset::load(&DatasetSource::Digits).unwrap();
    let mut split = dataset.split(SplitFractions::default(), 1).unwrap();
    Normalisation::fit(&split.train)
        .unwrap()
        .apply(&mut split.train)
        .unwrap();
    let shard = learning::make_shards(&split.train, 7, 3).unwrap().remove(0);
    let n = shard.len();
    let train = shard.select(&(0..n - n / 5).collect::<Vec<_>>());
    let model = Model::new(
        ModelSpec::Mlp {
            input: 64,
            hidden: vec![32],
            classes: 10,
        },
        1,
    )
    .unwrap();
    let task = ReplayTask {
        cycle: 1,
        miner: SecretKey::from_slice(&[9; 32])
            .unwrap()
            .public_key(&Secp256k1::new()),
        model_hash: Hash256(model_hash(&model)),
        segment: "layer0".into(),
        shard_hash: Hash256::ZERO,
        train_samples: train.len() as u64,
        lr: 0.05,
        momentum: 0.9,
        batch: 32,
        steps_max: STEPS,
        checkpoint_interval: K,
        batch_seed: 3,
    };
    (model, train, task)
}

/// A run of the whole budget in which the intervals in `faked` do no steps (the state is
/// carried over and relabelled) and every other interval is honest SGD from where it starts.
fn run(model: &Model, train: &Samples, task: &ReplayTask, faked: &[usize]) -> RunRecord {
    let config = task.train_config(K, 1);
    let mut record = RunRecord::new(K);
    let mut state = TrainState::initial(model, &[&task.segment], task.momentum).unwrap();
    record.push(state.clone());
    for interval in 0..(STEPS / K) as usize {
        state = if faked.contains(&interval) {
            TrainState {
                step: state.step + K,
                ..state
            }
        } else {
            let mut t = Trainer::resume(model, &[&task.segment], train, &config, &state).unwrap();
            t.run(K).unwrap();
            t.state().unwrap()
        };
        record.push(state.clone());
    }
    record
}

fn commitment(task: &ReplayTask, record: &RunRecord) -> Commitment {
    Commitment {
        task_hash: task.hash(),
        update_hash: Hash256::ZERO,
        transcript_root: record.transcript().root(),
        steps: STEPS,
    }
}

fn main() {
    let (model, train, task) = setup();
    let intervals = leaf_count(STEPS, K) - 1;
    let honest = run(&model, &train, &task, &[]);
    let update = honest
        .last()
        .unwrap()
        .to_update(&model, &task.segment)
        .unwrap();
    let honest_commitment = commitment(&task, &honest);
    let inputs = CheckInputs {
        task: &task,
        start_model: &model,
        train_samples: &train,
        commitment: &honest_commitment,
        update: &update,
        threads: 1,
    };

    println!("workload: digits MLP 64-32-10, segment layer0, {STEPS} steps, k = {K}, {intervals} intervals, 1 thread");
    let qs = [1u32, 2, 4];
    let mut train_secs = Vec::new();
    let mut check_secs: Vec<Vec<f64>> = vec![Vec::new(); qs.len()];
    for repeat in 0..REPEATS {
        let started = Instant::now();
        let config = task.train_config(STEPS, 1);
        let mut t = Trainer::start(&model, &[&task.segment], &train, &config).unwrap();
        let mut record = RunRecord::new(K);
        record.push(t.state().unwrap());
        while t.steps_taken() < STEPS {
            t.run(K).unwrap();
            record.push(t.state().unwrap());
        }
        train_secs.push(started.elapsed().as_secs_f64());
        for (i, &q) in qs.iter().enumerate() {
            let seed = challenge_seed(&Hash256([repeat as u8; 32]), &Hash256::ZERO, &task.miner);
            let asked = challenged_intervals(&seed, intervals, q);
            let response = honest.respond(&asked);
            let started = Instant::now();
            assert!(check(&inputs, &asked, Some(&response)).passed());
            check_secs[i].push(started.elapsed().as_secs_f64());
        }
    }
    let train = median(train_secs);
    println!("\nverification cost (median of {REPEATS} interleaved repeats)");
    println!(
        "{:>3} | {:>10} | {:>10} | {:>9} | {:>12}",
        "q", "train ms", "check ms", "fraction", "answer bytes"
    );
    for (i, &q) in qs.iter().enumerate() {
        let asked = challenged_intervals(&Hash256::ZERO, intervals, q);
        let bytes = honest.respond(&asked).encode().len();
        let check = median(check_secs[i].clone());
        println!(
            "{q:>3} | {:>10.2} | {:>10.2} | {:>8.2}% | {bytes:>12}",
            1e3 * train,
            1e3 * check,
            100.0 * check / train
        );
    }

    println!("\ndetection of a miner that skips a fraction f of its intervals ({SEEDS} challenge seeds each)");
    println!(
        "{:>5} | {:>3} | {:>8} | {:>13} | {:>14}",
        "f", "q", "measured", "1-(1-f)^q", "this design"
    );
    let (model, train, task) = setup();
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    for f in [0.1f64, 0.25, 0.5] {
        let faked_count = (intervals as f64 * f).round() as usize;
        let faked: Vec<usize> = sample(&mut rng, intervals as usize - 1, faked_count).into_vec();
        let record = run(&model, &train, &task, &faked);
        let claim = commitment(&task, &record);
        let update = record
            .last()
            .unwrap()
            .to_update(&model, &task.segment)
            .unwrap();
        let inputs = CheckInputs {
            task: &task,
            start_model: &model,
            train_samples: &train,
            commitment: &claim,
            update: &update,
            threads: 1,
        };
        let last_faked = faked.contains(&(intervals as usize - 1));
        for q in qs {
            let caught = (0..SEEDS)
                .filter(|s| {
                    let seed = challenge_seed(
                        &Hash256([(s % 256) as u8; 32]),
                        &Hash256([(s / 256) as u8; 32]),
                        &task.miner,
                    );
                    let asked = challenged_intervals(&seed, intervals, q);
                    !check(&inputs, &asked, Some(&record.respond(&asked))).passed()
                })
                .count();
            let others_faked = faked_count as u64 - u64::from(last_faked);
            let exact = if last_faked {
                1.0
            } else {
                1.0 - escape_probability(intervals, others_faked, q)
            };
            println!(
                "{f:>5} | {q:>3} | {:>8.3} | {:>13.3} | {exact:>14.3}{}",
                caught as f64 / f64::from(SEEDS),
                1.0 - (1.0 - f).powi(q as i32),
                if last_faked {
                    "  (last interval faked)"
                } else {
                    ""
                }
            );
        }
    }
    println!(
        "\nper submission: 3 more request headers (task hash, transcript root, steps: 64 + 64 + up to 20 bytes), \
         2 more round trips (GET challenge, POST answer), and the answer above"
    );
}
