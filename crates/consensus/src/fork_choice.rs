//! Fork choice: the longest valid chain; at equal length the branch whose first block after the
//! fork point carries the lower certificate attempt wins (attempt 0 is the lottery's first draw,
//! so an honest winner's block beats a fallback); then the branch seen first.

use std::cmp::Ordering;

/// What fork choice needs to know about the tip of a branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchTip {
    pub height: u32,
    /// Certificate attempt of the branch's first block after the common ancestor.
    pub attempt_at_fork: u32,
    /// Order in which this node first saw the branch's tip (lower = earlier).
    pub seen_order: u64,
}

/// True if `candidate` should replace `current` as the best chain.
pub fn prefer_branch(candidate: &BranchTip, current: &BranchTip) -> bool {
    let rank = |b: &BranchTip| {
        (
            b.height,
            std::cmp::Reverse(b.attempt_at_fork),
            std::cmp::Reverse(b.seen_order),
        )
    };
    rank(candidate).cmp(&rank(current)) == Ordering::Greater
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tip(height: u32, attempt_at_fork: u32, seen_order: u64) -> BranchTip {
        BranchTip {
            height,
            attempt_at_fork,
            seen_order,
        }
    }

    #[test]
    fn longer_wins_then_lower_attempt_then_first_seen() {
        let cases = [
            (tip(11, 5, 9), tip(10, 0, 0), true),
            (tip(10, 0, 0), tip(11, 5, 9), false),
            (tip(10, 0, 9), tip(10, 1, 0), true),
            (tip(10, 1, 0), tip(10, 0, 9), false),
            (tip(10, 0, 3), tip(10, 0, 4), true),
            (tip(10, 0, 4), tip(10, 0, 3), false),
            (tip(10, 0, 4), tip(10, 0, 4), false),
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
