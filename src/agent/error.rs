//! What can go wrong when talking to an agent, and how each failure is retried.
//!
//! Why this file exists: the one place that classifies agent failures ([`crate::retry`]'s
//! network / transient / permanent) and maps HTTP answers onto them.

use std::time::Duration;

use super::types::ErrorBody;
use crate::retry::RetryKind;

/// Everything that can go wrong when talking to an agent.
///
/// Classification ([`AgentError::retry_kind`]):
///
/// | variant | kind |
/// |---|---|
/// | `InvalidConfig`, `InvalidChatId`, `Rejected` (4xx but 408/429), `TurnFailed`, `TurnTooLong`, `Unsupported` | permanent |
/// | `Unreachable`, `Io` | network |
/// | `Timeout`, `Busy` (429/503, with `Retry-After`), `Server` (5xx, 408), `Incomplete`, `Store` | transient |
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
    /// Nothing from the agent within the configured time (`agents[].timeout_secs`): no
    /// answer to a call, or no event of a turn's stream.
    #[error("agent did not answer within {0:?}")]
    Timeout(Duration),
    /// Surfaces' own storage failed (the conversations it keeps for an agent kind).
    #[error("storage failed: {0}")]
    Store(String),
    /// A turn still running past `agents[].max_turn_secs` (its stream lively all along):
    /// trying it again would only take as long.
    #[error("agent turn ran longer than {0:?}")]
    TurnTooLong(Duration),
    /// The agent's protocol has no such operation (an A2A agent asked for `!context`).
    #[error("the agent does not offer {0}")]
    Unsupported(String),
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
/// The `error` code of a turn the agent cannot do without credentials Surfaces lacks (the
/// operator must configure them; an A2A task in `auth-required`).
pub const AUTH_REQUIRED_CODE: &str = "auth_required";

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
            | AgentError::Store(_)
            | AgentError::Server { .. }
            | AgentError::Protocol(_)
            | AgentError::Incomplete => RetryKind::Transient { retry_after: None },
            AgentError::InvalidConfig(_)
            | AgentError::InvalidChatId(_)
            | AgentError::Rejected { .. }
            | AgentError::TurnFailed { .. }
            | AgentError::TurnTooLong(_)
            | AgentError::Unsupported(_) => RetryKind::Permanent,
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
}
