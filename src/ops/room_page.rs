//! The room page for people: a [`RoomStory`] as HTML (`/status/rooms/<room id>`).
//!
//! Why this file exists: the status page's rooms table links each room here, so the person
//! on call goes from "this room is failing" to "this message failed, this way, and the actor
//! restarted after this panic" in one click. It uses the status page's frame, style sheet
//! and escaping ([`super::html`]) under the same strict CSP (no inline code; no script at
//! all: nothing here is sorted or refreshed). Paths to the shared assets are relative to the
//! page (`../../status.css`), so the page works behind a path prefix too.

use std::fmt::Write as _;

use super::html::{
    empty_row, error_cell, escape, header, num_cell, opt_text, row_start, time_cell, unix_ms_text,
};
use super::room_story::RoomStory;
use crate::runtime::room::story::Outcome;

/// The status page, from a room page.
const STATUS_HREF: &str = "../../status";
/// The style sheet, from a room page.
const STYLE_HREF: &str = "../../status.css";

/// `id` as one URL path segment: every byte but the unreserved ones percent-encoded (room
/// ids hold `!`, `:`, and whatever else a messenger puts in them).
pub fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The row state (status page colours) of a message's outcome.
fn outcome_state(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Failed | Outcome::GivenUp => "failed",
        Outcome::Interrupted => "backing-off",
        Outcome::InProgress => "starting",
        Outcome::Replied | Outcome::Command | Outcome::Refused | Outcome::Cancelled => "running",
    }
}

fn ms_cell(ms: Option<u64>) -> String {
    match ms {
        Some(ms) => num_cell(ms),
        None => "<td class=\"num\"><span class=\"none\">–</span></td>".to_owned(),
    }
}

