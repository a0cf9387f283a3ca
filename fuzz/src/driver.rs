//! The plain driver: runs a target over its seed corpus, then over random mutations of the
//! seeds for a time budget. No instrumentation, so it builds and runs on stable with the
//! workspace's ordinary build (the CI smoke step); AFL++ does the coverage-guided runs.
//!
//! A panic is caught, its input written to `fuzz/artifacts/<target>/crash-<sha256>` and
//! counted; the run goes on, and the caller fails if anything crashed.

use crate::{Outcome, Target};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Largest input the mutator grows to: every decoder's interesting structure fits well below
/// it, and it keeps one execution in microseconds (AFL's default limit is 1 MB).
pub const INPUT_BYTES_MAX: usize = 64 * 1024;

/// Crashes kept per run before the driver stops early: one bug tends to crash every mutation
/// of its input, and the first few inputs are what a developer needs.
pub const CRASHES_MAX: usize = 8;

/// Characters of a panic message shown per crash (assertions print whole values).
const MESSAGE_CHARS_MAX: usize = 400;

/// xorshift64*: small, fast and seedable, so a run can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform-enough in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Values that sit on boundaries: counts, lengths, limits and their neighbours.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0x80,
    0xfc,
    0xfd,
    0xfe,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0xffff_ffff,
    u64::MAX,
];

/// Applies one to eight stacked mutations (AFL's "havoc" in miniature); may splice `other`.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        let len = input.len();
        match rng.below(11) {
            // Flip one bit.
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            // Random byte.
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next_u64() as u8;
            }
            // Interesting integer, 1/2/4/8 bytes little-endian (our encodings' byte order).
            2 if len > 0 => {
                let width = [1, 2, 4, 8][rng.below(4)].min(len);
                let i = rng.below(len - width + 1);
                let mut v = INTERESTING[rng.below(INTERESTING.len())];
                if rng.chance(2) {
                    v = v.wrapping_add(rng.below(3) as u64).wrapping_sub(1);
                }
                input[i..i + width].copy_from_slice(&v.to_le_bytes()[..width]);
            }
            // Add or subtract a small amount from a byte (counts and lengths off by a few).
            3 if len > 0 => {
                let i = rng.below(len);
                let delta = 1 + rng.below(16) as u8;
                input[i] = if rng.chance(2) {
                    input[i].wrapping_add(delta)
                } else {
                    input[i].wrapping_sub(delta)
                };
            }
            // Delete a range.
            4 if len > 0 => {
                let start = rng.below(len);
                let n = 1 + rng.below((len - start).min(64));
                input.drain(start..start + n);
            }
            // Insert random bytes.
            5 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                input.splice(at..at, bytes);
            }
            // Duplicate a range (repeated records, doubled fields).
            6 if len > 0 => {
                let start = rng.below(len);
                let n = 1 + rng.below((len - start).min(512));
                let copy = input[start..start + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, copy);
            }
            // Truncate.
            7 if len > 0 => input.truncate(rng.below(len)),
            // Splice in a piece of another seed.
            8 if !other.is_empty() => {
                let start = rng.below(other.len());
                let n = 1 + rng.below((other.len() - start).min(1024));
                let at = rng.below(len + 1);
                let end = (at + n).min(len);
                input.splice(at..end, other[start..start + n].iter().copied());
            }
            // Overwrite with a byte that is structural in text formats.
            9 if len > 0 => {
                const TOKENS: &[u8] = b"\"{}[],:=\n\\0-.eE+ \t#'";
                let i = rng.below(len);
                input[i] = TOKENS[rng.below(TOKENS.len())];
            }
            // Swap two bytes.
            _ if len > 1 => {
                let (a, b) = (rng.below(len), rng.below(len));
                input.swap(a, b);
            }
            _ => input.push(rng.next_u64() as u8),
        }
    }
    input.truncate(INPUT_BYTES_MAX);
}

