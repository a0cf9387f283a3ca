//! The peer-to-peer network on rust-libp2p: TCP + noise + yamux, identify, ping, gossipsub for
//! new blocks and transactions, and a request-response protocol for sync ([`wire`]).
//!
//! Gossip is validated before it is relayed (gossipsub's `validate_messages`): a block goes
//! through the full consensus checks, a transaction into the mempool, and only then is the
//! message reported `Accept` and forwarded. Sync asks a peer for headers after our block
//! locator, then for the blocks we lack in batches; it runs when a peer connects, when a gossip
//! block's parent is unknown (the block waits in a bounded orphan pool), and every
//! [`SYNC_POLL_SECS`] as a safety net for missed gossip.

pub mod banlist;
pub mod peers;
pub mod wire;

use crate::chain::{BlockOutcome, ChainError};
use crate::mempool::DEFAULT_TX_BYTES_MAX;
use crate::service::{now_unix_secs, NetCommand, NetworkActivity, NodeHandle, SubmitTxError};
use bitcoin::{BlockHash, Transaction};
use futures::StreamExt;
use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, ListenError, NetworkBehaviour, SwarmEvent};
use libp2p::{identify, noise, ping, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use peers::{Offence, PeerBook, Verdict};
use primitives::block::BLOCK_BYTES_DECODE_MAX;
use primitives::{Block, BlockHeader};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use wire::{InboundRequest, SyncCodec, SyncRequest, SyncResponse, WireError};

/// Bytes a gossipsub frame adds around a message: protobuf framing, topic, source peer id,
/// sequence number, signature and public key take well under 1 kB; 64 KiB also leaves room for
/// control messages sharing the frame.
pub const GOSSIP_ENVELOPE_BYTES: usize = 64 * 1024;

/// Largest gossipsub frame: one largest decodable block plus its envelope.
pub const BLOCK_GOSSIP_BYTES_MAX: usize = BLOCK_BYTES_DECODE_MAX + GOSSIP_ENVELOPE_BYTES;

/// Largest message on the transaction topic: the mempool's per-transaction limit plus envelope.
pub const TX_GOSSIP_BYTES_MAX: usize = DEFAULT_TX_BYTES_MAX + GOSSIP_ENVELOPE_BYTES;

/// Blocks with an unknown parent kept while their ancestors are fetched. Sync fetches in order,
/// so orphans only come from gossip racing ahead; a few dozen cover any realistic burst.
pub const ORPHAN_BLOCKS_MAX: usize = 64;

/// Bytes of orphan blocks kept, whatever their number: bounds what unsolicited blocks can pin.
pub const ORPHAN_BYTES_MAX: usize = 32 * 1024 * 1024;

/// How often each idle peer is asked for headers, in case gossip was missed.
pub const SYNC_POLL_SECS: u64 = 5;

/// How often the timer runs: redials configured peers that dropped, polls idle peers.
const TICK_SECS: u64 = 1;

/// How often the mempool's expiry runs.
const MEMPOOL_EXPIRY_EVERY_SECS: u64 = 60;

/// Block hashes queued to fetch from one peer ([`PeerSync::wanted`]). One headers batch is all
/// a peer can add per answer, and the next batch is asked for only once the queue drains; a
/// second batch's worth covers a poll or an orphan's headers request landing meanwhile. Hashes
/// past it are dropped: a later headers request from our (by then higher) tip finds them again.
pub const WANTED_BLOCKS_MAX: usize = 2 * wire::HEADERS_BATCH_MAX;

/// A sync request gets this long for its answer (a batch of large blocks on a slow link).
const SYNC_REQUEST_TIMEOUT_SECS: u64 = 60;

/// Connections idle (no stream open) for this long are closed; gossipsub and ping keep ours busy.
const IDLE_CONNECTION_SECS: u64 = 120;

/// Ten locator entries one block apart, then doubling steps (Bitcoin's `GetLocator`).
const LOCATOR_DENSE_ENTRIES: usize = 10;

/// Established inbound connections accepted (default; `p2p_inbound_connections_max` in the
/// config). Each costs a yamux session, gossipsub peer state and, while the peer syncs from us,
/// one blocks response in flight (4 MiB soft limit plus one 8 MiB block): 64 bound that at
/// under 1 GiB, and are ample for a network of tens of training nodes. Bitcoin Core's 125 slots
/// serve a far larger network with far smaller messages.
pub const INBOUND_CONNECTIONS_MAX: u32 = 64;

/// Established outbound connections (default; `p2p_outbound_connections_max`). We dial only
/// configured peers and `addnode`; Core keeps 8 full-relay + 2 block-relay + 8 manual = 18, and
/// 16 leave room for a handful of configured peers plus `addnode onetry`. Counted apart from
/// inbound, so an inbound flood never crowds out the peers the operator chose.
pub const OUTBOUND_CONNECTIONS_MAX: u32 = 16;

/// Connections to one peer. The protocol needs one; two let a simultaneous dial from both
/// sides settle without refusing either, and stop one identity from taking many slots.
pub const CONNECTIONS_PER_PEER_MAX: u32 = 2;

/// Inbound handshakes (noise + yamux) in progress. Each holds a socket and noise buffers until
/// the upgrade finishes or times out; 16 let honest peers in while a few stall, and bound what
/// sockets that never finish the handshake can pin.
pub const PENDING_INBOUND_MAX: u32 = 16;

/// The connection caps the node runs with; see [`INBOUND_CONNECTIONS_MAX`] and
/// [`OUTBOUND_CONNECTIONS_MAX`] for the defaults. The per-peer and pending-inbound caps are
/// fixed; dials in progress are capped at `outbound`, more than we could keep anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    pub inbound: u32,
    pub outbound: u32,
}

