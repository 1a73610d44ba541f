//! One retry policy for everything that crosses the network.
//!
//! Why this module exists: agent turns, messenger sends, provisioning, the sync loop and
//! back-pagination all fail the same three ways, and each used to have a loop of its own.
//! Here is the one classification every boundary error maps to ([`RetryKind`], through
//! [`Retryable`]), the one backoff ([`RetryPolicy::delay`]: exponential, "equal jitter", a
//! `Retry-After` honoured as a lower bound) and the one loop ([`retry`]). The named
//! policies below say, in one place, how patient each part of the bot is.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// How a failure should be handled by a caller that may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryKind {
    /// The other side could not be reached (refused, reset, DNS, timeout): retry with
    /// backoff.
    Network,
    /// The other side answered with a failure that may go away (5xx, 429, a garbled
    /// stream): retry, waiting at least `retry_after` when it said how long.
    Transient {
        /// The wait the other side asked for, if any.
        retry_after: Option<Duration>,
    },
    /// Retrying the same request will fail the same way.
    Permanent,
}

impl RetryKind {
    /// Whether retrying may succeed.
    pub fn is_retryable(self) -> bool {
        self != RetryKind::Permanent
    }

    /// The wait the other side asked for, if any.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            RetryKind::Transient { retry_after } => retry_after,
            _ => None,
        }
    }
}

/// An error that knows how it should be retried.
pub trait Retryable {
    /// The error's retry classification.
    fn retry_kind(&self) -> RetryKind;
}

/// What a `Retry-After` longer than [`RetryPolicy::max_retry_after`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongRetryAfter {
    /// Give up: the caller tells the person instead of stalling (agent turns).
    GiveUp,
    /// Wait [`RetryPolicy::max_retry_after`] instead (loops that must go on).
    Cap,
}

/// How patient a caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included; `0`: no limit.
    pub attempts: u32,
    /// Backoff before the second attempt; doubles for each further one.
    pub base: Duration,
    /// Upper bound of the exponential backoff.
    pub max: Duration,
    /// The longest `Retry-After` taken as given.
    pub max_retry_after: Duration,
    /// What a longer one does.
    pub long_retry_after: LongRetryAfter,
}

impl RetryPolicy {
    /// Agent turns and calls: 3 attempts, 500 ms then 1 s (with jitter), capped at 8 s; an
    /// agent asking to wait more than a minute is "not now".
    pub const AGENT: RetryPolicy = RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(500),
        max: Duration::from_secs(8),
        max_retry_after: Duration::from_secs(60),
        long_retry_after: LongRetryAfter::GiveUp,
    };

    /// What the bot says in a room (replies, notices, files): 4 attempts from 300 ms; the
    /// idempotency key makes a retried send one message.
    pub const SEND: RetryPolicy = RetryPolicy {
        attempts: 4,
        base: Duration::from_millis(300),
        max: Duration::from_secs(5),
        max_retry_after: Duration::from_secs(30),
        long_retry_after: LongRetryAfter::GiveUp,
    };

    /// Provisioning steps (creating rooms and Spaces, state events, joins): 4 attempts from
    /// 500 ms.
    pub const PROVISION: RetryPolicy = RetryPolicy {
        attempts: 4,
        base: Duration::from_millis(500),
        max: Duration::from_secs(8),
        max_retry_after: Duration::from_secs(30),
        long_retry_after: LongRetryAfter::GiveUp,
    };

    /// One back-pagination page: 3 attempts from 250 ms (a gap that still fails is read
    /// again with the next sync round).
    pub const PAGE: RetryPolicy = RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(250),
        max: Duration::from_secs(4),
        max_retry_after: Duration::from_secs(30),
        long_retry_after: LongRetryAfter::GiveUp,
    };

    /// Start-up steps (the first sync, the filter): 10 attempts from 1 s, capped at 8 s.
    pub const STARTUP: RetryPolicy = RetryPolicy {
        attempts: 10,
        base: Duration::from_secs(1),
        max: Duration::from_secs(8),
        max_retry_after: Duration::from_secs(60),
        long_retry_after: LongRetryAfter::Cap,
    };

    /// The sync loop: forever, from 250 ms to 30 s; a rate limit is honoured up to 5 min.
    pub const SYNC: RetryPolicy = RetryPolicy {
        attempts: 0,
        base: Duration::from_millis(250),
        max: Duration::from_secs(30),
        max_retry_after: Duration::from_secs(300),
        long_retry_after: LongRetryAfter::Cap,
    };

    /// A single attempt.
    pub const NO_RETRY: RetryPolicy = RetryPolicy {
        attempts: 1,
        base: Duration::ZERO,
        max: Duration::ZERO,
        max_retry_after: Duration::ZERO,
        long_retry_after: LongRetryAfter::GiveUp,
    };

    /// The pause before the next attempt, or `None` to give up.
    ///
    /// `attempts_made` counts attempts so far (1 after the first failure). `jitter` is a
    /// number in `[0, 1]` (clamped; NaN is 0) drawn by the caller: the backoff is "equal
    /// jitter", half the exponential delay plus `jitter` times the other half, so that
    /// clients that failed together do not all come back together. A `Retry-After` is a
    /// lower bound, up to [`RetryPolicy::max_retry_after`].
    pub fn delay(&self, attempts_made: u32, kind: RetryKind, jitter: f64) -> Option<Duration> {
        if self.attempts != 0 && attempts_made >= self.attempts {
            return None;
        }
        let retry_after = match kind {
            RetryKind::Permanent => return None,
            RetryKind::Network => None,
            RetryKind::Transient { retry_after } => retry_after,
        };
        let retry_after = match retry_after {
            Some(asked) if asked > self.max_retry_after => match self.long_retry_after {
                LongRetryAfter::GiveUp => return None,
                LongRetryAfter::Cap => Some(self.max_retry_after),
            },
            other => other,
        };
        let factor = 1u32
            .checked_shl(attempts_made.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let exp = self.base.saturating_mul(factor).min(self.max);
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        let half = exp / 2;
        let backoff = half + (exp - half).mul_f64(jitter);
        Some(retry_after.map_or(backoff, |after| backoff.max(after)))
    }
}

