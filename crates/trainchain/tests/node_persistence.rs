//! What a node keeps across a restart besides the chain: its bans (`banlist.json`) and, after
//! a graceful stop, its mempool (`mempool.dat`).

mod support;

use bitcoin::{Amount, TxOut};
use libp2p::identity::Keypair;
use serde_json::{json, Value};
use support::{eventually, spawn_peer, start_node};
use testkit::{coinbase_output, key, p2wpkh, TestChain};

async fn banned(node: &support::NodeProcess, peer_id: &str) -> Option<Value> {
    let list = node.call("listbanned", vec![]).await;
    list.as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == peer_id)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_survives_a_restart_and_the_peer_stays_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let chain = TestChain::new();
    let chain_id = chain.params.chain_id;
    let mut node = start_node(&data, &chain.params, &[]).await;
    let rogue_key = Keypair::generate_ed25519();
    let rogue = spawn_peer(
        &node.p2p_addr,
        chain_id,
        rogue_key.clone(),
        Some(vec![0xde, 0xad, 0xbe, 0xef]),
    );
    eventually("the rogue is banned", || async {
        banned(&node, &rogue.peer_id).await.is_some()
    })
    .await;
    let before = banned(&node, &rogue.peer_id).await.unwrap();
    assert!(before["ban_reason"]
        .as_str()
        .unwrap()
        .contains("malformed message"));
    drop(rogue);

    assert_eq!(
        node.call("stop", vec![]).await,
        json!("trainchain server stopping")
    );
    assert!(node.wait_exit().success());
    assert!(data.join("banlist.json").exists());

    let node = start_node(&data, &chain.params, &[]).await;
    assert_eq!(
        banned(&node, before["address"].as_str().unwrap()).await,
        Some(before.clone()),
        "listbanned after the restart"
    );
    assert!(node.log().contains("ban list loaded"), "{}", node.log());
    // The same identity comes back: it is let in no further than the handshake.
    let back = spawn_peer(&node.p2p_addr, chain_id, rogue_key, None);
    eventually("the banned peer is refused", || async {
        node.log()
            .lines()
            .any(|l| l.contains("refusing connection") && l.contains(back.peer_id.as_str()))
            && back.established() > 0
            && !back.is_connected()
    })
    .await;
    let peers = node.call("getpeerinfo", vec![]).await;
    assert!(peers.as_array().unwrap().is_empty(), "{peers}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mempool_survives_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let chain = TestChain::new();
    let mut node = start_node(&data, &chain.params, &[]).await;
    let miner = key(1);
    let blocks = chain.empty_chain(3, &miner);
    for block in &blocks {
        assert_eq!(node.submit(block).await, Value::Null);
    }
    let input = coinbase_output(&blocks[0]);
    let tx = chain.spend(
        std::slice::from_ref(&input),
        vec![TxOut {
            value: input.1.value - Amount::from_sat(20_000),
            script_pubkey: p2wpkh(&chain.secp, &key(2)),
        }],
        &miner,
    );
    let txid = tx.compute_txid().to_string();
    let hex = bitcoin::consensus::encode::serialize_hex(&tx);
    assert_eq!(
        node.call("sendrawtransaction", vec![json!(hex)]).await,
        json!(txid)
    );
    let time = node.call("getrawmempool", vec![json!(true)]).await[&txid]["time"].clone();

    node.call("stop", vec![]).await;
    assert!(node.wait_exit().success());
    assert!(data.join("mempool.dat").exists());

    let mut node = start_node(&data, &chain.params, &[]).await;
    assert_eq!(node.mempool().await, vec![txid.clone()]);
    assert!(node.log().contains("accepted=1"), "{}", node.log());
    let verbose = node.call("getrawmempool", vec![json!(true)]).await;
    assert_eq!(
        verbose[&txid]["time"], time,
        "the entry keeps its first-seen time"
    );

    // A damaged file is set aside; the node starts anyway, with an empty mempool.
    node.call("stop", vec![]).await;
    assert!(node.wait_exit().success());
    std::fs::write(data.join("mempool.dat"), b"not a mempool").unwrap();
    let node = start_node(&data, &chain.params, &[]).await;
    assert!(node.mempool().await.is_empty());
    assert!(data.join("mempool.dat.bad").exists());
    assert!(node.log().contains("saved mempool unreadable"));
}
