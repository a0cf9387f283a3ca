//! CPU-time accounting: how much of the process's CPU went into training (useful work) and how
//! much into everything else (registration, downloads, decoding, signing, polling, blocks).
//!
//! The clock is the process's user + system time (`getrusage(RUSAGE_SELF)`), so the training
//! threads that `learning::train` spawns for itself are counted. A miner is meant to run as
//! its own process (`trainchain miner`, also in the devnet), which makes the split exact.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// CPU time (user + system) used by this process so far.
pub fn process_cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage returned 0, so it filled the struct.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU seconds of one cycle, split by what they were spent on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuAccount {
    pub training_secs: f64,
    pub other_secs: f64,
}

impl CpuAccount {
    pub fn total_secs(&self) -> f64 {
        self.training_secs + self.other_secs
    }

    /// Training CPU over all CPU; 0 when nothing was spent.
    pub fn useful_work_fraction(&self) -> f64 {
        let total = self.total_secs();
        if total > 0.0 {
            self.training_secs / total
        } else {
            0.0
        }
    }

    pub fn add(&mut self, other: &CpuAccount) {
        self.training_secs += other.training_secs;
        self.other_secs += other.other_secs;
    }
}

/// Measures one cycle: start it, bracket the training, finish it.
pub struct CycleClock {
    started: Duration,
    training: Duration,
}

impl CycleClock {
    pub fn start() -> Self {
        CycleClock {
            started: process_cpu_time(),
            training: Duration::ZERO,
        }
    }

    /// Runs `train` and books the process CPU it used as training.
    pub fn training<T>(&mut self, train: impl FnOnce() -> T) -> T {
        let before = process_cpu_time();
        let out = train();
        self.training += process_cpu_time().saturating_sub(before);
        out
    }

    /// Books the process CPU used since `started` (a [`process_cpu_time`] reading) as
    /// training: for training that runs on other threads while this one awaits it.
    pub fn book_training(&mut self, started: Duration) {
        self.training += process_cpu_time().saturating_sub(started);
    }

    /// The account so far: everything not booked as training is "other".
    pub fn account(&self) -> CpuAccount {
        let total = process_cpu_time().saturating_sub(self.started);
        CpuAccount {
            training_secs: self.training.as_secs_f64(),
            other_secs: total.saturating_sub(self.training).as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_inside_the_bracket_counts_as_training() {
        let mut clock = CycleClock::start();
        let spin = |ms: u64| {
            let until = std::time::Instant::now() + Duration::from_millis(ms);
            let mut x = 0u64;
            while std::time::Instant::now() < until {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            x
        };
        std::hint::black_box(clock.training(|| spin(200)));
        std::hint::black_box(spin(20));
        let account = clock.account();
        assert!(account.training_secs >= 0.1, "{account:?}");
        assert!(account.useful_work_fraction() > 0.5, "{account:?}");
        assert!(account.useful_work_fraction() <= 1.0);
        assert_eq!(CpuAccount::default().useful_work_fraction(), 0.0);
    }
}
