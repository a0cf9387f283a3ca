//! Real `trainchain node` processes on loopback: relay, sync, late join, reorganisation after a
//! partition, and transaction relay into a mined block.

mod support;

use bitcoin::{Amount, TxOut};
use serde_json::json;
use support::{all_reach, eventually, start_node};
use testkit::{coinbase_output, key, p2wpkh, TestChain};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_a_late_node_catches_up_and_a_relayed_tx_is_mined() {
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let a = start_node(&dir.path().join("a"), &chain.params, &[]).await;
    let b = start_node(&dir.path().join("b"), &chain.params, &[&a.p2p_addr]).await;
    // C reaches A only through B, so A's blocks must be relayed by B.
    let c = start_node(&dir.path().join("c"), &chain.params, &[&b.p2p_addr]).await;
    eventually("B and C are connected", || async {
        b.call("getpeerinfo", vec![])
            .await
            .as_array()
            .unwrap()
            .len()
            == 2
    })
    .await;

    let miner = key(1);
    let blocks = chain.empty_chain(5, &miner);
    for block in &blocks {
        assert_eq!(a.submit(block).await, serde_json::Value::Null);
    }
    let tip = blocks.last().unwrap().block_hash().to_string();
    all_reach(&[&a, &b, &c], &tip).await;

    let late = start_node(&dir.path().join("late"), &chain.params, &[&c.p2p_addr]).await;
    all_reach(&[&late], &tip).await;

    // Spend block 1's coinbase (maturity 1 in the test chain) from C.
    let recipient = key(2);
    let fee = Amount::from_sat(10_000);
    let input = coinbase_output(&blocks[0]);
    let tx = chain.spend(
        std::slice::from_ref(&input),
        vec![TxOut {
            value: input.1.value - fee,
            script_pubkey: p2wpkh(&chain.secp, &recipient),
        }],
        &miner,
    );
    let txid = tx.compute_txid().to_string();
    let sent = c
        .call(
            "sendrawtransaction",
            vec![json!(bitcoin::consensus::encode::serialize_hex(&tx))],
        )
        .await;
    assert_eq!(sent, json!(txid));
    for (name, node) in [("A", &a), ("B", &b), ("late", &late)] {
        eventually(
            &format!("{name} has the transaction in its mempool"),
            || async { node.mempool().await.contains(&txid) },
        )
        .await;
    }

    // The certificate holder mines it on B; every node confirms it and empties its pool.
    let block6 = chain.block(blocks[4].block_hash(), 6, &miner, vec![tx], fee);
    assert_eq!(b.submit(&block6).await, serde_json::Value::Null);
    let tip6 = block6.block_hash().to_string();
    all_reach(&[&a, &b, &c, &late], &tip6).await;
    for node in [&a, &b, &c, &late] {
        eventually("mempool is empty after the block", || async {
            node.mempool().await.is_empty()
        })
        .await;
    }
    let found = a
        .call(
            "getrawtransaction",
            vec![json!(txid), json!(true), json!(tip6)],
        )
        .await;
    assert_eq!(found["blockhash"], json!(tip6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_node_on_a_shorter_branch_reorganises_on_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let a = start_node(&dir.path().join("a"), &chain.params, &[]).await;
    let b = start_node(&dir.path().join("b"), &chain.params, &[&a.p2p_addr]).await;
    let c = start_node(&dir.path().join("c"), &chain.params, &[&a.p2p_addr]).await;

    let common = chain.empty_chain(2, &key(1));
    for block in &common {
        a.submit(block).await;
    }
    let fork = common[1].block_hash();
    all_reach(&[&a, &b, &c], &fork.to_string()).await;

    // Cut C off: all its links closed, and no new ones while inactive.
    assert_eq!(
        c.call("setnetworkactive", vec![json!(false)]).await,
        json!(false)
    );
    eventually("C has no peers", || async {
        c.call("getpeerinfo", vec![])
            .await
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;

    // C is fed a two-block branch (a retry attempt, another miner); A and B get three blocks.
    let mut short = Vec::new();
    let mut parent = fork;
    for height in 3..=4 {
        let block = chain.block_with_attempt(parent, height, 1, &key(7), vec![], Amount::ZERO);
        parent = block.block_hash();
        short.push(block);
    }
    let mut long = Vec::new();
    let mut parent = fork;
    for height in 3..=5 {
        let block = chain.block(parent, height, &key(1), vec![], Amount::ZERO);
        parent = block.block_hash();
        long.push(block);
    }
    for block in &short {
        assert_eq!(c.submit(block).await, serde_json::Value::Null);
    }
    for block in &long {
        a.submit(block).await;
    }
    let long_tip = long.last().unwrap().block_hash().to_string();
    all_reach(&[&a, &b], &long_tip).await;
    assert_eq!(
        c.tip().await,
        short.last().unwrap().block_hash().to_string()
    );

    assert_eq!(
        c.call("setnetworkactive", vec![json!(true)]).await,
        json!(true)
    );
    all_reach(&[&c], &long_tip).await;
    assert_eq!(
        c.call("getblockhash", vec![json!(3)]).await,
        json!(long[0].block_hash().to_string())
    );
    assert!(c.log().contains("reorganising to a better branch"));
}
