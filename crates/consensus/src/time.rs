//! Block time rules, as in Bitcoin: above the median of the previous 11 blocks, and not more
//! than two hours ahead of the validating node's clock.

/// Number of previous blocks whose median bounds a new block's time from below.
pub const MEDIAN_TIME_SPAN: usize = 11;

/// How far ahead of the local clock a block's time may be: Bitcoin's two hours.
pub const MAX_FUTURE_BLOCK_SECS: u64 = 2 * 60 * 60;

/// Median of the given block times (the last up to [`MEDIAN_TIME_SPAN`] ancestors, any order).
/// Returns 0 for no ancestors.
pub fn median_time_past(times: &[u32]) -> u32 {
    let start = times.len().saturating_sub(MEDIAN_TIME_SPAN);
    let mut window = times[start..].to_vec();
    if window.is_empty() {
        return 0;
    }
    window.sort_unstable();
    window[window.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_uses_last_eleven() {
        assert_eq!(median_time_past(&[]), 0);
        assert_eq!(median_time_past(&[5]), 5);
        assert_eq!(median_time_past(&[3, 1, 2]), 2);
        let times: Vec<u32> = (1..=20).collect();
        assert_eq!(median_time_past(&times), 15);
    }
}
