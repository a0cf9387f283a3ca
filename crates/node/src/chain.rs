//! Chain state: accepts blocks, validates them with `consensus`, keeps the best chain by fork
//! choice, reorganises, and records coordinator equivocation. Storage is `storage::Store`;
//! every connect and disconnect is one redb transaction.

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, OutPoint, Transaction};
use consensus::{
    check_block, check_block_context, connect_block, is_equivocation, median_time_past,
    prefer_branch, BlockContext, BlockError, BranchTip, SpendContext, MEDIAN_TIME_SPAN,
};
use primitives::{Block, Certificate, ChainParams, Coin};
use std::collections::HashMap;
use std::path::Path;
use storage::{
    BlockStatus, EquivocationEvidence, EvidenceOutcome, IndexEntry, Slot, Store, StoreError,
};
use thiserror::Error;
use tracing::{info, warn};

/// Reason codes kept with `BlockStatus::Invalid`, so a restarted node does not re-validate.
pub mod invalid_reason {
    /// The block broke a consensus rule.
    pub const CONSENSUS: u16 = 1;
    /// An ancestor of the block is invalid.
    pub const ANCESTOR: u16 = 2;
}

#[derive(Debug, Error)]
pub enum ChainError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("block {hash} is invalid: {error}")]
    Invalid { hash: BlockHash, error: BlockError },
    #[error("block {hash} was already found invalid")]
    KnownInvalid { hash: BlockHash },
    #[error("block {hash} builds on an invalid block")]
    InvalidAncestor { hash: BlockHash },
    #[error("block {hash} builds on unknown block {parent}")]
    Orphan { hash: BlockHash, parent: BlockHash },
    #[error("data directory holds chain with genesis {found}, parameters say {expected}")]
    WrongGenesis {
        expected: BlockHash,
        found: BlockHash,
    },
}

/// What accepting a block did to the best chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockOutcome {
    /// The block is already on the best chain.
    AlreadyKnown,
    /// Stored on a branch that is not (yet) the best.
    SideBranch,
    /// The best chain changed. `disconnected` lists blocks taken off the old branch, tip first;
    /// their transactions belong back in the mempool. `connected` lists new blocks, lowest first.
    NewTip {
        tip: BlockHash,
        height: u32,
        disconnected: Vec<Block>,
        connected: Vec<BlockHash>,
    },
}

pub struct ChainState {
    params: ChainParams,
    store: Store,
    /// One certificate per (cycle, height, attempt) seen in a block that passed every
    /// context-free check, to detect equivocation.
    certificate_slots: HashMap<Slot, Certificate>,
}

impl ChainState {
    /// Opens (or creates) the chain store at `path` and connects genesis on first use.
    pub fn open(path: &Path, params: ChainParams) -> Result<ChainState, ChainError> {
        let store = Store::open(path)?;
        let mut chain = ChainState {
            params,
            store,
            certificate_slots: HashMap::new(),
        };
        let genesis_hash = chain.params.genesis_hash();
        match chain.store.best_hash_at(0)? {
            Some(found) if found != genesis_hash => {
                return Err(ChainError::WrongGenesis {
                    expected: genesis_hash,
                    found,
                })
            }
            Some(_) => chain.load_certificate_slots()?,
            None => chain.connect_genesis()?,
        }
        Ok(chain)
    }

    fn connect_genesis(&mut self) -> Result<(), ChainError> {
        let genesis = self.params.genesis.clone();
        let hash = genesis.block_hash();
        let invalid = |error| ChainError::Invalid { hash, error };
        let checked = check_block(&genesis, &self.params).map_err(invalid)?;
        let ctx = BlockContext {
            height: 0,
            parent_hash: BlockHash::all_zeros(),
            median_time_past: 0,
            now_secs: u64::from(genesis.header.time),
            certificate_used_by: None,
            coinbase_maturity_blocks: self.params.coinbase_maturity_blocks,
            parent_next_model_hash: None,
        };
        let connected = connect_block(
            &checked,
            &ctx,
            &HashMap::<OutPoint, Coin>::new(),
            &self.params,
        )
        .map_err(invalid)?;
        self.store.put_block(&genesis)?;
        self.store
            .connect_block(&hash, &genesis, &connected.undo, &connected.created)?;
        self.remember_slot(&genesis.header.certificate);
        info!(%hash, "connected genesis");
        Ok(())
    }

