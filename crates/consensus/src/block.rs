//! Block rules, in three stages that a node runs as the information becomes available:
//! 1. [`check_block`]: the block alone (size, Merkle root, coinbase shape, certificate signature,
//!    producer signature, each transaction's context-free rules).
//! 2. [`check_block_context`]: the block against its place in the chain (certificate bound to this
//!    height and parent, not used before, timestamp window).
//! 3. [`connect_block`]: the transactions against the unspent outputs; yields the undo record.

use crate::certificate::{verify_block_certificate, CertificateError};
use crate::subsidy::block_subsidy;
use crate::time::MAX_FUTURE_BLOCK_SECS;
use crate::tx::{
    check_coinbase_height, check_transaction, check_tx_inputs, CoinView, SpendContext, TxError,
};
use crate::SECP;
use bitcoin::secp256k1::Message;
use bitcoin::{Amount, BlockHash, OutPoint};
use primitives::{Block, BlockUndo, Coin, Hash256};
use std::collections::{HashMap, HashSet};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlockError {
    #[error("block is {bytes} bytes, over the {max}-byte limit")]
    Oversize { bytes: usize, max: usize },
    #[error("block has no transactions")]
    NoTransactions,
    #[error("first transaction is not a coinbase")]
    FirstNotCoinbase,
    #[error("transaction {index} is a second coinbase")]
    ExtraCoinbase { index: usize },
    #[error("Merkle root in the header does not match the transactions")]
    MerkleRootMismatch,
    #[error("transaction list is a duplicated-subtree mutation (CVE-2012-2459)")]
    MerkleMutated,
    #[error("certificate: {0}")]
    Certificate(#[from] CertificateError),
    #[error("certificate is bound to parent {certificate} but the header builds on {header}")]
    CertificateParentMismatch {
        certificate: BlockHash,
        header: BlockHash,
    },
    #[error("producer signature is not by the miner named in the certificate")]
    BadProducerSignature,
    #[error("block time {time} is outside its certificate's window [{issued_at}, {expires_at}]")]
    OutsideCertificateWindow {
        time: u32,
        issued_at: u64,
        expires_at: u64,
    },
    #[error("certificate trains model {found}, but the parent's cycle produced model {expected}")]
    ModelLineageBroken { expected: Hash256, found: Hash256 },
    #[error("transaction {index}: {error}")]
    Tx { index: usize, error: TxError },
    #[error("block builds on {found}, expected parent {expected}")]
    ParentMismatch {
        expected: BlockHash,
        found: BlockHash,
    },
    #[error("certificate is for height {found}, block would be at height {expected}")]
    CertificateHeightMismatch { expected: u32, found: u32 },
    #[error("certificate {certificate} was already used by block {block} of this chain")]
    CertificateReused {
        certificate: Hash256,
        block: BlockHash,
    },
    #[error("block time {time} is not after the median time past {median}")]
    TimeTooOld { time: u32, median: u32 },
    #[error("block time {time} is more than two hours past the local clock ({now})")]
    TimeTooNew { time: u32, now: u64 },
    #[error("outpoint {0} is spent twice in the block")]
    DoubleSpend(OutPoint),
    #[error("coinbase pays {paid}, more than subsidy plus fees {allowed}")]
    CoinbaseOverpays { paid: Amount, allowed: Amount },
}

impl BlockError {
    /// False when the same block hash may still turn out valid, so a node must not remember it
    /// as invalid. That is every failure a relayer could have caused without the header's
    /// authors: bytes the block hash does not cover (a transaction list or witness that does not
    /// match the header's wtxid Merkle root, a mutated list (CVE-2012-2459), the size those bytes
    /// add up to, the producer signature), and a time that is only too far ahead of this node's
    /// clock for now. Every other rule is a property of bytes the block hash commits to, so
    /// failing it once is failing it for good.
    pub fn is_permanent(&self) -> bool {
        !matches!(
            self,
            BlockError::MerkleMutated
                | BlockError::MerkleRootMismatch
                | BlockError::Oversize { .. }
                | BlockError::BadProducerSignature
                | BlockError::TimeTooNew { .. }
        )
    }
}

/// A block that passed [`check_block`]; connecting requires one.
#[derive(Debug, Clone, Copy)]
pub struct CheckedBlock<'a> {
    pub block: &'a Block,
    pub hash: BlockHash,
}

