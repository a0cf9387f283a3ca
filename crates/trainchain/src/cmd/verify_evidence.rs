//! `trainchain verify-evidence FILE`: rechecks one piece of fraud evidence on its own, by
//! replaying the challenged interval on the cycle's start model and the miner's shard.

use anyhow::{bail, Context, Result};
use coordinator::CoordinatorClient;
use proof::FraudEvidence;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  trainchain verify-evidence evidence.json --coordinator http://127.0.0.1:8400
  trainchain verify-evidence evidence.json --weights start.safetensors --shard shard.safetensors

The evidence file is what GET /v1/cycles/{cycle}/evidence/{miner} serves. Exit status 0 means
the evidence holds: the miner's signed transcript does not replay.")]
pub struct Args {
    /// The evidence (JSON, as the coordinator publishes it).
    pub file: PathBuf,
    /// Fetch the cycle's start model and the miner's shard from this coordinator.
    #[arg(long, conflicts_with_all = ["weights", "shard"])]
    pub coordinator: Option<String>,
    /// The cycle's start model (safetensors), instead of fetching it.
    #[arg(long, requires = "shard")]
    pub weights: Option<PathBuf>,
    /// The miner's shard (safetensors, as served), instead of fetching it.
    #[arg(long, requires = "weights")]
    pub shard: Option<PathBuf>,
    /// Threads for the replay (the result does not depend on it).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

pub fn run(args: Args) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let evidence: FraudEvidence = serde_json::from_str(&text)
        .with_context(|| format!("{} is not fraud evidence", args.file.display()))?;
    let (weights, shard) = match (&args.coordinator, &args.weights, &args.shard) {
        (Some(url), _, _) => {
            let client = CoordinatorClient::new(url)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(async {
                let weights = client.weights(evidence.task.cycle).await?;
                let shard = client
                    .evidence_shard(evidence.task.cycle, &evidence.task.miner)
                    .await?;
                Ok::<_, anyhow::Error>((weights, shard))
            })?
        }
        (None, Some(w), Some(s)) => (
            std::fs::read(w).with_context(|| format!("reading {}", w.display()))?,
            std::fs::read(s).with_context(|| format!("reading {}", s.display()))?,
        ),
        _ => bail!("give --coordinator URL, or --weights FILE and --shard FILE"),
    };
    let model = learning::model_from_safetensors(evidence.model.clone(), &weights)
        .context("the start model does not load")?;
    let failure = evidence
        .recheck(&model, &shard, args.threads)
        .context("the evidence does not hold")?;
    println!(
        "evidence holds: miner {} in cycle {}: {failure}",
        evidence.task.miner, evidence.task.cycle
    );
    Ok(())
}
