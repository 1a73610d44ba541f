//! Sending an agent's reply, whatever its length.
//!
//! Why this exists: a reply is the agent speaking, and the agent decides its length, not the
//! messenger. This carries out [`split::plan`]: a reply in one message, in several (each with a
//! fixed key of its own, so a retry or a resumed message never posts a part twice), or as a
//! `reply.md` file with a short message. What the messenger refuses for good is reported to the
//! caller, which tells the person and marks the message done instead of retrying forever.
//! A reply streamed live ([`super::stream`]) is finished here too: its message is edited into
//! the first part, and the rest follows the same way.

use super::split::{self, ReplyLimits, ReplyPlan};
use super::{Chat, UserMessage};
use crate::config::RepliesConfig;
use crate::retry::{retry, RetryKind, RetryPolicy, Retryable};
use crate::surface::{AnswerPart, MessageId, OutFile, OutMessage, SendKey, SurfaceError, Voice};
use crate::texts;

/// MIME type of the `reply.md` file.
pub const REPLY_FILE_MIME: &str = "text/markdown";

/// How sending a reply went.
#[derive(Debug)]
pub enum Delivery {
    /// The person has all of it.
    Sent,
    /// The messenger refused it for good (too large, forbidden): retrying cannot help.
    Refused(SurfaceError),
    /// It could not be sent now (retries exhausted): the message stays pending.
    Failed(SurfaceError),
}

/// The limits for `chat`: the configured ones, within what its messenger accepts.
pub fn limits_for(chat: &Chat, config: &RepliesConfig) -> ReplyLimits {
    let mut limits = config.limits();
    if let Some(max) = chat.surface.capabilities().max_message_bytes {
        limits.max_message_bytes = limits.max_message_bytes.min(max);
        limits.max_inline_bytes = limits.max_inline_bytes.max(limits.max_message_bytes);
    }
    limits
}

/// The text of a turn cut at `replies.max_turn_bytes`: an open code block closed, and a note.
pub fn with_cut_note(mut text: String, config: &RepliesConfig) -> String {
    if let Some(fence) = split::unclosed_fence(&text) {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&fence);
    }
    let limit = crate::files::human_size(u64::try_from(config.max_turn_bytes).unwrap_or(u64::MAX));
    format!("{}\n\n{}", text.trim_end(), texts::reply_cut(&limit))
}

/// Sends `text` as `agent_name`'s answer to `msg`.
pub async fn send_reply(
    chat: &Chat,
    msg: &UserMessage,
    agent_name: &str,
    text: String,
    config: &RepliesConfig,
) -> Delivery {
    let limits = limits_for(chat, config);
    let bytes = text.len();
    let result = match split::plan(&text, &limits) {
        ReplyPlan::Messages(parts) => send_parts(chat, msg, parts).await,
        ReplyPlan::File => send_file(chat, msg, agent_name, text).await,
    };
    delivery(result, bytes)
}

fn delivery(result: Result<(), SurfaceError>, bytes: usize) -> Delivery {
    match result {
        Ok(()) => Delivery::Sent,
        Err(error) if error.retry_kind() == RetryKind::Permanent => {
            tracing::error!(%error, bytes, "the chat refused the reply for good");
            Delivery::Refused(error)
        }
        Err(error) => Delivery::Failed(error),
    }
}

/// Finishes a live reply (posted as `live` while the turn ran) with the whole `text`: the
/// posted message is edited into the reply's first part (or the note of a reply sent as a
/// file), and the rest follows as [`send_reply`] would send it.
pub async fn finish_live(
    chat: &Chat,
    msg: &UserMessage,
    live: &MessageId,
    agent_name: &str,
    text: String,
    config: &RepliesConfig,
) -> Delivery {
    let limits = limits_for(chat, config);
    let bytes = text.len();
    let result = match split::plan(&text, &limits) {
        ReplyPlan::Messages(mut parts) => {
            let first = if parts.is_empty() {
                String::new()
            } else {
                parts.remove(0)
            };
            match final_edit(chat, msg, live, first).await {
                Ok(()) => send_parts_from(chat, msg, 1, parts).await,
                Err(error) => Err(error),
            }
        }
        ReplyPlan::File => {
            let size = crate::files::human_size(u64::try_from(bytes).unwrap_or(u64::MAX));
            match final_edit(chat, msg, live, texts::reply_as_file(agent_name, &size)).await {
                Ok(()) => send_reply_file(chat, msg, text).await,
                Err(error) => Err(error),
            }
        }
    };
    delivery(result, bytes)
}

