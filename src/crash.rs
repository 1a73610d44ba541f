//! Crash points for tests of crash-safe delivery (feature `fault-injection` only).
//!
//! With `SURFACES_CRASH_AT=<point>` in its environment, the process kills itself with
//! SIGKILL the first time it reaches that point: no destructor, no flush, exactly like an
//! operator's `kill -9` or an OOM kill. Without the feature, [`point`] compiles to nothing.

/// Where the process may be told to die.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// The message is journaled (flushed), not yet processed.
    AfterJournal,
    /// The agent turn is running.
    DuringTurn,
    /// The agent answered; the reply is not sent.
    AfterAgent,
    /// The reply is sent; the journal entry is not marked done.
    AfterSend,
}

impl CrashPoint {
    /// The value of `SURFACES_CRASH_AT` naming this point.
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::AfterJournal => "after-journal",
            CrashPoint::DuringTurn => "during-turn",
            CrashPoint::AfterAgent => "after-agent",
            CrashPoint::AfterSend => "after-send",
        }
    }
}

/// The environment variable naming the crash point.
pub const CRASH_ENV: &str = "SURFACES_CRASH_AT";

/// Dies here if the environment says so.
#[cfg(feature = "fault-injection")]
pub fn point(at: CrashPoint) {
    if std::env::var(CRASH_ENV).ok().as_deref() == Some(at.name()) {
        tracing::error!(
            point = at.name(),
            "crash point reached: killing the process (SIGKILL)"
        );
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status();
        // If `kill` is missing, abort is the next closest thing (no destructors either).
        std::process::abort();
    }
}

/// Dies here if the environment says so (compiled out without `fault-injection`).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_at: CrashPoint) {}

/// Operations a test may make fail, with `SURFACES_FAIL=<point>:<first>-<last>`: the calls
/// numbered `first` to `last` (counting from 1, in this process) of that point report a
/// failure, as a homeserver error would. Without the feature, [`fail`] is always false.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailPoint {
    /// One back-pagination request while filling a gap in a room's timeline.
    BackfillPage,
}

impl FailPoint {
    /// The name of this point in `SURFACES_FAIL`.
    pub fn name(self) -> &'static str {
        match self {
            FailPoint::BackfillPage => "backfill-page",
        }
    }

    #[cfg(feature = "fault-injection")]
    fn calls(self) -> &'static std::sync::atomic::AtomicU64 {
        static BACKFILL_PAGE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        match self {
            FailPoint::BackfillPage => &BACKFILL_PAGE,
        }
    }
}

/// The environment variable naming the failing calls.
pub const FAIL_ENV: &str = "SURFACES_FAIL";

/// Whether this call of `at` must fail (counts the call).
#[cfg(feature = "fault-injection")]
pub fn fail(at: FailPoint) -> bool {
    let Ok(spec) = std::env::var(FAIL_ENV) else {
        return false;
    };
    let call = at
        .calls()
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    let failing =
        failing_calls(&spec, at.name()).is_some_and(|(first, last)| (first..=last).contains(&call));
    if failing {
        tracing::warn!(point = at.name(), call, "fail point: this call fails");
    }
    failing
}

/// Whether this call of `at` must fail (compiled out without `fault-injection`).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn fail(_at: FailPoint) -> bool {
    false
}

/// The range of failing calls that `spec` (`<point>:<first>-<last>`, or `<point>:<n>`)
/// gives for `point`.
#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
fn failing_calls(spec: &str, point: &str) -> Option<(u64, u64)> {
    let (name, range) = spec.split_once(':')?;
    if name != point {
        return None;
    }
    let (first, last) = range.split_once('-').unwrap_or((range, range));
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_specs() {
        let cases = [
            ("backfill-page:2-5", Some((2, 5))),
            ("backfill-page:3", Some((3, 3))),
            ("backfill-page:x", None),
            ("other:1-2", None),
            ("backfill-page", None),
        ];
        for (spec, want) in cases {
            assert_eq!(failing_calls(spec, "backfill-page"), want, "{spec}");
        }
    }
}
