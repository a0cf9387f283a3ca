//! `trainchain coordinator`: runs training cycles for a chain created by `trainchain init`,
//! reading the chain tip from a node's JSON-RPC and serving miners over HTTP.

use super::params::{self, COORDINATOR_KEY_FILE};
use super::rpc;
use anyhow::{Context, Result};
use coordinator::server::{start, ADDRESS_FILE};
use coordinator::{Coordinator, CycleTiming, RpcAuth, RpcChain, RpcCredentials, WorkSetup};
use learning::DatasetSource;
use node::rpc::client::ClientAuth;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// Directory with `chain.toml` and `coordinator.key` (from `trainchain init`); the
    /// coordinator keeps its store, exported model and `coordinator.addr` here.
    #[arg(long, default_value = "trainchain-data")]
    pub data_dir: PathBuf,
    /// TOML file whose keys are this command's flags (`node_data_dir = "node"`, `log_level =
    /// "debug"`, ...); flags given here override it. See the README, "Config files".
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Chain parameters file (default: `<data-dir>/chain.toml`).
    #[arg(long)]
    pub params: Option<PathBuf>,
    /// Coordinator signing key (default: `<data-dir>/coordinator.key`, mode 0600).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// JSON-RPC URL of the coordinator's node, e.g. http://127.0.0.1:7332. Default: `rpc_url`
    /// of `<node-data-dir>/node.json` when the node runs there, else http://127.0.0.1:7332.
    #[arg(long)]
    pub node_rpc: Option<String>,
    /// The node's data directory, when the node runs on this machine: its `.cookie` holds the
    /// default credentials and its `node.json` the default URL.
    #[arg(long)]
    pub node_data_dir: Option<PathBuf>,
    /// How to authenticate to the node: "cookie:DIR" (the node's data directory),
    /// "user:password", or "none". Default: the cookie in --node-data-dir; without it, the
    /// cookie in --data-dir if a node keeps one there; else none.
    #[arg(long)]
    pub node_rpc_auth: Option<ClientAuth>,
    /// HTTP API address; port 0 lets the OS choose (the URL is written to coordinator.addr).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    /// Cycle length in seconds (registration + training); default: the chain's cycle_secs.
    #[arg(long)]
    pub cycle_secs: Option<u64>,
    /// Seconds each drawn winner has to get its block to the node (default: half a cycle).
    #[arg(long)]
    pub block_window_secs: Option<u64>,
    /// Dataset: `digits` (shipped), `wordnet` (shipped English text, for `--model lm:..`),
    /// `mnist:DIR`, `csv:FILE` or `text:FILE` (any text, cut into 65-byte windows).
    #[arg(long, default_value = "digits")]
    pub dataset: String,
    /// The task owner's held-out samples, `csv:FILE` or `mnist:DIR` in the dataset's format
    /// and features: each cycle is scored on a fresh batch of this file, which only the
    /// coordinator holds. Default: a secret random split of --dataset (seeded by
    /// `<data-dir>/held-out.secret`). Fixed at first start, like the dataset.
    #[arg(long)]
    pub held_out: Option<String>,
    /// The model: `mlp:W1,W2,...` (hidden widths), `cnn:C1,C2[,kK]` (two convolutions'
    /// channels and an odd kernel size, default 3, on square images such as the digits' 8x8
    /// or MNIST's 28x28) or `lm:DIM,LAYERS,HEADS` (a byte-level decoder-only transformer, on
    /// a text dataset; `lm:64,2,4` has 137,216 parameters). Input size and classes come from
    /// the dataset.
    #[arg(long, conflicts_with = "hidden")]
    pub model: Option<learning::ModelChoice>,
    /// Hidden layer widths of the MLP, comma-separated (the same as `--model mlp:W1,...`).
    #[arg(long, default_value = "32", value_delimiter = ',')]
    pub hidden: Vec<usize>,
    /// Where replays and evaluation run: `cpu` (the reproducible kernel), or `cuda[:N]`,
    /// which is refused: a GPU's losses and replays do not match other machines' bit for bit.
    #[arg(long, default_value = "cpu", value_name = "cpu|cuda[:N]")]
    pub device: learning::ComputeDevice,
    /// Take training jobs (`trainchain job submit`) from this owner key (hex public key;
    /// repeat for more). Without it or --open-jobs no job is taken: a job nobody can improve
    /// makes no blocks while it runs, so only trusted owners should post.
    #[arg(long, value_name = "PUBKEY")]
    pub job_owner: Vec<bitcoin::secp256k1::PublicKey>,
    /// Take training jobs from anyone (a test or private network).
    #[arg(long, conflicts_with = "job_owner")]
    pub open_jobs: bool,
}

