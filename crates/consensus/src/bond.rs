//! Bond outputs: the script template and the check the coordinator makes for admission.
//!
//! A bond is a P2WSH output whose witness script is
//! `OP_IF <slash_key> OP_CHECKSIG OP_ELSE <lock_blocks> OP_CHECKSEQUENCEVERIFY OP_DROP
//! <miner_key> OP_CHECKSIG OP_ENDIF`: the slashing key (a coordinator key) may take it at any
//! time, the miner only `lock_blocks` blocks after it confirmed (BIP68/112 relative lock).
//! The output commits to the script's hash, so anyone holding the three values rebuilds the
//! script and compares hashes; no script is parsed here.
//!
//! Consensus enforces the script: `tx::check_transaction` accepts P2WSH outputs, spends run in
//! Bitcoin Core's interpreter (libbitcoinconsensus, `OP_CSV` included) and BIP68 relative locks
//! are checked against each coin's height. The miner's branch needs a version 2 transaction
//! whose input sequence is at least `lock_blocks` (height-based), mined `lock_blocks` blocks
//! after the bond. Who may slash, and how the slashed value is split, is policy: see
//! [`slash_outputs`] and [`check_slash_outputs`].

use bitcoin::absolute::LockTime;
use bitcoin::blockdata::opcodes::all::{OP_CHECKSIG, OP_CSV, OP_DROP, OP_ELSE, OP_ENDIF, OP_IF};
use bitcoin::hashes::Hash as _;
use bitcoin::script::Builder;
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1, SecretKey, Signing};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    ecdsa, Amount, OutPoint, Script, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};
use primitives::{ChainParams, Coin};
use thiserror::Error;

/// BIP68 encodes a block-based relative lock in the low 16 bits of nSequence, so no bond can
/// be locked for more blocks than this.
pub use primitives::params::BOND_LOCK_BLOCKS_MAX;

/// What the chain requires of a bond, from the chain parameters ([`BondTerms::from_params`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BondTerms {
    /// The key that may slash (spend through the `OP_IF` branch) at any time.
    pub slash_key: PublicKey,
    /// Relative lock of the miner's branch, in blocks (cycle + dispute window).
    pub lock_blocks: u32,
    /// Smallest value a bond must hold.
    pub bond_min: Amount,
    /// Percent (0..=100) of a slashed bond, after the fee, paid to whoever found the fraud.
    pub finder_share_percent: u8,
}

impl BondTerms {
    /// The chain's bond terms.
    pub fn from_params(params: &ChainParams) -> BondTerms {
        BondTerms {
            slash_key: params.bond_slash_key,
            lock_blocks: params.bond_lock_blocks,
            bond_min: params.bond_min,
            finder_share_percent: params.slash_finder_share_percent,
        }
    }
}

/// The witness script of a bond for `miner` under `terms`.
pub fn bond_witness_script(terms: &BondTerms, miner: &PublicKey) -> ScriptBuf {
    Builder::new()
        .push_opcode(OP_IF)
        .push_key(&bitcoin::PublicKey::new(terms.slash_key))
        .push_opcode(OP_CHECKSIG)
        .push_opcode(OP_ELSE)
        .push_int(i64::from(terms.lock_blocks))
        .push_opcode(OP_CSV)
        .push_opcode(OP_DROP)
        .push_key(&bitcoin::PublicKey::new(*miner))
        .push_opcode(OP_CHECKSIG)
        .push_opcode(OP_ENDIF)
        .into_script()
}