impl Default for ConnectionCaps {
    fn default() -> Self {
        ConnectionCaps {
            inbound: INBOUND_CONNECTIONS_MAX,
            outbound: OUTBOUND_CONNECTIONS_MAX,
        }
    }
}

impl ConnectionCaps {
    fn limits(self) -> ConnectionLimits {
        ConnectionLimits::default()
            .with_max_established_incoming(Some(self.inbound))
            .with_max_established_outgoing(Some(self.outbound))
            .with_max_established_per_peer(Some(CONNECTIONS_PER_PEER_MAX))
            .with_max_pending_incoming(Some(PENDING_INBOUND_MAX))
            .with_max_pending_outgoing(Some(self.outbound))
    }
}

/// Gossip topic of new blocks on chain `chain_id`.
pub fn block_topic(chain_id: u32) -> IdentTopic {
    IdentTopic::new(format!("/trainchain/{chain_id}/blocks/1"))
}

/// Gossip topic of new transactions on chain `chain_id`.
pub fn tx_topic(chain_id: u32) -> IdentTopic {
    IdentTopic::new(format!("/trainchain/{chain_id}/txs/1"))
}

/// Identify's protocol version: peers on another chain show up as such.
pub fn identify_protocol(chain_id: u32) -> String {
    format!("/trainchain/{chain_id}/1.0.0")
}

#[derive(Debug, Error)]
pub enum P2pError {
    #[error("gossipsub configuration: {0}")]
    Gossipsub(String),
    #[error("transport: {0}")]
    Transport(String),
    #[error("listening on {addr}: {error}")]
    Listen { addr: Multiaddr, error: String },
    #[error("identity key file {path}: {error}")]
    Identity { path: String, error: String },
}

/// The gossipsub behaviour as every node configures it: signed messages, content-addressed
/// message ids, validation before forwarding, size limits fitted to blocks and transactions.
pub fn gossipsub_behaviour(key: &Keypair, chain_id: u32) -> Result<gossipsub::Behaviour, P2pError> {
    let config = gossipsub::ConfigBuilder::default()
        .max_transmit_size(BLOCK_GOSSIP_BYTES_MAX)
        .max_transmit_size_for_topic(TX_GOSSIP_BYTES_MAX, tx_topic(chain_id).hash())
        .validate_messages()
        .message_id_fn(|message: &gossipsub::Message| {
            gossipsub::MessageId::from(primitives::sha256(&message.data).0.to_vec())
        })
        .build()
        .map_err(|e| P2pError::Gossipsub(e.to_string()))?;
    gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), config)
        .map_err(|e| P2pError::Gossipsub(e.to_string()))
}

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// First, so a connection over a cap is refused before any other behaviour sets up state.
    limits: connection_limits::Behaviour,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// The node's libp2p identity from `path`, created (mode 0600) on first use so that the peer
/// id survives restarts.
pub fn load_or_create_identity(path: &Path) -> Result<Keypair, P2pError> {
    let fail = |error: String| P2pError::Identity {
        path: path.display().to_string(),
        error,
    };
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| fail(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| fail(e.to_string()))?;
            write_private(path, &bytes).map_err(|e| fail(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

/// Where the node listens, whom it dials, how many connections it keeps, and where its bans
/// are kept across restarts.
#[derive(Debug, Clone)]
pub struct P2pConfig {
    pub listen: Vec<Multiaddr>,
    pub peers: Vec<Multiaddr>,
    pub identity: Keypair,
    pub caps: ConnectionCaps,
    /// The ban list file ([`banlist`]); `None` keeps bans in memory only.
    pub ban_file: Option<PathBuf>,
}

/// Builds the swarm: TCP + noise + yamux under our behaviours, within `caps`.
pub fn build_swarm(
    identity: Keypair,
    chain_id: u32,
    caps: ConnectionCaps,
) -> Result<Swarm<Behaviour>, P2pError> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| P2pError::Transport(e.to_string()))?
        .with_behaviour(|key| {
            let gossipsub = gossipsub_behaviour(key, chain_id)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let sync = request_response::Behaviour::with_codec(
                SyncCodec,
                [(
                    StreamProtocol::new(wire::SYNC_PROTOCOL),
                    ProtocolSupport::Full,
                )],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(SYNC_REQUEST_TIMEOUT_SECS)),
            );
            let identify = identify::Behaviour::new(
                identify::Config::new(identify_protocol(chain_id), key.public())
                    .with_agent_version(format!("trainchain/{}", env!("CARGO_PKG_VERSION"))),
            );
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(caps.limits()),
                gossipsub,
                sync,
                identify,
                ping: ping::Behaviour::default(),
            })
        })
        .map_err(|e| P2pError::Transport(e.to_string()))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(IDLE_CONNECTION_SECS))
        })
        .build();
    Ok(swarm)
}

