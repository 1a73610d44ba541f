//! The JSON request bodies of the agent platform API (`docs/agent-api.md`), as the reference
//! agent parses them.
//!
//! They exist apart from the handlers because the recorded turns are read back from them
//! too ([`super::ReferenceAgent::turns`]).

use serde::Deserialize;

use super::records::RecordedAttachment;

#[derive(Debug, Deserialize)]
pub(super) struct TurnBody {
    pub(super) turn_id: String,
    pub(super) sender: SenderBody,
    pub(super) text: String,
    #[serde(default)]
    pub(super) attachments: Vec<RecordedAttachment>,
}

#[derive(Debug, Deserialize)]
pub(super) struct SenderBody {
    pub(super) id: String,
    #[serde(default)]
    pub(super) display_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ConfirmBody {
    pub(super) approved: bool,
    // `turn_id` is only recorded (see `RecordedRequest::body`): the confirm id is the key.
}

#[derive(Debug, Deserialize)]
pub(super) struct SnapshotBody {
    pub(super) name: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct RestoreBody {
    pub(super) snapshot: String,
    #[serde(default)]
    pub(super) from_chat: Option<String>,
}
