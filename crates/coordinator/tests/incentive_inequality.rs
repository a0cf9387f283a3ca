//! The incentive inequality with the chain's default numbers (docs/protocol.md, "Incentive
//! inequality"): if a change to the defaults ever made cheating at proof of training pay, this
//! fails. The model (`consensus::incentive`) counts only the uniformly drawn challenges; the
//! coordinator also always replays the last interval, so real detection is higher.

use consensus::incentive::{Incentives, PPM};
use coordinator::cycle::ProofParams;
use primitives::params::DEFAULT_BOND_MIN_SATS;
use primitives::SubsidySchedule;

/// Every submission's challenged intervals are replayed (by the coordinator today; verifiers
/// checking a sample would lower this, and the bond must then grow: see `bond_needed_sats`).
const CHECKED_PPM: u64 = PPM;

fn defaults() -> Incentives {
    // What `trainchain init` writes: the default subsidy and bond. A caught cheat can claim the
    // finder share of its own bond through a verifier key it runs (its claim is then the true
    // leaf), so what it surely loses is the bond less that share.
    let share = u64::from(primitives::params::DEFAULT_SLASH_FINDER_SHARE_PERCENT);
    Incentives {
        reward_sats: SubsidySchedule::default().initial_sats,
        bond_sats: DEFAULT_BOND_MIN_SATS * (100 - share) / 100,
        check_ppm: CHECKED_PPM,
        challenges: ProofParams::default().challenges,
    }
}

#[test]
fn with_the_default_parameters_cheating_never_pays() {
    let terms = defaults();
    assert!(
        terms.challenges >= 1,
        "a check must open at least one interval"
    );
    for intervals in 1..=256 {
        for win in [0.001, 0.01, 0.1, 0.5, 1.0] {
            assert_eq!(
                terms.best_cheat(win, intervals),
                None,
                "{intervals} intervals, win probability {win}: cheating pays under {terms:?}"
            );
        }
    }
    // The bond covers the check fraction in use, with room to spare.
    assert!(terms.bond_sats >= terms.bond_needed_sats().unwrap());
    assert!(terms.check_ppm >= terms.check_ppm_needed());
}

#[test]
fn sampling_fewer_submissions_than_the_bond_covers_would_make_cheating_pay() {
    // The inequality is not vacuous: below R / (R + B) checks, faking pays for a likely winner.
    let mut terms = defaults();
    terms.check_ppm = terms.check_ppm_needed() - 1_000;
    assert!(terms.best_cheat(1.0, 16).is_some(), "{terms:?}");
}
