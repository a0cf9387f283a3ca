//! Which intervals of a submission's transcript get replayed: picked after the submission
//! deadline from randomness no miner knew while training.
//!
//! `seed = H_challenge(secret 32 || commitments_digest 32 || miner 33)`, where `secret` is the
//! cycle secret the coordinator revealed at the deadline (committed in the announcement before
//! registration) and `commitments_digest` covers every receipted commitment of the cycle. A
//! miner learns its challenges only after its commitment is final; the coordinator cannot steer
//! them without breaking its own commitment.
//!
//! The last interval is always challenged: it is the one that ends in the submitted update, so
//! an update that no SGD run on the task reaches (a copy, a perturbation, a rescaling, a model
//! from elsewhere) fails there whatever the rest of the transcript says. `q` further intervals
//! are drawn uniformly without replacement from the others. The step-0 leaf is always checked
//! too (against the start model the coordinator knows), so a run cannot start elsewhere.

use bitcoin::secp256k1::PublicKey;
use primitives::{tagged_hash, Hash256};

use crate::task::Commitment;

/// Tag of a miner's challenge seed.
pub const CHALLENGE_TAG: &str = "trainchain/proof/challenge";
/// Tag of the digest of a cycle's commitments.
pub const COMMITMENTS_TAG: &str = "trainchain/proof/commitments";
/// Tag of one draw from a challenge seed.
pub const DRAW_TAG: &str = "trainchain/proof/challenge-draw";

/// Default q: random intervals replayed per submission besides the last one.
pub const CHALLENGES_DEFAULT: u32 = 2;
/// Largest q a coordinator may ask for: bounds a miner's answer and the replay work.
pub const CHALLENGES_MAX: u32 = 64;

/// `H_commitments(count u32 LE || (miner 33 || task_hash 32 || update_hash 32 ||
/// transcript_root 32 || steps u64 LE) × count)`, entries in ascending order of the miner's
/// compressed key.
pub fn commitments_digest(entries: &[(PublicKey, Commitment)]) -> Hash256 {
    let mut sorted: Vec<([u8; 33], &Commitment)> =
        entries.iter().map(|(m, c)| (m.serialize(), c)).collect();
    sorted.sort_by_key(|entry| entry.0);
    let count = (sorted.len() as u32).to_le_bytes();
    let mut bytes: Vec<u8> = Vec::new();
    for (miner, c) in sorted {
        bytes.extend(miner);
        bytes.extend(c.task_hash.0);
        bytes.extend(c.update_hash.0);
        bytes.extend(c.transcript_root.0);
        bytes.extend(c.steps.to_le_bytes());
    }
    tagged_hash(COMMITMENTS_TAG, &[&count, &bytes])
}

/// A miner's challenge seed.
pub fn challenge_seed(
    secret: &Hash256,
    commitments_digest: &Hash256,
    miner: &PublicKey,
) -> Hash256 {
    tagged_hash(
        CHALLENGE_TAG,
        &[&secret.0, &commitments_digest.0, &miner.serialize()],
    )
}

/// The challenged intervals of a transcript with `intervals` intervals (leaves − 1), ascending:
/// the last one, and `q` distinct others drawn with `H_draw(seed 32 || counter u32 LE)` read as
/// a u64 (LE, first 8 bytes) modulo the number of other intervals, skipping repeats. Fewer than
/// `q` others exist only in a short transcript; then all of them are challenged.
pub fn challenged_intervals(seed: &Hash256, intervals: u64, q: u32) -> Vec<u64> {
    if intervals == 0 {
        return Vec::new();
    }
    let others = intervals - 1;
    let mut picked: Vec<u64> = Vec::new();
    if others <= u64::from(q) {
        picked.extend(0..others);
    } else {
        let mut counter = 0u32;
        while picked.len() < q as usize {
            let h = tagged_hash(DRAW_TAG, &[&seed.0, &counter.to_le_bytes()]);
            counter += 1;
            let draw = u64::from_le_bytes(h.0[..8].try_into().expect("8 bytes")) % others;
            if !picked.contains(&draw) {
                picked.push(draw);
            }
        }
    }
    picked.push(intervals - 1);
    picked.sort_unstable();
    picked
}

/// Chance that a run faking `faked` of its `intervals` intervals (none of them the last) passes
/// `q` random challenges: C(n − 1 − f, q) / C(n − 1, q). The detection probability is one minus
/// this; with a faked last interval it is 1.
pub fn escape_probability(intervals: u64, faked: u64, q: u32) -> f64 {
    if intervals == 0 {
        return 1.0;
    }
    let others = intervals - 1;
    if faked > others {
        return 0.0;
    }
    let draws = u64::from(q).min(others);
    let mut p = 1.0;
    for i in 0..draws {
        p *= (others - faked).saturating_sub(i) as f64 / (others - i) as f64;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_interval_is_always_challenged_with_q_distinct_others() {
        for n in [1u64, 2, 3, 5, 64, 1000] {
            for counter in 0..20u8 {
                let seed = Hash256([counter; 32]);
                let picked = challenged_intervals(&seed, n, 2);
                assert_eq!(*picked.last().unwrap(), n - 1);
                assert_eq!(picked.len() as u64, (n - 1).min(2) + 1);
                let mut dedup = picked.clone();
                dedup.dedup();
                assert_eq!(dedup, picked);
                assert!(picked.iter().all(|&i| i < n));
            }
        }
        assert!(challenged_intervals(&Hash256::ZERO, 0, 2).is_empty());
    }

    #[test]
    fn escape_probability_matches_sampling_without_replacement() {
        assert_eq!(escape_probability(11, 0, 2), 1.0);
        assert!((escape_probability(11, 1, 2) - 0.8).abs() < 1e-12); // C(9,2)/C(10,2)
        assert_eq!(escape_probability(11, 10, 2), 0.0);
        assert_eq!(escape_probability(3, 2, 2), 0.0);
    }
}
