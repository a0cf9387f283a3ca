//! Coin selection, fee, change and signing of a payment from P2WPKH coins.
//!
//! # Coin selection
//!
//! Largest first: spendable coins are sorted by value, largest first, ties broken by outpoint
//! (txid, then output index, ascending), and taken in that order until they pay the amount and
//! the fee. The result depends only on the coin set, never on the order the caller lists it in,
//! and uses the fewest inputs any selection could.
//!
//! # Fee
//!
//! `fee = fee_rate × fee_bytes`, where `fee_bytes` ([`consensus::tx::fee_bytes`]) counts every
//! byte of the full serialization, witness included: this chain's block limit counts full
//! bytes, so its mempool prices them (a rate quoted per vbyte paid too little for witness
//! spends). The size is that of the transaction with every input's witness at its largest: a
//! 71-byte signature (DER at most 70 bytes, because signing grinds for a low R value and
//! secp256k1 always gives a low S, plus the sighash byte) and a 33-byte compressed key. The
//! signed transaction is never larger than that, and is smaller only when a signature's R or S
//! happens to start with a zero byte (about 1 input in 64, by 1 byte), so the fee is never below
//! the requested rate and exceeds it by at most one byte's fee per such input.
//!
//! # Change
//!
//! Outputs: the payment first, then change to the wallet's own script if any. Change is added
//! when what is left after the amount and the fee of the two-output transaction reaches the dust
//! threshold of the change script (294 sat for P2WPKH: Bitcoin Core's `GetDustThreshold` at its
//! default 3 sat/vB dust relay fee). Otherwise there is no change output and the remainder, less
//! than that threshold plus the change output's own fee, goes to the fee.
//!
//! # Signing
//!
//! Every input is signed with `SIGHASH_ALL` over its BIP143 digest (the P2WPKH script code of
//! the coin's script and the coin's value), with a low-R, low-S ECDSA signature; the witness is
//! `[signature || 0x01, compressed public key]`. Version 2, lock time 0, every sequence final.

use crate::wallet::WalletError;
use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::{All, Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    ecdsa, Amount, CompressedPublicKey, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxOut, Witness,
};

/// Largest signature with its sighash byte that [`sign`] produces: a DER signature with a
/// low-R (at most 32-byte) R and a low-S (at most 32-byte) S is at most 70 bytes, plus 1.
pub const P2WPKH_SIGNATURE_BYTES_MAX: usize = 71;

/// Bytes of a compressed secp256k1 public key.
pub const COMPRESSED_PUBLIC_KEY_BYTES: usize = 33;

/// Heaviest transaction the wallet builds: Bitcoin Core's `MAX_STANDARD_TX_WEIGHT`. Heavier
/// transactions are not relayed by Bitcoin's rules and would crowd a block of the default
/// 1 MB limit; a payment that needs more inputs should be preceded by a consolidation.
pub const TX_WEIGHT_MAX_WU: u64 = 400_000;

/// What to pay, independent of which key pays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    pub destination: ScriptBuf,
    pub amount: Amount,
    pub fee_rate: FeeRate,
    pub change_script: ScriptBuf,
}

/// A selected, unsigned payment: the transaction (with empty witnesses) and, in input order,
/// the value of each coin it spends (BIP143 signs it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentPlan {
    pub unsigned: Transaction,
    pub spent_values: Vec<Amount>,
    pub fee: Amount,
}

