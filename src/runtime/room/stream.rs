//! A reply shown as the agent writes it: posted at its first words, edited as more arrives.
//!
//! Why this exists: a turn takes seconds to minutes, and a typing notice followed by a wall of
//! text is a poor wait. While the turn runs, the agent's `delta`s and `status`es reach a
//! [`LiveReply`] task, which posts the first text at once as the reply (it mentions the
//! person, who is notified once) and edits it on the [`Pacer`]'s ramp, capped; the current
//! `status` shows as an italic last line. Edits do not notify (Matrix: `m.replace`, which
//! clients and push rules treat as such). When the turn ends, the caller finalises the same
//! message with the whole reply ([`super::reply::finish_live`]), which drops the status line.
//!
//! What is shown mid-stream is kept to one message (`replies.max_message_bytes`): past it the
//! text shown stops growing (the final reply is split as usual). An unclosed code block is
//! closed in what is shown, so the rendering never breaks.

use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::pace::{Pacer, Step};
use super::split::{self, ReplyLimits};
use super::{Chat, UserMessage};
use crate::config::StreamingConfig;
use crate::journal::Journal;
use crate::runtime::agent_conn::Live as Said;
use crate::surface::{AnswerPart, MessageId, OutMessage, SendKey, Voice};
use crate::texts;

/// Room kept in a shown message for the status line and the closing fence.
const SHOWN_MARGIN_BYTES: usize = 512;

/// What a live reply left behind once the turn ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Streamed {
    /// The message posted, if the agent said anything before the end.
    pub message: Option<MessageId>,
    /// The text of the deltas received (after the last restart of the turn).
    pub text: String,
    /// Edits made (the final one not counted).
    pub edits: u32,
}

/// A reply being streamed; the turn feeds it through [`LiveReply::sender`].
pub struct LiveReply {
    tx: mpsc::UnboundedSender<Said>,
    task: JoinHandle<Streamed>,
}

impl LiveReply {
    /// Starts streaming the answer to `msg` in `chat`: in `existing` (the live reply an
    /// earlier attempt posted, from the journal), else in a new message, recorded in
    /// `journal` once posted.
    pub fn start(
        chat: Chat,
        msg: &UserMessage,
        config: &StreamingConfig,
        limits: ReplyLimits,
        journal: Journal,
        existing: Option<MessageId>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut pacer = Pacer::new(config);
        if existing.is_some() {
            pacer.posted(Instant::now());
        }
        let live = Live {
            chat,
            msg: msg.clone(),
            max_bytes: limits.max_message_bytes,
            journal,
        };
        let task = tokio::spawn(live.run(pacer, existing, rx));
        Self { tx, task }
    }

    /// Where the turn sends what it hears.
    pub fn sender(&self) -> mpsc::UnboundedSender<Said> {
        self.tx.clone()
    }

    /// The turn ended: stops editing and returns what was shown.
    pub async fn finish(self) -> Streamed {
        drop(self.tx);
        match self.task.await {
            Ok(streamed) => streamed,
            Err(error) => {
                tracing::error!(%error, "the live reply task failed; the reply is posted whole");
                Streamed::default()
            }
        }
    }
}

/// The stream's state, apart from its effects.
struct Shown {
    text: String,
    status: Option<String>,
    /// Something arrived that is not shown yet.
    changed: bool,
}

/// What the live reply task works with.
struct Live {
    chat: Chat,
    msg: UserMessage,
    max_bytes: usize,
    journal: Journal,
}

impl Live {
    /// Records the posted reply with the message's journal entry (a resumed turn edits it).
    async fn record(&self, reply: &MessageId) {
        if let Err(error) = self
            .journal
            .record_live_reply(self.msg.id.as_str(), reply.as_str())
            .await
        {
            tracing::warn!(%error, "cannot record the live reply in the journal; a restart \
                mid-turn relies on the messenger's deduplication of the post");
        }
    }

