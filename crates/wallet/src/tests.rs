//! Payments checked the way consensus will check them: each input's signature is verified
//! independently of the code that made it.

use crate::payment::TX_WEIGHT_MAX_WU;
use crate::{Balance, ChainTip, Wallet, WalletError};
use bitcoin::hashes::{hash160, Hash};
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{Address, Amount, FeeRate, Network, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use primitives::Coin;

fn wallet(seed: u8) -> Wallet {
    Wallet::new(
        SecretKey::from_slice(&[seed; 32]).unwrap(),
        Network::Regtest,
    )
}

/// A coin locked to `script`, with an outpoint unique to `n`.
fn coin_for(
    script: &ScriptBuf,
    n: u32,
    value: u64,
    height: u32,
    is_coinbase: bool,
) -> (OutPoint, Coin) {
    let mut txid = [0u8; 32];
    txid[..4].copy_from_slice(&n.to_le_bytes());
    (
        OutPoint::new(Txid::from_byte_array(txid), n % 3),
        Coin {
            output: TxOut {
                value: Amount::from_sat(value),
                script_pubkey: script.clone(),
            },
            height,
            is_coinbase,
        },
    )
}

/// Ordinary (non-coinbase) coins of `w` with the given values.
fn coins(w: &Wallet, values: &[u64]) -> Vec<(OutPoint, Coin)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| coin_for(&w.script_pubkey().to_owned(), i as u32, *v, 1, false))
        .collect()
}

const TIP: ChainTip = ChainTip {
    height: 200,
    coinbase_maturity_blocks: 100,
};

fn rate(sat_per_vb: u32) -> FeeRate {
    FeeRate::from_sat_per_vb_u32(sat_per_vb)
}

fn destination() -> Address {
    wallet(200).address()
}

/// The coins `tx` spends, looked up in `coins`, in input order.
fn spent_outputs(tx: &Transaction, coins: &[(OutPoint, Coin)]) -> Vec<TxOut> {
    tx.input
        .iter()
        .map(|txin| {
            coins
                .iter()
                .find(|(outpoint, _)| *outpoint == txin.previous_output)
                .expect("the transaction spends only listed coins")
                .1
                .output
                .clone()
        })
        .collect()
}

/// What consensus checks of a P2WPKH spend, written without the wallet's code: the witness is
/// `[DER signature || SIGHASH_ALL, compressed key]`, the key's HASH160 is the program of the
/// spent script, S is low, and the signature verifies over the BIP143 digest.
fn verify_p2wpkh_input(tx: &Transaction, index: usize, spent: &TxOut) -> Result<(), String> {
    let witness = &tx.input[index].witness;
    if witness.len() != 2 {
        return Err(format!("witness has {} items", witness.len()));
    }
    let sig_bytes = witness.nth(0).unwrap();
    let key_bytes = witness.nth(1).unwrap();
    let (&sighash_byte, der) = sig_bytes.split_last().ok_or("empty signature")?;
    if sighash_byte != EcdsaSighashType::All as u8 {
        return Err(format!("sighash type {sighash_byte:#x}"));
    }
    let signature =
        bitcoin::secp256k1::ecdsa::Signature::from_der(der).map_err(|e| e.to_string())?;
    let mut normalized = signature;
    normalized.normalize_s();
    if normalized != signature {
        return Err("high-S signature".into());
    }
    if key_bytes.len() != 33 {
        return Err("key is not compressed".into());
    }
    let key = PublicKey::from_slice(key_bytes).map_err(|e| e.to_string())?;
    let mut expected_script = vec![0x00, 0x14];
    expected_script.extend_from_slice(hash160::Hash::hash(key_bytes).as_byte_array());
    if spent.script_pubkey.as_bytes() != expected_script.as_slice() {
        return Err("witness key does not hash to the spent script".into());
    }
    let sighash = SighashCache::new(tx)
        .p2wpkh_signature_hash(
            index,
            &spent.script_pubkey,
            spent.value,
            EcdsaSighashType::All,
        )
        .map_err(|e| e.to_string())?;
    Secp256k1::verification_only()
        .verify_ecdsa(
            &Message::from_digest(sighash.to_byte_array()),
            &signature,
            &key,
        )
        .map_err(|e| e.to_string())
}

fn verify_all(tx: &Transaction, coins: &[(OutPoint, Coin)]) -> Result<(), String> {
    for (index, spent) in spent_outputs(tx, coins).iter().enumerate() {
        verify_p2wpkh_input(tx, index, spent).map_err(|e| format!("input {index}: {e}"))?;
    }
    Ok(())
}

