//! Nothing lost when a room outpaces a sync: a flood of messages, messages sent while the
//! bot was down, a gap whose back-pagination fails part way, and the bounds of catch-up —
//! against the real Synapse, every message answered exactly once and in the room's order
//! (or accounted for by a notice). The ground truth is the room's history on the homeserver
//! (`Person::history`), not what the person's own syncs happened to carry.

use std::time::{Duration, Instant};

use anyhow::Context;
use matrix_sdk::ruma::{OwnedEventId, RoomId, UserId};

use crate::spine::{onboard, Onboarded, Stack, UNLIMITED};
use crate::support::person::{Person, ReceivedMessage};
use crate::support::{try_wait_until, wait_until, POLL, WAIT};

/// How long all the answers to a flood may take.
const FLOOD_WAIT: Duration = Duration::from_secs(240);
/// How often the room's history is read while waiting.
const HISTORY_POLL: Duration = Duration::from_millis(500);

/// The text of the `i`-th message of a run (zero-padded and closed, so no text is a prefix
/// of another).
fn text(tag: &str, i: usize) -> String {
    format!("{tag} #{i:04}.")
}

/// Messages sent by a test: event ids with their texts, in the room's order.
type Sent = Vec<(OwnedEventId, String)>;

/// Sends `n` messages as fast as the client can, one request after another.
async fn send_many(person: &Person, room: &RoomId, tag: &str, n: usize) -> anyhow::Result<Sent> {
    let started = Instant::now();
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        let body = text(tag, i);
        sent.push((person.send_text(room, &body).await?, body));
    }
    eprintln!(
        "{} sent {n} messages to {room} in {:.1} s",
        person.user_id(),
        started.elapsed().as_secs_f64()
    );
    Ok(sent)
}

/// The person floods the room from all their `devices` at once (each sending its share
/// one request after another: one client cannot encrypt concurrent sends in a room);
/// returns them in the room's order (the order the homeserver stored them in, which is the
/// order the bot must answer them in).
async fn flood(devices: &[&Person], room: &RoomId, tag: &str, n: usize) -> anyhow::Result<Sent> {
    let started = Instant::now();
    let per_device = n.div_ceil(devices.len().max(1));
    let sends = devices.iter().enumerate().map(|(d, device)| async move {
        let mut sent = Vec::new();
        for i in (d * per_device)..((d + 1) * per_device).min(n) {
            let body = text(tag, i);
            sent.push((device.send_text(room, &body).await?, body));
        }
        anyhow::Ok(sent)
    });
    let mut sent: std::collections::HashMap<OwnedEventId, String> = Default::default();
    for part in futures_util::future::join_all(sends).await {
        sent.extend(part?);
    }
    eprintln!(
        "{} messages sent to {room} from {} devices in {:.1} s",
        sent.len(),
        devices.len(),
        started.elapsed().as_secs_f64()
    );
    let in_room_order: Sent = devices[0]
        .history_ids(room)
        .await?
        .into_iter()
        .filter_map(|id| sent.remove(&id).map(|body| (id, body)))
        .collect();
    anyhow::ensure!(
        in_room_order.len() == n,
        "the room holds {} of the {n}",
        in_room_order.len()
    );
    Ok(in_room_order)
}

/// The bot's messages in the room's history that reply to one of `sent`, oldest first.
fn answers<'a>(
    history: &'a [ReceivedMessage],
    bot: &UserId,
    sent: &[(OwnedEventId, String)],
) -> Vec<&'a ReceivedMessage> {
    history
        .iter()
        .filter(|m| m.sender == bot)
        .filter(|m| {
            m.in_reply_to
                .as_ref()
                .is_some_and(|e| sent.iter().any(|(id, _)| id == e))
        })
        .collect()
}

/// Checks that each answer quotes the text of the message it answers.
fn assert_about_their_messages(sent: &[(OwnedEventId, String)], replies: &[&ReceivedMessage]) {
    for reply in replies {
        let (_, asked) = sent
            .iter()
            .find(|(id, _)| Some(id) == reply.in_reply_to.as_ref())
            .expect("an answer to a sent message");
        assert!(
            reply.body.contains(asked.as_str()),
            "the answer to {asked:?} is about it: {:?}",
            reply.body
        );
    }
}

