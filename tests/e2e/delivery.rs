//! Crash-safe delivery and start-up reconciliation against the real Synapse: the bot is
//! killed with SIGKILL at each crash point, its store deleted, its rooms made legacy; every
//! person's message still gets exactly one reply.

use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId};
use serde_json::json;

use crate::spine::{ask, field, onboard, Stack};
use crate::support::person::Person;
use crate::support::WAIT;

const ROOM_EVENT: &str = "org.surfaces.room";

/// Replies (or notices) of the bot to `event` in `room`.
async fn answers_to(
    stack: &Stack,
    person: &Person,
    room: &OwnedRoomId,
    event: &OwnedEventId,
) -> usize {
    let bot = stack.bot_id().to_owned();
    person
        .messages_from(room, &bot)
        .await
        .iter()
        .filter(|m| m.in_reply_to.as_ref() == Some(event))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_crash_point_still_gives_exactly_one_reply() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;
    let bot = stack.bot_id().to_owned();
    for point in ["after-journal", "during-turn", "after-agent", "after-send"] {
        stack.bot.stop().await?;
        stack.relaunch(&[("SURFACES_CRASH_AT", point)]).await?;
        let text = format!("survive {point}");
        let event = alice.send_text(&ob.chat, &text).await?;
        let status = stack.bot.wait_for_exit(WAIT).await?;
        assert!(
            !status.success(),
            "{point}: the bot was killed ({status:?})"
        );
        stack.relaunch(&[]).await?;
        let reply = alice
            .wait_for_message(
                &ob.chat,
                |m| m.sender == bot && m.in_reply_to.as_ref() == Some(&event),
                WAIT,
            )
            .await?;
        assert!(reply.body.contains(&text), "{point}: {}", reply.body);
        // A later message is answered too, so anything still pending was handled by now.
        ask(&stack, &alice, &ob.chat, &format!("after {point}")).await?;
        assert_eq!(
            answers_to(&stack, &alice, &ob.chat, &event).await,
            1,
            "{point}: exactly one reply"
        );
        let turn = stack
            .agent
            .turns()
            .into_iter()
            .find(|t| t.text == text)
            .expect("the agent saw the turn");
        assert_eq!(
            stack.agent.executions_of(&turn.turn_id),
            1,
            "{point}: the turn ran once"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_down_are_answered_once_after_start() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;
    let answered = ask(&stack, &alice, &ob.chat, "before the stop").await?;
    stack.bot.stop().await?;
    let first = alice.send_text(&ob.chat, "while you were away 1").await?;
    let second = alice.send_text(&ob.chat, "while you were away 2").await?;
    stack.relaunch(&[]).await?;
    let bot = stack.bot_id().to_owned();
    for event in [&first, &second] {
        alice
            .wait_for_message(
                &ob.chat,
                |m| m.sender == bot && m.in_reply_to.as_ref() == Some(event),
                WAIT,
            )
            .await?;
    }
    ask(&stack, &alice, &ob.chat, "and now").await?;
    assert_eq!(answers_to(&stack, &alice, &ob.chat, &first).await, 1);
    assert_eq!(answers_to(&stack, &alice, &ob.chat, &second).await, 1);
    // The message answered before the stop was not answered again.
    let before = answered.in_reply_to.clone().expect("a reply");
    assert_eq!(answers_to(&stack, &alice, &ob.chat, &before).await, 1);
    // In order: the replies to the two messages came in the order they were sent.
    let order: Vec<OwnedEventId> = alice
        .messages_from(&ob.chat, &bot)
        .await
        .into_iter()
        .filter_map(|m| m.in_reply_to)
        .filter(|e| e == &first || e == &second)
        .collect();
    assert_eq!(order, vec![first, second]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_store_rebuilds_the_same_state_from_matrix() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    let a = onboard(&stack, &alice).await?;
    ask(&stack, &alice, &a.chat, "remember me").await?;
    let chat_before = stack.agent.turns()[0].chat.clone();
    let settings_before = ask(&stack, &alice, &a.chat, "!settings").await?.body;
    stack.bot.stop().await?;
    std::fs::remove_dir_all(stack.data.path().join("bot").join("store"))?;
    stack.relaunch(&[]).await?;
    assert!(
        stack.bot.log_contains("reconciliation done"),
        "{}",
        stack.bot.log_tail(30)
    );
    // !settings shows the same: agent, conversation, Space, counts.
    let settings_after = ask(&stack, &alice, &a.chat, "!settings").await?.body;
    assert_eq!(settings_after, settings_before);
    // The room answers as before, on the same upstream chat.
    ask(&stack, &alice, &a.chat, "still me?").await?;
    let last = stack.agent.turns().last().cloned().expect("a turn");
    assert_eq!(last.chat, chat_before);
    // The Space is known again: a second invite points at it, no new Space.
    alice.leave(&a.dm).await?;
    let dm2 = alice.create_dm(stack.bot_id()).await?;
    let pointer = alice
        .wait_for_text_from(&dm2, stack.bot_id(), "Space", WAIT)
        .await?;
    assert!(pointer.body.contains(a.space.as_str()), "{}", pointer.body);
    assert!(alice.invites().await.is_empty());
    // The chat sequence moved past every id seen: a new room gets a fresh one.
    let bob = stack.person("bob").await?;
    let b = onboard(&stack, &bob).await?;
    let binding = bob
        .wait_for_state_event(&b.chat, ROOM_EVENT, "", |_| true, WAIT)
        .await?;
    assert_eq!(field(&binding, "platform_chat_id"), "sfc-2");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_room_gets_a_stable_chat_id_written_back() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    let a = onboard(&stack, &alice).await?;
    stack.bot.stop().await?;
    // Make the room legacy: its binding has no chat id (written as the bot, who owns it).
    let url = format!(
        "{}/_matrix/client/v3/rooms/{}/state/{ROOM_EVENT}/",
        stack.synapse.base_url,
        urlencode(a.chat.as_str())
    );
    let content = json!({"agent_id": "ref", "owner": alice.user_id().as_str(), "chat_index": 1});
    let response = stack
        .synapse
        .http()
        .put(&url)
        .bearer_auth(&stack.bot_creds.access_token)
        .json(&content)
        .send()
        .await?;
    assert!(response.status().is_success(), "{}", response.text().await?);
    let mut minted = Vec::new();
    for _ in 0..2 {
        stack
            .relaunch(&[("SURFACES__RECONCILE__FULL", "true")])
            .await?;
        let binding = alice
            .wait_for_state_event(
                &a.chat,
                ROOM_EVENT,
                "",
                |v| !field(v, "platform_chat_id").is_empty(),
                WAIT,
            )
            .await?;
        minted.push(field(&binding, "platform_chat_id").to_owned());
        stack.bot.stop().await?;
    }
    assert!(minted[0].starts_with("sfc-r"), "{minted:?}");
    assert_eq!(minted[0], minted[1], "stable across restarts");
    stack.relaunch(&[]).await?;
    ask(&stack, &alice, &a.chat, "legacy hello").await?;
    let last = stack.agent.turns().last().cloned().expect("a turn");
    assert_eq!(last.chat, minted[0]);
    Ok(())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_turn_in_flight_finish_then_exits_cleanly() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;
    // A turn that takes a while (but less than the agent timeout and the shutdown grace).
    stack
        .agent
        .set_delay(std::time::Duration::from_millis(1500));
    let event = alice.send_text(&ob.chat, "finish me before you go").await?;
    assert!(
        stack
            .agent
            .wait_for_turn_text("finish me before you go", WAIT)
            .await
    );
    let status = stack.bot.stop().await?;
    assert!(status.success(), "exit 0 on SIGTERM: {status:?}");
    // The reply went out before the exit: it is there without the bot running.
    let bot = stack.bot_id().to_owned();
    let reply = alice
        .wait_for_message(
            &ob.chat,
            |m| m.sender == bot && m.in_reply_to.as_ref() == Some(&event),
            WAIT,
        )
        .await?;
    assert!(reply.body.contains("finish me"));
    // And nothing is left pending: after a restart it is not answered again.
    stack.agent.set_delay(std::time::Duration::ZERO);
    stack.relaunch(&[]).await?;
    ask(&stack, &alice, &ob.chat, "next").await?;
    assert_eq!(answers_to(&stack, &alice, &ob.chat, &event).await, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_sync_token_and_store_replay_nothing() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;
    let first = ask(&stack, &alice, &ob.chat, "answered once").await?;
    let first_event = first.in_reply_to.clone().expect("a reply");
    stack.bot.stop().await?;
    // Everything the bot kept is gone: sled, the Matrix store with its sync token, the session.
    std::fs::remove_dir_all(stack.data.path().join("bot"))?;
    stack.relaunch(&[]).await?;
    ask(&stack, &alice, &ob.chat, "after the loss").await?;
    assert_eq!(
        answers_to(&stack, &alice, &ob.chat, &first_event).await,
        1,
        "no replay"
    );
    let turns = stack.agent.turns();
    assert_eq!(
        turns.iter().filter(|t| t.text == "answered once").count(),
        1,
        "{turns:?}"
    );
    Ok(())
}
