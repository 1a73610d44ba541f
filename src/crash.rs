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
