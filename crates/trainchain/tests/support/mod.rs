//! Harness for tests that run real `trainchain node` processes on loopback with OS-chosen
//! ports. Each process is killed when its [`NodeProcess`] is dropped, even on a failed assert.

#![allow(dead_code)]

pub mod rogue;

use node::rpc::client::RpcClient;
use primitives::{Block, ChainParams};
use serde_json::{json, Value};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bound of every wait on a condition: generous for a loaded 2-core machine, and a failing
/// test reports what it waited for.
pub const WAIT_SECS: u64 = 30;

pub struct NodeProcess {
    child: Child,
    pub dir: PathBuf,
    pub rpc: RpcClient,
    pub rpc_url: String,
    pub p2p_addr: String,
    pub peer_id: String,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a node in `dir` (created, with `params` as its chain.toml) dialing `peers`.
pub async fn start_node(dir: &Path, params: &ChainParams, peers: &[&str]) -> NodeProcess {
    start_node_with_args(dir, params, peers, &[]).await
}

impl NodeProcess {
    pub async fn call(&self, method: &str, params: Vec<Value>) -> Value {
        self.rpc
            .call(method, params)
            .await
            .unwrap_or_else(|e| panic!("{method} on {}: {e}", self.dir.display()))
    }

    pub async fn tip(&self) -> String {
        self.call("getbestblockhash", vec![])
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn submit(&self, block: &Block) -> Value {
        self.call("submitblock", vec![json!(hex::encode(block.encode()))])
            .await
    }

    pub async fn mempool(&self) -> Vec<String> {
        serde_json::from_value(self.call("getrawmempool", vec![]).await).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// Waits for the process to exit by itself (after `stop`).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(WAIT_SECS);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "node did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Polls `condition` until it holds; panics naming `what` after [`WAIT_SECS`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(WAIT_SECS);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every node reports `tip` as its best block.
pub async fn all_reach(nodes: &[&NodeProcess], tip: &str) {
    for (i, node) in nodes.iter().enumerate() {
        eventually(&format!("node {i} reaches tip {tip}"), || async {
            node.tip().await == tip
        })
        .await;
    }
}

/// Like [`start_node`], with extra command-line arguments (`--config FILE`, …).
pub async fn start_node_with_args(
    dir: &Path,
    params: &ChainParams,
    peers: &[&str],
    extra: &[&str],
) -> NodeProcess {
    std::fs::create_dir_all(dir).unwrap();
    let params_path = dir.join("chain.toml");
    if !params_path.exists() {
        std::fs::write(&params_path, params.to_toml()).unwrap();
    }
    let runtime_file = dir.join("node.json");
    let _ = std::fs::remove_file(&runtime_file);
    let log = std::fs::File::create(dir.join("node.log")).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_trainchain"));
    command
        .arg("node")
        .arg("--data-dir")
        .arg(dir)
        .args(["--p2p-listen", "/ip4/127.0.0.1/tcp/0"])
        .args(["--rpc-bind", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "info,node=debug,libp2p=warn")
        .stdout(Stdio::null())
        .stderr(log);
    for peer in peers {
        command.args(["--peer", peer]);
    }
    let child = command.spawn().expect("spawning trainchain node");
    let deadline = Instant::now() + Duration::from_secs(WAIT_SECS);
    let runtime: Value = loop {
        if let Ok(text) = std::fs::read_to_string(&runtime_file) {
            if let Ok(value) = serde_json::from_str(&text) {
                break value;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node in {} did not start; log:\n{}",
            dir.display(),
            std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let rpc_url = runtime["rpc_url"].as_str().unwrap().to_string();
    NodeProcess {
        child,
        rpc: RpcClient::with_cookie(&rpc_url, dir).unwrap(),
        rpc_url,
        dir: dir.to_path_buf(),
        p2p_addr: runtime["p2p_addrs"][0].as_str().unwrap().to_string(),
        peer_id: runtime["peer_id"].as_str().unwrap().to_string(),
    }
}

/// An in-process libp2p peer (gossipsub only, the node's own configuration) with an identity
/// of its own, dialing a node. It counts the connections it holds, optionally gossips one
/// block-topic message once the node has subscribed, and is stopped when dropped.
pub struct TestPeer {
    pub peer_id: String,
    /// Connections to the node open right now.
    pub connected: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Connections that were established at some point (then possibly closed by the node).
    pub established: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestPeer {
    pub fn is_connected(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    pub fn established(&self) -> usize {
        self.established.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Starts a [`TestPeer`] with `key` dialing `target` on chain `chain_id`.
pub fn spawn_peer(
    target: &str,
    chain_id: u32,
    key: libp2p::identity::Keypair,
    gossip_block: Option<Vec<u8>>,
) -> TestPeer {
    use futures::StreamExt;
    use libp2p::swarm::SwarmEvent;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let peer_id = key.public().to_peer_id().to_string();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| node::p2p::gossipsub_behaviour(key, chain_id).unwrap())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let topic = node::p2p::block_topic(chain_id);
    swarm.behaviour_mut().subscribe(&topic).unwrap();
    swarm
        .dial(target.parse::<libp2p::Multiaddr>().unwrap())
        .unwrap();
    let connected = Arc::new(AtomicUsize::new(0));
    let established = Arc::new(AtomicUsize::new(0));
    let (open, total) = (connected.clone(), established.clone());
    let task = tokio::spawn(async move {
        let mut gossip = gossip_block;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                event = swarm.select_next_some() => match event {
                    SwarmEvent::ConnectionEstablished { .. } => {
                        open.fetch_add(1, Ordering::SeqCst);
                        total.fetch_add(1, Ordering::SeqCst);
                    }
                    SwarmEvent::ConnectionClosed { .. } => {
                        open.fetch_sub(1, Ordering::SeqCst);
                    }
                    _ => {}
                },
                _ = tick.tick() => {
                    let subscribed = swarm
                        .behaviour()
                        .all_peers()
                        .any(|(_, topics)| topics.contains(&&topic.hash()));
                    if subscribed {
                        if let Some(bytes) = gossip.take() {
                            let _ = swarm.behaviour_mut().publish(topic.clone(), bytes);
                        }
                    }
                }
            }
        }
    });
    TestPeer {
        peer_id,
        connected,
        established,
        task,
    }
}
