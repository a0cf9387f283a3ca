//! The weighted, auditable lottery that picks each block's producer.
//!
//! Everything is recomputable from the published cycle record:
//! - **commitment** `C = H_commit(secret)`, announced before registration; the secret is revealed
//!   after the submission deadline, so neither miners nor the coordinator (once committed) can
//!   steer the seed by choosing it late;
//! - **contributions root**: Merkle root over every scored submission, sorted by miner key;
//! - **seed** `= H_seed(secret || parent block hash || contributions root)`;
//! - **draws**: attempt k is the k-th draw without replacement among entries with score > 0,
//!   sorted by public key, each draw uniform over the remaining integer weights by rejection
//!   sampling (no modulo bias).
//!
//! `H_x` are tagged SHA-256 hashes (see `primitives::tagged_hash`); tags are listed below and
//! in `docs/protocol.md`.

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use bitcoin::BlockHash;
use primitives::{sha256, tagged_hash, Hash256};

pub const COMMITMENT_TAG: &str = "trainchain/lottery-commitment";
pub const SEED_TAG: &str = "trainchain/lottery-seed";
pub const DRAW_TAG: &str = "trainchain/lottery-draw";
pub const ADMISSION_TAG: &str = "trainchain/admission-seed";
pub const CONTRIBUTION_LEAF_TAG: &str = "trainchain/contribution";

/// One scored submission as it enters the contributions root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    pub miner: PublicKey,
    pub params_trained: u64,
    pub loss_reduction: i64,
    pub score: u64,
    /// SHA-256 of the submitted update bytes (what the receipt names).
    pub update_hash: Hash256,
}

impl Contribution {
    /// Leaf hash: `H_contribution(miner (33) || params_trained (u64 LE) || loss_reduction (i64 LE)
    /// || score (u64 LE) || update_hash (32))`.
    pub fn leaf(&self) -> Hash256 {
        tagged_hash(
            CONTRIBUTION_LEAF_TAG,
            &[
                &self.miner.serialize(),
                &self.params_trained.to_le_bytes(),
                &self.loss_reduction.to_le_bytes(),
                &self.score.to_le_bytes(),
                &self.update_hash.0,
            ],
        )
    }
}

/// Commitment to the coordinator's per-cycle secret.
pub fn commitment(secret: &[u8; 32]) -> Hash256 {
    tagged_hash(COMMITMENT_TAG, &[secret])
}

/// True if `secret` opens `commitment`.
pub fn verify_reveal(commitment_hash: &Hash256, secret: &[u8; 32]) -> bool {
    commitment(secret) == *commitment_hash
}

/// Merkle root over contributions sorted by miner key. Leaves are [`Contribution::leaf`];
/// inner nodes are `SHA256(0x01 || left || right)`; an odd node is carried up unchanged (no
/// duplication, so no CVE-2012-2459-style twin lists). The empty root is all zeros.
pub fn contributions_root(contributions: &[Contribution]) -> Hash256 {
    let mut sorted: Vec<&Contribution> = contributions.iter().collect();
    sorted.sort_by_key(|c| c.miner.serialize());
    let mut level: Vec<Hash256> = sorted.iter().map(|c| c.leaf()).collect();
    if level.is_empty() {
        return Hash256::ZERO;
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => sha256(&[&[1u8][..], &left.0, &right.0].concat()),
                [single] => *single,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
    }
    level[0]
}

/// The lottery seed of a cycle.
pub fn lottery_seed(
    secret: &[u8; 32],
    parent: &BlockHash,
    contributions_root: &Hash256,
) -> Hash256 {
    tagged_hash(
        SEED_TAG,
        &[secret, parent.as_byte_array(), &contributions_root.0],
    )
}

/// A lottery entry: a miner and its integer weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub miner: PublicKey,
    pub score: u64,
}

/// Entries that take part: score > 0, sorted by serialized public key, one per miner (the
/// first listed wins a duplicate; the coordinator never lists one twice).
pub fn eligible_entries(entries: &[Entry]) -> Vec<Entry> {
    let mut eligible: Vec<Entry> = entries.iter().copied().filter(|e| e.score > 0).collect();
    eligible.sort_by_key(|e| e.miner.serialize());
    eligible.dedup_by_key(|e| e.miner);
    eligible
}

/// The miners drawn for attempts `0..=attempt`, in order. Shorter than `attempt + 1` if the
/// entries run out. `entries` need not be sorted or filtered; [`eligible_entries`] is applied.
pub fn draw_order(seed: &Hash256, entries: &[Entry], attempt: u32) -> Vec<PublicKey> {
    let mut remaining = eligible_entries(entries);
    let mut drawn = Vec::new();
    for k in 0..=attempt {
        if remaining.is_empty() {
            break;
        }
        let total: u128 = remaining.iter().map(|e| u128::from(e.score)).sum();
        let target = uniform_below(seed, k, total);
        let mut cumulative = 0u128;
        let index = remaining
            .iter()
            .position(|e| {
                cumulative += u128::from(e.score);
                target < cumulative
            })
            .expect("target < total, so some prefix sum exceeds it");
        drawn.push(remaining.remove(index).miner);
    }
    drawn
}

