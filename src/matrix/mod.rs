//! The Matrix adapter: everything Surfaces needs from matrix-sdk 0.18, and the only place
//! that knows Matrix.
//!
//! This module exists so that the core never touches matrix-sdk: it implements the core's
//! seam ([`crate::surface`]) — [`surface::MatrixSurface`] (outbound), [`inbound`] (sync
//! responses to the core's intake), [`connector::MatrixConnector`] (lifecycle) and the
//! supervised [`sync_actor`] — on top of the delicate parts: logging in once and restoring that same device
//! afterwards ([`session`]), a sync loop that does not pause between syncs
//! ([`sync`]), the namespaced state events that make Matrix the source of
//! truth ([`state`]), every message seen in order even when a sync leaves a
//! gap ([`catch_up`] decides, [`backfill`] pages), Space and chat-room
//! provisioning ([`provision`]),
//! the core's Surface with deduplicating transaction ids ([`surface`]), media in and out
//! of rooms, encrypted or not ([`media`]).
//!
//! It holds no actor code and does not read the configuration: callers pass
//! plain parameters. Every fallible function returns [`MatrixError`], whose
//! [`MatrixError::retry_kind`] tells the caller whether to retry soon
//! (network or transient homeserver trouble), not at all (permanent), and
//! whose [`MatrixError::InvalidToken`] variant means the bot's access token
//! was rejected and the bot must stop cleanly for the operator to act.

pub mod backfill;
pub mod catch_up;
pub mod connector;
pub mod crypto;
pub mod html;
pub mod inbound;
pub mod media;
pub mod mxc;
pub mod provision;
pub mod recovery;
pub mod relations;
pub mod session;
pub mod state;
pub mod surface;
pub mod sync;
pub mod sync_actor;
pub mod undecryptable;
pub mod verification;

use std::{error::Error as StdError, path::PathBuf, time::Duration};

use matrix_sdk::{
    ruma::api::{
        client::uiaa::UiaaResponse,
        error::{ErrorKind, FromHttpResponseError, RetryAfter},
    },
    HttpError,
};

pub use provision::{create_chat_room, create_space, join_invite, leave, link_space_child};
pub use session::{connect, connect_with, LoginParams, SESSION_FILE_NAME, STORE_DIR_NAME};
pub use state::{
    room_binding, set_room_binding, space_binding, space_owner, space_parent_of,
    SurfacesRoomEventContent, SurfacesSpaceEventContent, SURFACES_ROOM_EVENT_TYPE,
    SURFACES_SPACE_EVENT_TYPE,
};
pub use sync::{
    bot_filter, initial_sync, run_sync_loop, CatchUpCounters, InitialSync, PendingResponse,
    SyncHealth, SyncLoopSettings, SyncOutcome, Unhandled,
};

/// Boxed source error kept inside [`MatrixError`] for its `source()` chain.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// HTTP status a reverse proxy uses for "the origin answered something
/// unknown"; matrix-sdk treats it as permanent, and so do we.
const HTTP_STATUS_UNKNOWN_ORIGIN_ERROR: u16 = 520;
/// HTTP status of "too many requests".
const HTTP_STATUS_TOO_MANY_REQUESTS: u16 = 429;
/// HTTP status of "unauthorized": an unknown, expired or missing token.
const HTTP_STATUS_UNAUTHORIZED: u16 = 401;

pub use crate::retry::RetryKind;

