//! `trainchain node`: the daemon. Opens the chain store in the data directory, joins the
//! network, serves JSON-RPC, and stops cleanly on SIGINT, SIGTERM or the `stop` RPC.
//!
//! Once listening it writes `<data-dir>/node.json` ([`RUNTIME_FILE`]) with the actual P2P
//! addresses, RPC URL and metrics URL, so scripts and test harnesses can use port 0 and
//! discover the ports.

use super::params::{self, CHAIN_STORE_FILE};
use anyhow::{bail, Context, Result};
use node::config::{NodeConfig, DEFAULT_P2P_LISTEN, DEFAULT_RPC_BIND};
use node::mempool::{Mempool, MempoolLimits};
use node::mempool_file::{self, MEMPOOL_FILE};
use node::metrics;
use node::p2p::banlist::BAN_FILE;
use node::p2p::{self, ConnectionCaps, P2pConfig};
use node::rpc::{self, auth, RpcAuth};
use node::{ChainState, NodeHandle};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Runtime facts of a running node, written when it is ready and removed when it stops.
pub const RUNTIME_FILE: &str = "node.json";

/// File name of the node's libp2p identity key inside the data directory.
pub const P2P_KEY_FILE: &str = "p2p.key";

/// How long startup waits for the P2P listeners to report their addresses.
const LISTEN_WAIT_SECS: u64 = 10;

#[derive(clap::Args)]
pub struct Args {
    /// Data directory: chain store, identity key, cookie, runtime file.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Chain parameters (default: `<data-dir>/chain.toml`).
    #[arg(long)]
    pub params: Option<PathBuf>,
    /// TOML configuration file; flags given here override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// P2P listen multiaddr (repeatable). Default: /ip4/127.0.0.1/tcp/7333 (loopback); use
    /// /ip4/0.0.0.0/tcp/7333 to accept peers from other machines.
    #[arg(long = "p2p-listen")]
    pub p2p_listen: Vec<String>,
    /// A peer to connect to, as a multiaddr (repeatable).
    #[arg(long = "peer")]
    pub peers: Vec<String>,
    /// RPC address. Default 127.0.0.1:7332; port 0 picks a free one (see node.json).
    #[arg(long)]
    pub rpc_bind: Option<String>,
    /// RPC authentication: "cookie" (default; `<data-dir>/.cookie`), "user:password", or "none".
    #[arg(long)]
    pub rpc_auth: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics, without authentication (off by
    /// default; keep it on loopback, e.g. 127.0.0.1:9332). Port 0 picks a free one (see
    /// `metrics_url` in node.json).
    #[arg(long, value_name = "ADDR")]
    pub metrics_bind: Option<String>,
}

/// The settings after merging flags over the config file over defaults.
struct Settings {
    params: Option<PathBuf>,
    listen: Vec<libp2p::Multiaddr>,
    peers: Vec<libp2p::Multiaddr>,
    rpc_bind: SocketAddr,
    rpc_auth: String,
    metrics_bind: Option<SocketAddr>,
    caps: ConnectionCaps,
}

fn parse_addrs(list: &[String], what: &str) -> Result<Vec<libp2p::Multiaddr>> {
    list.iter()
        .map(|a| {
            a.parse()
                .with_context(|| format!("{what} {a:?} is not a multiaddr"))
        })
        .collect()
}

fn settings(args: &Args) -> Result<Settings> {
    let config = match &args.config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::default(),
    };
    let pick = |flag: &Vec<String>, file: Option<Vec<String>>| {
        if flag.is_empty() {
            file.unwrap_or_default()
        } else {
            flag.clone()
        }
    };
    let mut listen = pick(&args.p2p_listen, config.p2p_listen);
    if listen.is_empty() {
        listen.push(DEFAULT_P2P_LISTEN.to_string());
    }
    let peers = pick(&args.peers, config.peers);
    let defaults = ConnectionCaps::default();
    let caps = ConnectionCaps {
        inbound: config
            .p2p_inbound_connections_max
            .unwrap_or(defaults.inbound),
        outbound: config
            .p2p_outbound_connections_max
            .unwrap_or(defaults.outbound),
    };
    let rpc_bind = args
        .rpc_bind
        .clone()
        .or(config.rpc_bind)
        .unwrap_or_else(|| DEFAULT_RPC_BIND.to_string());
    let metrics_bind = args
        .metrics_bind
        .clone()
        .or(config.metrics_bind)
        .map(|bind| {
            bind.parse()
                .with_context(|| format!("--metrics-bind {bind:?} is not an address:port"))
        })
        .transpose()?;
    Ok(Settings {
        params: args.params.clone().or(config.params),
        listen: parse_addrs(&listen, "--p2p-listen")?,
        peers: parse_addrs(&peers, "--peer")?,
        rpc_bind: rpc_bind
            .parse()
            .with_context(|| format!("--rpc-bind {rpc_bind:?} is not an address:port"))?,
        rpc_auth: args
            .rpc_auth
            .clone()
            .or(config.rpc_auth)
            .unwrap_or_else(|| "cookie".into()),
        metrics_bind,
        caps,
    })
}