fn fee_of(tx: &Transaction, coins: &[(OutPoint, Coin)]) -> u64 {
    let inputs: u64 = spent_outputs(tx, coins)
        .iter()
        .map(|o| o.value.to_sat())
        .sum();
    let outputs: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    inputs - outputs
}

#[test]
fn address_is_bech32_p2wpkh_of_the_chain_network() {
    let w = wallet(1);
    let address = w.address().to_string();
    assert!(address.starts_with("bcrt1q"), "{address}");
    assert_eq!(w.address().script_pubkey().as_script(), w.script_pubkey());
    assert!(w.script_pubkey().is_p2wpkh());
    let mainnet = Wallet::new(SecretKey::from_slice(&[1; 32]).unwrap(), Network::Bitcoin);
    assert!(mainnet.address().to_string().starts_with("bc1q"));
    assert_eq!(mainnet.script_pubkey(), w.script_pubkey());
    assert!(
        !format!("{w:?}").contains(&hex::encode([1u8; 32])),
        "Debug leaks the key"
    );
}

#[test]
fn every_input_signature_verifies_as_consensus_checks_it() {
    let w = wallet(1);
    let coins = coins(&w, &[40_000, 25_000, 30_000, 10_000]);
    let tx = w
        .build_payment(
            &coins,
            TIP,
            &destination(),
            Amount::from_sat(80_000),
            rate(2),
        )
        .unwrap();
    assert_eq!(tx.input.len(), 3, "largest first: 40k + 30k + 25k");
    verify_all(&tx, &coins).unwrap();

    // The check can fail: BIP143 commits to the outputs and to the spent value.
    let mut tampered = tx.clone();
    tampered.output[0].value += Amount::from_sat(1);
    assert!(verify_p2wpkh_input(&tampered, 0, &spent_outputs(&tx, &coins)[0]).is_err());
    let mut wrong_value = spent_outputs(&tx, &coins)[1].clone();
    wrong_value.value += Amount::from_sat(1);
    assert!(verify_p2wpkh_input(&tx, 1, &wrong_value).is_err());
    let foreign = TxOut {
        script_pubkey: wallet(2).script_pubkey().to_owned(),
        ..spent_outputs(&tx, &coins)[2].clone()
    };
    assert_eq!(
        verify_p2wpkh_input(&tx, 2, &foreign),
        Err("witness key does not hash to the spent script".into())
    );
}

#[test]
fn change_returns_to_own_address_and_fee_matches_rate() {
    let w = wallet(1);
    let coins = coins(&w, &[100_000, 50_000, 7_000, 3_000, 900]);
    for sat_per_vb in [1u32, 2, 7, 25] {
        let amount = Amount::from_sat(120_000);
        let tx = w
            .build_payment(&coins, TIP, &destination(), amount, rate(sat_per_vb))
            .unwrap();
        verify_all(&tx, &coins).unwrap();
        assert_eq!(tx.output.len(), 2, "{sat_per_vb} sat/vB");
        assert_eq!(tx.output[0].value, amount);
        assert_eq!(tx.output[0].script_pubkey, destination().script_pubkey());
        assert_eq!(tx.output[1].script_pubkey.as_script(), w.script_pubkey());
        let fee = fee_of(&tx, &coins);
        let bytes = consensus::tx::fee_bytes(&tx);
        let requested = u64::from(sat_per_vb) * bytes;
        // At most one byte's fee over per input whose signature came out a byte short.
        let slack = u64::from(sat_per_vb) * tx.input.len() as u64;
        assert!(
            fee >= requested && fee <= requested + slack,
            "{sat_per_vb} sat/byte: fee {fee} for {bytes} bytes"
        );
    }
}

#[test]
fn one_input_two_output_payment_is_priced_by_its_222_bytes() {
    // Fixes the size estimate: 1-in/2-out P2WPKH is 222 bytes in full (Bitcoin's 141 vB),
    // 1-in/1-out 191 bytes (110 vB). Fees count full bytes (`consensus::tx::fee_bytes`).
    let w = wallet(1);
    let amount = 50_000;
    let with_change = coins(&w, &[amount + 222 * 3 + 10_000]);
    let tx = w
        .build_payment(
            &with_change,
            TIP,
            &destination(),
            Amount::from_sat(amount),
            rate(3),
        )
        .unwrap();
    assert_eq!(fee_of(&tx, &with_change), 222 * 3);
    assert_eq!(tx.output[1].value, Amount::from_sat(10_000));
    assert!(
        consensus::tx::fee_bytes(&tx) <= 222,
        "{}",
        consensus::tx::fee_bytes(&tx)
    );
    assert!(tx.vsize() <= 141, "{}", tx.vsize());
}

