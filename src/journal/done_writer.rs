//! Done marks written off the room actors' thread, many at a time.
//!
//! Why this exists: marking a message answered is two sled tree operations (its done id in,
//! its pending entry out), ~28,000 instructions in the pipeline benchmark: 40% of what the
//! room actors' thread (the actix system's, where every room runs) spent per message, while
//! the runtime's worker threads had time to spare. [`Journal::complete`] hands the event id
//! to a writer task on the runtime's pool and waits for its answer; the writer takes every
//! mark waiting at once, writes them, makes them durable with one commit (group commit,
//! see `store::group_commit`) and answers each. The promise is unchanged: `complete` returns
//! `Ok` once the mark is durable. Until then the event is still pending in the index, so a
//! replay of it is never taken as new.
//!
//! The writer runs as a task only while marks come: after a batch it waits [`DONE_LINGER`]
//! for more before it ends. Under load the next marks come within that wait, so one task
//! serves them all and the thread that marks (the room actors') only queues them: starting
//! a task from that thread woke a parked worker each time (a futex or eventfd call there and
//! a context switch on the worker; in the pipeline benchmark `perf` put ~6% of the room
//! actors' thread in it). While it waits the task holds no journal (each batch's journal
//! comes with its marks), so a store dropped is closed at once, not when the wait ends; an
//! idle journal holds no task.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::Journal;
use crate::store::StoreError;

/// Most marks written between two commits.
pub const DONE_BATCH_MAX: usize = 1024;
/// How long the writer waits for more marks after a batch before it ends (a mark made in
/// this wait is written when it ends: later by at most this than without it).
pub const DONE_LINGER: Duration = Duration::from_micros(500);

/// One message to mark answered, and who waits for it.
struct Mark {
    event_id: String,
    written: oneshot::Sender<Result<(), StoreError>>,
}

/// The marks waiting, the journal they are written with, and whether a writer task runs
/// (it takes them all before it ends).
#[derive(Default)]
struct Waiting {
    marks: Vec<Mark>,
    /// The writer's handle of the journal of the marks waiting (none when none wait).
    journal: Option<Journal>,
    writing: bool,
}

/// The marks waiting for the writer. Shared by a journal's clones.
#[derive(Default)]
pub(super) struct DoneWriter {
    waiting: Mutex<Waiting>,
}

impl DoneWriter {
    /// Marks `event_id` answered through the writer, durably; `journal` is what a writer
    /// started now writes with.
    pub(super) async fn mark(
        self: &std::sync::Arc<Self>,
        journal: &Journal,
        event_id: &str,
    ) -> Result<(), StoreError> {
        let (written, answer) = oneshot::channel();
        let start = {
            let mut waiting = self.waiting.lock();
            waiting.marks.push(Mark {
                event_id: event_id.to_owned(),
                written,
            });
            if waiting.journal.is_none() {
                waiting.journal = Some(journal.without_writer());
            }
            !std::mem::replace(&mut waiting.writing, true)
        };
        if start {
            // The guard is made here, not in the task: a task dropped before its first poll
            // must release the waiting marks too.
            let running = Running {
                writer: self.clone(),
                ended: false,
            };
            tokio::spawn(write(running));
        }
        answer.await.unwrap_or_else(|_| Err(gone()))
    }

    /// The next marks to write (at most [`DONE_BATCH_MAX`]) and their journal. None taken
    /// after the writer's `last` wait: it ends, and the next mark starts another.
    fn take(&self, batch: &mut Vec<Mark>, last: bool) -> Option<Journal> {
        let mut waiting = self.waiting.lock();
        let n = waiting.marks.len().min(DONE_BATCH_MAX);
        batch.extend(waiting.marks.drain(..n));
        if batch.is_empty() {
            waiting.writing = !last;
            None
        } else if waiting.marks.is_empty() {
            waiting.journal.take()
        } else {
            waiting.journal.clone()
        }
    }

    /// Whether a writer task runs (writing, or waiting for more marks).
    #[cfg(test)]
    fn running(&self) -> bool {
        self.waiting.lock().writing
    }
}

fn gone() -> StoreError {
    StoreError::Flush("the journal's writer stopped before marking the message answered".into())
}

