//! Training behaviour the coordinator and miners rely on: frozen segments stay
//! bit-identical, runs replay bit-for-bit at any thread count, budgets are honoured, and
//! bad configurations are refused.

use std::time::Duration;

use learning::{model_hash, train, Budget, LearningError, Model, ModelSpec, Samples, TrainConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Samples with a learnable rule (label = index of the largest of the first `classes`
/// features) so training has a real gradient to follow.
fn synthetic(count: usize, features: usize, classes: usize, seed: u64) -> Samples {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..count * features)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let labels = values
        .chunks_exact(features)
        .map(|row| {
            (0..classes)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap() as u32
        })
        .collect();
    Samples::new(values, labels, features).unwrap()
}

fn config(steps: u64, threads: usize) -> TrainConfig {
    TrainConfig {
        lr: 0.05,
        momentum: 0.9,
        batch: 64,
        budget: Budget::Steps(steps),
        seed: 11,
        threads,
    }
}

fn mnist_mlp() -> ModelSpec {
    ModelSpec::Mlp {
        input: 784,
        hidden: vec![256, 128],
        classes: 10,
    }
}

fn small_cnn() -> ModelSpec {
    ModelSpec::Cnn {
        height: 8,
        width: 8,
        channels: [4, 8],
        kernel: 3,
        classes: 10,
    }
}

fn trained(spec: &ModelSpec, segments: &[&str], shard: &Samples, config: &TrainConfig) -> Model {
    let mut model = Model::new(spec.clone(), 3).unwrap();
    train(&mut model, segments, shard, config).unwrap();
    model
}

#[test]
fn mlp_training_is_bitwise_identical_on_one_and_two_threads() {
    // Big enough that the matrix kernel really splits work across two threads.
    let shard = synthetic(512, 784, 10, 1);
    let all = ["layer0", "layer1", "layer2"];
    let one = trained(&mnist_mlp(), &all, &shard, &config(12, 1));
    let two = trained(&mnist_mlp(), &all, &shard, &config(12, 2));
    assert_eq!(model_hash(&one), model_hash(&two));
    assert_ne!(
        model_hash(&one),
        model_hash(&Model::new(mnist_mlp(), 3).unwrap())
    );
    // A different batch order gives different weights: the hash is not vacuous.
    let reseeded = trained(
        &mnist_mlp(),
        &all,
        &shard,
        &TrainConfig {
            seed: 12,
            ..config(12, 2)
        },
    );
    assert_ne!(model_hash(&one), model_hash(&reseeded));
}

#[test]
fn cnn_training_is_bitwise_identical_on_one_and_two_threads() {
    let shard = synthetic(256, 64, 10, 2);
    let all = ["conv0", "conv1", "linear"];
    let one = trained(&small_cnn(), &all, &shard, &config(10, 1));
    let two = trained(&small_cnn(), &all, &shard, &config(10, 2));
    assert_eq!(model_hash(&one), model_hash(&two));
    assert_ne!(
        model_hash(&one),
        model_hash(&Model::new(small_cnn(), 3).unwrap())
    );
}

#[test]
fn frozen_segments_stay_bit_identical_and_trained_ones_change() {
    let cases: [(ModelSpec, Samples, &str); 3] = [
        (mnist_mlp(), synthetic(256, 784, 10, 3), "layer1"),
        (mnist_mlp(), synthetic(256, 784, 10, 3), "layer0"),
        (small_cnn(), synthetic(256, 64, 10, 4), "conv0"),
    ];
    for (spec, shard, segment) in cases {
        let initial = Model::new(spec.clone(), 3).unwrap();
        let after = trained(&spec, &[segment], &shard, &config(5, 2));
        for (before, now) in initial.params().iter().zip(after.params()) {
            let same_bits = before
                .values
                .iter()
                .zip(&now.values)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            if learning::segment_of(&before.name) == segment {
                assert!(!same_bits, "{} was trained but did not change", before.name);
            } else {
                assert!(same_bits, "{} is frozen but changed", before.name);
            }
        }
    }
}

#[test]
fn wall_clock_budget_reports_steps_that_replay_exactly() {
    let shard = synthetic(256, 64, 10, 5);
    let spec = ModelSpec::Mlp {
        input: 64,
        hidden: vec![32],
        classes: 10,
    };
    let mut timed = Model::new(spec.clone(), 3).unwrap();
    let timed_config = TrainConfig {
        budget: Budget::WallClock(Duration::from_millis(50)),
        ..config(0, 1)
    };
    let report = train(&mut timed, &["layer0", "layer1"], &shard, &timed_config).unwrap();
    assert!(report.steps > 0);
    assert_eq!(report.samples, report.steps * 64);
    assert_eq!(report.loss_curve.len() as u64, report.steps);
    assert!(report.train_secs >= 0.05);
    let replayed = trained(
        &spec,
        &["layer0", "layer1"],
        &shard,
        &config(report.steps, 2),
    );
    assert_eq!(model_hash(&timed), model_hash(&replayed));
}

#[test]
fn bad_requests_are_refused_with_their_reason() {
    let shard = synthetic(16, 64, 10, 6);
    let spec = ModelSpec::Mlp {
        input: 64,
        hidden: vec![8],
        classes: 10,
    };
    let mut model = Model::new(spec, 0).unwrap();
    let ok = config(1, 1);
    let err = |segments: &[&str], shard: &Samples, config: &TrainConfig| {
        train(&mut model.clone(), segments, shard, config).unwrap_err()
    };
    assert!(matches!(
        err(&["layer9"], &shard, &ok),
        LearningError::UnknownSegment(_)
    ));
    assert!(matches!(
        err(&[], &shard, &ok),
        LearningError::InvalidTrainConfig(_)
    ));
    for bad in [
        TrainConfig {
            batch: 0,
            ..ok.clone()
        },
        // A task may not make the trainer allocate a batch of its choosing.
        TrainConfig {
            batch: learning::BATCH_MAX + 1,
            ..ok.clone()
        },
        TrainConfig {
            threads: 0,
            ..ok.clone()
        },
        TrainConfig {
            lr: f32::NAN,
            ..ok.clone()
        },
        TrainConfig {
            momentum: 1.0,
            ..ok.clone()
        },
    ] {
        assert!(matches!(
            err(&["layer0"], &shard, &bad),
            LearningError::InvalidTrainConfig(_)
        ));
    }
    let narrow = synthetic(16, 32, 10, 6);
    assert!(matches!(
        err(&["layer0"], &narrow, &ok),
        LearningError::SamplesDoNotFitModel(_)
    ));
    let diverging = TrainConfig {
        lr: 1e30,
        ..config(20, 1)
    };
    assert!(matches!(
        err(&["layer0", "layer1"], &shard, &diverging),
        LearningError::Diverged { .. }
    ));
    train(&mut model, &["layer1"], &shard, &ok).unwrap();
}
