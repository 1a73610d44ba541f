//! A room's story (`/status/rooms/<room id>`, `surfaces status --room <id>`): its binding,
//! its actor's state and restart history, its last messages' timings and outcomes, what it
//! still owes (pending journal entries) and what it waits for (pending confirmations).
//!
//! Why this file exists: `/status` says which room is broken; this says what happened to
//! it. Like `/status`, the facts are gathered once into serde types — the JSON is the
//! contract the CLI reads, the page only renders it. Nothing a person or an agent wrote
//! appears: ids, times, states, error classes and the actor's exit reasons only (a panic
//! message is the code's). [`gather`] is pure (from what was read); [`room_story`] reads.

use std::time::{Duration, SystemTime};

use actors::ActorHealth;
use serde::{Deserialize, Serialize};

use super::history::HistoryEvent;
use super::status::unix_ms;
use crate::confirmations::{Confirmation, Pending};
use crate::journal::JournalEntry;
use crate::runtime::ids;
use crate::runtime::room::story::MessageRecord;
use crate::runtime::RuntimeView;
use crate::store::{RoomRecord, StoreError};

/// Longest room id looked up (longer ones are no room's: answered as unknown).
pub const MAX_ROOM_ID_BYTES: usize = 512;

/// What the room is bound to, from the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// Its messenger (`matrix`, `telegram`).
    pub surface: String,
    /// The agent it talks to.
    pub agent: String,
    /// The conversation id on the agent platform.
    pub upstream_chat_id: String,
    /// Who it belongs to.
    pub owner: String,
    /// The room's name (user input: escape it before showing it).
    pub name: Option<String>,
    /// Archived: no longer answered.
    pub archived: bool,
}

/// The room actor, from the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorView {
    /// `running`, `backing-off`, `failed`, ...
    pub state: String,
    /// The current (or last) incarnation, from 1.
    pub incarnation: u64,
    /// Restarts since the room was started.
    pub restarts: u32,
    /// Messages queued and not handled yet.
    pub mailbox_depth: u64,
    /// Messages handled.
    pub handled: u64,
    /// Messages lost with a mailbox that died.
    pub lost: u64,
    /// The last abnormal exit (`panic: ...`).
    pub last_failure: Option<String>,
    /// When it happened (Unix milliseconds).
    pub last_failure_at_ms: Option<u64>,
    /// When the actor last handled a message (Unix milliseconds).
    pub last_activity_ms: Option<u64>,
}

/// A message of the room accepted and not answered yet (journal order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingMessage {
    /// Its id (the event id).
    pub message_id: String,
    /// Its place in the journal.
    pub seq: u64,
    /// How often it was resumed after a restart.
    pub resumes: u32,
    /// When it was journaled (Unix ms; unknown for entries older than this field).
    pub accepted_ms: Option<u64>,
}

/// A question of the room waiting for `!yes` / `!no`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingConfirmation {
    /// What it is about: `archive` (the bot's), `agent` (an agent's `confirm`).
    pub kind: String,
    /// For an agent's: the agent.
    pub agent: Option<String>,
    /// Who must answer.
    pub person: String,
    /// When it was asked (Unix milliseconds).
    pub asked_ms: u64,
    /// When it expires (Unix milliseconds).
    pub expires_ms: u64,
}

/// The whole room document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomStory {
    /// When this document was made (Unix milliseconds).
    pub generated_at_ms: u64,
    /// The room's id.
    pub room_id: String,
    /// Its actor's id (`room:<room id>`).
    pub actor_id: String,
    /// Its binding (`None`: no record in the store).
    pub binding: Option<Binding>,
    /// Its actor (`None`: not running, e.g. still starting up).
    pub actor: Option<ActorView>,
    /// The actor's last supervision events, newest first.
    pub history: Vec<HistoryEvent>,
    /// The last messages, newest first (ids, timings and outcomes only).
    pub messages: Vec<MessageRecord>,
    /// Messages accepted and not answered yet, in journal order.
    pub pending: Vec<PendingMessage>,
    /// Questions waiting for an answer.
    pub confirmations: Vec<PendingConfirmation>,
}

