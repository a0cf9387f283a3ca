//! Bitcoin's transaction Merkle tree, with Bitcoin Core's mutation check.
//!
//! An odd level duplicates its last node. That makes `[a, b, c]` and `[a, b, c, c]` share a root
//! (CVE-2012-2459): a peer could send the mutated list and get the honest block marked invalid.
//! Like Core's `ComputeMerkleRoot`, we report a level holding two equal adjacent nodes as
//! *mutated*; consensus rejects such blocks without marking the header invalid.
//!
//! A block header commits to its transactions through [`block_merkle_root`], whose leaves are
//! *wtxids* (BIP141's hash of the full serialisation, witnesses included; equal to the txid of a
//! transaction without witnesses). Bitcoin commits to txids in the header and to wtxids in the
//! coinbase only for backward compatibility; a new chain commits to wtxids directly. So no byte
//! of a block except the producer signature can change without changing the block hash: a
//! relayer that malleates a witness sends a block whose root does not match its header, which a
//! node refuses without remembering the (honest) header as invalid.

use bitcoin::hashes::{sha256d, Hash, HashEngine};
use bitcoin::{Transaction, TxMerkleNode, Txid};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MerkleRoot {
    pub root: TxMerkleNode,
    /// True if some level held two identical adjacent hashes: a duplicated-subtree mutation.
    pub mutated: bool,
}

/// The root a block header carries: the Merkle root over every transaction's wtxid, coinbase
/// included, in block order.
pub fn block_merkle_root(txdata: &[Transaction]) -> MerkleRoot {
    root_of_leaves(
        txdata
            .iter()
            .map(|tx| tx.compute_wtxid().to_raw_hash())
            .collect(),
    )
}

/// Merkle root of `txids`, Bitcoin's algorithm. The root of an empty list is all zeros.
pub fn merkle_root(txids: &[Txid]) -> MerkleRoot {
    root_of_leaves(txids.iter().map(|t| t.to_raw_hash()).collect())
}

fn root_of_leaves(mut level: Vec<sha256d::Hash>) -> MerkleRoot {
    let mut mutated = false;
    if level.is_empty() {
        return MerkleRoot {
            root: TxMerkleNode::all_zeros(),
            mutated,
        };
    }
    while level.len() > 1 {
        mutated |= level.chunks_exact(2).any(|pair| pair[0] == pair[1]);
        if level.len() % 2 == 1 {
            level.push(*level.last().expect("level is non-empty"));
        }
        level = level
            .chunks_exact(2)
            .map(|pair| {
                let mut engine = sha256d::Hash::engine();
                engine.input(pair[0].as_byte_array());
                engine.input(pair[1].as_byte_array());
                sha256d::Hash::from_engine(engine)
            })
            .collect();
    }
    MerkleRoot {
        root: TxMerkleNode::from_raw_hash(level[0]),
        mutated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn txid(n: u8) -> Txid {
        Txid::from_byte_array([n; 32])
    }

    #[test]
    fn single_leaf_is_its_own_root() {
        let r = merkle_root(&[txid(1)]);
        assert_eq!(r.root.to_byte_array(), [1; 32]);
        assert!(!r.mutated);
    }

    #[test]
    fn duplicated_last_leaf_has_same_root_but_is_flagged() {
        let honest = merkle_root(&[txid(1), txid(2), txid(3)]);
        let mutated = merkle_root(&[txid(1), txid(2), txid(3), txid(3)]);
        assert_eq!(honest.root, mutated.root);
        assert!(!honest.mutated);
        assert!(mutated.mutated);
    }

    #[test]
    fn duplicated_subtree_is_flagged() {
        let honest = merkle_root(&[txid(1), txid(2), txid(3), txid(4), txid(5), txid(6)]);
        let mutated = merkle_root(&[
            txid(1),
            txid(2),
            txid(3),
            txid(4),
            txid(5),
            txid(6),
            txid(5),
            txid(6),
        ]);
        assert_eq!(honest.root, mutated.root);
        assert!(mutated.mutated);
    }

    proptest! {
        /// Same root as rust-bitcoin's implementation for any list of distinct leaves.
        #[test]
        fn matches_rust_bitcoin(seeds in proptest::collection::btree_set(any::<[u8; 32]>(), 1..40)) {
            let txids: Vec<Txid> = seeds.into_iter().map(Txid::from_byte_array).collect();
            let ours = merkle_root(&txids);
            let theirs = bitcoin::merkle_tree::calculate_root(txids.iter().map(|t| t.to_raw_hash()))
                .map(TxMerkleNode::from_raw_hash)
                .unwrap();
            prop_assert_eq!(ours.root, theirs);
            prop_assert!(!ours.mutated);
        }
    }
}