/// The P2WSH output script of a bond for `miner`.
pub fn bond_script_pubkey(terms: &BondTerms, miner: &PublicKey) -> ScriptBuf {
    ScriptBuf::new_p2wsh(&bond_witness_script(terms, miner).wscript_hash())
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BondError {
    #[error("bond lock of {0} blocks is over the BIP68 maximum of {BOND_LOCK_BLOCKS_MAX}")]
    LockTooLong(u32),
    #[error("output is not a bond for this miner key under the chain's bond terms")]
    WrongScript,
    #[error("bond holds {value}, less than the minimum {min}")]
    TooSmall { value: Amount, min: Amount },
    #[error("bond is a coinbase output above genesis; it is refused so a reorg cannot erase it")]
    Coinbase,
    #[error("bond has {confirmations} confirmations; {required} are required")]
    Unconfirmed { confirmations: u32, required: u32 },
    #[error("bond becomes reclaimable at height {reclaimable_at}, before height {needed_until}")]
    UnlocksTooSoon {
        reclaimable_at: u64,
        needed_until: u64,
    },
    #[error("slash fee {fee} is over the bond's {value} or the allowed {fee_max}")]
    SlashFee {
        fee: Amount,
        value: Amount,
        fee_max: Amount,
    },
    #[error("finder share of {0} percent is over 100")]
    FinderShareOutOfRange(u8),
    #[error("slash spend's outputs are not the finder share and the burn")]
    WrongSlashOutputs,
    #[error("the secret key is not the chain's bond slashing key")]
    NotSlashKey,
    #[error("cannot sign the bond spend: {0}")]
    Signing(String),
}

/// The outputs a slash spend of a bond worth `bond_value` must have, paying `fee`: first
/// `finder_share_percent` of `bond_value - fee` (rounded down) to `finder_script`, then the rest
/// to [`crate::tx::burn_script`], destroyed, so the slashing key's holder takes nothing. A part
/// that comes to zero is left out. `fee_max` bounds the fee, which a block producer would
/// otherwise collect in the burn's place.
pub fn slash_outputs(
    terms: &BondTerms,
    bond_value: Amount,
    fee: Amount,
    fee_max: Amount,
    finder_script: ScriptBuf,
) -> Result<Vec<TxOut>, BondError> {
    if terms.finder_share_percent > 100 {
        return Err(BondError::FinderShareOutOfRange(terms.finder_share_percent));
    }
    let slashed = bond_value
        .checked_sub(fee)
        .filter(|_| fee <= fee_max)
        .ok_or(BondError::SlashFee {
            fee,
            value: bond_value,
            fee_max,
        })?;
    // At most 21e14 * 100: no overflow in u64.
    let finder = Amount::from_sat(slashed.to_sat() * u64::from(terms.finder_share_percent) / 100);
    let outputs = [
        TxOut {
            value: finder,
            script_pubkey: finder_script,
        },
        TxOut {
            value: slashed - finder,
            script_pubkey: crate::tx::burn_script(),
        },
    ];
    Ok(outputs
        .into_iter()
        .filter(|o| o.value > Amount::ZERO)
        .collect())
}

/// Policy check of a slash spend `tx` of a bond worth `bond_value`: its outputs are exactly
/// [`slash_outputs`] for the fee it pays (`bond_value` minus its outputs). That the input is the
/// bond and the signature the slashing key's is for consensus and the caller.
pub fn check_slash_outputs(
    tx: &Transaction,
    terms: &BondTerms,
    bond_value: Amount,
    fee_max: Amount,
    finder_script: &ScriptBuf,
) -> Result<(), BondError> {
    let paid = tx
        .output
        .iter()
        .try_fold(Amount::ZERO, |sum, o| sum.checked_add(o.value))
        .ok_or(BondError::WrongSlashOutputs)?;
    let fee = bond_value
        .checked_sub(paid)
        .ok_or(BondError::WrongSlashOutputs)?;
    let expected = slash_outputs(terms, bond_value, fee, fee_max, finder_script.clone())?;
    if tx.output != expected {
        return Err(BondError::WrongSlashOutputs);
    }
    Ok(())
}

/// Builds and signs the slash of the bond `outpoint` (worth `value`) of `miner` under `terms`
/// with the slashing key `slash_key`: the `OP_IF` branch, version 2, sequence final, witness
/// `<signature> <0x01 (true)> <witness script>`, outputs exactly [`slash_outputs`] for `fee`
/// (the finder's share to `finder_script`, the rest burned), valid in any block after the
/// bond's. The signature is `SIGHASH_ALL` over the BIP143 digest, low-R (RFC 6979, so the
/// same inputs always give the same transaction and txid).
#[allow(clippy::too_many_arguments)]
pub fn build_slash<C: Signing>(
    secp: &Secp256k1<C>,
    terms: &BondTerms,
    outpoint: OutPoint,
    value: Amount,
    miner: &PublicKey,
    slash_key: &SecretKey,
    finder_script: ScriptBuf,
    fee: Amount,
    fee_max: Amount,
) -> Result<Transaction, BondError> {
    if slash_key.public_key(secp) != terms.slash_key {
        return Err(BondError::NotSlashKey);
    }
    let script = bond_witness_script(terms, miner);
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: slash_outputs(terms, value, fee, fee_max, finder_script)?,
    };
    let signature = sign_p2wsh_input(secp, &tx, &script, value, slash_key)?;
    tx.input[0].witness = Witness::from_slice(&[signature, vec![1u8], script.to_bytes()]);
    Ok(tx)
}

/// The `SIGHASH_ALL` BIP143 signature (low-R) of input 0 of `tx`, spending `value` locked by
/// the P2WSH of `script`, with the sighash byte appended.
pub fn sign_p2wsh_input<C: Signing>(
    secp: &Secp256k1<C>,
    tx: &Transaction,
    script: &Script,
    value: Amount,
    key: &SecretKey,
) -> Result<Vec<u8>, BondError> {
    let sighash = SighashCache::new(tx)
        .p2wsh_signature_hash(0, script, value, EcdsaSighashType::All)
        .map_err(|e| BondError::Signing(e.to_string()))?;
    let msg = Message::from_digest(sighash.to_byte_array());
    let signature = ecdsa::Signature {
        signature: secp.sign_ecdsa_low_r(&msg, key),
        sighash_type: EcdsaSighashType::All,
    };
    Ok(signature.to_vec())
}

