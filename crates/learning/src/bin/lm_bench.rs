//! The byte-level language model on the shipped WordNet glosses: training speed of the fused
//! step in tokens per second, held-out bits per byte before and after a short run, and text
//! sampled before and after.
//!
//! `cargo run --release -p learning --bin lm-bench -- [--model lm:64,2,4] [--threads N]
//! [--steps S] [--batch B] [--lr LR] [--save DIR]`
//!
//! `--save DIR` writes the trained model (`model.safetensors`), the held-out windows
//! (`held_out.safetensors`, the shard format) and their loss and accuracy as evaluated here
//! (`eval.json`), for `bench/lm_torch_rebuild.py` to rebuild the model in PyTorch and compare.
//!
//! A token is one predicted byte: a step of batch `B` at context `T` trains on `B * T`.

use std::time::Instant;

use learning::{
    evaluate, sample_text, Budget, Dataset, DatasetSource, Model, ModelChoice, Normalisation,
    SplitFractions, TrainConfig, Trainer, LM_DEFAULT,
};

struct Options {
    model: ModelChoice,
    threads: usize,
    steps: u64,
    batch: usize,
    lr: f32,
    save: Option<std::path::PathBuf>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        model: LM_DEFAULT,
        threads: 2,
        steps: 300,
        batch: 32,
        lr: 0.3,
        save: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("bad value {value:?} for {flag}");
        match flag.as_str() {
            "--model" => options.model = value.parse()?,
            "--threads" => options.threads = value.parse().map_err(|_| bad())?,
            "--steps" => options.steps = value.parse().map_err(|_| bad())?,
            "--batch" => options.batch = value.parse().map_err(|_| bad())?,
            "--lr" => options.lr = value.parse().map_err(|_| bad())?,
            "--save" => options.save = Some(value.into()),
            _ => {
                return Err(format!(
                    "unknown flag {flag}; use --model, --threads, --steps, --batch, --lr, --save"
                ))
            }
        }
    }
    Ok(options)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_options()?;
    let data = Dataset::load(&DatasetSource::Wordnet)?;
    let mut split = data.split(SplitFractions::default(), 5)?;
    let norm = Normalisation::for_dataset(&data, &split.train)?;
    for set in [&mut split.train, &mut split.held_out, &mut split.test] {
        norm.apply(set)?;
    }
    let spec = options
        .model
        .spec(split.train.feature_count(), data.class_count)?;
    let context = split.train.feature_count() - 1;
    let mut model = Model::new(spec, 1)?;
    let segments: Vec<String> = model.segments().into_iter().map(|s| s.name).collect();
    let config = TrainConfig {
        lr: options.lr,
        momentum: 0.9,
        batch: options.batch,
        budget: Budget::Steps(options.steps),
        seed: 1,
        threads: options.threads,
    };
    let bpb = |loss: f32| loss / std::f32::consts::LN_2;
    let prompt = b"a small ";
    let before = evaluate(&model, &split.held_out)?;
    let text_before = sample_text(&model, prompt, 80, 1)?;
    println!(
        "{} ({} parameters, context {context}), {} training windows, batch {}, {} threads",
        options.model,
        model.param_count(),
        split.train.len(),
        options.batch,
        options.threads
    );
    let mut trainer = Trainer::start(&model, &segments, &split.train, &config)?;
    // One step first, so that the timing excludes the first touch of every buffer.
    trainer.run(1)?;
    let started = Instant::now();
    trainer.run(options.steps.saturating_sub(1))?;
    let secs = started.elapsed().as_secs_f64();
    let report = trainer.finish(&mut model)?;
    let tokens = (options.steps.saturating_sub(1) * (options.batch * context) as u64) as f64;
    let after = evaluate(&model, &split.held_out)?;
    let text_after = sample_text(&model, prompt, 80, 1)?;
    println!(
        "{:.0} tokens/s ({} steps in {secs:.2} s after the first)",
        tokens / secs,
        report.steps - 1
    );
    println!(
        "held-out {:.3} -> {:.3} bits per byte, next-byte accuracy {:.3} -> {:.3}",
        bpb(before.loss),
        bpb(after.loss),
        before.accuracy,
        after.accuracy
    );
    println!("before: {:?}", String::from_utf8_lossy(&text_before));
    println!("after:  {:?}", String::from_utf8_lossy(&text_after));
    if let Some(dir) = &options.save {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("model.safetensors"),
            learning::model_to_safetensors(&model)?,
        )?;
        std::fs::write(
            dir.join("held_out.safetensors"),
            split.held_out.to_safetensors()?,
        )?;
        let spec = serde_json::to_value(model.spec())?;
        let eval = serde_json::json!({
            "spec": spec,
            "loss": after.loss,
            "accuracy": after.accuracy,
            "windows": split.held_out.len(),
        });
        std::fs::write(dir.join("eval.json"), serde_json::to_vec_pretty(&eval)?)?;
        println!(
            "saved the model, the held-out windows and eval.json in {}",
            dir.display()
        );
    }
    Ok(())
}
