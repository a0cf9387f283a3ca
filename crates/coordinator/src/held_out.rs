//! The secret held-out pool and the fresh batch each cycle is scored on.
//!
//! A held-out set that miners can rebuild is one they can train on, and one scored the same way
//! every cycle is an oracle for fitting it. So the split seed is a secret that never leaves the
//! coordinator's data directory (`held-out.secret`, made at first start), and every cycle scores
//! on its own batch of the pool: committed (salted hash) in the cycle's announcement before
//! anyone registers, revealed in the record after evaluation, never scored on again in the same
//! pass over the pool.
//!
//! When a pass is used up the next pass draws the batches again, in a new secret order. The
//! samples of a used batch are public by then; what keeps a miner from training on them is the
//! proof of training (its replayed run is SGD on its own shard only), not their secrecy. The
//! record says which pass a batch came from.

use crate::api::HeldOutReveal;
use crate::error::ServiceError;
use learning::Samples;
use primitives::{sha256, tagged_hash, Hash256};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// The secret's file in the coordinator's data directory. Never published, never in
/// `chain.toml`: whoever reads it can rebuild every future held-out batch.
pub const HELD_OUT_SECRET_FILE: &str = "held-out.secret";

/// Largest batch a cycle scores on: each submission costs one forward pass over it at the
/// deadline, so this bounds a cycle's evaluation (1,000 submissions x 256 samples).
pub const HELD_OUT_BATCH_MAX: usize = 256;

/// A pass over the pool gives at least this many fresh batches, so a small pool (the shipped
/// digits have 270 held-out samples: batches of 54) still covers a default devnet run without
/// scoring any sample twice.
pub const HELD_OUT_BATCHES_PER_PASS_MIN: usize = 5;

const SPLIT_SEED_TAG: &str = "trainchain/coordinator/held-out/split-seed";
const ORDER_TAG: &str = "trainchain/coordinator/held-out/order";
const SALT_TAG: &str = "trainchain/coordinator/held-out/salt";
const JOB_SECRET_TAG: &str = "trainchain/coordinator/held-out/job";

/// 32 random bytes that seed the dataset split, the batch order and the batch salts.
#[derive(Clone)]
pub struct HeldOutSecret([u8; 32]);

impl HeldOutSecret {
    /// Reads the secret from `data_dir`, or makes one from the OS's randomness on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, ServiceError> {
        let path = data_dir.join(HELD_OUT_SECRET_FILE);
        let io = |source| ServiceError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    ServiceError::Corrupt(format!(
                        "{} must hold exactly 32 bytes, found {}",
                        path.display(),
                        bytes.len()
                    ))
                })?;
                Ok(HeldOutSecret(secret))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
                write_private(&path, &secret).map_err(io)?;
                Ok(HeldOutSecret(secret))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A secret from given bytes: for tests and benchmarks, which need a fixed pool. A real
    /// coordinator's secret comes from [`HeldOutSecret::load_or_create`].
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        HeldOutSecret(bytes)
    }

    /// The secret of a posted job: its own split, batch order and salts, derived from this
    /// one and the job's id, so one secret file serves every job and no two jobs share a pool
    /// order.
    pub fn for_job(&self, job: &Hash256) -> Self {
        HeldOutSecret(tagged_hash(JOB_SECRET_TAG, &[&self.0, &job.0]).0)
    }

    /// Seed of the dataset split (which samples are training, held-out pool, test).
    pub fn split_seed(&self) -> u64 {
        let h = tagged_hash(SPLIT_SEED_TAG, &[&self.0]);
        u64::from_le_bytes(h.0[..8].try_into().expect("8 bytes"))
    }

    fn order_seed(&self, pass: u64) -> [u8; 32] {
        tagged_hash(ORDER_TAG, &[&self.0, &pass.to_le_bytes()]).0
    }

    fn salt(&self, cycle: u64) -> Hash256 {
        tagged_hash(SALT_TAG, &[&self.0, &cycle.to_le_bytes()])
    }
}

/// Writes `bytes` to a new file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// One cycle's held-out batch: the samples it is scored on, their published bytes, and the
/// reveal that opens the announcement's commitment.
pub struct HeldOutBatch {
    pub samples: Samples,
    /// `Samples::to_safetensors` of the batch: what the record's `batch_hash` is over, served
    /// once the record is revealed.
    pub bytes: Vec<u8>,
    pub reveal: HeldOutReveal,
}

