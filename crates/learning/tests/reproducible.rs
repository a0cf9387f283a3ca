//! No honest miner is ever accused: the matrix kernel, MLP training and MLP evaluation
//! give the same bits under every SIMD level this CPU offers and at 1 and 2 threads, so a
//! verifier on another CPU replays what the miner computed.
//!
//! Tests of this crate run unoptimised (only dependencies get `opt-level = 3`), so shapes
//! are small where the scalar level has to run them.

use learning::kernel::{matmul, matmul_reference, Accumulate, MatRef, K_BLOCK};
use learning::{
    evaluate, evaluate_with_kernel, model_hash_hex, train_with_kernel, Budget, Dataset, Kernel,
    LearningError, Model, ModelSpec, Normalisation, Samples, Simd, SimdError, SimdLevel,
    SplitFractions, TrainConfig, Trainer,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Values over several orders of magnitude and both signs, so that any change in the
/// order of a sum shows in the bits.
fn values(count: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| rng.gen_range(-1.0f32..1.0) * 10f32.powi(rng.gen_range(-3..3)))
        .collect()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// How an operand is laid out in memory.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// Row-major as the matrix.
    Plain,
    /// Stored as its transpose (a row-major `cols x rows` buffer, viewed transposed).
    Transposed,
}

fn view(data: &[f32], rows: usize, cols: usize, layout: Layout) -> MatRef<'_> {
    match layout {
        Layout::Plain => MatRef::row_major(data, rows, cols),
        Layout::Transposed => MatRef::row_major(data, cols, rows).t(),
    }
}