/// What admission needs to know about the chain and the cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BondQuery {
    /// Height of the chain tip the coin was read at.
    pub tip_height: u32,
    /// Confirmations the bond must have (1 = in the tip block).
    pub confirmations_min: u32,
    /// The bond must still be locked through this many blocks after the tip (the rest of the
    /// cycle and its dispute window), so the slashing key can still take it.
    pub locked_for_blocks: u32,
}

/// Decides whether `coin` (as `gettxout` shows it, with its confirmation height) is a valid
/// bond for `miner`: the template with that key and the chain's terms, at least `bond_min`,
/// confirmed, and not reclaimable by the miner before the dispute window ends.
pub fn check_bond(
    coin: &Coin,
    miner: &PublicKey,
    terms: &BondTerms,
    query: &BondQuery,
) -> Result<(), BondError> {
    if terms.lock_blocks > BOND_LOCK_BLOCKS_MAX {
        return Err(BondError::LockTooLong(terms.lock_blocks));
    }
    if coin.output.script_pubkey != bond_script_pubkey(terms, miner) {
        return Err(BondError::WrongScript);
    }
    if coin.output.value < terms.bond_min {
        return Err(BondError::TooSmall {
            value: coin.output.value,
            min: terms.bond_min,
        });
    }
    // Genesis (height 0) is fixed by the chain parameters and cannot be reorganised away, so
    // its coinbase may pay bonds (a devnet's first bonds); any other coinbase is refused.
    if coin.is_coinbase && coin.height != 0 {
        return Err(BondError::Coinbase);
    }
    let confirmations = (query.tip_height + 1).saturating_sub(coin.height);
    if coin.height > query.tip_height || confirmations < query.confirmations_min {
        return Err(BondError::Unconfirmed {
            confirmations: if coin.height > query.tip_height {
                0
            } else {
                confirmations
            },
            required: query.confirmations_min,
        });
    }
    // BIP68: the miner's spend may be in a block at height >= coin height + lock.
    let reclaimable_at = u64::from(coin.height) + u64::from(terms.lock_blocks);
    let needed_until = u64::from(query.tip_height) + u64::from(query.locked_for_blocks);
    if reclaimable_at <= needed_until {
        return Err(BondError::UnlocksTooSoon {
            reclaimable_at,
            needed_until,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::secp256k1::{Secp256k1, SecretKey};

    fn key(b: u8) -> PublicKey {
        SecretKey::from_slice(&[b; 32])
            .unwrap()
            .public_key(&Secp256k1::new())
    }

    fn terms() -> BondTerms {
        BondTerms {
            slash_key: key(1),
            lock_blocks: 20,
            bond_min: Amount::from_sat(1_000_000),
            finder_share_percent: 30,
        }
    }

    fn bond(value: u64, height: u32) -> Coin {
        Coin {
            output: TxOut {
                value: Amount::from_sat(value),
                script_pubkey: bond_script_pubkey(&terms(), &key(2)),
            },
            height,
            is_coinbase: false,
        }
    }

    const QUERY: BondQuery = BondQuery {
        tip_height: 100,
        confirmations_min: 1,
        locked_for_blocks: 10,
    };

    #[test]
    fn witness_script_is_the_documented_template() {
        let script = bond_witness_script(&terms(), &key(2));
        let asm = script.to_asm_string();
        let expected = format!(
            "OP_IF OP_PUSHBYTES_33 {} OP_CHECKSIG OP_ELSE OP_PUSHBYTES_1 14 OP_CSV OP_DROP \
             OP_PUSHBYTES_33 {} OP_CHECKSIG OP_ENDIF",
            key(1),
            key(2)
        );
        assert_eq!(asm, expected);
        assert!(bond_script_pubkey(&terms(), &key(2)).is_p2wsh());
    }

    #[test]
    fn a_genesis_coinbase_bond_passes_and_a_later_coinbase_does_not() {
        let mut genesis = bond(1_000_000, 0);
        genesis.is_coinbase = true;
        let query = BondQuery {
            tip_height: 5,
            confirmations_min: 1,
            locked_for_blocks: 10,
        };
        assert_eq!(check_bond(&genesis, &key(2), &terms(), &query), Ok(()));
        let mut later = bond(1_000_000, 5);
        later.is_coinbase = true;
        assert_eq!(
            check_bond(&later, &key(2), &terms(), &query),
            Err(BondError::Coinbase)
        );
    }

    #[test]
    fn a_valid_bond_passes() {
        assert_eq!(
            check_bond(&bond(1_000_000, 95), &key(2), &terms(), &QUERY),
            Ok(())
        );
    }

    #[test]
    fn each_failure_is_refused_with_its_reason() {
        let t = terms();
        assert_eq!(
            check_bond(&bond(1_000_000, 95), &key(3), &t, &QUERY),
            Err(BondError::WrongScript)
        );
        let other_slasher = BondTerms {
            slash_key: key(4),
            ..t
        };
        assert_eq!(
            check_bond(&bond(1_000_000, 95), &key(2), &other_slasher, &QUERY),
            Err(BondError::WrongScript)
        );
        assert!(matches!(
            check_bond(&bond(999_999, 95), &key(2), &t, &QUERY),
            Err(BondError::TooSmall { .. })
        ));
        let mut cb = bond(1_000_000, 95);
        cb.is_coinbase = true;
        assert_eq!(
            check_bond(&cb, &key(2), &t, &QUERY),
            Err(BondError::Coinbase)
        );
        assert_eq!(
            check_bond(&bond(1_000_000, 101), &key(2), &t, &QUERY),
            Err(BondError::Unconfirmed {
                confirmations: 0,
                required: 1
            })
        );
        let six = BondQuery {
            confirmations_min: 6,
            ..QUERY
        };
        assert_eq!(
            check_bond(&bond(1_000_000, 96), &key(2), &t, &six),
            Err(BondError::Unconfirmed {
                confirmations: 5,
                required: 6
            })
        );
        // Confirmed at 90 with a 20-block lock: reclaimable at 110 = tip 100 + 10, too soon.
        assert_eq!(
            check_bond(&bond(1_000_000, 90), &key(2), &t, &QUERY),
            Err(BondError::UnlocksTooSoon {
                reclaimable_at: 110,
                needed_until: 110
            })
        );
        assert_eq!(
            check_bond(&bond(1_000_000, 91), &key(2), &t, &QUERY),
            Ok(())
        );
        let long = BondTerms {
            lock_blocks: 0x1_0000,
            ..t
        };
        assert_eq!(
            check_bond(&bond(1_000_000, 95), &key(2), &long, &QUERY),
            Err(BondError::LockTooLong(0x1_0000))
        );
    }

    #[test]
    fn slash_outputs_split_finder_share_and_burn() {
        let finder = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([5; 20]));
        let t = terms();
        let fee_max = Amount::from_sat(10_000);
        // 1_000_000 - 1_000 = 999_000; 30% = 299_700 to the finder, 699_300 burned.
        let outs = slash_outputs(
            &t,
            Amount::from_sat(1_000_000),
            Amount::from_sat(1_000),
            fee_max,
            finder.clone(),
        )
        .unwrap();
        assert_eq!(outs.len(), 2);
        assert_eq!(outs[0].value, Amount::from_sat(299_700));
        assert_eq!(outs[0].script_pubkey, finder);
        assert_eq!(outs[1].value, Amount::from_sat(699_300));
        assert_eq!(outs[1].script_pubkey, crate::tx::burn_script());
        assert!(matches!(
            slash_outputs(
                &t,
                Amount::from_sat(1_000_000),
                Amount::from_sat(10_001),
                fee_max,
                finder.clone()
            ),
            Err(BondError::SlashFee { .. })
        ));
        let none = BondTerms {
            finder_share_percent: 0,
            ..t
        };
        let outs = slash_outputs(
            &none,
            Amount::from_sat(5_000),
            Amount::ZERO,
            fee_max,
            finder.clone(),
        )
        .unwrap();
        assert_eq!(outs.len(), 1);
        assert_eq!(outs[0].script_pubkey, crate::tx::burn_script());

        let mut tx = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![],
            output: slash_outputs(
                &t,
                Amount::from_sat(1_000_000),
                Amount::from_sat(1_000),
                fee_max,
                finder.clone(),
            )
            .unwrap(),
        };
        let check = |tx: &Transaction| {
            check_slash_outputs(tx, &t, Amount::from_sat(1_000_000), fee_max, &finder)
        };
        assert_eq!(check(&tx), Ok(()));
        // The slasher pays itself instead of burning.
        tx.output[1].script_pubkey = finder.clone();
        assert_eq!(check(&tx), Err(BondError::WrongSlashOutputs));
        // The finder is short-changed.
        tx.output[1].script_pubkey = crate::tx::burn_script();
        tx.output[0].value -= Amount::ONE_SAT;
        tx.output[1].value += Amount::ONE_SAT;
        assert_eq!(check(&tx), Err(BondError::WrongSlashOutputs));
    }
}
