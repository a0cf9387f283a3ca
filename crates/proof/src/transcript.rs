//! The committed training transcript: the hashes of a run's training state at steps 0, k, 2k, …
//! and at its last step, as the leaves of a Merkle tree whose root the miner signs with its
//! update.
//!
//! Tree: leaves are [`learning::TrainState::hash`] values in step order; an inner node is
//! `H_node(left || right)`; an odd node at the end of a level is carried up unchanged (never
//! duplicated, so no two leaf lists share a tree); the root commits to the leaf count:
//! `H_root(count u64 LE || top)`. Tags are [`NODE_TAG`] and [`ROOT_TAG`].

use primitives::{tagged_hash, Hash256};

/// Tag of an inner node of the transcript tree.
pub const NODE_TAG: &str = "trainchain/transcript/node";
/// Tag of the transcript root.
pub const ROOT_TAG: &str = "trainchain/transcript/root";

/// Most leaves a transcript may have: with the default interval this is far more than any
/// window needs, and it bounds the miner's memory for checkpoint states and every path length
/// (at most 20 hashes).
pub const LEAVES_MAX: u64 = 1 << 20;

/// The steps a run that ended after `last_step` steps commits to with checkpoint interval
/// `interval`: 0, interval, 2·interval, … and `last_step` (once).
pub fn checkpoint_steps(last_step: u64, interval: u64) -> Vec<u64> {
    let interval = interval.max(1);
    let mut steps: Vec<u64> = (0..=last_step / interval).map(|i| i * interval).collect();
    if !last_step.is_multiple_of(interval) {
        steps.push(last_step);
    }
    steps
}

/// Number of leaves of a transcript of a run of `last_step` steps with `interval` (saturating:
/// a claimed step count comes from outside, and anything near `u64::MAX` is over every bound).
pub fn leaf_count(last_step: u64, interval: u64) -> u64 {
    let interval = interval.max(1);
    (last_step / interval)
        .saturating_add(1)
        .saturating_add(u64::from(!last_step.is_multiple_of(interval)))
}

/// The step of leaf `index` of [`checkpoint_steps`]`(last_step, interval)` without building
/// the list (a claimed step count may be huge): `min(index · interval, last_step)`, `None` past
/// the last leaf.
pub fn checkpoint_step(last_step: u64, interval: u64, index: u64) -> Option<u64> {
    let interval = interval.max(1);
    (index < leaf_count(last_step, interval)).then(|| index.saturating_mul(interval).min(last_step))
}

fn node(left: &Hash256, right: &Hash256) -> Hash256 {
    tagged_hash(NODE_TAG, &[&left.0, &right.0])
}

fn root_of(count: usize, top: &Hash256) -> Hash256 {
    tagged_hash(ROOT_TAG, &[&(count as u64).to_le_bytes(), &top.0])
}

/// A transcript tree over its leaves, for the root and for paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// `levels[0]` are the leaves, the last level holds the top node.
    levels: Vec<Vec<Hash256>>,
}

impl Transcript {
    /// The tree over `leaves` (at least one).
    pub fn new(leaves: Vec<Hash256>) -> Transcript {
        assert!(
            !leaves.is_empty(),
            "a transcript has at least the step-0 leaf"
        );
        let mut levels = vec![leaves];
        while levels.last().expect("non-empty").len() > 1 {
            let below = levels.last().expect("non-empty");
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node(left, right),
                    [odd] => *odd,
                    _ => unreachable!("chunks of two"),
                })
                .collect();
            levels.push(above);
        }
        Transcript { levels }
    }

    pub fn leaf_count(&self) -> usize {
        self.levels[0].len()
    }

    pub fn leaf(&self, index: usize) -> Option<Hash256> {
        self.levels[0].get(index).copied()
    }

    pub fn root(&self) -> Hash256 {
        root_of(
            self.leaf_count(),
            &self.levels.last().expect("non-empty")[0],
        )
    }

    /// The sibling hashes from leaf `index` up to the top (levels where the node has no sibling
    /// contribute nothing).
    pub fn path(&self, index: usize) -> Vec<Hash256> {
        let mut path = Vec::new();
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if sibling < level.len() {
                path.push(level[sibling]);
            }
            i /= 2;
        }
        path
    }
}

/// True if `leaf` is leaf `index` of a transcript of `count` leaves with `root`, by `path`.
pub fn verify_path(
    root: &Hash256,
    count: u64,
    index: u64,
    leaf: &Hash256,
    path: &[Hash256],
) -> bool {
    if count == 0 || count > LEAVES_MAX || index >= count {
        return false;
    }
    let mut hash = *leaf;
    let mut i = index;
    let mut width = count;
    let mut siblings = path.iter();
    while width > 1 {
        let sibling = i ^ 1;
        if sibling < width {
            let Some(s) = siblings.next() else {
                return false;
            };
            hash = if i.is_multiple_of(2) {
                node(&hash, s)
            } else {
                node(s, &hash)
            };
        }
        i /= 2;
        width = width.div_ceil(2);
    }
    siblings.next().is_none() && root_of(count as usize, &hash) == *root
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash256> {
        (0..n).map(|i| Hash256([i as u8 + 1; 32])).collect()
    }

    #[test]
    fn checkpoints_cover_zero_every_interval_and_the_last_step() {
        assert_eq!(checkpoint_steps(0, 4), vec![0]);
        assert_eq!(checkpoint_steps(8, 4), vec![0, 4, 8]);
        assert_eq!(checkpoint_steps(9, 4), vec![0, 4, 8, 9]);
        assert_eq!(checkpoint_steps(3, 4), vec![0, 3]);
        for (last, k) in [(0, 4), (8, 4), (9, 4), (3, 4), (100, 7)] {
            assert_eq!(checkpoint_steps(last, k).len() as u64, leaf_count(last, k));
        }
    }

    #[test]
    fn the_root_commits_to_the_leaf_count() {
        // Carrying an odd node up unchanged makes the top of [a, b, c] equal to that of
        // [a, b, H(c...)]-shaped lists only if the count were not committed; it is.
        let three = Transcript::new(leaves(3));
        let mut four = leaves(3);
        four.push(Hash256([3; 32]));
        assert_ne!(three.root(), Transcript::new(four).root());
    }

    proptest! {
        #[test]
        fn every_path_verifies_and_no_other_leaf_or_index_does(n in 1usize..70, pick in 0usize..70) {
            let tree = Transcript::new(leaves(n));
            let index = pick % n;
            let path = tree.path(index);
            let leaf = tree.leaf(index).unwrap();
            prop_assert!(verify_path(&tree.root(), n as u64, index as u64, &leaf, &path));
            prop_assert!(!verify_path(&tree.root(), n as u64, index as u64, &Hash256([0xee; 32]), &path));
            if n > 1 {
                let other = (index + 1) % n;
                prop_assert!(!verify_path(&tree.root(), n as u64, other as u64, &leaf, &path));
            }
            prop_assert!(!verify_path(&tree.root(), n as u64 + 1, index as u64, &leaf, &path));
            prop_assert!(path.len() <= 7);
        }
    }
}
