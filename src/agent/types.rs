//! The contract's vocabulary (`docs/agent-api.md`): what a turn sends, what an agent streams
//! back, what a turn ends with, and what the context calls answer.
//!
//! Why this file exists: every agent kind (HTTP, echo, and the open protocols to come)
//! produces and consumes exactly these types, so the rest of Surfaces never sees a wire format.

use serde::{Deserialize, Serialize};

/// Who wrote the message that starts a turn (a Matrix user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnSender {
    /// Matrix user id, e.g. `@alice:example.org`.
    pub id: String,
    /// Display name in the room, when the user has one (omitted from the JSON otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// A file the user sent, already written to the agent's workspace (also kept in the journal
/// while it waits for its turn).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Path relative to the agent's workspace root (e.g. `inbox/<room>/<event>-report.pdf`).
    pub path: String,
    /// The file name as the user sent it.
    pub name: String,
    /// MIME type as announced by Matrix.
    pub mime: String,
    /// Size in bytes.
    pub size: u64,
}

/// The body of `POST /v1/chats/{chat}/turns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnRequest {
    /// Idempotency key of the turn, derived from the Matrix event id.
    pub turn_id: String,
    /// Author of the message.
    pub sender: TurnSender,
    /// The message text.
    pub text: String,
    /// Files attached to the message (may be empty).
    pub attachments: Vec<Attachment>,
}

/// A file the agent wants posted to the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEvent {
    /// Path as the agent gave it (relative, or under `/workspace/` or `/agents/<n>/`);
    /// normalising and checking it is the caller's job.
    pub path: String,
    /// File name to show.
    pub name: String,
    /// MIME type.
    pub mime: String,
}

/// The agent waits for the user's yes/no before going on with the turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmEvent {
    /// Id to answer with ([`AgentClient::confirm`]).
    pub confirm_id: String,
    /// The question to show the user.
    pub prompt: String,
}

/// One event of a turn's stream (see the table in `docs/agent-api.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// A chunk of the reply text (markdown).
    Delta { text: String },
    /// A progress line, not part of the reply.
    Status { text: String },
    /// A file to post.
    File {
        path: String,
        name: String,
        mime: String,
    },
    /// The agent asks the user a yes/no question; the stream ends after it.
    Confirm { confirm_id: String, prompt: String },
    /// The turn is complete; `text` is the whole reply.
    Done { text: String },
    /// The turn failed; the stream ends.
    Error { code: String, message: String },
}

/// What a finished turn (or a continued one, after a confirmation) produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TurnOutcome {
    /// The whole reply text (from `done`; the concatenated deltas when `done` carried none).
    /// Empty when the turn stopped on a confirmation without saying anything.
    pub reply: String,
    /// Files the agent asked to post, in stream order.
    pub files: Vec<FileEvent>,
    /// Set when the stream ended on a `confirm` event: the turn waits for the user.
    pub confirm: Option<ConfirmEvent>,
    /// Set when the turn was cut at the accumulation limit (`replies.max_turn_bytes`): the
    /// reply is its beginning and the agent call was ended.
    pub truncated: bool,
}

/// The `{"error": {"code", "message"}}` body of a non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `bad_request`.
    #[serde(default)]
    pub code: String,
    /// Human-readable explanation.
    #[serde(default)]
    pub message: String,
}

impl ErrorBody {
    /// Parses `{"error": {...}}`; `None` when the body is not of that shape.
    pub fn parse(body: &[u8]) -> Option<ErrorBody> {
        #[derive(Deserialize)]
        struct Envelope {
            error: ErrorBody,
        }
        serde_json::from_slice::<Envelope>(body)
            .ok()
            .map(|e| e.error)
    }
}

/// `GET /v1/chats/{chat}/context`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct ContextInfo {
    /// Messages in the conversation.
    #[serde(default)]
    pub messages: u64,
    /// Tokens in the agent's context window.
    #[serde(default)]
    pub tokens: u64,
    /// A short summary, when the agent has one.
    #[serde(default)]
    pub summary: Option<String>,
    /// Names of the snapshots saved from this chat.
    #[serde(default)]
    pub snapshots: Vec<String>,
}

/// `POST /v1/chats/{chat}/snapshots` answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct SnapshotInfo {
    /// Name of the snapshot.
    #[serde(default)]
    pub name: String,
    /// Messages it holds.
    #[serde(default)]
    pub messages: u64,
}

/// `GET /v1/health` answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct HealthInfo {
    /// `"ok"` when the agent is healthy.
    #[serde(default)]
    pub status: String,
    /// The agent's own id.
    #[serde(default)]
    pub agent: String,
    /// The agent's version string.
    #[serde(default)]
    pub version: String,
}

impl HealthInfo {
    /// True when the agent says it is healthy.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_parse() {
        let b = ErrorBody::parse(br#"{"error":{"code":"bad","message":"no"}}"#);
        assert_eq!(
            b,
            Some(ErrorBody {
                code: "bad".into(),
                message: "no".into()
            })
        );
        assert_eq!(ErrorBody::parse(b"<html>"), None);
        assert_eq!(ErrorBody::parse(br#"{"code":"bad"}"#), None);
        assert_eq!(ErrorBody::parse(b""), None);
    }

    #[test]
    fn turn_request_serializes_per_contract() {
        let req = TurnRequest {
            turn_id: "turn-1".into(),
            sender: TurnSender {
                id: "@alice:example.org".into(),
                display_name: Some("Alice".into()),
            },
            text: "hi".into(),
            attachments: vec![Attachment {
                path: "inbox/r/e-report.pdf".into(),
                name: "report.pdf".into(),
                mime: "application/pdf".into(),
                size: 48213,
            }],
        };
        let v = serde_json::to_value(&req).ok();
        let want = serde_json::json!({
            "turn_id": "turn-1",
            "sender": {"id": "@alice:example.org", "display_name": "Alice"},
            "text": "hi",
            "attachments": [{"path": "inbox/r/e-report.pdf", "name": "report.pdf",
                             "mime": "application/pdf", "size": 48213}]
        });
        assert_eq!(v, Some(want));
    }
}
