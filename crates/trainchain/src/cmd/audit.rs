//! `trainchain audit`: checks a chain and its coordinator's lotteries independently.

use super::params;
use anyhow::{Context, Result};
use coordinator::CoordinatorClient;
use miner::NodeRpc;
use node::rpc::client::ClientAuth;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A node's JSON-RPC URL.
    #[arg(long)]
    pub rpc: String,
    /// Node RPC authentication: "cookie:DIR", "user:password" or "none".
    #[arg(long, default_value = "none")]
    pub rpc_auth: ClientAuth,
    /// The coordinator's HTTP API.
    #[arg(long)]
    pub coordinator: String,
    /// Chain parameters to verify against (default: `<data-dir>/chain.toml`).
    #[arg(long)]
    pub params: Option<PathBuf>,
    /// Directory holding `chain.toml` when --params is not given.
    #[arg(long, default_value = "trainchain-data")]
    pub data_dir: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let params = params::load(args.params.as_deref(), &args.data_dir)?;
    let node = NodeRpc::new(&args.rpc, args.rpc_auth);
    let coordinator = CoordinatorClient::new(&args.coordinator)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = runtime
        .block_on(miner::audit::audit(&node, &coordinator, &params))
        .context("audit failed")?;
    println!(
        "audit passed: {} blocks up to {} (height {}), {} cycle records, {} lotteries recomputed, {} fraud evidence rechecked by replay, no equivocation",
        report.blocks_checked,
        report.best_hash,
        report.height,
        report.cycles_checked,
        report.lotteries_recomputed,
        report.evidence_rechecked
    );
    println!("training checks per cycle (verified / failed / unanswered):");
    for v in &report.verification {
        println!(
            "  cycle {}: {} / {} / {}",
            v.cycle, v.verified, v.failed, v.unanswered
        );
    }
    Ok(())
}