/// Ends a live reply whose turn did not finish: what was said (within one message), then
/// `ending`. True once the message says so; false when nothing was streamed or the edit failed.
pub async fn end_live(
    chat: &Chat,
    msg: &UserMessage,
    streamed: &super::stream::Streamed,
    config: &RepliesConfig,
    ending: &str,
) -> bool {
    let Some(live) = &streamed.message else {
        return false;
    };
    let max_bytes = limits_for(chat, config).max_message_bytes;
    let text = super::stream::visible_text(&streamed.text, None, max_bytes);
    let text = if text.trim().is_empty() {
        ending.to_owned()
    } else {
        format!("{text}\n\n{ending}")
    };
    match final_edit(chat, msg, live, text).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "cannot end a live reply");
            false
        }
    }
}

/// The last edit of a live reply, keyed so a retry does not repeat it.
async fn final_edit(
    chat: &Chat,
    msg: &UserMessage,
    live: &MessageId,
    markdown: String,
) -> Result<(), SurfaceError> {
    let message = OutMessage {
        voice: Voice::Agent,
        markdown,
        reply_to: None,
        key: Some(SendKey::answer(&msg.id, AnswerPart::LiveFinal)),
    };
    retry(&RetryPolicy::SEND, "finishing a live reply", || {
        chat.surface.edit(&chat.id, live, message.clone())
    })
    .await
    .map(|_| ())
}

/// The parts in order: the first answers the message, the others follow it.
async fn send_parts(
    chat: &Chat,
    msg: &UserMessage,
    parts: Vec<String>,
) -> Result<(), SurfaceError> {
    send_parts_from(chat, msg, 0, parts).await
}

/// Parts `from`, `from + 1`, ... of a reply (part 0 answers the message).
async fn send_parts_from(
    chat: &Chat,
    msg: &UserMessage,
    from: usize,
    parts: Vec<String>,
) -> Result<(), SurfaceError> {
    let count = parts.len() + from;
    if count > 1 {
        tracing::info!(parts = count, "sending a long reply in parts");
    }
    for (i, part) in parts.into_iter().enumerate() {
        let i = i + from;
        let message = match u32::try_from(i) {
            Ok(0) => OutMessage::reply(
                msg.reply_to(),
                part,
                SendKey::answer(&msg.id, AnswerPart::Reply),
            ),
            n => OutMessage {
                voice: Voice::Agent,
                markdown: part,
                reply_to: None,
                key: Some(SendKey::answer(
                    &msg.id,
                    AnswerPart::ReplyPart(n.unwrap_or(u32::MAX)),
                )),
            },
        };
        chat.send(message).await?;
    }
    Ok(())
}

/// A short message answering `msg`, then the whole reply as `reply.md`.
async fn send_file(
    chat: &Chat,
    msg: &UserMessage,
    agent_name: &str,
    text: String,
) -> Result<(), SurfaceError> {
    let size = crate::files::human_size(u64::try_from(text.len()).unwrap_or(u64::MAX));
    tracing::info!(bytes = text.len(), "sending a long reply as a file");
    let note = OutMessage::reply(
        msg.reply_to(),
        texts::reply_as_file(agent_name, &size),
        SendKey::answer(&msg.id, AnswerPart::Reply),
    );
    chat.send(note).await?;
    send_reply_file(chat, msg, text).await
}

/// The whole reply as `reply.md`.
async fn send_reply_file(chat: &Chat, msg: &UserMessage, text: String) -> Result<(), SurfaceError> {
    let file = OutFile {
        name: texts::REPLY_FILE_NAME.to_owned(),
        mime: REPLY_FILE_MIME.to_owned(),
        data: text.into_bytes(),
    };
    let key = SendKey::answer(&msg.id, AnswerPart::ReplyFile);
    retry(&RetryPolicy::SEND, "sending a reply as a file", || {
        chat.surface.send_file(&chat.id, file.clone(), key.clone())
    })
    .await
    .map(|_| ())
}