pub fn run(args: Args) -> Result<()> {
    // Before anything is read or started: a device that cannot run the chain's work.
    args.device.check_for_chain_work()?;
    let params = params::load(args.params.as_deref(), &args.data_dir)?;
    let key_path = args
        .key
        .clone()
        .unwrap_or_else(|| args.data_dir.join(COORDINATOR_KEY_FILE));
    let key = wallet::key_file::load(&key_path)
        .with_context(|| format!("loading coordinator key {}", key_path.display()))?;
    let dataset: DatasetSource = args.dataset.parse()?;
    let loaded = learning::Dataset::load(&dataset)?;
    let choice = args.model.clone().unwrap_or(learning::ModelChoice::Mlp {
        hidden: args.hidden.clone(),
    });
    let model = choice
        .spec(loaded.samples.feature_count(), loaded.class_count)
        .with_context(|| format!("--model {choice} on --dataset {}", args.dataset))?;
    drop(loaded);
    let mut setup = WorkSetup::new(dataset, model);
    setup.held_out = match &args.held_out {
        Some(text) => Some(
            text.parse::<DatasetSource>()
                .with_context(|| format!("--held-out {text}"))?,
        ),
        None => None,
    };
    let mut timing = CycleTiming::from_cycle_secs(args.cycle_secs.unwrap_or(params.cycle_secs));
    if let Some(secs) = args.block_window_secs {
        timing.block_window_ms = secs.saturating_mul(1000);
    }
    let node_url = rpc::node_url(args.node_rpc.as_deref(), args.node_data_dir.as_deref())?;
    let node_auth = ClientAuth::or_default(
        args.node_rpc_auth.clone(),
        args.node_data_dir.as_deref(),
        Some(args.data_dir.as_path()),
    );
    rpc::check_node_credentials(&node_url, &node_auth)?;
    let credentials = match &node_auth {
        ClientAuth::None => RpcCredentials::None,
        ClientAuth::UserPassword(pair) => {
            let (user, password) = pair
                .split_once(':')
                .context("--node-rpc-auth user:password needs a colon")?;
            RpcCredentials::Fixed(RpcAuth {
                user: user.to_owned(),
                password: password.to_owned(),
            })
        }
        // Read on every call, so a restarted node's fresh cookie is picked up.
        ClientAuth::CookieIn(dir) => RpcCredentials::Cookie(dir.join(node::rpc::COOKIE_FILE)),
    };
    let chain = Arc::new(RpcChain::new(node_url, credentials)?);
    let coordinator = Arc::new(
        Coordinator::open(&args.data_dir, key, &params, setup, timing)
            .context("opening the coordinator")?
            .accept_jobs(if args.open_jobs {
                coordinator::jobs::JobPolicy::Open
            } else if args.job_owner.is_empty() {
                coordinator::jobs::JobPolicy::Closed
            } else {
                coordinator::jobs::JobPolicy::Owners(args.job_owner.iter().copied().collect())
            }),
    );
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let running = start(coordinator, chain, args.bind, &args.data_dir)
            .await
            .context("starting the HTTP API")?;
        println!(
            "coordinator API: http://{} (also in {})",
            running.address,
            args.data_dir.join(ADDRESS_FILE).display()
        );
        tokio::signal::ctrl_c()
            .await
            .context("waiting for ctrl-c")?;
        running.abort();
        Ok(())
    })
}
