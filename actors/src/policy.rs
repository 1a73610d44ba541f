//! Pure supervision decisions: what an exit means, whether to restart, and when.
//!
//! Kept apart from the supervisor actor so the rules are table-tested without running
//! anything. Restart policies keep OTP's meaning:
//!
//! | policy \ exit | normal | error, panic, lost | stop requested (incl. killed after timeout) |
//! |---|---|---|---|
//! | permanent | restart | restart | remove |
//! | transient | remove | restart | remove |
//! | temporary | remove | remove | remove |
//!
//! Every restart passes the intensity check first: more than `max_restarts` restarts
//! within `period` for one child marks it failed (not restarted; a `GaveUp` event; the
//! supervisor escalates if the child asked for it).

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// Default smallest delay before a restart.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Default largest delay before a restart.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Default jitter: each delay is scaled by a random factor in `[1 - j, 1 + j]`.
pub const DEFAULT_JITTER: f64 = 0.2;
/// Default restart intensity: this many restarts ...
pub const DEFAULT_MAX_RESTARTS: u32 = 10;
/// ... within this period (OTP's 1 in 5 s would fail a flapping room far too early).
pub const DEFAULT_RESTART_PERIOD: Duration = Duration::from_secs(60);

/// When a child that ended is started again (OTP's meaning).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Always restarted, whatever the reason it ended.
    Permanent,
    /// Restarted only when it ended abnormally (error, panic, lost).
    Transient,
    /// Never restarted.
    Temporary,
}

/// Why an incarnation of a child ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// The actor stopped itself (or drained and stopped on a shutdown request).
    Normal,
    /// The actor stopped itself with an error (`ChildCtx::fail`).
    Error(String),
    /// A handler, `started()` or the factory panicked; the panic message.
    Panic(String),
    /// The actor did not stop within its shutdown timeout and was aborted.
    Killed,
    /// The actor's task vanished without reporting (e.g. its arbiter stopped).
    Lost,
}

impl ExitReason {
    /// True for the exits a transient child is restarted after.
    pub fn is_abnormal(&self) -> bool {
        !matches!(self, ExitReason::Normal)
    }

    /// A short label for logs and metrics (`normal`, `error`, `panic`, `killed`, `lost`).
    pub fn label(&self) -> &'static str {
        match self {
            ExitReason::Normal => "normal",
            ExitReason::Error(_) => "error",
            ExitReason::Panic(_) => "panic",
            ExitReason::Killed => "killed",
            ExitReason::Lost => "lost",
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Error(m) | ExitReason::Panic(m) => write!(f, "{}: {m}", self.label()),
            _ => f.write_str(self.label()),
        }
    }
}

/// What the supervisor does after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Start a new incarnation (after the intensity check and a backoff).
    Restart,
    /// The child is done: remove it.
    Remove,
}

/// The restart table of the module doc.
pub fn decide(policy: RestartPolicy, reason: &ExitReason, stop_requested: bool) -> Decision {
    if stop_requested {
        return Decision::Remove;
    }
    match (policy, reason.is_abnormal()) {
        (RestartPolicy::Permanent, _) | (RestartPolicy::Transient, true) => Decision::Restart,
        _ => Decision::Remove,
    }
}

/// Backoff and intensity settings for one child (or a supervisor's default).
#[derive(Clone, Debug, PartialEq)]
pub struct RestartConfig {
    /// Delay before the first restart within a period.
    pub backoff_min: Duration,
    /// Cap on the delay.
    pub backoff_max: Duration,
    /// Random spread of each delay, as a fraction (0 = exact delays).
    pub jitter: f64,
    /// Restarts allowed within `period` before the child is marked failed.
    pub max_restarts: u32,
    /// The sliding window of the intensity check.
    pub period: Duration,
}

impl Default for RestartConfig {
    fn default() -> Self {
        Self {
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            jitter: DEFAULT_JITTER,
            max_restarts: DEFAULT_MAX_RESTARTS,
            period: DEFAULT_RESTART_PERIOD,
        }
    }
}

