//! The incentive inequality of seed 003 with this chain's numbers: is honest training a rational
//! miner's best move, given the block reward, the bond, how many submissions are replay-checked
//! and how many intervals each check opens?
//!
//! A miner with win probability `w` for a block reward `R`, whose honest training costs `C`,
//! earns `wR − C`. A cheat that skips (fakes) `m` of its `n` transcript intervals saves `(m/n)C`
//! and is caught with probability `p(m) = q · (1 − C(n−m, k) / C(n, k))`: its submission is
//! checked with probability `q` and the check opens `k` distinct intervals, uniformly. Caught,
//! it loses the reward and its bond `B`. Its profit is `(1 − p)wR − pB − (1 − m/n)C`, so
//!
//! ```text
//! cheating − honest = (m/n)·C − p(m)·(wR + B)
//! ```
//!
//! and cheating pays iff some `m` makes that positive. A miner takes part only if `C ≤ wR`, and
//! `p(m) ≥ q·m/n` for `k ≥ 1`, so honest training is the best move whenever
//! `q·(wR + B) ≥ wR`, that is `B ≥ wR(1 − q)/q`: with `w ≤ 1`, a bond of `R(1 − q)/q` suffices
//! for any miner. With every submission checked (`q = 1`) no bond is needed against skipped
//! work; the bond is what lets verifiers check only a sample.

/// Parts per million: fractions in integers, as the rest of consensus keeps them.
pub const PPM: u64 = 1_000_000;

/// The terms a miner faces in one cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incentives {
    /// Block reward `R` (subsidy; fees only make honesty pay more).
    pub reward_sats: u64,
    /// Bond forfeited when caught `B`.
    pub bond_sats: u64,
    /// Fraction `q` of submissions replay-checked, in ppm.
    pub check_ppm: u64,
    /// Intervals each check opens `k`.
    pub challenges: u32,
}

/// `C(n, k)` as f64 (exact up to 2^53, far beyond the interval counts used here).
fn choose(n: u64, k: u64) -> f64 {
    if k > n {
        return 0.0;
    }
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

impl Incentives {
    /// Chance that a cheat faking `skipped` of `intervals` intervals is caught.
    pub fn detection_probability(&self, intervals: u64, skipped: u64) -> f64 {
        let q = self.check_ppm.min(PPM) as f64 / PPM as f64;
        let k = u64::from(self.challenges).min(intervals);
        let escape = choose(intervals - skipped.min(intervals), k) / choose(intervals, k);
        q * (1.0 - escape)
    }

    /// Expected gain of cheating over honest training, in satoshis, for a miner with win
    /// probability `win` whose honest run costs `cost_sats`, faking `skipped` of `intervals`.
    pub fn cheating_advantage(
        &self,
        win: f64,
        cost_sats: f64,
        intervals: u64,
        skipped: u64,
    ) -> f64 {
        let p = self.detection_probability(intervals, skipped);
        let saved = skipped.min(intervals) as f64 / intervals.max(1) as f64 * cost_sats;
        saved - p * (win * self.reward_sats as f64 + self.bond_sats as f64)
    }

    /// The most profitable cheat for a miner who would break even honestly (`C = wR`, the worst
    /// case a participating miner can be in), if any pays: `(skipped, advantage)`.
    pub fn best_cheat(&self, win: f64, intervals: u64) -> Option<(u64, f64)> {
        let cost = win * self.reward_sats as f64;
        (1..=intervals)
            .map(|m| (m, self.cheating_advantage(win, cost, intervals, m)))
            .filter(|(_, gain)| *gain > 0.0)
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// The smallest bond that makes honest training the best move for every miner:
    /// `R(1 − q)/q`, rounded up; `None` when nothing is checked (`q = 0`: no bond suffices).
    pub fn bond_needed_sats(&self) -> Option<u64> {
        let q = self.check_ppm.min(PPM);
        if q == 0 {
            return None;
        }
        let reward = u128::from(self.reward_sats);
        let needed = (reward * u128::from(PPM - q)).div_ceil(u128::from(q));
        Some(u64::try_from(needed).unwrap_or(u64::MAX))
    }

    /// The smallest check fraction (ppm) that keeps every miner honest with this bond:
    /// `R / (R + B)`, rounded up.
    pub fn check_ppm_needed(&self) -> u64 {
        let (r, b) = (u128::from(self.reward_sats), u128::from(self.bond_sats));
        if r == 0 {
            return 0;
        }
        u64::try_from((r * u128::from(PPM)).div_ceil(r + b)).unwrap_or(PPM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COIN: u64 = 100_000_000;

    fn terms(check_ppm: u64, bond_coins: u64) -> Incentives {
        Incentives {
            reward_sats: 50 * COIN,
            bond_sats: bond_coins * COIN,
            check_ppm,
            challenges: 2,
        }
    }

    #[test]
    fn detection_is_the_hypergeometric_chance_times_the_check_fraction() {
        let t = terms(PPM, 0);
        // 2 of 4 intervals faked, 2 opened: escape only if both opened are honest, 1 in 6.
        assert!((t.detection_probability(4, 2) - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(t.detection_probability(4, 4), 1.0);
        assert_eq!(t.detection_probability(4, 0), 0.0);
        let half = terms(PPM / 2, 0);
        assert!((half.detection_probability(4, 2) - 5.0 / 12.0).abs() < 1e-12);
    }

    #[test]
    fn full_checks_keep_every_miner_honest_without_a_bond() {
        let t = terms(PPM, 0);
        for intervals in 1..=64 {
            for win in [0.01, 0.1, 0.5, 1.0] {
                assert_eq!(t.best_cheat(win, intervals), None, "n {intervals} w {win}");
            }
        }
        assert_eq!(t.bond_needed_sats(), Some(0));
    }

    #[test]
    fn sampled_checks_need_the_bond_the_inequality_names() {
        // Checking 10% of submissions: the bond must be at least 9 rewards.
        let unbonded = terms(PPM / 10, 0);
        assert!(
            unbonded.best_cheat(1.0, 16).is_some(),
            "cheating pays unbonded"
        );
        assert_eq!(unbonded.bond_needed_sats(), Some(450 * COIN));
        let bonded = terms(PPM / 10, 450);
        for intervals in 1..=64 {
            assert_eq!(bonded.best_cheat(1.0, intervals), None, "n {intervals}");
        }
        // Just under it, faking everything pays for a miner sure to win.
        let short = terms(PPM / 10, 449);
        assert!(short.best_cheat(1.0, 16).is_some());
        assert_eq!(terms(0, 1_000).bond_needed_sats(), None);
    }

    #[test]
    fn check_fraction_needed_is_reward_over_reward_plus_bond() {
        assert_eq!(terms(0, 0).check_ppm_needed(), PPM);
        // R = 50, B = 1: 50/51.
        assert_eq!(terms(0, 1).check_ppm_needed(), 980_393);
        assert_eq!(terms(0, 450).check_ppm_needed(), 100_000);
    }
}
