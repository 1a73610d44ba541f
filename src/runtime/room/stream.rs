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
//! A reply that outgrows one message continues live in a new one, cut where the final reply
//! is cut (between paragraphs and code blocks, [`split`]), so the messages already complete
//! rarely change again; each stays within `replies.max_message_bytes`, an open code block
//! closed in what is shown. The cap holds: each pacing step edits (or, when the text spilled
//! over, finishes one message and posts the next), and there are at most
//! `streaming.max_edits` steps per reply. Past `replies.max_inline_bytes` (where the final
//! reply goes as a file) the text shown stops growing. Every message posted is recorded in
//! the journal, so a turn resumed after a crash edits the same messages.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::latency::ReplyClock;
use super::pace::{Pacer, Step};
use super::split::{self, ReplyLimits};
use super::{Chat, UserMessage};
use crate::config::StreamingConfig;
use crate::journal::Journal;
use crate::runtime::agent_conn::Live as Said;
use crate::surface::{MessageId, OutMessage, Voice};
use crate::texts;

/// Most room kept in a live message for the status line and the closing fence (a quarter
/// of a small message).
const SHOWN_MARGIN_BYTES: usize = 512;
/// Longest status line shown, in characters (an agent's status is a short progress line).
const MAX_STATUS_CHARS: usize = 160;

/// A message of a live reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LivePart {
    /// The message.
    pub id: MessageId,
    /// What it shows (markdown), when known (`None`: posted by an earlier run).
    pub shown: Option<String>,
}

/// What a live reply left behind once the turn ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Streamed {
    /// The messages posted, in order (empty when the agent said nothing before the end).
    pub messages: Vec<LivePart>,
    /// The text of the deltas received (after the last restart of the turn).
    pub text: String,
}

/// A reply being streamed; the turn feeds it through [`LiveReply::sender`].
pub struct LiveReply {
    tx: mpsc::UnboundedSender<Said>,
    task: JoinHandle<Streamed>,
}

impl LiveReply {
    /// Starts streaming the answer to `msg` in `chat`: in `existing` (the messages an
    /// earlier attempt posted, from the journal), else in new messages, each recorded in
    /// `journal` once posted; the first post is the first words on `clock`, if measured.
    pub fn start(
        chat: Chat,
        msg: &UserMessage,
        config: &StreamingConfig,
        limits: ReplyLimits,
        journal: Journal,
        existing: Vec<MessageId>,
        clock: Option<Arc<ReplyClock>>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut pacer = Pacer::new(config);
        if !existing.is_empty() {
            pacer.posted(Instant::now());
        }
        let messages = existing
            .into_iter()
            .map(|id| LivePart { id, shown: None })
            .collect();
        let live = Live {
            chat,
            msg: msg.clone(),
            limits,
            journal,
            clock,
        };
        // In the message's span: the live reply's log lines carry its `msg` too.
        let task = tokio::spawn(live.run(pacer, messages, rx).in_current_span());
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
    limits: ReplyLimits,
    journal: Journal,
    /// Told when the first message is posted (the person sees the first words).
    clock: Option<Arc<ReplyClock>>,
}

impl Live {
    /// Records message `part` of the reply with the message's journal entry (a resumed turn
    /// edits it).
    async fn record(&self, part: usize, reply: &MessageId) {
        if let Err(error) = self
            .journal
            .record_live_reply(self.msg.id.as_str(), part, reply.as_str())
            .await
        {
            tracing::warn!(%error, part, "cannot record a live reply's message in the journal; \
                a restart mid-turn relies on the messenger's deduplication of the post");
        }
    }