/// Rules that need only the block and the chain parameters.
pub fn check_block<'a>(
    block: &'a Block,
    params: &primitives::ChainParams,
) -> Result<CheckedBlock<'a>, BlockError> {
    let max = params.block_bytes_max as usize;
    let bytes = block.encoded_len();
    if bytes > max {
        return Err(BlockError::Oversize { bytes, max });
    }
    let Some(coinbase) = block.txdata.first() else {
        return Err(BlockError::NoTransactions);
    };
    if !coinbase.is_coinbase() {
        return Err(BlockError::FirstNotCoinbase);
    }
    if let Some(index) = block.txdata.iter().skip(1).position(|tx| tx.is_coinbase()) {
        return Err(BlockError::ExtraCoinbase { index: index + 1 });
    }
    let merkle = block.compute_merkle_root();
    if merkle.mutated {
        return Err(BlockError::MerkleMutated);
    }
    if merkle.root != block.header.merkle_root {
        return Err(BlockError::MerkleRootMismatch);
    }

    let cert = &block.header.certificate;
    verify_block_certificate(cert, params)?;
    if cert.body.prev_block_hash != block.header.prev_block_hash {
        return Err(BlockError::CertificateParentMismatch {
            certificate: cert.body.prev_block_hash,
            header: block.header.prev_block_hash,
        });
    }
    // A block-signing certificate is good for its attempt's block window only: a winner that
    // stayed silent cannot publish after the coordinator moved on, except by claiming a time
    // inside its window, and fork choice then prefers the later certificate.
    let time = block.header.time;
    if u64::from(time) < cert.body.issued_at || u64::from(time) > cert.body.expires_at {
        return Err(BlockError::OutsideCertificateWindow {
            time,
            issued_at: cert.body.issued_at,
            expires_at: cert.body.expires_at,
        });
    }
    let hash = block.block_hash();
    let msg = Message::from_digest(Block::signing_hash(&hash).0);
    SECP.verify_ecdsa(&msg, &block.producer_signature, &cert.body.miner)
        .map_err(|_| BlockError::BadProducerSignature)?;

    for (index, tx) in block.txdata.iter().enumerate() {
        check_transaction(tx, max).map_err(|error| BlockError::Tx { index, error })?;
    }
    check_coinbase_height(coinbase, cert.body.height)
        .map_err(|error| BlockError::Tx { index: 0, error })?;
    Ok(CheckedBlock { block, hash })
}

/// Where a block would sit in the chain, as the node's chain state sees it.
#[derive(Debug, Clone, Copy)]
pub struct BlockContext {
    /// Height the block would have: parent's height + 1.
    pub height: u32,
    pub parent_hash: BlockHash,
    /// Median time of the parent and its ancestors (up to 11 blocks).
    pub median_time_past: u32,
    /// The validating node's current time, Unix seconds.
    pub now_secs: u64,
    /// The block of this chain that already carries this block's certificate, if any.
    pub certificate_used_by: Option<BlockHash>,
    pub coinbase_maturity_blocks: u32,
    /// `next_model_hash` of the parent's certificate, or `None` when the parent is genesis
    /// (which no cycle made: the first cycle may train any model).
    pub parent_next_model_hash: Option<Hash256>,
}

/// Rules that bind the block to its position: certificate height and parent, no reuse of the
/// certificate, model lineage, timestamp window.
pub fn check_block_context(
    checked: &CheckedBlock<'_>,
    ctx: &BlockContext,
) -> Result<(), BlockError> {
    let header = &checked.block.header;
    if header.prev_block_hash != ctx.parent_hash {
        return Err(BlockError::ParentMismatch {
            expected: ctx.parent_hash,
            found: header.prev_block_hash,
        });
    }
    let cert_height = header.certificate.body.height;
    if cert_height != ctx.height {
        return Err(BlockError::CertificateHeightMismatch {
            expected: ctx.height,
            found: cert_height,
        });
    }
    if let Some(block) = ctx.certificate_used_by.filter(|b| *b != checked.hash) {
        return Err(BlockError::CertificateReused {
            certificate: header.certificate.id(),
            block,
        });
    }
    // Model lineage: a cycle trains the model its parent block's cycle produced, so the chain
    // alone shows that every block's model descends from the one before.
    if let Some(expected) = ctx.parent_next_model_hash {
        let found = header.certificate.body.model_hash;
        if found != expected {
            return Err(BlockError::ModelLineageBroken { expected, found });
        }
    }
    if header.time <= ctx.median_time_past {
        return Err(BlockError::TimeTooOld {
            time: header.time,
            median: ctx.median_time_past,
        });
    }
    if u64::from(header.time) > ctx.now_secs.saturating_add(MAX_FUTURE_BLOCK_SECS) {
        return Err(BlockError::TimeTooNew {
            time: header.time,
            now: ctx.now_secs,
        });
    }
    Ok(())
}

