//! Block subsidy: Bitcoin's halving schedule with parameters from the chain.

use bitcoin::Amount;
use primitives::SubsidySchedule;

/// Subsidy of the block at `height`: `initial >> (height / interval)`, zero after 64 halvings
/// (a shift by 64 or more would be undefined, as Bitcoin Core notes).
pub fn block_subsidy(height: u32, schedule: &SubsidySchedule) -> Amount {
    let halvings = height / schedule.halving_interval_blocks.max(1);
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount::from_sat(schedule.initial_sats >> halvings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_bitcoin_schedule() {
        let s = SubsidySchedule::default();
        let cases = [
            (0, 50_0000_0000),
            (209_999, 50_0000_0000),
            (210_000, 25_0000_0000),
            (420_000, 12_5000_0000),
            (210_000 * 33, 0),
            (u32::MAX, 0),
        ];
        for (height, sats) in cases {
            assert_eq!(
                block_subsidy(height, &s),
                Amount::from_sat(sats),
                "height {height}"
            );
        }
    }

    #[test]
    fn total_supply_stays_below_21_million() {
        let s = SubsidySchedule::default();
        let total: u64 = (0..64u32)
            .map(|era| block_subsidy(era.saturating_mul(210_000), &s).to_sat() * 210_000)
            .sum();
        assert!(total <= 21_000_000 * 100_000_000);
        assert!(total > 20_999_999 * 100_000_000);
    }
}