/// What a sync request in flight was for.
#[derive(Debug)]
enum Pending {
    Headers,
    Blocks(Vec<BlockHash>),
}

/// Sync progress with one peer.
#[derive(Debug, Default)]
struct PeerSync {
    headers_in_flight: bool,
    blocks_in_flight: bool,
    /// Blocks the peer announced (by headers) that we lack, lowest first.
    wanted: VecDeque<BlockHash>,
    /// Last header of a full headers batch: ask again after it once `wanted` is drained.
    continue_after: Option<BlockHash>,
    last_poll_secs: u64,
}

impl PeerSync {
    /// Queues `announced` (in chain order, already filtered to blocks we lack) from a headers
    /// batch, within [`WANTED_BLOCKS_MAX`]; `full_batch_last` is the batch's last hash when the
    /// batch was full (the peer has more). Returns how many hashes were dropped.
    fn want(&mut self, announced: Vec<BlockHash>, full_batch_last: Option<BlockHash>) -> usize {
        let mut dropped = 0;
        let mut last_kept = None;
        for hash in announced {
            if self.wanted.contains(&hash) {
                last_kept = Some(hash);
            } else if self.wanted.len() < WANTED_BLOCKS_MAX {
                self.wanted.push_back(hash);
                last_kept = Some(hash);
            } else {
                dropped += 1;
            }
        }
        // After a cut, continue from the last hash kept, so the dropped ones are asked again;
        // if none was kept, the next poll asks from our tip.
        self.continue_after = if dropped > 0 {
            last_kept
        } else {
            full_batch_last
        };
        dropped
    }
}

/// Blocks waiting for their parent, bounded by count and bytes (oldest evicted first).
#[derive(Default)]
struct OrphanPool {
    blocks: HashMap<BlockHash, (Block, PeerId, usize)>,
    order: VecDeque<BlockHash>,
    bytes: usize,
}

impl OrphanPool {
    fn insert(&mut self, block: Block, from: PeerId) {
        let hash = block.block_hash();
        if self.blocks.contains_key(&hash) {
            return;
        }
        let bytes = block.encoded_len();
        if bytes > ORPHAN_BYTES_MAX {
            return;
        }
        while self.blocks.len() >= ORPHAN_BLOCKS_MAX || self.bytes + bytes > ORPHAN_BYTES_MAX {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some((_, _, b)) = self.blocks.remove(&oldest) {
                self.bytes -= b;
            }
        }
        self.bytes += bytes;
        self.order.push_back(hash);
        self.blocks.insert(hash, (block, from, bytes));
    }

    /// Takes out the orphans whose parent is `parent`.
    fn children_of(&mut self, parent: &BlockHash) -> Vec<(Block, PeerId)> {
        let hashes: Vec<BlockHash> = self
            .blocks
            .iter()
            .filter(|(_, (b, _, _))| b.header.prev_block_hash == *parent)
            .map(|(h, _)| *h)
            .collect();
        hashes
            .into_iter()
            .filter_map(|h| {
                self.order.retain(|o| *o != h);
                self.blocks.remove(&h).map(|(b, p, bytes)| {
                    self.bytes -= bytes;
                    (b, p)
                })
            })
            .collect()
    }
}

/// The network task's state.
struct Network {
    swarm: Swarm<Behaviour>,
    node: NodeHandle,
    book: PeerBook,
    sync: HashMap<PeerId, PeerSync>,
    requests: HashMap<OutboundRequestId, (PeerId, Pending)>,
    orphans: OrphanPool,
    configured: Vec<Multiaddr>,
    /// Configured addresses with an outbound connection, and dials in progress.
    outbound: HashMap<Multiaddr, PeerId>,
    dialing: HashMap<ConnectionId, Multiaddr>,
    active: NetworkActivity,
    block_topic: IdentTopic,
    tx_topic: IdentTopic,
    ban_file: Option<PathBuf>,
    /// Bans changed since the ban file was last written.
    bans_dirty: bool,
}