/// Errors of the Matrix glue.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    /// The homeserver rejected the access token (`M_UNKNOWN_TOKEN`,
    /// `M_MISSING_TOKEN` or HTTP 401). The bot cannot do anything until the
    /// operator fixes the credentials; the message says what to do.
    #[error("the homeserver rejected the bot's access token while {context}: {hint}")]
    InvalidToken {
        /// What was being done.
        context: String,
        /// What the operator should do about it.
        hint: String,
    },

    /// The homeserver could not be reached.
    #[error("cannot reach the homeserver while {context}: {source}")]
    Network {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// The homeserver answered with a temporary failure.
    #[error("temporary homeserver failure while {context}: {source}")]
    Transient {
        /// What was being done.
        context: String,
        /// The delay the homeserver asked for, if any.
        retry_after: Option<Duration>,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// A failure that retrying will not fix (refused request, bad data,
    /// local store failure).
    #[error("{context}: {source}")]
    Permanent {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// The parameters or the local session data are unusable; the message
    /// tells the operator what to fix.
    #[error("{0}")]
    Setup(String),

    /// Reading or writing a local file failed.
    #[error("{context} ({}): {source}", path.display())]
    Io {
        /// What was being done.
        context: String,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A room was created but a follow-up step failed: the room exists (its
    /// id is given) and the caller must repair or abandon it instead of
    /// creating another one.
    #[error("room {room_id} was created but {step} failed: {source}")]
    Incomplete {
        /// The room that exists.
        room_id: matrix_sdk::ruma::OwnedRoomId,
        /// The step that failed.
        step: &'static str,
        /// Why it failed.
        #[source]
        source: Box<MatrixError>,
    },
}

impl crate::retry::Retryable for MatrixError {
    fn retry_kind(&self) -> RetryKind {
        MatrixError::retry_kind(self)
    }
}

impl MatrixError {
    /// Whether retrying the operation may succeed, and how.
    ///
    /// [`MatrixError::InvalidToken`] is [`RetryKind::Permanent`]; check
    /// [`MatrixError::is_invalid_token`] first to stop cleanly.
    pub fn retry_kind(&self) -> RetryKind {
        match self {
            MatrixError::Network { .. } => RetryKind::Network,
            MatrixError::Transient { retry_after, .. } => RetryKind::Transient {
                retry_after: *retry_after,
            },
            MatrixError::Incomplete { source, .. } => source.retry_kind(),
            MatrixError::InvalidToken { .. }
            | MatrixError::Permanent { .. }
            | MatrixError::Setup(_)
            | MatrixError::Io { .. } => RetryKind::Permanent,
        }
    }

    /// Whether retrying may succeed (network or transient failure).
    pub fn is_retryable(&self) -> bool {
        self.retry_kind() != RetryKind::Permanent
    }

    /// Whether the homeserver rejected the access token: the caller should
    /// stop cleanly and let the operator fix the session.
    pub fn is_invalid_token(&self) -> bool {
        match self {
            MatrixError::InvalidToken { .. } => true,
            MatrixError::Incomplete { source, .. } => source.is_invalid_token(),
            _ => false,
        }
    }

    /// Classifies a matrix-sdk error. `context` says what was being done
    /// ("sending a reply", ...), for the log and the operator.
    pub fn from_sdk(context: impl Into<String>, error: matrix_sdk::Error) -> Self {
        let context = context.into();
        let class = classify_sdk(&error);
        Self::from_class(context, class, Box::new(error))
    }

    /// Classifies a matrix-sdk HTTP error (what `Client::send` and
    /// `Client::whoami` return).
    pub fn from_http(context: impl Into<String>, error: HttpError) -> Self {
        let context = context.into();
        let class = classify_http(&error);
        Self::from_class(context, class, Box::new(error))
    }

    /// A permanent error from any source.
    pub(crate) fn permanent(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        MatrixError::Permanent {
            context: context.into(),
            source: source.into(),
        }
    }

    /// An I/O error on a local path.
    pub(crate) fn io(
        context: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        MatrixError::Io {
            context: context.into(),
            path: path.into(),
            source,
        }
    }

    fn from_class(context: String, class: ErrorClass, source: BoxError) -> Self {
        match class {
            ErrorClass::InvalidToken { soft_logout } => MatrixError::InvalidToken {
                context,
                hint: invalid_token_hint(soft_logout),
            },
            ErrorClass::Network => MatrixError::Network { context, source },
            ErrorClass::Transient { retry_after } => MatrixError::Transient {
                context,
                retry_after,
                source,
            },
            ErrorClass::Permanent => MatrixError::Permanent { context, source },
        }
    }
}

/// The operator-facing advice for a rejected token.
fn invalid_token_hint(soft_logout: bool) -> String {
    let soft = if soft_logout {
        " (the homeserver reports a soft logout: the device still exists)"
    } else {
        ""
    };
    format!(
        "the session was logged out or the token expired{soft}. Stop the bot, delete \
         `<data_dir>/{SESSION_FILE_NAME}` and `<data_dir>/{STORE_DIR_NAME}/` and restart it \
         with a password configured (it will log in as a new device), or configure a fresh \
         access token"
    )
}

/// Internal classification of an sdk error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrorClass {
    InvalidToken { soft_logout: bool },
    Network,
    Transient { retry_after: Option<Duration> },
    Permanent,
}

fn classify_sdk(error: &matrix_sdk::Error) -> ErrorClass {
    match error {
        matrix_sdk::Error::Http(http) => classify_http(http),
        matrix_sdk::Error::Timeout => ErrorClass::Network,
        matrix_sdk::Error::ConcurrentRequestFailed => ErrorClass::Transient { retry_after: None },
        _ => ErrorClass::Permanent,
    }
}

fn classify_http(error: &HttpError) -> ErrorClass {
    match error {
        HttpError::Reqwest(_) => ErrorClass::Network,
        HttpError::Cached(inner) => classify_http(inner),
        // With refresh tokens off this only happens when the token is gone.
        HttpError::RefreshToken(_) => ErrorClass::InvalidToken { soft_logout: false },
        HttpError::Api(api) => match api.as_ref() {
            FromHttpResponseError::Server(UiaaResponse::MatrixError(err)) => {
                classify_api(err.status_code.as_u16(), err.error_kind())
            }
            FromHttpResponseError::Server(UiaaResponse::AuthResponse(_)) => ErrorClass::Permanent,
            _ => ErrorClass::Permanent,
        },
        _ => ErrorClass::Permanent,
    }
}

/// Classifies a homeserver error answer from its status and `errcode`.
fn classify_api(status: u16, kind: Option<&ErrorKind>) -> ErrorClass {
    match kind {
        Some(ErrorKind::UnknownToken(data)) => {
            return ErrorClass::InvalidToken {
                soft_logout: data.soft_logout,
            }
        }
        Some(ErrorKind::MissingToken) => return ErrorClass::InvalidToken { soft_logout: false },
        Some(ErrorKind::LimitExceeded(data)) => {
            let retry_after = match data.retry_after {
                Some(RetryAfter::Delay(delay)) => Some(delay),
                _ => None,
            };
            return ErrorClass::Transient { retry_after };
        }
        _ => {}
    }
    classify_status(status)
}

/// Classifies a bare HTTP status (e.g. a reverse proxy's answer).
fn classify_status(status: u16) -> ErrorClass {
    if status == HTTP_STATUS_UNAUTHORIZED {
        ErrorClass::InvalidToken { soft_logout: false }
    } else if status == HTTP_STATUS_UNKNOWN_ORIGIN_ERROR {
        ErrorClass::Permanent
    } else if status == HTTP_STATUS_TOO_MANY_REQUESTS || (500..600).contains(&status) {
        ErrorClass::Transient { retry_after: None }
    } else {
        ErrorClass::Permanent
    }
}

#[cfg(test)]
mod tests {
    use matrix_sdk::ruma::api::error::{LimitExceededErrorData, UnknownTokenErrorData};

    use super::*;

    #[test]
    fn status_classification() {
        let cases = [
            (401, ErrorClass::InvalidToken { soft_logout: false }),
            (403, ErrorClass::Permanent),
            (404, ErrorClass::Permanent),
            (429, ErrorClass::Transient { retry_after: None }),
            (500, ErrorClass::Transient { retry_after: None }),
            (502, ErrorClass::Transient { retry_after: None }),
            (520, ErrorClass::Permanent),
        ];
        for (status, expected) in cases {
            assert_eq!(classify_status(status), expected, "status {status}");
        }
    }

    #[test]
    fn errcode_classification() {
        let mut unknown = UnknownTokenErrorData::new();
        unknown.soft_logout = true;
        assert_eq!(
            classify_api(401, Some(&ErrorKind::UnknownToken(unknown))),
            ErrorClass::InvalidToken { soft_logout: true }
        );
        assert_eq!(
            classify_api(401, Some(&ErrorKind::MissingToken)),
            ErrorClass::InvalidToken { soft_logout: false }
        );
        let mut limited = LimitExceededErrorData::new();
        limited.retry_after = Some(RetryAfter::Delay(Duration::from_secs(3)));
        assert_eq!(
            classify_api(429, Some(&ErrorKind::LimitExceeded(limited))),
            ErrorClass::Transient {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            classify_api(403, Some(&ErrorKind::Forbidden)),
            ErrorClass::Permanent
        );
        assert_eq!(
            classify_api(503, None),
            ErrorClass::Transient { retry_after: None }
        );
    }

    #[test]
    fn retry_kinds() {
        let invalid = MatrixError::InvalidToken {
            context: "syncing".into(),
            hint: invalid_token_hint(false),
        };
        assert!(invalid.is_invalid_token());
        assert_eq!(invalid.retry_kind(), RetryKind::Permanent);
        assert!(invalid.to_string().contains(SESSION_FILE_NAME));

        let network = MatrixError::Network {
            context: "syncing".into(),
            source: "refused".into(),
        };
        assert!(network.is_retryable());
        assert!(!network.is_invalid_token());

        let incomplete = MatrixError::Incomplete {
            room_id: matrix_sdk::ruma::owned_room_id!("!a:b.c"),
            step: "linking",
            source: Box::new(network),
        };
        assert_eq!(incomplete.retry_kind(), RetryKind::Network);
        assert_eq!(
            MatrixError::Setup("x".into()).retry_kind(),
            RetryKind::Permanent
        );
    }
}
