//! Transaction rules. Transactions are Bitcoin's; the spendable output types are P2WPKH (BIP143
//! sighash, ECDSA), P2WSH (any witness script, run by Bitcoin Core's interpreter through
//! libbitcoinconsensus) and P2TR key path (BIP341 sighash, Schnorr). Other outputs are refused
//! when created, so no coin is ever locked in a script this chain cannot verify.
//!
//! Why not every input through the library: libbitcoinconsensus 25.1 (the version rust-bitcoin
//! 0.32 builds) has no Taproot (no spent-outputs API), and with `WITNESS` set it would pass any
//! witness v1 program unchecked; and P2WPKH through it would drop this chain's stricter rules
//! (low-S, strict sighash type, compressed key are policy in Bitcoin, not consensus) and cost a
//! whole-transaction parse and prevout hashing per input. So P2WPKH and P2TR key path keep the
//! BIP143/BIP341 checks below, sharing one sighash cache, and only P2WSH runs a script.

use crate::sequence_locks::{check_sequence_locks, SequenceLockError};
use crate::SECP;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, XOnlyPublicKey};
use bitcoin::sighash::{Prevouts, SighashCache};
use bitcoin::{Amount, CompressedPublicKey, OutPoint, ScriptBuf, Transaction, TxOut};
use primitives::Coin;
use std::collections::{HashMap, HashSet};
use thiserror::Error;

/// Bitcoin's cap on any amount: 21 million coins.
pub const MAX_MONEY: Amount = Amount::from_sat(21_000_000 * 100_000_000);

/// Bitcoin's bounds on a coinbase `script_sig`.
pub const COINBASE_SCRIPT_SIG_BYTES_MIN: usize = 2;
pub const COINBASE_SCRIPT_SIG_BYTES_MAX: usize = 100;

/// Lock times below this are block heights, at or above it Unix times (Bitcoin's threshold).
const LOCK_TIME_THRESHOLD: u32 = 500_000_000;

/// Script verification flags for libbitcoinconsensus: every consensus rule it knows (BIP16 P2SH,
/// BIP66 strict DER, BIP147 NULLDUMMY, BIP65 CHECKLOCKTIMEVERIFY, BIP112 CHECKSEQUENCEVERIFY,
/// BIP141/143 witness), active from genesis.
pub const SCRIPT_VERIFY_FLAGS: u32 = bitcoinconsensus::VERIFY_P2SH
    | bitcoinconsensus::VERIFY_DERSIG
    | bitcoinconsensus::VERIFY_NULLDUMMY
    | bitcoinconsensus::VERIFY_CHECKLOCKTIMEVERIFY
    | bitcoinconsensus::VERIFY_CHECKSEQUENCEVERIFY
    | bitcoinconsensus::VERIFY_WITNESS;

/// Most P2WSH inputs one transaction may have. The library parses the whole transaction and
/// rehashes its prevouts, sequences and outputs for every input it checks, so its cost is
/// inputs x size; this bound keeps a block's script work linear in its size.
pub const P2WSH_INPUTS_MAX: usize = 64;

/// A transaction's P2WSH witness scripts may hold at most one signature operation (counted as
/// Bitcoin Core counts witness scripts: `CHECKSIG` 1, `CHECKMULTISIG` its key count) per this
/// many bytes of the transaction. A script runs each opcode at most once, so this bounds every
/// block's script signature checks by its size (Bitcoin's 80,000 per 4,000,000 weight units)
/// with no block-level count, and any block template within the size limit is within it.
pub const BYTES_PER_SCRIPT_SIGOP: usize = 50;

/// The size a fee rate prices: every byte of the full serialization, witness included. This
/// chain's block limit counts full bytes (there is no witness discount), so a wallet pays,
/// and a mempool asks, `fee_rate × fee_bytes`; quoting a rate per vbyte instead made the
/// wallet's 1 sat/vB payments fall short of the mempool's 1 sat/byte minimum.
pub fn fee_bytes(tx: &bitcoin::Transaction) -> u64 {
    tx.total_size() as u64
}