pub fn run(args: Args) -> Result<()> {
    let settings = settings(&args)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(serve(&args.data_dir, settings))
}

async fn serve(data_dir: &Path, settings: Settings) -> Result<()> {
    let params = params::load(settings.params.as_deref(), data_dir)?;
    let store_path = data_dir.join(CHAIN_STORE_FILE);
    let chain = ChainState::open(&store_path, params)
        .with_context(|| format!("opening chain store {}", store_path.display()))?;
    let (tip, height) = chain.tip()?;
    info!(%tip, height, "chain loaded");
    let (node, commands) = NodeHandle::new(chain, Mempool::new(MempoolLimits::default()));
    // Before the network and RPC start, so the saved transactions come back first.
    let mempool_path = data_dir.join(MEMPOOL_FILE);
    mempool_file::load(&node, &mempool_path);

    let identity = p2p::load_or_create_identity(&data_dir.join(P2P_KEY_FILE))?;
    let p2p_config = P2pConfig {
        listen: settings.listen,
        peers: settings.peers,
        identity,
        caps: settings.caps,
        ban_file: Some(data_dir.join(BAN_FILE)),
    };
    let p2p_task = tokio::spawn(p2p::run(node.clone(), p2p_config, commands));

    let (auth, cookie) = match settings.rpc_auth.as_str() {
        "none" => (RpcAuth::Open, false),
        "cookie" => {
            let credentials = auth::write_cookie(data_dir).context("writing the RPC cookie")?;
            (RpcAuth::Basic(vec![credentials]), true)
        }
        pair if pair.contains(':') => (RpcAuth::Basic(vec![pair.to_string()]), false),
        other => bail!("--rpc-auth {other:?}: use cookie, none or user:password"),
    };
    let rpc_server = rpc::start_in(
        node.clone(),
        settings.rpc_bind,
        auth,
        Some(data_dir.to_path_buf()),
    )
    .await?;
    let rpc_url = format!("http://{}", rpc_server.local_addr);
    info!(url = %rpc_url, "RPC server listening");
    let metrics_server = match settings.metrics_bind {
        Some(bind) => {
            let scraped = node.clone();
            let server = metrics::serve(bind, Arc::new(move || metrics::render_node(&scraped)))
                .await
                .with_context(|| format!("binding the metrics listener on {bind}"))?;
            info!(url = %server.url(), "metrics listening");
            Some(server)
        }
        None => None,
    };
    let metrics_url = metrics_server.as_ref().map(metrics::MetricsServer::url);

    let listen_addrs = wait_for_listeners(&node).await;
    write_runtime_file(
        data_dir,
        &node,
        &listen_addrs,
        &rpc_url,
        metrics_url.as_deref(),
        cookie,
    )?;

    tokio::select! {
        _ = node.shutdown_requested() => info!("stop requested over RPC"),
        signal = termination_signal() => {
            info!(signal, "signal received; shutting down");
            node.request_shutdown();
        }
    }
    drop(metrics_server);
    let _ = rpc_server.handle.stop();
    rpc_server.handle.stopped().await;
    match p2p_task.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => warn!(%error, "p2p stopped with an error"),
        Err(error) => warn!(%error, "p2p task failed"),
    }
    // Nothing else touches the mempool now: RPC and p2p have stopped.
    match mempool_file::save(&node, &mempool_path) {
        Ok(count) => info!(path = %mempool_path.display(), count, "mempool saved"),
        Err(error) => warn!(path = %mempool_path.display(), %error, "could not save the mempool"),
    }
    // Every block was committed in its own redb transaction; dropping the handle closes it.
    drop(node);
    let _ = std::fs::remove_file(data_dir.join(RUNTIME_FILE));
    if cookie {
        auth::remove_cookie(data_dir);
    }
    info!("node stopped");
    Ok(())
}

async fn wait_for_listeners(node: &NodeHandle) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(LISTEN_WAIT_SECS);
    loop {
        let addrs = node.network().listen_addrs;
        if !addrs.is_empty() || tokio::time::Instant::now() >= deadline {
            return addrs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn write_runtime_file(
    data_dir: &Path,
    node: &NodeHandle,
    listen_addrs: &[String],
    rpc_url: &str,
    metrics_url: Option<&str>,
    cookie: bool,
) -> Result<()> {
    let runtime = serde_json::json!({
        "pid": std::process::id(),
        "peer_id": node.network().local_peer_id,
        "p2p_addrs": listen_addrs,
        "rpc_url": rpc_url,
        "metrics_url": metrics_url,
        "cookie_file": cookie.then(|| data_dir.join(auth::COOKIE_FILE).display().to_string()),
    });
    let path = data_dir.join(RUNTIME_FILE);
    let temp = data_dir.join(format!("{RUNTIME_FILE}.tmp"));
    std::fs::write(&temp, serde_json::to_vec_pretty(&runtime)?)
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, &path).with_context(|| format!("writing {}", path.display()))?;
    println!("{}", serde_json::to_string(&runtime)?);
    Ok(())
}

/// Resolves on SIGINT or SIGTERM, naming which.
async fn termination_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
