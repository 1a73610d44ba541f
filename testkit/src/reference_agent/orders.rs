//! What a test orders the reference agent to do with the next turns, beyond a plain reply:
//! transmission faults ([`Fault`]) and scripted turns ([`Script`]).
//!
//! They exist so that tests can show how Surfaces copes with the parts of the contract a
//! well-behaved agent rarely shows.

/// A transmission fault for the next turn request. The turn is still executed and stored
/// (except for [`Fault::Status`], which answers before anything runs), so a retry replays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with an `{"error": ...}` body, with `Retry-After: <secs>` if given.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// `200` with an HTML body (not an event stream).
    NotSse,
    /// `200` event stream whose first event's data is not JSON.
    InvalidJson,
    /// `200` event stream with bytes that are not UTF-8.
    InvalidUtf8,
    /// The turn's events without the final `done` / `confirm` / `error`, then the end.
    NoDone,
}

/// What the next executed turn does instead of a plain reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// End the turn with a `confirm` event asking `prompt`.
    Confirm { prompt: String },
    /// Post a file (a `file` event) before `done`.
    File {
        path: String,
        name: String,
        mime: String,
    },
    /// Fail the turn with an `error` event.
    Error { code: String, message: String },
}