/// The normalised held-out pool and the secret that orders it.
pub struct HeldOutPool {
    secret: HeldOutSecret,
    pool: Samples,
    batch: usize,
}

impl HeldOutPool {
    pub fn new(secret: HeldOutSecret, pool: Samples) -> Self {
        let batch = (pool.len() / HELD_OUT_BATCHES_PER_PASS_MIN).clamp(1, HELD_OUT_BATCH_MAX);
        HeldOutPool {
            secret,
            pool,
            batch,
        }
    }

    /// Samples per batch.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Fresh batches per pass over the pool.
    pub fn batches_per_pass(&self) -> u64 {
        (self.pool.len() / self.batch).max(1) as u64
    }

    /// The batch cycle `cycle` is scored on: batch `cycle mod b` of pass `cycle / b`, where
    /// each pass is its own secret permutation of the pool.
    pub fn batch(&self, cycle: u64) -> Result<HeldOutBatch, ServiceError> {
        if self.pool.is_empty() {
            // The split refuses an empty held-out set; a pool built another way gets an error,
            // not a slice past the end.
            return Err(ServiceError::Corrupt("the held-out pool is empty".into()));
        }
        let per_pass = self.batches_per_pass();
        let pass = cycle / per_pass;
        let index = (cycle % per_pass) as usize;
        let mut order: Vec<usize> = (0..self.pool.len()).collect();
        order.shuffle(&mut ChaCha8Rng::from_seed(self.secret.order_seed(pass)));
        let chosen = &order[index * self.batch..(index + 1) * self.batch];
        let samples = self.pool.select(chosen);
        let bytes = samples.to_safetensors()?;
        let reveal = HeldOutReveal {
            salt: self.secret.salt(cycle),
            batch_hash: sha256(&bytes),
            samples: samples.len() as u64,
            pass,
        };
        Ok(HeldOutBatch {
            samples,
            bytes,
            reveal,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Samples {
        let features: Vec<f32> = (0..n * 2).map(|i| i as f32).collect();
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
        Samples::new(features, labels, 2).unwrap()
    }

    #[test]
    fn batches_of_a_pass_are_disjoint_and_cover_distinct_samples() {
        let held_out = HeldOutPool::new(HeldOutSecret::from_bytes([1; 32]), pool(270));
        assert_eq!(held_out.batch_size(), 54);
        assert_eq!(held_out.batches_per_pass(), 5);
        let mut seen = std::collections::BTreeSet::new();
        for cycle in 0..5 {
            let batch = held_out.batch(cycle).unwrap();
            assert_eq!(batch.reveal.pass, 0);
            for row in 0..batch.samples.len() {
                // Feature 0 of a sample is unique (2 * its index in the pool).
                assert!(
                    seen.insert(batch.samples.row(row)[0] as u64),
                    "sample reused"
                );
            }
        }
        assert_eq!(seen.len(), 270);
        let next_pass = held_out.batch(5).unwrap();
        assert_eq!(next_pass.reveal.pass, 1);
        assert_ne!(
            next_pass.reveal.batch_hash,
            held_out.batch(0).unwrap().reveal.batch_hash
        );
    }

    #[test]
    fn batches_depend_on_the_secret_and_the_salt_on_the_cycle() {
        let a = HeldOutPool::new(HeldOutSecret::from_bytes([1; 32]), pool(100));
        let b = HeldOutPool::new(HeldOutSecret::from_bytes([2; 32]), pool(100));
        let (a0, b0) = (a.batch(0).unwrap(), b.batch(0).unwrap());
        assert_ne!(a0.reveal.batch_hash, b0.reveal.batch_hash);
        assert_ne!(a0.reveal.salt, a.batch(1).unwrap().reveal.salt);
        // Same secret, same cycle: the same batch (a restarted coordinator commits the same).
        assert_eq!(a0.reveal, a.batch(0).unwrap().reveal);
        assert_eq!(
            a0.reveal.commitment(),
            a.batch(0).unwrap().reveal.commitment()
        );
    }

    #[test]
    fn secret_file_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = HeldOutSecret::load_or_create(dir.path()).unwrap();
        let again = HeldOutSecret::load_or_create(dir.path()).unwrap();
        assert_eq!(first.0, again.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(HELD_OUT_SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(HELD_OUT_SECRET_FILE), b"short").unwrap();
        assert!(HeldOutSecret::load_or_create(dir.path()).is_err());
    }
}
