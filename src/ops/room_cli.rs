//! `surfaces status --room <id>`: one room's story as text, from the running bot.
//!
//! Why this file exists: the same facts as the room page (`/status/rooms/<id>`), for an
//! operator on the host. It asks the endpoint found as `surfaces status` finds it (with the
//! same token) for the room's JSON and prints it as the status tables are printed: cells
//! cleaned of control characters and cut, times relative to the document's.

use std::path::Path;
use std::process::ExitCode;

use super::cli::{
    block_on, cell, get, opt, resolve_base, table, when, CliError, EXIT_CONFIG, EXIT_UNREACHABLE,
    NONE,
};
use super::html::{ago, unix_ms_text};
use super::room_page::path_segment;
use super::room_story::RoomStory;
use super::ROOM_PATH_PREFIX;
use crate::config::Secret;

/// `GET /status/rooms/<room id>` (with the bearer `token`, if any), decoded.
pub async fn fetch_room_story(
    base: &str,
    room_id: &str,
    token: Option<&Secret>,
) -> Result<RoomStory, CliError> {
    let path = format!("{ROOM_PATH_PREFIX}{}", path_segment(room_id));
    let (url, status, body) = get(base, &path, token).await?;
    if status != 200 {
        return Err(CliError::Status {
            url,
            status,
            body: body.trim().to_owned(),
        });
    }
    serde_json::from_str(&body).map_err(|e| CliError::Decode {
        url,
        message: e.to_string(),
    })
}

