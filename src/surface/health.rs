//! How a messenger's inbound loop is doing: liveness and catch-up counters.
//!
//! Why this exists: operators ask "is the bot still hearing its messenger?" and "did it
//! lose anything?". Each adapter's loop records here (atomics, no locks); the ops endpoint
//! and `/metrics` read it, without talking to the loop.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::CatchUpSnapshot;

/// A messenger loop's liveness (Matrix: the sync loop), shared between the loop and
/// whoever reports health.
#[derive(Debug)]
pub struct SyncHealth {
    /// Reference point of the stored offsets (monotonic clock).
    origin: Instant,
    /// Milliseconds since `origin` of the last successful sync, plus one;
    /// 0 = never.
    last_success_ms: AtomicU64,
    /// Failures since the last success.
    consecutive_failures: AtomicU32,
    /// Successful syncs since creation.
    successes: AtomicU64,
    /// Catch-up: gaps seen, events back-filled, messages left out.
    catch_up: CatchUpCounters,
    /// The latest end-to-end encryption snapshot, for messengers that encrypt.
    encryption: parking_lot::Mutex<Option<super::encryption::EncryptionHealth>>,
}

/// What catch-up did since start-up (for `/metrics` and `/status`).
#[derive(Debug, Default)]
pub struct CatchUpCounters {
    /// Limited timelines of managed rooms (gaps the homeserver left).
    pub gaps: AtomicU64,
    /// Messages found by paging back into gaps and handed to the dispatcher.
    pub backfilled: AtomicU64,
    /// Messages left out by the age bound (`sync.catch_up_max_age_secs`).
    pub skipped_too_old: AtomicU64,
    /// Messages left out by the count bound (`sync.catch_up_max_messages`).
    pub skipped_too_many: AtomicU64,
    /// Gaps given up on because they could not be fetched (their messages are unknown).
    pub unreadable_gaps: AtomicU64,
    /// Back-pagination rounds that failed (the range is read again after a pause).
    pub failed_rounds: AtomicU64,
}

impl CatchUpCounters {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> CatchUpSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CatchUpSnapshot {
            gaps: get(&self.gaps),
            backfilled: get(&self.backfilled),
            skipped_too_old: get(&self.skipped_too_old),
            skipped_too_many: get(&self.skipped_too_many),
            unreadable_gaps: get(&self.unreadable_gaps),
            failed_rounds: get(&self.failed_rounds),
        }
    }
}

impl Default for SyncHealth {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            last_success_ms: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            successes: AtomicU64::new(0),
            catch_up: CatchUpCounters::default(),
            encryption: parking_lot::Mutex::new(None),
        }
    }
}

impl SyncHealth {
    /// A fresh, shareable health record.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// When the last sync succeeded, if ever.
    pub fn last_success(&self) -> Option<Instant> {
        match self.last_success_ms.load(Ordering::Acquire) {
            0 => None,
            stored => Some(self.origin + Duration::from_millis(stored - 1)),
        }
    }

    /// How long ago the last sync succeeded, if ever.
    pub fn since_last_success(&self) -> Option<Duration> {
        self.last_success().map(|at| at.elapsed())
    }

    /// Whether a sync succeeded within `max_age` (e.g. twice the sync
    /// timeout).
    pub fn is_recent(&self, max_age: Duration) -> bool {
        self.since_last_success().is_some_and(|age| age <= max_age)
    }

    /// Failed syncs since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Acquire)
    }

    /// Successful syncs so far.
    pub fn successes(&self) -> u64 {
        self.successes.load(Ordering::Acquire)
    }

    /// What catch-up did so far.
    pub fn catch_up(&self) -> &CatchUpCounters {
        &self.catch_up
    }

    /// Records a successful sync now.
    pub fn record_success(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_success_ms
            .store(ms.saturating_add(1), Ordering::Release);
        self.consecutive_failures.store(0, Ordering::Release);
        self.successes.fetch_add(1, Ordering::AcqRel);
    }

    /// Records the latest end-to-end encryption snapshot.
    pub fn set_encryption(&self, health: super::encryption::EncryptionHealth) {
        *self.encryption.lock() = Some(health);
    }

    /// The latest end-to-end encryption snapshot, if the messenger recorded one.
    pub fn encryption(&self) -> Option<super::encryption::EncryptionHealth> {
        self.encryption.lock().clone()
    }

    /// Records a failed sync; returns the new count of consecutive failures.
    pub fn record_failure(&self) -> u32 {
        self.consecutive_failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1)
    }
}
