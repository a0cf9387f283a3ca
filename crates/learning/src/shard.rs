//! Deterministic, disjoint assignment of training samples to shards.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{LearningError, Result};
use crate::samples::{Samples, Shard};

/// Sample indices of each of `shard_count` shards of `sample_count` samples: a seeded
/// shuffle dealt into contiguous runs whose sizes differ by at most one. Every index
/// appears in exactly one shard; the same seed gives the same assignment everywhere.
pub fn shard_assignment(
    seed: u64,
    sample_count: usize,
    shard_count: usize,
) -> Result<Vec<Vec<usize>>> {
    if shard_count == 0 || shard_count > sample_count {
        return Err(LearningError::TooFewSamples {
            reason: format!("{sample_count} samples cannot fill {shard_count} shards"),
        });
    }
    let mut order: Vec<usize> = (0..sample_count).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let base = sample_count / shard_count;
    let extra = sample_count % shard_count;
    let mut start = 0;
    Ok((0..shard_count)
        .map(|k| {
            let len = base + usize::from(k < extra);
            let shard = order[start..start + len].to_vec();
            start += len;
            shard
        })
        .collect())
}

/// The shards of `train` for one cycle, per [`shard_assignment`].
pub fn make_shards(train: &Samples, seed: u64, shard_count: usize) -> Result<Vec<Shard>> {
    Ok(shard_assignment(seed, train.len(), shard_count)?
        .iter()
        .map(|indices| train.select(indices))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_is_disjoint_complete_balanced_and_seeded() {
        let shards = shard_assignment(3, 103, 4).unwrap();
        let mut all: Vec<usize> = shards.concat();
        all.sort_unstable();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        assert!(shards.iter().all(|s| s.len() == 25 || s.len() == 26));
        assert_eq!(shards, shard_assignment(3, 103, 4).unwrap());
        assert_ne!(shards, shard_assignment(4, 103, 4).unwrap());
        assert!(shard_assignment(3, 3, 4).is_err());
        assert!(shard_assignment(3, 3, 0).is_err());
    }
}
