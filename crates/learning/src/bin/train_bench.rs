//! Training throughput on MNIST-shaped synthetic data, plus the cost of a held-out
//! evaluation relative to a training task.
//!
//! `cargo run --release -p learning --bin train-bench -- [--threads N] [--repeats R] [--secs S]
//! [--levels best|all] [--models mlp|cnn|all] [--format table|csv]`
//!
//! MLPs run twice per repeat, interleaved: on the reproducible kernel at the best SIMD level
//! (`--levels all`: at every level this CPU offers) and on the `gemm` crate (candle's
//! kernel, not reproducible across CPUs), and the table ends with the ratio of medians.
//!
//! Every configuration is measured once per repeat, configurations interleaved, so
//! machine noise hits them alike; the table shows the median over repeats. GFLOP/s counts
//! the nominal training work, three times the forward pass (forward, weight gradient,
//! input gradient), a multiply-add being two FLOPs.

use std::time::Instant;

use learning::{
    evaluate, train, train_with_kernel, Budget, Dataset, Kernel, Model, ModelSpec, Normalisation,
    Samples, Simd, SplitFractions, TrainConfig,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Options {
    threads: usize,
    repeats: usize,
    secs: f64,
    all_levels: bool,
    /// Print only `model,batch,kernel,samples_per_s,flops_per_sample` lines (for
    /// `scripts/speed-vs-torch`), and skip the evaluation-cost line.
    csv: bool,
    /// Which models to run (`--models mlp|cnn|all`): one alone, e.g. to profile it.
    mlp: bool,
    cnn: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        repeats: 5,
        secs: 0.5,
        all_levels: false,
        csv: false,
        mlp: true,
        cnn: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("bad value {value:?} for {flag}");
        match flag.as_str() {
            "--threads" => options.threads = value.parse().map_err(|_| bad())?,
            "--repeats" => options.repeats = value.parse().map_err(|_| bad())?,
            "--secs" => options.secs = value.parse().map_err(|_| bad())?,
            "--format" => {
                options.csv = match value.as_str() {
                    "table" => false,
                    "csv" => true,
                    _ => return Err(bad()),
                }
            }
            "--models" => {
                (options.mlp, options.cnn) = match value.as_str() {
                    "mlp" => (true, false),
                    "cnn" => (false, true),
                    "all" => (true, true),
                    _ => return Err(bad()),
                }
            }
            "--levels" => {
                options.all_levels = match value.as_str() {
                    "best" => false,
                    "all" => true,
                    _ => return Err(bad()),
                }
            }
            _ => {
                return Err(format!(
                    "unknown flag {flag}; use --threads, --repeats, --secs, --levels, --models, --format"
                ))
            }
        }
    }
    Ok(options)
}

/// MNIST-shaped samples: 784 pixels in [0, 1), random labels 0..10.
fn synthetic_mnist(count: usize) -> Samples {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let features = (0..count * 784).map(|_| rng.gen::<f32>()).collect();
    let labels = (0..count).map(|_| rng.gen_range(0..10)).collect();
    Samples::new(features, labels, 784).expect("consistent synthetic samples")
}

struct Case {
    name: &'static str,
    spec: ModelSpec,
    batch: usize,
    kernel: Kernel,
    steps: u64,
    samples_per_sec: Vec<f64>,
}

fn run(case: &Case, shard: &Samples, threads: usize, steps: u64) -> learning::Result<f64> {
    let mut model = Model::new(case.spec.clone(), 1)?;
    let segments: Vec<String> = model.segments().into_iter().map(|s| s.name).collect();
    let config = TrainConfig {
        lr: 0.01,
        momentum: 0.0,
        batch: case.batch,
        budget: Budget::Steps(steps),
        seed: 1,
        threads,
    };
    let report = train_with_kernel(&mut model, &segments, shard, &config, case.kernel)?;
    Ok(report.samples as f64 / report.train_secs)
}

