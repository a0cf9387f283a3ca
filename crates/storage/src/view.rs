//! Reads from one consistent snapshot of the store.

use crate::error::StoreError;
use crate::evidence::{EquivocationEvidence, Slot};
use crate::index::{BlockStatus, IndexEntry};
use crate::tables::*;
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, OutPoint, Script};
use primitives::{Block, BlockHeader, BlockUndo, Coin, Hash256};
use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition};

/// A read snapshot: every read through one view sees the store as it was when the view was
/// taken, whatever commits happen meanwhile. Take one per validation, not one per process: an
/// open snapshot keeps the pages it sees from being reused.
pub struct ReadView {
    txn: ReadTransaction,
}

/// Best chain as [`ReadView::check_consistency`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainSummary {
    pub tip: Option<(BlockHash, u32)>,
    pub coins: u64,
}

impl ReadView {
    pub(crate) fn new(txn: ReadTransaction) -> Self {
        ReadView { txn }
    }

    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> Result<ReadOnlyTable<K, V>, StoreError> {
        Ok(self.txn.open_table(def)?)
    }

    /// Hash and height of the best chain's last block; `None` before genesis is connected.
    pub fn tip(&self) -> Result<Option<(BlockHash, u32)>, StoreError> {
        read_tip(&self.table(META)?)
    }

