//! Contribution scores, as the coordinator measures them and anyone can recheck from the
//! published numbers: `score = parameters trained x max(0, loss reduction)`, in integers.

use primitives::certificate::LOSS_UNITS_PER_NAT;

/// Loss reduction in fixed-point units (10^-6 nat), rounded to nearest: `global - candidate`.
/// `None` if either loss is not finite or the difference does not fit: such an update is
/// rejected before scoring, never scored as zero by accident.
pub fn loss_reduction_units(global_loss: f64, candidate_loss: f64) -> Option<i64> {
    if !global_loss.is_finite() || !candidate_loss.is_finite() {
        return None;
    }
    let units = ((global_loss - candidate_loss) * LOSS_UNITS_PER_NAT as f64).round();
    // i64::MAX as f64 rounds up to 2^63, so compare strictly below it.
    if units >= i64::MIN as f64 && units < i64::MAX as f64 {
        Some(units as i64)
    } else {
        None
    }
}

/// Lottery weight of a contribution. An update that does not lower the held-out loss scores 0
/// and can never win; the product saturates rather than wraps.
pub fn score(params_trained: u64, loss_reduction_units: i64) -> u64 {
    let reduction = u64::try_from(loss_reduction_units.max(0)).unwrap_or(0);
    params_trained.saturating_mul(reduction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_reduction_is_fixed_point_and_rejects_non_finite() {
        assert_eq!(loss_reduction_units(2.5, 2.0), Some(500_000));
        assert_eq!(loss_reduction_units(2.0, 2.5), Some(-500_000));
        assert_eq!(loss_reduction_units(1.0, 1.0 - 4e-7), Some(0));
        assert_eq!(loss_reduction_units(f64::NAN, 1.0), None);
        assert_eq!(loss_reduction_units(1.0, f64::INFINITY), None);
        assert_eq!(loss_reduction_units(1e300, -1e300), None);
    }

    #[test]
    fn score_is_zero_without_improvement_and_saturates() {
        assert_eq!(score(1_000, 500), 500_000);
        assert_eq!(score(1_000, 0), 0);
        assert_eq!(score(1_000, -5), 0);
        assert_eq!(score(0, 500), 0);
        assert_eq!(score(u64::MAX, 2), u64::MAX);
    }
}
