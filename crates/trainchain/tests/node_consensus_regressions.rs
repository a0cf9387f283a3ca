//! Two consensus bugs a peer could trigger in the first version, each driven through a real
//! node's `submitblock` and its gossip:
//! - a witness-malleated copy of a block (same txids, same block hash) got the genuine block
//!   remembered as invalid, splitting the node off the chain;
//! - junk blocks wrapped around public certificates planted coordinator-equivocation evidence,
//!   and an honest coordinator's reissue in the next cycle counted as equivocation.

mod support;

use bitcoin::{Amount, TxOut};
use libp2p::Multiaddr;
use primitives::Block;
use serde_json::{json, Value};
use support::rogue::{launch, Attack};
use support::{all_reach, eventually, start_node, NodeProcess};
use testkit::{
    block_time, coinbase_output, key, malleate_witness, p2wpkh, replace_producer_signature,
    TestChain,
};

/// Block 1 (coinbase to key 1) and block 2, which spends it with a P2WPKH signature.
fn chain_with_a_witness_spend(chain: &TestChain) -> (Block, Block) {
    let block1 = chain.block(
        chain.params.genesis_hash(),
        1,
        &key(1),
        vec![],
        Amount::ZERO,
    );
    let input = coinbase_output(&block1);
    let fee = Amount::from_sat(1_000);
    let spend = chain.spend(
        std::slice::from_ref(&input),
        vec![TxOut {
            value: input.1.value - fee,
            script_pubkey: p2wpkh(&chain.secp, &key(2)),
        }],
        &key(1),
    );
    let block2 = chain.block(block1.block_hash(), 2, &key(1), vec![spend], fee);
    (block1, block2)
}

async fn is_banned_for(node: &NodeProcess, peer: &str, reason: &str) -> bool {
    let banned = node.call("listbanned", vec![]).await;
    banned
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["address"] == peer && b["ban_reason"].as_str().unwrap_or("").contains(reason))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_malleated_copy_never_splits_a_node_off_the_genuine_block() {
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let a = start_node(&dir.path().join("a"), &chain.params, &[]).await;
    let b = start_node(&dir.path().join("b"), &chain.params, &[&a.p2p_addr]).await;
    let (block1, genuine) = chain_with_a_witness_spend(&chain);
    assert_eq!(a.submit(&block1).await, Value::Null);
    all_reach(&[&a, &b], &block1.block_hash().to_string()).await;
    let hash = genuine.block_hash().to_string();
    let malleated = malleate_witness(&genuine, 1);
    assert_eq!(malleated.block_hash(), genuine.block_hash());

    // Through submitblock: the copy is refused on its own merits, every time.
    for _ in 0..2 {
        let answer = a.submit(&malleated).await;
        let reason = answer.as_str().unwrap_or_default();
        assert!(reason.starts_with("rejected: "), "{answer}");
        assert!(reason.contains("Merkle root"), "{answer}");
    }
    let resigned = replace_producer_signature(&chain.secp, &genuine, &key(66));
    let answer = a.submit(&resigned).await;
    assert!(
        answer
            .as_str()
            .unwrap_or_default()
            .contains("producer signature"),
        "{answer}"
    );

    // Through gossip: a hostile peer relays the copy to b first.
    let (rogue, task) = launch(
        b.p2p_addr.parse::<Multiaddr>().unwrap(),
        chain.params.chain_id,
        Attack::GossipBlock(malleated.encode()),
    );
    eventually("b bans the relayer of the malleated copy", || async {
        is_banned_for(&b, &rogue, "Merkle root").await
    })
    .await;
    task.abort();
    assert_eq!(b.tip().await, block1.block_hash().to_string());

    // The genuine block, submitted to a, reaches b by gossip and both follow it.
    assert_eq!(a.submit(&genuine).await, Value::Null);
    all_reach(&[&a, &b], &hash).await;
    assert_eq!(b.submit(&genuine).await, json!("duplicate"));
    let stored = b.call("getblock", vec![json!(hash), json!(0)]).await;
    assert_eq!(stored, json!(hex::encode(genuine.encode())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_blocks_and_honest_reissues_plant_no_equivocation_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let node = start_node(&dir.path().join("a"), &chain.params, &[]).await;
    let genesis = chain.params.genesis_hash();
    // Cycle 1 drew key 1 and key 1 stayed silent; cycle 2 built on the same tip and drew key 2
    // at attempt 0. Both certificates are public in the cycle records.
    let certificate = |cycle: u64, miner: u32| {
        let mut body = chain.certificate_body(1, genesis, 0, key(miner).public_key(&chain.secp));
        body.cycle = cycle;
        chain.sign_certificate(body)
    };
    let junk = |cycle: u64, miner: u32| {
        // No transactions, and signed by a key that is not the miner's.
        let block = chain.assemble(certificate(cycle, miner), block_time(1), vec![], &key(66));
        replace_producer_signature(&chain.secp, &block, &key(66))
    };
    let answer = node.submit(&junk(1, 1)).await;
    assert!(
        answer
            .as_str()
            .unwrap_or_default()
            .contains("block has no transactions"),
        "{answer}"
    );
    let (rogue, task) = launch(
        node.p2p_addr.parse::<Multiaddr>().unwrap(),
        chain.params.chain_id,
        Attack::GossipBlock(junk(2, 2).encode()),
    );
    eventually("the junk block's relayer is banned", || async {
        is_banned_for(&node, &rogue, "no transactions").await
    })
    .await;
    task.abort();
    assert_eq!(node.call("getequivocations", vec![]).await, json!([]));

    // The real blocks: cycle 2's winner first, then cycle 1's silent winner publishing late.
    let real = |cycle: u64, miner: u32| {
        let coinbase = chain.coinbase(1, chain.subsidy(), &key(miner));
        chain.assemble(
            certificate(cycle, miner),
            block_time(1),
            vec![coinbase],
            &key(miner),
        )
    };
    let winner = real(2, 2);
    assert_eq!(node.submit(&winner).await, Value::Null);
    assert_eq!(node.submit(&real(1, 1)).await, json!("inconclusive"));
    assert_eq!(node.tip().await, winner.block_hash().to_string());
    assert_eq!(node.call("getequivocations", vec![]).await, json!([]));
}
