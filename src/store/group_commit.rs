//! Group commit: many writers share one flush.
//!
//! Why this exists: sled makes writes durable only with a flush (an fsync), and every commit
//! point of the product waits for one: a message accepted, a message answered, a chat
//! created. Under load hundreds of those wait at once, and one flush per caller made the
//! journal cost most of the throughput (two fsyncs per message). Here a caller's flush
//! request joins the next flush to *start* after it asked: every write it made before asking
//! is in that flush, so the promise is unchanged (once `flush` returns `Ok`, the caller's
//! writes survive a crash), while all callers who asked during one fsync share the next.
//!
//! The flushes run in a task of their own (not in a caller's future, which could be dropped
//! mid-flush and leave the others waiting for ever), one round at a time, as long as anyone
//! waits. [`Rounds`] is the pure bookkeeping: who is covered by which round.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

/// Who asked for a flush, and which rounds ran. Pure.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rounds {
    /// Tickets handed out: the n-th request to flush holds ticket n.
    asked: u64,
    /// Whether a flush task runs (it takes every ticket asked before its round starts).
    running: bool,
}

/// What a request to flush must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// Wait for a round covering this ticket; a flush task already runs.
    Wait(u64),
    /// Start the flush task, then wait for a round covering this ticket.
    Start(u64),
}

impl Rounds {
    /// A new request to flush (its writes are done): its ticket, and whether to start the
    /// flush task.
    pub fn ask(&mut self) -> Join {
        self.asked += 1;
        if self.running {
            Join::Wait(self.asked)
        } else {
            self.running = true;
            Join::Start(self.asked)
        }
    }

    /// A round starts: it covers every ticket handed out so far.
    pub fn begin(&self) -> u64 {
        self.asked
    }

    /// A round that covered tickets up to `covered` ended: whether another round must run
    /// (someone asked meanwhile); when not, the flush task ends.
    pub fn end(&mut self, covered: u64) -> bool {
        let again = self.asked > covered;
        self.running = again;
        again
    }
}

/// The last round that ended: the tickets it covered, and its error if it failed.
#[derive(Debug, Clone, Default)]
struct Ended {
    covered: u64,
    error: Option<String>,
}

/// Flushes shared by everyone who asks at about the same time.
#[derive(Debug)]
pub struct GroupCommit {
    rounds: Mutex<Rounds>,
    ended: watch::Sender<Ended>,
    flushes: AtomicU64,
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit {
            rounds: Mutex::default(),
            ended: watch::Sender::new(Ended::default()),
            flushes: AtomicU64::new(0),
        }
    }
}

impl GroupCommit {
    /// How many flushes ran (each covering every caller that asked before it started).
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Returns once a flush that started after this call has completed: `Ok` means every
    /// write made before the call is durable. `flush` is one flush of everything written;
    /// its error is every covered caller's error.
    pub async fn flush<F, Fut>(self: &Arc<Self>, flush: F) -> Result<(), String>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        // Subscribed before asking, so the round that covers this ticket cannot be missed.
        let mut ended = self.ended.subscribe();
        let ticket = match self.rounds.lock().ask() {
            Join::Wait(ticket) => ticket,
            Join::Start(ticket) => {
                tokio::spawn(self.clone().run(flush));
                ticket
            }
        };
        loop {
            {
                let last = ended.borrow_and_update();
                if last.covered >= ticket {
                    return match &last.error {
                        None => Ok(()),
                        Some(error) => Err(error.clone()),
                    };
                }
            }
            if ended.changed().await.is_err() {
                return Err("the store was closed before the flush".to_owned());
            }
        }
    }

    /// The flush task: rounds until nobody waits.
    async fn run<F, Fut>(self: Arc<Self>, flush: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        loop {
            let covered = self.rounds.lock().begin();
            let result = flush().await;
            self.flushes.fetch_add(1, Ordering::Relaxed);
            self.ended.send_replace(Ended {
                covered,
                error: result.err(),
            });
            if !self.rounds.lock().end(covered) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[test]
    fn rounds_cover_whoever_asked_before_they_began() {
        let mut r = Rounds::default();
        assert_eq!(r.ask(), Join::Start(1));
        assert_eq!(r.ask(), Join::Wait(2));
        let first = r.begin();
        assert_eq!(first, 2);
        // Asked during the first round: not covered by it.
        assert_eq!(r.ask(), Join::Wait(3));
        assert!(r.end(first), "ticket 3 needs a second round");
        let second = r.begin();
        assert_eq!(second, 3);
        assert!(!r.end(second), "nobody left: the task ends");
        assert_eq!(
            r.ask(),
            Join::Start(4),
            "the next request starts a task again"
        );
    }

    /// A flush that takes a while, counting how often it ran.
    fn slow_flush(
        runs: &Arc<AtomicUsize>,
        fail: bool,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + 'static
    {
        let runs = runs.clone();
        move || {
            let runs = runs.clone();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                runs.fetch_add(1, Ordering::SeqCst);
                if fail {
                    Err("disk full".to_owned())
                } else {
                    Ok(())
                }
            })
        }
    }

    #[tokio::test]
    async fn many_callers_share_few_flushes() {
        let group = Arc::new(GroupCommit::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..100)
            .map(|_| {
                let (group, flush) = (group.clone(), slow_flush(&runs, false));
                tokio::spawn(async move { group.flush(flush).await })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.ok(), Some(Ok(())));
        }
        let ran = runs.load(Ordering::SeqCst);
        assert!((1..=3).contains(&ran), "100 callers, {ran} flushes");
        assert_eq!(group.flushes(), ran as u64);
    }

    #[tokio::test]
    async fn a_failed_flush_fails_every_caller_it_covered() {
        let group = Arc::new(GroupCommit::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (a, b) = tokio::join!(
            group.flush(slow_flush(&runs, true)),
            group.flush(slow_flush(&runs, true))
        );
        assert_eq!(a, Err("disk full".to_owned()));
        assert_eq!(b, Err("disk full".to_owned()));
        // A later caller gets a fresh round, not the old error.
        assert_eq!(group.flush(slow_flush(&runs, false)).await, Ok(()));
    }
}
