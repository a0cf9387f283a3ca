//! Bonds: the P2WSH outputs a miner locks to register, and the two ways they are spent.
//!
//! The script is `consensus::bond`'s (`OP_IF <slash_key> OP_CHECKSIG OP_ELSE <lock> OP_CSV
//! OP_DROP <miner_key> OP_CHECKSIG OP_ENDIF`, as P2WSH); this module only builds and signs.
//!
//! - **Create**: [`crate::Wallet::build_bond`], a payment (same coin selection, fee and change
//!   rules as [`crate::payment`]) whose first output, output 0, is the bond for the wallet's key.
//! - **Reclaim** ([`build_reclaim`]): the miner's `OP_ELSE` branch. Version 2, the one input's
//!   sequence is the lock (height-based BIP68, so the spend is valid only in a block at height
//!   `bond height + lock` or above, [`reclaimable_at`]), lock time 0, witness
//!   `<signature> <empty (false)> <witness script>`, one output to the wallet, fee at the rate.
//! - **Slash** ([`build_slash`]): the slashing key's `OP_IF` branch, valid at any time. Version
//!   2, sequence final, witness `<signature> <0x01 (true)> <witness script>`, outputs exactly
//!   [`consensus::bond::slash_outputs`] (finder share, the rest burned).
//!
//! Signatures are `SIGHASH_ALL` over the BIP143 digest with the witness script as script code,
//! low-R and low-S as for payments.

use bitcoin::absolute::LockTime;
use bitcoin::secp256k1::{Secp256k1, SecretKey, Signing};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, FeeRate, OutPoint, Script, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};
use consensus::bond::{bond_witness_script, BondError, BondTerms};
use thiserror::Error;

// The slash is built by consensus (the coordinator slashes too, without depending on the wallet).
pub use consensus::bond::{bond_script_pubkey, build_slash};

/// Largest ECDSA signature with its sighash byte the wallet makes (low R, low S).
const SIGNATURE_BYTES_MAX: usize = crate::payment::P2WPKH_SIGNATURE_BYTES_MAX;

/// Why a bond spend could not be built. Every variant is the caller's situation, not a bug.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BondSpendError {
    #[error(
        "the bond is still locked: it becomes reclaimable at height {reclaimable_at}, and the \
         next block is {next_height} (after {} more blocks)",
        reclaimable_at - next_height
    )]
    Locked {
        reclaimable_at: u64,
        next_height: u64,
    },
    #[error("bond lock of {0} blocks cannot be expressed as a BIP68 height lock (1..=65535)")]
    LockOutOfRange(u32),
    #[error("the bond's {value} does not pay the fee {fee} and an output of at least {dust}")]
    ValueTooSmall {
        value: Amount,
        fee: Amount,
        dust: Amount,
    },
    #[error("fee is out of range (overflow)")]
    FeeOutOfRange,
    #[error("{0}")]
    Bond(#[from] BondError),
}

/// First height at which a block may hold the miner's reclaim of a bond confirmed at
/// `confirmed_height` (BIP68: coin height plus the lock).
pub fn reclaimable_at(terms: &BondTerms, confirmed_height: u32) -> u64 {
    u64::from(confirmed_height) + u64::from(terms.lock_blocks)
}

/// Builds and signs the miner's reclaim of the bond `outpoint` (worth `value`, confirmed at
/// `confirmed_height`) for `miner_key` under `terms`, paying everything but the fee to `to`.
/// `next_height` is the height of the block the spend would enter (tip + 1); before
/// [`reclaimable_at`] it is refused, since consensus would refuse it.
#[allow(clippy::too_many_arguments)]
pub fn build_reclaim<C: Signing>(
    secp: &Secp256k1<C>,
    miner_key: &SecretKey,
    terms: &BondTerms,
    outpoint: OutPoint,
    value: Amount,
    confirmed_height: u32,
    next_height: u32,
    to: ScriptBuf,
    fee_rate: FeeRate,
) -> Result<Transaction, BondSpendError> {
    if terms.lock_blocks == 0 || terms.lock_blocks > consensus::bond::BOND_LOCK_BLOCKS_MAX {
        return Err(BondSpendError::LockOutOfRange(terms.lock_blocks));
    }
    let unlock = reclaimable_at(terms, confirmed_height);
    if u64::from(next_height) < unlock {
        return Err(BondSpendError::Locked {
            reclaimable_at: unlock,
            next_height: next_height.into(),
        });
    }
    let miner = miner_key.public_key(secp);
    let script = bond_witness_script(terms, &miner);
    let dust = to.minimal_non_dust();
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::from_height(terms.lock_blocks as u16),
            witness: Witness::from_slice(&[
                vec![0u8; SIGNATURE_BYTES_MAX],
                Vec::new(),
                script.to_bytes(),
            ]),
        }],
        output: vec![TxOut {
            value: Amount::ZERO,
            script_pubkey: to,
        }],
    };
    let fee = fee_rate
        .fee_vb(consensus::tx::fee_bytes(&tx))
        .ok_or(BondSpendError::FeeOutOfRange)?;
    let paid = value
        .checked_sub(fee)
        .filter(|paid| *paid >= dust)
        .ok_or(BondSpendError::ValueTooSmall { value, fee, dust })?;
    tx.output[0].value = paid;
    let signature = sign_input(secp, &tx, &script, value, miner_key)?;
    tx.input[0].witness = Witness::from_slice(&[signature, Vec::new(), script.to_bytes()]);
    Ok(tx)
}