/// Seed files of a target, sorted by name (an absent folder is an empty corpus).
pub fn load_corpus(dir: &Path) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut seeds = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let path = entry?.path();
                if path.is_file() {
                    let bytes = std::fs::read(&path)?;
                    seeds.push((path, bytes));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    seeds.sort();
    Ok(seeds)
}

/// What one run did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub executions: u64,
    pub accepted: u64,
    pub crashes: Vec<PathBuf>,
    pub elapsed: Duration,
}

impl Report {
    pub fn rate_per_sec(&self) -> f64 {
        self.executions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `target` on one input, catching a panic.
fn execute(target: &Target, input: &[u8]) -> Result<Outcome, String> {
    panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input))).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

fn save_crash(artifacts: &Path, target: &Target, input: &[u8]) -> PathBuf {
    let dir = artifacts.join(target.name);
    let path = dir.join(format!(
        "crash-{}",
        hex::encode(&primitives::sha256(input).0[..8])
    ));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, input)) {
        eprintln!("could not save {}: {e}", path.display());
    }
    path
}

/// Every seed once, then mutations of random seeds until `budget` has passed.
pub fn run(
    target: &Target,
    seeds: &[Vec<u8>],
    budget: Duration,
    rng_seed: u64,
    artifacts: &Path,
) -> Report {
    let start = Instant::now();
    let mut report = Report::default();
    let mut rng = Rng::new(rng_seed);
    let empty = [Vec::new()];
    let pool: &[Vec<u8>] = if seeds.is_empty() { &empty } else { seeds };
    let record = |report: &mut Report, input: &[u8]| {
        report.executions += 1;
        match execute(target, input) {
            Ok(Outcome::Accepted) => report.accepted += 1,
            Ok(Outcome::Rejected) => {}
            Err(mut message) => {
                if let Some((cut, _)) = message.char_indices().nth(MESSAGE_CHARS_MAX) {
                    message.truncate(cut);
                    message.push_str("...");
                }
                let path = save_crash(artifacts, target, input);
                eprintln!(
                    "{}: CRASH ({message}), input saved to {}",
                    target.name,
                    path.display()
                );
                report.crashes.push(path);
            }
        }
    };
    // The panic message is reported below, shortened; the default hook would print every
    // crash in full with a backtrace.
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    for seed in pool {
        record(&mut report, seed);
    }
    let mut input = Vec::with_capacity(INPUT_BYTES_MAX);
    'outer: while start.elapsed() < budget && report.crashes.len() < CRASHES_MAX {
        // Check the clock every 64 executions: it is cheap, but not free next to a decoder.
        for _ in 0..64 {
            input.clear();
            input.extend_from_slice(&pool[rng.below(pool.len())]);
            let other = &pool[rng.below(pool.len())];
            mutate(&mut rng, &mut input, other);
            record(&mut report, &input);
            if report.crashes.len() >= CRASHES_MAX {
                break 'outer;
            }
        }
    }
    panic::set_hook(hook);
    report.elapsed = start.elapsed();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_within_the_input_limit() {
        let mut rng = Rng::new(7);
        let mut input = vec![0u8; INPUT_BYTES_MAX];
        for _ in 0..1000 {
            mutate(&mut rng, &mut input, &[1, 2, 3]);
            assert!(input.len() <= INPUT_BYTES_MAX);
        }
    }

    #[test]
    fn a_panicking_target_is_caught_and_saved() {
        fn boom(data: &[u8]) -> Outcome {
            assert!(data.len() < 3, "long input");
            Outcome::Rejected
        }
        let target = Target {
            name: "boom",
            about: "test",
            run: boom,
        };
        let artifacts = tempfile::tempdir().unwrap();
        let report = run(
            &target,
            &[vec![1, 2, 3, 4]],
            Duration::from_millis(10),
            1,
            artifacts.path(),
        );
        assert!(!report.crashes.is_empty());
        assert_eq!(std::fs::read(&report.crashes[0]).unwrap(), vec![1, 2, 3, 4]);
    }
}
