//! One case per transaction rule, context-free and against the coin set, plus the P2TR key path.

use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, TapTweak};
use bitcoin::secp256k1::Message;
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{
    absolute::LockTime, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxOut, Witness,
};
use consensus::tx::MAX_MONEY;
use consensus::{check_transaction, check_tx_inputs, SpendContext, TxError};
use primitives::Coin;
use std::collections::HashMap;
use testkit::{key, p2wpkh, TestChain};

const TX_BYTES_MAX: usize = 100_000;

fn funded() -> (TestChain, (OutPoint, TxOut), HashMap<OutPoint, Coin>) {
    let chain = TestChain::new();
    let prev = (
        OutPoint::new(bitcoin::Txid::from_byte_array([1; 32]), 0),
        TxOut {
            value: Amount::from_sat(100_000),
            script_pubkey: p2wpkh(&chain.secp, &key(1)),
        },
    );
    let coins = HashMap::from([(
        prev.0,
        Coin {
            output: prev.1.clone(),
            height: 1,
            is_coinbase: false,
        },
    )]);
    (chain, prev, coins)
}

fn ctx() -> SpendContext {
    SpendContext {
        height: 10,
        median_time_past: 1_700_000_000,
        coinbase_maturity_blocks: 5,
    }
}

fn pay(chain: &TestChain, value: u64) -> TxOut {
    TxOut {
        value: Amount::from_sat(value),
        script_pubkey: p2wpkh(&chain.secp, &key(2)),
    }
}

#[test]
fn context_free_rules_each_reject_their_violation() {
    let (chain, prev, _) = funded();
    let good = chain.spend(
        std::slice::from_ref(&prev),
        vec![pay(&chain, 90_000)],
        &key(1),
    );
    assert_eq!(check_transaction(&good, TX_BYTES_MAX), Ok(()));
    let edit = |f: &dyn Fn(&mut Transaction)| {
        let mut tx = good.clone();
        f(&mut tx);
        tx
    };
    let null = OutPoint::null();
    let cases: Vec<(&str, Transaction, TxError)> = vec![
        ("no inputs", edit(&|t| t.input.clear()), TxError::NoInputs),
        (
            "no outputs",
            edit(&|t| t.output.clear()),
            TxError::NoOutputs,
        ),
        (
            "output above the money cap",
            edit(&|t| t.output[0].value = MAX_MONEY + Amount::ONE_SAT),
            TxError::OutputTooLarge {
                index: 0,
                value: MAX_MONEY + Amount::ONE_SAT,
            },
        ),
        (
            "outputs summing above the money cap",
            edit(&|t| {
                t.output[0].value = MAX_MONEY;
                t.output.push(t.output[0].clone());
            }),
            TxError::OutputsOverflow,
        ),
        (
            "P2PKH output",
            edit(&|t| {
                t.output[0].script_pubkey =
                    ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array([1; 20]))
            }),
            TxError::UnsupportedOutputScript { index: 0 },
        ),
        (
            "OP_RETURN with value",
            edit(&|t| t.output[0].script_pubkey = ScriptBuf::new_op_return([0u8; 4])),
            TxError::OpReturnWithValue { index: 0 },
        ),
        (
            "null prevout in a second input",
            edit(&|t| {
                let mut input = t.input[0].clone();
                input.previous_output = null;
                t.input.push(input);
            }),
            TxError::NullPrevout { index: 1 },
        ),
        (
            "duplicate input",
            edit(&|t| t.input.push(t.input[0].clone())),
            TxError::DuplicateInput(prev.0),
        ),
        (
            "coinbase script_sig too short",
            edit(&|t| {
                t.input[0].previous_output = null;
                t.input[0].script_sig = ScriptBuf::from_bytes(vec![1]);
            }),
            TxError::CoinbaseScriptSigLength { len: 1 },
        ),
    ];
    for (name, tx, expected) in cases {
        assert_eq!(
            check_transaction(&tx, TX_BYTES_MAX),
            Err(expected),
            "case: {name}"
        );
    }
    let bytes = good.total_size();
    assert_eq!(
        check_transaction(&good, bytes - 1),
        Err(TxError::Oversize {
            bytes,
            max: bytes - 1
        })
    );
}