/// Waits until every one of `sent` has an answer from the bot, then checks that each has
/// exactly one, that the answers came in the room's order, and that each answer is about
/// its own message. Returns the room's history.
async fn assert_answered_once_in_order(
    stack: &Stack,
    person: &Person,
    room: &RoomId,
    sent: &[(OwnedEventId, String)],
    timeout: Duration,
) -> anyhow::Result<Vec<ReceivedMessage>> {
    let bot = stack.bot_id().to_owned();
    let started = Instant::now();
    // Progress is read from what the person's client received (cheap); the verdict from
    // the room's history on the homeserver.
    let waited = wait_until(timeout, POLL, || async {
        let received = person.messages(room).await;
        let answered = answers(&received, &bot, sent).len();
        (answered >= sent.len()).then_some(())
    })
    .await;
    let history = person.history(room).await?;
    let answered: std::collections::HashSet<&OwnedEventId> = answers(&history, &bot, sent)
        .iter()
        .filter_map(|m| m.in_reply_to.as_ref())
        .collect();
    if answered.len() < sent.len() {
        anyhow::bail!(
            "{} of {} messages in {room} answered ({:?})\n{}",
            answered.len(),
            sent.len(),
            waited.err(),
            log_digest(stack)
        );
    }
    eprintln!(
        "{} answers in {room} after {:.1} s",
        sent.len(),
        started.elapsed().as_secs_f64()
    );
    let replies = answers(&history, &bot, sent);
    let order: Vec<&OwnedEventId> = replies
        .iter()
        .filter_map(|m| m.in_reply_to.as_ref())
        .collect();
    let want: Vec<&OwnedEventId> = sent.iter().map(|(id, _)| id).collect();
    assert_eq!(
        order.len(),
        sent.len(),
        "every message answered exactly once"
    );
    assert_eq!(order, want, "answered in the room's order");
    assert_about_their_messages(sent, &replies);
    Ok(history)
}

async fn assert_ready(stack: &Stack) -> anyhow::Result<()> {
    let response = reqwest::get(format!("{}/readyz", stack.bot.ops_url())).await?;
    let status = response.status();
    anyhow::ensure!(
        status.is_success(),
        "the bot is not ready: {status} {}",
        response.text().await?
    );
    Ok(())
}

