//! The mempool saved across a graceful restart, `<data-dir>/mempool.dat` ([`MEMPOOL_FILE`]),
//! like Bitcoin Core's `mempool.dat`. All integers little-endian:
//!
//! ```text
//! magic "tcmp" (4) ‖ version u32 (1) ‖ count u32
//! ‖ count × (entry_secs u64 ‖ length u32 ‖ transaction (Bitcoin encoding with witness, length bytes))
//! ‖ SHA256 of every byte before it (32)
//! ```
//!
//! Transactions are written parents first. The node writes the file on shutdown (atomically:
//! a temporary file, then rename) and on start re-admits each transaction through the normal
//! acceptance path, so one that is now confirmed, conflicting, expired or otherwise invalid is
//! dropped with its reason logged. A file that is too large or does not decode is renamed to
//! `mempool.dat.bad` and the node starts with an empty mempool.

use crate::mempool::MempoolLimits;
use crate::persist::{self, ReadError};
use crate::service::{now_unix_secs, NodeHandle};
use bitcoin::Transaction;
use std::path::Path;
use thiserror::Error;
use tracing::{info, warn};

/// File name of the saved mempool inside the data directory.
pub const MEMPOOL_FILE: &str = "mempool.dat";

pub const MEMPOOL_FILE_MAGIC: [u8; 4] = *b"tcmp";

/// The only version written and read.
pub const MEMPOOL_FILE_VERSION: u32 = 1;

/// Magic, version and count.
const PREFIX_BYTES: usize = 12;
/// Entry time and length before each transaction.
const ENTRY_PREFIX_BYTES: usize = 12;
const CHECKSUM_BYTES: usize = 32;

/// Largest file a pool within `limits` can produce: its byte limit of transactions plus the
/// framing of its count limit. Reading refuses anything larger before reading it.
pub fn file_bytes_max(limits: &MempoolLimits) -> u64 {
    (PREFIX_BYTES + CHECKSUM_BYTES) as u64
        + limits.count_max as u64 * ENTRY_PREFIX_BYTES as u64
        + limits.bytes_max as u64
}

/// One saved transaction and when it first entered the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedTx {
    pub tx: Transaction,
    pub entry_secs: u64,
}

/// Why a saved mempool was not used. One variant per rule.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MempoolFileError {
    #[error("{0} bytes is shorter than the 44-byte empty file")]
    TooShort(usize),
    #[error("magic {0:02x?} is not \"tcmp\"")]
    Magic([u8; 4]),
    #[error("version {0}, this node reads version {MEMPOOL_FILE_VERSION}")]
    Version(u32),
    #[error("checksum does not match the contents")]
    Checksum,
    #[error("{count} transactions, over the pool's limit of {max}")]
    TooMany { count: u32, max: usize },
    #[error("transaction {index}: {length} bytes, limit {max}")]
    TxTooLarge {
        index: usize,
        length: u32,
        max: usize,
    },
    #[error("transactions total more than the pool's {0} bytes")]
    PoolTooLarge(usize),
    #[error("transaction {index} runs past the end of the file")]
    Truncated { index: usize },
    #[error("transaction {index} does not decode: {reason}")]
    Transaction { index: usize, reason: String },
    #[error("{0} bytes after the last transaction")]
    TrailingBytes(usize),
}

pub fn encode(saved: &[SavedTx]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MEMPOOL_FILE_MAGIC);
    out.extend_from_slice(&MEMPOOL_FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&(saved.len() as u32).to_le_bytes());
    for entry in saved {
        let tx = bitcoin::consensus::encode::serialize(&entry.tx);
        out.extend_from_slice(&entry.entry_secs.to_le_bytes());
        out.extend_from_slice(&(tx.len() as u32).to_le_bytes());
        out.extend_from_slice(&tx);
    }
    let checksum = primitives::sha256(&out).0;
    out.extend_from_slice(&checksum);
    out
}

