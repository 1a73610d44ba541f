//! One id per message across the logs (issue 18): every log line of our crate on one
//! message's path — the intake, the room actor, the agent turn, the reply's sends and the
//! journal marking it answered — carries the message's id in the `msg` field of a span, so
//! an operator can follow it from the chat to the agent and back.
//!
//! The log lines are captured as JSON (current span and span list) by the process's global
//! subscriber: this test has a binary of its own, because a subscriber set for one thread
//! beside tests running in parallel lost events now and then (tracing caches each log
//! site's interest across every thread's subscriber).

use std::io::Write;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;
use surfaces_testkit::inproc::{Bot, Setup, WAIT};
use surfaces_testkit::wait::{wait_until, POLL};

/// Targets of our crate (the testkit's are `surfaces_testkit`).
const OUR_CRATE: &str = "surfaces::";
/// The span field that names a message on every log line of its path.
const MSG_FIELD: &str = "msg";

/// Log lines written as JSON, one per line.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Every line captured so far, parsed (a line that does not parse fails the test).
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"))
            })
            .collect()
    }
}

/// The line's target.
fn target(line: &Value) -> &str {
    line["target"].as_str().unwrap_or_default()
}

/// The line's message text.
fn said(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

/// Whether the line names message `id` in the `msg` field of one of its spans.
fn carries(line: &Value, id: &str) -> bool {
    line["spans"]
        .as_array()
        .is_some_and(|spans| spans.iter().any(|s| s[MSG_FIELD].as_str() == Some(id)))
}

#[actix_rt::test]
async fn every_line_of_a_message_path_carries_its_id() -> anyhow::Result<()> {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber)?;

    let (bot, alice, chat) = Bot::with_person(Setup::default(), "alice").await?;
    let from = captured.lines().len();
    let id = bot.world.say(&alice, &chat, "hello");
    let reply = bot.answer(&chat, &id).await?;
    assert_eq!(reply.text(), "echo: hello");
    let id = id.as_str();
    // The path ends when the journal has the message answered (just after the reply).
    let path = wait_until(WAIT, POLL, || {
        let lines = captured.lines();
        let end = lines
            .iter()
            .skip(from)
            .position(|line| carries(line, id) && said(line) == "marked answered in the journal");
        async move { end.map(|end| lines[from..=from + end].to_vec()) }
    })
    .await
    .map_err(|e| e.context("the journal never logged the message answered"))?;
    let ours: Vec<&Value> = path
        .iter()
        .filter(|line| target(line).starts_with(OUR_CRATE))
        .collect();

    let without: Vec<&&Value> = ours.iter().filter(|line| !carries(line, id)).collect();
    assert!(
        without.is_empty(),
        "lines of the path of {id} without its id:\n{}",
        without
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Each stage logged something (else the check above proves nothing about it).
    // (stage, target prefix, text, or "" for any)
    let stages = [
        ("intake", "surfaces::runtime::intake", "message journaled"),
        (
            "intake hand-over",
            "surfaces::runtime::intake",
            "handed to the room actor",
        ),
        ("room actor", "surfaces::runtime::room", "queued"),
        ("room actor", "surfaces::runtime::room", "answering"),
        (
            "agent turn",
            "surfaces::runtime::agent_conn",
            "turn started",
        ),
        (
            "agent turn",
            "surfaces::runtime::agent_conn",
            "turn finished",
        ),
        ("reply", "surfaces::runtime::room", "reply sent"),
        (
            "journal",
            "surfaces::runtime::room",
            "marked answered in the journal",
        ),
    ];
    for (stage, prefix, text) in stages {
        assert!(
            ours.iter()
                .any(|line| target(line).starts_with(prefix) && said(line) == text),
            "no {stage} line {text:?} from {prefix} on the path of {id}:\n{}",
            ours.iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // The agent turn's span names both the message and its turn id.
    let turn = ours
        .iter()
        .find(|line| said(line) == "turn started")
        .and_then(|line| line["span"]["turn_id"].as_str().map(str::to_owned));
    assert_eq!(
        turn,
        Some(surfaces::surface::turn_id_for(&id.into())),
        "the agent_turn span"
    );
    Ok(())
}
