//! The store: opening, and the writes. Every write method is exactly one redb write
//! transaction, committed at its end or dropped (rolled back) on the first error, so a crash or
//! a failed check never leaves half of one on disk.

use crate::error::StoreError;
use crate::evidence::EquivocationEvidence;
use crate::index::{BlockStatus, IndexEntry};
use crate::tables::*;
use crate::view::{read_index, read_next_seen_order, read_tip, ReadView};
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, OutPoint};
use primitives::{Block, BlockHeader, BlockUndo, Coin};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, WriteTransaction,
};
use std::path::Path;
use tracing::{debug, warn};

/// Chain state on disk: block store, block index, best chain, UTXO set with undo data,
/// certificate uses and equivocation evidence. It keeps its own records consistent; what is a
/// *valid* block is the caller's decision (`consensus`, driven by `node`).
pub struct Store {
    db: Database,
}

/// Whether [`Store::put_equivocation`] recorded new evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceOutcome {
    Recorded,
    /// Evidence for this (height, attempt) was already kept; the first one stays.
    AlreadyKnown,
}

impl Store {
    /// Opens the store at `path`, creating it (and its tables) if the file does not exist.
    /// After a crash redb repairs the file to its last committed transaction here.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            // Opening a table in a write transaction creates it.
            let mut meta = txn.open_table(META)?;
            let found = meta
                .get(META_SCHEMA_VERSION)?
                .map(|v| decode_u32(META_SCHEMA_VERSION, v.value()))
                .transpose()?;
            match found {
                Some(SCHEMA_VERSION) => {}
                Some(found) => {
                    return Err(StoreError::SchemaVersion {
                        found,
                        expected: SCHEMA_VERSION,
                    })
                }
                None if !meta.is_empty()? => {
                    return Err(StoreError::corrupt(
                        "meta",
                        META_SCHEMA_VERSION,
                        "missing in a store that has other metadata",
                    ))
                }
                None => {
                    meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION.to_le_bytes().as_slice())?;
                }
            }
            drop(meta);
            drop(WriteTables::open(&txn)?);
            txn.open_table(EQUIVOCATIONS)?;
        }
        txn.commit()?;
        Ok(Store { db })
    }

    /// A consistent snapshot for several reads.
    pub fn read(&self) -> Result<ReadView, StoreError> {
        Ok(ReadView::new(self.db.begin_read()?))
    }

    // One-shot reads, each in its own snapshot.

    pub fn tip(&self) -> Result<Option<(BlockHash, u32)>, StoreError> {
        self.read()?.tip()
    }
    pub fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StoreError> {
        self.read()?.block(hash)
    }
    pub fn header(&self, hash: &BlockHash) -> Result<Option<BlockHeader>, StoreError> {
        self.read()?.header(hash)
    }
    pub fn index_entry(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, StoreError> {
        self.read()?.index_entry(hash)
    }
    pub fn best_hash_at(&self, height: u32) -> Result<Option<BlockHash>, StoreError> {
        self.read()?.best_hash_at(height)
    }
    pub fn coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, StoreError> {
        self.read()?.coin(outpoint)
    }
    pub fn certificate_use(
        &self,
        cert_id: &primitives::Hash256,
    ) -> Result<Option<BlockHash>, StoreError> {
        self.read()?.certificate_use(cert_id)
    }
    pub fn undo(&self, hash: &BlockHash) -> Result<Option<BlockUndo>, StoreError> {
        self.read()?.undo(hash)
    }
    pub fn coins_by_script(
        &self,
        script: &bitcoin::Script,
    ) -> Result<Vec<(OutPoint, Coin)>, StoreError> {
        self.read()?.coins_by_script(script)
    }
    pub fn equivocations(&self) -> Result<Vec<EquivocationEvidence>, StoreError> {
        self.read()?.equivocations()
    }

    /// Records a header in the index (status `HeaderOnly`, next seen order). A header already
    /// known keeps its entry, which is returned unchanged.
    pub fn put_header(&self, header: &BlockHeader) -> Result<IndexEntry, StoreError> {
        self.write(|t| {
            let hash = header.block_hash();
            t.index_or_insert(&hash, header, BlockStatus::HeaderOnly)
        })
    }

    /// Stores a block body, and its header if new. A `HeaderOnly` entry becomes `Stored`; other
    /// statuses stay. Returns the entry as written.
    pub fn put_block(&self, block: &Block) -> Result<IndexEntry, StoreError> {
        self.write(|t| {
            let hash = block.block_hash();
            let mut entry = t.index_or_insert(&hash, &block.header, BlockStatus::Stored)?;
            if t.blocks.get(hash_key(&hash))?.is_none() {
                t.blocks
                    .insert(hash_key(&hash), block.encode().as_slice())?;
            }
            if entry.status == BlockStatus::HeaderOnly {
                entry.status = BlockStatus::Stored;
                t.put_index(&hash, &entry)?;
            }
            Ok(entry)
        })
    }

    /// Marks a block invalid, or clears the mark (`Stored` if its body is here, `HeaderOnly`
    /// if not). `Connected` is set and cleared only by [`Store::connect_block`] and
    /// [`Store::disconnect_tip`]; a request that would touch it is refused.
    pub fn set_status(&self, hash: &BlockHash, to: BlockStatus) -> Result<IndexEntry, StoreError> {
        self.write(|t| {
            let mut entry = read_index(&t.index, hash)?.ok_or(StoreError::UnknownBlock(*hash))?;
            let has_body = t.blocks.get(hash_key(hash))?.is_some();
            let allowed = match (entry.status, to) {
                (BlockStatus::Connected, _) | (_, BlockStatus::Connected) => false,
                (_, BlockStatus::Invalid(_)) => true,
                (_, BlockStatus::Stored) => has_body,
                (_, BlockStatus::HeaderOnly) => !has_body,
            };
            if !allowed {
                return Err(StoreError::StatusChange {
                    block: *hash,
                    from: entry.status,
                    to,
                });
            }
            entry.status = to;
            t.put_index(hash, &entry)?;
            Ok(entry)
        })
    }

    /// Appends `block` to the best chain in one transaction: removes the coins in
    /// `undo.spent`, adds `created`, writes the undo record, the body, header and index entry
    /// (status `Connected`), the best-chain slot, the certificate use and the new tip.
    ///
    /// Contract: `undo.spent` holds exactly the coins that existed before the block and that it
    /// spends (outputs created and spent inside the block appear in neither list), and
    /// `created` the coins it leaves in the UTXO set, all at the block's height.
    ///
    /// Refused, with nothing written, when: `hash` is not the block's hash; the block does not
    /// extend the tip (genesis: no tip, zero parent, height 0) or its height is not tip + 1; it
    /// is marked invalid or already connected; its certificate is used by a best-chain block;
    /// a spent coin is missing or differs from the undo record; a created coin exists already
    /// or has another height.
    pub fn connect_block(
        &self,
        hash: &BlockHash,
        block: &Block,
        undo: &BlockUndo,
        created: &[(OutPoint, Coin)],
    ) -> Result<(), StoreError> {
        let computed = block.block_hash();
        if computed != *hash {
            return Err(StoreError::HashMismatch {
                given: *hash,
                computed,
            });
        }
        let height = block.height();
        self.write(|t| {
            let tip = read_tip(&t.meta)?;
            let (expected_parent, expected_height) = match tip {
                None => (BlockHash::all_zeros(), 0),
                Some((tip_hash, tip_height)) => (tip_hash, tip_height.saturating_add(1)),
            };
            if block.header.prev_block_hash != expected_parent {
                return Err(StoreError::NotOnTip {
                    block: *hash,
                    parent: block.header.prev_block_hash,
                    tip: tip.map(|(h, _)| h),
                });
            }
            if height != expected_height {
                return Err(StoreError::HeightMismatch {
                    block: *hash,
                    height,
                    expected: expected_height,
                });
            }

            let mut entry = t.index_or_insert(hash, &block.header, BlockStatus::Stored)?;
            if matches!(
                entry.status,
                BlockStatus::Connected | BlockStatus::Invalid(_)
            ) {
                return Err(StoreError::StatusChange {
                    block: *hash,
                    from: entry.status,
                    to: BlockStatus::Connected,
                });
            }
            entry.status = BlockStatus::Connected;
            t.put_index(hash, &entry)?;
            if t.blocks.get(hash_key(hash))?.is_none() {
                t.blocks.insert(hash_key(hash), block.encode().as_slice())?;
            }

            // Certificates bind their height, and the best chain holds one block per height, so
            // this cannot fire while the height check above holds; it guards the index itself.
            let cert_id = block.header.certificate.id();
            if let Some(used_by) = t.cert_uses.insert(cert_id.0, hash_key(hash))? {
                return Err(StoreError::CertificateReused {
                    cert_id,
                    block: *hash,
                    used_by: BlockHash::from_byte_array(used_by.value()),
                });
            }

            for (outpoint, coin) in &undo.spent {
                let Some(bytes) = t.coins.remove(outpoint_key(outpoint))? else {
                    return Err(StoreError::MissingCoin {
                        block: *hash,
                        outpoint: *outpoint,
                    });
                };
                if decode_coin(outpoint, bytes.value())? != *coin {
                    return Err(StoreError::UndoCoinMismatch {
                        block: *hash,
                        outpoint: *outpoint,
                    });
                }
            }
            for (outpoint, coin) in created {
                if coin.height != height {
                    return Err(StoreError::CreatedCoinHeight {
                        block: *hash,
                        outpoint: *outpoint,
                        coin_height: coin.height,
                    });
                }
                if t.coins
                    .insert(outpoint_key(outpoint), coin.encode().as_slice())?
                    .is_some()
                {
                    return Err(StoreError::CoinExists {
                        block: *hash,
                        outpoint: *outpoint,
                    });
                }
            }
            t.undo.insert(hash_key(hash), undo.encode().as_slice())?;
            t.created
                .insert(hash_key(hash), encode_created(created).as_slice())?;
            if let Some(old) = t.best_chain.insert(height, hash_key(hash))? {
                return Err(StoreError::corrupt(
                    "best_chain",
                    height,
                    format!(
                        "slot above the tip holds {}",
                        BlockHash::from_byte_array(old.value())
                    ),
                ));
            }
            t.meta
                .insert(META_TIP, encode_tip(hash, height).as_slice())?;
            Ok(())
        })?;
        debug!(%hash, height, spent = undo.spent.len(), created = created.len(), "connected block");
        Ok(())
    }

    /// Removes the tip from the best chain in one transaction, from its stored undo record:
    /// removes the coins it created, restores those it spent, clears its best-chain slot, undo
    /// record and certificate use, marks it `Stored` and makes its parent the tip. Returns the
    /// block, whose transactions the caller may return to the mempool.
    pub fn disconnect_tip(&self) -> Result<Block, StoreError> {
        let block = self.write(|t| {
            let (hash, height) = read_tip(&t.meta)?.ok_or(StoreError::NoTip)?;
            if height == 0 {
                return Err(StoreError::CannotDisconnectGenesis);
            }
            let key = hash_key(&hash);
            let missing = |table| StoreError::corrupt(table, hash, "tip has no record");
            let block = decode_block(
                &hash,
                t.blocks.get(key)?.ok_or_else(|| missing("blocks"))?.value(),
            )?;
            let undo = decode_undo(
                &hash,
                t.undo.remove(key)?.ok_or_else(|| missing("undo"))?.value(),
            )?;
            let created = decode_created(
                &hash,
                t.created
                    .remove(key)?
                    .ok_or_else(|| missing("created"))?
                    .value(),
            )?;
            if block.height() != height {
                return Err(StoreError::corrupt(
                    "meta",
                    META_TIP,
                    format!("tip height {height}, block height {}", block.height()),
                ));
            }

            for outpoint in &created {
                let coin = match t.coins.remove(outpoint_key(outpoint))? {
                    Some(bytes) => decode_coin(outpoint, bytes.value())?,
                    None => {
                        return Err(StoreError::corrupt(
                            "coins",
                            outpoint,
                            format!("coin created by tip {hash} is missing"),
                        ))
                    }
                };
                if coin.height != height {
                    return Err(StoreError::corrupt(
                        "coins",
                        outpoint,
                        format!("height {} for a coin of tip {hash}", coin.height),
                    ));
                }
            }
            for (outpoint, coin) in &undo.spent {
                if t.coins
                    .insert(outpoint_key(outpoint), coin.encode().as_slice())?
                    .is_some()
                {
                    return Err(StoreError::corrupt(
                        "coins",
                        outpoint,
                        format!("coin spent by tip {hash} is present"),
                    ));
                }
            }

            match t.best_chain.remove(height)?.map(|h| h.value()) {
                Some(h) if h == key => {}
                other => {
                    return Err(StoreError::corrupt(
                        "best_chain",
                        height,
                        format!("holds {other:?}, the tip is {hash}"),
                    ))
                }
            }
            let parent = block.header.prev_block_hash;
            if t.best_chain.get(height - 1)?.map(|h| h.value()) != Some(hash_key(&parent)) {
                return Err(StoreError::corrupt(
                    "best_chain",
                    height - 1,
                    format!("does not hold the tip's parent {parent}"),
                ));
            }
            let cert_id = block.header.certificate.id();
            match t.cert_uses.remove(cert_id.0)?.map(|h| h.value()) {
                Some(h) if h == key => {}
                other => {
                    return Err(StoreError::corrupt(
                        "certificate_uses",
                        cert_id,
                        format!("maps to {other:?}, not the tip {hash}"),
                    ))
                }
            }
            let mut entry = read_index(&t.index, &hash)?.ok_or_else(|| missing("block_index"))?;
            if entry.status != BlockStatus::Connected {
                return Err(StoreError::corrupt(
                    "block_index",
                    hash,
                    format!("tip has status {:?}", entry.status),
                ));
            }
            entry.status = BlockStatus::Stored;
            t.put_index(&hash, &entry)?;
            t.meta
                .insert(META_TIP, encode_tip(&parent, height - 1).as_slice())?;
            Ok(block)
        })?;
        debug!(hash = %block.block_hash(), height = block.height(), "disconnected block");
        Ok(block)
    }

    /// Keeps evidence of an equivocation. The first evidence for a (cycle, height, attempt) stays;
    /// later ones for the same slot are reported as [`EvidenceOutcome::AlreadyKnown`].
    pub fn put_equivocation(
        &self,
        evidence: &EquivocationEvidence,
    ) -> Result<EvidenceOutcome, StoreError> {
        let slot = evidence.slot();
        let txn = self.db.begin_write()?;
        let outcome = {
            let mut table = txn.open_table(EQUIVOCATIONS)?;
            if table.get(slot.key())?.is_some() {
                EvidenceOutcome::AlreadyKnown
            } else {
                table.insert(slot.key(), evidence.encode().as_slice())?;
                EvidenceOutcome::Recorded
            }
        };
        txn.commit()?;
        if outcome == EvidenceOutcome::Recorded {
            warn!(%slot, "coordinator equivocation recorded");
        }
        Ok(outcome)
    }

    /// Runs `f` on the chain-state tables of one write transaction and commits if it succeeds.
    /// On error the transaction is dropped, which rolls it back.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut WriteTables<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_write()?;
        let out = {
            let mut tables = WriteTables::open(&txn)?;
            f(&mut tables)?
        };
        txn.commit()?;
        Ok(out)
    }
}