/// Runs `op` until it succeeds, fails for good, or `policy` gives up, sleeping between
/// attempts; each retry is logged with `what` (e.g. "sending a reply").
pub async fn retry<T, E, F, Fut>(policy: &RetryPolicy, what: &str, mut op: F) -> Result<T, E>
where
    E: Retryable + Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempts_made = 0u32;
    loop {
        attempts_made = attempts_made.saturating_add(1);
        let error = match op().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let Some(delay) = policy.delay(attempts_made, error.retry_kind(), fastrand::f64()) else {
            return Err(error);
        };
        tracing::warn!(%error, attempt = attempts_made,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "{what} failed; retrying");
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    const P: RetryPolicy = RetryPolicy {
        attempts: 5,
        base: Duration::from_millis(100),
        max: Duration::from_millis(1000),
        max_retry_after: Duration::from_secs(60),
        long_retry_after: LongRetryAfter::GiveUp,
    };

    #[test]
    fn delay_table() {
        let t = RetryKind::Transient { retry_after: None };
        let after = |secs| RetryKind::Transient {
            retry_after: Some(Duration::from_secs(secs)),
        };
        let forever = RetryPolicy {
            attempts: 0,
            long_retry_after: LongRetryAfter::Cap,
            ..P
        };
        /// name, policy, attempts made, kind, jitter, the delay wanted
        type Case = (
            &'static str,
            RetryPolicy,
            u32,
            RetryKind,
            f64,
            Option<Duration>,
        );
        let cases: &[Case] = &[
            ("first retry, no jitter", P, 1, t, 0.0, Some(MS(50))),
            ("first retry, full jitter", P, 1, t, 1.0, Some(MS(100))),
            ("second retry doubles", P, 2, t, 1.0, Some(MS(200))),
            ("third retry", P, 3, t, 0.5, Some(MS(300))),
            ("capped at max", P, 4, t, 1.0, Some(MS(800))),
            (
                "network retried",
                P,
                1,
                RetryKind::Network,
                1.0,
                Some(MS(100)),
            ),
            ("permanent never", P, 1, RetryKind::Permanent, 1.0, None),
            ("attempts exhausted", P, 5, t, 1.0, None),
            (
                "retry-after is a lower bound",
                P,
                1,
                after(2),
                1.0,
                Some(MS(2000)),
            ),
            (
                "retry-after zero uses backoff",
                P,
                2,
                RetryKind::Transient {
                    retry_after: Some(Duration::ZERO),
                },
                0.0,
                Some(MS(100)),
            ),
            ("retry-after too long gives up", P, 1, after(61), 1.0, None),
            (
                "or is capped",
                forever,
                1,
                after(3600),
                1.0,
                Some(MS(60_000)),
            ),
            (
                "no limit on attempts",
                forever,
                1_000,
                t,
                1.0,
                Some(MS(1000)),
            ),
            (
                "huge attempt counts stay capped",
                forever,
                u32::MAX,
                t,
                1.0,
                Some(MS(1000)),
            ),
            ("jitter clamped high", P, 1, t, 7.0, Some(MS(100))),
            ("jitter clamped low", P, 1, t, -3.0, Some(MS(50))),
            ("jitter NaN", P, 1, t, f64::NAN, Some(MS(50))),
        ];
        for (name, policy, made, kind, jitter, want) in cases {
            assert_eq!(policy.delay(*made, *kind, *jitter), *want, "{name}");
        }
    }

    #[test]
    fn named_policies_are_sane() {
        for policy in [
            RetryPolicy::AGENT,
            RetryPolicy::SEND,
            RetryPolicy::PROVISION,
            RetryPolicy::PAGE,
            RetryPolicy::STARTUP,
            RetryPolicy::SYNC,
        ] {
            assert!(policy.base <= policy.max, "{policy:?}");
            for made in 1..40 {
                if let Some(delay) = policy.delay(made, RetryKind::Network, 1.0) {
                    assert!(delay <= policy.max, "{policy:?} {made}");
                }
            }
        }
        assert_eq!(
            RetryPolicy::NO_RETRY.delay(1, RetryKind::Network, 1.0),
            None
        );
    }

    #[derive(Debug)]
    struct Flaky(RetryKind);

    impl Display for Flaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "flaky {:?}", self.0)
        }
    }

    impl Retryable for Flaky {
        fn retry_kind(&self) -> RetryKind {
            self.0
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_retries_until_success_and_stops_on_permanent() {
        let mut calls = 0;
        let result: Result<u32, Flaky> = retry(&P, "a test", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(Flaky(RetryKind::Network))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);

        let mut calls = 0;
        let result: Result<(), Flaky> = retry(&P, "a test", || {
            calls += 1;
            async { Err(Flaky(RetryKind::Permanent)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1, "a permanent failure is not retried");

        let mut calls = 0;
        let result: Result<(), Flaky> = retry(&P, "a test", || {
            calls += 1;
            async { Err(Flaky(RetryKind::Transient { retry_after: None })) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, P.attempts, "gives up after the policy's attempts");
    }
}