/// Runs the network until the node shuts down.
pub async fn run(
    node: NodeHandle,
    config: P2pConfig,
    mut commands: mpsc::UnboundedReceiver<NetCommand>,
) -> Result<(), P2pError> {
    let chain_id = node.params().chain_id;
    let mut swarm = build_swarm(config.identity, chain_id, config.caps)?;
    let block_topic = block_topic(chain_id);
    let tx_topic = tx_topic(chain_id);
    for topic in [&block_topic, &tx_topic] {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(topic)
            .map_err(|e| P2pError::Gossipsub(e.to_string()))?;
    }
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| P2pError::Listen {
                addr: addr.clone(),
                error: e.to_string(),
            })?;
    }
    let local_peer_id = *swarm.local_peer_id();
    node.update_network(|status| status.local_peer_id = local_peer_id.to_string());
    info!(peer_id = %local_peer_id, "p2p identity");
    let mut net = Network {
        swarm,
        node: node.clone(),
        book: PeerBook::default(),
        sync: HashMap::new(),
        requests: HashMap::new(),
        orphans: OrphanPool::default(),
        configured: config.peers,
        outbound: HashMap::new(),
        dialing: HashMap::new(),
        active: NetworkActivity::Active,
        block_topic,
        tx_topic,
        ban_file: config.ban_file,
        bans_dirty: false,
    };
    net.restore_bans();
    net.dial_configured();
    let mut tick = tokio::time::interval(Duration::from_secs(TICK_SECS));
    let mut last_expiry_secs = now_unix_secs();
    let shutdown = node.shutdown_requested();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(command) = commands.recv() => net.on_command(command),
            event = net.swarm.select_next_some() => net.on_swarm_event(event),
            _ = tick.tick() => {
                net.on_tick();
                let now = now_unix_secs();
                if now >= last_expiry_secs + MEMPOOL_EXPIRY_EVERY_SECS {
                    last_expiry_secs = now;
                    node.expire_mempool();
                }
            }
        }
    }
    net.save_bans();
    info!("p2p stopped");
    Ok(())
}

impl Network {
    /// Bans from the ban file, still in force, back into the book and gossipsub's blacklist.
    fn restore_bans(&mut self) {
        let Some(path) = &self.ban_file else {
            return;
        };
        for entry in banlist::load(path, now_unix_secs()) {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .blacklist_peer(&entry.peer);
            self.book.ban(entry);
        }
        self.publish_status();
    }

    /// Writes the ban file if the bans changed since it was last written.
    fn save_bans(&mut self) {
        let Some(path) = &self.ban_file else {
            return;
        };
        if !self.bans_dirty {
            return;
        }
        match banlist::save(path, &self.book.bans()) {
            Ok(()) => self.bans_dirty = false,
            // Kept dirty: the next tick tries again.
            Err(error) => warn!(path = %path.display(), %error, "could not write the ban list"),
        }
    }

    fn publish_status(&mut self) {
        let (peers, banned) = self.book.snapshot();
        let active = self.active;
        self.node.update_network(|status| {
            status.peers = peers;
            status.banned = banned;
            status.active = active;
        });
    }

