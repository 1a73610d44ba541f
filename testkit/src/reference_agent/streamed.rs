//! The streamed-reply scenario: a turn whose text is `ref:stream <words>` is answered word by
//! word, one `delta` per word, with a `status` line (`step <n>`) before every
//! [`STATUS_EVERY`]th word, so tests can watch a reply grow (with
//! [`super::ReferenceAgent::set_interval`] setting the pace).

use serde_json::json;

use super::sse::Ev;

/// The text that asks for a streamed reply, followed by its number of words.
pub const STREAM_COMMAND: &str = "ref:stream ";
/// A `status` event comes before every this-many words.
pub const STATUS_EVERY: usize = 5;
/// Most words a streamed reply has.
const MAX_WORDS: usize = 10_000;

/// The number of words asked for, if `text` asks for a streamed reply.
pub fn requested(text: &str) -> Option<usize> {
    let n: usize = text.strip_prefix(STREAM_COMMAND)?.trim().parse().ok()?;
    Some(n.clamp(1, MAX_WORDS))
}

/// The reply of `words` words: `word-1 word-2 ...` (what `done` carries).
pub fn streamed_reply(words: usize) -> String {
    (1..=words)
        .map(|n| format!("word-{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The status line shown before word `n` (from 1).
pub fn status_before(n: usize) -> String {
    format!("step {}", n.div_ceil(STATUS_EVERY))
}

/// The events of the reply: statuses, one delta per word, then `done`.
pub(super) fn events(words: usize) -> Vec<Ev> {
    let mut events = Vec::new();
    for n in 1..=words {
        if n % STATUS_EVERY == 1 {
            events.push(Ev::new("status", json!({ "text": status_before(n) })));
        }
        let text = if n == 1 {
            "word-1".to_owned()
        } else {
            format!(" word-{n}")
        };
        events.push(Ev::new("delta", json!({ "text": text })));
    }
    events.push(Ev::new("done", json!({ "text": streamed_reply(words) })));
    events
}
