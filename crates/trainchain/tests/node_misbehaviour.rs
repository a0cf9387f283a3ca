//! A hostile peer (an in-process libp2p swarm speaking the node's protocols) sends blocks with
//! forged, replayed and mis-bound certificates, a malformed gossip message and an oversized
//! sync frame. Each is rejected, the sender banned with the reason, and RPC keeps answering.

mod support;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{gossipsub, identity::Keypair, noise, tcp, yamux, Multiaddr, StreamProtocol};
use node::p2p::wire::{REQUEST_BYTES_MAX, SYNC_PROTOCOL};
use node::p2p::{block_topic, gossipsub_behaviour};
use primitives::{Block, BlockHeader};
use serde_json::Value;
use std::io;
use std::time::Duration;
use support::{eventually, start_node};
use testkit::{block_time, key, TestChain};

/// Sends raw bytes as a sync request, to produce frames the node's own codec never would.
#[derive(Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        io.read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        io.read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&bytes).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&bytes).await?;
        io.close().await
    }
}

#[derive(NetworkBehaviour)]
struct Rogue {
    gossipsub: gossipsub::Behaviour,
    raw: request_response::Behaviour<RawCodec>,
}

enum Attack {
    GossipBlock(Vec<u8>),
    SyncFrame(Vec<u8>),
}

/// Connects a fresh identity to `target`, delivers `attack`, and keeps the swarm running until
/// the returned task is aborted. Returns the rogue's peer id.
fn launch(
    target: Multiaddr,
    chain_id: u32,
    attack: Attack,
) -> (String, tokio::task::JoinHandle<()>) {
    let key = Keypair::generate_ed25519();
    let peer_id = key.public().to_peer_id().to_string();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| Rogue {
            gossipsub: gossipsub_behaviour(key, chain_id).unwrap(),
            raw: request_response::Behaviour::with_codec(
                RawCodec,
                [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default(),
            ),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let topic = block_topic(chain_id);
    swarm.behaviour_mut().gossipsub.subscribe(&topic).unwrap();
    swarm.dial(target).unwrap();
    let task = tokio::spawn(async move {
        let mut attack = Some(attack);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                event = swarm.select_next_some() => {
                    if let SwarmEvent::ConnectionEstablished { peer_id, .. } = event {
                        if let Some(Attack::SyncFrame(bytes)) = attack.take_if(|a| matches!(a, Attack::SyncFrame(_))) {
                            swarm.behaviour_mut().raw.send_request(&peer_id, bytes);
                        }
                    }
                }
                _ = tick.tick() => {
                    // Publish once the node's subscription to the block topic has arrived.
                    let subscribed = swarm
                        .behaviour()
                        .gossipsub
                        .all_peers()
                        .any(|(_, topics)| topics.contains(&&topic.hash()));
                    if subscribed {
                        if let Some(Attack::GossipBlock(bytes)) = attack.take_if(|a| matches!(a, Attack::GossipBlock(_))) {
                            swarm.behaviour_mut().gossipsub.publish(topic.clone(), bytes).unwrap();
                        }
                    }
                }
            }
        }
    });
    (peer_id, task)
}

fn block_on_tip(
    chain: &TestChain,
    header: BlockHeader,
    producer: &bitcoin::secp256k1::SecretKey,
    height: u32,
) -> Block {
    let txdata = vec![chain.coinbase(height, chain.subsidy(), producer)];
    let txids: Vec<_> = txdata.iter().map(|t| t.compute_txid()).collect();
    let header = BlockHeader {
        merkle_root: primitives::merkle::merkle_root(&txids).root,
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