#[test]
fn input_rules_each_reject_their_violation() {
    let (chain, prev, coins) = funded();
    let good = chain.spend(
        std::slice::from_ref(&prev),
        vec![pay(&chain, 90_000)],
        &key(1),
    );
    assert_eq!(
        check_tx_inputs(&good, &coins, &ctx()).map(|(fee, _)| fee),
        Ok(Amount::from_sat(10_000))
    );
    let overspend = chain.spend(
        std::slice::from_ref(&prev),
        vec![pay(&chain, 100_001)],
        &key(1),
    );
    let mut tampered = good.clone();
    tampered.output[0].value = Amount::from_sat(95_000);
    let wrong_key = chain.spend(
        std::slice::from_ref(&prev),
        vec![pay(&chain, 90_000)],
        &key(3),
    );
    let mut with_script_sig = good.clone();
    with_script_sig.input[0].script_sig = ScriptBuf::from_bytes(vec![0x51]);
    let mut short_witness = good.clone();
    short_witness.input[0].witness = Witness::from_slice(&[vec![1u8; 71]]);
    let locked = good.clone().tap_lock(10);
    let coinbase = chain.coinbase(3, Amount::ONE_BTC, &key(1));

    let cases: Vec<(&str, Transaction, TxError)> = vec![
        (
            "outputs exceed inputs",
            overspend,
            TxError::InsufficientInputs {
                inputs: Amount::from_sat(100_000),
                outputs: Amount::from_sat(100_001),
            },
        ),
        (
            "output changed after signing",
            tampered,
            TxError::BadSignature { index: 0 },
        ),
        (
            "signed by a key that does not own the output",
            wrong_key,
            TxError::PubkeyHashMismatch { index: 0 },
        ),
        (
            "non-empty script_sig on a witness spend",
            with_script_sig,
            TxError::NonEmptyScriptSig { index: 0 },
        ),
        (
            "witness with one item",
            short_witness,
            TxError::MalformedWitness {
                index: 0,
                reason: "P2WPKH needs exactly [signature, public key]",
            },
        ),
        (
            "lock time at the current height",
            locked,
            TxError::NonFinal { lock_time: 10 },
        ),
        (
            "coinbase outside a block",
            coinbase,
            TxError::UnexpectedCoinbase,
        ),
    ];
    for (name, tx, expected) in cases {
        assert_eq!(
            check_tx_inputs(&tx, &coins, &ctx()).map(|_| ()),
            Err(expected),
            "case: {name}"
        );
    }
}

/// Sets an enabled height lock time and re-signs, for the non-final case.
trait TapLock {
    fn tap_lock(self, height: u32) -> Transaction;
}

impl TapLock for Transaction {
    fn tap_lock(self, height: u32) -> Transaction {
        let (chain, prev, _) = funded();
        let mut tx = chain.spend(std::slice::from_ref(&prev), self.output.clone(), &key(1));
        tx.lock_time = LockTime::from_height(height).unwrap();
        tx.input[0].sequence = Sequence::ENABLE_LOCKTIME_NO_RBF;
        // Re-sign with the final lock time and sequence.
        let mut unsigned = tx.clone();
        unsigned.input[0].witness = Witness::new();
        let sighash = SighashCache::new(&unsigned)
            .p2wpkh_signature_hash(
                0,
                &prev.1.script_pubkey,
                prev.1.value,
                bitcoin::EcdsaSighashType::All,
            )
            .unwrap();
        let sig = chain
            .secp
            .sign_ecdsa(&Message::from_digest(sighash.to_byte_array()), &key(1));
        tx.input[0].witness = Witness::p2wpkh(
            &bitcoin::ecdsa::Signature::sighash_all(sig),
            &key(1).public_key(&chain.secp),
        );
        tx
    }
}

#[test]
fn lock_time_below_the_spending_height_is_final() {
    let (chain, prev, coins) = funded();
    let tx = chain
        .spend(
            std::slice::from_ref(&prev),
            vec![pay(&chain, 90_000)],
            &key(1),
        )
        .tap_lock(9);
    assert!(check_tx_inputs(&tx, &coins, &ctx()).is_ok());
}

#[test]
fn p2tr_key_path_spend_verifies_and_a_wrong_signature_fails() {
    let chain = TestChain::new();
    let secp = &chain.secp;
    let keypair = Keypair::from_secret_key(secp, &key(7));
    let (internal, _) = keypair.x_only_public_key();
    let script = ScriptBuf::new_p2tr(secp, internal, None);
    let prev = TxOut {
        value: Amount::from_sat(50_000),
        script_pubkey: script,
    };
    let outpoint = OutPoint::new(bitcoin::Txid::from_byte_array([2; 32]), 1);
    let coins = HashMap::from([(
        outpoint,
        Coin {
            output: prev.clone(),
            height: 1,
            is_coinbase: false,
        },
    )]);
    let mut tx = chain.spend(&[], vec![pay(&chain, 40_000)], &key(7));
    tx.input.push(bitcoin::TxIn {
        previous_output: outpoint,
        ..Default::default()
    });
    let sighash = SighashCache::new(&tx)
        .taproot_key_spend_signature_hash(
            0,
            &Prevouts::All(std::slice::from_ref(&prev)),
            TapSighashType::Default,
        )
        .unwrap();
    let tweaked = keypair.tap_tweak(secp, None);
    let msg = Message::from_digest(sighash.to_byte_array());
    let sig = secp.sign_schnorr_no_aux_rand(&msg, &tweaked.to_keypair());
    let signature = bitcoin::taproot::Signature {
        signature: sig,
        sighash_type: TapSighashType::Default,
    };
    tx.input[0].witness = Witness::p2tr_key_spend(&signature);
    assert_eq!(
        check_tx_inputs(&tx, &coins, &ctx()).map(|(fee, _)| fee),
        Ok(Amount::from_sat(10_000))
    );

    let untweaked = secp.sign_schnorr_no_aux_rand(&msg, &keypair);
    tx.input[0].witness = Witness::p2tr_key_spend(&bitcoin::taproot::Signature {
        signature: untweaked,
        sighash_type: TapSighashType::Default,
    });
    assert_eq!(
        check_tx_inputs(&tx, &coins, &ctx()).map(|_| ()),
        Err(TxError::BadSignature { index: 0 })
    );
}
