//! A room's recent messages as an operator sees them: ids, timings and outcomes, never text.
//!
//! Why this exists: the metrics say how messages fare over all rooms; the person on call
//! asked about one room needs that room's last few messages — which one failed, how, how long
//! it waited. Each room keeps a bounded ring of [`STORY_MESSAGES`] records in memory (lost on
//! restart, like the actors' health); the room actor writes through a [`StoryPen`] for the
//! message it answers (the [`super::ReplyClock`] writes the timings), and `/status/rooms/<id>`
//! reads them. A record holds the message's id (the journal's event id), when it arrived,
//! its queue wait, first words and final reply in milliseconds, and how it ended: nothing a
//! person wrote. At most [`STORY_ROOMS_MAX`] rooms are kept; those idle longest go first, a
//! tenth at a time ([`STORY_EVICT_BATCH`]). A pen holds its room's ring itself: the timings
//! and the outcome it writes (four per message) do not look the room up among all the others.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::Arrival;
use crate::agent::AgentError;
use crate::idmap::IdMap;
use crate::metrics::{MessageOutcome, Metrics};

/// Messages remembered per room.
pub const STORY_MESSAGES: usize = 20;
/// Rooms remembered at most (a room idle longest is forgotten first).
pub const STORY_ROOMS_MAX: usize = 10_000;
/// Rooms forgotten at once when [`STORY_ROOMS_MAX`] is reached: finding the idlest scans every
/// room remembered, so with more active rooms than the cap, forgetting one at a time made each
/// new room's first message pay a scan of 10,000 (under the lock the room actors share).
pub const STORY_EVICT_BATCH: usize = STORY_ROOMS_MAX / 10;
/// Longest agent error code kept in an error class (the code is the agent's, unchecked).
pub const MAX_CODE_CHARS: usize = 40;

/// How a message ended (or that it has not yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Being answered now.
    InProgress,
    /// The agent's answer reached the chat.
    Replied,
    /// A chat command, answered by the bot.
    Command,
    /// Not taken: the chat is archived, or the command was invalid (a notice said why).
    Refused,
    /// The person cancelled the turn.
    Cancelled,
    /// It failed (see the record's `failure`); the person got a notice when one could be sent.
    Failed,
    /// The room actor ended while answering it (a panic, a stop); it is answered again.
    Interrupted,
    /// Given up after it kept failing its room (a poison message).
    GivenUp,
}

impl Outcome {
    /// The label shown on the page and by the CLI.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::InProgress => "in progress",
            Outcome::Replied => "replied",
            Outcome::Command => "command",
            Outcome::Refused => "refused",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::GivenUp => "given up",
        }
    }
}

/// One message of a room, as remembered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The message's id (the journal's event id).
    pub message_id: String,
    /// When the room actor began answering it (Unix milliseconds).
    pub started_ms: u64,
    /// When the bot accepted it (Unix ms; `None`: resumed from the journal, not measured).
    pub accepted_ms: Option<u64>,
    /// From its acceptance to the agent turn's start.
    pub queue_wait_ms: Option<u64>,
    /// From its acceptance to the first words of the reply in the chat.
    pub first_words_ms: Option<u64>,
    /// From its acceptance to the whole reply in the chat.
    pub final_reply_ms: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// With [`Outcome::Failed`]: the class of failure (`agent_error: timeout`,
    /// `agent_unavailable`, `internal_error`, ...).
    pub failure: Option<String>,
    /// When it ended (Unix milliseconds).
    pub ended_ms: Option<u64>,
}

/// One room's ring, shared by the registry and the pens writing into it.
type SharedRing = Arc<Mutex<Ring>>;

/// One room's ring.
#[derive(Default)]
struct Ring {
    /// Oldest first.
    messages: VecDeque<MessageRecord>,
    /// When it was last written (Unix ms), for eviction.
    touched_ms: u64,
}

/// The recent messages of every room. Shared by the room actors and the ops endpoint.
#[derive(Default)]
pub struct Stories {
    rooms: Mutex<IdMap<String, SharedRing>>,
}

impl std::fmt::Debug for Stories {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stories")
            .field("rooms", &self.rooms.lock().len())
            .finish()
    }
}

/// Unix milliseconds of `at` (0 before the epoch).
fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

