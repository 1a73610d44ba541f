//! A token bucket: the pure arithmetic of "so many at once, so many per minute".

use std::time::{Duration, Instant};

/// A rate: `burst` at once, refilled at `per_minute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Tokens the bucket holds when full.
    pub burst: u32,
    /// Tokens added per minute; `0` means no limit at all.
    pub per_minute: u32,
}

impl Rate {
    /// Whether this rate limits anything.
    pub fn is_unlimited(&self) -> bool {
        self.per_minute == 0
    }

    /// The time one token takes to come back.
    fn token_interval(&self) -> Duration {
        Duration::from_secs(60) / self.per_minute.max(1)
    }
}

/// One bucket. Tokens are counted in whole units plus the time already earned towards the
/// next one, so no floating point drifts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    tokens: u32,
    /// When the next token's refill time started counting.
    since: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn full(rate: &Rate, now: Instant) -> Self {
        TokenBucket {
            tokens: rate.burst,
            since: now,
        }
    }

    /// Takes one token if there is one (after refilling up to `now`).
    pub fn try_take(&mut self, rate: &Rate, now: Instant) -> bool {
        if rate.is_unlimited() {
            return true;
        }
        self.refill(rate, now);
        if self.tokens == 0 {
            return false;
        }
        if self.tokens == rate.burst {
            // A full bucket earns nothing while full: the next token starts counting now.
            self.since = now;
        }
        self.tokens -= 1;
        true
    }

    /// Whether the bucket is full at `now` (an idle person: the record can be forgotten).
    pub fn is_full(&self, rate: &Rate, now: Instant) -> bool {
        let mut copy = self.clone();
        copy.refill(rate, now);
        copy.tokens >= rate.burst
    }

    fn refill(&mut self, rate: &Rate, now: Instant) {
        if self.tokens >= rate.burst {
            self.tokens = rate.burst;
            return;
        }
        let interval = rate.token_interval();
        let elapsed = now.saturating_duration_since(self.since);
        let earned = elapsed.as_nanos() / interval.as_nanos().max(1);
        if earned == 0 {
            return;
        }
        let missing = rate.burst - self.tokens;
        if earned >= u128::from(missing) {
            self.tokens = rate.burst;
            self.since = now;
        } else {
            // `earned < missing <= u32::MAX`, so the conversions cannot fail.
            let earned = u32::try_from(earned).unwrap_or(missing);
            self.tokens += earned;
            self.since += interval * earned;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at the given offsets (ms) and returns what each take answered.
    fn run(rate: Rate, takes_at_ms: &[u64]) -> Vec<bool> {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(&rate, start);
        takes_at_ms
            .iter()
            .map(|ms| bucket.try_take(&rate, start + Duration::from_millis(*ms)))
            .collect()
    }

    #[test]
    fn the_bucket_takes_a_burst_then_refills_at_its_rate() {
        let three_per_minute = Rate {
            burst: 3,
            per_minute: 3,
        }; // one token per 20 s
        let cases: &[(&str, Rate, &[u64], &[bool])] = &[
            (
                "a burst fits",
                three_per_minute,
                &[0, 0, 0],
                &[true, true, true],
            ),
            (
                "past the burst: refused",
                three_per_minute,
                &[0, 0, 0, 0, 10],
                &[true, true, true, false, false],
            ),
            (
                "one token per interval comes back",
                three_per_minute,
                &[0, 0, 0, 19_999, 20_000, 20_001],
                &[true, true, true, false, true, false],
            ),
            (
                "a long pause refills to the burst, not beyond",
                three_per_minute,
                &[0, 0, 0, 600_000, 600_000, 600_000, 600_000],
                &[true, true, true, true, true, true, false],
            ),
            (
                "a steady pace at the rate is never refused",
                three_per_minute,
                &[0, 20_000, 40_000, 60_000, 80_000, 100_000],
                &[true, true, true, true, true, true],
            ),
            (
                "earned time is kept across partial refills",
                Rate {
                    burst: 2,
                    per_minute: 60,
                },
                &[0, 0, 1_500, 2_000, 2_000],
                &[true, true, true, true, false],
            ),
            (
                "per_minute 0 is no limit",
                Rate {
                    burst: 0,
                    per_minute: 0,
                },
                &[0, 0, 0, 0, 0],
                &[true, true, true, true, true],
            ),
            (
                "time going backwards refills nothing",
                three_per_minute,
                &[30_000, 30_000, 30_000, 0, 0],
                &[true, true, true, false, false],
            ),
        ];
        for (name, rate, at, want) in cases {
            assert_eq!(run(*rate, at), *want, "{name}");
        }
    }

    #[test]
    fn a_bucket_is_full_again_after_its_refill_time() {
        let rate = Rate {
            burst: 2,
            per_minute: 60,
        };
        let start = Instant::now();
        let mut bucket = TokenBucket::full(&rate, start);
        assert!(bucket.is_full(&rate, start));
        assert!(bucket.try_take(&rate, start));
        assert!(!bucket.is_full(&rate, start + Duration::from_millis(999)));
        assert!(bucket.is_full(&rate, start + Duration::from_secs(1)));
    }
}
