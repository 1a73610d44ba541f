//! Edits, redactions and replies against a real Synapse (issue 12, item 5): an edit of a
//! message waiting behind a busy turn replaces it; an edit of an answered message gets no
//! second answer; a redacted waiting message is never answered; a reply is read without
//! its fallback quote, so a quoted `!clear` does not clear and a command under a quote runs;
//! past `limits.room_queue_max` waiting messages, the chat is told once and the messages
//! not taken are never answered (item 12, the queue cap).

use std::time::Duration;

use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId};

use crate::spine::{ask, field, onboard, Stack};
use crate::support::person::Person;
use crate::support::reference_agent::ReferenceAgent;
use crate::support::WAIT;

/// Long enough that no slow turn here times out.
const TIMEOUT_SECS: u64 = 40;

/// Synapse, the reference agent (with a timeout slow turns fit in) and the bot, with `env`.
pub(crate) async fn slow_stack(env: &[(&str, &str)]) -> anyhow::Result<Stack> {
    let toml = |agent: &ReferenceAgent, _: &std::path::Path| {
        Ok(format!(
            "[[agents]]\nid = \"ref\"\nname = \"Reference\"\nbase_url = \"{}\"\n\
             timeout_secs = {TIMEOUT_SECS}\ndefault = true\n",
            agent.base_url()
        ))
    };
    Stack::start_configured(toml, env).await
}

/// The room's platform chat id, from its binding.
pub(crate) async fn chat_id(person: &Person, room: &OwnedRoomId) -> anyhow::Result<String> {
    let binding = person
        .wait_for_state_event(room, "org.surfaces.room", "", |_| true, WAIT)
        .await?;
    Ok(field(&binding, "platform_chat_id").to_owned())
}

/// The bot's messages replying to `event` so far.
async fn answers_to(
    stack: &Stack,
    person: &Person,
    room: &OwnedRoomId,
    event: &OwnedEventId,
) -> Vec<String> {
    person
        .messages(room)
        .await
        .into_iter()
        .filter(|m| m.sender == stack.bot_id() && m.in_reply_to.as_ref() == Some(event))
        .map(|m| m.body)
        .collect()
}

/// Waits for the bot's reply to `event`; returns its body.
async fn answer(
    stack: &Stack,
    person: &Person,
    room: &OwnedRoomId,
    event: &OwnedEventId,
) -> anyhow::Result<String> {
    let bot = stack.bot_id().to_owned();
    Ok(person
        .wait_for_message(
            room,
            |m| m.sender == bot && m.in_reply_to.as_ref() == Some(event),
            WAIT,
        )
        .await?
        .body)
}