/// Whole milliseconds of `d`, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Adds `record` to `ring`: a record of the same message still in progress becomes
/// [`Outcome::Interrupted`] (its room actor ended meanwhile); the oldest beyond `cap` go.
fn push(ring: &mut VecDeque<MessageRecord>, record: MessageRecord, cap: usize) {
    for earlier in ring.iter_mut() {
        // The outcome first: most records ended, and comparing ids is the dearer test.
        if earlier.outcome == Outcome::InProgress && earlier.message_id == record.message_id {
            earlier.outcome = Outcome::Interrupted;
            earlier.ended_ms = Some(record.started_ms);
        }
    }
    ring.push_back(record);
    while ring.len() > cap {
        ring.pop_front();
    }
}

/// The rooms to forget to make space: the `n` written longest ago (all, if fewer), in no order.
fn idlest<'a>(rooms: impl Iterator<Item = (&'a String, u64)>, n: usize) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    let mut all: Vec<(u64, &String)> = rooms.map(|(id, touched)| (touched, id)).collect();
    if all.len() > n {
        all.select_nth_unstable_by_key(n - 1, |(touched, _)| *touched);
        all.truncate(n);
    }
    all.into_iter().map(|(_, id)| id.clone()).collect()
}

impl Stories {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The room actor begins answering `message` of `room`: a record in progress, and the
    /// pen that writes it.
    pub fn begin(&self, room: &str, message: &str, arrival: Option<Arrival>) -> StoryPen {
        let now = SystemTime::now();
        let accepted_ms =
            arrival.map(|a| unix_ms(now).saturating_sub(millis(a.accepted.elapsed())));
        let record = MessageRecord {
            message_id: message.to_owned(),
            started_ms: unix_ms(now),
            accepted_ms,
            queue_wait_ms: None,
            first_words_ms: None,
            final_reply_ms: None,
            outcome: Outcome::InProgress,
            failure: None,
            ended_ms: None,
        };
        let ring = {
            let mut rooms = self.rooms.lock();
            // Looked up before anything is inserted: no key made for a room remembered.
            match rooms.get(room) {
                Some(ring) => Arc::clone(ring),
                None => {
                    if rooms.len() >= STORY_ROOMS_MAX {
                        let touched = rooms.iter().map(|(id, r)| (id, r.lock().touched_ms));
                        for gone in idlest(touched, STORY_EVICT_BATCH) {
                            rooms.remove(&gone);
                        }
                    }
                    let ring = SharedRing::default();
                    rooms.insert(room.to_owned(), Arc::clone(&ring));
                    ring
                }
            }
        };
        {
            let mut ring = ring.lock();
            ring.touched_ms = record.started_ms;
            push(&mut ring.messages, record, STORY_MESSAGES);
        }
        StoryPen {
            ring,
            message: message.to_owned(),
        }
    }

    /// The remembered messages of `room`, newest first.
    pub fn recent(&self, room: &str) -> Vec<MessageRecord> {
        let ring = self.rooms.lock().get(room).map(Arc::clone);
        ring.map(|ring| ring.lock().messages.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

/// Writes one message's record (cheap to clone; the turn and its live reply share it). It
/// holds its room's ring: once the room is forgotten ([`STORY_ROOMS_MAX`]) what it writes is
/// seen by nobody, as before.
#[derive(Clone)]
pub struct StoryPen {
    ring: SharedRing,
    message: String,
}

impl std::fmt::Debug for StoryPen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoryPen({})", self.message)
    }
}

/// Which moment of a reply a timing is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    /// The agent turn started.
    QueueWait,
    /// The first words reached the chat.
    FirstWords,
    /// The whole reply reached the chat.
    FinalReply,
}

impl StoryPen {
    /// Records `moment`, `took` after the message was accepted.
    pub fn timing(&self, moment: Moment, took: Duration) {
        let ms = Some(millis(took));
        self.write(|record| match moment {
            Moment::QueueWait => record.queue_wait_ms = ms,
            Moment::FirstWords => record.first_words_ms = ms,
            Moment::FinalReply => record.final_reply_ms = ms,
        });
    }

    /// Writes the latest record of its message (the newest, nearly always).
    fn write(&self, change: impl FnOnce(&mut MessageRecord)) {
        let mut ring = self.ring.lock();
        let mine = ring
            .messages
            .iter_mut()
            .rev()
            .find(|r| r.message_id == self.message);
        if let Some(record) = mine {
            change(record);
        }
    }