#[test]
fn change_at_dust_threshold_is_kept_and_below_it_goes_to_fee() {
    let w = wallet(1);
    let amount = 50_000;
    let fee_two_outputs = 222 * 5;
    let dust = 294;

    let coins_at = coins(&w, &[amount + fee_two_outputs + dust]);
    let tx = w
        .build_payment(
            &coins_at,
            TIP,
            &destination(),
            Amount::from_sat(amount),
            rate(5),
        )
        .unwrap();
    assert_eq!(tx.output.len(), 2);
    assert_eq!(tx.output[1].value, Amount::from_sat(dust));
    verify_all(&tx, &coins_at).unwrap();

    let coins_below = coins(&w, &[amount + fee_two_outputs + dust - 1]);
    let tx = w
        .build_payment(
            &coins_below,
            TIP,
            &destination(),
            Amount::from_sat(amount),
            rate(5),
        )
        .unwrap();
    assert_eq!(tx.output.len(), 1, "dust change is dropped");
    assert_eq!(tx.output[0].value, Amount::from_sat(amount));
    assert_eq!(fee_of(&tx, &coins_below), fee_two_outputs + dust - 1);
    assert!(fee_of(&tx, &coins_below) >= 5 * consensus::tx::fee_bytes(&tx));
    verify_all(&tx, &coins_below).unwrap();
}

#[test]
fn exact_amount_plus_fee_needs_no_change() {
    let w = wallet(1);
    let coins = coins(&w, &[20_000 + 191 * 2]);
    let tx = w
        .build_payment(
            &coins,
            TIP,
            &destination(),
            Amount::from_sat(20_000),
            rate(2),
        )
        .unwrap();
    assert_eq!(tx.output.len(), 1);
    assert_eq!(fee_of(&tx, &coins), 382);
    let short = coins_minus_one(&coins);
    assert_eq!(
        w.build_payment(
            &short,
            TIP,
            &destination(),
            Amount::from_sat(20_000),
            rate(2)
        ),
        Err(WalletError::InsufficientFunds {
            needed: Amount::from_sat(20_382),
            available: Amount::from_sat(20_381),
        })
    );
}

fn coins_minus_one(coins: &[(OutPoint, Coin)]) -> Vec<(OutPoint, Coin)> {
    let mut out = coins.to_vec();
    out[0].1.output.value -= Amount::from_sat(1);
    out
}

#[test]
fn insufficient_funds_reports_need_with_fee_and_ignores_foreign_coins() {
    let w = wallet(1);
    let mut coins = coins(&w, &[10_000, 5_000]);
    coins.push(coin_for(
        &wallet(2).script_pubkey().to_owned(),
        99,
        1_000_000,
        1,
        false,
    ));
    // Two inputs, one output: 339 bytes (177 vB).
    assert_eq!(
        w.build_payment(
            &coins,
            TIP,
            &destination(),
            Amount::from_sat(20_000),
            rate(1)
        ),
        Err(WalletError::InsufficientFunds {
            needed: Amount::from_sat(20_339),
            available: Amount::from_sat(15_000),
        })
    );
}

#[test]
fn payment_below_dust_is_refused() {
    let w = wallet(1);
    let coins = coins(&w, &[100_000]);
    assert_eq!(
        w.build_payment(&coins, TIP, &destination(), Amount::from_sat(293), rate(1)),
        Err(WalletError::AmountBelowDust {
            amount: Amount::from_sat(293),
            threshold: Amount::from_sat(294),
        })
    );
    assert!(w
        .build_payment(&coins, TIP, &destination(), Amount::from_sat(294), rate(1))
        .is_ok());
}

#[test]
fn address_of_another_network_is_refused() {
    let w = wallet(1);
    let coins = coins(&w, &[100_000]);
    let mainnet = Wallet::new(SecretKey::from_slice(&[3; 32]).unwrap(), Network::Bitcoin);
    assert!(matches!(
        w.build_payment(
            &coins,
            TIP,
            &mainnet.address(),
            Amount::from_sat(10_000),
            rate(1)
        ),
        Err(WalletError::WrongNetwork {
            network: Network::Regtest,
            ..
        })
    ));
}

