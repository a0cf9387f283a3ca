//! `trainchain-fuzz`: the fuzz targets' command line. `scripts/fuzz` is the usual way in.
//!
//! ```text
//! trainchain-fuzz list                          targets and what they parse
//! trainchain-fuzz seeds [--corpus DIR]          (re)write the seed corpus
//! trainchain-fuzz smoke [--secs S] [TARGET...]  seeds, then S seconds of mutations each
//! trainchain-fuzz repro TARGET FILE...          run inputs (a saved crash) once
//! trainchain-fuzz afl TARGET                    AFL++ persistent loop (`cargo afl build` only)
//! ```

use anyhow::{bail, Context, Result};
use fuzz::{driver, Outcome, Target, TARGETS};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn find_target(name: &str) -> Result<&'static Target> {
    fuzz::target(name).with_context(|| {
        let names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
        format!("unknown target {name:?}; targets: {}", names.join(", "))
    })
}

struct Options {
    secs: f64,
    corpus: PathBuf,
    artifacts: PathBuf,
    rng_seed: Option<u64>,
    rest: Vec<String>,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut options = Options {
        secs: 2.0,
        corpus: root.join("corpus"),
        artifacts: root.join("artifacts"),
        rng_seed: None,
        rest: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .cloned()
                .with_context(|| format!("{flag} needs a value"))
        };
        match arg.as_str() {
            "--secs" => options.secs = value("--secs")?.parse().context("--secs")?,
            "--corpus" => options.corpus = value("--corpus")?.into(),
            "--artifacts" => options.artifacts = value("--artifacts")?.into(),
            "--seed" => options.rng_seed = Some(value("--seed")?.parse().context("--seed")?),
            _ => options.rest.push(arg.clone()),
        }
    }
    Ok(options)
}

fn smoke(options: &Options) -> Result<()> {
    let targets: Vec<&Target> = if options.rest.is_empty() {
        TARGETS.iter().collect()
    } else {
        options
            .rest
            .iter()
            .map(|n| find_target(n))
            .collect::<Result<_>>()?
    };
    let rng_seed = options.rng_seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    println!("rng seed {rng_seed} (replay with --seed {rng_seed})");
    println!(
        "{:<22} {:>6} {:>12} {:>10} {:>9} {:>8}",
        "target", "seeds", "executions", "exec/s", "accepted", "crashes"
    );
    let mut failures = Vec::new();
    for target in targets {
        let corpus = driver::load_corpus(&options.corpus.join(target.name))?;
        // A `valid-*` seed that no longer decodes means the format changed under the corpus.
        for (path, bytes) in &corpus {
            let valid = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("valid-"));
            if valid && (target.run)(bytes) != Outcome::Accepted {
                failures.push(format!(
                    "{}: seed {} is no longer accepted; regenerate with `scripts/fuzz seeds`",
                    target.name,
                    path.display()
                ));
            }
        }
        if corpus.is_empty() {
            failures.push(format!(
                "{}: no seeds in {}",
                target.name,
                options.corpus.display()
            ));
        }
        let seeds: Vec<Vec<u8>> = corpus.into_iter().map(|(_, b)| b).collect();
        let report = driver::run(
            target,
            &seeds,
            Duration::from_secs_f64(options.secs),
            rng_seed,
            &options.artifacts,
        );
        println!(
            "{:<22} {:>6} {:>12} {:>10.0} {:>8.1}% {:>8}",
            target.name,
            seeds.len(),
            report.executions,
            report.rate_per_sec(),
            100.0 * report.accepted as f64 / report.executions.max(1) as f64,
            report.crashes.len()
        );
        for crash in &report.crashes {
            failures.push(format!("{}: crash input {}", target.name, crash.display()));
        }
    }
    if !failures.is_empty() {
        bail!("fuzz smoke run failed:\n  {}", failures.join("\n  "));
    }
    Ok(())
}

fn repro(options: &Options) -> Result<()> {
    let [name, files @ ..] = options.rest.as_slice() else {
        bail!("usage: trainchain-fuzz repro TARGET FILE...");
    };
    let target = find_target(name)?;
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {file}"))?;
        // No catch_unwind: a crash shows its panic message and backtrace.
        let outcome = (target.run)(&bytes);
        println!("{file}: {outcome:?}");
    }
    Ok(())
}

#[cfg(fuzzing)]
fn afl(options: &Options) -> Result<()> {
    let [name] = options.rest.as_slice() else {
        bail!("usage: trainchain-fuzz afl TARGET");
    };
    let run = find_target(name)?.run;
    afl::fuzz!(|data: &[u8]| {
        let _ = run(data);
    });
    Ok(())
}

#[cfg(not(fuzzing))]
fn afl(_: &Options) -> Result<()> {
    bail!("this binary was built without AFL; build it with `scripts/fuzz build` (cargo afl)")
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        bail!("usage: trainchain-fuzz list | seeds | smoke | repro | afl (see scripts/fuzz)");
    };
    let options = parse_options(rest)?;
    match command.as_str() {
        "list" => {
            for target in TARGETS {
                println!("{:<22} {}", target.name, target.about);
            }
            Ok(())
        }
        "seeds" => {
            let count = fuzz::seeds::write(&options.corpus)?;
            println!("wrote {count} seeds under {}", options.corpus.display());
            Ok(())
        }
        "smoke" => smoke(&options),
        "repro" => repro(&options),
        "afl" => afl(&options),
        other => bail!("unknown command {other:?}"),
    }
}
