//! Test chains: signed blocks with coinbases and spends, the coin bookkeeping a node would do,
//! and an independent replay of the UTXO set from blocks.
#![allow(dead_code)]

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, BlockHash, CompressedPublicKey, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxOut, Witness,
};
use primitives::block::coinbase_script_sig;
use primitives::genesis::{build_genesis, GenesisSpec};
use primitives::header::HEADER_VERSION;
use primitives::merkle::block_merkle_root;
use primitives::{
    Block, BlockHeader, BlockUndo, CertificateKind, Coin, Hash256, UnsignedCertificate,
};
use std::collections::BTreeMap;
use storage::Store;

pub const CHAIN_ID: u32 = 42;
pub const GENESIS_TIME: u32 = 1_700_000_000;
pub const COINBASE_SATS: u64 = 50_000;

pub fn coordinator_key() -> SecretKey {
    SecretKey::from_slice(&[0xc0; 32]).expect("valid key")
}

pub fn miner_key() -> SecretKey {
    SecretKey::from_slice(&[0x11; 32]).expect("valid key")
}

/// P2WPKH script of the miner key: where test coinbases pay.
pub fn miner_script() -> ScriptBuf {
    let secp = Secp256k1::new();
    let pk = CompressedPublicKey(miner_key().public_key(&secp));
    ScriptBuf::new_p2wpkh(&pk.wpubkey_hash())
}

pub fn genesis() -> Block {
    build_genesis(
        &Secp256k1::new(),
        &GenesisSpec {
            chain_id: CHAIN_ID,
            time: GENESIS_TIME,
            model_hash: Hash256([1; 32]),
            message: "storage tests",
            allocations: Vec::new(),
        },
        &coordinator_key(),
    )
}

/// A signed block on `parent` whose coinbase pays two outputs to the miner script and, if
/// `spend` is not empty, a transaction spending those coins into one miner output, one
/// output to `other_script` and an OP_RETURN (which creates no coin). `tag` makes the
/// certificate, and so the block, unique.
pub fn child_block(parent: &Block, spend: &[(OutPoint, Coin)], tag: u64) -> Block {
    child_block_with_attempt(parent, spend, tag, 0)
}

pub fn child_block_with_attempt(
    parent: &Block,
    spend: &[(OutPoint, Coin)],
    tag: u64,
    attempt: u32,
) -> Block {
    let secp = Secp256k1::new();
    let height = parent.height() + 1;
    let mut txdata = vec![Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: coinbase_script_sig(height, &tag.to_le_bytes()),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![
            TxOut {
                value: Amount::from_sat(COINBASE_SATS / 2),
                script_pubkey: miner_script(),
            },
            TxOut {
                value: Amount::from_sat(COINBASE_SATS / 2),
                script_pubkey: miner_script(),
            },
        ],
    }];
    if !spend.is_empty() {
        let total: u64 = spend.iter().map(|(_, c)| c.output.value.to_sat()).sum();
        txdata.push(Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: spend
                .iter()
                .map(|(outpoint, _)| TxIn {
                    previous_output: *outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::MAX,
                    witness: Witness::new(),
                })
                .collect(),
            output: vec![
                TxOut {
                    value: Amount::from_sat(total / 2),
                    script_pubkey: miner_script(),
                },
                TxOut {
                    value: Amount::from_sat(total - total / 2),
                    script_pubkey: other_script(),
                },
                TxOut {
                    value: Amount::ZERO,
                    script_pubkey: ScriptBuf::new_op_return([7u8; 4]),
                },
            ],
        });
    }
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&tag.to_le_bytes());
    let certificate = UnsignedCertificate {
        kind: CertificateKind::BlockSigning,
        chain_id: CHAIN_ID,
        cycle: u64::from(height),
        height,
        prev_block_hash: parent.block_hash(),
        attempt,
        miner: miner_key().public_key(&secp),
        params_trained: 1000,
        loss_reduction: 5,
        score: 5000,
        contributions_root: Hash256([2; 32]),
        lottery_seed: Hash256([3; 32]),
        model_hash: Hash256([4; 32]),
        next_model_hash: Hash256([4; 32]),
        record_hash: Hash256([5; 32]),
        issued_at: u64::from(GENESIS_TIME + height * 1200),
        expires_at: u64::from(GENESIS_TIME + height * 1200 + 600),
        nonce,
        coordinator: coordinator_key().public_key(&secp),
    }
    .sign(&secp, &coordinator_key());
    let header = BlockHeader {
        version: HEADER_VERSION,
        prev_block_hash: parent.block_hash(),
        merkle_root: block_merkle_root(&txdata).root,
        time: GENESIS_TIME + height * 1200,
        certificate,
    };
    Block::sign(&secp, header, txdata, &miner_key())
}

