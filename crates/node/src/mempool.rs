//! The memory pool: valid transactions waiting for a block.
//!
//! A transaction enters only if it passes the consensus rules against the chain's unspent coins
//! plus the outputs of transactions already pooled (so chains of unconfirmed payments work),
//! pays at least the minimum fee rate, and fits within the limits, evicting lower-paying
//! transactions if it outbids them. Each refusal is one [`MempoolError`] variant, logged.
//!
//! There is no replace-by-fee: a transaction spending an outpoint that a pooled one already
//! spends is refused as a [`MempoolError::Conflict`], first seen wins. Replacement rules (BIP125)
//! are a policy this chain can add later; refusing keeps the pool's spends unambiguous.
//!
//! Time comes in as an argument (`now_secs`); the pool reads no clock.

mod limits;
mod package;
#[cfg(test)]
mod tests;

pub use limits::{
    MempoolLimits, DEFAULT_ANCESTOR_COUNT_MAX, DEFAULT_EXPIRY_SECS, DEFAULT_MIN_FEE_RATE,
    DEFAULT_POOL_BYTES_MAX, DEFAULT_POOL_COUNT_MAX, DEFAULT_TX_BYTES_MAX,
};

use bitcoin::{Amount, FeeRate, OutPoint, Transaction, Txid};
use consensus::{check_transaction, check_tx_inputs, CoinView, SpendContext, TxError};
use package::{sat_per_kvb, PackageRate};
use primitives::{Block, Coin};
use std::collections::{HashMap, HashSet, VecDeque};
use thiserror::Error;
use tracing::{debug, info};

/// Why a transaction was refused. One variant per reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MempoolError {
    #[error("transaction {0} is already in the pool")]
    AlreadyInPool(Txid),
    #[error("a coinbase transaction is only valid as the first transaction of a block")]
    Coinbase,
    #[error("transaction is {bytes} bytes, over the pool's {max}-byte limit per transaction")]
    TooLarge { bytes: usize, max: usize },
    #[error("transaction is invalid: {0}")]
    Invalid(#[from] TxError),
    #[error("input {outpoint} is already spent by pooled transaction {with} (no replacement)")]
    Conflict { outpoint: OutPoint, with: Txid },
    #[error(
        "fee rate {} sat/kvB is below the minimum {} sat/kvB",
        sat_per_kvb(*fee_rate),
        sat_per_kvb(*min)
    )]
    FeeRateTooLow { fee_rate: FeeRate, min: FeeRate },
    #[error("transaction would have {count} unconfirmed transactions in its chain; at most {max}")]
    TooManyAncestors { count: usize, max: usize },
    #[error("pool is full and the transaction does not outbid enough lower fee-rate transactions")]
    PoolFull,
}

/// A pooled transaction with what the pool needs to know about it.
#[derive(Debug, Clone)]
pub struct MempoolEntry {
    tx: Transaction,
    fee: Amount,
    bytes: usize,
    entry_secs: u64,
    /// Pooled transactions whose outputs this one spends.
    parents: HashSet<Txid>,
    /// Pooled transactions spending this one's outputs.
    children: HashSet<Txid>,
}

impl MempoolEntry {
    pub fn tx(&self) -> &Transaction {
        &self.tx
    }

    pub fn fee(&self) -> Amount {
        self.fee
    }

    /// Serialized size, witness included.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the transaction entered the pool (seconds, the caller's clock).
    pub fn entry_secs(&self) -> u64 {
        self.entry_secs
    }

    pub fn fee_rate(&self) -> FeeRate {
        self.rate().to_fee_rate()
    }

    fn rate(&self) -> PackageRate {
        PackageRate::new(self.fee.to_sat(), self.bytes)
    }
}

/// A summary for status displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MempoolInfo {
    pub count: usize,
    pub bytes: usize,
    pub count_max: usize,
    pub bytes_max: usize,
    /// The configured floor. A full pool also asks a newcomer to outbid what it would evict.
    pub min_fee_rate: FeeRate,
}

/// What [`Mempool::remove_for_block`] took out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovedForBlock {
    /// Pooled transactions the block confirmed.
    pub included: Vec<Txid>,
    /// Pooled transactions spending an outpoint the block spent differently, with descendants.
    pub conflicted: Vec<Txid>,
}