/// The chain-state tables of one write transaction.
pub(crate) struct WriteTables<'txn> {
    pub meta: Table<'txn, &'static str, &'static [u8]>,
    pub headers: Table<'txn, HashKey, &'static [u8]>,
    pub blocks: Table<'txn, HashKey, &'static [u8]>,
    pub index: Table<'txn, HashKey, &'static [u8]>,
    pub best_chain: Table<'txn, u32, HashKey>,
    pub coins: Table<'txn, OutPointKey, &'static [u8]>,
    pub undo: Table<'txn, HashKey, &'static [u8]>,
    pub created: Table<'txn, HashKey, &'static [u8]>,
    pub cert_uses: Table<'txn, HashKey, HashKey>,
}

impl<'txn> WriteTables<'txn> {
    pub(crate) fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(WriteTables {
            meta: txn.open_table(META)?,
            headers: txn.open_table(HEADERS)?,
            blocks: txn.open_table(BLOCKS)?,
            index: txn.open_table(INDEX)?,
            best_chain: txn.open_table(BEST_CHAIN)?,
            coins: txn.open_table(COINS)?,
            undo: txn.open_table(UNDO)?,
            created: txn.open_table(CREATED)?,
            cert_uses: txn.open_table(CERT_USES)?,
        })
    }

    fn put_index(&mut self, hash: &BlockHash, entry: &IndexEntry) -> Result<(), StoreError> {
        self.index
            .insert(hash_key(hash), entry.encode().as_slice())?;
        Ok(())
    }

    /// The entry of `hash`, or a new one with `status` and the next seen order, written with
    /// the header. An existing entry must agree with the header it was created from.
    fn index_or_insert(
        &mut self,
        hash: &BlockHash,
        header: &BlockHeader,
        status: BlockStatus,
    ) -> Result<IndexEntry, StoreError> {
        if let Some(entry) = read_index(&self.index, hash)? {
            if !entry.matches_header(header) {
                return Err(StoreError::corrupt(
                    "block_index",
                    hash,
                    format!("entry {entry:?} disagrees with the block's header"),
                ));
            }
            return Ok(entry);
        }
        let seen_order = read_next_seen_order(&self.meta)?;
        let next = seen_order.checked_add(1).ok_or_else(|| {
            StoreError::corrupt("meta", META_NEXT_SEEN_ORDER, "seen order exhausted")
        })?;
        self.meta
            .insert(META_NEXT_SEEN_ORDER, next.to_le_bytes().as_slice())?;
        let entry = IndexEntry::for_header(header, status, seen_order);
        self.put_index(hash, &entry)?;
        self.headers
            .insert(hash_key(hash), header.encode().as_slice())?;
        Ok(entry)
    }
}
