//! The agent platform client: how Surfaces talks to the AI agents of the Lambda platform.
//!
//! This module exists so that the rest of Surfaces (room actors, commands) sees one small,
//! transport-free API for "send a user message to an agent and get its reply", whatever kind of
//! agent is behind it. The contract is `docs/agent-api.md`; the kinds are:
//!
//! - [`http::HttpAgent`]: a real agent server, over HTTP with a Server-Sent-Events reply stream;
//! - [`echo::EchoAgent`]: the built-in agent used when no platform is configured (demo, tests).
//!
//! It also owns the error model ([`AgentError`], split by [`RetryKind`] into network /
//! transient / permanent failures) and the retry loop ([`turn_with_retry`]) that relies on the
//! contract's idempotency: a turn retried with the same `turn_id` never runs twice on the agent.
//!
//! The module does not read configuration: callers map their config to the constructor
//! arguments of [`AgentClient`].

pub mod echo;
pub mod http;
pub mod sse;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::retry::{RetryKind, RetryPolicy};
pub use echo::EchoAgent;
pub use http::HttpAgent;

/// Who wrote the message that starts a turn (a Matrix user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnSender {
    /// Matrix user id, e.g. `@alice:example.org`.
    pub id: String,
    /// Display name in the room, when the user has one (omitted from the JSON otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// A file the user sent, already written to the agent's workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// Everything that can go wrong when talking to an agent.
///
/// Classification ([`AgentError::retry_kind`]):
///
/// | variant | kind |
/// |---|---|
/// | `InvalidConfig`, `InvalidChatId`, `Rejected` (4xx but 408/429), `TurnFailed` | permanent |
/// | `Unreachable`, `Io` | network |
/// | `Timeout`, `Busy` (429/503, with `Retry-After`), `Server` (5xx, 408), `Incomplete` | transient |
/// | `Protocol` | transient (see below) |
///
/// **Garbage on the wire** (`Protocol`: a 2xx that is not an event stream, invalid SSE, invalid
/// JSON in an event, an unexpected status) is classified transient: the usual cause is a glitch
/// (a proxy page, a truncated or corrupted response) and the contract makes a retried turn safe.
/// Retries are bounded by the [`RetryPolicy`], so an agent that keeps talking garbage still
/// fails after a few attempts, and the final error names exactly what was wrong so that the
/// operator can tell "the agent is broken" from "the agent is down".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// The client could not be built from its arguments (bad base URL, bad token characters).
    #[error("invalid agent configuration: {0}")]
    InvalidConfig(String),
    /// The chat id cannot be put in a URL path (empty, `.` or `..`).
    #[error("invalid platform chat id {0:?}")]
    InvalidChatId(String),
    /// The connection could not be established.
    #[error("agent unreachable: {0}")]
    Unreachable(String),
    /// The connection failed during the exchange (reset, closed early).
    #[error("connection to the agent failed: {0}")]
    Io(String),
    /// No complete answer within the configured time.
    #[error("agent did not answer within {0:?}")]
    Timeout(Duration),
    /// HTTP 429 or 503: the agent is overloaded or restarting.
    #[error(
        "agent is busy (HTTP {status}{}){}",
        fmt_body(body),
        fmt_retry_after(retry_after)
    )]
    Busy {
        status: u16,
        retry_after: Option<Duration>,
        body: Option<ErrorBody>,
    },
    /// HTTP 5xx (but 503) or 408.
    #[error("agent failed (HTTP {status}{})", fmt_body(body))]
    Server {
        status: u16,
        body: Option<ErrorBody>,
    },
    /// HTTP 4xx other than 408 and 429: the request itself is wrong for the agent.
    #[error("agent rejected the request (HTTP {status}{})", fmt_body(body))]
    Rejected {
        status: u16,
        body: Option<ErrorBody>,
    },
    /// The agent answered something that does not follow the contract.
    #[error("agent sent an invalid response: {0}")]
    Protocol(String),
    /// The event stream ended without `done`, `confirm` or `error`.
    #[error("agent stream ended before the turn completed")]
    Incomplete,
    /// The agent reported the turn as failed with an `error` event (code `cancelled` after a
    /// cancellation).
    #[error("agent turn failed: {code}: {message}")]
    TurnFailed { code: String, message: String },
}

fn fmt_body(body: &Option<ErrorBody>) -> String {
    match body {
        Some(b) if b.message.is_empty() => format!(" {}", b.code),
        Some(b) => format!(" {}: {}", b.code, b.message),
        None => String::new(),
    }
}

fn fmt_retry_after(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(", retry after {}s", d.as_secs()),
        None => String::new(),
    }
}

/// The `error` event code an agent uses for a cancelled turn.
pub const CANCELLED_CODE: &str = "cancelled";

