//! Step budgets sized to each miner's measured speed, so that honest miners train for the
//! whole window instead of a fixed step count.
//!
//! A task's budget is `TRANSCRIPT_INTERVALS` checkpoint intervals of `k` steps. The
//! coordinator picks each miner's `k` when registration closes, from the miner's last verified
//! run: the steps it committed to and the time from the registration deadline to its
//! submission, both measured by the coordinator (the steps were replay-checked, the time is the
//! coordinator's clock). Nothing the miner declares enters it. The rule is a pure function of
//! the previous cycle's published record, so the audit recomputes every `k` and a coordinator
//! that gives a favoured miner a bigger budget is caught.

use crate::api::{CycleRecord, ScoredSubmission};
use bitcoin::secp256k1::PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Intervals of a run that uses its whole step budget: the budget is this many checkpoint
/// intervals. With the default q = 2 the coordinator replays 3 of 128 intervals, 2.3% of the
/// training it verifies (detection depends on the share of intervals faked, not their number),
/// and a transcript has at most 129 leaves (a path of 8 hashes), whatever the miner's speed.
pub const TRANSCRIPT_INTERVALS: u64 = 128;

/// The most a miner's `k` may grow from one cycle to the next. One verified run that looks
/// fast (a lucky cheat whose faked intervals were not drawn) cannot make the next cycle's
/// replays more than this many times dearer; an honest miner still reaches its speed from the
/// default `k` of 16 in two cycles on the fastest models (16 → 256 → 4,096), and a slow one
/// that sped up regrows from `k` = 1 in three.
pub const PACE_GROWTH_MAX: u64 = 16;

/// The budget is paced for this many windows at the measured speed. Headroom, because a
/// miner's next segment may be cheaper per step than the one it was measured on (a block's
/// backward pass stops where an embedding's goes through every layer), and because a budget
/// that ends a run before its deadline wastes the rest of the window; the deadline, not the
/// budget, should end an honest run. It leaves about 64 intervals in a run that keeps its
/// pace: detection depends on the share of intervals faked, not their number.
pub const PACE_HEADROOM: u64 = 2;

/// What a miner's next budget is sized from: its last verified run, as the record shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaceSample {
    /// Steps the miner committed to (and the replay check accepted).
    pub steps: u64,
    /// The checkpoint interval that run had.
    pub checkpoint_interval: u64,
    /// Coordinator milliseconds from the registration deadline to the submission.
    pub trained_ms: u64,
}

impl PaceSample {
    /// The sample a scored submission gives, if its check passed: only replay-checked steps
    /// count as speed. `registration_deadline_ms` is its cycle's.
    pub fn of(submission: &ScoredSubmission, registration_deadline_ms: u64) -> Option<Self> {
        if !matches!(submission.verification, proof::Verdict::Verified { .. }) {
            return None;
        }
        Some(PaceSample {
            steps: submission.commitment.steps,
            checkpoint_interval: submission.checkpoint_interval,
            trained_ms: submission
                .received_at_ms
                .saturating_sub(registration_deadline_ms),
        })
    }
}

/// The checkpoint interval of a miner's next task: enough steps at its measured speed to fill
/// [`PACE_HEADROOM`] training windows of `window_ms`, in [`TRANSCRIPT_INTERVALS`] intervals,
/// rounded up; at
/// least 1, at most [`PACE_GROWTH_MAX`] times the last run's `k` and the protocol's largest
/// interval. A miner with no verified run gets `initial` (the chain's configured `k`).
///
/// A slow miner gets a short interval (down to one step): its run still has up to 128
/// intervals, so a replay of q + 1 of them stays a small share of its work, and its verifiers
/// can replay an assignment within their window.
pub fn checkpoint_interval(sample: Option<PaceSample>, window_ms: u64, initial: u64) -> u64 {
    let Some(s) = sample else {
        return initial.clamp(1, proof::task::CHECKPOINT_INTERVAL_MAX);
    };
    // steps / trained_ms is the speed; times the windows, over the intervals. In u128: the
    // product of two u64 cannot overflow it, and the headroom's saturates.
    let numerator =
        (u128::from(s.steps) * u128::from(window_ms)).saturating_mul(u128::from(PACE_HEADROOM));
    let denominator = u128::from(s.trained_ms.max(1)) * u128::from(TRANSCRIPT_INTERVALS);
    let paced = numerator.div_ceil(denominator);
    let ceiling = s
        .checkpoint_interval
        .max(1)
        .saturating_mul(PACE_GROWTH_MAX)
        .min(proof::task::CHECKPOINT_INTERVAL_MAX);
    u64::try_from(paced).unwrap_or(u64::MAX).clamp(1, ceiling)
}