/// The writer: every mark waiting, written, one commit, each answered; until none has come
/// for [`DONE_LINGER`].
async fn write(mut running: Running) {
    let mut batch = Vec::with_capacity(DONE_BATCH_MAX);
    loop {
        let mut journal = running.writer.take(&mut batch, false);
        if batch.is_empty() {
            tokio::time::sleep(DONE_LINGER).await;
            journal = running.writer.take(&mut batch, true);
            if batch.is_empty() {
                running.ended = true;
                return;
            }
        }
        // Marks always wait with their journal; without one they cannot be written.
        let Some(journal) = journal else {
            for mark in batch.drain(..) {
                let _ = mark.written.send(Err(gone()));
            }
            continue;
        };
        let written: Vec<Result<(), StoreError>> = batch
            .iter()
            .map(|mark| journal.stage_done(&mark.event_id))
            .collect();
        let committed = match journal.commit().await {
            Ok(()) => Ok(()),
            Err(StoreError::Flush(error)) => Err(error),
            Err(error) => Err(error.to_string()),
        };
        for (mark, result) in batch.drain(..).zip(written) {
            let result = match (&committed, result) {
                (_, Err(error)) => Err(error),
                (Err(error), Ok(())) => Err(StoreError::Flush(error.clone())),
                (Ok(()), Ok(())) => Ok(()),
            };
            // The waiter may be gone (its turn aborted): the mark stands all the same.
            let _ = mark.written.send(result);
        }
    }
}

/// A writer task that is dropped before it ends (its runtime stopping) fails the marks still
/// waiting, so nobody waits for ever, and lets the next mark start another.
struct Running {
    writer: std::sync::Arc<DoneWriter>,
    ended: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let mut waiting = self.writer.waiting.lock();
        waiting.writing = false;
        waiting.journal = None;
        for mark in waiting.marks.drain(..) {
            let _ = mark.written.send(Err(gone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::journal::Journal;
    use crate::store::Store;

    fn journal_in(dir: &std::path::Path) -> Journal {
        let store = Store::open(dir).expect("store");
        Journal::open(&store).expect("journal")
    }

    #[tokio::test]
    async fn marks_waiting_together_share_one_commit_and_are_all_done() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = journal_in(dir.path());
        let ids: Vec<String> = (0..200).map(|i| format!("$m{i}")).collect();
        for id in &ids {
            j.stage("!r", id, "@a:x", "hi").expect("staged");
        }
        j.commit().await.expect("committed");
        let before = j.store.flushes();
        let results = futures_util::future::join_all(ids.iter().map(|id| j.complete(id))).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        for id in &ids {
            assert!(j.is_done(id).expect("readable"), "{id}");
        }
        assert_eq!(j.pending_count(), 0);
        // All asked before the writer first ran: one batch, one commit.
        assert_eq!(j.store.flushes() - before, 1);
    }

    #[tokio::test]
    async fn a_writer_waits_for_more_marks_then_ends_and_holds_no_store_meanwhile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = journal_in(dir.path());
        let writer = j
            .writer
            .clone()
            .expect("a journal's own handle has the writer");
        for id in ["$a", "$b"] {
            j.stage("!r", id, "@a:x", "hi").expect("staged");
        }
        j.commit().await.expect("committed");
        j.complete("$a").await.expect("marked");
        assert!(writer.running(), "it waits for more marks");
        // Marked during the wait: the same task writes it.
        j.complete("$b").await.expect("marked");
        assert!(j.is_done("$b").expect("readable"));
        // While it waits, the store closes with its last handle (this thread sleeps while
        // the open waits for the lock: a writer holding the store would make it fail).
        drop(j);
        assert!(writer.running(), "still waiting");
        let reopened = Store::open(dir.path()).expect("reopened while the writer waits");
        drop(reopened);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while writer.running() {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never ended"
            );
            tokio::time::sleep(super::DONE_LINGER).await;
        }
    }

    #[test]
    fn a_writer_dropped_with_its_runtime_fails_its_marks_and_the_next_mark_starts_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
        };
        let j = Arc::new(journal_in(dir.path()));
        for id in ["$a", "$b"] {
            j.stage("!r", id, "@a:x", "hi").expect("staged");
        }
        let first = runtime();
        // The mark's future is handed out of the first runtime on purpose, to be awaited on
        // the second after the first (and its writer task) is gone.
        #[allow(clippy::async_yields_async)]
        let asked = first.block_on(async {
            let mut asked = Box::pin({
                let j = j.clone();
                async move { j.complete("$a").await }
            });
            // One poll: the mark waits, the writer is spawned but has not run.
            assert!(futures_util::poll!(&mut asked).is_pending());
            asked
        });
        drop(first);
        let second = runtime();
        assert!(second.block_on(asked).is_err(), "its writer is gone");
        assert!(second.block_on(j.complete("$b")).is_ok());
        assert!(j.is_done("$b").expect("readable"));
        assert!(
            !j.is_done("$a").expect("readable"),
            "still pending: resumed later"
        );
    }
}
