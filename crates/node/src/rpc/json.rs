//! JSON shapes of blocks, headers, transactions and certificates, following Bitcoin Core's
//! field names where the concept exists.

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::{Amount, Network, ScriptBuf, Transaction};
use primitives::{Block, BlockHeader, Certificate, CertificateKind, ChainParams};
use serde_json::{json, Map, Value};

/// An amount as Core prints it: coins, as a JSON number.
pub fn coins(amount: Amount) -> Value {
    json!(amount.to_btc())
}

pub fn script_pubkey(script: &ScriptBuf, network: Network) -> Value {
    let mut object = Map::new();
    object.insert("asm".into(), json!(script.to_asm_string()));
    object.insert("hex".into(), json!(hex::encode(script.as_bytes())));
    object.insert("type".into(), json!(script_type(script)));
    if let Ok(address) = bitcoin::Address::from_script(script, network) {
        object.insert("address".into(), json!(address.to_string()));
    }
    Value::Object(object)
}

/// Core's name for a script's template (`scriptPubKey.type`), as its `Solver` classifies it.
pub fn script_type(script: &bitcoin::Script) -> &'static str {
    super::descriptor::classify(script).core_name()
}

/// Core's `chain` name for a network: `main`, `test`, `testnet4`, `signet` or `regtest`.
pub fn chain_name(network: Network) -> &'static str {
    match network {
        Network::Bitcoin => "main",
        Network::Testnet => "test",
        Network::Testnet4 => "testnet4",
        Network::Signet => "signet",
        // `Network` is non-exhaustive; anything new is a test network.
        _ => "regtest",
    }
}

/// `difficulty` of every block: there is no proof of work, so no target to compare with
/// Bitcoin's; Core clients need a number, and 1.0 is the difficulty of [`BITS`].
pub const DIFFICULTY: f64 = 1.0;

/// `bits` of every block: the compact target of difficulty 1 (Bitcoin's genesis value). The
/// header has no target field; see docs/protocol.md.
pub const BITS: &str = "1d00ffff";

/// `nonce` of every block: headers have no nonce (nothing is ground), so Core's field is 0.
pub const NONCE: u32 = 0;

/// `chainwork` of a block at `height`: the number of blocks up to and including it, as Core's
/// 64-hex-digit big-endian 256-bit number. Every block is one unit of certified work; fork
/// choice compares heights first, so this orders chains as the node does.
pub fn chainwork(height: u32) -> String {
    format!("{:064x}", u64::from(height) + 1)
}

/// A decoded transaction (Core's `decoderawtransaction` shape).
pub fn transaction(tx: &Transaction, network: Network) -> Value {
    let vin: Vec<Value> = tx
        .input
        .iter()
        .map(|input| {
            let witness: Vec<String> = input.witness.iter().map(hex::encode).collect();
            if tx.is_coinbase() {
                json!({
                    "coinbase": hex::encode(input.script_sig.as_bytes()),
                    "txinwitness": witness,
                    "sequence": input.sequence.0,
                })
            } else {
                json!({
                    "txid": input.previous_output.txid.to_string(),
                    "vout": input.previous_output.vout,
                    "scriptSig": {"asm": input.script_sig.to_asm_string(), "hex": hex::encode(input.script_sig.as_bytes())},
                    "txinwitness": witness,
                    "sequence": input.sequence.0,
                })
            }
        })
        .collect();
    let vout: Vec<Value> = tx
        .output
        .iter()
        .enumerate()
        .map(|(n, output)| {
            json!({
                "value": coins(output.value),
                "n": n,
                "scriptPubKey": script_pubkey(&output.script_pubkey, network),
            })
        })
        .collect();
    json!({
        "txid": tx.compute_txid().to_string(),
        "hash": tx.compute_wtxid().to_string(),
        "version": tx.version.0,
        "size": tx.total_size(),
        "vsize": tx.vsize(),
        "weight": tx.weight().to_wu(),
        "locktime": tx.lock_time.to_consensus_u32(),
        "vin": vin,
        "vout": vout,
        "hex": serialize_hex(tx),
    })
}

fn kind_name(kind: CertificateKind) -> &'static str {
    match kind {
        CertificateKind::Contribution => "contribution",
        CertificateKind::BlockSigning => "block_signing",
    }
}

