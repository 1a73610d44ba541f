//! What the reference agent received, as tests read it back: every request
//! ([`RecordedRequest`], tagged with its [`Endpoint`]) and every turn request
//! ([`RecordedTurn`]).
//!
//! They exist so that tests can assert on what Surfaces sent, not only on what users saw.

use serde::Deserialize;
use serde_json::Value;

/// Which endpoint of the contract a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Health,
    Turn,
    Confirm,
    Cancel,
    Context,
    Snapshot,
    Restore,
    Delete,
    /// Nothing of the contract (answered 404).
    Unknown,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub endpoint: Endpoint,
    pub method: String,
    /// Path as sent (still percent-encoded).
    pub raw_path: String,
    /// Decoded `{chat}`, for chat endpoints.
    pub chat: Option<String>,
    /// The `Authorization` header, verbatim.
    pub authorization: Option<String>,
    /// The `Accept` header.
    pub accept: Option<String>,
    /// The JSON body (`Null` when absent or not JSON).
    pub body: Value,
}

/// An attachment of a recorded turn.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordedAttachment {
    pub path: String,
    pub name: String,
    pub mime: String,
    pub size: u64,
}

/// A turn request as received (retries included: one entry per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedTurn {
    pub chat: String,
    pub turn_id: String,
    pub text: String,
    pub sender_id: String,
    pub sender_display_name: Option<String>,
    pub attachments: Vec<RecordedAttachment>,
    pub authorization: Option<String>,
}
