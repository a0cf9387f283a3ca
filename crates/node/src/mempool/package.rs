//! Fee rates of transactions and packages, compared exactly.

use bitcoin::FeeRate;
use std::cmp::Ordering;

/// Weight units per serialized byte under this chain's convention (a byte counts as a vbyte).
const WU_PER_BYTE: u64 = 4;

/// A fee over a size, for one transaction or a set of them. Comparisons cross-multiply in
/// `u128`, so no rounding decides which of two close rates is higher.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PackageRate {
    pub fee_sats: u64,
    pub bytes: u64,
}

impl PackageRate {
    pub fn new(fee_sats: u64, bytes: usize) -> PackageRate {
        PackageRate {
            fee_sats,
            bytes: bytes as u64,
        }
    }

    /// This rate with another transaction's fee and size added to the package.
    pub fn plus(self, fee_sats: u64, bytes: usize) -> PackageRate {
        PackageRate {
            fee_sats: self.fee_sats.saturating_add(fee_sats),
            bytes: self.bytes.saturating_add(bytes as u64),
        }
    }

    /// As a `FeeRate` (rounded down to a whole sat/kwu), for reporting.
    pub fn to_fee_rate(self) -> FeeRate {
        let kwu = self.bytes.saturating_mul(WU_PER_BYTE).max(1);
        FeeRate::from_sat_per_kwu(self.fee_sats.saturating_mul(1000) / kwu)
    }

    /// Whether this rate exceeds `other` by at least `increment`:
    /// `self.fee / self.bytes >= other.fee / other.bytes + increment`, exactly.
    pub fn outbids(self, other: PackageRate, increment: FeeRate) -> bool {
        // increment in sat per byte is kwu_rate * 4 / 1000; multiply through by 1000 * both sizes.
        let lhs = u128::from(self.fee_sats) * u128::from(other.bytes) * 1000;
        let rhs = u128::from(other.fee_sats) * u128::from(self.bytes) * 1000
            + u128::from(increment.to_sat_per_kwu())
                * u128::from(WU_PER_BYTE)
                * u128::from(self.bytes)
                * u128::from(other.bytes);
        lhs >= rhs
    }
}

impl Ord for PackageRate {
    fn cmp(&self, other: &Self) -> Ordering {
        (u128::from(self.fee_sats) * u128::from(other.bytes))
            .cmp(&(u128::from(other.fee_sats) * u128::from(self.bytes)))
    }
}

impl PartialOrd for PackageRate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PackageRate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PackageRate {}

/// A fee rate in sat/kvB (sat per 1,000 serialized bytes), the unit the pool reports in.
pub fn sat_per_kvb(rate: FeeRate) -> u64 {
    rate.to_sat_per_kwu().saturating_mul(WU_PER_BYTE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mempool_package_rates_compare_exactly_and_outbid_by_the_increment() {
        let a = PackageRate::new(1_000, 300); // 3.33 sat/B
        let b = PackageRate::new(1_001, 300);
        assert!(b > a);
        assert_eq!(PackageRate::new(2_000, 600), a);
        let one_sat_per_byte = FeeRate::from_sat_per_kwu(250);
        assert!(!b.outbids(a, one_sat_per_byte));
        assert!(PackageRate::new(1_300, 300).outbids(a, one_sat_per_byte));
        assert!(!PackageRate::new(1_299, 300).outbids(a, one_sat_per_byte));
        assert_eq!(
            sat_per_kvb(PackageRate::new(1_000, 1_000).to_fee_rate()),
            1_000
        );
    }
}