#[derive(Debug, Clone, Default)]
pub struct Mempool {
    limits: MempoolLimits,
    entries: HashMap<Txid, MempoolEntry>,
    /// Every outpoint a pooled transaction spends, and which one spends it.
    spent_by: HashMap<OutPoint, Txid>,
    bytes: usize,
}

impl Mempool {
    pub fn new(limits: MempoolLimits) -> Mempool {
        Mempool {
            limits,
            ..Mempool::default()
        }
    }

    pub fn limits(&self) -> &MempoolLimits {
        &self.limits
    }

    /// Validates `tx` against `chain` (the unspent coins at the tip) plus the pool, and adds it.
    /// `ctx` describes the next block (tip height + 1, the tip's median time past).
    pub fn accept(
        &mut self,
        tx: Transaction,
        chain: &impl CoinView,
        ctx: &SpendContext,
        now_secs: u64,
    ) -> Result<Txid, MempoolError> {
        let txid = tx.compute_txid();
        match self.try_accept(tx, txid, chain, ctx, now_secs) {
            Ok(()) => {
                debug!(%txid, pool_count = self.entries.len(), "mempool accepted transaction");
                Ok(txid)
            }
            Err(error) => {
                debug!(%txid, reason = %error, "mempool refused transaction");
                Err(error)
            }
        }
    }

    fn try_accept(
        &mut self,
        tx: Transaction,
        txid: Txid,
        chain: &impl CoinView,
        ctx: &SpendContext,
        entry_secs: u64,
    ) -> Result<(), MempoolError> {
        if self.entries.contains_key(&txid) {
            return Err(MempoolError::AlreadyInPool(txid));
        }
        if tx.is_coinbase() {
            return Err(MempoolError::Coinbase);
        }
        let bytes = consensus::tx::fee_bytes(&tx) as usize;
        // A transaction larger than the whole pool could never be held either.
        let max = self.limits.tx_bytes_max.min(self.limits.bytes_max);
        if bytes > max {
            return Err(MempoolError::TooLarge { bytes, max });
        }
        check_transaction(&tx, max)?;
        for input in &tx.input {
            if let Some(&with) = self.spent_by.get(&input.previous_output) {
                return Err(MempoolError::Conflict {
                    outpoint: input.previous_output,
                    with,
                });
            }
        }
        let view = PoolView {
            chain,
            pool: self,
            height: ctx.height,
        };
        let (fee, _) = check_tx_inputs(&tx, &view, ctx)?;
        let rate = PackageRate::new(fee.to_sat(), bytes);
        let required = self
            .limits
            .min_fee_rate
            .fee_vb(bytes as u64)
            .unwrap_or(Amount::MAX);
        if fee < required {
            return Err(MempoolError::FeeRateTooLow {
                fee_rate: rate.to_fee_rate(),
                min: self.limits.min_fee_rate,
            });
        }
        let parents: HashSet<Txid> = tx
            .input
            .iter()
            .map(|i| i.previous_output.txid)
            .filter(|id| self.entries.contains_key(id))
            .collect();
        let ancestors = self.closure(parents.iter().copied(), |e| &e.parents);
        let count = ancestors.len() + 1;
        if count > self.limits.ancestor_count_max {
            return Err(MempoolError::TooManyAncestors {
                count,
                max: self.limits.ancestor_count_max,
            });
        }
        let evicted = self.plan_eviction(rate, &ancestors)?;
        for id in &evicted {
            self.remove_entry(id);
        }
        if !evicted.is_empty() {
            info!(%txid, evicted = evicted.len(), "mempool full: evicted lower fee-rate transactions");
            debug!(?evicted, "evicted");
        }
        for parent in &parents {
            if let Some(p) = self.entries.get_mut(parent) {
                p.children.insert(txid);
            }
        }
        for input in &tx.input {
            self.spent_by.insert(input.previous_output, txid);
        }
        self.bytes += bytes;
        self.entries.insert(
            txid,
            MempoolEntry {
                tx,
                fee,
                bytes,
                entry_secs,
                parents,
                children: HashSet::new(),
            },
        );
        Ok(())
    }