#[test]
fn kernel_equals_the_mul_add_loop_bit_for_bit_at_every_level_and_thread_count() {
    // (m, k, n): degenerate, odd, not multiples of any tile, the MNIST layer, and a
    // product longer than one K_BLOCK pass (partial sums carried through C).
    let shapes = [
        (1, 1, 1),
        (7, 13, 5),
        (9, 17, 33),
        (65, 3, 70),
        // A first convolution (16 channels, 3x3 patches): AVX-512's narrow 16-wide tiles,
        // a last row tile of 5; and a weight gradient 9 wide over a long inner dimension.
        (37, 9, 16),
        (16, 300, 9),
        (64, 784, 256),
        (3, 2 * K_BLOCK + 5, 19),
    ];
    let layouts = [
        (Layout::Plain, Layout::Plain),
        (Layout::Plain, Layout::Transposed),
        (Layout::Transposed, Layout::Plain),
        (Layout::Transposed, Layout::Transposed),
    ];
    let levels = Simd::available();
    for (m, k, n) in shapes {
        // The MNIST layer unoptimised is slow: only the three products a step runs.
        let layouts: &[(Layout, Layout)] = if m * k * n > 1 << 20 {
            &layouts[..3]
        } else {
            &layouts
        };
        let a_values = values(m * k, 1);
        let b_values = values(k * n, 2);
        let old_c = values(m * n, 3);
        for &(a_layout, b_layout) in layouts {
            let a = view(&a_values, m, k, a_layout);
            let b = view(&b_values, k, n, b_layout);
            for accumulate in [Accumulate::Overwrite, Accumulate::Add] {
                let mut expected = old_c.clone();
                matmul_reference(&mut expected, n, a, b, accumulate);
                for &simd in &levels {
                    for threads in [1, 2] {
                        let mut c = old_c.clone();
                        pool(threads).install(|| {
                            matmul(Kernel::Reproducible(simd), &mut c, n, a, b, accumulate)
                        });
                        assert_eq!(
                            bits(&c),
                            bits(&expected),
                            "{m}x{k}x{n} {a_layout:?}·{b_layout:?} {accumulate:?} at {:?}, {threads} threads",
                            simd.level()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_reference_is_order_sensitive_so_the_bitwise_checks_mean_something() {
    // Summing the same products in two halves and adding the halves (what a k-blocked
    // kernel that adds block results would do) changes some bits of the MNIST layer.
    let (m, k, n) = (64, 784, 256);
    let a = values(m * k, 1);
    let b = values(k * n, 2);
    let mut c = vec![0.0; m * n];
    matmul_reference(
        &mut c,
        n,
        MatRef::row_major(&a, m, k),
        MatRef::row_major(&b, k, n),
        Accumulate::Overwrite,
    );
    let split = k / 2;
    let differing = (0..m * n)
        .filter(|&index| {
            let (i, j) = (index / n, index % n);
            let half = |range: std::ops::Range<usize>| {
                range.fold(0f32, |acc, p| a[i * k + p].mul_add(b[p * n + j], acc))
            };
            (half(0..split) + half(split..k)).to_bits() != c[index].to_bits()
        })
        .count();
    assert!(differing > m * n / 10, "only {differing} elements differ");
}

#[test]
fn rows_outside_a_view_are_never_read_or_written() {
    // A C with a wider row stride than the product: the padding keeps its bits.
    let (m, k, n, ldc) = (5, 7, 9, 13);
    let a = values(m * k, 4);
    let b = values(k * n, 5);
    for simd in Simd::available() {
        let mut c = vec![f32::NAN; m * ldc];
        matmul(
            Kernel::Reproducible(simd),
            &mut c,
            ldc,
            MatRef::row_major(&a, m, k),
            MatRef::row_major(&b, k, n),
            Accumulate::Overwrite,
        );
        for row in c.chunks(ldc) {
            assert!(row[..n].iter().all(|v| v.is_finite()));
            assert!(row[n..].iter().all(|v| v.is_nan()));
        }
    }
}

/// Samples with a learnable rule (label = index of the largest of the first `classes`
/// features).
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

fn digits_split() -> learning::Split {
    let digits = Dataset::digits().unwrap();
    let mut split = digits.split(SplitFractions::default(), 5).unwrap();
    let norm = Normalisation::fit(&split.train).unwrap();
    for set in [&mut split.train, &mut split.held_out, &mut split.test] {
        norm.apply(set).unwrap();
    }
    split
}

/// Trains every segment and returns the model hash and the final weights and velocity
/// bits, under each level and thread count; all must agree.
fn assert_training_reproducible(spec: &ModelSpec, shard: &Samples, config: &TrainConfig) {
    let initial = Model::new(spec.clone(), 3).unwrap();
    let segments: Vec<String> = initial.segments().into_iter().map(|s| s.name).collect();
    let mut first: Option<(String, [u8; 32], Vec<Vec<u32>>)> = None;
    for simd in Simd::available() {
        for threads in [1, 2] {
            let config = TrainConfig {
                threads,
                ..config.clone()
            };
            let kernel = Kernel::Reproducible(simd);
            let mut model = initial.clone();
            train_with_kernel(&mut model, &segments, shard, &config, kernel).unwrap();
            // The resumable run's state carries the momentum velocity.
            let mut trainer =
                Trainer::start_with_kernel(&initial, &segments, shard, &config, kernel).unwrap();
            let Budget::Steps(steps) = config.budget else {
                unreachable!()
            };
            trainer.run(steps).unwrap();
            let state = trainer.state().unwrap();
            let velocity: Vec<Vec<u32>> = state.velocity.iter().map(|v| bits(v)).collect();
            let here = (model_hash_hex(&model), state.hash(), velocity);
            let at = format!("{:?} at {threads} threads", simd.level());
            match &first {
                None => first = Some(here),
                Some(reference) => {
                    assert_eq!(here.0, reference.0, "weights differ {at}");
                    assert_eq!(here.2, reference.2, "velocity differs {at}");
                    assert_eq!(here.1, reference.1, "train state differs {at}");
                }
            }
        }
    }
    let (hash, _, velocity) = first.unwrap();
    assert_ne!(hash, model_hash_hex(&initial), "training changed nothing");
    if config.momentum > 0.0 {
        assert!(velocity.iter().flatten().any(|&v| v != 0));
    }
}

#[test]
fn mnist_mlp_training_has_the_same_bits_at_every_level_and_thread_count() {
    let spec = ModelSpec::Mlp {
        input: 784,
        hidden: vec![256, 128],
        classes: 10,
    };
    let shard = synthetic(96, 784, 10, 1);
    for momentum in [0.9, 0.0] {
        let config = TrainConfig {
            lr: 0.05,
            momentum,
            batch: 24,
            budget: Budget::Steps(3),
            seed: 11,
            threads: 1,
        };
        assert_training_reproducible(&spec, &shard, &config);
    }
}

#[test]
fn digits_mlp_training_has_the_same_bits_at_every_level_and_thread_count() {
    let spec = ModelSpec::Mlp {
        input: 64,
        hidden: vec![32],
        classes: 10,
    };
    let split = digits_split();
    for momentum in [0.9, 0.0] {
        let config = TrainConfig {
            lr: 0.02,
            momentum,
            batch: 32,
            budget: Budget::Steps(40),
            seed: 7,
            threads: 1,
        };
        assert_training_reproducible(&spec, &split.train, &config);
    }
}

#[test]
fn mlp_evaluation_has_the_same_bits_at_every_level_and_thread_count() {
    let split = digits_split();
    let spec = ModelSpec::Mlp {
        input: 64,
        hidden: vec![32, 16],
        classes: 10,
    };
    let model = Model::new(spec, 9).unwrap();
    let reference = assert_evaluation_reproducible(&model, &split.held_out);
    // And it is the loss the gemm crate's products give, up to rounding.
    let candle = evaluate_with_kernel(&model, &split.held_out, Kernel::GemmCrate).unwrap();
    assert!((candle.loss - reference.loss).abs() < 1e-5);
}

#[test]
fn a_level_is_usable_exactly_when_this_cpu_offers_it() {
    for level in SimdLevel::ALL {
        match Simd::new(level) {
            Ok(simd) => {
                assert!(level.is_available());
                assert_eq!(simd.level(), level);
            }
            Err(error) => {
                assert!(!level.is_available());
                assert_eq!(error, SimdError::Unavailable { level });
                // The way a forced level reaches training: a clear error, no kernel run.
                assert!(matches!(
                    Simd::parse(level.name()),
                    Err(SimdError::Unavailable { .. })
                ));
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(
            SimdLevel::Avx512.is_available(),
            std::arch::is_x86_feature_detected!("avx512f")
        );
        assert_eq!(
            SimdLevel::Avx2.is_available(),
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        );
    }
    assert!(Simd::new(SimdLevel::Scalar).is_ok());
    assert_eq!(Simd::parse("auto").unwrap(), Simd::best());
    assert_eq!(
        Simd::parse("avx1024"),
        Err(SimdError::Unknown("avx1024".into()))
    );
    let message = SimdError::Unavailable {
        level: SimdLevel::Avx512,
    }
    .to_string();
    assert!(message.contains("avx512f"), "{message}");
}

/// Run by `forcing_a_level_through_the_environment_is_checked` in a child process.
#[test]
#[ignore = "run in a child process with TRAINCHAIN_SIMD set"]
fn child_trains_under_the_environment_level() {
    let expected = std::env::var("EXPECT").unwrap();
    let shard = synthetic(16, 8, 2, 1);
    let spec = ModelSpec::Mlp {
        input: 8,
        hidden: vec![4],
        classes: 2,
    };
    let mut model = Model::new(spec, 1).unwrap();
    let config = TrainConfig {
        lr: 0.1,
        momentum: 0.0,
        batch: 4,
        budget: Budget::Steps(2),
        seed: 1,
        threads: 1,
    };
    let result = learning::train(&mut model, &["layer0"], &shard, &config);
    match expected.as_str() {
        "ok" => {
            result.unwrap();
        }
        "unknown" => assert!(matches!(
            result,
            Err(LearningError::Simd(SimdError::Unknown(_)))
        )),
        other => panic!("unexpected EXPECT={other}"),
    }
}

#[test]
fn forcing_a_level_through_the_environment_is_checked() {
    let exe = std::env::current_exe().unwrap();
    let mut cases = vec![("bogus", "unknown"), ("auto", "ok"), ("scalar", "ok")];
    for level in SimdLevel::ALL {
        if level.is_available() {
            cases.push((level.name(), "ok"));
        }
    }
    for (value, expect) in cases {
        let output = std::process::Command::new(&exe)
            .args([
                "--exact",
                "child_trains_under_the_environment_level",
                "--ignored",
                "--quiet",
            ])
            .env(learning::SIMD_ENV, value)
            .env("EXPECT", expect)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}={value}: {}",
            learning::SIMD_ENV,
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

/// What a fixed digits run gives, on any machine: hashes of the trained model and its
/// training state, and the bits of its held-out loss. They change only when training
/// itself changes (then update them, and say so: every replay against an older miner
/// would fail). A machine that disagrees breaks the guarantee in ARCHITECTURE.md.
const GOLDEN_MODEL_HASH: &str = "fbc8841598d2fde6758994da8f63618a0f9b07013f4fd632582ce0ee416a10a0";
const GOLDEN_STATE_HASH: &str = "67f87d6b7436f542b19d74e2c6bfcdd5ada9eb9295a06a2bf40559a342040621";
const GOLDEN_LOSS_BITS: u32 = 1058902891;

#[test]
fn a_fixed_run_has_the_same_bits_on_every_machine() {
    let spec = ModelSpec::Mlp {
        input: 64,
        hidden: vec![32],
        classes: 10,
    };
    let split = digits_split();
    let initial = Model::new(spec, 3).unwrap();
    let config = TrainConfig {
        lr: 0.02,
        momentum: 0.9,
        batch: 32,
        budget: Budget::Steps(50),
        seed: 7,
        threads: 2,
    };
    for simd in Simd::available() {
        let kernel = Kernel::Reproducible(simd);
        let mut trainer = Trainer::start_with_kernel(
            &initial,
            &["layer0", "layer1"],
            &split.train,
            &config,
            kernel,
        )
        .unwrap();
        trainer.run(50).unwrap();
        let state = hex(&trainer.state().unwrap().hash());
        let mut model = initial.clone();
        trainer.finish(&mut model).unwrap();
        let loss = evaluate_with_kernel(&model, &split.held_out, kernel)
            .unwrap()
            .loss
            .to_bits();
        let found = (model_hash_hex(&model), state, loss);
        eprintln!("{:?}: {found:?}", simd.level());
        assert_eq!(
            found,
            (
                GOLDEN_MODEL_HASH.to_owned(),
                GOLDEN_STATE_HASH.to_owned(),
                GOLDEN_LOSS_BITS
            ),
            "{:?}",
            simd.level()
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An 8x8 CNN (the digits' shape) with two small convolutions.
fn small_cnn() -> ModelSpec {
    ModelSpec::Cnn {
        height: 8,
        width: 8,
        channels: [4, 6],
        kernel: 3,
        classes: 10,
    }
}

#[test]
fn cnn_training_has_the_same_bits_at_every_level_and_thread_count() {
    let split = digits_split();
    for momentum in [0.9, 0.0] {
        let config = TrainConfig {
            lr: 0.05,
            momentum,
            batch: 16,
            budget: Budget::Steps(12),
            seed: 5,
            threads: 1,
        };
        assert_training_reproducible(&small_cnn(), &split.train, &config);
    }
}

#[test]
fn cnn_evaluation_has_the_same_bits_at_every_level_and_thread_count() {
    let split = digits_split();
    let model = Model::new(small_cnn(), 9).unwrap();
    assert_evaluation_reproducible(&model, &split.held_out);
}

/// Evaluates `model` on `set` under each level this CPU offers at 1 and 2 threads; every
/// loss and accuracy must have the bits of the process default's. Returns that evaluation.
fn assert_evaluation_reproducible(model: &Model, set: &Samples) -> learning::Eval {
    let reference = evaluate(model, set).unwrap();
    for simd in Simd::available() {
        for threads in [1, 2] {
            let eval = pool(threads)
                .install(|| evaluate_with_kernel(model, set, Kernel::Reproducible(simd)))
                .unwrap();
            assert_eq!(
                eval.loss.to_bits(),
                reference.loss.to_bits(),
                "{simd:?}, {threads} threads"
            );
            assert_eq!(eval.accuracy.to_bits(), reference.accuracy.to_bits());
        }
    }
    reference
}