/// What [`gather`] builds the story from.
pub struct Inputs {
    /// The room asked about.
    pub room_id: String,
    /// Its store record.
    pub record: Option<RoomRecord>,
    /// Its actor's health.
    pub health: Option<ActorHealth>,
    /// Its actor's supervision history, newest first.
    pub history: Vec<HistoryEvent>,
    /// Its recent messages, newest first.
    pub messages: Vec<MessageRecord>,
    /// Every pending journal entry (of any room).
    pub journal: Vec<JournalEntry>,
    /// The room's live confirmations.
    pub confirmations: Vec<Confirmation>,
    /// How long a confirmation lives (when it was asked follows from its expiry).
    pub confirmation_ttl: Duration,
    /// Now (Unix milliseconds).
    pub now_ms: u64,
}

/// The story, or `None` for a room the bot knows nothing of.
pub fn gather(inputs: Inputs) -> Option<RoomStory> {
    let known = inputs.record.is_some()
        || inputs.health.is_some()
        || !inputs.messages.is_empty()
        || !inputs.history.is_empty();
    if !known {
        return None;
    }
    let ttl_ms = u64::try_from(inputs.confirmation_ttl.as_millis()).unwrap_or(u64::MAX);
    let room_id = inputs.room_id;
    Some(RoomStory {
        generated_at_ms: inputs.now_ms,
        actor_id: ids::room(&room_id).to_string(),
        binding: inputs.record.map(|r| Binding {
            surface: r.surface,
            agent: r.agent_id,
            upstream_chat_id: r.platform_chat_id,
            owner: r.owner,
            name: r.name,
            archived: r.archived,
        }),
        actor: inputs.health.map(|h| ActorView {
            state: h.state.label().to_owned(),
            incarnation: h.incarnation,
            restarts: h.restarts,
            mailbox_depth: h.mailbox_depth,
            handled: h.handled,
            lost: h.lost,
            last_failure: h.last_failure.as_ref().map(|f| f.reason.to_string()),
            last_failure_at_ms: h.last_failure.as_ref().map(|f| unix_ms(f.at)),
            last_activity_ms: h.last_activity.map(unix_ms),
        }),
        history: inputs.history,
        messages: inputs.messages,
        pending: inputs
            .journal
            .into_iter()
            .filter(|e| e.room_id == room_id)
            .map(|e| PendingMessage {
                message_id: e.event_id,
                seq: e.seq,
                resumes: e.resumes,
                accepted_ms: e.accepted_ms,
            })
            .collect(),
        confirmations: inputs
            .confirmations
            .into_iter()
            .filter(|c| c.room_id == room_id)
            .map(|c| {
                let (kind, agent) = match c.pending {
                    Pending::Archive => ("archive", None),
                    Pending::Agent { agent_id, .. } => ("agent", Some(agent_id)),
                };
                PendingConfirmation {
                    kind: kind.to_owned(),
                    agent,
                    person: c.person,
                    asked_ms: c.expires_ms.saturating_sub(ttl_ms),
                    expires_ms: c.expires_ms,
                }
            })
            .collect(),
        room_id,
    })
}

