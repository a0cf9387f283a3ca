//! Connection caps: more in-process peers (fresh identities) dial a node than its inbound cap
//! allows. The node keeps exactly the cap, refuses the rest with a logged reason, keeps
//! serving RPC, and still syncs over its outbound connection to an honest peer.

mod support;

use libp2p::identity::Keypair;
use serde_json::Value;
use support::{all_reach, eventually, spawn_peer, start_node, start_node_with_args, TestPeer};
use testkit::{key, TestChain};

/// The capped node's inbound limit in this test: small, so a handful of peers exceed it.
const INBOUND_CAP: usize = 3;

/// Peers dialing the capped node: more than twice the cap.
const FLOOD: usize = 8;

async fn connections(node: &support::NodeProcess, direction: &str) -> usize {
    let info = node.call("getnetworkinfo", vec![]).await;
    info[direction].as_u64().unwrap() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_connections_over_the_cap_are_refused_and_sync_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let honest = start_node(&dir.path().join("honest"), &chain.params, &[]).await;
    let config = dir.path().join("capped.toml");
    std::fs::write(
        &config,
        format!("p2p_inbound_connections_max = {INBOUND_CAP}\n"),
    )
    .unwrap();
    let node = start_node_with_args(
        &dir.path().join("capped"),
        &chain.params,
        &[&honest.p2p_addr],
        &["--config", config.to_str().unwrap()],
    )
    .await;
    eventually("the capped node connects out to the honest one", || async {
        connections(&node, "connections_out").await == 1
    })
    .await;

    let flood: Vec<TestPeer> = (0..FLOOD)
        .map(|_| {
            spawn_peer(
                &node.p2p_addr,
                chain.params.chain_id,
                Keypair::generate_ed25519(),
                None,
            )
        })
        .collect();
    eventually("every flooding peer got an answer", || async {
        flood.iter().all(|p| p.established() > 0)
            && flood.iter().filter(|p| p.is_connected()).count() == INBOUND_CAP
    })
    .await;
    eventually("the excess is refused with the reason logged", || async {
        node.log()
            .lines()
            .filter(|l| l.contains("inbound connection refused"))
            .filter(|l| l.contains("connection limit exceeded"))
            .count()
            >= FLOOD - INBOUND_CAP
    })
    .await;
    // The cap holds over time, and RPC keeps answering.
    for _ in 0..10 {
        assert_eq!(connections(&node, "connections_in").await, INBOUND_CAP);
        assert_eq!(node.call("getblockcount", vec![]).await, Value::from(0));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The honest peer, reached outbound, is not crowded out: its blocks arrive.
    let blocks = chain.empty_chain(3, &key(1));
    for block in &blocks {
        assert_eq!(honest.submit(block).await, Value::Null);
    }
    all_reach(&[&node], &blocks[2].block_hash().to_string()).await;
    assert_eq!(connections(&node, "connections_in").await, INBOUND_CAP);
    drop(flood);
}