    pub fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StoreError> {
        match self.table(BLOCKS)?.get(hash_key(hash))? {
            Some(bytes) => decode_block(hash, bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Header of any block in the index, with or without a body.
    pub fn header(&self, hash: &BlockHash) -> Result<Option<BlockHeader>, StoreError> {
        match self.table(HEADERS)?.get(hash_key(hash))? {
            Some(bytes) => decode_header(hash, bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    pub fn index_entry(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, StoreError> {
        read_index(&self.table(INDEX)?, hash)
    }

    /// Every index entry. Cost: one pass over the index (56 bytes an entry); a node loads it
    /// once at start and keeps it in memory.
    pub fn index_entries(&self) -> Result<Vec<(BlockHash, IndexEntry)>, StoreError> {
        let table = self.table(INDEX)?;
        let mut out = Vec::with_capacity(usize::try_from(table.len()?).unwrap_or(0));
        for item in table.iter()? {
            let (key, value) = item?;
            let hash = BlockHash::from_byte_array(key.value());
            out.push((hash, decode_index(&hash, value.value())?));
        }
        Ok(out)
    }

    /// Hash of the best-chain block at `height`.
    pub fn best_hash_at(&self, height: u32) -> Result<Option<BlockHash>, StoreError> {
        Ok(self
            .table(BEST_CHAIN)?
            .get(height)?
            .map(|h| BlockHash::from_byte_array(h.value())))
    }

    pub fn coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, StoreError> {
        read_coin(&self.table(COINS)?, outpoint)
    }

    /// Unspent outputs paying to `script`. Cost: a scan of the whole UTXO set (it is keyed by
    /// outpoint); fine for a wallet of a small chain, an address index is the fix when not.
    pub fn coins_by_script(&self, script: &Script) -> Result<Vec<(OutPoint, Coin)>, StoreError> {
        self.coins_where(|coin| coin.output.script_pubkey.as_script() == script)
    }

    /// The whole UTXO set, in outpoint-key order. Cost: a scan of the set.
    pub fn all_coins(&self) -> Result<Vec<(OutPoint, Coin)>, StoreError> {
        self.coins_where(|_| true)
    }

    /// Every coin `keep` accepts, in outpoint-key order. Cost: one scan of the set.
    pub fn coins_where(
        &self,
        keep: impl Fn(&Coin) -> bool,
    ) -> Result<Vec<(OutPoint, Coin)>, StoreError> {
        let mut out = Vec::new();
        for item in self.table(COINS)?.iter()? {
            let (key, value) = item?;
            let outpoint = outpoint_from_key(&key.value());
            let coin = decode_coin(&outpoint, value.value())?;
            if keep(&coin) {
                out.push((outpoint, coin));
            }
        }
        Ok(out)
    }

    /// The best-chain block whose header carries the certificate with this id.
    pub fn certificate_use(&self, cert_id: &Hash256) -> Result<Option<BlockHash>, StoreError> {
        Ok(self
            .table(CERT_USES)?
            .get(cert_id.0)?
            .map(|h| BlockHash::from_byte_array(h.value())))
    }

    /// Undo record of a best-chain block.
    pub fn undo(&self, hash: &BlockHash) -> Result<Option<BlockUndo>, StoreError> {
        match self.table(UNDO)?.get(hash_key(hash))? {
            Some(bytes) => decode_undo(hash, bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Outpoints a best-chain block added to the UTXO set.
    pub fn created_outpoints(&self, hash: &BlockHash) -> Result<Option<Vec<OutPoint>>, StoreError> {
        match self.table(CREATED)?.get(hash_key(hash))? {
            Some(bytes) => decode_created(hash, bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    pub fn equivocation(&self, slot: Slot) -> Result<Option<EquivocationEvidence>, StoreError> {
        match self.table(EQUIVOCATIONS)?.get(slot.key())? {
            Some(bytes) => decode_evidence(slot.key(), bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    /// All recorded equivocations, ordered by (cycle, height, attempt).
    pub fn equivocations(&self) -> Result<Vec<EquivocationEvidence>, StoreError> {
        let mut out = Vec::new();
        for item in self.table(EQUIVOCATIONS)?.iter()? {
            let (key, value) = item?;
            out.push(decode_evidence(key.value(), value.value())?);
        }
        Ok(out)
    }

    /// The seen order the next new header will get.
    pub fn next_seen_order(&self) -> Result<u64, StoreError> {
        read_next_seen_order(&self.table(META)?)
    }

    /// Checks that the best chain is whole: the tip is the best chain's last entry; heights run
    /// 0..=tip without a gap; every best-chain block links to the one below, is `Connected` in
    /// the index, and has its header, body, undo record, created list and certificate-use
    /// entry; and nothing else is `Connected` or has chain-state records. Cost: one pass over
    /// the index and a decode of every best-chain block; a start-up check, not a per-block one.
    /// It does not recompute the UTXO set (that needs the consensus rules of which outputs are
    /// spendable); see the crash-safety test for that.
    pub fn check_consistency(&self) -> Result<ChainSummary, StoreError> {
        let tip = self.tip()?;
        let best = self.table(BEST_CHAIN)?;
        let chain_len = match tip {
            None => 0,
            Some((_, height)) => u64::from(height) + 1,
        };
        let bad = |what: String| StoreError::corrupt("best_chain", "*", what);
        if best.len()? != chain_len {
            return Err(bad(format!("{} entries for a tip at {tip:?}", best.len()?)));
        }
        let mut prev = BlockHash::all_zeros();
        for (expected_height, item) in (0u32..).zip(best.iter()?) {
            let (key, value) = item?;
            let (height, hash) = (key.value(), BlockHash::from_byte_array(value.value()));
            if height != expected_height {
                return Err(bad(format!(
                    "height {height} where {expected_height} was due"
                )));
            }
            let corrupt = |table, reason: &str| StoreError::corrupt(table, hash, reason);
            let entry = self
                .index_entry(&hash)?
                .ok_or_else(|| corrupt("block_index", "best-chain block has no entry"))?;
            if entry.status != BlockStatus::Connected
                || entry.height != height
                || entry.prev != prev
            {
                return Err(corrupt(
                    "block_index",
                    &format!("entry {entry:?} at best-chain height {height} on parent {prev}"),
                ));
            }
            let block = self
                .block(&hash)?
                .ok_or_else(|| corrupt("blocks", "best-chain block has no body"))?;
            if self.header(&hash)?.is_none() {
                return Err(corrupt("headers", "best-chain block has no header"));
            }
            if self.undo(&hash)?.is_none() {
                return Err(corrupt("undo", "best-chain block has no undo record"));
            }
            if self.created_outpoints(&hash)?.is_none() {
                return Err(corrupt("created", "best-chain block has no created list"));
            }
            if self.certificate_use(&block.header.certificate.id())? != Some(hash) {
                return Err(corrupt(
                    "certificate_uses",
                    "certificate not mapped to its block",
                ));
            }
            prev = hash;
        }
        if let Some((tip_hash, _)) = tip {
            if prev != tip_hash {
                return Err(bad(format!("last entry {prev} is not the tip {tip_hash}")));
            }
        }
        let connected = self
            .index_entries()?
            .iter()
            .filter(|(_, e)| e.status == BlockStatus::Connected)
            .count() as u64;
        for (table, len) in [
            ("block_index (connected)", connected),
            ("undo", self.table(UNDO)?.len()?),
            ("created", self.table(CREATED)?.len()?),
            ("certificate_uses", self.table(CERT_USES)?.len()?),
        ] {
            if len != chain_len {
                return Err(StoreError::corrupt(
                    table,
                    "*",
                    format!("{len} records for a best chain of {chain_len} blocks"),
                ));
            }
        }
        Ok(ChainSummary {
            tip,
            coins: self.table(COINS)?.len()?,
        })
    }
}

// Readers shared by read views and write transactions (whose tables are `Table`, not
// `ReadOnlyTable`).

pub(crate) fn read_tip(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<(BlockHash, u32)>, StoreError> {
    match meta.get(META_TIP)? {
        Some(bytes) => decode_tip(bytes.value()).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn read_next_seen_order(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<u64, StoreError> {
    match meta.get(META_NEXT_SEEN_ORDER)? {
        Some(bytes) => decode_u64(META_NEXT_SEEN_ORDER, bytes.value()),
        None => Ok(0),
    }
}

pub(crate) fn read_index(
    index: &impl ReadableTable<HashKey, &'static [u8]>,
    hash: &BlockHash,
) -> Result<Option<IndexEntry>, StoreError> {
    match index.get(hash_key(hash))? {
        Some(bytes) => decode_index(hash, bytes.value()).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn read_coin(
    coins: &impl ReadableTable<OutPointKey, &'static [u8]>,
    outpoint: &OutPoint,
) -> Result<Option<Coin>, StoreError> {
    match coins.get(outpoint_key(outpoint))? {
        Some(bytes) => decode_coin(outpoint, bytes.value()).map(Some),
        None => Ok(None),
    }
}
