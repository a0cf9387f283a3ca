//! Named limits of the HTTP API and the registration rate limiter.

/// Largest JSON request body (a registration is a few hundred bytes; 16 KiB leaves room for
/// long addresses and still refuses junk before parsing).
pub const JSON_BODY_BYTES_MAX: usize = 16 * 1024;

/// Largest update upload accepted by the router. The exact per-segment limit
/// (`ExpectedSegment::limit_bytes`) is checked after; this outer bound only stops a client
/// from streaming an unbounded body: 64 MiB covers a 16 M-parameter segment in f32.
pub const UPDATE_BODY_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Sustained registrations per second across all clients: a 1,000-miner cycle fills in
/// ten seconds, while a flood cannot make the coordinator verify signatures without end.
pub const REGISTRATIONS_PER_SECOND: f64 = 100.0;

/// Registrations accepted in a burst above the sustained rate (miners all register when a
/// cycle opens).
pub const REGISTRATION_BURST: f64 = 200.0;

/// Most cycle records served by one `GET /v1/cycles` call (each can hold a thousand
/// submissions).
pub const CYCLE_RECORDS_PER_PAGE_MAX: u64 = 100;

/// A token bucket with time passed in (milliseconds).
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    last_ms: Option<u64>,
}

impl RateLimiter {
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        RateLimiter {
            rate_per_sec,
            burst,
            tokens: burst,
            last_ms: None,
        }
    }

    /// Takes one token if available at `now_ms`.
    pub fn try_take(&mut self, now_ms: u64) -> bool {
        if let Some(last) = self.last_ms {
            let elapsed_secs = now_ms.saturating_sub(last) as f64 / 1000.0;
            self.tokens = (self.tokens + elapsed_secs * self.rate_per_sec).min(self.burst);
        }
        self.last_ms = Some(now_ms.max(self.last_ms.unwrap_or(0)));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_the_sustained_rate() {
        let mut limiter = RateLimiter::new(10.0, 3.0);
        assert!((0..3).all(|_| limiter.try_take(1_000)));
        assert!(!limiter.try_take(1_000), "burst spent");
        assert!(!limiter.try_take(1_050), "half a token after 50 ms");
        assert!(limiter.try_take(1_100), "one token after 100 ms");
        assert!(
            (0..3).all(|_| limiter.try_take(60_000)),
            "refills to the burst"
        );
        assert!(!limiter.try_take(60_000));
    }
}