    /// The message ended with `outcome` (`failure`: its class, for a failure).
    pub fn end(&self, outcome: Outcome, failure: Option<String>) {
        let now = unix_ms(SystemTime::now());
        self.write(|record| {
            record.outcome = outcome;
            record.failure = failure;
            record.ended_ms = Some(now);
        });
    }

    /// Counts `outcome` in the metrics and records it.
    pub fn counted(&self, metrics: &Metrics, surface: &'static str, outcome: MessageOutcome) {
        metrics.message(surface, outcome);
        let (ended, failure) = story_outcome(outcome);
        self.end(ended, failure);
    }

    /// Counts a failed agent turn and records the class of `error`.
    pub fn turn_failed(&self, metrics: &Metrics, surface: &'static str, error: &AgentError) {
        metrics.message(surface, MessageOutcome::AgentError);
        let class = format!(
            "{}: {}",
            MessageOutcome::AgentError.label(),
            error_class(error)
        );
        self.end(Outcome::Failed, Some(class));
    }
}

/// How a counted outcome reads in a room's story.
pub fn story_outcome(outcome: MessageOutcome) -> (Outcome, Option<String>) {
    match outcome {
        MessageOutcome::Replied => (Outcome::Replied, None),
        MessageOutcome::Limited => (Outcome::Refused, Some(outcome.label().to_owned())),
        MessageOutcome::AgentError
        | MessageOutcome::AgentUnavailable
        | MessageOutcome::StaleAgent
        | MessageOutcome::InternalError => (Outcome::Failed, Some(outcome.label().to_owned())),
    }
}