/// Decodes a saved mempool, refusing anything a pool within `limits` could not have written.
pub fn decode(bytes: &[u8], limits: &MempoolLimits) -> Result<Vec<SavedTx>, MempoolFileError> {
    if bytes.len() < PREFIX_BYTES + CHECKSUM_BYTES {
        return Err(MempoolFileError::TooShort(bytes.len()));
    }
    let magic: [u8; 4] = bytes[0..4].try_into().expect("4 bytes");
    if magic != MEMPOOL_FILE_MAGIC {
        return Err(MempoolFileError::Magic(magic));
    }
    let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if version != MEMPOOL_FILE_VERSION {
        return Err(MempoolFileError::Version(version));
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
    if primitives::sha256(body).0[..] != *checksum {
        return Err(MempoolFileError::Checksum);
    }
    let count = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes"));
    if count as usize > limits.count_max {
        return Err(MempoolFileError::TooMany {
            count,
            max: limits.count_max,
        });
    }
    let mut rest = &body[PREFIX_BYTES..];
    let mut saved = Vec::with_capacity(count as usize);
    let mut total = 0usize;
    for index in 0..count as usize {
        if rest.len() < ENTRY_PREFIX_BYTES {
            return Err(MempoolFileError::Truncated { index });
        }
        let entry_secs = u64::from_le_bytes(rest[0..8].try_into().expect("8 bytes"));
        let length = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
        if length as usize > limits.tx_bytes_max {
            return Err(MempoolFileError::TxTooLarge {
                index,
                length,
                max: limits.tx_bytes_max,
            });
        }
        total += length as usize;
        if total > limits.bytes_max {
            return Err(MempoolFileError::PoolTooLarge(limits.bytes_max));
        }
        rest = &rest[ENTRY_PREFIX_BYTES..];
        if rest.len() < length as usize {
            return Err(MempoolFileError::Truncated { index });
        }
        let (tx_bytes, after) = rest.split_at(length as usize);
        // `deserialize` refuses trailing bytes, so the length is exact.
        let tx: Transaction = bitcoin::consensus::encode::deserialize(tx_bytes).map_err(|e| {
            MempoolFileError::Transaction {
                index,
                reason: e.to_string(),
            }
        })?;
        saved.push(SavedTx { tx, entry_secs });
        rest = after;
    }
    if !rest.is_empty() {
        return Err(MempoolFileError::TrailingBytes(rest.len()));
    }
    Ok(saved)
}

/// Writes the node's mempool to `path` atomically; returns how many transactions it holds.
pub fn save(node: &NodeHandle, path: &Path) -> std::io::Result<usize> {
    let saved: Vec<SavedTx> = node
        .mempool_entries()
        .into_iter()
        .map(|(tx, entry_secs)| SavedTx { tx, entry_secs })
        .collect();
    let bytes = encode(&saved);
    // Both sides of the boundary: what we write must read back as what we hold.
    let limits = node.with_mempool(|m| *m.limits());
    match decode(&bytes, &limits) {
        Ok(back) if back == saved => {}
        Ok(_) => return Err(std::io::Error::other("saved mempool does not read back")),
        Err(error) => {
            return Err(std::io::Error::other(format!(
                "saved mempool does not read back: {error}"
            )))
        }
    }
    persist::write_atomic(path, &bytes)?;
    Ok(saved.len())
}

/// What [`load`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub accepted: usize,
    pub refused: usize,
}