/// The first `draws_max` draws (all of them if fewer entries are eligible): what a coordinator
/// that makes at most `draws_max` attempts per cycle publishes, and what an auditor recomputes.
pub fn published_draw_order(seed: &Hash256, entries: &[Entry], draws_max: u32) -> Vec<PublicKey> {
    match draws_max {
        0 => Vec::new(),
        max => draw_order(seed, entries, max - 1),
    }
}

/// The seed of cycle `cycle`'s admission draw: `H_admission(secret || cycle (u64 LE))`. The
/// secret is committed to in the announcement, before any registration, and revealed at the
/// submission deadline, so anyone can then recompute which registrations got the slots.
pub fn admission_seed(secret: &[u8; 32], cycle: u64) -> Hash256 {
    tagged_hash(ADMISSION_TAG, &[secret, &cycle.to_le_bytes()])
}

/// The registrations admitted when more bonded ones arrived than a cycle has `slots`: drawn
/// without replacement with probability proportional to bond value (each entry's `score` is
/// its bond in satoshis), by the lottery's own weighted draw. A client holding a fraction `x`
/// of the bonded value present takes about a fraction `x` of the slots, however fast it
/// registered. In draw order; all of them if there are no more than `slots`.
pub fn admitted(seed: &Hash256, entries: &[Entry], slots: u32) -> Vec<PublicKey> {
    published_draw_order(seed, entries, slots)
}

/// The winner of draw `attempt`, if there are that many eligible entries.
pub fn winner(seed: &Hash256, entries: &[Entry], attempt: u32) -> Option<PublicKey> {
    draw_order(seed, entries, attempt)
        .get(attempt as usize)
        .copied()
}