impl RestartConfig {
    /// The delay before restart number `attempt` (1-based, counted within the period);
    /// `rand01` is a uniform sample in `[0, 1)` that spreads it by the jitter.
    pub fn backoff(&self, attempt: u32, rand01: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        let base = self
            .backoff_min
            .saturating_mul(1u32 << exponent)
            .min(self.backoff_max);
        let jitter = unit_interval(self.jitter);
        let factor = 1.0 + jitter * (2.0 * unit_interval(rand01) - 1.0);
        base.mul_f64(factor).min(self.backoff_max)
    }

    /// The intensity check: forget restarts older than the period, then admit this one
    /// (returning its attempt number within the period) or refuse it (returning how
    /// many restarts the period already holds).
    pub fn admit(&self, history: &mut VecDeque<Instant>, now: Instant) -> Result<u32, u32> {
        while let Some(first) = history.front() {
            if now.saturating_duration_since(*first) >= self.period {
                history.pop_front();
            } else {
                break;
            }
        }
        let count = u32::try_from(history.len()).unwrap_or(u32::MAX);
        if count >= self.max_restarts {
            return Err(count);
        }
        history.push_back(now);
        Ok(count + 1)
    }
}

/// Clamps to `[0, 1]`, reading NaN as 0 (so no float can make `Duration` panic).
fn unit_interval(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_table() {
        use Decision::*;
        use RestartPolicy::*;
        let normal = ExitReason::Normal;
        let panic = ExitReason::Panic("boom".into());
        let error = ExitReason::Error("bad".into());
        let lost = ExitReason::Lost;
        let killed = ExitReason::Killed;
        let cases = [
            (Permanent, &normal, false, Restart),
            (Permanent, &panic, false, Restart),
            (Permanent, &error, false, Restart),
            (Permanent, &lost, false, Restart),
            (Permanent, &normal, true, Remove),
            (Permanent, &killed, true, Remove),
            (Transient, &normal, false, Remove),
            (Transient, &panic, false, Restart),
            (Transient, &error, false, Restart),
            (Transient, &lost, false, Restart),
            (Transient, &panic, true, Remove),
            (Temporary, &normal, false, Remove),
            (Temporary, &panic, false, Remove),
            (Temporary, &error, true, Remove),
        ];
        for (policy, reason, requested, want) in cases {
            assert_eq!(
                decide(policy, reason, requested),
                want,
                "{policy:?} {reason} {requested}"
            );
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let cfg = RestartConfig {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            jitter: 0.0,
            ..RestartConfig::default()
        };
        let got: Vec<u128> = (1..=7).map(|a| cfg.backoff(a, 0.5).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(cfg.backoff(0, 0.5).as_millis(), 100);
        assert_eq!(cfg.backoff(u32::MAX, 0.5), Duration::from_secs(1));
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let cfg = RestartConfig {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            jitter: 0.2,
            ..RestartConfig::default()
        };
        assert_eq!(cfg.backoff(1, 0.0).as_millis(), 80);
        assert_eq!(cfg.backoff(1, 0.5).as_millis(), 100);
        assert_eq!(cfg.backoff(1, 1.0).as_millis(), 120);
        assert_eq!(
            cfg.backoff(20, 1.0),
            Duration::from_secs(10),
            "never above max"
        );
        assert_eq!(
            cfg.backoff(1, f64::NAN).as_millis(),
            80,
            "hostile sample clamped"
        );
    }

    #[test]
    fn intensity_window_slides() {
        let cfg = RestartConfig {
            max_restarts: 3,
            period: Duration::from_secs(10),
            ..RestartConfig::default()
        };
        let t0 = Instant::now();
        let mut h = VecDeque::new();
        assert_eq!(cfg.admit(&mut h, t0), Ok(1));
        assert_eq!(cfg.admit(&mut h, t0 + Duration::from_secs(1)), Ok(2));
        assert_eq!(cfg.admit(&mut h, t0 + Duration::from_secs(2)), Ok(3));
        assert_eq!(cfg.admit(&mut h, t0 + Duration::from_secs(3)), Err(3));
        // The first restart leaves the window at t0 + 10 s.
        assert_eq!(cfg.admit(&mut h, t0 + Duration::from_secs(10)), Ok(3));
        assert_eq!(cfg.admit(&mut h, t0 + Duration::from_secs(30)), Ok(1));
    }
}