/// The signature of input 0 of `tx` spending the P2WSH of `script`.
fn sign_input<C: Signing>(
    secp: &Secp256k1<C>,
    tx: &Transaction,
    script: &Script,
    value: Amount,
    key: &SecretKey,
) -> Result<Vec<u8>, BondSpendError> {
    Ok(consensus::bond::sign_p2wsh_input(
        secp, tx, script, value, key,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash as _;
    use bitcoin::secp256k1::PublicKey;
    use bitcoin::Txid;
    use consensus::bond::{check_slash_outputs, slash_outputs};
    use consensus::{check_tx_inputs, SpendContext, TxError};
    use primitives::Coin;
    use std::collections::HashMap;

    fn key(b: u8) -> SecretKey {
        SecretKey::from_slice(&[b; 32]).unwrap()
    }

    fn terms() -> BondTerms {
        BondTerms {
            slash_key: key(1).public_key(&Secp256k1::new()),
            lock_blocks: 5,
            bond_min: Amount::from_sat(1_000_000),
            finder_share_percent: 30,
        }
    }

    const BOND_HEIGHT: u32 = 10;

    fn bond_view(miner: &PublicKey, value: Amount) -> (OutPoint, HashMap<OutPoint, Coin>) {
        let outpoint = OutPoint::new(Txid::from_byte_array([9; 32]), 0);
        let coin = Coin {
            output: TxOut {
                value,
                script_pubkey: bond_script_pubkey(&terms(), miner),
            },
            height: BOND_HEIGHT,
            is_coinbase: false,
        };
        (outpoint, HashMap::from([(outpoint, coin)]))
    }

    fn at(height: u32) -> SpendContext {
        SpendContext {
            height,
            median_time_past: 0,
            coinbase_maturity_blocks: 100,
        }
    }

    fn p2wpkh(key: &SecretKey) -> ScriptBuf {
        let pk = bitcoin::CompressedPublicKey(key.public_key(&Secp256k1::new()));
        ScriptBuf::new_p2wpkh(&pk.wpubkey_hash())
    }

    #[test]
    fn reclaim_is_refused_before_the_lock_and_valid_from_it() {
        let secp = Secp256k1::new();
        let miner = key(2);
        let value = Amount::from_sat(2_000_000);
        let (outpoint, view) = bond_view(&miner.public_key(&secp), value);
        let rate = FeeRate::from_sat_per_vb_u32(2);
        let build = |next| {
            build_reclaim(
                &secp,
                &miner,
                &terms(),
                outpoint,
                value,
                BOND_HEIGHT,
                next,
                p2wpkh(&miner),
                rate,
            )
        };
        assert_eq!(reclaimable_at(&terms(), BOND_HEIGHT), 15);
        assert_eq!(
            build(14),
            Err(BondSpendError::Locked {
                reclaimable_at: 15,
                next_height: 14
            })
        );
        let tx = build(15).unwrap();
        assert_eq!(tx.version, Version::TWO);
        assert_eq!(tx.input[0].sequence, Sequence(5));
        assert_eq!(tx.input[0].witness.len(), 3);
        assert!(tx.input[0].witness.nth(1).unwrap().is_empty());
        assert_eq!(tx.output.len(), 1);
        assert_eq!(tx.output[0].script_pubkey, p2wpkh(&miner));

        let (fee, _) = check_tx_inputs(&tx, &view, &at(15)).unwrap();
        assert!(
            fee >= rate.fee_vb(consensus::tx::fee_bytes(&tx)).unwrap(),
            "fee {fee}"
        );
        assert!(
            fee <= rate.fee_vb(consensus::tx::fee_bytes(&tx) + 1).unwrap(),
            "fee {fee}"
        );
        // Consensus agrees about the lock: the same spend one block earlier is refused.
        assert!(matches!(
            check_tx_inputs(&tx, &view, &at(14)),
            Err(TxError::SequenceLock(_))
        ));
        // Another key cannot take the miner's branch.
        let thief = build_reclaim(
            &secp,
            &key(3),
            &terms(),
            outpoint,
            value,
            BOND_HEIGHT,
            15,
            p2wpkh(&key(3)),
            rate,
        )
        .unwrap();
        assert!(matches!(
            check_tx_inputs(&thief, &view, &at(15)),
            Err(TxError::ScriptFailed { .. })
        ));
    }

    #[test]
    fn reclaim_of_a_bond_too_small_for_its_fee_is_refused() {
        let secp = Secp256k1::new();
        let err = build_reclaim(
            &secp,
            &key(2),
            &terms(),
            OutPoint::null(),
            Amount::from_sat(400),
            BOND_HEIGHT,
            20,
            p2wpkh(&key(2)),
            FeeRate::from_sat_per_vb_u32(10),
        );
        assert!(matches!(err, Err(BondSpendError::ValueTooSmall { .. })));
    }

    #[test]
    fn slash_is_valid_right_after_the_bond_confirms_and_pays_the_finder_and_the_burn() {
        let secp = Secp256k1::new();
        let miner = key(2).public_key(&secp);
        let value = Amount::from_sat(1_000_000);
        let (outpoint, view) = bond_view(&miner, value);
        let finder = p2wpkh(&key(4));
        let fee = Amount::from_sat(1_000);
        let fee_max = Amount::from_sat(10_000);
        let tx = build_slash(
            &secp,
            &terms(),
            outpoint,
            value,
            &miner,
            &key(1),
            finder.clone(),
            fee,
            fee_max,
        )
        .unwrap();
        assert_eq!(
            check_tx_inputs(&tx, &view, &at(BOND_HEIGHT + 1)).unwrap().0,
            fee
        );
        assert_eq!(
            tx.output,
            slash_outputs(&terms(), value, fee, fee_max, finder.clone()).unwrap()
        );
        assert_eq!(
            check_slash_outputs(&tx, &terms(), value, fee_max, &finder),
            Ok(())
        );
        assert_eq!(tx.output[0].value, Amount::from_sat(299_700));
        assert_eq!(tx.output[1].script_pubkey, consensus::tx::burn_script());

        // Only the chain's slashing key may slash.
        assert_eq!(
            build_slash(
                &secp,
                &terms(),
                outpoint,
                value,
                &miner,
                &key(3),
                finder.clone(),
                fee,
                fee_max
            ),
            Err(BondError::NotSlashKey)
        );
        // A slash signed by another key through the IF branch fails in the interpreter.
        let other = BondTerms {
            slash_key: key(3).public_key(&secp),
            ..terms()
        };
        let mut forged = build_slash(
            &secp,
            &other,
            outpoint,
            value,
            &miner,
            &key(3),
            finder,
            fee,
            fee_max,
        )
        .unwrap();
        // Put the real witness script back so only the signature is wrong.
        let mut items: Vec<Vec<u8>> = forged.input[0].witness.iter().map(<[u8]>::to_vec).collect();
        items[2] = bond_witness_script(&terms(), &miner).to_bytes();
        forged.input[0].witness = Witness::from_slice(&items);
        assert!(matches!(
            check_tx_inputs(&forged, &view, &at(BOND_HEIGHT + 1)),
            Err(TxError::ScriptFailed { .. })
        ));
    }

    #[test]
    fn a_wallet_bond_pays_the_consensus_template_with_change_and_is_valid() {
        let secp = Secp256k1::new();
        let wallet = crate::Wallet::new(key(2), bitcoin::Network::Regtest);
        let funding = OutPoint::new(Txid::from_byte_array([7; 32]), 1);
        let coins = vec![(
            funding,
            Coin {
                output: TxOut {
                    value: Amount::from_int_btc(10),
                    script_pubkey: wallet.script_pubkey().to_owned(),
                },
                height: 0,
                is_coinbase: true,
            },
        )];
        let tip = crate::ChainTip {
            height: 0,
            coinbase_maturity_blocks: 1,
        };
        let rate = FeeRate::from_sat_per_vb_u32(1);
        let value = Amount::from_int_btc(2);
        let tx = wallet
            .build_bond(&coins, tip, &terms(), value, rate)
            .unwrap();
        let expected = bond_script_pubkey(&terms(), &key(2).public_key(&secp));
        assert_eq!(tx.output[0].script_pubkey, expected);
        assert!(wallet.is_own_bond(&terms(), &tx.output[0].script_pubkey));
        assert!(!wallet.is_own_bond(
            &BondTerms {
                lock_blocks: 6,
                ..terms()
            },
            &tx.output[0].script_pubkey
        ));
        assert_eq!(tx.output[0].value, value);
        assert_eq!(tx.output[1].script_pubkey, *wallet.script_pubkey());
        let view: HashMap<OutPoint, Coin> = coins.into_iter().collect();
        let ctx = SpendContext {
            coinbase_maturity_blocks: 1,
            ..at(1)
        };
        let (fee, _) = check_tx_inputs(&tx, &view, &ctx).unwrap();
        assert!(fee > Amount::ZERO);
        assert_eq!(tx.output[1].value + fee + value, Amount::from_int_btc(10));
        assert_eq!(
            wallet.build_bond(
                &view.clone().into_iter().collect::<Vec<_>>(),
                tip,
                &terms(),
                Amount::from_sat(999_999),
                rate
            ),
            Err(crate::WalletError::BondBelowMinimum {
                value: Amount::from_sat(999_999),
                min: Amount::from_sat(1_000_000)
            })
        );
        // Reclaimed through the wallet, to the wallet's own address.
        let reclaim = wallet
            .build_reclaim(
                &terms(),
                OutPoint::new(tx.compute_txid(), 0),
                value,
                1,
                crate::ChainTip {
                    height: 5,
                    coinbase_maturity_blocks: 1,
                },
                rate,
            )
            .unwrap();
        assert_eq!(reclaim.output[0].script_pubkey, *wallet.script_pubkey());
    }
}
