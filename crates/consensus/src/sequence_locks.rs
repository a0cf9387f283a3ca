//! BIP68 relative lock times by block height, as Bitcoin Core's `CalculateSequenceLocks` /
//! `EvaluateSequenceLocks`. Pure: the spent coins' heights are arguments.
//!
//! Time-based relative locks (type flag set) need the median time past of each spent coin's
//! block, which a `Coin` does not carry; they are refused rather than silently ignored.
//! `tx::check_tx_inputs` calls [`check_sequence_locks`] for every transaction, with the height of
//! the block that includes it (tip + 1 for the mempool, where a coin of an unconfirmed parent has
//! that height too, so any lock above 0 on it is not yet reached).

use bitcoin::Transaction;
use primitives::Coin;
use thiserror::Error;

/// BIP68: bit 31 set disables the relative lock of an input.
const SEQUENCE_DISABLE_FLAG: u32 = 1 << 31;
/// BIP68: bit 22 set makes the lock time-based (units of 512 s) instead of height-based.
const SEQUENCE_TYPE_FLAG: u32 = 1 << 22;
/// BIP68: the lock value is the low 16 bits.
const SEQUENCE_LOCK_MASK: u32 = 0x0000_ffff;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SequenceLockError {
    #[error("input {index}: time-based relative lock times are not supported on this chain")]
    TimeBased { index: usize },
    #[error(
        "input {index}: relative lock not reached: the block must be at height {required} or above"
    )]
    NotReached { index: usize, required: u64 },
}

/// Checks every input's height-based relative lock of a version >= 2 transaction mined at
/// `height`; `spent[i]` is the coin input `i` spends.
pub fn check_sequence_locks(
    tx: &Transaction,
    spent: &[Coin],
    height: u32,
) -> Result<(), SequenceLockError> {
    // BIP68 applies only from version 2 on, as in Core.
    if tx.version.0 < 2 {
        return Ok(());
    }
    for (index, (input, coin)) in tx.input.iter().zip(spent).enumerate() {
        let sequence = input.sequence.0;
        if sequence & SEQUENCE_DISABLE_FLAG != 0 {
            continue;
        }
        if sequence & SEQUENCE_TYPE_FLAG != 0 {
            return Err(SequenceLockError::TimeBased { index });
        }
        let required = u64::from(coin.height) + u64::from(sequence & SEQUENCE_LOCK_MASK);
        if u64::from(height) < required {
            return Err(SequenceLockError::NotReached { index, required });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::transaction::Version;
    use bitcoin::{absolute, Amount, OutPoint, ScriptBuf, Sequence, TxIn, TxOut, Witness};

    fn tx(version: i32, sequence: u32) -> Transaction {
        Transaction {
            version: Version(version),
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: ScriptBuf::new(),
                sequence: Sequence(sequence),
                witness: Witness::new(),
            }],
            output: vec![],
        }
    }

    fn coin(height: u32) -> Coin {
        Coin {
            output: TxOut {
                value: Amount::ZERO,
                script_pubkey: ScriptBuf::new(),
            },
            height,
            is_coinbase: false,
        }
    }

    #[test]
    fn height_lock_is_reached_exactly_at_coin_height_plus_lock() {
        let t = tx(2, 20);
        assert_eq!(
            check_sequence_locks(&t, &[coin(100)], 119),
            Err(SequenceLockError::NotReached {
                index: 0,
                required: 120
            })
        );
        assert_eq!(check_sequence_locks(&t, &[coin(100)], 120), Ok(()));
    }

    #[test]
    fn disabled_version_one_and_time_based_locks() {
        assert_eq!(check_sequence_locks(&tx(1, 20), &[coin(100)], 101), Ok(()));
        assert_eq!(
            check_sequence_locks(&tx(2, SEQUENCE_DISABLE_FLAG | 20), &[coin(100)], 101),
            Ok(())
        );
        assert_eq!(
            check_sequence_locks(&tx(2, SEQUENCE_TYPE_FLAG | 1), &[coin(100)], 500),
            Err(SequenceLockError::TimeBased { index: 0 })
        );
    }
}