/// `gemm`, or the reproducible kernel's SIMD level (the matrix products of both the MLP and
/// the CNN step run on it).
fn kernel_name(case: &Case) -> &'static str {
    match case.kernel {
        Kernel::GemmCrate => "gemm",
        Kernel::Reproducible(simd) => simd.level().name(),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_options()?;
    let shard = synthetic_mnist(8192);
    let mlp = ModelSpec::Mlp {
        input: 784,
        hidden: vec![256, 128],
        classes: 10,
    };
    let cnn = ModelSpec::Cnn {
        height: 28,
        width: 28,
        channels: [16, 32],
        kernel: 3,
        classes: 10,
    };
    let mut kernels = vec![Kernel::GemmCrate];
    if options.all_levels {
        kernels.extend(Simd::available().into_iter().map(Kernel::Reproducible));
    } else {
        kernels.push(Kernel::Reproducible(Simd::best()));
    }
    let mut cases = Vec::new();
    for batch in [64, 256] {
        for &kernel in &kernels {
            if options.mlp {
                cases.push(("MLP 784-256-128-10", &mlp, batch, kernel));
            }
        }
    }
    for batch in [64, 256] {
        for &kernel in &kernels {
            if options.cnn {
                cases.push(("CNN conv16-conv32-linear", &cnn, batch, kernel));
            }
        }
    }
    let mut cases: Vec<Case> = cases
        .into_iter()
        .map(|(name, spec, batch, kernel)| Case {
            name,
            spec: spec.clone(),
            batch,
            kernel,
            steps: 0,
            samples_per_sec: Vec::new(),
        })
        .collect();

    // Calibrate: a short warm-up run sets the steps that fill `secs`.
    for case in &mut cases {
        let rate = run(case, &shard, options.threads, 5)?;
        case.steps = ((options.secs * rate / case.batch as f64) as u64).max(5);
    }
    for _ in 0..options.repeats {
        for case in &mut cases {
            let rate = run(case, &shard, options.threads, case.steps)?;
            case.samples_per_sec.push(rate);
        }
    }

    if options.csv {
        for case in &mut cases {
            let rate = median(&mut case.samples_per_sec);
            println!(
                "{},{},{},{:.1},{}",
                case.name,
                case.batch,
                kernel_name(case),
                rate,
                case.spec.train_flops_per_sample()
            );
        }
        return Ok(());
    }
    println!(
        "threads {}, {} repeats, median samples/s (plain SGD, synthetic 28x28, 10 classes)",
        options.threads, options.repeats
    );
    println!(
        "{:<26} {:>5} {:<8} {:>12} {:>9} {:>9} {:>9}",
        "model", "batch", "kernel", "samples/s", "GFLOP/s", "min", "max"
    );
    let mut medians = Vec::new();
    for case in &mut cases {
        let min = case
            .samples_per_sec
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let max = case.samples_per_sec.iter().copied().fold(0.0, f64::max);
        let rate = median(&mut case.samples_per_sec);
        let gflops = rate * case.spec.train_flops_per_sample() as f64 / 1e9;
        let kernel = kernel_name(case);
        println!(
            "{:<26} {:>5} {:<8} {:>12.0} {:>9.1} {:>9.0} {:>9.0}",
            case.name, case.batch, kernel, rate, gflops, min, max
        );
        medians.push((case.name, case.batch, kernel, rate));
    }
    for &(name, batch, kernel, rate) in &medians {
        let gemm = medians
            .iter()
            .find(|m| m.0 == name && m.1 == batch && m.2 == "gemm")
            .map(|m| m.3);
        if let (Some(gemm), true) = (gemm, kernel != "gemm") {
            println!("{name} batch {batch}: {kernel} / gemm = {:.3}", rate / gemm);
        }
    }

    evaluation_cost(options.threads)?;
    Ok(())
}

/// How long one held-out evaluation takes next to one training task, on the shipped
/// digits with the devnet-sized MLP.
fn evaluation_cost(threads: usize) -> learning::Result<()> {
    let digits = Dataset::digits()?;
    let mut split = digits.split(SplitFractions::default(), 1)?;
    let norm = Normalisation::fit(&split.train)?;
    norm.apply(&mut split.train)?;
    norm.apply(&mut split.held_out)?;
    let spec = ModelSpec::Mlp {
        input: 64,
        hidden: vec![64],
        classes: 10,
    };
    let mut model = Model::new(spec, 1)?;
    let config = TrainConfig {
        lr: 0.02,
        momentum: 0.9,
        batch: 32,
        budget: Budget::Steps(200),
        seed: 1,
        threads,
    };
    let mut train_secs = Vec::new();
    let mut eval_secs = Vec::new();
    for _ in 0..5 {
        train_secs.push(train(&mut model, &["layer0"], &split.train, &config)?.train_secs);
        let started = Instant::now();
        evaluate(&model, &split.held_out)?;
        eval_secs.push(started.elapsed().as_secs_f64());
    }
    let (train_med, eval_med) = (median(&mut train_secs), median(&mut eval_secs));
    println!(
        "digits MLP 64-64-10: held-out evaluation ({} samples) {:.3} ms; training task (200 steps x 32) {:.3} ms; ratio {:.3}",
        split.held_out.len(),
        eval_med * 1e3,
        train_med * 1e3,
        eval_med / train_med
    );
    Ok(())
}