/// Every miner's pace sample from a cycle's record: what the next cycle's budgets follow.
pub fn samples(record: &CycleRecord) -> BTreeMap<PublicKey, PaceSample> {
    let deadline = record.announcement.announcement.registration_deadline_ms;
    record
        .submissions
        .iter()
        .filter_map(|s| PaceSample::of(s, deadline).map(|p| (s.miner, p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u64 = 12_000;

    fn sample(steps: u64, k: u64, trained_ms: u64) -> Option<PaceSample> {
        Some(PaceSample {
            steps,
            checkpoint_interval: k,
            trained_ms,
        })
    }

    #[test]
    fn a_new_miner_gets_the_configured_interval() {
        assert_eq!(checkpoint_interval(None, WINDOW, 16), 16);
    }

    #[test]
    fn a_miner_that_finished_early_gets_a_budget_that_fills_the_window() {
        // 2,048 steps in 1.2 s: 10x that fits the 12 s window, 20,480 steps, twice that with
        // the headroom, k = 320 (from a k of 32; from 16 the growth cap holds it at 256).
        assert_eq!(
            checkpoint_interval(sample(2_048, 32, 1_200), WINDOW, 16),
            320
        );
        assert_eq!(
            checkpoint_interval(sample(2_048, 16, 1_200), WINDOW, 16),
            256
        );
    }

    #[test]
    fn a_miner_that_used_the_window_keeps_its_pace() {
        // 10,000 steps in the whole window: k = ceil(2 * 10,000 / 128) = 157, so a run at the
        // same pace ends at its deadline in about 64 intervals.
        assert_eq!(
            checkpoint_interval(sample(10_000, 157, WINDOW), WINDOW, 16),
            157
        );
    }

    #[test]
    fn a_slow_miner_gets_a_short_interval() {
        // 40 steps in the whole window (a model whose steps are slow): one step per interval.
        assert_eq!(checkpoint_interval(sample(40, 16, WINDOW), WINDOW, 16), 1);
        // 300 steps: ceil(2 * 300 / 128) = 5.
        assert_eq!(checkpoint_interval(sample(300, 1, WINDOW), WINDOW, 16), 5);
        // A run that did nothing still gets a valid interval.
        assert_eq!(checkpoint_interval(sample(0, 16, WINDOW), WINDOW, 16), 1);
    }

    #[test]
    fn one_fast_looking_run_grows_k_at_most_sixteen_fold() {
        // A cheat that claimed its whole budget a millisecond after the deadline (and was not
        // caught) cannot make its next task's replays more than 16 times dearer.
        assert_eq!(checkpoint_interval(sample(2_048, 16, 1), WINDOW, 16), 256);
        assert_eq!(
            checkpoint_interval(sample(u64::MAX, 1 << 15, 0), u64::MAX, 16),
            proof::task::CHECKPOINT_INTERVAL_MAX
        );
    }

    #[test]
    fn only_verified_runs_are_samples() {
        let record_entry = |verification| ScoredSubmission {
            miner: bitcoin::secp256k1::SecretKey::from_slice(&[1; 32])
                .unwrap()
                .public_key(&bitcoin::secp256k1::Secp256k1::new()),
            payout_address: String::new(),
            segment: "layer0".into(),
            update_hash: primitives::Hash256::ZERO,
            commitment: proof::Commitment {
                task_hash: primitives::Hash256::ZERO,
                update_hash: primitives::Hash256::ZERO,
                transcript_root: primitives::Hash256::ZERO,
                steps: 500,
            },
            received_at_ms: 1_500,
            params_trained: 1,
            loss_reduction: 1,
            score: 1,
            verification,
            checkpoint_interval: 16,
        };
        let verified = record_entry(proof::Verdict::Verified {
            intervals: vec![0],
            replayed_steps: 16,
        });
        assert_eq!(
            PaceSample::of(&verified, 1_000),
            Some(PaceSample {
                steps: 500,
                checkpoint_interval: 16,
                trained_ms: 500
            })
        );
        assert_eq!(
            PaceSample::of(&record_entry(proof::Verdict::Unanswered), 1_000),
            None
        );
    }
}