pub fn other_script() -> ScriptBuf {
    ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::all_zeros())
}

/// What a node computes before connecting `block`: the pre-existing coins it spends (looked up
/// with `coin_of`) and the coins it leaves in the UTXO set. Outputs created and spent inside
/// the block are in neither; OP_RETURN outputs create no coin.
pub fn coin_changes(
    block: &Block,
    coin_of: impl Fn(&OutPoint) -> Option<Coin>,
) -> (BlockUndo, Vec<(OutPoint, Coin)>) {
    let height = block.height();
    let mut undo = BlockUndo::default();
    let mut created: Vec<(OutPoint, Coin)> = Vec::new();
    for tx in &block.txdata {
        if !tx.is_coinbase() {
            for input in &tx.input {
                let op = input.previous_output;
                if let Some(pos) = created.iter().position(|(o, _)| *o == op) {
                    created.remove(pos);
                } else {
                    let coin = coin_of(&op).expect("test block spends a coin that exists");
                    undo.spent.push((op, coin));
                }
            }
        }
        let txid = tx.compute_txid();
        for (vout, output) in tx.output.iter().enumerate() {
            if !output.script_pubkey.is_op_return() {
                created.push((
                    OutPoint::new(txid, vout as u32),
                    Coin {
                        output: output.clone(),
                        height,
                        is_coinbase: tx.is_coinbase(),
                    },
                ));
            }
        }
    }
    (undo, created)
}

/// Connects `block` on the store's tip, computing its coin changes from the store.
pub fn connect(store: &Store, block: &Block) {
    let view = store.read().expect("read view");
    let (undo, created) = coin_changes(block, |op| view.coin(op).expect("coin read"));
    drop(view);
    store
        .connect_block(&block.block_hash(), block, &undo, &created)
        .expect("connect block");
}

/// The coins of the tip block's coinbase that are still unspent: what the next test block
/// spends.
pub fn spendable_from_tip(store: &Store) -> Vec<(OutPoint, Coin)> {
    let view = store.read().expect("read view");
    let Some((tip, _)) = view.tip().expect("tip") else {
        return Vec::new();
    };
    let block = view.block(&tip).expect("read").expect("tip body");
    let txid = block.txdata[0].compute_txid();
    (0..2)
        .filter_map(|vout| {
            let op = OutPoint::new(txid, vout);
            view.coin(&op).expect("coin read").map(|c| (op, c))
        })
        .collect()
}

/// Recomputes the UTXO set by replaying the best chain from genesis, independently of the
/// store's coin records, and checks each block's stored undo record against the replay.
pub fn replay_best_chain(store: &Store) -> BTreeMap<OutPoint, Coin> {
    let view = store.read().expect("read view");
    let mut utxo = BTreeMap::new();
    let Some((_, tip_height)) = view.tip().expect("tip") else {
        return utxo;
    };
    for height in 0..=tip_height {
        let hash = view.best_hash_at(height).expect("read").expect("best hash");
        let block = view.block(&hash).expect("read").expect("body");
        let undo = view.undo(&hash).expect("read").expect("undo record");
        let mut spent_before_block = Vec::new();
        let created_here: std::collections::HashSet<_> =
            block.txdata.iter().map(Transaction::compute_txid).collect();
        for tx in &block.txdata {
            if !tx.is_coinbase() {
                for input in &tx.input {
                    let coin = utxo.remove(&input.previous_output).unwrap_or_else(|| {
                        panic!("replay: {} spends a missing coin", block.block_hash())
                    });
                    if !created_here.contains(&input.previous_output.txid) {
                        spent_before_block.push((input.previous_output, coin));
                    }
                }
            }
            let txid = tx.compute_txid();
            for (vout, output) in tx.output.iter().enumerate() {
                if !output.script_pubkey.is_op_return() {
                    utxo.insert(
                        OutPoint::new(txid, vout as u32),
                        Coin {
                            output: output.clone(),
                            height,
                            is_coinbase: tx.is_coinbase(),
                        },
                    );
                }
            }
        }
        assert_eq!(
            undo.spent, spent_before_block,
            "undo record of block at {height}"
        );
    }
    utxo
}

pub fn utxo_of(store: &Store) -> BTreeMap<OutPoint, Coin> {
    store
        .read()
        .expect("read view")
        .all_coins()
        .expect("coins")
        .into_iter()
        .collect()
}

pub fn zero_hash() -> BlockHash {
    BlockHash::all_zeros()
}
