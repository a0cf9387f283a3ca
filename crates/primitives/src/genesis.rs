//! The genesis block of a new chain.
//!
//! Genesis is the one block no lottery produced. The coordinator signs its certificate (height 0,
//! previous hash zero) and also signs the block as producer, so the same verification code applies
//! to it as to every other block. Its first output is an unspendable OP_RETURN message, as in
//! Bitcoin; after it come the chain's [`GenesisSpec::allocations`], if any, in the order given.
//!
//! Unlike Bitcoin's, this genesis coinbase is connected like any block (the node runs
//! `consensus::connect_block` on it), so its allocations enter the coin set at height 0 as
//! coinbase outputs: spendable once `coinbase_maturity_blocks` have passed, and together at most
//! the height-0 subsidy (`SubsidySchedule::initial_sats`), which [`allocations_total`] lets the
//! caller check before signing. With no allocations the block is byte for byte the one built
//! before allocations existed.

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
    /// Coins the genesis coinbase pays, after the OP_RETURN message (output 1, 2, …). Their sum
    /// must stay within the height-0 subsidy or the node refuses the genesis block.
    pub allocations: Vec<(ScriptBuf, Amount)>,
}

/// The sum of `allocations`, or `None` if it overflows.
pub fn allocations_total(allocations: &[(ScriptBuf, Amount)]) -> Option<Amount> {
    allocations
        .iter()
        .try_fold(Amount::ZERO, |sum, (_, value)| sum.checked_add(*value))
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
        output: std::iter::once(TxOut {
            value: Amount::ZERO,
            script_pubkey: ScriptBuf::new_op_return(push),
        })
        .chain(spec.allocations.iter().map(|(script_pubkey, value)| TxOut {
            value: *value,
            script_pubkey: script_pubkey.clone(),
        }))
        .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(allocations: Vec<(ScriptBuf, Amount)>) -> GenesisSpec<'static> {
        GenesisSpec {
            chain_id: 42,
            time: 1_700_000_000,
            model_hash: Hash256::ZERO,
            message: "test genesis",
            allocations,
        }
    }

    fn key() -> SecretKey {
        SecretKey::from_slice(&[7; 32]).unwrap()
    }

    #[test]
    fn without_allocations_the_block_is_the_one_built_before_allocations_existed() {
        // Hashes of this spec's genesis as built before `allocations` was added.
        let genesis = build_genesis(&Secp256k1::new(), &spec(vec![]), &key());
        assert_eq!(
            genesis.block_hash().to_string(),
            "aa4e23b420d2c811081cf507225bee9b7d8bf300cc5c13fe653716004ee50720"
        );
        assert_eq!(
            crate::hash::sha256(&genesis.encode()).to_string(),
            "b2acf8e5cd7433c39a50809b929add017ffeb4bad1887bc4821b3b0a64c72f73"
        );
        assert_eq!(genesis.txdata[0].output.len(), 1);
    }

    #[test]
    fn allocations_follow_the_message_in_order() {
        let a = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([1; 20]));
        let b = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([2; 20]));
        let allocations = vec![
            (a.clone(), Amount::from_int_btc(10)),
            (b.clone(), Amount::from_sat(5)),
        ];
        let genesis = build_genesis(&Secp256k1::new(), &spec(allocations.clone()), &key());
        let outputs = &genesis.txdata[0].output;
        assert_eq!(outputs.len(), 3);
        assert!(outputs[0].script_pubkey.is_op_return());
        assert_eq!(outputs[1].script_pubkey, a);
        assert_eq!(outputs[1].value, Amount::from_int_btc(10));
        assert_eq!(outputs[2].script_pubkey, b);
        assert_eq!(outputs[2].value, Amount::from_sat(5));
        assert_eq!(
            allocations_total(&allocations),
            Some(Amount::from_sat(10 * 100_000_000 + 5))
        );
        assert_eq!(
            allocations_total(&[(a.clone(), Amount::MAX), (b, Amount::ONE_SAT)]),
            None
        );
        // The merkle root commits to the allocations: another spec, another block.
        let other = build_genesis(&Secp256k1::new(), &spec(vec![]), &key());
        assert_ne!(genesis.block_hash(), other.block_hash());
        assert_eq!(
            Block::decode(&genesis.encode()).unwrap().txdata[0].output,
            *outputs
        );
    }
}
