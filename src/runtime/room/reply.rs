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
use super::stream::{self, LivePart, Streamed};
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

/// Finishes a live reply (its messages posted while the turn ran) with the whole `text`,
/// cut as it was streamed ([`stream::live_limits`]): each message is edited into its part
/// where it shows something else, and the parts not posted yet follow. A reply past the
/// inline limit goes as a file: the first message becomes the file's note, the others say
/// the text is in it.
pub async fn finish_live(
    chat: &Chat,
    msg: &UserMessage,
    streamed: &Streamed,
    agent_name: &str,
    text: String,
    config: &RepliesConfig,
) -> Delivery {
    let limits = stream::live_limits(&limits_for(chat, config));
    let bytes = text.len();
    let result = match split::plan(&text, &limits) {
        ReplyPlan::Messages(parts) => finish_parts(chat, msg, &streamed.messages, parts).await,
        ReplyPlan::File => {
            let size = crate::files::human_size(u64::try_from(bytes).unwrap_or(u64::MAX));
            let mut notes = vec![texts::reply_as_file(agent_name, &size)];
            notes.resize(
                streamed.messages.len().max(1),
                texts::STREAM_PART_IN_FILE.to_owned(),
            );
            match finish_parts(chat, msg, &streamed.messages, notes).await {
                Ok(()) => send_reply_file(chat, msg, text).await,
                Err(error) => Err(error),
            }
        }
    };
    delivery(result, bytes)
}

/// Ends a live reply whose turn did not finish: what was said (as it was shown, its status
/// line dropped), then `ending` in its last message. True once the messages say so; false
/// when nothing was streamed or an edit failed.
pub async fn end_live(
    chat: &Chat,
    msg: &UserMessage,
    streamed: &Streamed,
    config: &RepliesConfig,
    ending: &str,
) -> bool {
    let posted = streamed.messages.len();
    if posted == 0 {
        return false;
    }
    let limits = limits_for(chat, config);
    let mut parts = stream::shown_parts(&streamed.text, None, &limits);
    if parts.len() > posted {
        // Said but never shown (the cap was reached): marked as cut.
        parts.truncate(posted);
        if let Some(last) = parts.last_mut() {
            last.push_str("\n\n…");
        }
    }
    parts.resize(posted, texts::STREAM_PART_UNUSED.to_owned());
    if let Some(last) = parts.last_mut() {
        *last = if last.trim().is_empty() || last == texts::STREAM_PART_UNUSED {
            ending.to_owned()
        } else {
            format!("{last}\n\n{ending}")
        };
    }
    match finish_parts(chat, msg, &streamed.messages, parts).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "cannot end a live reply");
            false
        }
    }
}

/// Brings a live reply's `posted` messages to `parts` (final edits, keyed so a retry does
/// not repeat them; a message already showing its part is left alone), posts the parts
/// beyond them, and marks the messages beyond the parts unused (the final text came out
/// shorter than what was streamed).
async fn finish_parts(
    chat: &Chat,
    msg: &UserMessage,
    posted: &[LivePart],
    parts: Vec<String>,
) -> Result<(), SurfaceError> {
    let count = parts.len();
    for (i, part) in parts.into_iter().enumerate() {
        match posted.get(i) {
            Some(live) if live.shown.as_deref() == Some(part.as_str()) => {}
            Some(live) => final_edit(chat, msg, live, i, part).await?,
            None => {
                send_part(chat, msg, i, part).await?;
            }
        }
    }
    for (i, live) in posted.iter().enumerate().skip(count) {
        let unused = texts::STREAM_PART_UNUSED.to_owned();
        if live.shown.as_deref() != Some(unused.as_str()) {
            final_edit(chat, msg, live, i, unused).await?;
        }
    }
    Ok(())
}

/// The last edit of message `part` of a live reply, keyed so a retry does not repeat it.
async fn final_edit(
    chat: &Chat,
    msg: &UserMessage,
    live: &LivePart,
    part: usize,
    markdown: String,
) -> Result<(), SurfaceError> {
    let key = match u32::try_from(part) {
        Ok(0) => AnswerPart::LiveFinal,
        n => AnswerPart::LiveFinalPart(n.unwrap_or(u32::MAX)),
    };
    let message = OutMessage {
        voice: Voice::Agent,
        markdown,
        reply_to: None,
        key: Some(SendKey::answer(&msg.id, key)),
    };
    retry(&RetryPolicy::SEND, "finishing a live reply", || {
        chat.surface.edit(&chat.id, &live.id, message.clone())
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
    if parts.len() > 1 {
        tracing::info!(parts = parts.len(), "sending a long reply in parts");
    }
    for (i, part) in parts.into_iter().enumerate() {
        send_part(chat, msg, i, part).await?;
    }
    Ok(())
}

/// Part `i` of a reply.
async fn send_part(
    chat: &Chat,
    msg: &UserMessage,
    i: usize,
    part: String,
) -> Result<MessageId, SurfaceError> {
    chat.send(part_message(msg, i, part)).await
}

/// Part `i` of a reply to `msg`: the first answers the message (mentioning the person),
/// the others follow it, each with its own key (the same whether streamed or not).
pub(super) fn part_message(msg: &UserMessage, i: usize, markdown: String) -> OutMessage {
    match u32::try_from(i) {
        Ok(0) => OutMessage::reply(
            msg.reply_to(),
            markdown,
            SendKey::answer(&msg.id, AnswerPart::Reply),
        ),
        n => OutMessage {
            voice: Voice::Agent,
            markdown,
            reply_to: None,
            key: Some(SendKey::answer(
                &msg.id,
                AnswerPart::ReplyPart(n.unwrap_or(u32::MAX)),
            )),
        },
    }
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