    fn load_certificate_slots(&mut self) -> Result<(), ChainError> {
        let view = self.store.read()?;
        for (hash, entry) in view.index_entries()? {
            // Only blocks that passed `check_block` are stored with a body; a bare header has
            // not shown a valid producer signature, so it is no witness against the coordinator.
            if entry.status == BlockStatus::HeaderOnly {
                continue;
            }
            if let Some(header) = view.header(&hash)? {
                self.remember_slot(&header.certificate);
            }
        }
        Ok(())
    }

    fn remember_slot(&mut self, cert: &Certificate) {
        self.certificate_slots
            .entry(Slot::of(cert))
            .or_insert_with(|| cert.clone());
    }

    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Hash and height of the best chain's tip.
    pub fn tip(&self) -> Result<(BlockHash, u32), ChainError> {
        Ok(self
            .store
            .tip()?
            .expect("genesis is connected when the chain state opens"))
    }

    /// Median time past for a block on top of `parent` (its 11 ancestors' median).
    pub fn median_time_past(&self, parent: &BlockHash) -> Result<u32, ChainError> {
        let view = self.store.read()?;
        let mut times = Vec::with_capacity(MEDIAN_TIME_SPAN);
        let mut cursor = *parent;
        while times.len() < MEDIAN_TIME_SPAN {
            let Some(entry) = view.index_entry(&cursor)? else {
                break;
            };
            times.push(entry.time);
            if entry.height == 0 {
                break;
            }
            cursor = entry.prev;
        }
        Ok(median_time_past(&times))
    }

    /// What a child of `parent` must train (the lineage rule); `None` on genesis, which no
    /// cycle made.
    fn parent_next_model_hash(
        &self,
        parent: &BlockHash,
    ) -> Result<Option<primitives::Hash256>, ChainError> {
        let entry = self.entry(parent)?;
        Ok((entry.height > 0).then_some(entry.next_model_hash))
    }

    /// Spend context of a transaction entering the mempool or the next block on the tip.
    pub fn next_spend_context(&self) -> Result<SpendContext, ChainError> {
        let (tip, height) = self.tip()?;
        Ok(SpendContext {
            height: height + 1,
            median_time_past: self.median_time_past(&tip)?,
            coinbase_maturity_blocks: self.params.coinbase_maturity_blocks,
        })
    }