/// Reads the story of `room_id` from the running bot (`Ok(None)`: unknown room).
pub fn room_story(view: &RuntimeView, room_id: &str) -> Result<Option<RoomStory>, StoreError> {
    if room_id.is_empty() || room_id.len() > MAX_ROOM_ID_BYTES {
        return Ok(None);
    }
    let actor_id = ids::room(room_id);
    Ok(gather(Inputs {
        room_id: room_id.to_owned(),
        record: view.store.room(room_id)?,
        health: view.registry.get(&actor_id),
        history: view.history.of(&actor_id.to_string()),
        messages: view.stories.recent(room_id),
        journal: view.journal.pending()?,
        confirmations: view.confirmations.of_room(room_id)?,
        confirmation_ttl: view.confirmations.ttl(),
        now_ms: unix_ms(SystemTime::now()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::room::story::Outcome;

    fn entry(seq: u64, room: &str, id: &str) -> JournalEntry {
        JournalEntry {
            seq,
            room_id: room.to_owned(),
            event_id: id.to_owned(),
            sender: "@a:x".to_owned(),
            body: "the person's words".to_owned(),
            resumes: 1,
            live_reply: None,
            live_parts: Vec::new(),
            files: Vec::new(),
            accepted_ms: Some(1_000),
        }
    }

    fn inputs(record: Option<RoomRecord>) -> Inputs {
        Inputs {
            room_id: "!r:x".to_owned(),
            record,
            health: None,
            history: Vec::new(),
            messages: Vec::new(),
            journal: vec![entry(1, "!r:x", "$1"), entry(2, "!other:x", "$2")],
            confirmations: vec![
                Confirmation {
                    room_id: "!r:x".to_owned(),
                    person: "@a:x".to_owned(),
                    pending: Pending::Agent {
                        confirm_id: "c1".to_owned(),
                        turn_id: "t".to_owned(),
                        chat_id: "sfc-1".to_owned(),
                        agent_id: "ref".to_owned(),
                        prompt: "Delete everything?".to_owned(),
                    },
                    expires_ms: 61_000,
                },
                Confirmation {
                    room_id: "!other:x".to_owned(),
                    person: "@a:x".to_owned(),
                    pending: Pending::Archive,
                    expires_ms: 61_000,
                },
            ],
            confirmation_ttl: Duration::from_secs(60),
            now_ms: 5_000,
        }
    }

    fn record() -> RoomRecord {
        RoomRecord {
            room_id: "!r:x".to_owned(),
            surface: "matrix".to_owned(),
            owner: "@a:x".to_owned(),
            agent_id: "ref".to_owned(),
            platform_chat_id: "sfc-1".to_owned(),
            chat_index: 1,
            archived: false,
            name: Some("Chat".to_owned()),
        }
    }

    #[test]
    fn an_unknown_room_has_no_story() {
        assert_eq!(gather(inputs(None)), None);
    }

    #[test]
    fn the_story_is_the_rooms_only_and_carries_no_text() {
        let mut known = inputs(Some(record()));
        known.messages = vec![MessageRecord {
            message_id: "$0".to_owned(),
            started_ms: 10,
            accepted_ms: Some(9),
            queue_wait_ms: Some(1),
            first_words_ms: None,
            final_reply_ms: None,
            outcome: Outcome::Failed,
            failure: Some("agent_error: timeout".to_owned()),
            ended_ms: Some(20),
        }];
        let story = gather(known).expect("known");
        assert_eq!(story.actor_id, "room:!r:x");
        let binding = story.binding.as_ref().expect("bound");
        assert_eq!(
            (binding.agent.as_str(), binding.upstream_chat_id.as_str()),
            ("ref", "sfc-1")
        );
        let pending: Vec<&str> = story
            .pending
            .iter()
            .map(|p| p.message_id.as_str())
            .collect();
        assert_eq!(pending, ["$1"]);
        assert_eq!(story.confirmations.len(), 1);
        let asked = &story.confirmations[0];
        assert_eq!(
            (asked.kind.as_str(), asked.agent.as_deref(), asked.asked_ms),
            ("agent", Some("ref"), 1_000)
        );
        let json = serde_json::to_string(&story).unwrap_or_default();
        for text in ["the person's words", "Delete everything?"] {
            assert!(!json.contains(text), "{text} leaked: {json}");
        }
        assert!(json.contains("agent_error: timeout"), "{json}");
    }
}
