//! What passes between a person and the core: messages in, messages and files out.
//!
//! Why this exists: the room actors, commands and the journal speak in these terms only.
//! An adapter turns its messenger's events into [`Incoming`] (in each chat's order) and
//! carries out [`OutMessage`]s and [`OutFile`]s; everything else about the wire stays in
//! the adapter.

use serde::{Deserialize, Serialize};

use super::ids::{ChatId, MessageId, PersonId, SendKey};

/// A person's message in a chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// Where it was written.
    pub chat: ChatId,
    /// Its id (keys and turn ids derive from it).
    pub id: MessageId,
    /// Who wrote it.
    pub sender: PersonId,
    /// Their display name, if the messenger gives one.
    pub display_name: Option<String>,
    /// What it says or carries.
    pub body: IncomingBody,
    /// When the messenger says it was sent (Matrix: the event's `origin_server_ts`); `None`
    /// where the adapter does not know. Read only by the reply latency metrics.
    pub origin_ts: Option<std::time::SystemTime>,
}

/// What a person's message carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IncomingBody {
    /// Text (a command or a message for the agent).
    Text(String),
    /// A file, image, audio or video.
    File(IncomingFile),
    /// An edit of an earlier message of the chat: not a new message. The core honours it
    /// only from the original's sender, and only while the original still waits in its
    /// chat's queue (see `docs/ARCHITECTURE.md`, "Edits and redactions").
    Edit {
        /// The message edited.
        of: MessageId,
        /// Its new text.
        text: String,
    },
    /// An earlier message withdrawn by its sender (Matrix: a redaction). The core honours
    /// it only from the original's sender, while the original still waits in the queue.
    Withdraw {
        /// The message withdrawn.
        of: MessageId,
    },
}

/// A file a person sent, as the message describes it (not downloaded yet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingFile {
    /// The file name.
    pub name: String,
    /// The MIME type the message announces, if any.
    pub mime: Option<String>,
    /// The size the message announces, if any.
    pub size: Option<u64>,
    /// The caption (text sent with the file), if any: then the file is a turn of its own.
    pub caption: Option<String>,
    /// Where the adapter fetches it from (opaque to the core; serializable).
    pub source: FileRef,
}

/// Where an adapter fetches a file from: opaque to the core (Matrix: the media source,
/// with its decryption keys in encrypted rooms, as JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FileRef(pub String);

/// Who speaks in a message of the bot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Voice {
    /// The agent answers (Matrix `m.text`).
    Agent,
    /// The bot itself: status, refusals, questions (Matrix `m.notice`).
    Bot,
}

/// The message a reply answers, and who wrote it (mentioned, so they are notified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    /// The message.
    pub message: MessageId,
    /// Its author.
    pub sender: PersonId,
}

/// Something the bot says in a chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutMessage {
    /// Agent or bot.
    pub voice: Voice,
    /// The text, as light markdown (the adapter renders it for its messenger).
    pub markdown: String,
    /// The message it answers, if any.
    pub reply_to: Option<ReplyTo>,
    /// Its idempotency key, if it must not be sent twice.
    pub key: Option<SendKey>,
}

impl OutMessage {
    /// The agent's answer to `to`.
    pub fn reply(to: ReplyTo, markdown: impl Into<String>, key: SendKey) -> Self {
        Self {
            voice: Voice::Agent,
            markdown: markdown.into(),
            reply_to: Some(to),
            key: Some(key),
        }
    }

    /// The bot's notice answering `to`.
    pub fn notice_to(to: ReplyTo, markdown: impl Into<String>, key: SendKey) -> Self {
        Self {
            voice: Voice::Bot,
            markdown: markdown.into(),
            reply_to: Some(to),
            key: Some(key),
        }
    }

    /// A notice of the bot on its own; `key` when a repeat must be one message.
    pub fn notice(markdown: impl Into<String>, key: Option<SendKey>) -> Self {
        Self {
            voice: Voice::Bot,
            markdown: markdown.into(),
            reply_to: None,
            key,
        }
    }
}

/// A file the bot posts (read from an agent's workspace and checked by the core).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutFile {
    /// The name people see.
    pub name: String,
    /// Its MIME type.
    pub mime: String,
    /// The content.
    pub data: Vec<u8>,
}

/// Why a file could not be fetched.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// It is bigger than the limit (announced, or found while downloading).
    #[error("the file is over the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// Anything else (the text is for the log, and shortened for people).
    #[error("{0}")]
    Failed(String),
}
