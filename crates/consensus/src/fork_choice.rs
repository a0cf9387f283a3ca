//! Fork choice: the longest valid chain; at equal length the branch whose first block after the
//! fork point carries the later certificate, by (cycle, attempt), wins; then the branch seen
//! first.
//!
//! Why the later certificate: an honest coordinator issues a certificate for the next attempt
//! (or opens the next cycle on the same tip) only after the previous certificate's block window
//! ran out without a block reaching its node. A silent winner that publishes afterwards, with a
//! header time backdated into its own window, must therefore lose to the block the chain moved
//! on to; preferring the earlier attempt let it replace that block.

use std::cmp::Ordering;

/// What fork choice needs to know about the tip of a branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchTip {
    pub height: u32,
    /// Certificate cycle and attempt of the branch's first block after the common ancestor.
    pub cycle_at_fork: u64,
    pub attempt_at_fork: u32,
    /// Order in which this node first saw the branch's tip (lower = earlier).
    pub seen_order: u64,
}

/// True if `candidate` should replace `current` as the best chain.
pub fn prefer_branch(candidate: &BranchTip, current: &BranchTip) -> bool {
    let rank = |b: &BranchTip| {
        (
            b.height,
            b.cycle_at_fork,
            b.attempt_at_fork,
            std::cmp::Reverse(b.seen_order),
        )
    };
    rank(candidate).cmp(&rank(current)) == Ordering::Greater
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tip(height: u32, cycle_at_fork: u64, attempt_at_fork: u32, seen_order: u64) -> BranchTip {
        BranchTip {
            height,
            cycle_at_fork,
            attempt_at_fork,
            seen_order,
        }
    }

    #[test]
    fn longer_wins_then_later_certificate_then_first_seen() {
        let cases = [
            // Longer wins whatever its certificates.
            (tip(11, 0, 0, 9), tip(10, 7, 5, 0), true),
            (tip(10, 7, 5, 0), tip(11, 0, 0, 9), false),
            // A later attempt of the same cycle wins, even seen last: the silent winner's block.
            (tip(10, 3, 1, 9), tip(10, 3, 0, 0), true),
            (tip(10, 3, 0, 9), tip(10, 3, 1, 0), false),
            // A later cycle wins over any attempt of an earlier one.
            (tip(10, 4, 0, 9), tip(10, 3, 31, 0), true),
            (tip(10, 3, 31, 9), tip(10, 4, 0, 0), false),
            // Same certificate slot: first seen.
            (tip(10, 3, 0, 3), tip(10, 3, 0, 4), true),
            (tip(10, 3, 0, 4), tip(10, 3, 0, 3), false),
            (tip(10, 3, 0, 4), tip(10, 3, 0, 4), false),
        ];
        for (candidate, current, expected) in cases {
            assert_eq!(
                prefer_branch(&candidate, &current),
                expected,
                "{candidate:?} vs {current:?}"
            );
        }
    }
}