/// The page.
pub fn render(story: &RoomStory) -> String {
    let now = story.generated_at_ms;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Room {} — Surfaces</title>\
         <link rel=\"stylesheet\" href=\"{STYLE_HREF}\"></head><body>\
         <p class=\"meta\"><a href=\"{STATUS_HREF}\">← status</a></p>\
         <h1>Room <code id=\"room-id\">{}</code></h1>\
         <p class=\"meta\">generated <span id=\"generated\" data-ms=\"{now}\">{}</span></p>",
        escape(&story.room_id),
        escape(&story.room_id),
        unix_ms_text(now),
    );

    out.push_str("<h2>Binding</h2>");
    header(
        &mut out,
        "binding",
        &[
            "Name",
            "Messenger",
            "Agent",
            "Upstream chat id",
            "Owner",
            "Archived",
        ],
    );
    match &story.binding {
        Some(b) => {
            row_start(&mut out, &story.actor_id, "running");
            let _ = write!(
                out,
                "<td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td>\
                 <td>{}</td></tr>",
                opt_text(b.name.as_deref()),
                escape(&b.surface),
                escape(&b.agent),
                escape(&b.upstream_chat_id),
                escape(&b.owner),
                if b.archived { "yes" } else { "no" },
            );
        }
        None => empty_row(&mut out, 6, "no record in the store"),
    }
    out.push_str("</tbody></table>");

    out.push_str("<h2>Actor</h2>");
    let actor_columns = [
        "State",
        "Incarnation",
        "Restarts",
        "Mailbox",
        "Handled",
        "Lost",
        "Last failure",
        "Failed",
        "Last activity",
    ];
    header(&mut out, "actor", &actor_columns);
    match &story.actor {
        Some(a) => {
            row_start(&mut out, &story.actor_id, &a.state);
            let _ = write!(
                out,
                "<td>{}</td>{}{}{}{}{}{}{}{}</tr>",
                escape(&a.state),
                num_cell(a.incarnation),
                num_cell(a.restarts),
                num_cell(a.mailbox_depth),
                num_cell(a.handled),
                num_cell(a.lost),
                error_cell(a.last_failure.as_deref()),
                time_cell(now, a.last_failure_at_ms),
                time_cell(now, a.last_activity_ms),
            );
        }
        None => empty_row(
            &mut out,
            actor_columns.len(),
            "the room's actor is not running",
        ),
    }
    out.push_str("</tbody></table>");

    out.push_str("<h2>Restart history</h2>");
    header(
        &mut out,
        "history",
        &["When", "Event", "Incarnation", "Detail"],
    );
    if story.history.is_empty() {
        empty_row(&mut out, 4, "no restart or failure since start-up");
    }
    for event in &story.history {
        let state = match event.kind.as_str() {
            "exited" | "gave_up" => "failed",
            _ => "backing-off",
        };
        row_start(&mut out, &story.actor_id, state);
        let _ = write!(
            out,
            "{}<td>{}</td>{}{}</tr>",
            time_cell(now, Some(event.at_ms)),
            escape(&event.kind),
            event.incarnation.map_or_else(|| ms_cell(None), num_cell),
            error_cell(
                Some(&event.detail)
                    .filter(|d| !d.is_empty())
                    .map(String::as_str)
            ),
        );
    }
    out.push_str("</tbody></table>");

    out.push_str("<h2>Recent messages</h2>");
    let message_columns = [
        "Message id",
        "Started",
        "Queue wait (ms)",
        "First words (ms)",
        "Final reply (ms)",
        "Outcome",
        "Failure",
    ];
    header(&mut out, "messages", &message_columns);
    if story.messages.is_empty() {
        empty_row(&mut out, message_columns.len(), "no message since start-up");
    }
    for message in &story.messages {
        row_start(
            &mut out,
            &message.message_id,
            outcome_state(message.outcome),
        );
        let _ = write!(
            out,
            "<td><code>{}</code></td>{}{}{}{}<td data-outcome=\"{}\">{}</td>{}</tr>",
            escape(&message.message_id),
            time_cell(now, Some(message.started_ms)),
            ms_cell(message.queue_wait_ms),
            ms_cell(message.first_words_ms),
            ms_cell(message.final_reply_ms),
            escape(message.outcome.label()),
            escape(message.outcome.label()),
            error_cell(message.failure.as_deref()),
        );
    }
    out.push_str("</tbody></table>");

    out.push_str("<h2>Pending messages</h2>");
    header(
        &mut out,
        "pending",
        &["Message id", "Journal seq", "Resumes", "Accepted"],
    );
    if story.pending.is_empty() {
        empty_row(&mut out, 4, "nothing pending");
    }
    for pending in &story.pending {
        let state = if pending.resumes > 0 {
            "backing-off"
        } else {
            "running"
        };
        row_start(&mut out, &pending.message_id, state);
        let _ = write!(
            out,
            "<td><code>{}</code></td>{}{}{}</tr>",
            escape(&pending.message_id),
            num_cell(pending.seq),
            num_cell(pending.resumes),
            time_cell(now, pending.accepted_ms),
        );
    }
    out.push_str("</tbody></table>");

    out.push_str("<h2>Pending confirmations</h2>");
    header(
        &mut out,
        "confirmations",
        &["Kind", "Agent", "Person", "Asked", "Expires"],
    );
    if story.confirmations.is_empty() {
        empty_row(&mut out, 5, "no question waiting");
    }
    for asked in &story.confirmations {
        row_start(&mut out, &asked.person, "running");
        let _ = write!(
            out,
            "<td>{}</td><td>{}</td><td>{}</td>{}<td>{}</td></tr>",
            escape(&asked.kind),
            opt_text(asked.agent.as_deref()),
            escape(&asked.person),
            time_cell(now, Some(asked.asked_ms)),
            escape(&unix_ms_text(asked.expires_ms)),
        );
    }
    out.push_str("</tbody></table></body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::history::HistoryEvent;
    use crate::ops::room_story::{ActorView, Binding};
    use crate::runtime::room::story::MessageRecord;

    fn story() -> RoomStory {
        RoomStory {
            generated_at_ms: 100_000,
            room_id: "!r<b>:x".to_owned(),
            actor_id: "room:!r<b>:x".to_owned(),
            binding: Some(Binding {
                surface: "matrix".to_owned(),
                agent: "ref".to_owned(),
                upstream_chat_id: "sfc-1".to_owned(),
                owner: "@a:x".to_owned(),
                name: Some("<script>x</script>".to_owned()),
                archived: false,
            }),
            actor: Some(ActorView {
                state: "running".to_owned(),
                incarnation: 2,
                restarts: 1,
                mailbox_depth: 0,
                handled: 3,
                lost: 0,
                last_failure: Some("panic: <boom>".to_owned()),
                last_failure_at_ms: Some(90_000),
                last_activity_ms: Some(95_000),
            }),
            history: vec![HistoryEvent {
                at_ms: 90_000,
                kind: "exited".to_owned(),
                incarnation: Some(1),
                detail: "panic: <boom>".to_owned(),
            }],
            messages: vec![MessageRecord {
                message_id: "$m1".to_owned(),
                started_ms: 80_000,
                accepted_ms: Some(79_990),
                queue_wait_ms: Some(10),
                first_words_ms: None,
                final_reply_ms: None,
                outcome: Outcome::Failed,
                failure: Some("agent_error: turn_failed boom".to_owned()),
                ended_ms: Some(81_000),
            }],
            pending: Vec::new(),
            confirmations: Vec::new(),
        }
    }

    #[test]
    fn path_segments_encode_everything_but_unreserved() {
        for (id, want) in [
            ("!abc:example.org", "%21abc%3Aexample.org"),
            ("a/b?c#d", "a%2Fb%3Fc%23d"),
            ("-._~Az9", "-._~Az9"),
            ("é", "%C3%A9"),
            ("", ""),
        ] {
            assert_eq!(path_segment(id), want, "{id}");
        }
    }

    #[test]
    fn the_page_shows_the_failed_message_and_escapes_everything() {
        let page = render(&story());
        for needle in [
            "<code id=\"room-id\">!r&lt;b&gt;:x</code>",
            "&lt;script&gt;x&lt;/script&gt;",
            "<code>$m1</code>",
            "data-outcome=\"failed\"",
            "agent_error: turn_failed boom",
            "panic: &lt;boom&gt;",
            "href=\"../../status.css\"",
        ] {
            assert!(page.contains(needle), "{needle} missing:\n{page}");
        }
        assert!(!page.contains("<script"), "no script on the page");
        assert!(!page.contains("<b>"), "unescaped");
    }

    #[test]
    fn outcomes_colour_their_rows() {
        for (outcome, state) in [
            (Outcome::Failed, "failed"),
            (Outcome::GivenUp, "failed"),
            (Outcome::Interrupted, "backing-off"),
            (Outcome::Replied, "running"),
            (Outcome::InProgress, "starting"),
        ] {
            assert_eq!(outcome_state(outcome), state, "{outcome:?}");
        }
    }
}