impl crate::retry::Retryable for AgentError {
    fn retry_kind(&self) -> RetryKind {
        AgentError::retry_kind(self)
    }
}

impl AgentError {
    /// Whether and how a retry may help (see the table on [`AgentError`]).
    pub fn retry_kind(&self) -> RetryKind {
        match self {
            AgentError::Unreachable(_) | AgentError::Io(_) => RetryKind::Network,
            AgentError::Busy { retry_after, .. } => RetryKind::Transient {
                retry_after: *retry_after,
            },
            AgentError::Timeout(_)
            | AgentError::Server { .. }
            | AgentError::Protocol(_)
            | AgentError::Incomplete => RetryKind::Transient { retry_after: None },
            AgentError::InvalidConfig(_)
            | AgentError::InvalidChatId(_)
            | AgentError::Rejected { .. }
            | AgentError::TurnFailed { .. } => RetryKind::Permanent,
        }
    }

    /// True for the `error` event a cancelled turn ends with.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, AgentError::TurnFailed { code, .. } if code == CANCELLED_CODE)
    }

    /// The HTTP status of the agent's answer, for errors that come from one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            AgentError::Busy { status, .. }
            | AgentError::Server { status, .. }
            | AgentError::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Maps a non-2xx status (with its parsed `Retry-After` and error body) per the contract.
    /// Statuses below 400 that are not 2xx (1xx, 3xx: redirects are not followed) are
    /// protocol errors.
    pub fn from_status(
        status: u16,
        retry_after: Option<Duration>,
        body: Option<ErrorBody>,
    ) -> AgentError {
        match status {
            429 | 503 => AgentError::Busy {
                status,
                retry_after,
                body,
            },
            408 | 500..=599 => AgentError::Server { status, body },
            400..=499 => AgentError::Rejected { status, body },
            _ => AgentError::Protocol(format!("unexpected HTTP status {status}")),
        }
    }
}

/// Folds a turn's events into its [`TurnOutcome`]; shared by every agent kind so that they end
/// streams the same way.
#[derive(Debug, Default)]
pub struct TurnAccumulator {
    deltas: String,
    files: Vec<FileEvent>,
}

impl TurnAccumulator {
    /// A fresh accumulator for one stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event; returns the turn's result when the event ends the stream
    /// (`done`, `confirm`, `error`), `None` otherwise.
    pub fn apply(&mut self, event: &AgentEvent) -> Option<Result<TurnOutcome, AgentError>> {
        match event {
            AgentEvent::Delta { text } => {
                self.deltas.push_str(text);
                None
            }
            AgentEvent::Status { .. } => None,
            AgentEvent::File { path, name, mime } => {
                self.files.push(FileEvent {
                    path: path.clone(),
                    name: name.clone(),
                    mime: mime.clone(),
                });
                None
            }
            AgentEvent::Confirm { confirm_id, prompt } => Some(Ok(TurnOutcome {
                reply: std::mem::take(&mut self.deltas),
                files: std::mem::take(&mut self.files),
                confirm: Some(ConfirmEvent {
                    confirm_id: confirm_id.clone(),
                    prompt: prompt.clone(),
                }),
            })),
            AgentEvent::Done { text } => {
                let reply = if text.is_empty() {
                    std::mem::take(&mut self.deltas)
                } else {
                    text.clone()
                };
                Some(Ok(TurnOutcome {
                    reply,
                    files: std::mem::take(&mut self.files),
                    confirm: None,
                }))
            }
            AgentEvent::Error { code, message } => Some(Err(AgentError::TurnFailed {
                code: code.clone(),
                message: message.clone(),
            })),
        }
    }
}

/// One configured agent, of whichever kind.
#[derive(Debug)]
pub enum AgentClient {
    /// A real agent server.
    Http(HttpAgent),
    /// The built-in echo agent.
    Echo(EchoAgent),
}