/// The only OP_RETURN output allowed to carry value: `OP_RETURN OP_PUSHBYTES_4 "burn"`
/// (`6a046275726e`). Value sent to it is destroyed on purpose (a slashed bond's burned part);
/// any other OP_RETURN with value is refused as a mistake.
pub fn burn_script() -> ScriptBuf {
    ScriptBuf::new_op_return(b"burn")
}

/// Read access to unspent coins; consensus never touches storage itself.
pub trait CoinView {
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin>;
}

impl CoinView for HashMap<OutPoint, Coin> {
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        self.get(outpoint).cloned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxError {
    #[error("transaction has no inputs")]
    NoInputs,
    #[error("transaction has no outputs")]
    NoOutputs,
    #[error("transaction is {bytes} bytes, over the {max}-byte limit")]
    Oversize { bytes: usize, max: usize },
    #[error("output {index} pays {value}, over the money supply cap")]
    OutputTooLarge { index: usize, value: Amount },
    #[error("outputs sum above the money supply cap")]
    OutputsOverflow,
    #[error("output {index} has a script type this chain cannot spend (P2WPKH, P2WSH, P2TR and OP_RETURN are allowed)")]
    UnsupportedOutputScript { index: usize },
    #[error("OP_RETURN output {index} carries value; it would be destroyed")]
    OpReturnWithValue { index: usize },
    #[error("input {index} spends the null outpoint but the transaction is not a coinbase")]
    NullPrevout { index: usize },
    #[error("outpoint {0} is spent twice by one transaction")]
    DuplicateInput(OutPoint),
    #[error("coinbase script_sig is {len} bytes; it must be {COINBASE_SCRIPT_SIG_BYTES_MIN} to {COINBASE_SCRIPT_SIG_BYTES_MAX}")]
    CoinbaseScriptSigLength { len: usize },
    #[error("coinbase does not start with the block height {expected} (BIP34)")]
    CoinbaseHeightMismatch { expected: u32 },
    #[error("a coinbase transaction outside the first position of a block")]
    UnexpectedCoinbase,
    #[error("input spends {0}, which is not an unspent output")]
    MissingInput(OutPoint),
    #[error("input spends coinbase output {outpoint} after {confirmations} blocks; {required} are required")]
    ImmatureCoinbase {
        outpoint: OutPoint,
        confirmations: u32,
        required: u32,
    },
    #[error("inputs total {inputs}, less than outputs' {outputs}")]
    InsufficientInputs { inputs: Amount, outputs: Amount },
    #[error("transaction is not final: lock time {lock_time} not reached")]
    NonFinal { lock_time: u32 },
    #[error("input {index}: script_sig must be empty for a witness spend")]
    NonEmptyScriptSig { index: usize },
    #[error("input {index}: witness is malformed ({reason})")]
    MalformedWitness { index: usize, reason: &'static str },
    #[error("input {index}: witness public key does not hash to the spent output's key hash")]
    PubkeyHashMismatch { index: usize },
    #[error("input {index}: signature does not verify")]
    BadSignature { index: usize },
    #[error("{0}")]
    SequenceLock(#[from] SequenceLockError),
    #[error("transaction has {count} P2WSH inputs; at most {P2WSH_INPUTS_MAX} are allowed")]
    TooManyScriptInputs { count: usize },
    #[error("witness scripts hold {sigops} signature operations in a {bytes}-byte transaction; at most one per {BYTES_PER_SCRIPT_SIGOP} bytes is allowed")]
    ScriptSigopsDensity { sigops: usize, bytes: usize },
    #[error("input {index}: witness script fails (libbitcoinconsensus: {})", describe_script_error(.error))]
    ScriptFailed {
        index: usize,
        error: bitcoinconsensus::Error,
    },
}

/// libbitcoinconsensus reports no reason for a script that runs and fails: its error is then
/// `ERR_SCRIPT` ("error value was not set"); say what that means.
fn describe_script_error(error: &bitcoinconsensus::Error) -> String {
    match error {
        bitcoinconsensus::Error::ERR_SCRIPT => {
            "the script failed or left false on the stack (the library gives no finer reason)"
                .into()
        }
        other => other.to_string(),
    }
}

/// Rules that need nothing but the transaction itself.
pub fn check_transaction(tx: &Transaction, tx_bytes_max: usize) -> Result<(), TxError> {
    if tx.input.is_empty() {
        return Err(TxError::NoInputs);
    }
    if tx.output.is_empty() {
        return Err(TxError::NoOutputs);
    }
    let bytes = tx.total_size();
    if bytes > tx_bytes_max {
        return Err(TxError::Oversize {
            bytes,
            max: tx_bytes_max,
        });
    }
    let mut total = Amount::ZERO;
    for (index, out) in tx.output.iter().enumerate() {
        if out.value > MAX_MONEY {
            return Err(TxError::OutputTooLarge {
                index,
                value: out.value,
            });
        }
        total = total
            .checked_add(out.value)
            .filter(|t| *t <= MAX_MONEY)
            .ok_or(TxError::OutputsOverflow)?;
        check_output_script(index, out)?;
    }
    if tx.is_coinbase() {
        let len = tx.input[0].script_sig.len();
        if !(COINBASE_SCRIPT_SIG_BYTES_MIN..=COINBASE_SCRIPT_SIG_BYTES_MAX).contains(&len) {
            return Err(TxError::CoinbaseScriptSigLength { len });
        }
        return Ok(());
    }
    let mut seen = HashSet::with_capacity(tx.input.len());
    for (index, input) in tx.input.iter().enumerate() {
        if input.previous_output.is_null() {
            return Err(TxError::NullPrevout { index });
        }
        if !seen.insert(input.previous_output) {
            return Err(TxError::DuplicateInput(input.previous_output));
        }
    }
    Ok(())
}

fn check_output_script(index: usize, out: &TxOut) -> Result<(), TxError> {
    let script = &out.script_pubkey;
    if script.is_op_return() {
        if out.value != Amount::ZERO && *script != burn_script() {
            return Err(TxError::OpReturnWithValue { index });
        }
        return Ok(());
    }
    if script.is_p2wpkh() || script.is_p2wsh() || script.is_p2tr() {
        return Ok(());
    }
    Err(TxError::UnsupportedOutputScript { index })
}

/// BIP34: the coinbase `script_sig` starts with the block height as a minimal script number.
pub fn check_coinbase_height(coinbase: &Transaction, height: u32) -> Result<(), TxError> {
    let expected = primitives::block::coinbase_script_sig(height, &[]);
    // `expected` is the height push followed by an empty push (one 0x00 byte); compare the prefix.
    let prefix = &expected.as_bytes()[..expected.len() - 1];
    if coinbase.input[0].script_sig.as_bytes().starts_with(prefix) {
        Ok(())
    } else {
        Err(TxError::CoinbaseHeightMismatch { expected: height })
    }
}

/// Where and when a transaction is being spent, for maturity and lock-time rules.
#[derive(Debug, Clone, Copy)]
pub struct SpendContext {
    /// Height of the block that includes the transaction (tip + 1 for the mempool).
    pub height: u32,
    /// Median time past of that block's parent (BIP113).
    pub median_time_past: u32,
    pub coinbase_maturity_blocks: u32,
}

/// Rules against the unspent outputs: inputs exist and are mature, amounts add up, lock time and
/// BIP68 relative locks (version >= 2, against each coin's height and `ctx.height`) reached,
/// every witness verifies. Returns the fee and the coins spent, in input order.
pub fn check_tx_inputs(
    tx: &Transaction,
    view: &impl CoinView,
    ctx: &SpendContext,
) -> Result<(Amount, Vec<Coin>), TxError> {
    if tx.is_coinbase() {
        return Err(TxError::UnexpectedCoinbase);
    }
    check_final(tx, ctx)?;
    let mut spent = Vec::with_capacity(tx.input.len());
    let mut inputs = Amount::ZERO;
    for input in &tx.input {
        let outpoint = input.previous_output;
        let coin = view
            .coin(&outpoint)
            .ok_or(TxError::MissingInput(outpoint))?;
        if coin.is_coinbase {
            let confirmations = ctx.height.saturating_sub(coin.height);
            if confirmations < ctx.coinbase_maturity_blocks {
                return Err(TxError::ImmatureCoinbase {
                    outpoint,
                    confirmations,
                    required: ctx.coinbase_maturity_blocks,
                });
            }
        }
        // Coins in the set were created by valid transactions, so each is at most MAX_MONEY and
        // a few thousand of them cannot overflow u64 satoshis; still, never wrap.
        inputs = inputs.checked_add(coin.output.value).unwrap_or(Amount::MAX);
        spent.push(coin);
    }
    let outputs: Amount = tx.output.iter().map(|o| o.value).sum();
    if inputs < outputs {
        return Err(TxError::InsufficientInputs { inputs, outputs });
    }
    check_sequence_locks(tx, &spent, ctx.height)?;
    verify_signatures(tx, &spent)?;
    Ok((inputs - outputs, spent))
}

fn check_final(tx: &Transaction, ctx: &SpendContext) -> Result<(), TxError> {
    let lock_time = tx.lock_time.to_consensus_u32();
    if lock_time == 0 || tx.input.iter().all(|i| i.sequence.is_final()) {
        return Ok(());
    }
    let reached = if lock_time < LOCK_TIME_THRESHOLD {
        lock_time < ctx.height
    } else {
        lock_time < ctx.median_time_past
    };
    if reached {
        Ok(())
    } else {
        Err(TxError::NonFinal { lock_time })
    }
}

/// Verifies every input's witness against the output it spends.
fn verify_signatures(tx: &Transaction, spent: &[Coin]) -> Result<(), TxError> {
    let prevouts: Vec<TxOut> = spent.iter().map(|c| c.output.clone()).collect();
    check_script_cost(tx, &prevouts)?;
    // The library takes the transaction serialised (with witnesses); do it once, and only if
    // a P2WSH input needs it.
    let mut serialized: Option<Vec<u8>> = None;
    let mut cache = SighashCache::new(tx);
    for (index, prev) in prevouts.iter().enumerate() {
        let input = &tx.input[index];
        if !input.script_sig.is_empty() {
            return Err(TxError::NonEmptyScriptSig { index });
        }
        if prev.script_pubkey.is_p2wpkh() {
            verify_p2wpkh(tx, index, prev, &mut cache)?;
        } else if prev.script_pubkey.is_p2wsh() {
            let bytes = serialized.get_or_insert_with(|| bitcoin::consensus::encode::serialize(tx));
            verify_script(index, prev, bytes)?;
        } else if prev.script_pubkey.is_p2tr() {
            verify_p2tr_key_path(tx, index, &prevouts, &mut cache)?;
        } else {
            // Unreachable for coins created under these rules; refuse rather than accept.
            return Err(TxError::MalformedWitness {
                index,
                reason: "spent output is not P2WPKH, P2WSH or P2TR",
            });
        }
    }
    Ok(())
}

/// The bounds on what P2WSH inputs make the script library do: [`P2WSH_INPUTS_MAX`] and
/// [`BYTES_PER_SCRIPT_SIGOP`]. The witness script is a P2WSH witness's last element.
fn check_script_cost(tx: &Transaction, prevouts: &[TxOut]) -> Result<(), TxError> {
    let mut count = 0;
    let mut sigops = 0;
    for (input, prev) in tx.input.iter().zip(prevouts) {
        if prev.script_pubkey.is_p2wsh() {
            count += 1;
            if let Some(script) = input.witness.last() {
                sigops += bitcoin::Script::from_bytes(script).count_sigops();
            }
        }
    }
    if count > P2WSH_INPUTS_MAX {
        return Err(TxError::TooManyScriptInputs { count });
    }
    let bytes = tx.total_size();
    if sigops.saturating_mul(BYTES_PER_SCRIPT_SIGOP) > bytes {
        return Err(TxError::ScriptSigopsDensity { sigops, bytes });
    }
    Ok(())
}

/// Runs input `index`'s witness against `prev` in Bitcoin Core's interpreter with
/// [`SCRIPT_VERIFY_FLAGS`]. `tx_bytes` is the transaction serialised with its witnesses.
fn verify_script(index: usize, prev: &TxOut, tx_bytes: &[u8]) -> Result<(), TxError> {
    bitcoinconsensus::verify_with_flags(
        prev.script_pubkey.as_bytes(),
        prev.value.to_sat(),
        tx_bytes,
        index,
        SCRIPT_VERIFY_FLAGS,
    )
    .map_err(|error| TxError::ScriptFailed { index, error })
}

fn verify_p2wpkh(
    tx: &Transaction,
    index: usize,
    prev: &TxOut,
    cache: &mut SighashCache<&Transaction>,
) -> Result<(), TxError> {
    let malformed = |reason| TxError::MalformedWitness { index, reason };
    let witness = &tx.input[index].witness;
    if witness.len() != 2 {
        return Err(malformed("P2WPKH needs exactly [signature, public key]"));
    }
    let sig = bitcoin::ecdsa::Signature::from_slice(&witness[0])
        .map_err(|_| malformed("signature is not strict DER with a sighash type"))?;
    let key = CompressedPublicKey::from_slice(&witness[1])
        .map_err(|_| malformed("public key is not a compressed secp256k1 key"))?;
    if ScriptBuf::new_p2wpkh(&key.wpubkey_hash()) != prev.script_pubkey {
        return Err(TxError::PubkeyHashMismatch { index });
    }
    let sighash = cache
        .p2wpkh_signature_hash(index, &prev.script_pubkey, prev.value, sig.sighash_type)
        .map_err(|_| malformed("sighash could not be computed"))?;
    // libsecp256k1 verifies only low-S signatures, so malleated high-S twins fail here.
    SECP.verify_ecdsa(
        &Message::from_digest(sighash.to_byte_array()),
        &sig.signature,
        &key.0,
    )
    .map_err(|_| TxError::BadSignature { index })
}

fn verify_p2tr_key_path(
    tx: &Transaction,
    index: usize,
    prevouts: &[TxOut],
    cache: &mut SighashCache<&Transaction>,
) -> Result<(), TxError> {
    let malformed = |reason| TxError::MalformedWitness { index, reason };
    let witness = &tx.input[index].witness;
    if witness.len() != 1 {
        return Err(malformed(
            "only P2TR key-path spends (one signature, no annex) are supported",
        ));
    }
    let sig = bitcoin::taproot::Signature::from_slice(&witness[0])
        .map_err(|_| malformed("not a BIP340 signature with a valid sighash type"))?;
    let output_key = XOnlyPublicKey::from_slice(&prevouts[index].script_pubkey.as_bytes()[2..34])
        .map_err(|_| malformed("spent output's key is not on the curve"))?;
    let sighash = cache
        .taproot_key_spend_signature_hash(index, &Prevouts::All(prevouts), sig.sighash_type)
        .map_err(|_| malformed("sighash could not be computed"))?;
    SECP.verify_schnorr(
        &sig.signature,
        &Message::from_digest(sighash.to_byte_array()),
        &output_key,
    )
    .map_err(|_| TxError::BadSignature { index })
}