/// A decoded certificate with the result of checking it against the chain parameters.
pub fn certificate(cert: &Certificate, params: &ChainParams) -> Value {
    let body = &cert.body;
    let verification = consensus::verify_block_certificate(cert, params);
    json!({
        "id": cert.id().to_string(),
        "kind": kind_name(body.kind),
        "chain_id": body.chain_id,
        "cycle": body.cycle,
        "height": body.height,
        "previousblockhash": body.prev_block_hash.to_string(),
        "attempt": body.attempt,
        "miner": body.miner.to_string(),
        "params_trained": body.params_trained,
        "loss_reduction": body.loss_reduction,
        "score": body.score,
        "contributions_root": body.contributions_root.to_string(),
        "lottery_seed": body.lottery_seed.to_string(),
        "model_hash": body.model_hash.to_string(),
        "issued_at": body.issued_at,
        "nonce": hex::encode(body.nonce),
        "coordinator": body.coordinator.to_string(),
        "signature": hex::encode(cert.signature.serialize_compact()),
        "hex": hex::encode(cert.encode()),
        "valid": verification.is_ok(),
        "error": verification.err().map(|e| e.to_string()),
    })
}

/// Where a header sits, for the fields that depend on the chain.
pub struct HeaderContext {
    pub height: u32,
    /// `-1` off the best chain, as in Core.
    pub confirmations: i64,
    pub median_time: u32,
    pub next: Option<bitcoin::BlockHash>,
}

pub fn header(header: &BlockHeader, ctx: &HeaderContext) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("hash".into(), json!(header.block_hash().to_string()));
    object.insert("confirmations".into(), json!(ctx.confirmations));
    object.insert("height".into(), json!(ctx.height));
    object.insert("version".into(), json!(header.version));
    object.insert(
        "versionHex".into(),
        json!(format!("{:08x}", header.version)),
    );
    object.insert("merkleroot".into(), json!(header.merkle_root.to_string()));
    object.insert("time".into(), json!(header.time));
    object.insert("mediantime".into(), json!(ctx.median_time));
    object.insert("nonce".into(), json!(NONCE));
    object.insert("bits".into(), json!(BITS));
    object.insert("difficulty".into(), json!(DIFFICULTY));
    object.insert("chainwork".into(), json!(chainwork(ctx.height)));
    object.insert(
        "certificate_id".into(),
        json!(header.certificate.id().to_string()),
    );
    if ctx.height > 0 {
        object.insert(
            "previousblockhash".into(),
            json!(header.prev_block_hash.to_string()),
        );
    }
    if let Some(next) = ctx.next {
        object.insert("nextblockhash".into(), json!(next.to_string()));
    }
    object
}

/// `getblock` at verbosity 1 (txids) or 2 (decoded transactions).
pub fn block(
    block: &Block,
    ctx: &HeaderContext,
    params: &ChainParams,
    decode_txs: TxDetail,
) -> Value {
    let mut object = header(&block.header, ctx);
    let size = block.encoded_len();
    // Witness bytes are the only part of the body a segwit-stripped block would lose.
    let witness_bytes: usize = block
        .txdata
        .iter()
        .map(|tx| tx.total_size() - tx.base_size())
        .sum();
    let stripped = size - witness_bytes;
    object.insert("size".into(), json!(size));
    object.insert("strippedsize".into(), json!(stripped));
    object.insert("weight".into(), json!(stripped * 3 + size));
    object.insert("nTx".into(), json!(block.txdata.len()));
    object.insert(
        "producer_signature".into(),
        json!(hex::encode(block.producer_signature.serialize_compact())),
    );
    object.insert(
        "certificate".into(),
        certificate(&block.header.certificate, params),
    );
    let txs: Vec<Value> = block
        .txdata
        .iter()
        .map(|tx| match decode_txs {
            TxDetail::Ids => json!(tx.compute_txid().to_string()),
            TxDetail::Decoded => transaction(tx, params.network),
        })
        .collect();
    object.insert("tx".into(), Value::Array(txs));
    Value::Object(object)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxDetail {
    Ids,
    Decoded,
}