/// A sample of the bot's `/metrics` (0 when absent).
pub(crate) async fn metric(stack: &Stack, name: &str) -> anyhow::Result<f64> {
    let body = reqwest::get(format!("{}/metrics", stack.bot.ops_url()))
        .await?
        .text()
        .await?;
    Ok(body
        .lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_messages_at_once_are_each_answered_once_in_order() -> anyhow::Result<()> {
    let stack = Stack::start_with_env(UNLIMITED).await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;
    // Alice on three devices at once: hundreds of messages reach the room between two
    // syncs of the bot.
    let (phone, laptop) = (
        alice.another_device(&stack.synapse).await?,
        alice.another_device(&stack.synapse).await?,
    );
    let sent = flood(&[&alice, &phone, &laptop], &ob.chat, "flood", 300).await?;
    assert_answered_once_in_order(&stack, &alice, &ob.chat, &sent, FLOOD_WAIT).await?;
    assert_ready(&stack).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_down_are_all_answered_once_in_room_order() -> anyhow::Result<()> {
    let (mut stack, [(alice, a), (bob, b)]) = stopped_with_two_people().await?;
    let sent_a = send_many(&alice, &a.chat, "alice while down", 50).await?;
    let sent_b = send_many(&bob, &b.chat, "bob while down", 5).await?;
    // Synapse's own default timeline limit (10), as without a filter: the first sync leaves
    // a gap of 40 in Alice's room.
    stack
        .relaunch(&[("SURFACES__SYNC__TIMELINE_LIMIT", "10")])
        .await?;
    assert_answered_once_in_order(&stack, &alice, &a.chat, &sent_a, WAIT * 4).await?;
    assert_answered_once_in_order(&stack, &bob, &b.chat, &sent_b, WAIT).await?;
    assert!(
        metric(&stack, "surfaces_sync_backfilled_messages_total").await? > 0.0,
        "the gap was filled by paging back:\n{}",
        stack.bot.log_tail(20)
    );
    assert_ready(&stack).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_whose_paging_fails_part_way_is_retried_and_nothing_is_answered_twice(
) -> anyhow::Result<()> {
    let (mut stack, [(alice, a), (bob, b)]) = stopped_with_two_people().await?;
    let sent_a = send_many(&alice, &a.chat, "paged", 23).await?;
    let sent_b = send_many(&bob, &b.chat, "beside", 2).await?;
    // Small pages, so the gap takes several; the second to fifth page requests fail: the
    // first round gives up on Alice's room after three attempts (Bob's room is answered),
    // the next round reads the same range again and fills the gap.
    stack
        .relaunch(&[
            ("SURFACES__SYNC__TIMELINE_LIMIT", "5"),
            ("SURFACES__SYNC__BACKFILL_PAGE_SIZE", "5"),
            ("SURFACES_FAIL", "backfill-page:2-5"),
        ])
        .await?;
    assert_answered_once_in_order(&stack, &alice, &a.chat, &sent_a, WAIT * 2).await?;
    assert_answered_once_in_order(&stack, &bob, &b.chat, &sent_b, WAIT).await?;
    assert!(
        stack.bot.log_contains("back-pagination failed; retrying"),
        "{}",
        stack.bot.log_tail(40)
    );
    assert!(
        stack.bot.log_contains("the same range again"),
        "the round was read again:\n{}",
        stack.bot.log_tail(40)
    );
    assert!(metric(&stack, "surfaces_sync_failed_rounds_total").await? >= 1.0);
    // The agent ran each turn once.
    for text in (0..23).map(|i| text("paged", i)) {
        let turn = stack
            .agent
            .turns()
            .into_iter()
            .find(|t| t.text == text)
            .with_context(|| format!("the agent saw {text:?}"))?;
        assert_eq!(stack.agent.executions_of(&turn.turn_id), 1, "{text}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_answers_the_newest_within_its_bound_and_says_how_many_it_left(
) -> anyhow::Result<()> {
    let mut stack = Stack::start_with_env(UNLIMITED).await?;
    let alice = stack.person("alice").await?;
    let a = onboard(&stack, &alice).await?;
    stack.bot.stop().await?;
    let sent = send_many(&alice, &a.chat, "bounded", 8).await?;
    stack
        .relaunch(&[("SURFACES__SYNC__CATCH_UP_MAX_MESSAGES", "3")])
        .await?;
    // The newest three are answered, in order; the five before them are not.
    let history = assert_answered_once_in_order_tail(&stack, &alice, &a.chat, &sent, 3).await?;
    let bot = stack.bot_id().to_owned();
    let notices: Vec<&ReceivedMessage> = history
        .iter()
        .filter(|m| m.sender == bot && m.body.contains("went unanswered"))
        .collect();
    assert_eq!(notices.len(), 1, "told once: {notices:?}");
    assert!(
        notices[0].body.contains("5 older messages"),
        "{}",
        notices[0].body
    );
    assert_eq!(
        metric(&stack, "surfaces_sync_catch_up_skipped_total").await?,
        5.0
    );
    // Answered once: a restart replays nothing, and tells nothing again.
    stack.restart_bot().await?;
    let later = send_many(&alice, &a.chat, "after", 1).await?;
    assert_answered_once_in_order(&stack, &alice, &a.chat, &later, WAIT).await?;
    let history = alice.history(&a.chat).await?;
    assert_eq!(answers(&history, &bot, &sent).len(), 3);
    assert_eq!(
        history
            .iter()
            .filter(|m| m.sender == bot && m.body.contains("went unanswered"))
            .count(),
        1
    );
    Ok(())
}

/// Like [`assert_answered_once_in_order`] for the last `n` of `sent` only, checking the
/// others got no answer.
async fn assert_answered_once_in_order_tail(
    stack: &Stack,
    person: &Person,
    room: &RoomId,
    sent: &[(OwnedEventId, String)],
    n: usize,
) -> anyhow::Result<Vec<ReceivedMessage>> {
    let (older, newest) = sent.split_at(sent.len() - n);
    let bot = stack.bot_id().to_owned();
    let history = try_wait_until(WAIT, HISTORY_POLL, || async {
        let history = person.history(room).await?;
        let done = answers(&history, &bot, newest).len() == n
            && history
                .iter()
                .any(|m| m.sender == bot && m.body.contains("went unanswered"));
        Ok(done.then_some(history))
    })
    .await
    .with_context(|| stack.bot.log_tail(30))?;
    let order: Vec<&OwnedEventId> = answers(&history, &bot, newest)
        .iter()
        .filter_map(|m| m.in_reply_to.as_ref())
        .collect();
    let want: Vec<&OwnedEventId> = newest.iter().map(|(id, _)| id).collect();
    assert_eq!(order, want, "the newest answered once each, in order");
    assert!(
        answers(&history, &bot, older).is_empty(),
        "the older ones are not"
    );
    assert_about_their_messages(newest, &answers(&history, &bot, newest));
    Ok(history)
}

/// The bot's log lines that tell the story of a catch-up (warnings, errors, catch-up and
/// start-up lines), without the per-request noise.
fn log_digest(stack: &Stack) -> String {
    let text = stack.bot.log_text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            (l.contains("WARN")
                || l.contains("ERROR")
                || l.contains("caught up")
                || l.contains("gap")
                || l.contains("first sync")
                || l.contains("running")
                || l.contains("Processed a sync response"))
                && !l.contains("backup key")
        })
        .collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// A stack with alice and bob onboarded, then the bot stopped (messages sent now arrive
/// while it is down).
async fn stopped_with_two_people() -> anyhow::Result<(Stack, [(Person, Onboarded); 2])> {
    let mut stack = Stack::start_with_env(UNLIMITED).await?;
    let alice = stack.person("alice").await?;
    let bob = stack.person("bob").await?;
    let a = onboard(&stack, &alice).await?;
    let b = onboard(&stack, &bob).await?;
    stack.bot.stop().await?;
    Ok((stack, [(alice, a), (bob, b)]))
}