    async fn run(
        self,
        mut pacer: Pacer,
        mut message: Option<MessageId>,
        mut rx: mpsc::UnboundedReceiver<Said>,
    ) -> Streamed {
        let (chat, msg, max_bytes) = (&self.chat, &self.msg, self.max_bytes);
        let mut shown = Shown {
            text: String::new(),
            status: None,
            changed: false,
        };
        let mut open = true;
        while open {
            let step = pacer.step(Instant::now(), shown.changed && !shown.text.is_empty());
            match step {
                Step::Post => {
                    let out = OutMessage::reply(
                        msg.reply_to(),
                        visible(&shown, max_bytes),
                        SendKey::answer(&msg.id, AnswerPart::Reply),
                    );
                    match chat.send(out).await {
                        Ok(id) => {
                            self.record(&id).await;
                            message = Some(id);
                        }
                        // The whole reply is posted at the end instead.
                        Err(error) => {
                            tracing::warn!(%error, "cannot post the start of a live reply")
                        }
                    }
                    pacer.posted(Instant::now());
                    shown.changed = false;
                    if message.is_none() {
                        break;
                    }
                    continue;
                }
                Step::Edit => {
                    if let Some(id) = &message {
                        let out = edit_of(visible(&shown, max_bytes));
                        // Best effort: a lost intermediate edit is made good by the next one.
                        if let Err(error) = chat.surface.edit(&chat.id, id, out).await {
                            tracing::debug!(%error, "cannot edit a live reply");
                        }
                    }
                    pacer.edited(Instant::now());
                    shown.changed = false;
                    continue;
                }
                Step::WaitUntil(at) => {
                    tokio::select! {
                        signal = rx.recv() => open = apply(&mut shown, signal),
                        () = tokio::time::sleep_until(at.into()) => {}
                    }
                }
                Step::Idle => open = apply(&mut shown, rx.recv().await),
            }
            if !shown.text.is_empty() {
                pacer.text_arrived(Instant::now());
            }
        }
        Streamed {
            edits: pacer.edits(),
            message,
            text: shown.text,
        }
    }
}

/// Applies what the turn heard; false once the turn ended.
fn apply(shown: &mut Shown, signal: Option<Said>) -> bool {
    match signal {
        Some(Said::Delta(text)) => {
            shown.text.push_str(&text);
            shown.changed |= !text.is_empty();
        }
        Some(Said::Status(status)) => {
            shown.changed |= shown.status.as_deref() != Some(status.as_str());
            shown.status = Some(status);
        }
        Some(Said::Restart) => {
            // The turn is tried again: the agent replays it from the start.
            shown.text.clear();
            shown.status = None;
        }
        None => return false,
    }
    true
}

/// An intermediate edit: the agent's voice, no key of its own (each is a new event).
fn edit_of(markdown: String) -> OutMessage {
    OutMessage {
        voice: Voice::Agent,
        markdown,
        reply_to: None,
        key: None,
    }
}

/// What a person sees mid-stream: the text so far (cut to one message, an open code block
/// closed) and the status as its last line. Pure.
pub fn visible_text(text: &str, status: Option<&str>, max_bytes: usize) -> String {
    let budget = max_bytes.saturating_sub(SHOWN_MARGIN_BYTES).max(1);
    let mut cut = text.len().min(budget);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = text[..cut].trim_end().to_owned();
    if cut < text.len() {
        out.push_str(" …");
    }
    if let Some(fence) = split::unclosed_fence(&out) {
        out.push('\n');
        out.push_str(&fence);
    }
    if let Some(status) = status.filter(|s| !s.trim().is_empty()) {
        out.push_str("\n\n");
        out.push_str(&texts::stream_status(status));
    }
    out
}

fn visible(shown: &Shown, max_bytes: usize) -> String {
    visible_text(&shown.text, shown.status.as_deref(), max_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_shown_mid_stream() {
        // (name, text, status, max bytes, shown)
        let table = [
            ("text only", "Hello wor", None, 16_384, "Hello wor"),
            (
                "with a status",
                "Hello",
                Some("searching"),
                16_384,
                "Hello\n\n_… searching_",
            ),
            (
                "a blank status is not shown",
                "Hello",
                Some("  "),
                16_384,
                "Hello",
            ),
            (
                "an open code block is closed",
                "See:\n```rust\nfn main() {",
                None,
                16_384,
                "See:\n```rust\nfn main() {\n```",
            ),
            (
                "a status cannot inject markdown",
                "Hi",
                Some("*bold* [x](y)"),
                16_384,
                "Hi\n\n_… \\*bold\\* \\[x\\](y)_",
            ),
        ];
        for (name, text, status, max, expected) in table {
            assert_eq!(visible_text(text, status, max), expected, "{name}");
        }
    }

    #[test]
    fn a_long_stream_is_cut_to_one_message_at_a_character_boundary() {
        let text = "é".repeat(2_000); // 4000 bytes
        let shown = visible_text(&text, None, 1_024);
        assert!(shown.len() <= 1_024, "{}", shown.len());
        assert!(shown.ends_with(" …"));
    }
}