/// A uniform integer in `0..bound` from the seed, by rejection sampling: 128-bit candidates
/// `H_draw(seed || draw (u32 LE) || counter (u32 LE))[0..16]` (little-endian) are rejected while
/// they fall in the top partial block `[floor(2^128 / bound) * bound, 2^128)`.
fn uniform_below(seed: &Hash256, draw: u32, bound: u128) -> u128 {
    assert!(
        bound > 0,
        "draws are only made among entries with positive weight"
    );
    let zone = u128::MAX - (u128::MAX % bound + 1) % bound;
    let mut counter: u32 = 0;
    loop {
        let h = tagged_hash(
            DRAW_TAG,
            &[&seed.0, &draw.to_le_bytes(), &counter.to_le_bytes()],
        );
        let candidate = u128::from_le_bytes(h.0[..16].try_into().expect("16 bytes"));
        // Accept candidates in [0, zone]; zone + 1 is a multiple of bound. The chance of a
        // rejection is below bound / 2^128, so the loop ends after one round in practice.
        if candidate <= zone {
            return candidate % bound;
        }
        counter = counter.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::{Secp256k1, SecretKey};
    use proptest::prelude::*;

    fn miner(n: u8) -> PublicKey {
        SecretKey::from_slice(&[n.max(1); 32])
            .unwrap()
            .public_key(&Secp256k1::new())
    }

    fn entries(weights: &[u64]) -> Vec<Entry> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &score)| Entry {
                miner: miner(i as u8 + 1),
                score,
            })
            .collect()
    }

    #[test]
    fn zero_scores_never_win_and_no_entries_no_winner() {
        let seed = sha256(b"seed");
        let e = entries(&[0, 5, 0]);
        for attempt in 0..3 {
            let drawn = draw_order(&seed, &e, attempt);
            assert_eq!(
                drawn,
                vec![miner(2)],
                "only the positive entry can be drawn"
            );
        }
        assert_eq!(winner(&seed, &entries(&[0, 0]), 0), None);
        assert_eq!(
            winner(&seed, &e, 1),
            None,
            "one eligible entry: no second draw"
        );
    }

    #[test]
    fn odds_follow_weights() {
        // Weights 1:3: over 4,000 seeds the heavy entry should win about 75% of draws. With
        // fixed seeds the count is deterministic; the band is about 4 standard deviations.
        let e = entries(&[1, 3]);
        let heavy_wins = (0..4000u32)
            .filter(|i| winner(&sha256(&i.to_le_bytes()), &e, 0) == Some(miner(2)))
            .count();
        assert!((2890..=3110).contains(&heavy_wins), "{heavy_wins}");
    }

    #[test]
    fn input_order_does_not_matter() {
        let seed = sha256(b"order");
        let mut e = entries(&[4, 9, 1, 7]);
        let forward = draw_order(&seed, &e, 3);
        e.reverse();
        assert_eq!(draw_order(&seed, &e, 3), forward);
    }

    #[test]
    fn published_draw_order_stops_at_the_cap_or_the_entries() {
        let seed = sha256(b"cap");
        let e = entries(&[3, 0, 5, 8, 1]);
        assert_eq!(published_draw_order(&seed, &e, 0), Vec::<PublicKey>::new());
        assert_eq!(published_draw_order(&seed, &e, 2), draw_order(&seed, &e, 1));
        assert_eq!(published_draw_order(&seed, &e, 32).len(), 4);
    }

    #[test]
    fn commitment_opens_only_with_its_secret() {
        let c = commitment(&[7; 32]);
        assert!(verify_reveal(&c, &[7; 32]));
        assert!(!verify_reveal(&c, &[8; 32]));
    }

    #[test]
    fn uniform_below_handles_extreme_bounds() {
        let seed = sha256(b"bounds");
        assert_eq!(uniform_below(&seed, 0, 1), 0);
        assert!(uniform_below(&seed, 0, u128::MAX) < u128::MAX);
        let big = u128::from(u64::MAX) * 10_000;
        assert!(uniform_below(&seed, 3, big) < big);
    }

    #[test]
    fn contributions_root_is_order_independent_and_binds_every_field() {
        let c = |n: u8, score: u64| Contribution {
            miner: miner(n),
            params_trained: 10,
            loss_reduction: 5,
            score,
            update_hash: Hash256([n; 32]),
        };
        let list = vec![c(1, 50), c(2, 0), c(3, 70)];
        let root = contributions_root(&list);
        let reversed: Vec<_> = list.iter().rev().cloned().collect();
        assert_eq!(contributions_root(&reversed), root);
        let mut changed = list.clone();
        changed[1].score = 1;
        assert_ne!(contributions_root(&changed), root);
        assert_eq!(contributions_root(&[]), Hash256::ZERO);
        assert_eq!(contributions_root(&list[..1]), list[0].leaf());
    }

    proptest! {
        #[test]
        fn draws_without_replacement_among_positive_entries(
            weights in proptest::collection::vec(0u64..1_000_000, 1..12),
            seed in any::<[u8; 32]>(),
        ) {
            let e = entries(&weights);
            let eligible = weights.iter().filter(|w| **w > 0).count();
            let drawn = draw_order(&Hash256(seed), &e, 20);
            prop_assert_eq!(drawn.len(), eligible);
            let mut unique = drawn.clone();
            unique.sort_by_key(|k| k.serialize());
            unique.dedup();
            prop_assert_eq!(unique.len(), drawn.len());
            for k in &drawn {
                let w = e.iter().find(|x| x.miner == *k).unwrap().score;
                prop_assert!(w > 0);
            }
            // Attempt k is the k-th element of the order.
            for (k, m) in drawn.iter().enumerate() {
                prop_assert_eq!(winner(&Hash256(seed), &e, k as u32), Some(*m));
            }
        }
    }

    /// The attack the admission draw answers: one client registers 20 bonds first, 20 honest
    /// ones follow, 10 slots. First come would give the client all 10; drawn by bond value it
    /// takes about half, over many cycles, and never every slot in most cycles.
    #[test]
    fn admission_shares_slots_by_bond_value_not_by_arrival() {
        let bonds = entries(&[1_000; 40]);
        let attacker: Vec<PublicKey> = bonds[..20].iter().map(|e| e.miner).collect();
        let mut attacker_slots = 0usize;
        let mut all_slots_taken = 0;
        let cycles = 400u64;
        for cycle in 0..cycles {
            let seed = admission_seed(&[9; 32], cycle);
            let admitted = admitted(&seed, &bonds, 10);
            assert_eq!(admitted.len(), 10);
            let mut unique = admitted.clone();
            unique.sort_by_key(|m| m.serialize());
            unique.dedup();
            assert_eq!(unique.len(), 10, "drawn without replacement");
            let taken = admitted.iter().filter(|m| attacker.contains(m)).count();
            attacker_slots += taken;
            all_slots_taken += usize::from(taken == 10);
        }
        let share = attacker_slots as f64 / (cycles as f64 * 10.0);
        assert!((0.45..0.55).contains(&share), "attacker share {share}");
        assert!(all_slots_taken < 5, "{all_slots_taken} cycles fully taken");
        // Twice the value, about twice the slots: 20 bonds of 2,000 against 20 of 1,000.
        let mut weighted = entries(&[1_000; 40]);
        for e in &mut weighted[..20] {
            e.score = 2_000;
        }
        let heavy: usize = (0..cycles)
            .map(|cycle| {
                admitted(&admission_seed(&[9; 32], cycle), &weighted, 10)
                    .iter()
                    .filter(|m| attacker.contains(m))
                    .count()
            })
            .sum();
        let share = heavy as f64 / (cycles as f64 * 10.0);
        assert!((0.58..0.72).contains(&share), "2:1 value share {share}");
        // Fewer registrations than slots: everyone is admitted.
        assert_eq!(
            admitted(&admission_seed(&[9; 32], 0), &bonds[..3], 10).len(),
            3
        );
    }
}