/// The effect of a valid block on the unspent outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedBlock {
    /// Coins the block spent that existed before it, in spending order.
    pub undo: BlockUndo,
    /// Spendable outputs the block created and did not itself spend, sorted by outpoint.
    pub created: Vec<(OutPoint, Coin)>,
    pub fees: Amount,
}

/// Validates the transactions against `view` (the unspent outputs before this block) and returns
/// the changes to apply. Transactions may spend outputs of earlier transactions in the block.
pub fn connect_block(
    checked: &CheckedBlock<'_>,
    ctx: &BlockContext,
    view: &impl CoinView,
    params: &primitives::ChainParams,
) -> Result<ConnectedBlock, BlockError> {
    let block = checked.block;
    let spend_ctx = SpendContext {
        height: ctx.height,
        median_time_past: ctx.median_time_past,
        coinbase_maturity_blocks: ctx.coinbase_maturity_blocks,
    };
    let mut overlay = BlockView {
        base: view,
        created: HashMap::new(),
        spent: HashSet::new(),
    };
    let mut undo = Vec::new();
    let mut fees = Amount::ZERO;
    for (index, tx) in block.txdata.iter().enumerate().skip(1) {
        for input in &tx.input {
            if overlay.spent.contains(&input.previous_output) {
                return Err(BlockError::DoubleSpend(input.previous_output));
            }
        }
        let (fee, coins) = check_tx_inputs(tx, &overlay, &spend_ctx)
            .map_err(|error| BlockError::Tx { index, error })?;
        fees = fees.checked_add(fee).unwrap_or(Amount::MAX);
        for (input, coin) in tx.input.iter().zip(coins) {
            let outpoint = input.previous_output;
            overlay.spent.insert(outpoint);
            // A coin made and spent inside this block never reaches the set or the undo record.
            if overlay.created.remove(&outpoint).is_none() {
                undo.push((outpoint, coin));
            }
        }
        overlay.add_outputs(tx, ctx.height, false);
    }

    let coinbase = &block.txdata[0];
    let allowed = block_subsidy(ctx.height, &params.subsidy)
        .checked_add(fees)
        .unwrap_or(Amount::MAX);
    let paid: Amount = coinbase.output.iter().map(|o| o.value).sum();
    if paid > allowed {
        return Err(BlockError::CoinbaseOverpays { paid, allowed });
    }
    overlay.add_outputs(coinbase, ctx.height, true);

    let mut created: Vec<(OutPoint, Coin)> = overlay.created.into_iter().collect();
    created.sort_unstable_by_key(|(outpoint, _)| *outpoint);
    Ok(ConnectedBlock {
        undo: BlockUndo { spent: undo },
        created,
        fees,
    })
}

/// The coin set as seen midway through a block: the base set plus what the block created so
/// far, minus what it spent.
struct BlockView<'v, V: CoinView> {
    base: &'v V,
    created: HashMap<OutPoint, Coin>,
    spent: HashSet<OutPoint>,
}

impl<V: CoinView> BlockView<'_, V> {
    fn add_outputs(&mut self, tx: &bitcoin::Transaction, height: u32, is_coinbase: bool) {
        let txid = tx.compute_txid();
        for (vout, output) in tx.output.iter().enumerate() {
            if output.script_pubkey.is_op_return() {
                continue; // provably unspendable: never enters the set
            }
            self.created.insert(
                OutPoint::new(txid, vout as u32),
                Coin {
                    output: output.clone(),
                    height,
                    is_coinbase,
                },
            );
        }
    }
}

impl<V: CoinView> CoinView for BlockView<'_, V> {
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        if self.spent.contains(outpoint) {
            return None;
        }
        self.created
            .get(outpoint)
            .cloned()
            .or_else(|| self.base.coin(outpoint))
    }
}