    /// Brings the messages up to `parts`: edits those that show something else, posts the
    /// missing ones (the first answers the question). Stops at the first post that fails.
    async fn show(&self, messages: &mut Vec<LivePart>, parts: Vec<String>) {
        for (i, part) in parts.into_iter().enumerate() {
            if let Some(posted) = messages.get_mut(i) {
                if posted.shown.as_deref() == Some(part.as_str()) {
                    continue;
                }
                // Best effort: a lost intermediate edit is made good by the next one.
                match self
                    .chat
                    .surface
                    .edit(&self.chat.id, &posted.id, edit_of(part.clone()))
                    .await
                {
                    Ok(_) => posted.shown = Some(part),
                    Err(error) => tracing::debug!(%error, part = i, "cannot edit a live reply"),
                }
                continue;
            }
            let out = super::reply::part_message(&self.msg, i, part.clone());
            match self.chat.send(out).await {
                Ok(id) => {
                    if let Some(clock) = &self.clock {
                        clock.first_words();
                    }
                    self.record(i, &id).await;
                    messages.push(LivePart {
                        id,
                        shown: Some(part),
                    });
                }
                // What is missing is posted at the end instead.
                Err(error) => {
                    tracing::warn!(%error, part = i, "cannot post a live reply's message");
                    return;
                }
            }
        }
    }