/// Sends a message whose turn runs for most of the agent's timeout, once the agent has it;
/// returns the chat's platform id (to lift the delay) and the message.
async fn hold_the_chat(
    stack: &Stack,
    person: &Person,
    chat: &OwnedRoomId,
) -> anyhow::Result<(String, OwnedEventId)> {
    let c1 = chat_id(person, chat).await?;
    stack
        .agent
        .set_chat_delay(&c1, Duration::from_secs(TIMEOUT_SECS - 10));
    let slow = person.send_text(chat, "hold the chat").await?;
    assert!(stack.agent.wait_for_turn_text("hold the chat", WAIT).await);
    Ok((c1, slow))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_redactions_of_waiting_and_answered_messages() -> anyhow::Result<()> {
    let stack = slow_stack(&[]).await?;
    let alice = stack.person("alice").await?;
    let a = onboard(&stack, &alice).await?;
    // A slow turn holds the chat; what follows waits in its queue.
    let (c1, slow) = hold_the_chat(&stack, &alice, &a.chat).await?;
    let secret = alice.send_text(&a.chat, "my secret").await?;
    alice.redact(&a.chat, &secret).await?;
    let draft = alice.send_text(&a.chat, "draft").await?;
    let edit = alice.send_edit(&a.chat, &draft, "final text").await?;
    // Release the chat: the owner cancels the slow turn (after the edit, in the same order).
    stack.agent.set_chat_delay(&c1, Duration::ZERO);
    alice.send_text(&a.chat, "!cancel").await?;
    assert_eq!(answer(&stack, &alice, &a.chat, &slow).await?, "Cancelled.");

    // The edited text is what the agent answered, once.
    assert_eq!(
        answer(&stack, &alice, &a.chat, &draft).await?,
        "ref-agent ref got: final text"
    );
    // An edit of an answered message: no second answer, no turn.
    let ping = alice.send_text(&a.chat, "ping").await?;
    assert_eq!(
        answer(&stack, &alice, &a.chat, &ping).await?,
        "ref-agent ref got: ping"
    );
    let late_edit = alice.send_edit(&a.chat, &ping, "ping edited").await?;
    let reply = ask(&stack, &alice, &a.chat, "pong").await?;
    assert_eq!(reply.body, "ref-agent ref got: pong");

    assert!(
        answers_to(&stack, &alice, &a.chat, &secret)
            .await
            .is_empty(),
        "the redacted message was answered"
    );
    assert!(answers_to(&stack, &alice, &a.chat, &edit).await.is_empty());
    assert!(answers_to(&stack, &alice, &a.chat, &late_edit)
        .await
        .is_empty());
    assert_eq!(answers_to(&stack, &alice, &a.chat, &ping).await.len(), 1);
    let texts: Vec<String> = stack.agent.turns().into_iter().map(|t| t.text).collect();
    assert_eq!(
        texts,
        ["hold the chat", "final text", "ping", "pong"],
        "turns the agent ran"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_read_without_their_fallback_quote() -> anyhow::Result<()> {
    let stack = slow_stack(&[]).await?;
    let alice = stack.person("alice").await?;
    let a = onboard(&stack, &alice).await?;
    let c1 = chat_id(&alice, &a.chat).await?;
    let hello = alice.send_text(&a.chat, "hello").await?;
    let answer_id = {
        let bot = stack.bot_id().to_owned();
        alice
            .wait_for_message(
                &a.chat,
                |m| m.sender == bot && m.in_reply_to.as_ref() == Some(&hello),
                WAIT,
            )
            .await?
            .event_id
    };

    // A reply quoting `!clear`: the quote is not a command; the agent gets the reply alone.
    let quoting = alice
        .send_reply_with_fallback(&a.chat, &hello, alice.user_id(), "!clear", "thanks")
        .await?;
    let reply = answer(&stack, &alice, &a.chat, &quoting).await?;
    assert_eq!(reply, "ref-agent ref got: thanks");
    assert_eq!(chat_id(&alice, &a.chat).await?, c1, "nothing was cleared");

    // A command under a quote is a command.
    let settings = alice
        .send_reply_with_fallback(
            &a.chat,
            &answer_id,
            stack.bot_id(),
            "ref-agent ref got: hello",
            "!settings",
        )
        .await?;
    let bot = stack.bot_id().to_owned();
    let answered = alice
        .wait_for_message(
            &a.chat,
            |m| m.sender == bot && m.in_reply_to.as_ref() == Some(&settings),
            WAIT,
        )
        .await?;
    assert_eq!(answered.msgtype, "m.notice", "{}", answered.body);
    let texts: Vec<String> = stack.agent.turns().into_iter().map(|t| t.text).collect();
    assert_eq!(texts, ["hello", "thanks"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_once_and_never_answers_what_it_refused() -> anyhow::Result<()> {
    let stack = slow_stack(&[("SURFACES__LIMITS__ROOM_QUEUE_MAX", "2")]).await?;
    let alice = stack.person("alice").await?;
    let a = onboard(&stack, &alice).await?;
    let (c1, slow) = hold_the_chat(&stack, &alice, &a.chat).await?;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(alice.send_text(&a.chat, &format!("m{i}")).await?);
    }
    let full = surfaces::texts::queue_full(2);
    assert_eq!(answer(&stack, &alice, &a.chat, &sent[2]).await?, full);
    stack.agent.set_chat_delay(&c1, Duration::ZERO);
    alice.send_text(&a.chat, "!cancel").await?;
    assert_eq!(answer(&stack, &alice, &a.chat, &slow).await?, "Cancelled.");
    assert_eq!(
        answer(&stack, &alice, &a.chat, &sent[0]).await?,
        "ref-agent ref got: m0"
    );
    assert_eq!(
        answer(&stack, &alice, &a.chat, &sent[1]).await?,
        "ref-agent ref got: m1"
    );
    // The queue emptied: the chat takes messages again.
    let reply = ask(&stack, &alice, &a.chat, "later").await?;
    assert_eq!(reply.body, "ref-agent ref got: later");

    for id in &sent[3..] {
        assert!(answers_to(&stack, &alice, &a.chat, id).await.is_empty());
    }
    let notices = alice
        .messages(&a.chat)
        .await
        .into_iter()
        .filter(|m| m.sender == stack.bot_id() && m.body == full)
        .count();
    assert_eq!(notices, 1, "one notice per burst");
    let texts: Vec<String> = stack.agent.turns().into_iter().map(|t| t.text).collect();
    assert_eq!(texts, ["hold the chat", "m0", "m1", "later"]);
    Ok(())
}