    /// The transactions to evict so a newcomer paying `rate` fits, lowest score first, each with
    /// its descendants (they cannot stay without it). A transaction's score is the higher of its
    /// own fee rate and that of it with its descendants (Core's descendant score), so a cheap
    /// parent whose child pays for it is kept. The newcomer's own ancestors are never evicted,
    /// and everything evicted must be outbid by the minimum fee rate; otherwise `PoolFull`.
    fn plan_eviction(
        &self,
        rate: PackageRate,
        ancestors: &HashSet<Txid>,
    ) -> Result<Vec<Txid>, MempoolError> {
        let fits = |count: usize, bytes: usize| {
            count < self.limits.count_max && bytes + rate.bytes as usize <= self.limits.bytes_max
        };
        let (mut count, mut bytes) = (self.entries.len(), self.bytes);
        if fits(count, bytes) {
            return Ok(Vec::new());
        }
        let mut scored: Vec<(PackageRate, Txid)> = self
            .entries
            .iter()
            .map(|(id, entry)| {
                let mut package = self
                    .closure([*id], |e| &e.children)
                    .iter()
                    .filter(|d| *d != id)
                    .fold(entry.rate(), |p, d| {
                        p.plus(self.entries[d].fee.to_sat(), self.entries[d].bytes)
                    });
                if ancestors.contains(id) {
                    package = package.plus(rate.fee_sats, rate.bytes as usize);
                }
                (entry.rate().max(package), *id)
            })
            .collect();
        scored.sort_unstable();
        let mut evicted = HashSet::new();
        let mut order = Vec::new();
        for (score, id) in scored {
            if fits(count, bytes) {
                break;
            }
            if evicted.contains(&id) {
                continue;
            }
            if ancestors.contains(&id) || !rate.outbids(score, self.limits.min_fee_rate) {
                return Err(MempoolError::PoolFull);
            }
            for d in self.closure([id], |e| &e.children) {
                if evicted.insert(d) {
                    count -= 1;
                    bytes -= self.entries[&d].bytes;
                    order.push(d);
                }
            }
        }
        if fits(count, bytes) {
            Ok(order)
        } else {
            Err(MempoolError::PoolFull)
        }
    }

    /// Takes out the transactions `block` confirmed and every pooled transaction that spends an
    /// outpoint the block spent (a conflict the block settled), with its descendants. Children
    /// of confirmed transactions stay: their inputs are now confirmed coins.
    pub fn remove_for_block(&mut self, block: &Block) -> RemovedForBlock {
        let mut removed = RemovedForBlock::default();
        for tx in &block.txdata {
            let txid = tx.compute_txid();
            if self.remove_entry(&txid).is_some() {
                removed.included.push(txid);
            }
        }
        for tx in block.txdata.iter().filter(|tx| !tx.is_coinbase()) {
            for input in &tx.input {
                if let Some(&loser) = self.spent_by.get(&input.previous_output) {
                    let gone = self.remove_with_descendants(loser);
                    debug!(block = %block.block_hash(), outpoint = %input.previous_output,
                        ?gone, "mempool dropped transactions conflicting with a block");
                    removed.conflicted.extend(gone);
                }
            }
        }
        removed
    }

    /// After a reorganisation: offers the disconnected blocks' transactions back to the pool and
    /// revalidates everything pooled against the new tip (`chain`, `ctx`), since a pooled
    /// transaction may have spent a coin the reorganisation removed. Coinbases are skipped;
    /// `disconnected` may come in any order (parents are put before children). Returns each
    /// transaction refused, with the reason; pooled transactions keep their entry time.
    pub fn readd_disconnected(
        &mut self,
        disconnected: Vec<Transaction>,
        chain: &impl CoinView,
        ctx: &SpendContext,
        now_secs: u64,
    ) -> Vec<(Txid, MempoolError)> {
        let pooled: Vec<(Transaction, u64)> = self
            .ordered_txids()
            .into_iter()
            .filter_map(|id| self.entries.get(&id))
            .map(|e| (e.tx.clone(), e.entry_secs))
            .collect();
        self.entries.clear();
        self.spent_by.clear();
        self.bytes = 0;
        let returning = topological_order(disconnected.into_iter().filter(|t| !t.is_coinbase()));
        let candidates = returning.into_iter().map(|tx| (tx, now_secs)).chain(pooled);
        let mut refused = Vec::new();
        for (tx, entry_secs) in candidates {
            let txid = tx.compute_txid();
            if let Err(error) = self.try_accept(tx, txid, chain, ctx, entry_secs) {
                debug!(%txid, reason = %error, "mempool refused transaction after reorg");
                refused.push((txid, error));
            }
        }
        info!(
            pool_count = self.entries.len(),
            refused = refused.len(),
            "mempool revalidated after reorganisation"
        );
        refused
    }

