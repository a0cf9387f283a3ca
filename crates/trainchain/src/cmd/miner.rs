//! `trainchain miner`: takes part in a coordinator's training cycles and produces the blocks
//! it wins through its node.

use super::rpc;
use anyhow::{Context, Result};
use miner::progress::ProgressMode;
use miner::{Behaviour, Miner, MinerConfig, NodeRpc};
use node::rpc::client::ClientAuth;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// TOML file whose keys are this command's flags (`node_data_dir = "node"`, `log_level =
    /// "debug"`, ...); flags given here override it. See the README, "Config files".
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The coordinator's HTTP API, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub coordinator: String,
    /// The JSON-RPC URL of this miner's node, e.g. http://127.0.0.1:7332. Default: `rpc_url`
    /// of `<node-data-dir>/node.json` when the node runs there, else http://127.0.0.1:7332.
    #[arg(long)]
    pub node_rpc: Option<String>,
    /// The node's data directory, when the node runs on this machine: its `.cookie` holds the
    /// default credentials and its `node.json` the default URL.
    #[arg(long)]
    pub node_data_dir: Option<PathBuf>,
    /// How to authenticate to the node: "cookie:DIR" (the node's data directory),
    /// "user:password", or "none". Default: the cookie in --node-data-dir, else none.
    #[arg(long)]
    pub node_rpc_auth: Option<ClientAuth>,
    /// The miner's secret key file (`trainchain wallet new` writes one); its P2WPKH address
    /// receives the block rewards.
    #[arg(long)]
    pub key: PathBuf,
    /// Training threads (default: every core of this machine).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where training runs: `cpu` (the reproducible kernel), or `cuda[:N]`, which is refused:
    /// a GPU's results do not replay bit for bit, so every replay check would fail.
    #[arg(long, default_value = "cpu", value_name = "cpu|cuda[:N]")]
    pub device: learning::ComputeDevice,
    /// Append one JSON line per cycle (receipt, certificates, block, CPU accounting) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Stop after this many cycles (default: run until stopped).
    #[arg(long)]
    pub cycles: Option<u64>,
    /// The bond (TXID:VOUT, a `trainchain wallet bond` output for this miner's key) named in
    /// every registration. Required by a coordinator that admits bonded registrations only.
    #[arg(long, value_name = "TXID:VOUT")]
    pub bond: Option<coordinator::api::BondOutpoint>,
    /// Serve Prometheus metrics at http://ADDR/metrics, without authentication (off by
    /// default; keep it on loopback, e.g. 127.0.0.1:9334). Port 0 picks a free one; the URL
    /// is logged at start ("metrics listening").
    #[arg(long, value_name = "ADDR")]
    pub metrics_bind: Option<SocketAddr>,
    /// Devnet bad-actor testing only: honest, lazy (uploads unchanged weights), noise, or a
    /// proof-of-training cheat (other-data, rescale, skip-steps, wrong-order, wrong-rate,
    /// perturb).
    #[arg(long, default_value = "honest", hide = true)]
    pub behaviour: Behaviour,
}

pub fn run(args: Args) -> Result<()> {
    // Before anything is read or started: a device that cannot run the chain's work.
    args.device.check_for_chain_work()?;
    let key = wallet::key_file::load(&args.key)
        .with_context(|| format!("loading miner key {}", args.key.display()))?;
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let node_url = rpc::node_url(args.node_rpc.as_deref(), args.node_data_dir.as_deref())?;
    let node_auth = ClientAuth::or_default(args.node_rpc_auth, args.node_data_dir.as_deref(), None);
    rpc::check_node_credentials(&node_url, &node_auth)?;
    let metrics_bind = args.metrics_bind;
    let config = MinerConfig {
        coordinator_url: args.coordinator,
        node: NodeRpc::new(&node_url, node_auth),
        key,
        threads,
        behaviour: args.behaviour,
        report_path: args.report,
        cycles_max: args.cycles,
        progress: ProgressMode::detect(),
        bond: args.bond,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let miner = Miner::new(config)?;
        // Held for the miner's whole run; dropping it stops the listener.
        let _metrics_server = match metrics_bind {
            Some(bind) => {
                let metrics = miner.metrics();
                let server = node::metrics::serve(bind, Arc::new(move || metrics.render()))
                    .await
                    .with_context(|| format!("binding the metrics listener on {bind}"))?;
                tracing::info!(url = %server.url(), "metrics listening");
                Some(server)
            }
            None => None,
        };
        miner.run().await?;
        Ok(())
    })
}
