//! Errors of a messenger adapter, with the one retry classification.
//!
//! Why this exists: the core reacts to a failed send or provisioning step the same way on
//! every messenger: retry (network, transient), give up with a notice (permanent), or stop
//! the process for the operator (rejected credentials). Adapters map their own errors here.

use crate::retry::{RetryKind, Retryable};

/// Boxed source error kept for its `source()` chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failed messenger operation.
#[derive(Debug, thiserror::Error)]
pub enum SurfaceError {
    /// The messenger cannot do this (a capability it lacks).
    #[error("this messenger cannot {0}")]
    Unsupported(&'static str),
    /// The chat is unknown to the adapter (the bot left it, or never was in it).
    #[error("unknown chat {0}")]
    UnknownChat(String),
    /// The messenger rejected the bot's credentials: nothing works until the operator acts;
    /// the text says what to do.
    #[error("{0}")]
    InvalidCredentials(String),
    /// Anything else, classified.
    #[error("{context}: {source}")]
    Failed {
        /// What was being done.
        context: String,
        /// Whether and how to retry.
        retry: RetryKind,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
}

impl SurfaceError {
    /// A classified failure.
    pub fn failed(
        context: impl Into<String>,
        retry: RetryKind,
        source: impl Into<BoxError>,
    ) -> Self {
        SurfaceError::Failed {
            context: context.into(),
            retry,
            source: source.into(),
        }
    }

    /// True when the credentials were rejected (the process should stop, exit code 3).
    pub fn is_invalid_credentials(&self) -> bool {
        matches!(self, SurfaceError::InvalidCredentials(_))
    }
}

impl Retryable for SurfaceError {
    fn retry_kind(&self) -> RetryKind {
        match self {
            SurfaceError::Failed { retry, .. } => *retry,
            SurfaceError::Unsupported(_)
            | SurfaceError::UnknownChat(_)
            | SurfaceError::InvalidCredentials(_) => RetryKind::Permanent,
        }
    }
}