    /// Drops transactions older than `expiry_secs` at `now_secs`, with their descendants.
    pub fn expire(&mut self, now_secs: u64) -> Vec<Txid> {
        let expiry_secs = self.limits.expiry_secs;
        let old: Vec<Txid> = self
            .entries
            .iter()
            .filter(|(_, e)| e.entry_secs.saturating_add(expiry_secs) <= now_secs)
            .map(|(id, _)| *id)
            .collect();
        let mut removed = Vec::new();
        for id in old {
            if self.entries.contains_key(&id) {
                removed.extend(self.remove_with_descendants(id));
            }
        }
        if !removed.is_empty() {
            info!(count = removed.len(), "mempool expired transactions");
            debug!(?removed, "expired");
        }
        removed
    }

    /// Transactions for a block body within `bytes_max` serialized bytes (the caller keeps room
    /// for the header and coinbase), in a valid order: every parent before its children.
    ///
    /// Candidates are ranked by the lower of their own fee rate and the fee rate of them with
    /// their not-yet-confirmed ancestors, so a child that pays for its parent pulls the parent
    /// in (child pays for parent) but a cheap child of a rich parent does not ride on it. Each
    /// pick adds the candidate with any ancestors not yet chosen, if all of them fit. Ranks are
    /// computed once, not after each pick as Bitcoin Core does; this can leave a few satoshis of
    /// fees behind, never an invalid block.
    pub fn select_for_block(&self, bytes_max: usize) -> Vec<Transaction> {
        let mut ranked: Vec<(PackageRate, Txid, HashSet<Txid>)> = self
            .entries
            .iter()
            .map(|(id, entry)| {
                let ancestors = self.closure(entry.parents.iter().copied(), |e| &e.parents);
                let package = ancestors.iter().fold(entry.rate(), |p, a| {
                    p.plus(self.entries[a].fee.to_sat(), self.entries[a].bytes)
                });
                (entry.rate().min(package), *id, ancestors)
            })
            .collect();
        ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut chosen: HashSet<Txid> = HashSet::new();
        let mut body: Vec<Txid> = Vec::new();
        let mut bytes_left = bytes_max;
        for (_, id, ancestors) in ranked {
            if chosen.contains(&id) {
                continue;
            }
            let mut package: Vec<(usize, Txid)> = ancestors
                .iter()
                .filter(|a| !chosen.contains(*a))
                .map(|a| (self.ancestor_count(a), *a))
                .collect();
            package.push((ancestors.len(), id));
            let package_bytes: usize = package.iter().map(|(_, t)| self.entries[t].bytes).sum();
            if package_bytes > bytes_left {
                continue;
            }
            bytes_left -= package_bytes;
            // An ancestor has strictly fewer ancestors than its descendant.
            package.sort_unstable();
            for (_, t) in package {
                chosen.insert(t);
                body.push(t);
            }
        }
        body.into_iter()
            .map(|id| self.entries[&id].tx.clone())
            .collect()
    }

    pub fn get(&self, txid: &Txid) -> Option<&Transaction> {
        self.entries.get(txid).map(|e| &e.tx)
    }

    pub fn entry(&self, txid: &Txid) -> Option<&MempoolEntry> {
        self.entries.get(txid)
    }

    pub fn contains(&self, txid: &Txid) -> bool {
        self.entries.contains_key(txid)
    }