impl AgentClient {
    /// A client for the agent server at `base_url` (`http` or `https`, may carry a path prefix).
    /// `token` is sent as a Bearer token; `timeout` bounds each call, a whole turn stream included.
    pub fn http(
        base_url: &str,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, AgentError> {
        HttpAgent::new(base_url, token, timeout).map(AgentClient::Http)
    }

    /// The built-in echo agent.
    pub fn echo() -> Self {
        AgentClient::Echo(EchoAgent::new())
    }

    /// Runs one turn, once (no retry: see [`turn_with_retry`]). `on_event` sees every event of
    /// the stream as it arrives, the final one included.
    pub async fn turn(
        &self,
        chat: &str,
        req: &TurnRequest,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        match self {
            AgentClient::Http(a) => a.turn(chat, req, on_event).await,
            AgentClient::Echo(a) => a.turn(chat, req, on_event),
        }
    }

    /// Answers a `confirm`; the outcome is the rest of the turn.
    pub async fn confirm(
        &self,
        chat: &str,
        confirm_id: &str,
        approved: bool,
        turn_id: &str,
    ) -> Result<TurnOutcome, AgentError> {
        self.confirm_with_events(chat, confirm_id, approved, turn_id, &mut |_| {})
            .await
    }

    /// [`AgentClient::confirm`], also passing each event of the continued stream to `on_event`.
    pub async fn confirm_with_events(
        &self,
        chat: &str,
        confirm_id: &str,
        approved: bool,
        turn_id: &str,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        match self {
            AgentClient::Http(a) => {
                a.confirm(chat, confirm_id, approved, turn_id, on_event)
                    .await
            }
            AgentClient::Echo(a) => a.confirm(chat, confirm_id, approved, turn_id, on_event),
        }
    }

    /// Asks the agent to cancel a running turn (its stream then ends with `error` `cancelled`).
    pub async fn cancel(&self, chat: &str, turn_id: &str) -> Result<(), AgentError> {
        match self {
            AgentClient::Http(a) => a.cancel(chat, turn_id).await,
            AgentClient::Echo(a) => a.cancel(chat, turn_id),
        }
    }

    /// What the agent holds for a chat.
    pub async fn context(&self, chat: &str) -> Result<ContextInfo, AgentError> {
        match self {
            AgentClient::Http(a) => a.context(chat).await,
            AgentClient::Echo(a) => a.context(chat),
        }
    }

    /// Saves the chat's context under `name`.
    pub async fn save_snapshot(&self, chat: &str, name: &str) -> Result<SnapshotInfo, AgentError> {
        match self {
            AgentClient::Http(a) => a.save_snapshot(chat, name).await,
            AgentClient::Echo(a) => a.save_snapshot(chat, name),
        }
    }

    /// Loads snapshot `snapshot` into `chat`; `from_chat` names the chat it was saved in when
    /// that is another one (a rotated or other room of the same owner).
    pub async fn restore(
        &self,
        chat: &str,
        snapshot: &str,
        from_chat: Option<&str>,
    ) -> Result<(), AgentError> {
        match self {
            AgentClient::Http(a) => a.restore(chat, snapshot, from_chat).await,
            AgentClient::Echo(a) => a.restore(chat, snapshot, from_chat),
        }
    }

    /// Drops a conversation. Deleting one the agent does not know is not an error.
    pub async fn delete_chat(&self, chat: &str) -> Result<(), AgentError> {
        match self {
            AgentClient::Http(a) => a.delete_chat(chat).await,
            AgentClient::Echo(a) => a.delete_chat(chat),
        }
    }

    /// The agent's health.
    pub async fn health(&self) -> Result<HealthInfo, AgentError> {
        match self {
            AgentClient::Http(a) => a.health().await,
            AgentClient::Echo(a) => Ok(a.health()),
        }
    }
}

/// Runs a turn, retrying network and transient failures per `policy` with the same `turn_id`
/// (the agent replays rather than re-runs a turn it has seen).
///
/// `on_event` sees the events of every attempt: after a retry it may see the start of the reply
/// again. The returned [`TurnOutcome`] is authoritative.
pub async fn turn_with_retry(
    client: &AgentClient,
    chat: &str,
    req: &TurnRequest,
    policy: RetryPolicy,
    on_event: &mut (dyn FnMut(&AgentEvent) + Send),
) -> Result<TurnOutcome, AgentError> {
    let mut attempts_made = 0u32;
    loop {
        attempts_made += 1;
        let err = match client.turn(chat, req, on_event).await {
            Ok(outcome) => return Ok(outcome),
            Err(err) => err,
        };
        let Some(delay) = policy.delay(attempts_made, err.retry_kind(), fastrand::f64()) else {
            return Err(err);
        };
        tracing::warn!(
            chat,
            turn_id = %req.turn_id,
            attempt = attempts_made,
            delay_ms = delay.as_millis() as u64,
            error = %err,
            "agent turn failed, retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn status_mapping_table() {
        let ra = Some(Duration::from_secs(3));
        let cases: &[(u16, Option<Duration>, RetryKind)] = &[
            (429, ra, RetryKind::Transient { retry_after: ra }),
            (503, ra, RetryKind::Transient { retry_after: ra }),
            (503, None, RetryKind::Transient { retry_after: None }),
            (500, None, RetryKind::Transient { retry_after: None }),
            (502, None, RetryKind::Transient { retry_after: None }),
            (504, None, RetryKind::Transient { retry_after: None }),
            (408, None, RetryKind::Transient { retry_after: None }),
            (400, None, RetryKind::Permanent),
            (401, None, RetryKind::Permanent),
            (403, None, RetryKind::Permanent),
            (404, None, RetryKind::Permanent),
            (409, None, RetryKind::Permanent),
            (422, None, RetryKind::Permanent),
            (302, None, RetryKind::Transient { retry_after: None }),
            (101, None, RetryKind::Transient { retry_after: None }),
        ];
        for (status, retry_after, want) in cases {
            let e = AgentError::from_status(*status, *retry_after, None);
            assert_eq!(e.retry_kind(), *want, "status {status}");
        }
        assert!(matches!(
            AgentError::from_status(302, None, None),
            AgentError::Protocol(_)
        ));
        assert_eq!(
            AgentError::from_status(404, None, None).http_status(),
            Some(404)
        );
    }

    #[test]
    fn error_kinds_and_display() {
        assert_eq!(
            AgentError::Unreachable("refused".into()).retry_kind(),
            RetryKind::Network
        );
        assert_eq!(
            AgentError::Io("reset".into()).retry_kind(),
            RetryKind::Network
        );
        assert_eq!(
            AgentError::Timeout(MS(10)).retry_kind(),
            RetryKind::Transient { retry_after: None }
        );
        assert_eq!(
            AgentError::Incomplete.retry_kind(),
            RetryKind::Transient { retry_after: None }
        );
        assert_eq!(
            AgentError::Protocol("x".into()).retry_kind(),
            RetryKind::Transient { retry_after: None }
        );
        let failed = AgentError::TurnFailed {
            code: CANCELLED_CODE.into(),
            message: "stopped".into(),
        };
        assert_eq!(failed.retry_kind(), RetryKind::Permanent);
        assert!(failed.is_cancelled());
        let rejected = AgentError::Rejected {
            status: 400,
            body: Some(ErrorBody {
                code: "bad_request".into(),
                message: "text is empty".into(),
            }),
        };
        assert_eq!(
            rejected.to_string(),
            "agent rejected the request (HTTP 400 bad_request: text is empty)"
        );
        let busy = AgentError::Busy {
            status: 503,
            retry_after: Some(Duration::from_secs(2)),
            body: None,
        };
        assert_eq!(busy.to_string(), "agent is busy (HTTP 503), retry after 2s");
    }

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
    fn accumulator_folds_a_stream() {
        let mut acc = TurnAccumulator::new();
        assert!(acc
            .apply(&AgentEvent::Status { text: "s".into() })
            .is_none());
        assert!(acc.apply(&AgentEvent::Delta { text: "a".into() }).is_none());
        assert!(acc
            .apply(&AgentEvent::File {
                path: "out/x.png".into(),
                name: "x.png".into(),
                mime: "image/png".into()
            })
            .is_none());
        assert!(acc.apply(&AgentEvent::Delta { text: "b".into() }).is_none());
        let out = acc.apply(&AgentEvent::Done { text: "ab!".into() });
        let out = match out {
            Some(Ok(o)) => o,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(out.reply, "ab!");
        assert_eq!(out.files.len(), 1);
        assert_eq!(out.confirm, None);
    }

    #[test]
    fn accumulator_done_without_text_uses_deltas() {
        let mut acc = TurnAccumulator::new();
        acc.apply(&AgentEvent::Delta { text: "he".into() });
        acc.apply(&AgentEvent::Delta { text: "llo".into() });
        let out = acc.apply(&AgentEvent::Done {
            text: String::new(),
        });
        assert_eq!(
            out.and_then(Result::ok).map(|o| o.reply),
            Some("hello".into())
        );
    }

    #[test]
    fn accumulator_confirm_and_error() {
        let mut acc = TurnAccumulator::new();
        let out = acc.apply(&AgentEvent::Confirm {
            confirm_id: "c1".into(),
            prompt: "Delete?".into(),
        });
        let out = out.and_then(Result::ok).and_then(|o| o.confirm);
        assert_eq!(out.map(|c| c.confirm_id), Some("c1".into()));
        let mut acc = TurnAccumulator::new();
        let err = acc.apply(&AgentEvent::Error {
            code: "cancelled".into(),
            message: "by user".into(),
        });
        assert!(matches!(err, Some(Err(e)) if e.is_cancelled()));
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

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn client_futures_are_send() {
        let client = AgentClient::echo();
        let req = TurnRequest {
            turn_id: "t".into(),
            sender: TurnSender {
                id: "@a:b".into(),
                display_name: None,
            },
            text: String::new(),
            attachments: vec![],
        };
        let mut on_event = |_: &AgentEvent| {};
        let fut = turn_with_retry(&client, "c", &req, RetryPolicy::AGENT, &mut on_event);
        assert_send(&fut);
        drop(fut);
        let fut = client.context("c");
        assert_send(&fut);
    }
}
