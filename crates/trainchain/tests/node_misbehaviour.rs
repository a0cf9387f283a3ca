//! A hostile peer (an in-process libp2p swarm speaking the node's protocols) sends blocks with
//! forged, replayed and mis-bound certificates, a malformed gossip message and an oversized
//! sync frame. Each is rejected, the sender banned with the reason, and RPC keeps answering.

mod support;

use libp2p::Multiaddr;
use node::p2p::wire::REQUEST_BYTES_MAX;
use primitives::{Block, BlockHeader};
use serde_json::Value;
use support::rogue::{launch, Attack};
use support::{eventually, start_node};
use testkit::{block_time, key, TestChain};

fn block_on_tip(
    chain: &TestChain,
    header: BlockHeader,
    producer: &bitcoin::secp256k1::SecretKey,
    height: u32,
) -> Block {
    let txdata = vec![chain.coinbase(height, chain.subsidy(), producer)];
    let header = BlockHeader {
        merkle_root: primitives::merkle::block_merkle_root(&txdata).root,
        ..header
    };
    Block::sign(&chain.secp, header, txdata, producer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_blocks_and_messages_are_rejected_and_their_sender_banned() {
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let node = start_node(&dir.path().join("a"), &chain.params, &[]).await;
    let miner = key(1);
    let blocks = chain.empty_chain(3, &miner);
    for block in &blocks {
        node.submit(block).await;
    }
    let tip = blocks[2].block_hash();
    let attacker = key(66);

    // Forged: signed by a key that is not the chain's coordinator.
    let forged_cert = chain
        .certificate_body(4, tip, 0, miner.public_key(&chain.secp))
        .sign(&chain.secp, &key(99));
    let forged = chain.assemble(
        forged_cert,
        block_time(4),
        vec![chain.coinbase(4, chain.subsidy(), &miner)],
        &miner,
    );
    // Replayed: the tip's own certificate reused for the next block.
    let replayed = block_on_tip(
        &chain,
        BlockHeader {
            prev_block_hash: tip,
            time: block_time(4),
            ..blocks[2].header.clone()
        },
        &miner,
        4,
    );
    // Mis-bound: a genuine certificate for the next block, issued to `miner`, used by another.
    let genuine =
        chain.sign_certificate(chain.certificate_body(4, tip, 0, miner.public_key(&chain.secp)));
    let misbound = chain.assemble(
        genuine,
        block_time(4),
        vec![chain.coinbase(4, chain.subsidy(), &attacker)],
        &attacker,
    );
    let mut oversized = ((REQUEST_BYTES_MAX + 1) as u32).to_le_bytes().to_vec();
    oversized.extend(vec![0u8; REQUEST_BYTES_MAX + 1]);

    let cases = [
        (
            "forged",
            Attack::GossipBlock(forged.encode()),
            "invalid block",
        ),
        (
            "replayed",
            Attack::GossipBlock(replayed.encode()),
            "invalid block",
        ),
        (
            "mis-bound",
            Attack::GossipBlock(misbound.encode()),
            "producer signature",
        ),
        (
            "malformed",
            Attack::GossipBlock(vec![0xde, 0xad, 0xbe, 0xef]),
            "malformed message",
        ),
        (
            "oversized",
            Attack::SyncFrame(oversized),
            "oversized message",
        ),
    ];
    let target: Multiaddr = node.p2p_addr.parse().unwrap();
    for (name, attack, reason) in cases {
        let (rogue, task) = launch(target.clone(), chain.params.chain_id, attack);
        eventually(&format!("{name}: the sender is banned"), || async {
            let banned = node.call("listbanned", vec![]).await;
            banned.as_array().unwrap().iter().any(|b| {
                b["address"] == rogue.as_str() && b["ban_reason"].as_str().unwrap().contains(reason)
            })
        })
        .await;
        eventually(&format!("{name}: the sender is disconnected"), || async {
            let peers = node.call("getpeerinfo", vec![]).await;
            !peers
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["peer_id"] == rogue.as_str())
        })
        .await;
        task.abort();
        // Still serving, on the same tip.
        assert_eq!(node.tip().await, tip.to_string(), "{name}");
    }
    let log = node.log();
    assert!(
        log.contains("certificate signature does not verify"),
        "forged certificate reason logged"
    );
    assert!(
        log.contains("certificate is bound to parent"),
        "replay reason logged"
    );
    assert_eq!(node.call("getblockcount", vec![]).await, Value::from(3));
}
