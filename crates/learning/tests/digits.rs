//! The acceptance thresholds on the shipped digits: one machine, and 4 simulated
//! miners with rotating segments and mean aggregation.

use learning::{
    aggregate, decode_update, encode_update, evaluate, loss_with_segment, make_shards, train,
    AcceptedUpdate, Aggregation, Budget, Dataset, ExpectedSegment, Model, ModelSpec, Normalisation,
    Split, SplitFractions, TrainConfig,
};

const SPLIT_SEED: u64 = 2024;

fn prepared_digits() -> Split {
    let digits = Dataset::digits().unwrap();
    let mut split = digits.split(SplitFractions::default(), SPLIT_SEED).unwrap();
    let norm = Normalisation::fit(&split.train).unwrap();
    for set in [&mut split.train, &mut split.held_out, &mut split.test] {
        norm.apply(set).unwrap();
    }
    split
}

fn spec() -> ModelSpec {
    ModelSpec::Mlp {
        input: 64,
        hidden: vec![64],
        classes: 10,
    }
}

fn config(steps: u64, seed: u64) -> TrainConfig {
    TrainConfig {
        lr: 0.02,
        momentum: 0.9,
        batch: 32,
        budget: Budget::Steps(steps),
        seed,
        threads: 1,
    }
}

#[test]
fn mlp_on_one_machine_reaches_97_percent_test_accuracy() {
    let split = prepared_digits();
    let mut model = Model::new(spec(), 1).unwrap();
    let all: Vec<String> = model.segments().into_iter().map(|s| s.name).collect();
    let report = train(&mut model, &all, &split.train, &config(1500, 7)).unwrap();
    let test = evaluate(&model, &split.test).unwrap();
    eprintln!("one machine: {test:?} after {} steps", report.steps);
    assert!(test.accuracy >= 0.97, "test accuracy {}", test.accuracy);
    let first = report.loss_curve[..50].iter().sum::<f32>();
    let last = report.loss_curve[report.loss_curve.len() - 50..]
        .iter()
        .sum::<f32>();
    assert!(
        last < first / 10.0,
        "loss fell from {first} to {last} (sums of 50)"
    );
}

#[test]
fn four_miners_rotating_segments_reach_96_percent_with_mean_aggregation() {
    let split = prepared_digits();
    let mut global = Model::new(spec(), 1).unwrap();
    let segments: Vec<String> = global.segments().into_iter().map(|s| s.name).collect();
    let miners = 4;
    for round in 0..5u64 {
        let shards = make_shards(&split.train, 100 + round, miners).unwrap();
        let mut accepted = Vec::new();
        for (miner, shard) in shards.iter().enumerate() {
            let segment = &segments[(miner + round as usize) % segments.len()];
            let mut local = global.clone();
            train(
                &mut local,
                &[segment],
                shard,
                &config(200, round * 10 + miner as u64),
            )
            .unwrap();
            // The wire round trip the coordinator performs.
            let bytes = encode_update(&local, segment).unwrap();
            let update =
                decode_update(&bytes, &ExpectedSegment::of(&global, segment).unwrap()).unwrap();
            let before = evaluate(&global, &split.held_out).unwrap().loss;
            let after = loss_with_segment(&global, &update, &split.held_out)
                .unwrap()
                .loss;
            // The coordinator keeps only updates that lower the held-out loss.
            if after < before {
                accepted.push(AcceptedUpdate {
                    update,
                    weight: 1.0,
                });
            }
        }
        aggregate(&mut global, &accepted, Aggregation::Mean).unwrap();
        eprintln!(
            "round {round}: {:?}",
            evaluate(&global, &split.held_out).unwrap()
        );
    }
    let test = evaluate(&global, &split.test).unwrap();
    eprintln!("federated: {test:?}");
    assert!(test.accuracy >= 0.96, "test accuracy {}", test.accuracy);
}
