//! The genesis block of a new chain.
//!
//! Genesis is the one block no lottery produced. The coordinator signs its certificate (height 0,
//! previous hash zero) and also signs the block as producer, so the same verification code applies
//! to it as to every other block. Its only output is an unspendable OP_RETURN message, as in
//! Bitcoin, so genesis creates no coins.

use crate::block::{coinbase_script_sig, Block};
use crate::certificate::{CertificateKind, UnsignedCertificate};
use crate::hash::Hash256;
use crate::header::{BlockHeader, HEADER_VERSION};
use crate::merkle::block_merkle_root;
use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Secp256k1, SecretKey, Signing};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, BlockHash, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};

/// What the caller chooses about a new chain's genesis block.
pub struct GenesisSpec<'a> {
    pub chain_id: u32,
    /// Unix seconds; genesis time bounds the first blocks' median-time-past rule.
    pub time: u32,
    /// Hash of the initial global model, if one is fixed at launch.
    pub model_hash: Hash256,
    /// Text embedded in the coinbase's OP_RETURN output (at most 80 bytes are kept).
    pub message: &'a str,
}

/// Builds and signs the genesis block with the coordinator's key.
pub fn build_genesis<C: Signing>(
    secp: &Secp256k1<C>,
    spec: &GenesisSpec<'_>,
    coordinator_key: &SecretKey,
) -> Block {
    let coordinator = coordinator_key.public_key(secp);
    let message: Vec<u8> = spec.message.bytes().take(80).collect();
    let push = bitcoin::script::PushBytesBuf::try_from(message).unwrap_or_default();
    let coinbase = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: coinbase_script_sig(0, b"genesis"),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::ZERO,
            script_pubkey: ScriptBuf::new_op_return(push),
        }],
    };
    let certificate = UnsignedCertificate {
        kind: CertificateKind::BlockSigning,
        chain_id: spec.chain_id,
        cycle: 0,
        height: 0,
        prev_block_hash: BlockHash::all_zeros(),
        attempt: 0,
        miner: coordinator,
        params_trained: 0,
        loss_reduction: 0,
        score: 0,
        contributions_root: Hash256::ZERO,
        lottery_seed: Hash256::ZERO,
        model_hash: spec.model_hash,
        // No cycle made genesis: the first cycle may train any model.
        next_model_hash: Hash256::ZERO,
        record_hash: Hash256::ZERO,
        issued_at: spec.time.into(),
        expires_at: spec.time.into(),
        nonce: [0; 16],
        coordinator,
    }
    .sign(secp, coordinator_key);
    let header = BlockHeader {
        version: HEADER_VERSION,
        prev_block_hash: BlockHash::all_zeros(),
        merkle_root: block_merkle_root(std::slice::from_ref(&coinbase)).root,
        time: spec.time,
        certificate,
    };
    Block::sign(secp, header, vec![coinbase], coordinator_key)
}