    /// The unspent coins that `txs` spend, read in one snapshot (absent ones are left out).
    pub fn coins_for<'a>(
        &self,
        txs: impl IntoIterator<Item = &'a Transaction>,
    ) -> Result<HashMap<OutPoint, Coin>, ChainError> {
        let view = self.store.read()?;
        let mut coins = HashMap::new();
        for tx in txs {
            if tx.is_coinbase() {
                continue;
            }
            for input in &tx.input {
                if let Some(coin) = view.coin(&input.previous_output)? {
                    coins.insert(input.previous_output, coin);
                }
            }
        }
        Ok(coins)
    }

    /// Validates and stores `block`, connecting it (and reorganising) if it makes a better chain.
    /// `now_secs` is the local clock, for the future-time rule.
    pub fn process_block(
        &mut self,
        block: Block,
        now_secs: u64,
    ) -> Result<BlockOutcome, ChainError> {
        let hash = block.block_hash();
        if let Some(entry) = self.store.index_entry(&hash)? {
            match entry.status {
                BlockStatus::Invalid(_) => return Err(ChainError::KnownInvalid { hash }),
                BlockStatus::Connected => return Ok(BlockOutcome::AlreadyKnown),
                // A stored block off the best chain is evaluated again: it may have failed only
                // for now (a time ahead of our clock), or its branch may have grown.
                BlockStatus::Stored | BlockStatus::HeaderOnly => {}
            }
        }
        let invalid = |error| ChainError::Invalid { hash, error };
        check_block(&block, &self.params).map_err(invalid)?;
        // Only now: a block that fails a context-free check (no transactions, a bad producer
        // signature, ...) costs nothing to make around a public certificate, so it proves
        // nothing about the coordinator.
        self.check_equivocation(&block.header.certificate)?;

        let parent_hash = block.header.prev_block_hash;
        let Some(parent) = self.store.index_entry(&parent_hash)? else {
            return Err(ChainError::Orphan {
                hash,
                parent: parent_hash,
            });
        };
        if let BlockStatus::Invalid(_) = parent.status {
            return Err(ChainError::InvalidAncestor { hash });
        }
        // Refuse a height lie before it enters the index, where fork choice would trust it.
        if block.height() != parent.height + 1 {
            return Err(invalid(BlockError::CertificateHeightMismatch {
                expected: parent.height + 1,
                found: block.height(),
            }));
        }
        let entry = self.store.put_block(&block)?;

        let (tip_hash, tip_height) = self.tip()?;
        if parent_hash == tip_hash {
            let connected = self.connect(&block, now_secs)?;
            return Ok(BlockOutcome::NewTip {
                tip: hash,
                height: entry.height,
                disconnected: vec![],
                connected: vec![connected],
            });
        }
        if entry.height < tip_height {
            return Ok(BlockOutcome::SideBranch);
        }
        self.maybe_reorganise(hash, entry, tip_hash, now_secs)
    }

    /// Compares the branch ending at `candidate` with the best chain and switches if it wins.
    fn maybe_reorganise(
        &mut self,
        candidate: BlockHash,
        candidate_entry: IndexEntry,
        tip: BlockHash,
        now_secs: u64,
    ) -> Result<BlockOutcome, ChainError> {
        let fork = self.find_fork(candidate)?;
        let tip_entry = self.entry(&tip)?;
        let new_branch = self.branch_after(candidate, &fork)?;
        let old_branch = self.branch_after(tip, &fork)?;
        let summary = |entry: &IndexEntry, branch: &[BlockHash]| -> Result<BranchTip, ChainError> {
            let first = self.entry(&branch[0])?;
            Ok(BranchTip {
                height: entry.height,
                cycle_at_fork: first.cycle,
                attempt_at_fork: first.attempt,
                seen_order: entry.seen_order,
            })
        };
        let candidate_tip = summary(&candidate_entry, &new_branch)?;
        let current_tip = summary(&tip_entry, &old_branch)?;
        if !prefer_branch(&candidate_tip, &current_tip) {
            return Ok(BlockOutcome::SideBranch);
        }
        info!(
            from = %tip, to = %candidate, fork = %fork,
            depth = old_branch.len(), "reorganising to a better branch"
        );
        let mut disconnected = Vec::with_capacity(old_branch.len());
        for _ in &old_branch {
            disconnected.push(self.store.disconnect_tip()?);
        }
        let mut connected = Vec::with_capacity(new_branch.len());
        for hash in &new_branch {
            let block = self.stored_block(hash)?;
            match self.connect(&block, now_secs) {
                Ok(hash) => connected.push(hash),
                Err(error) => {
                    warn!(%hash, %error, "new branch is invalid; restoring the previous chain");
                    self.restore(&connected, &disconnected, now_secs)?;
                    return Err(error);
                }
            }
        }
        let (tip, height) = self.tip()?;
        Ok(BlockOutcome::NewTip {
            tip,
            height,
            disconnected,
            connected,
        })
    }

    /// Undo a failed reorganisation: take off what was connected, put the old branch back.
    fn restore(
        &mut self,
        connected: &[BlockHash],
        disconnected: &[Block],
        now_secs: u64,
    ) -> Result<(), ChainError> {
        for _ in connected {
            self.store.disconnect_tip()?;
        }
        for block in disconnected.iter().rev() {
            // These blocks were valid on this chain a moment ago.
            self.connect(block, now_secs)?;
        }
        Ok(())
    }

    /// Full contextual validation and connection of a block whose parent is the tip.
    fn connect(&mut self, block: &Block, now_secs: u64) -> Result<BlockHash, ChainError> {
        let hash = block.block_hash();
        // A store error is the node's problem, never the block's: it propagates as is and must
        // not mark the block invalid.
        let connected = match self.validate_on_tip(block, now_secs)? {
            Ok(connected) => connected,
            Err(error) => {
                if error.is_permanent() {
                    self.store
                        .set_status(&hash, BlockStatus::Invalid(invalid_reason::CONSENSUS))?;
                }
                warn!(%hash, %error, "rejected block");
                return Err(ChainError::Invalid { hash, error });
            }
        };
        self.store
            .connect_block(&hash, block, &connected.undo, &connected.created)?;
        self.remember_slot(&block.header.certificate);
        info!(%hash, height = block.height(), txs = block.txdata.len(), "connected block");
        Ok(hash)
    }

    /// Reads what the rules need from the store (errors: the outer `Result`), then applies the
    /// rules (verdict: the inner one).
    fn validate_on_tip(
        &self,
        block: &Block,
        now_secs: u64,
    ) -> Result<Result<consensus::ConnectedBlock, BlockError>, ChainError> {
        let (tip, height) = self.tip()?;
        let ctx = BlockContext {
            height: height + 1,
            parent_hash: tip,
            median_time_past: self.median_time_past(&tip)?,
            now_secs,
            certificate_used_by: self.store.certificate_use(&block.header.certificate.id())?,
            coinbase_maturity_blocks: self.params.coinbase_maturity_blocks,
            parent_next_model_hash: self.parent_next_model_hash(&tip)?,
        };
        let coins = self.coins_for(&block.txdata)?;
        Ok(check_block(block, &self.params).and_then(|checked| {
            check_block_context(&checked, &ctx)?;
            connect_block(&checked, &ctx, &coins, &self.params)
        }))
    }

    /// Records evidence if `cert`, the certificate of a block that passed `check_block` (so a
    /// block-signing certificate validly signed by a coordinator of this chain, in a block its
    /// miner signed), conflicts with one already seen for its (cycle, height, attempt).
    fn check_equivocation(&mut self, cert: &Certificate) -> Result<(), ChainError> {
        let slot = Slot::of(cert);
        let Some(known) = self.certificate_slots.get(&slot) else {
            self.certificate_slots.insert(slot, cert.clone());
            return Ok(());
        };
        let Some(found) = is_equivocation(known, cert, &self.params) else {
            return Ok(());
        };
        let evidence = EquivocationEvidence::new(found.first, found.second)
            .expect("is_equivocation returns two block-signing certificates for one slot");
        if self.store.put_equivocation(&evidence)? == EvidenceOutcome::Recorded {
            warn!(%slot, "coordinator equivocation detected");
        }
        Ok(())
    }

    /// Equivocation evidence recorded so far.
    pub fn equivocations(&self) -> Result<Vec<EquivocationEvidence>, ChainError> {
        Ok(self.store.equivocations()?)
    }

    fn entry(&self, hash: &BlockHash) -> Result<IndexEntry, ChainError> {
        self.store.index_entry(hash)?.ok_or_else(|| {
            StoreError::corrupt("block_index", hash, "entry implied by a child is missing").into()
        })
    }

    fn stored_block(&self, hash: &BlockHash) -> Result<Block, ChainError> {
        self.store.block(hash)?.ok_or_else(|| {
            StoreError::corrupt("blocks", hash, "body of a stored block is missing").into()
        })
    }

    /// Last block the branch ending at `hash` shares with the best chain.
    fn find_fork(&self, hash: BlockHash) -> Result<BlockHash, ChainError> {
        let mut cursor = hash;
        loop {
            let entry = self.entry(&cursor)?;
            if self.store.best_hash_at(entry.height)? == Some(cursor) {
                return Ok(cursor);
            }
            cursor = entry.prev;
        }
    }

    /// Hashes from just after `fork` up to `tip`, lowest first.
    fn branch_after(&self, tip: BlockHash, fork: &BlockHash) -> Result<Vec<BlockHash>, ChainError> {
        let mut branch = Vec::new();
        let mut cursor = tip;
        while cursor != *fork {
            branch.push(cursor);
            cursor = self.entry(&cursor)?.prev;
        }
        branch.reverse();
        Ok(branch)
    }
}