/// `surfaces status --room <id> [--url URL]`: exit 0 with the room's tables; 1 when the bot
/// cannot be asked or does not know the room; 2 on a configuration error.
pub fn room_status_command(config: Option<&Path>, url: Option<&str>, room_id: &str) -> ExitCode {
    let (base, token) = match resolve_base(config, url) {
        Ok(found) => found,
        Err(error) => {
            eprintln!("surfaces status: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match block_on(fetch_room_story(&base, room_id, token.as_ref())) {
        Ok(story) => {
            print!("{}", render_room_table(&story));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("surfaces status: {error}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

fn ms(value: Option<u64>) -> String {
    value.map_or_else(|| NONE.to_owned(), |ms| ms.to_string())
}

/// The room's story as text tables (newest messages first, as the document orders them).
pub fn render_room_table(story: &RoomStory) -> String {
    let now = story.generated_at_ms;
    let mut out = format!("room {} — {}\n", cell(&story.room_id), unix_ms_text(now));
    match &story.binding {
        Some(b) => out.push_str(&format!(
            "  {} chat, agent {}, upstream chat {}, owner {}, name {}{}\n",
            cell(&b.surface),
            cell(&b.agent),
            cell(&b.upstream_chat_id),
            cell(&b.owner),
            opt(b.name.as_deref()),
            if b.archived { ", ARCHIVED" } else { "" }
        )),
        None => out.push_str("  no record in the store\n"),
    }
    match &story.actor {
        Some(a) => out.push_str(&format!(
            "  actor {} {}: incarnation {}, {} restarts, mailbox {}, {} handled, {} lost, \
             active {}, last failure {}{}\n",
            cell(&story.actor_id),
            cell(&a.state),
            a.incarnation,
            a.restarts,
            a.mailbox_depth,
            a.handled,
            a.lost,
            when(now, a.last_activity_ms),
            opt(a.last_failure.as_deref()),
            a.last_failure_at_ms
                .map(|at| format!(" ({})", ago(now, at)))
                .unwrap_or_default(),
        )),
        None => out.push_str("  the room's actor is not running\n"),
    }

    out.push_str(&format!("\nRESTART HISTORY ({})\n", story.history.len()));
    let rows: Vec<Vec<String>> = story
        .history
        .iter()
        .map(|e| {
            vec![
                ago(now, e.at_ms),
                cell(&e.kind),
                e.incarnation
                    .map_or_else(|| NONE.to_owned(), |n| n.to_string()),
                opt(Some(e.detail.as_str()).filter(|d| !d.is_empty())),
            ]
        })
        .collect();
    out.push_str(&table(&["WHEN", "EVENT", "INCARNATION", "DETAIL"], &rows));

    out.push_str(&format!("\nRECENT MESSAGES ({})\n", story.messages.len()));
    let rows: Vec<Vec<String>> = story
        .messages
        .iter()
        .map(|m| {
            vec![
                cell(&m.message_id),
                ago(now, m.started_ms),
                ms(m.queue_wait_ms),
                ms(m.first_words_ms),
                ms(m.final_reply_ms),
                m.outcome.label().to_owned(),
                opt(m.failure.as_deref()),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "MESSAGE ID",
            "STARTED",
            "WAIT MS",
            "FIRST MS",
            "FINAL MS",
            "OUTCOME",
            "FAILURE",
        ],
        &rows,
    ));

    out.push_str(&format!("\nPENDING MESSAGES ({})\n", story.pending.len()));
    let rows: Vec<Vec<String>> = story
        .pending
        .iter()
        .map(|p| {
            vec![
                cell(&p.message_id),
                p.seq.to_string(),
                p.resumes.to_string(),
                p.accepted_ms
                    .map_or_else(|| NONE.to_owned(), |at| ago(now, at)),
            ]
        })
        .collect();
    out.push_str(&table(&["MESSAGE ID", "SEQ", "RESUMES", "ACCEPTED"], &rows));

    out.push_str(&format!(
        "\nPENDING CONFIRMATIONS ({})\n",
        story.confirmations.len()
    ));
    let rows: Vec<Vec<String>> = story
        .confirmations
        .iter()
        .map(|c| {
            vec![
                cell(&c.kind),
                opt(c.agent.as_deref()),
                cell(&c.person),
                ago(now, c.asked_ms),
                unix_ms_text(c.expires_ms),
            ]
        })
        .collect();
    out.push_str(&table(
        &["KIND", "AGENT", "PERSON", "ASKED", "EXPIRES"],
        &rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::history::HistoryEvent;
    use crate::ops::room_story::{ActorView, Binding, PendingConfirmation, PendingMessage};
    use crate::runtime::room::story::{MessageRecord, Outcome};

    fn story() -> RoomStory {
        RoomStory {
            generated_at_ms: 100_000,
            room_id: "!r:x".to_owned(),
            actor_id: "room:!r:x".to_owned(),
            binding: Some(Binding {
                surface: "matrix".to_owned(),
                agent: "ref".to_owned(),
                upstream_chat_id: "sfc-1".to_owned(),
                owner: "@a:x".to_owned(),
                name: Some("evil\x1b[31mname".to_owned()),
                archived: false,
            }),
            actor: Some(ActorView {
                state: "running".to_owned(),
                incarnation: 2,
                restarts: 1,
                mailbox_depth: 0,
                handled: 3,
                lost: 0,
                last_failure: Some("panic: boom".to_owned()),
                last_failure_at_ms: Some(40_000),
                last_activity_ms: Some(95_000),
            }),
            history: vec![HistoryEvent {
                at_ms: 40_000,
                kind: "exited".to_owned(),
                incarnation: Some(1),
                detail: "panic: boom".to_owned(),
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
            pending: vec![PendingMessage {
                message_id: "$m2".to_owned(),
                seq: 7,
                resumes: 0,
                accepted_ms: None,
            }],
            confirmations: vec![PendingConfirmation {
                kind: "archive".to_owned(),
                agent: None,
                person: "@a:x".to_owned(),
                asked_ms: 70_000,
                expires_ms: 130_000,
            }],
        }
    }

    #[test]
    fn the_room_tables() {
        let text = render_room_table(&story());
        // (a line that must be there, exactly, after trimming)
        for line in [
            "matrix chat, agent ref, upstream chat sfc-1, owner @a:x, name evil [31mname",
            "actor room:!r:x running: incarnation 2, 1 restarts, mailbox 0, 3 handled, 0 lost, \
             active 5 s ago, last failure panic: boom (1 min ago)",
            "WHEN       EVENT   INCARNATION  DETAIL",
            "1 min ago  exited  1            panic: boom",
            "MESSAGE ID  STARTED   WAIT MS  FIRST MS  FINAL MS  OUTCOME  FAILURE",
            "$m1         20 s ago  10       -         -         failed   agent_error: turn_failed boom",
            "$m2         7    0        -",
            "archive  -      @a:x    30 s ago  1970-01-01 00:02:10 UTC",
        ] {
            assert!(
                text.lines().any(|l| l.trim() == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(!text.contains('\x1b'), "terminal-safe");
    }

    #[test]
    fn an_empty_story_says_so() {
        let mut empty = story();
        empty.binding = None;
        empty.actor = None;
        empty.history.clear();
        empty.messages.clear();
        let text = render_room_table(&empty);
        for needle in [
            "no record in the store",
            "the room's actor is not running",
            "RESTART HISTORY (0)",
            "RECENT MESSAGES (0)",
        ] {
            assert!(text.contains(needle), "{needle} in:\n{text}");
        }
    }
}