    async fn run(
        self,
        mut pacer: Pacer,
        mut messages: Vec<LivePart>,
        mut rx: mpsc::UnboundedReceiver<Said>,
    ) -> Streamed {
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
                    self.show(&mut messages, visible(&shown, &self.limits))
                        .await;
                    pacer.posted(Instant::now());
                    shown.changed = false;
                    if messages.is_empty() {
                        // The whole reply is posted at the end instead.
                        break;
                    }
                    continue;
                }
                Step::Edit => {
                    self.show(&mut messages, visible(&shown, &self.limits))
                        .await;
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
            messages,
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

/// Bytes of reply text per live message: one message, less room for the status line and a
/// closing fence. A streamed reply's final text is cut at this size too.
pub fn live_part_bytes(max_message_bytes: usize) -> usize {
    max_message_bytes
        .saturating_sub(margin_bytes(max_message_bytes))
        .max(split::MIN_PART_BYTES)
}

/// Room kept in a live message for its status line and closing fence.
fn margin_bytes(max_message_bytes: usize) -> usize {
    (max_message_bytes / 4).min(SHOWN_MARGIN_BYTES)
}

/// The limits a streamed reply's final text is delivered under: the messages it streamed in
/// keep their cut.
pub fn live_limits(limits: &ReplyLimits) -> ReplyLimits {
    ReplyLimits {
        max_message_bytes: live_part_bytes(limits.max_message_bytes),
        ..*limits
    }
}

/// What a person sees mid-stream, message by message: the text so far cut into messages as
/// the final reply will be (at most `replies.max_inline_bytes` of it and
/// [`split::MAX_REPLY_PARTS`] messages; " …" where it stops), an open code block closed,
/// the status as the last line. Pure.
pub fn shown_parts(text: &str, status: Option<&str>, limits: &ReplyLimits) -> Vec<String> {
    let mut cut = text.len().min(limits.max_inline_bytes);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut parts = split::split(
        text[..cut].trim_end(),
        live_part_bytes(limits.max_message_bytes),
    );
    let more = cut < text.len() || parts.len() > split::MAX_REPLY_PARTS;
    parts.truncate(split::MAX_REPLY_PARTS);
    let Some(last) = parts.last_mut() else {
        return parts;
    };
    if more {
        last.push_str(" …");
    }
    if let Some(fence) = split::unclosed_fence(last) {
        last.push('\n');
        last.push_str(&fence);
    }
    if let Some(status) = status.map(str::trim).filter(|s| !s.is_empty()) {
        // Escaping may double it: half the margin, less the line's markup.
        let budget = (margin_bytes(limits.max_message_bytes) / 2).saturating_sub(16);
        let mut short = String::new();
        for c in status.chars().take(MAX_STATUS_CHARS) {
            if short.len() + c.len_utf8() > budget {
                break;
            }
            short.push(c);
        }
        if short.len() < status.len() {
            short.push('…');
        }
        last.push_str("\n\n");
        last.push_str(&texts::stream_status(&short));
    }
    parts
}

fn visible(shown: &Shown, limits: &ReplyLimits) -> Vec<String> {
    shown_parts(&shown.text, shown.status.as_deref(), limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: ReplyLimits = ReplyLimits {
        max_message_bytes: 16_384,
        max_inline_bytes: 65_536,
    };

    #[test]
    fn what_is_shown_mid_stream() {
        // (name, text, status, shown)
        let table = [
            ("text only", "Hello wor", None, "Hello wor"),
            (
                "with a status",
                "Hello",
                Some("searching"),
                "Hello\n\n_… searching_",
            ),
            ("a blank status is not shown", "Hello", Some("  "), "Hello"),
            (
                "an open code block is closed",
                "See:\n```rust\nfn main() {",
                None,
                "See:\n```rust\nfn main() {\n```",
            ),
            (
                "a status cannot inject markdown",
                "Hi",
                Some("*bold* [x](y)"),
                "Hi\n\n_… \\*bold\\* \\[x\\](y)_",
            ),
        ];
        for (name, text, status, expected) in table {
            assert_eq!(shown_parts(text, status, &ROOMY), [expected], "{name}");
        }
    }

    #[test]
    fn a_long_status_is_shortened_to_fit_the_message() {
        let small = ReplyLimits {
            max_message_bytes: 400,
            max_inline_bytes: 4_000,
        };
        let long = "word ".repeat(500);
        // (text, status, limits, most bytes shown in the last message)
        let table = [
            ("Hi", "x".repeat(1_000), ROOMY, 200),
            ("Hi", "*".repeat(1_000), ROOMY, 400),
            (long.as_str(), "é".repeat(1_000), small, 400),
            (long.as_str(), "*".repeat(1_000), small, 400),
        ];
        for (text, status, limits, most) in table {
            let shown = shown_parts(text, Some(&status), &limits);
            let last = shown.last().map_or("", String::as_str);
            assert!(last.len() <= most, "{} > {most}: {last}", last.len());
            assert!(last.len() <= limits.max_message_bytes);
            assert!(last.ends_with("…_"), "{last}");
        }
    }

    #[test]
    fn a_stream_past_one_message_continues_in_the_next_within_the_limit() {
        let limits = ReplyLimits {
            max_message_bytes: 1_024,
            max_inline_bytes: 8_192,
        };
        let paragraph = "word ".repeat(60); // 300 bytes
        let text = [paragraph.as_str(); 8].join("\n\n");
        let shown = shown_parts(&text, Some("still writing"), &limits);
        assert!(shown.len() >= 3, "{}", shown.len());
        for part in &shown {
            assert!(part.len() <= 1_024, "{}", part.len());
        }
        assert!(shown
            .last()
            .is_some_and(|p| p.ends_with("_… still writing_")));
        assert!(shown[..shown.len() - 1]
            .iter()
            .all(|p| !p.contains("still writing")));
        // The complete messages are cut where the final reply is: they do not change as
        // the text grows.
        let longer = format!("{text}\n\nmore");
        let grown = shown_parts(&longer, None, &limits);
        assert_eq!(grown[..shown.len() - 1], shown[..shown.len() - 1]);
        let last = split::plan(&longer, &live_limits(&limits));
        assert_eq!(last, split::ReplyPlan::Messages(grown));
    }

    #[test]
    fn a_stream_past_the_inline_limit_stops_growing_at_a_character_boundary() {
        let limits = ReplyLimits {
            max_message_bytes: 1_024,
            max_inline_bytes: 2_048,
        };
        let text = "é".repeat(3_000); // 6000 bytes
        let shown = shown_parts(&text, None, &limits);
        let total: usize = shown.iter().map(String::len).sum();
        assert!(total <= 2_048 + 8, "{total}");
        assert!(shown.iter().all(|p| p.len() <= 1_024));
        assert!(shown.last().is_some_and(|p| p.ends_with(" …")));
    }

    #[test]
    fn the_live_part_leaves_room_for_the_status() {
        // (max message bytes, part bytes)
        let table = [(16_384, 15_872), (1_024, 768), (64, 64)];
        for (max, part) in table {
            assert_eq!(live_part_bytes(max), part, "{max}");
        }
    }
}
