//! `trainchain dashboard`: the live web dashboard (see the `dashboard` crate), reading a
//! coordinator's public API and a node's JSON-RPC.

use anyhow::{bail, Context, Result};
use dashboard::limits::{LABELS_MAX, LABEL_CHARS_MAX, MINER_REPORTS_MAX};
use dashboard::{Dashboard, LiveSources, Options};
use node::rpc::client::ClientAuth;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The coordinator's HTTP API (e.g. http://127.0.0.1:8080).
    #[arg(long)]
    pub coordinator: String,
    /// A node's JSON-RPC URL. Default: `rpc_url` of `<rpc-data-dir>/node.json` when the node
    /// runs there, else http://127.0.0.1:7332.
    #[arg(long)]
    pub rpc: Option<String>,
    /// The node's data directory, when the node runs on this machine: its `.cookie` holds the
    /// default credentials and its `node.json` the default URL.
    #[arg(long)]
    pub rpc_data_dir: Option<PathBuf>,
    /// Node RPC authentication: "cookie:DIR", "user:password" or "none". Default: the cookie in
    /// --rpc-data-dir, else none.
    #[arg(long)]
    pub rpc_auth: Option<ClientAuth>,
    /// Where the dashboard listens (default: a free loopback port, printed at start).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    /// A miner's report file (`trainchain miner --report FILE`), for the useful-work plot and
    /// the miner's declared behaviour. Repeat for several miners.
    #[arg(long = "miner-report", value_name = "REPORT")]
    pub miner_reports: Vec<PathBuf>,
    /// A name to show for a miner: `KEY=NAME` (KEY its public key in hex). Repeatable.
    #[arg(long = "label", value_name = "KEY=NAME")]
    pub labels: Vec<String>,
}

fn labels(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    if pairs.len() > LABELS_MAX {
        bail!("at most {LABELS_MAX} --label");
    }
    let mut out = BTreeMap::new();
    for pair in pairs {
        let Some((key, name)) = pair.split_once('=') else {
            bail!("--label {pair:?} is not KEY=NAME");
        };
        key.parse::<bitcoin::secp256k1::PublicKey>()
            .with_context(|| format!("--label {pair:?}: {key:?} is not a public key"))?;
        if name.is_empty() || name.chars().count() > LABEL_CHARS_MAX {
            bail!("--label {pair:?}: a name is 1 to {LABEL_CHARS_MAX} characters");
        }
        out.insert(key.to_owned(), name.to_owned());
    }
    Ok(out)
}

pub fn run(args: Args) -> Result<()> {
    if args.miner_reports.len() > MINER_REPORTS_MAX {
        bail!("at most {MINER_REPORTS_MAX} --miner-report");
    }
    let labels = labels(&args.labels)?;
    let url = super::rpc::node_url(args.rpc.as_deref(), args.rpc_data_dir.as_deref())?;
    let auth = ClientAuth::or_default(args.rpc_auth.clone(), args.rpc_data_dir.as_deref(), None);
    super::rpc::check_node_credentials(&url, &auth)?;
    let sources = LiveSources::new(&args.coordinator, &url, auth)?;
    let options = Options {
        bind: args.bind,
        coordinator_url: args.coordinator.clone(),
        miner_reports: args.miner_reports,
        labels,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let dashboard = Dashboard::start(sources, options)
            .await
            .with_context(|| format!("binding {}", args.bind))?;
        println!("dashboard: {}", dashboard.url);
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        drop(dashboard);
        Ok(())
    })
}
