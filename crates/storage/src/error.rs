//! Everything that can go wrong in the store, one variant per failure.

use crate::index::BlockStatus;
use bitcoin::{BlockHash, OutPoint};
use primitives::Hash256;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// redb itself failed: I/O, a full disk, a database another process holds open.
    #[error("database: {0}")]
    Database(#[from] redb::Error),

    /// A record on disk does not decode, or a record that another one implies is missing.
    #[error("corrupt store: table {table}, key {key}: {reason}")]
    Corrupt {
        table: &'static str,
        key: String,
        reason: String,
    },

    #[error("store schema version {found} is not the version this software reads ({expected})")]
    SchemaVersion { found: u32, expected: u32 },

    #[error("block {block} does not extend the tip: its parent is {parent}, the tip is {tip:?}")]
    NotOnTip {
        block: BlockHash,
        parent: BlockHash,
        tip: Option<BlockHash>,
    },

    #[error("block {block} claims height {height}; on the current tip it would be {expected}")]
    HeightMismatch {
        block: BlockHash,
        height: u32,
        expected: u32,
    },

    #[error("block passed as {given} hashes to {computed}")]
    HashMismatch {
        given: BlockHash,
        computed: BlockHash,
    },

    #[error("block {block} spends {outpoint}, which is not in the UTXO set")]
    MissingCoin {
        block: BlockHash,
        outpoint: OutPoint,
    },

    #[error("undo record of block {block} disagrees with the UTXO set about {outpoint}")]
    UndoCoinMismatch {
        block: BlockHash,
        outpoint: OutPoint,
    },

    #[error("block {block} creates {outpoint}, which is already in the UTXO set")]
    CoinExists {
        block: BlockHash,
        outpoint: OutPoint,
    },

    #[error("block {block} creates {outpoint} with height {coin_height}, not its own")]
    CreatedCoinHeight {
        block: BlockHash,
        outpoint: OutPoint,
        coin_height: u32,
    },

    #[error(
        "certificate {cert_id} of block {block} is already used by best-chain block {used_by}"
    )]
    CertificateReused {
        cert_id: Hash256,
        block: BlockHash,
        used_by: BlockHash,
    },

    #[error("the store has no chain yet")]
    NoTip,

    #[error("the genesis block cannot be disconnected")]
    CannotDisconnectGenesis,

    #[error("block {0} is not in the block index")]
    UnknownBlock(BlockHash),

    #[error("block {block}: status {from:?} cannot become {to:?} here")]
    StatusChange {
        block: BlockHash,
        from: BlockStatus,
        to: BlockStatus,
    },

    #[error("equivocation evidence: {0}")]
    Evidence(#[from] crate::evidence::EvidenceError),
}

impl StoreError {
    pub fn corrupt(table: &'static str, key: impl ToString, reason: impl ToString) -> Self {
        StoreError::Corrupt {
            table,
            key: key.to_string(),
            reason: reason.to_string(),
        }
    }
}

// redb reports each operation's failure in its own type; all of them fold into `redb::Error`.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);
