//! `trainchain audit`: checks a chain and its coordinator's cycles independently, from the
//! coordinator's live API or from an archive of what it published.

use super::params;
use anyhow::{bail, Context, Result};
use coordinator::api::Receipt;
use coordinator::CoordinatorClient;
use miner::audit::AuditReport;
use miner::published::Archive;
use miner::NodeRpc;
use node::rpc::client::ClientAuth;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// A node's JSON-RPC URL. Default: `rpc_url` of `<rpc-data-dir>/node.json` when the node
    /// runs there, else http://127.0.0.1:7332.
    #[arg(long)]
    pub rpc: Option<String>,
    /// The node's data directory, when the node runs on this machine: its `.cookie` holds the
    /// default credentials and its `node.json` the default URL.
    #[arg(long)]
    pub rpc_data_dir: Option<PathBuf>,
    /// Node RPC authentication: "cookie:DIR", "user:password" or "none". Default: the cookie in
    /// --rpc-data-dir; without it, the cookie in --data-dir if a node keeps one there; else none.
    #[arg(long)]
    pub rpc_auth: Option<ClientAuth>,
    /// The coordinator's HTTP API. Not needed with --archive.
    #[arg(long, required_unless_present = "archive")]
    pub coordinator: Option<String>,
    /// Audit from an archive of the coordinator's published data (written by --save-archive)
    /// instead of its live API: the coordinator may be gone.
    #[arg(long, conflicts_with_all = ["coordinator", "save_archive"])]
    pub archive: Option<PathBuf>,
    /// Save everything the coordinator published (records, start models, held-out batches,
    /// updates, fraud evidence) into this directory, then audit from the saved copy.
    #[arg(long, requires = "coordinator")]
    pub save_archive: Option<PathBuf>,
    /// A miner's report file (`trainchain miner --report FILE`, one JSON line per cycle): each
    /// coordinator receipt in it must be in its cycle's record. Repeat for several miners.
    #[arg(long = "receipts", value_name = "REPORT")]
    pub receipts: Vec<PathBuf>,
    /// Chain parameters to verify against (default: `<data-dir>/chain.toml`).
    #[arg(long)]
    pub params: Option<PathBuf>,
    /// Directory holding `chain.toml` when --params is not given.
    #[arg(long, default_value = "trainchain-data")]
    pub data_dir: PathBuf,
}

/// Every receipt in the miners' report files.
fn read_receipts(paths: &[PathBuf]) -> Result<Vec<Receipt>> {
    let mut receipts = Vec::new();
    for path in paths {
        if !Path::new(path).is_file() {
            bail!("no miner report at {}", path.display());
        }
        let reports = miner::report::read_all(path)
            .with_context(|| format!("reading miner report {}", path.display()))?;
        receipts.extend(reports.into_iter().filter_map(|r| r.receipt));
    }
    Ok(receipts)
}

pub fn run(args: Args) -> Result<()> {
    let params = params::load(args.params.as_deref(), &args.data_dir)?;
    let receipts = read_receipts(&args.receipts)?;
    let url = super::rpc::node_url(args.rpc.as_deref(), args.rpc_data_dir.as_deref())?;
    let auth = ClientAuth::or_default(
        args.rpc_auth.clone(),
        args.rpc_data_dir.as_deref(),
        Some(&args.data_dir),
    );
    super::rpc::check_node_credentials(&url, &auth)?;
    let node = NodeRpc::new(&url, auth);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = runtime.block_on(async {
        if let Some(dir) = &args.archive {
            let archive = Archive::open(dir)?;
            println!("auditing from the archive {}", dir.display());
            return miner::audit::audit(&node, &archive, &params, &receipts).await;
        }
        let url = args.coordinator.as_deref().unwrap_or_default();
        let client = CoordinatorClient::new(url)?;
        match &args.save_archive {
            Some(dir) => {
                let (archive, stats) = Archive::save(&client, dir).await?;
                println!(
                    "saved {} records, {} evaluated cycles, {} updates, {} fraud evidence ({} bytes) to {}",
                    stats.records,
                    stats.cycles,
                    stats.updates,
                    stats.evidence,
                    stats.bytes,
                    dir.display()
                );
                miner::audit::audit(&node, &archive, &params, &receipts).await
            }
            None => miner::audit::audit(&node, &client, &params, &receipts).await,
        }
    });
    let report = report.context("audit failed")?;
    print_report(&report);
    Ok(())
}

fn print_report(report: &AuditReport) {
    println!(
        "audit passed: {} blocks up to {} (height {}), {} cycle records, {} lotteries recomputed, {} cycles re-measured from published data, {} fraud evidence rechecked by replay, {} verifier claims rechecked by replay, {} receipts found in their records, no equivocation",
        report.blocks_checked,
        report.best_hash,
        report.height,
        report.cycles_checked,
        report.lotteries_recomputed,
        report.cycles_remeasured,
        report.evidence_rechecked,
        report.claims_rechecked,
        report.receipts_checked,
    );
    if report.admission_bonds_checked + report.admission_bonds_spent > 0 {
        println!(
            "admission draws: {} weighed bonds match the chain, {} already spent (not readable)",
            report.admission_bonds_checked, report.admission_bonds_spent
        );
    }
    println!("training checks per cycle (verified / failed / unanswered):");
    for v in &report.verification {
        println!(
            "  cycle {}: {} / {} / {}",
            v.cycle, v.verified, v.failed, v.unanswered
        );
    }
}