    fn dial(&mut self, addr: Multiaddr) {
        // A fresh local port for every dial. libp2p's default binds the dial to the listen port
        // (port reuse); when an earlier connection between the same two ports is still in
        // TIME_WAIT, connect() fails with "Address already in use" on every retry, and libp2p
        // retries on a new port only for "address not available". That left devnet nodes
        // unlinked for good (seen in CI). Peers learn the listen address through identify.
        let opts = DialOpts::unknown_peer_id()
            .address(addr.clone())
            .allocate_new_port()
            .build();
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dialing.insert(id, addr);
            }
            // Info: a configured peer that is never reached is the first thing an operator
            // (or a failed devnet) needs to see, and dials are rare.
            Err(error) => info!(%addr, %error, "dial refused"),
        }
    }

    fn dial_configured(&mut self) {
        if self.active == NetworkActivity::Inactive {
            return;
        }
        let to_dial: Vec<Multiaddr> = self
            .configured
            .iter()
            .filter(|a| !self.outbound.contains_key(*a) && !self.dialing.values().any(|d| d == *a))
            .cloned()
            .collect();
        for addr in to_dial {
            self.dial(addr);
        }
    }

    fn on_tick(&mut self) {
        self.dial_configured();
        let now = now_unix_secs();
        if self.book.prune_bans(now) > 0 {
            self.bans_dirty = true;
            self.publish_status();
        }
        self.save_bans();
        let idle: Vec<PeerId> = self
            .sync
            .iter()
            .filter(|(_, s)| {
                !s.headers_in_flight
                    && !s.blocks_in_flight
                    && s.wanted.is_empty()
                    && now >= s.last_poll_secs + SYNC_POLL_SECS
            })
            .map(|(p, _)| *p)
            .collect();
        for peer in idle {
            self.request_headers(peer, None);
        }
    }

    fn on_command(&mut self, command: NetCommand) {
        match command {
            NetCommand::AnnounceBlock(block) => {
                let hash = block.block_hash();
                self.publish(self.block_topic.clone(), block.encode(), "block");
                self.connect_orphans(hash);
            }
            NetCommand::AnnounceTx(tx) => {
                let bytes = bitcoin::consensus::encode::serialize(&*tx);
                self.publish(self.tx_topic.clone(), bytes, "transaction");
            }
            NetCommand::SetActive(activity) => {
                self.active = activity;
                info!(?activity, "network activity changed");
                match activity {
                    NetworkActivity::Inactive => {
                        for peer in self.book.connected_peers() {
                            let _ = self.swarm.disconnect_peer_id(peer);
                        }
                    }
                    NetworkActivity::Active => self.dial_configured(),
                }
                self.publish_status();
            }
            NetCommand::Dial(addr) => self.dial(addr),
            NetCommand::Disconnect(peer) => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
    }

    fn publish(&mut self, topic: IdentTopic, data: Vec<u8>, what: &str) {
        match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
            Ok(_) => debug!(what, "published"),
            // No subscribed peer yet: they will fetch it by sync.
            Err(error) => debug!(what, %error, "not published"),
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let local = *self.swarm.local_peer_id();
                let full = address.with_p2p(local).unwrap_or_else(|a| a);
                info!(address = %full, "listening");
                self.node
                    .update_network(|status| status.listen_addrs.push(full.to_string()));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let dialed = self.dialing.remove(&connection_id);
                let now = now_unix_secs();
                if self.book.is_banned(&peer_id, now) || self.active == NetworkActivity::Inactive {
                    info!(peer = %peer_id, "refusing connection (banned or network inactive)");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                if let Some(addr) = dialed {
                    self.outbound.insert(addr, peer_id);
                }
                if num_established.get() == 1 {
                    let addr = endpoint.get_remote_address().clone();
                    info!(peer = %peer_id, %addr, inbound = endpoint.is_listener(), "peer connected");
                    self.book
                        .connected(peer_id, addr, endpoint.is_listener(), now);
                    self.sync.insert(peer_id, PeerSync::default());
                    self.request_headers(peer_id, None);
                    self.publish_status();
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                info!(peer = %peer_id, "peer disconnected");
                self.book.disconnected(&peer_id);
                self.sync.remove(&peer_id);
                self.requests.retain(|_, (p, _)| *p != peer_id);
                self.outbound.retain(|_, p| *p != peer_id);
                self.publish_status();
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some(addr) = self.dialing.remove(&connection_id) {
                    info!(%addr, %error, "could not connect");
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error: ListenError::Denied { cause },
                ..
            } => {
                // Over a cap: the socket is closed, nothing kept.
                let reason = match cause.downcast_ref::<connection_limits::Exceeded>() {
                    Some(exceeded) => exceeded.to_string(),
                    None => cause.to_string(),
                };
                debug!(addr = %send_back_addr, %reason, "inbound connection refused");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                let acceptance = if message.topic == self.block_topic.hash() {
                    self.on_gossip_block(propagation_source, &message.data)
                } else if message.topic == self.tx_topic.hash() {
                    self.on_gossip_tx(propagation_source, &message.data)
                } else {
                    MessageAcceptance::Ignore
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            BehaviourEvent::Sync(event) => self.on_sync_event(event),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.book.set_agent(&peer_id, info.agent_version);
                self.publish_status();
            }
            _ => {}
        }
    }

    /// Scores an offence and, on a ban, disconnects the peer and drops its gossip.
    fn penalise(&mut self, peer: PeerId, offence: Offence, detail: String) {
        if self
            .book
            .misbehaved(peer, offence, &detail, now_unix_secs())
            == Verdict::Banned
        {
            self.bans_dirty = true;
            self.swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        self.publish_status();
    }

    fn on_gossip_block(&mut self, peer: PeerId, data: &[u8]) -> MessageAcceptance {
        match Block::decode(data) {
            Ok(block) => self.accept_block(peer, block),
            Err(error) => {
                self.penalise(
                    peer,
                    Offence::MalformedMessage,
                    format!("block gossip of {} bytes: {error}", data.len()),
                );
                MessageAcceptance::Reject
            }
        }
    }

    fn on_gossip_tx(&mut self, peer: PeerId, data: &[u8]) -> MessageAcceptance {
        let tx: Transaction = match bitcoin::consensus::encode::deserialize(data) {
            Ok(tx) => tx,
            Err(error) => {
                self.penalise(
                    peer,
                    Offence::MalformedMessage,
                    format!("transaction gossip of {} bytes: {error}", data.len()),
                );
                return MessageAcceptance::Reject;
            }
        };
        let txid = tx.compute_txid();
        match self.node.submit_transaction(tx) {
            Ok(_) => {
                debug!(%txid, %peer, "accepted transaction from gossip");
                MessageAcceptance::Accept
            }
            // Missing inputs, a conflict or a full pool may be our view, not the peer's fault.
            Err(SubmitTxError::Mempool(error)) => {
                debug!(%txid, %peer, %error, "gossip transaction not accepted");
                MessageAcceptance::Ignore
            }
            Err(error) => {
                debug!(%txid, %peer, %error, "gossip transaction not accepted");
                MessageAcceptance::Ignore
            }
        }
    }

    /// Validates a block from `peer` (gossip or sync); penalises the peer if it is invalid.
    fn accept_block(&mut self, peer: PeerId, block: Block) -> MessageAcceptance {
        let hash = block.block_hash();
        let height = block.height();
        match self.node.process_block(block.clone()) {
            Ok(BlockOutcome::NewTip { .. }) => {
                self.connect_orphans(hash);
                MessageAcceptance::Accept
            }
            Ok(BlockOutcome::SideBranch) => {
                self.connect_orphans(hash);
                MessageAcceptance::Accept
            }
            Ok(BlockOutcome::AlreadyKnown) => MessageAcceptance::Ignore,
            Err(ChainError::Orphan { parent, .. }) => {
                debug!(%hash, %parent, %peer, "orphan block; syncing from its sender");
                self.orphans.insert(block, peer);
                self.request_headers(peer, None);
                MessageAcceptance::Ignore
            }
            Err(ChainError::Invalid {
                error: consensus::BlockError::TimeTooNew { .. },
                ..
            }) => MessageAcceptance::Ignore,
            Err(
                error @ (ChainError::Invalid { .. }
                | ChainError::KnownInvalid { .. }
                | ChainError::InvalidAncestor { .. }),
            ) => {
                self.penalise(
                    peer,
                    Offence::InvalidBlock,
                    format!("block {hash} (height {height}): {error}"),
                );
                MessageAcceptance::Reject
            }
            Err(error) => {
                warn!(%hash, %error, "could not process block");
                MessageAcceptance::Ignore
            }
        }
    }

    /// Processes orphans that were waiting for `parent`, and theirs in turn.
    fn connect_orphans(&mut self, parent: BlockHash) {
        let mut ready = vec![parent];
        while let Some(parent) = ready.pop() {
            for (block, from) in self.orphans.children_of(&parent) {
                let hash = block.block_hash();
                if self.accept_block(from, block) == MessageAcceptance::Accept {
                    ready.push(hash);
                }
            }
        }
    }

    fn locator(&self, first: Option<BlockHash>) -> Result<Vec<BlockHash>, ChainError> {
        self.node.with_chain(|chain| {
            let (_, tip_height) = chain.tip()?;
            let view = chain.store().read()?;
            let mut locator: Vec<BlockHash> = first.into_iter().collect();
            let mut height = tip_height;
            let mut step = 1;
            while locator.len() < wire::LOCATOR_HASHES_MAX - 1 {
                if let Some(hash) = view.best_hash_at(height)? {
                    locator.push(hash);
                }
                if height == 0 {
                    return Ok(locator);
                }
                if locator.len() >= LOCATOR_DENSE_ENTRIES {
                    step *= 2;
                }
                height = height.saturating_sub(step);
            }
            if let Some(genesis) = view.best_hash_at(0)? {
                locator.push(genesis);
            }
            Ok(locator)
        })
    }

    fn request_headers(&mut self, peer: PeerId, after: Option<BlockHash>) {
        let Some(state) = self.sync.get_mut(&peer) else {
            return;
        };
        if state.headers_in_flight {
            return;
        }
        state.headers_in_flight = true;
        state.last_poll_secs = now_unix_secs();
        let locator = match self.locator(after) {
            Ok(locator) => locator,
            Err(error) => {
                warn!(%error, "could not build a block locator");
                if let Some(state) = self.sync.get_mut(&peer) {
                    state.headers_in_flight = false;
                }
                return;
            }
        };
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, Ok(SyncRequest::GetHeaders { locator }));
        self.requests.insert(id, (peer, Pending::Headers));
    }

    fn request_blocks(&mut self, peer: PeerId) {
        let Some(state) = self.sync.get_mut(&peer) else {
            return;
        };
        if state.blocks_in_flight || state.headers_in_flight {
            return;
        }
        let mut batch = Vec::with_capacity(wire::BLOCKS_BATCH_MAX);
        while batch.len() < wire::BLOCKS_BATCH_MAX {
            let Some(hash) = state.wanted.pop_front() else {
                break;
            };
            batch.push(hash);
        }
        let node = self.node.clone();
        batch.retain(|hash| !node.knows_block(hash).unwrap_or(false));
        let Some(state) = self.sync.get_mut(&peer) else {
            return;
        };
        if batch.is_empty() {
            if !state.wanted.is_empty() {
                return self.request_blocks(peer);
            }
            if let Some(last) = state.continue_after.take() {
                self.request_headers(peer, Some(last));
            }
            return;
        }
        state.blocks_in_flight = true;
        let id = self.swarm.behaviour_mut().sync.send_request(
            &peer,
            Ok(SyncRequest::GetBlocks {
                hashes: batch.clone(),
            }),
        );
        self.requests.insert(id, (peer, Pending::Blocks(batch)));
    }

    fn on_sync_event(&mut self, event: request_response::Event<InboundRequest, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request: Err(error),
                    ..
                } => {
                    // The response channel is dropped: the peer gets no answer.
                    let offence = match error {
                        WireError::Oversize { .. } => Offence::OversizedMessage,
                        _ => Offence::MalformedMessage,
                    };
                    self.penalise(peer, offence, format!("sync request: {error}"));
                }
                request_response::Message::Request {
                    request: Ok(request),
                    channel,
                    ..
                } => {
                    let response = self.serve(request);
                    if self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, response)
                        .is_err()
                    {
                        debug!(%peer, "sync response not sent: stream closed");
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.on_response(peer, request_id, response),
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.clear_in_flight(request_id);
                if let request_response::OutboundFailure::Io(io) = &error {
                    self.penalise_wire_error(peer, io, "sync response");
                } else {
                    debug!(%peer, %error, "sync request failed");
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                if let request_response::InboundFailure::Io(io) = &error {
                    self.penalise_wire_error(peer, io, "sync request");
                } else {
                    debug!(%peer, %error, "inbound sync request failed");
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn penalise_wire_error(&mut self, peer: PeerId, io: &std::io::Error, what: &str) {
        match WireError::from_io(io) {
            Some(error @ WireError::Oversize { .. }) => {
                let detail = format!("{what}: {error}");
                self.penalise(peer, Offence::OversizedMessage, detail)
            }
            Some(error) => {
                let detail = format!("{what}: {error}");
                self.penalise(peer, Offence::MalformedMessage, detail)
            }
            None => debug!(%peer, error = %io, what, "sync stream failed"),
        }
    }

    fn clear_in_flight(&mut self, request_id: OutboundRequestId) {
        if let Some((peer, pending)) = self.requests.remove(&request_id) {
            if let Some(state) = self.sync.get_mut(&peer) {
                match pending {
                    Pending::Headers => state.headers_in_flight = false,
                    Pending::Blocks(_) => {
                        state.blocks_in_flight = false;
                        state.wanted.clear();
                    }
                }
            }
        }
    }

    fn serve(&self, request: SyncRequest) -> SyncResponse {
        let served = self
            .node
            .with_chain(|chain| -> Result<SyncResponse, ChainError> {
                let view = chain.store().read()?;
                match request {
                    SyncRequest::GetHeaders { locator } => {
                        let (_, tip_height) = chain.tip()?;
                        let mut start = 1;
                        for hash in &locator {
                            if let Some(entry) = view.index_entry(hash)? {
                                if view.best_hash_at(entry.height)? == Some(*hash) {
                                    start = entry.height + 1;
                                    break;
                                }
                            }
                        }
                        let end = tip_height
                            .min(start.saturating_add(wire::HEADERS_BATCH_MAX as u32 - 1));
                        let mut headers: Vec<BlockHeader> = Vec::new();
                        for height in start..=end {
                            let Some(hash) = view.best_hash_at(height)? else {
                                break;
                            };
                            let Some(header) = view.header(&hash)? else {
                                break;
                            };
                            headers.push(header);
                        }
                        Ok(SyncResponse::Headers(headers))
                    }
                    SyncRequest::GetBlocks { hashes } => {
                        let mut blocks = Vec::new();
                        let mut bytes = 0;
                        for hash in hashes {
                            if bytes >= wire::BLOCKS_RESPONSE_SOFT_BYTES {
                                break;
                            }
                            if let Some(block) = view.block(&hash)? {
                                bytes += block.encoded_len();
                                blocks.push(block);
                            }
                        }
                        Ok(SyncResponse::Blocks(blocks))
                    }
                }
            });
        served.unwrap_or_else(|error| {
            warn!(%error, "could not serve a sync request");
            SyncResponse::Headers(Vec::new())
        })
    }

    fn on_response(&mut self, peer: PeerId, request_id: OutboundRequestId, response: SyncResponse) {
        let Some((_, pending)) = self.requests.remove(&request_id) else {
            return;
        };
        match (pending, response) {
            (Pending::Headers, SyncResponse::Headers(headers)) => self.on_headers(peer, headers),
            (Pending::Blocks(asked), SyncResponse::Blocks(blocks)) => {
                self.on_blocks(peer, asked, blocks)
            }
            (_, _) => {
                if let Some(state) = self.sync.get_mut(&peer) {
                    *state = PeerSync::default();
                }
                self.penalise(
                    peer,
                    Offence::MalformedMessage,
                    "sync response of the wrong kind".into(),
                );
            }
        }
    }

    fn on_headers(&mut self, peer: PeerId, headers: Vec<BlockHeader>) {
        let Some(state) = self.sync.get_mut(&peer) else {
            return;
        };
        state.headers_in_flight = false;
        let Some(first) = headers.first() else {
            state.continue_after = None;
            return;
        };
        let links = headers
            .windows(2)
            .all(|pair| pair[1].prev_block_hash == pair[0].block_hash());
        let parent_known = match self.node.knows_block(&first.prev_block_hash) {
            Ok(known) => known,
            Err(error) => {
                // Our store failed, not the peer: drop the batch without penalty, poll again.
                warn!(%peer, %error, "cannot check a headers batch against the store");
                if let Some(sync) = self.sync.get_mut(&peer) {
                    sync.headers_in_flight = false;
                }
                return;
            }
        };
        if !links || !parent_known {
            let detail = if links {
                format!(
                    "first header builds on unknown block {}",
                    first.prev_block_hash
                )
            } else {
                "headers do not link to each other".to_string()
            };
            self.penalise(peer, Offence::DisconnectedHeaders, detail);
            return;
        }
        let full = headers.len() == wire::HEADERS_BATCH_MAX;
        let hashes: Vec<BlockHash> = headers.iter().map(BlockHeader::block_hash).collect();
        let node = self.node.clone();
        let new: Vec<BlockHash> = hashes
            .iter()
            .filter(|h| !node.knows_block(h).unwrap_or(false))
            .copied()
            .collect();
        let Some(state) = self.sync.get_mut(&peer) else {
            return;
        };
        debug!(%peer, headers = hashes.len(), new = new.len(), "headers received");
        let dropped = state.want(new, if full { hashes.last().copied() } else { None });
        if dropped > 0 {
            debug!(
                %peer,
                dropped,
                queued = state.wanted.len(),
                limit = WANTED_BLOCKS_MAX,
                "wanted-block queue full; dropped announced blocks"
            );
        }
        self.request_blocks(peer);
    }

    fn on_blocks(&mut self, peer: PeerId, asked: Vec<BlockHash>, blocks: Vec<Block>) {
        if let Some(state) = self.sync.get_mut(&peer) {
            state.blocks_in_flight = false;
        }
        self.node
            .metrics()
            .add_sync_blocks_received(blocks.len() as u64);
        let asked_set: HashSet<BlockHash> = asked.iter().copied().collect();
        let complete = blocks.len() == asked.len();
        for block in blocks {
            let hash = block.block_hash();
            if !asked_set.contains(&hash) {
                self.penalise(peer, Offence::UnrequestedBlock, format!("block {hash}"));
                continue;
            }
            if self.accept_block(peer, block) == MessageAcceptance::Reject {
                if let Some(state) = self.sync.get_mut(&peer) {
                    state.wanted.clear();
                    state.continue_after = None;
                }
                return;
            }
        }
        if !complete {
            // The peer no longer has some (it reorganised): start over from headers later.
            if let Some(state) = self.sync.get_mut(&peer) {
                state.wanted.clear();
                state.continue_after = None;
            }
            return;
        }
        self.request_blocks(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    fn hashes(range: std::ops::Range<u32>) -> Vec<BlockHash> {
        range
            .map(|i| {
                let mut bytes = [0u8; 32];
                bytes[..4].copy_from_slice(&i.to_le_bytes());
                BlockHash::from_byte_array(bytes)
            })
            .collect()
    }

    #[test]
    fn wanted_queue_is_capped_and_sync_resumes_after_the_last_kept_hash() {
        let batch = wire::HEADERS_BATCH_MAX as u32;
        let mut sync = PeerSync::default();
        // A full batch fits and continues after its last hash.
        let first = hashes(0..batch);
        assert_eq!(sync.want(first.clone(), first.last().copied()), 0);
        assert_eq!(sync.continue_after, first.last().copied());
        // Repeats are not queued twice.
        assert_eq!(sync.want(first.clone(), None), 0);
        assert_eq!(sync.wanted.len(), wire::HEADERS_BATCH_MAX);
        // Batches keep arriving (polls, orphans): the queue stops at the cap, the rest is
        // dropped, and sync continues after the last hash kept.
        let second = hashes(batch..3 * batch);
        let dropped = sync.want(second.clone(), second.last().copied());
        assert_eq!(sync.wanted.len(), WANTED_BLOCKS_MAX);
        assert_eq!(dropped, 3 * wire::HEADERS_BATCH_MAX - WANTED_BLOCKS_MAX);
        assert_eq!(
            sync.continue_after,
            Some(second[WANTED_BLOCKS_MAX - wire::HEADERS_BATCH_MAX - 1])
        );
        // Nothing fits: nothing kept, and the next poll starts from our tip.
        assert_eq!(sync.want(hashes(5000..5010), None), 10);
        assert_eq!(sync.wanted.len(), WANTED_BLOCKS_MAX);
        assert_eq!(sync.continue_after, None);
    }
}