/// Re-admits the transactions saved in `path` through the normal acceptance path. Never fails
/// the node: a missing file is an empty mempool; an unreadable one is set aside with a warning.
pub fn load(node: &NodeHandle, path: &Path) -> Loaded {
    let limits = node.with_mempool(|m| *m.limits());
    let result = persist::read_bounded(path, file_bytes_max(&limits))
        .map_err(|e| match e {
            ReadError::TooLarge { .. } => e.to_string(),
            ReadError::Io(io) => io.to_string(),
        })
        .and_then(|bytes| match bytes {
            Some(bytes) => decode(&bytes, &limits).map(Some).map_err(|e| e.to_string()),
            None => Ok(None),
        });
    let saved = match result {
        Ok(Some(saved)) => saved,
        Ok(None) => return Loaded::default(),
        Err(error) => {
            let aside = persist::set_aside(path);
            warn!(
                path = %path.display(),
                %error,
                set_aside = ?aside.as_ref().map(|p| p.display().to_string()),
                "saved mempool unreadable; starting with an empty mempool"
            );
            return Loaded::default();
        }
    };
    let now_secs = now_unix_secs();
    let mut loaded = Loaded::default();
    for SavedTx { tx, entry_secs } in saved {
        let txid = tx.compute_txid();
        if entry_secs.saturating_add(limits.expiry_secs) <= now_secs {
            info!(%txid, "saved transaction dropped: expired");
            loaded.refused += 1;
            continue;
        }
        // A clock that went backwards must not make an entry younger than now.
        match node.submit_transaction_at(tx, entry_secs.min(now_secs)) {
            Ok(_) => loaded.accepted += 1,
            Err(error) => {
                info!(%txid, reason = %error, "saved transaction dropped");
                loaded.refused += 1;
            }
        }
    }
    info!(
        path = %path.display(),
        accepted = loaded.accepted,
        refused = loaded.refused,
        "saved mempool loaded"
    );
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{absolute::LockTime, transaction::Version, Amount, OutPoint, ScriptBuf};
    use bitcoin::{Sequence, TxIn, TxOut, Witness};

    fn tx(n: u8) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::new(bitcoin::Txid::from_byte_array([n; 32]), 1),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[vec![n; 72], vec![2; 33]]),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(1000 * n as u64),
                script_pubkey: ScriptBuf::from_bytes(
                    vec![0x00, 0x14].into_iter().chain([n; 20]).collect(),
                ),
            }],
        }
    }

    use bitcoin::hashes::Hash;

    fn sample() -> Vec<SavedTx> {
        (1..=3)
            .map(|n| SavedTx {
                tx: tx(n),
                entry_secs: 1_700_000_000 + n as u64,
            })
            .collect()
    }

    #[test]
    fn round_trips_and_the_empty_file_is_44_bytes() {
        let limits = MempoolLimits::default();
        let saved = sample();
        assert_eq!(decode(&encode(&saved), &limits).unwrap(), saved);
        let empty = encode(&[]);
        assert_eq!(empty.len(), 44);
        assert_eq!(&empty[..12], b"tcmp\x01\0\0\0\0\0\0\0");
        assert_eq!(decode(&empty, &limits).unwrap(), vec![]);
    }

    /// Re-seals `body` (everything but the checksum) with a valid checksum.
    fn seal(mut body: Vec<u8>) -> Vec<u8> {
        let checksum = primitives::sha256(&body).0;
        body.extend_from_slice(&checksum);
        body
    }

    #[test]
    fn every_malformation_has_its_error() {
        let limits = MempoolLimits {
            count_max: 3,
            tx_bytes_max: 300,
            bytes_max: 1000,
            ..MempoolLimits::default()
        };
        let good = encode(&sample());
        let body = good[..good.len() - 32].to_vec();
        let with = |at: usize, bytes: &[u8]| {
            let mut b = body.clone();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            seal(b)
        };
        let first_len = u32::from_le_bytes(body[20..24].try_into().unwrap()) as usize;
        let mut flipped = good.clone();
        flipped[30] ^= 1;
        let cases: Vec<(&str, Vec<u8>, MempoolFileError)> = vec![
            ("short", vec![0; 43], MempoolFileError::TooShort(43)),
            ("magic", with(0, b"xxxx"), MempoolFileError::Magic(*b"xxxx")),
            (
                "version",
                with(4, &2u32.to_le_bytes()),
                MempoolFileError::Version(2),
            ),
            ("checksum", flipped, MempoolFileError::Checksum),
            (
                "count",
                with(8, &4u32.to_le_bytes()),
                MempoolFileError::TooMany { count: 4, max: 3 },
            ),
            (
                "tx length",
                with(20, &301u32.to_le_bytes()),
                MempoolFileError::TxTooLarge {
                    index: 0,
                    length: 301,
                    max: 300,
                },
            ),
            (
                "truncated",
                seal(body[..PREFIX_BYTES + ENTRY_PREFIX_BYTES + first_len - 1].to_vec()),
                MempoolFileError::Truncated { index: 0 },
            ),
            (
                "trailing",
                seal([body.clone(), vec![0]].concat()),
                MempoolFileError::TrailingBytes(1),
            ),
        ];
        for (name, bytes, expected) in cases {
            assert_eq!(decode(&bytes, &limits).unwrap_err(), expected, "{name}");
        }
        let pool = MempoolLimits {
            bytes_max: 2 * first_len,
            ..limits
        };
        assert_eq!(
            decode(&good, &pool).unwrap_err(),
            MempoolFileError::PoolTooLarge(2 * first_len)
        );
        // A length one short leaves a transaction that does not decode exactly.
        let short_len = (first_len as u32 - 1).to_le_bytes();
        assert!(matches!(
            decode(&with(20, &short_len), &limits).unwrap_err(),
            MempoolFileError::Transaction { index: 0, .. }
        ));
    }
}