/// The class of an agent error, without its text (which may quote the person or the agent):
/// `timeout`, `server 502`, `turn_failed boom`, ...
pub fn error_class(error: &AgentError) -> String {
    match error {
        AgentError::InvalidConfig(_) => "invalid_config".to_owned(),
        AgentError::InvalidChatId(_) => "invalid_chat_id".to_owned(),
        AgentError::Unreachable(_) => "unreachable".to_owned(),
        AgentError::Io(_) => "io".to_owned(),
        AgentError::Timeout(_) => "timeout".to_owned(),
        AgentError::Store(_) => "store".to_owned(),
        AgentError::TurnTooLong(_) => "turn_too_long".to_owned(),
        AgentError::Unsupported(_) => "unsupported".to_owned(),
        AgentError::Busy { status, .. } => format!("busy {status}"),
        AgentError::Server { status, .. } => format!("server {status}"),
        AgentError::Rejected { status, .. } => format!("rejected {status}"),
        AgentError::Protocol(_) => "protocol".to_owned(),
        AgentError::Incomplete => "incomplete".to_owned(),
        AgentError::TurnFailed { code, .. } => {
            let code: String = code
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                .take(MAX_CODE_CHARS)
                .collect();
            format!("turn_failed {code}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, started_ms: u64) -> MessageRecord {
        MessageRecord {
            message_id: id.to_owned(),
            started_ms,
            accepted_ms: None,
            queue_wait_ms: None,
            first_words_ms: None,
            final_reply_ms: None,
            outcome: Outcome::InProgress,
            failure: None,
            ended_ms: None,
        }
    }

    /// (ids pushed in order, cap, want ids oldest first, want outcomes)
    type RingCase<'a> = (&'a [&'a str], usize, &'a [&'a str], &'a [Outcome]);

    #[test]
    fn the_ring_keeps_the_last_ones_and_marks_interrupted_attempts() {
        let table: &[RingCase] = &[
            (&["a", "b"], 3, &["a", "b"], &[Outcome::InProgress; 2]),
            (
                &["a", "b", "c", "d"],
                3,
                &["b", "c", "d"],
                &[Outcome::InProgress; 3],
            ),
            (
                &["a", "a"],
                3,
                &["a", "a"],
                &[Outcome::Interrupted, Outcome::InProgress],
            ),
            (&["a", "b", "a"], 2, &["b", "a"], &[Outcome::InProgress; 2]),
        ];
        for (pushed, cap, ids, outcomes) in table {
            let mut ring = VecDeque::new();
            for (at, id) in pushed.iter().enumerate() {
                push(&mut ring, record(id, at as u64), *cap);
            }
            let got: Vec<&str> = ring.iter().map(|r| r.message_id.as_str()).collect();
            assert_eq!(&got, ids, "{pushed:?}");
            let got: Vec<Outcome> = ring.iter().map(|r| r.outcome).collect();
            assert_eq!(&got, outcomes, "{pushed:?}");
        }
    }

    #[test]
    fn the_idlest_rooms_go_first() {
        let ids: Vec<String> = ["a", "b", "c", "d"].map(str::to_owned).to_vec();
        let touched = [5, 2, 9, 3];
        let cases: [(usize, &[&str]); 5] = [
            (0, &[]),
            (1, &["b"]),
            (2, &["b", "d"]),
            (3, &["a", "b", "d"]),
            (9, &["a", "b", "c", "d"]),
        ];
        for (n, want) in cases {
            let rooms = ids.iter().zip(touched);
            let mut got = idlest(rooms, n);
            got.sort();
            assert_eq!(got, want, "n = {n}");
        }
        assert!(idlest(std::iter::empty(), 3).is_empty());
    }

    #[test]
    fn a_full_registry_forgets_a_batch_of_the_idlest_rooms() {
        let stories = Stories::new();
        for i in 0..STORY_ROOMS_MAX {
            stories.begin(&format!("!r{i}"), "$m", None);
        }
        for (id, ring) in stories.rooms.lock().iter() {
            ring.lock().touched_ms = id[2..].parse().unwrap();
        }
        stories.begin("!new", "$m", None);
        let rooms = stories.rooms.lock();
        assert_eq!(rooms.len(), STORY_ROOMS_MAX - STORY_EVICT_BATCH + 1);
        assert!(rooms.contains_key("!new"));
        let gone = |i: usize| !rooms.contains_key(&format!("!r{i}"));
        assert!(gone(0) && gone(STORY_EVICT_BATCH - 1));
        assert!(!gone(STORY_EVICT_BATCH) && !gone(STORY_ROOMS_MAX - 1));
    }

    #[test]
    fn a_pen_writes_timings_and_the_outcome_of_its_message_only() {
        let stories = Stories::new();
        let first = stories.begin("!r:x", "$1", None);
        first.counted(&Metrics::new(), "matrix", MessageOutcome::Replied);
        let second = stories.begin("!r:x", "$2", Some(Arrival::now(None)));
        second.timing(Moment::QueueWait, Duration::from_millis(7));
        second.timing(Moment::FinalReply, Duration::from_millis(900));
        second.turn_failed(
            &Metrics::new(),
            "matrix",
            &AgentError::TurnFailed {
                code: "boom<script>".into(),
                message: "the person's words".into(),
            },
        );
        let got = stories.recent("!r:x");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].message_id, "$2", "newest first");
        assert_eq!(got[0].outcome, Outcome::Failed);
        assert_eq!(
            got[0].failure.as_deref(),
            Some("agent_error: turn_failed boomscript")
        );
        assert_eq!(got[0].queue_wait_ms, Some(7));
        assert_eq!(got[0].final_reply_ms, Some(900));
        assert!(got[0].accepted_ms.is_some() && got[0].ended_ms.is_some());
        assert_eq!(got[1].outcome, Outcome::Replied);
        assert_eq!(got[1].queue_wait_ms, None, "not measured");
        assert!(stories.recent("!other").is_empty());
    }

    #[test]
    fn counted_outcomes_read_as_story_outcomes() {
        for (counted, want, failure) in [
            (MessageOutcome::Replied, Outcome::Replied, None),
            (
                MessageOutcome::AgentUnavailable,
                Outcome::Failed,
                Some("agent_unavailable"),
            ),
            (
                MessageOutcome::InternalError,
                Outcome::Failed,
                Some("internal_error"),
            ),
            (
                MessageOutcome::StaleAgent,
                Outcome::Failed,
                Some("stale_agent"),
            ),
            (MessageOutcome::Limited, Outcome::Refused, Some("limited")),
        ] {
            let (got, class) = story_outcome(counted);
            assert_eq!((got, class.as_deref()), (want, failure), "{counted:?}");
        }
    }

    #[test]
    fn error_classes_carry_no_text() {
        for (error, want) in [
            (AgentError::Timeout(Duration::from_secs(3)), "timeout"),
            (AgentError::Io("secret words".into()), "io"),
            (
                AgentError::Server {
                    status: 502,
                    body: None,
                },
                "server 502",
            ),
            (AgentError::Protocol("hello".into()), "protocol"),
        ] {
            assert_eq!(error_class(&error), want);
        }
    }
}