/// Selects coins from `spendable` (outpoints and values of coins the caller may spend now) and
/// sets the fee and change, as the module documentation describes. `immature` is only reported
/// when there is nothing to spend.
pub fn plan(
    request: &PaymentRequest,
    mut spendable: Vec<(OutPoint, Amount)>,
    immature: Amount,
) -> Result<PaymentPlan, WalletError> {
    let dust_threshold = request.destination.minimal_non_dust();
    if request.amount < dust_threshold {
        return Err(WalletError::AmountBelowDust {
            amount: request.amount,
            threshold: dust_threshold,
        });
    }
    if spendable.is_empty() {
        return Err(WalletError::NoSpendableCoins { immature });
    }
    spendable.sort_by(|(a_outpoint, a_value), (b_outpoint, b_value)| {
        b_value.cmp(a_value).then(a_outpoint.cmp(b_outpoint))
    });
    let available = spendable
        .iter()
        .try_fold(Amount::ZERO, |sum, (_, value)| sum.checked_add(*value))
        .ok_or(WalletError::ValueOutOfRange)?;

    let payment = TxOut {
        value: request.amount,
        script_pubkey: request.destination.clone(),
    };
    let change_placeholder = TxOut {
        value: Amount::ZERO,
        script_pubkey: request.change_script.clone(),
    };
    let change_dust = request.change_script.minimal_non_dust();

    // What spending everything without change would need: if even that is short, no selection
    // can pay, and this is the figure the user has to reach.
    let everything = estimation_tx(
        spendable.iter().map(|(outpoint, _)| *outpoint),
        vec![payment.clone()],
    );
    let needed = request
        .amount
        .checked_add(fee_for(request.fee_rate, &everything)?)
        .ok_or(WalletError::ValueOutOfRange)?;
    if available < needed {
        return Err(WalletError::InsufficientFunds { needed, available });
    }

    let mut tx = estimation_tx(std::iter::empty(), vec![payment]);
    let mut spent_values = Vec::new();
    let mut selected = Amount::ZERO;
    for (outpoint, value) in spendable {
        tx.input.push(estimation_input(outpoint));
        spent_values.push(value);
        // Cannot overflow: `available` is the checked sum of all values.
        selected += value;
        let weight_wu = tx.weight().to_wu();
        if weight_wu > TX_WEIGHT_MAX_WU {
            return Err(WalletError::TransactionTooLarge {
                inputs: tx.input.len(),
                weight_wu,
                weight_max_wu: TX_WEIGHT_MAX_WU,
            });
        }
        let fee_without_change = fee_for(request.fee_rate, &tx)?;

        tx.output.push(change_placeholder.clone());
        let fits_with_change = tx.weight().to_wu() <= TX_WEIGHT_MAX_WU;
        let fee_with_change = fee_for(request.fee_rate, &tx)?;
        let change = selected
            .checked_sub(request.amount)
            .and_then(|rest| rest.checked_sub(fee_with_change));
        match change {
            Some(change) if fits_with_change && change >= change_dust => {
                tx.output[1].value = change;
                return Ok(finish(tx, spent_values, fee_with_change));
            }
            _ => {
                tx.output.pop();
            }
        }
        let needed_without_change = request
            .amount
            .checked_add(fee_without_change)
            .ok_or(WalletError::ValueOutOfRange)?;
        if selected >= needed_without_change {
            let fee = selected - request.amount;
            return Ok(finish(tx, spent_values, fee));
        }
    }
    // Unreachable in practice: spending every coin without change was checked to suffice.
    Err(WalletError::InsufficientFunds { needed, available })
}

/// Signs every input of `plan` with `key`, whose P2WPKH script every spent coin must have.
pub fn sign(
    secp: &Secp256k1<All>,
    key: &SecretKey,
    public_key: &CompressedPublicKey,
    plan: PaymentPlan,
) -> Result<Transaction, WalletError> {
    let PaymentPlan {
        unsigned: mut tx,
        spent_values,
        ..
    } = plan;
    let spent_script = ScriptBuf::new_p2wpkh(&public_key.wpubkey_hash());
    let mut cache = SighashCache::new(&tx);
    let mut witnesses = Vec::with_capacity(spent_values.len());
    for (input, value) in spent_values.iter().enumerate() {
        let sighash = cache
            .p2wpkh_signature_hash(input, &spent_script, *value, EcdsaSighashType::All)
            .map_err(|e| WalletError::Signing {
                input,
                reason: e.to_string(),
            })?;
        let msg = Message::from_digest(sighash.to_byte_array());
        let signature = ecdsa::Signature {
            signature: secp.sign_ecdsa_low_r(&msg, key),
            sighash_type: EcdsaSighashType::All,
        };
        witnesses.push(Witness::p2wpkh(&signature, &public_key.0));
    }
    for (txin, witness) in tx.input.iter_mut().zip(witnesses) {
        txin.witness = witness;
    }
    Ok(tx)
}

fn finish(mut tx: Transaction, spent_values: Vec<Amount>, fee: Amount) -> PaymentPlan {
    for txin in &mut tx.input {
        txin.witness = Witness::new();
    }
    PaymentPlan {
        unsigned: tx,
        spent_values,
        fee,
    }
}

fn fee_for(fee_rate: FeeRate, tx: &Transaction) -> Result<Amount, WalletError> {
    fee_rate
        .fee_vb(consensus::tx::fee_bytes(tx))
        .ok_or(WalletError::ValueOutOfRange)
}

fn estimation_tx(inputs: impl Iterator<Item = OutPoint>, output: Vec<TxOut>) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: inputs.map(estimation_input).collect(),
        output,
    }
}

/// An input with a witness of the largest size [`sign`] produces.
fn estimation_input(previous_output: OutPoint) -> TxIn {
    TxIn {
        previous_output,
        script_sig: ScriptBuf::new(),
        sequence: Sequence::MAX,
        witness: largest_witness(),
    }
}

fn largest_witness() -> Witness {
    Witness::from_slice(&[
        [0u8; P2WPKH_SIGNATURE_BYTES_MAX].as_slice(),
        [0u8; COMPRESSED_PUBLIC_KEY_BYTES].as_slice(),
    ])
}
