//! Each actor's last few supervision events: exits with their reasons, restarts, give-ups.
//!
//! Why this exists: the registry keeps only an actor's last failure and a restart count; a
//! person asked why a room keeps restarting needs the sequence — what ended it each time,
//! when, and what the supervisor did. [`SupervisionHistory::follow`] listens to the
//! registry's supervision events (as the metrics do) and keeps the last [`HISTORY_EVENTS`]
//! of each actor in memory, for at most [`HISTORY_ACTORS_MAX`] actors (the one quiet longest
//! is forgotten first). The first start of an actor and its normal exits are not kept: only
//! what tells a story of trouble.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use actors::{EventKind, Registry, SupervisionEvent};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use super::status::unix_ms;

/// Events remembered per actor.
pub const HISTORY_EVENTS: usize = 10;
/// Actors remembered at most.
pub const HISTORY_ACTORS_MAX: usize = 10_000;

/// One remembered supervision event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// When it happened (Unix milliseconds).
    pub at_ms: u64,
    /// What happened: `exited`, `restarting`, `restarted`, `gave_up`, `removed`.
    pub kind: String,
    /// The incarnation concerned, when the event names one.
    pub incarnation: Option<u64>,
    /// Why or how: the exit reason (`panic: ...`), the restart's attempt and backoff.
    pub detail: String,
}

/// The event as remembered, or `None` for one that tells nothing of trouble (a first
/// start, a normal exit).
pub fn remembered(kind: &EventKind, at_ms: u64) -> Option<HistoryEvent> {
    let (kind, incarnation, detail) = match kind {
        EventKind::Started { incarnation } if *incarnation <= 1 => return None,
        EventKind::Started { incarnation } => ("restarted", Some(*incarnation), String::new()),
        EventKind::Exited { reason, .. } if !reason.is_abnormal() => return None,
        EventKind::Exited {
            incarnation,
            reason,
        } => ("exited", Some(*incarnation), reason.to_string()),
        EventKind::Restarting { attempt, delay } => (
            "restarting",
            None,
            format!("attempt {attempt} after {} ms", delay.as_millis()),
        ),
        EventKind::GaveUp { restarts_in_period } => (
            "gave_up",
            None,
            format!("{restarts_in_period} restarts within the period"),
        ),
        EventKind::Removed => ("removed", None, String::new()),
    };
    Some(HistoryEvent {
        at_ms,
        kind: kind.to_owned(),
        incarnation,
        detail,
    })
}

#[derive(Default)]
struct Actor {
    /// Oldest first.
    events: VecDeque<HistoryEvent>,
    last_ms: u64,
}

/// The history of every actor that had trouble. Shared; cheap to read.
#[derive(Default)]
pub struct SupervisionHistory {
    actors: Mutex<HashMap<String, Actor>>,
}

impl std::fmt::Debug for SupervisionHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisionHistory")
            .field("actors", &self.actors.lock().len())
            .finish()
    }
}

impl SupervisionHistory {
    /// A history fed by `registry`'s events from now on (spawns the listener; it ends with
    /// the history or the registry).
    pub fn follow(registry: &Registry) -> Arc<Self> {
        let history = Arc::new(Self::default());
        let mut events = registry.subscribe();
        let weak: Weak<Self> = Arc::downgrade(&history);
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        let Some(history) = weak.upgrade() else {
                            break;
                        };
                        history.record(&event, unix_ms(SystemTime::now()));
                    }
                    Err(RecvError::Lagged(missed)) => tracing::warn!(
                        missed,
                        "the supervision history fell behind the supervision events; \
                         some are not shown on the room pages"
                    ),
                    Err(RecvError::Closed) => break,
                }
            }
        });
        history
    }

    /// Remembers `event`, which happened at `at_ms`.
    pub fn record(&self, event: &SupervisionEvent, at_ms: u64) {
        let Some(entry) = remembered(&event.kind, at_ms) else {
            return;
        };
        let key = event.id.to_string();
        let mut actors = self.actors.lock();
        if !actors.contains_key(&key) && actors.len() >= HISTORY_ACTORS_MAX {
            let quietest = actors
                .iter()
                .min_by_key(|(_, a)| a.last_ms)
                .map(|(id, _)| id.clone());
            if let Some(quietest) = quietest {
                actors.remove(&quietest);
            }
        }
        let actor = actors.entry(key).or_default();
        actor.last_ms = at_ms;
        actor.events.push_back(entry);
        while actor.events.len() > HISTORY_EVENTS {
            actor.events.pop_front();
        }
    }

    /// The remembered events of the actor `id` (`room:<room id>`), newest first.
    pub fn of(&self, id: &str) -> Vec<HistoryEvent> {
        self.actors
            .lock()
            .get(id)
            .map(|a| a.events.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actors::{ActorId, ExitReason};
    use std::time::Duration;

    #[test]
    fn only_trouble_is_remembered() {
        let table = [
            (EventKind::Started { incarnation: 1 }, None),
            (
                EventKind::Started { incarnation: 2 },
                Some(("restarted", Some(2), "")),
            ),
            (
                EventKind::Exited {
                    incarnation: 1,
                    reason: ExitReason::Normal,
                },
                None,
            ),
            (
                EventKind::Exited {
                    incarnation: 1,
                    reason: ExitReason::Panic("boom".into()),
                },
                Some(("exited", Some(1), "panic: boom")),
            ),
            (
                EventKind::Restarting {
                    attempt: 2,
                    delay: Duration::from_millis(250),
                },
                Some(("restarting", None, "attempt 2 after 250 ms")),
            ),
            (
                EventKind::GaveUp {
                    restarts_in_period: 5,
                },
                Some(("gave_up", None, "5 restarts within the period")),
            ),
        ];
        for (kind, want) in table {
            let got = remembered(&kind, 7);
            let got = got
                .as_ref()
                .map(|e| (e.kind.as_str(), e.incarnation, e.detail.as_str()));
            assert_eq!(got, want, "{kind:?}");
        }
    }

    #[test]
    fn each_actor_keeps_its_last_events_newest_first() {
        let history = SupervisionHistory::default();
        let room = ActorId::new("room", "!a:x");
        let other = ActorId::new("room", "!b:x");
        let n = u64::try_from(HISTORY_EVENTS).unwrap_or(0) + 3;
        for incarnation in 2..2 + n {
            history.record(
                &SupervisionEvent {
                    id: room.clone(),
                    kind: EventKind::Started { incarnation },
                },
                incarnation,
            );
        }
        let got = history.of("room:!a:x");
        assert_eq!(got.len(), HISTORY_EVENTS);
        assert_eq!(got[0].incarnation, Some(n + 1), "newest first");
        assert!(history.of(&other.to_string()).is_empty());
    }
}