#[test]
fn immature_coinbase_is_excluded_then_spent_one_block_later() {
    let w = wallet(1);
    let script = w.script_pubkey().to_owned();
    let coinbase = coin_for(&script, 7, 5_000_000_000, 101, true);
    let coins = vec![coinbase.clone()];
    let amount = Amount::from_sat(1_000_000);
    let at = |height| ChainTip {
        height,
        coinbase_maturity_blocks: 100,
    };

    assert_eq!(
        w.build_payment(&coins, at(199), &destination(), amount, rate(1)),
        Err(WalletError::NoSpendableCoins {
            immature: Amount::from_sat(5_000_000_000)
        })
    );
    assert_eq!(
        w.balance(&coins, at(199)),
        Balance {
            confirmed_spendable: Amount::ZERO,
            immature: Amount::from_sat(5_000_000_000),
        }
    );

    let tx = w
        .build_payment(&coins, at(200), &destination(), amount, rate(1))
        .unwrap();
    assert_eq!(tx.input[0].previous_output, coinbase.0);
    verify_all(&tx, &coins).unwrap();
    assert_eq!(
        w.balance(&coins, at(200)).confirmed_spendable,
        Amount::from_sat(5_000_000_000)
    );
}

#[test]
fn immature_coinbase_is_not_selected_beside_spendable_coins() {
    let w = wallet(1);
    let script = w.script_pubkey().to_owned();
    let coins = vec![
        coin_for(&script, 1, 5_000_000_000, 150, true),
        coin_for(&script, 2, 60_000, 10, false),
    ];
    let tx = w
        .build_payment(
            &coins,
            TIP,
            &destination(),
            Amount::from_sat(50_000),
            rate(1),
        )
        .unwrap();
    assert_eq!(tx.input.len(), 1);
    assert_eq!(tx.input[0].previous_output, coins[1].0);
}

#[test]
fn balance_splits_owned_coins_by_maturity() {
    let w = wallet(1);
    let script = w.script_pubkey().to_owned();
    let coins = vec![
        coin_for(&script, 1, 1_000, 10, false),
        coin_for(&script, 2, 2_000, 101, true),
        coin_for(&script, 3, 4_000, 102, true),
        coin_for(&wallet(2).script_pubkey().to_owned(), 4, 8_000, 10, false),
    ];
    let balance = w.balance(&coins, TIP);
    assert_eq!(
        balance,
        Balance {
            confirmed_spendable: Amount::from_sat(3_000),
            immature: Amount::from_sat(4_000),
        }
    );
    assert_eq!(balance.total(), Amount::from_sat(7_000));
}

#[test]
fn selection_is_largest_first_and_independent_of_listing_order() {
    let w = wallet(1);
    let coins = coins(&w, &[5_000, 70_000, 5_000, 30_000, 60_000]);
    let mut reversed = coins.clone();
    reversed.reverse();
    let amount = Amount::from_sat(100_000);
    let a = w
        .build_payment(&coins, TIP, &destination(), amount, rate(1))
        .unwrap();
    let b = w
        .build_payment(&reversed, TIP, &destination(), amount, rate(1))
        .unwrap();
    assert_eq!(a, b);
    let spent: Vec<u64> = spent_outputs(&a, &coins)
        .iter()
        .map(|o| o.value.to_sat())
        .collect();
    assert_eq!(spent, vec![70_000, 60_000]);
}

#[test]
fn payment_needing_too_many_inputs_is_refused() {
    let w = wallet(1);
    let values = vec![10_000u64; 2_000];
    let coins = coins(&w, &values);
    // About 1,470 P2WPKH inputs fit in 400,000 weight units; this needs more than 1,500.
    match w.build_payment(
        &coins,
        TIP,
        &destination(),
        Amount::from_sat(15_000_000),
        rate(1),
    ) {
        Err(WalletError::TransactionTooLarge {
            inputs,
            weight_wu,
            weight_max_wu,
        }) => {
            assert_eq!(weight_max_wu, TX_WEIGHT_MAX_WU);
            assert!(weight_wu > TX_WEIGHT_MAX_WU);
            assert!((1_400..1_500).contains(&inputs), "{inputs}");
        }
        other => panic!("expected TransactionTooLarge, got {other:?}"),
    }
}

#[test]
fn no_coins_at_all_is_its_own_error() {
    let w = wallet(1);
    let foreign = coins(&wallet(2), &[1_000_000]);
    assert_eq!(
        w.build_payment(
            &foreign,
            TIP,
            &destination(),
            Amount::from_sat(10_000),
            rate(1)
        ),
        Err(WalletError::NoSpendableCoins {
            immature: Amount::ZERO
        })
    );
}

#[test]
fn absurd_fee_rate_is_an_error_not_a_panic() {
    let w = wallet(1);
    let coins = coins(&w, &[100_000]);
    let result = w.build_payment(
        &coins,
        TIP,
        &destination(),
        Amount::from_sat(10_000),
        FeeRate::from_sat_per_kwu(u64::MAX / 4),
    );
    assert_eq!(result, Err(WalletError::ValueOutOfRange));
}
