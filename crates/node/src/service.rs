//! The running node: chain state and mempool behind one lock, shared by the p2p layer and the
//! RPC server through a cloneable [`NodeHandle`].
//!
//! Chain work is synchronous and short (one block's validation, one redb transaction), so a
//! `std::sync::Mutex` is enough; nothing awaits while holding it. The p2p task owns the swarm
//! and receives what to announce through a channel ([`NetCommand`]); it publishes a snapshot of
//! its peers ([`NetworkStatus`]) back here for `getpeerinfo`.

use crate::chain::{BlockOutcome, ChainError, ChainState};
use crate::mempool::{Mempool, MempoolError, MempoolInfo};
use crate::metrics::NodeMetrics;
use bitcoin::{Amount, BlockHash, OutPoint, ScriptBuf, Transaction, Txid};
use consensus::{block_subsidy, CoinView, SpendContext};
use primitives::block::{coinbase_script_sig, PRODUCER_SIGNATURE_BYTES};
use primitives::header::HEADER_BYTES;
use primitives::{Block, ChainParams, Coin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use storage::{ReadView, StoreError};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

/// Bytes kept free in a template for the transaction count's CompactSize (at most 9 bytes).
const TX_COUNT_BYTES_MAX: usize = 9;

/// Extra bytes a template's coinbase carries after the BIP34 height, naming the software.
pub const COINBASE_TAG: &[u8] = b"/trainchain/";

/// What the p2p task is asked to do by the rest of the node.
#[derive(Debug)]
pub enum NetCommand {
    /// Announce a block accepted from RPC (gossip relays what arrives by gossip itself).
    AnnounceBlock(Box<Block>),
    /// Announce a transaction accepted into the mempool from RPC.
    AnnounceTx(Box<Transaction>),
    /// `setnetworkactive`: close every connection and refuse new ones, or dial again.
    SetActive(NetworkActivity),
    /// `addnode <addr> onetry`.
    Dial(libp2p::Multiaddr),
    /// `disconnectnode <peer id>`.
    Disconnect(libp2p::PeerId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkActivity {
    Active,
    Inactive,
}

/// One connected peer, as `getpeerinfo` shows it.
#[derive(Debug, Clone)]
pub struct PeerSnapshot {
    pub peer_id: String,
    pub addr: String,
    pub inbound: bool,
    pub connected_unix_secs: u64,
    pub agent: String,
    pub misbehavior: u32,
}

/// A banned peer, as `listbanned` shows it.
#[derive(Debug, Clone)]
pub struct BanSnapshot {
    pub peer_id: String,
    pub banned_until_unix_secs: u64,
    pub reason: String,
}

/// What the p2p task reports about itself.
#[derive(Debug, Clone)]
pub struct NetworkStatus {
    pub local_peer_id: String,
    pub listen_addrs: Vec<String>,
    pub active: NetworkActivity,
    pub peers: Vec<PeerSnapshot>,
    pub banned: Vec<BanSnapshot>,
}

impl Default for NetworkStatus {
    fn default() -> Self {
        NetworkStatus {
            local_peer_id: String::new(),
            listen_addrs: Vec::new(),
            active: NetworkActivity::Active,
            peers: Vec::new(),
            banned: Vec::new(),
        }
    }
}

/// A block template for the certificate holder (see `gettemplate`).
#[derive(Debug, Clone)]
pub struct Template {
    pub height: u32,
    pub prev_hash: BlockHash,
    pub median_time_past: u32,
    pub min_time: u32,
    pub cur_time: u32,
    pub subsidy: Amount,
    pub fees: Amount,
    pub coinbase: Transaction,
    /// Pooled transactions chosen by fee rate, parents first, with their fees.
    pub transactions: Vec<(Transaction, Amount)>,
    pub block_bytes_max: u32,
}

/// Why a transaction from outside was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SubmitTxError {
    #[error(transparent)]
    Mempool(#[from] MempoolError),
    #[error("transaction {0} is already in the chain")]
    AlreadyConfirmed(Txid),
    #[error(transparent)]
    Chain(#[from] ChainError),
}

struct NodeState {
    chain: ChainState,
    mempool: Mempool,
}

struct Shared {
    params: ChainParams,
    state: Mutex<NodeState>,
    net_commands: mpsc::UnboundedSender<NetCommand>,
    network: Mutex<NetworkStatus>,
    started: Instant,
    shutdown: watch::Sender<bool>,
    metrics: NodeMetrics,
}

/// Cloneable access to the running node.
#[derive(Clone)]
pub struct NodeHandle {
    shared: Arc<Shared>,
}

/// The chain's unspent coins as the mempool's [`CoinView`]; store errors read as "no coin" and
/// are logged (the transaction is then refused, never wrongly accepted).
struct StoreCoins<'a>(&'a ReadView);

impl CoinView for StoreCoins<'_> {
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        self.0.coin(outpoint).unwrap_or_else(|error| {
            warn!(%outpoint, %error, "reading a coin failed");
            None
        })
    }
}

/// Seconds since the Unix epoch by the local clock (0 if the clock is before 1970).
pub fn now_unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl NodeHandle {
    /// Wraps an opened chain and a mempool. The receiver is for the p2p task.
    pub fn new(
        chain: ChainState,
        mempool: Mempool,
    ) -> (NodeHandle, mpsc::UnboundedReceiver<NetCommand>) {
        let (net_commands, receiver) = mpsc::unbounded_channel();
        let (shutdown, _) = watch::channel(false);
        let handle = NodeHandle {
            shared: Arc::new(Shared {
                params: chain.params().clone(),
                state: Mutex::new(NodeState { chain, mempool }),
                net_commands,
                network: Mutex::new(NetworkStatus::default()),
                started: Instant::now(),
                shutdown,
                metrics: NodeMetrics::default(),
            }),
        };
        (handle, receiver)
    }

    fn lock(&self) -> MutexGuard<'_, NodeState> {
        // A panic while holding the lock would be a bug; the state is still the store's.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn params(&self) -> &ChainParams {
        &self.shared.params
    }

    /// The node's Prometheus counters (see [`crate::metrics`]).
    pub fn metrics(&self) -> &NodeMetrics {
        &self.shared.metrics
    }

    pub fn uptime_secs(&self) -> u64 {
        self.shared.started.elapsed().as_secs()
    }

    /// Asks every task to stop; see [`NodeHandle::shutdown_requested`].
    pub fn request_shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// Resolves once a shutdown was requested.
    pub async fn shutdown_requested(&self) {
        let mut receiver = self.shared.shutdown.subscribe();
        // An error means the sender is gone, which also means stop.
        let _ = receiver.wait_for(|stop| *stop).await;
    }

    pub fn send_net(&self, command: NetCommand) {
        if self.shared.net_commands.send(command).is_err() {
            debug!("p2p task is gone; network command dropped");
        }
    }

    pub fn network(&self) -> NetworkStatus {
        self.shared
            .network
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn update_network(&self, update: impl FnOnce(&mut NetworkStatus)) {
        update(
            &mut self
                .shared
                .network
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
    }

    /// Runs `read` against the chain (read-only use: RPC queries).
    pub fn with_chain<T>(&self, read: impl FnOnce(&ChainState) -> T) -> T {
        read(&self.lock().chain)
    }

    /// Runs `read` against the mempool.
    pub fn with_mempool<T>(&self, read: impl FnOnce(&Mempool) -> T) -> T {
        read(&self.lock().mempool)
    }

    pub fn tip(&self) -> Result<(BlockHash, u32), ChainError> {
        self.lock().chain.tip()
    }

    /// Whether the body of `hash` is stored (connected or on a side branch) or known invalid.
    pub fn knows_block(&self, hash: &BlockHash) -> Result<bool, ChainError> {
        let entry = self.lock().chain.store().index_entry(hash)?;
        Ok(entry.is_some_and(|e| e.status != storage::BlockStatus::HeaderOnly))
    }

    /// Validates and stores a block; on a new tip, updates the mempool (confirmed and
    /// conflicting transactions out, a reorganisation's disconnected ones back in). Every
    /// outcome is counted in [`NodeHandle::metrics`], whoever sent the block.
    pub fn process_block(&self, block: Block) -> Result<BlockOutcome, ChainError> {
        let now_secs = now_unix_secs();
        let mut state = self.lock();
        let result = state.chain.process_block(block, now_secs);
        self.shared.metrics.record_block(&result);
        let outcome = result?;
        if let BlockOutcome::NewTip {
            disconnected,
            connected,
            ..
        } = &outcome
        {
            // The block is committed: a failure here costs mempool freshness, never the block's
            // relay or the caller's answer.
            if let Err(error) = state.update_mempool(disconnected, connected, now_secs) {
                warn!(%error, "mempool not updated after a new tip");
            }
        }
        Ok(outcome)
    }

    /// Validates `tx` into the mempool.
    pub fn submit_transaction(&self, tx: Transaction) -> Result<Txid, SubmitTxError> {
        self.submit_transaction_at(tx, now_unix_secs())
    }

    /// Every pooled transaction with its entry time, parents first (to save the mempool).
    pub fn mempool_entries(&self) -> Vec<(Transaction, u64)> {
        self.lock().mempool.entries_in_order()
    }

    /// Validates `tx` into the mempool as if it arrived at `entry_secs` (a saved mempool's
    /// transactions keep their first-seen time, so expiry counts from then).
    pub fn submit_transaction_at(
        &self,
        tx: Transaction,
        now_secs: u64,
    ) -> Result<Txid, SubmitTxError> {
        let mut state = self.lock();
        let NodeState { chain, mempool } = &mut *state;
        let view = chain.store().read().map_err(ChainError::from)?;
        let txid = tx.compute_txid();
        // A confirmed transaction's first output (or any) is still unspent, or it is gone
        // entirely; Core answers "already in block chain" when one of its outputs is a coin.
        if (0..tx.output.len() as u32).any(|vout| {
            view.coin(&OutPoint::new(txid, vout))
                .ok()
                .flatten()
                .is_some()
        }) {
            return Err(SubmitTxError::AlreadyConfirmed(txid));
        }
        let ctx = chain.next_spend_context()?;
        Ok(mempool.accept(tx, &StoreCoins(&view), &ctx, now_secs)?)
    }

    /// Drops transactions past the mempool's expiry.
    pub fn expire_mempool(&self) -> Vec<Txid> {
        self.lock().mempool.expire(now_unix_secs())
    }

    pub fn mempool_info(&self) -> MempoolInfo {
        self.lock().mempool.info()
    }

    /// A block template on the current tip paying `payout`.
    pub fn template(&self, payout: ScriptBuf) -> Result<Template, ChainError> {
        let state = self.lock();
        let (tip, tip_height) = state.chain.tip()?;
        let height = tip_height + 1;
        let median_time_past = state.chain.median_time_past(&tip)?;
        let params = state.chain.params();
        let subsidy = block_subsidy(height, &params.subsidy);
        let mut coinbase = coinbase_transaction(height, subsidy, payout);
        // The coinbase's size does not depend on its value (fixed 8-byte amounts).
        let reserved_bytes =
            HEADER_BYTES + PRODUCER_SIGNATURE_BYTES + TX_COUNT_BYTES_MAX + coinbase.total_size();
        let body_bytes_max = (params.block_bytes_max as usize).saturating_sub(reserved_bytes);
        let chosen = state.mempool.select_for_block(body_bytes_max);
        let transactions: Vec<(Transaction, Amount)> = chosen
            .into_iter()
            .map(|tx| {
                let fee = state
                    .mempool
                    .entry(&tx.compute_txid())
                    .map_or(Amount::ZERO, |e| e.fee());
                (tx, fee)
            })
            .collect();
        let fees = transactions
            .iter()
            .fold(Amount::ZERO, |sum, (_, fee)| sum + *fee);
        coinbase.output[0].value = subsidy + fees;
        let min_time = median_time_past.saturating_add(1);
        let now = u32::try_from(now_unix_secs()).unwrap_or(u32::MAX);
        Ok(Template {
            height,
            prev_hash: tip,
            median_time_past,
            min_time,
            cur_time: now.max(min_time),
            subsidy,
            fees,
            coinbase,
            transactions,
            block_bytes_max: params.block_bytes_max,
        })
    }
}

/// The coinbase of a template: BIP34 height plus [`COINBASE_TAG`], one output to `payout`.
fn coinbase_transaction(height: u32, value: Amount, payout: ScriptBuf) -> Transaction {
    use bitcoin::{absolute::LockTime, transaction::Version, Sequence, TxIn, TxOut, Witness};
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: coinbase_script_sig(height, COINBASE_TAG),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value,
            script_pubkey: payout,
        }],
    }
}

impl NodeState {
    fn update_mempool(
        &mut self,
        disconnected: &[Block],
        connected: &[BlockHash],
        now_secs: u64,
    ) -> Result<(), ChainError> {
        for hash in connected {
            let block = self.chain.store().block(hash)?.ok_or_else(|| {
                StoreError::corrupt("blocks", hash, "connected block has no body")
            })?;
            self.mempool.remove_for_block(&block);
        }
        if disconnected.is_empty() {
            return Ok(());
        }
        let returning: Vec<Transaction> = disconnected
            .iter()
            .flat_map(|b| b.txdata.iter().cloned())
            .collect();
        let view = self.chain.store().read()?;
        let ctx: SpendContext = self.chain.next_spend_context()?;
        let refused =
            self.mempool
                .readd_disconnected(returning, &StoreCoins(&view), &ctx, now_secs);
        debug!(refused = refused.len(), "mempool after reorganisation");
        Ok(())
    }
}
