//! A hostile peer: an in-process libp2p swarm speaking the node's protocols, to deliver what
//! the node's own code never would (invalid blocks over gossip, raw sync frames).

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{gossipsub, identity::Keypair, noise, tcp, yamux, Multiaddr, StreamProtocol};
use node::p2p::wire::SYNC_PROTOCOL;
use node::p2p::{block_topic, gossipsub_behaviour};
use std::io;
use std::time::Duration;

/// Sends raw bytes as a sync request, to produce frames the node's own codec never would.
#[derive(Clone, Default)]
pub struct RawCodec;

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
pub struct Rogue {
    pub gossipsub: gossipsub::Behaviour,
    pub raw: request_response::Behaviour<RawCodec>,
}

pub enum Attack {
    GossipBlock(Vec<u8>),
    SyncFrame(Vec<u8>),
}

/// Connects a fresh identity to `target`, delivers `attack`, and keeps the swarm running until
/// the returned task is aborted. Returns the rogue's peer id.
pub fn launch(
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