    /// The pooled transaction spending `outpoint`, if any.
    pub fn spender_of(&self, outpoint: &OutPoint) -> Option<Txid> {
        self.spent_by.get(outpoint).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Serialized bytes of all pooled transactions.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn info(&self) -> MempoolInfo {
        MempoolInfo {
            count: self.entries.len(),
            bytes: self.bytes,
            count_max: self.limits.count_max,
            bytes_max: self.limits.bytes_max,
            min_fee_rate: self.limits.min_fee_rate,
        }
    }

    /// Every pooled txid, in no particular order.
    pub fn txids(&self) -> Vec<Txid> {
        self.entries.keys().copied().collect()
    }

    /// Every pooled transaction with its entry time, parents before children, so that
    /// accepting them in this order into an empty pool over the same chain succeeds.
    pub fn entries_in_order(&self) -> Vec<(Transaction, u64)> {
        self.ordered_txids()
            .into_iter()
            .filter_map(|id| self.entries.get(&id))
            .map(|e| (e.tx.clone(), e.entry_secs))
            .collect()
    }

    /// Removes one entry and unlinks it; its children (if any) remain and lose it as a parent.
    fn remove_entry(&mut self, txid: &Txid) -> Option<MempoolEntry> {
        let entry = self.entries.remove(txid)?;
        for input in &entry.tx.input {
            self.spent_by.remove(&input.previous_output);
        }
        for parent in &entry.parents {
            if let Some(p) = self.entries.get_mut(parent) {
                p.children.remove(txid);
            }
        }
        for child in &entry.children {
            if let Some(c) = self.entries.get_mut(child) {
                c.parents.remove(txid);
            }
        }
        self.bytes -= entry.bytes;
        Some(entry)
    }

    fn remove_with_descendants(&mut self, txid: Txid) -> Vec<Txid> {
        let gone: Vec<Txid> = self.closure([txid], |e| &e.children).into_iter().collect();
        for id in &gone {
            self.remove_entry(id);
        }
        gone
    }

    /// The pooled transactions reachable from `start` (included) along `links`.
    fn closure(
        &self,
        start: impl IntoIterator<Item = Txid>,
        links: impl Fn(&MempoolEntry) -> &HashSet<Txid>,
    ) -> HashSet<Txid> {
        let mut seen = HashSet::new();
        let mut queue: VecDeque<Txid> = start.into_iter().collect();
        while let Some(id) = queue.pop_front() {
            if let Some(entry) = self.entries.get(&id) {
                if seen.insert(id) {
                    queue.extend(links(entry).iter().copied());
                }
            }
        }
        seen
    }

    fn ancestor_count(&self, txid: &Txid) -> usize {
        self.entries.get(txid).map_or(0, |e| {
            self.closure(e.parents.iter().copied(), |e| &e.parents)
                .len()
        })
    }

    /// All pooled txids, parents before children.
    fn ordered_txids(&self) -> Vec<Txid> {
        let mut ids: Vec<(usize, Txid)> = self
            .entries
            .keys()
            .map(|id| (self.ancestor_count(id), *id))
            .collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }
}

/// The chain's coins, plus outputs of pooled transactions, minus outpoints the pool spends.
struct PoolView<'a, V> {
    chain: &'a V,
    pool: &'a Mempool,
    /// Height recorded on pooled outputs: the next block's, where they would confirm.
    height: u32,
}

impl<V: CoinView> CoinView for PoolView<'_, V> {
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        if self.pool.spent_by.contains_key(outpoint) {
            return None;
        }
        match self.pool.entries.get(&outpoint.txid) {
            Some(entry) => entry
                .tx
                .output
                .get(usize::try_from(outpoint.vout).ok()?)
                .map(|output| Coin {
                    output: output.clone(),
                    height: self.height,
                    is_coinbase: false,
                }),
            None => self.chain.coin(outpoint),
        }
    }
}

/// `txs` reordered so that each comes after any of the others whose outputs it spends; otherwise
/// the given order is kept.
fn topological_order(txs: impl Iterator<Item = Transaction>) -> Vec<Transaction> {
    let txs: Vec<(Txid, Transaction)> = txs.map(|t| (t.compute_txid(), t)).collect();
    let present: HashSet<Txid> = txs.iter().map(|(id, _)| *id).collect();
    let mut placed: HashSet<Txid> = HashSet::new();
    let mut pending = txs;
    let mut ordered = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let before = pending.len();
        let mut waiting = Vec::new();
        for (id, tx) in pending {
            let ready = tx.input.iter().all(|i| {
                let parent = i.previous_output.txid;
                !present.contains(&parent) || placed.contains(&parent)
            });
            if ready {
                placed.insert(id);
                ordered.push(tx);
            } else {
                waiting.push((id, tx));
            }
        }
        if waiting.len() == before {
            // A cycle cannot occur among valid transactions (txids commit to inputs); keep the
            // rest in order and let validation refuse them.
            ordered.extend(waiting.into_iter().map(|(_, t)| t));
            break;
        }
        pending = waiting;
    }
    ordered
}
