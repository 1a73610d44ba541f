//! Edits, redactions and the chat's queue in-process (issue 12, items 5 and 12): an edit of
//! a waiting message replaces it, any other edit is ignored without a reply; a redaction of
//! a waiting message withdraws it for good; only the sender's own count; a full queue
//! refuses with one notice per burst and never answers what it refused.

use std::time::Duration;

use surfaces::surface::{ChatId, MessageId, PersonId};
use surfaces::texts;
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup, WAIT};
use surfaces_testkit::reference_agent::ReferenceAgent;

use crate::support::{command, expect, person, platform_chat};

fn reference() -> Setup {
    Setup {
        agent: AgentSetup::Reference,
        ..Setup::default()
    }
}

/// Starts a slow turn in `chat` (so what follows waits in the queue); returns its id.
async fn hold(bot: &Bot, agent: &ReferenceAgent, who: &PersonId, chat: &ChatId) -> MessageId {
    agent.set_chat_delay(&platform_chat(bot, chat), Duration::from_secs(30));
    let slow = bot.world.say(who, chat, "hold the chat");
    assert!(agent.wait_for_turn_text("hold the chat", WAIT).await);
    slow
}

/// Ends the slow turn (the owner cancels it) so the queue moves on.
async fn release(
    bot: &Bot,
    agent: &ReferenceAgent,
    owner: &PersonId,
    chat: &ChatId,
    slow: &MessageId,
) {
    agent.set_chat_delay(&platform_chat(bot, chat), Duration::ZERO);
    expect(
        &command(bot, owner, chat, "!cancel").await,
        texts::CANCELLING,
    );
    assert_eq!(
        bot.answer(chat, slow).await.unwrap().text(),
        texts::TURN_CANCELLED
    );
}

/// The texts the agent was asked to answer, in order.
fn turn_texts(agent: &ReferenceAgent) -> Vec<String> {
    agent.turns().into_iter().map(|t| t.text).collect()
}

#[actix_rt::test]
async fn an_edit_of_a_waiting_message_replaces_it() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(reference(), "alice").await?;
    let agent = bot.reference()?;
    let slow = hold(&bot, agent, &alice, &chat).await;
    let draft = bot.world.say(&alice, &chat, "draft");
    let edit = bot.world.edit(&alice, &chat, &draft, "final text");
    release(&bot, agent, &alice, &chat, &slow).await;

    assert_eq!(
        bot.answer(&chat, &draft).await?.text(),
        "ref-agent ref got: final text"
    );
    // One more message round-trips, then: the edit itself was never a turn nor answered.
    assert_eq!(
        bot.ask_text(&alice, &chat, "ping").await?,
        "ref-agent ref got: ping"
    );
    assert!(
        bot.world.answers_to(&chat, &edit).is_empty(),
        "{}",
        bot.transcript(&chat)
    );
    let texts = turn_texts(agent);
    assert!(!texts.iter().any(|t| t.contains("draft")), "{texts:?}");
    assert_eq!(
        texts.iter().filter(|t| *t == "final text").count(),
        1,
        "{texts:?}"
    );
    Ok(())
}

#[actix_rt::test]
async fn an_edit_of_an_answered_message_gets_no_second_answer() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(reference(), "alice").await?;
    let agent = bot.reference()?;
    let first = bot.world.say(&alice, &chat, "hello");
    assert_eq!(
        bot.answer(&chat, &first).await?.text(),
        "ref-agent ref got: hello"
    );
    let edit = bot.world.edit(&alice, &chat, &first, "hello again");
    let edit_cmd = bot.world.edit(&alice, &chat, &first, "!clear");
    let before = platform_chat(&bot, &chat);
    assert_eq!(
        bot.ask_text(&alice, &chat, "ping").await?,
        "ref-agent ref got: ping"
    );
    assert_eq!(bot.world.answers_to(&chat, &first).len(), 1);
    assert!(bot.world.answers_to(&chat, &edit).is_empty());
    assert!(bot.world.answers_to(&chat, &edit_cmd).is_empty());
    assert_eq!(
        platform_chat(&bot, &chat),
        before,
        "an edit to !clear is no command"
    );
    assert_eq!(turn_texts(agent), ["hello", "ping"]);
    Ok(())
}

#[actix_rt::test]
async fn only_the_senders_latest_waiting_message_can_be_edited() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(reference(), "alice").await?;
    let agent = bot.reference()?;
    let bob = person("bob");
    bot.world.join(&bob, &chat);
    let slow = hold(&bot, agent, &alice, &chat).await;
    let older = bot.world.say(&alice, &chat, "older");
    let latest = bot.world.say(&alice, &chat, "latest");
    bot.world.edit(&alice, &chat, &older, "older edited");
    bot.world.edit(&bob, &chat, &latest, "bob was here");
    release(&bot, agent, &alice, &chat, &slow).await;

    assert_eq!(
        bot.answer(&chat, &older).await?.text(),
        "ref-agent ref got: older"
    );
    assert_eq!(
        bot.answer(&chat, &latest).await?.text(),
        "ref-agent ref got: latest"
    );
    Ok(())
}

#[actix_rt::test]
async fn a_redacted_waiting_message_is_never_answered() -> anyhow::Result<()> {
    let (mut bot, alice, chat) = Bot::with_person(reference(), "alice").await?;
    let bob = person("bob");
    bot.world.join(&bob, &chat);
    let slow = {
        let agent = bot.reference()?;
        let slow = hold(&bot, agent, &alice, &chat).await;
        slow
    };
    let secret = bot.world.say(&alice, &chat, "my secret");
    let kept = bot.world.say(&alice, &chat, "keep me");
    let redaction = bot.world.redact(&alice, &chat, &secret);
    // A redaction by someone else withdraws nothing.
    bot.world.redact(&bob, &chat, &kept);
    {
        let agent = bot.reference()?;
        release(&bot, agent, &alice, &chat, &slow).await;
    }
    assert_eq!(
        bot.answer(&chat, &kept).await?.text(),
        "ref-agent ref got: keep me"
    );
    assert!(
        bot.world.answers_to(&chat, &secret).is_empty(),
        "{}",
        bot.transcript(&chat)
    );
    assert!(bot.world.answers_to(&chat, &redaction).is_empty());

    // Marked done in the journal: a restart does not bring it back.
    bot.restart().await?;
    assert_eq!(
        bot.ask_text(&alice, &chat, "after").await?,
        "ref-agent ref got: after"
    );
    assert!(
        bot.world.answers_to(&chat, &secret).is_empty(),
        "{}",
        bot.transcript(&chat)
    );
    let agent = bot.reference()?;
    assert!(!turn_texts(agent).iter().any(|t| t == "my secret"));
    Ok(())
}

#[actix_rt::test]
async fn a_full_queue_refuses_once_per_burst_and_never_answers_the_refused() -> anyhow::Result<()> {
    let setup = Setup {
        extra_toml: "\n[limits]\nroom_queue_max = 2\n".to_owned(),
        ..reference()
    };
    let (mut bot, alice, chat) = Bot::with_person(setup, "alice").await?;
    let slow = {
        let agent = bot.reference()?;
        hold(&bot, agent, &alice, &chat).await
    };
    let ids: Vec<MessageId> = (0..5)
        .map(|i| bot.world.say(&alice, &chat, &format!("m{i}")))
        .collect();
    let notice = bot.answer(&chat, &ids[2]).await?;
    assert!(notice.is_notice());
    assert_eq!(notice.text(), texts::queue_full(2));
    {
        let agent = bot.reference()?;
        release(&bot, agent, &alice, &chat, &slow).await;
    }
    assert_eq!(
        bot.answer(&chat, &ids[0]).await?.text(),
        "ref-agent ref got: m0"
    );
    assert_eq!(
        bot.answer(&chat, &ids[1]).await?.text(),
        "ref-agent ref got: m1"
    );
    // The queue emptied: the chat takes messages again.
    assert_eq!(
        bot.ask_text(&alice, &chat, "later").await?,
        "ref-agent ref got: later"
    );
    let full = texts::queue_full(2);
    let notices = bot
        .world
        .bot_posts(&chat)
        .into_iter()
        .filter(|p| p.text() == full)
        .count();
    assert_eq!(
        notices,
        1,
        "one notice per burst: {}",
        bot.transcript(&chat)
    );
    for id in &ids[3..] {
        assert!(
            bot.world.answers_to(&chat, id).is_empty(),
            "{}",
            bot.transcript(&chat)
        );
    }
    // Refused messages were marked done: a restart does not answer them either.
    bot.restart().await?;
    assert_eq!(
        bot.ask_text(&alice, &chat, "after").await?,
        "ref-agent ref got: after"
    );
    for id in &ids[2..] {
        assert!(
            bot.world
                .answers_to(&chat, id)
                .iter()
                .all(|p| p.is_notice()),
            "{}",
            bot.transcript(&chat)
        );
    }
    let agent = bot.reference()?;
    assert!(!turn_texts(agent)
        .iter()
        .any(|t| ["m2", "m3", "m4"].contains(&t.as_str())));
    Ok(())
}

#[actix_rt::test]
async fn a_stop_finishes_the_turn_running_and_keeps_the_messages_waiting() -> anyhow::Result<()> {
    let (mut bot, alice, chat) = Bot::with_person(reference(), "alice").await?;
    let (running, waiting) = {
        let agent = bot.reference()?;
        agent.set_chat_delay(&platform_chat(&bot, &chat), Duration::from_millis(1000));
        let running = bot.world.say(&alice, &chat, "running");
        assert!(agent.wait_for_turn_text("running", WAIT).await);
        (running, bot.world.say(&alice, &chat, "waiting"))
    };
    // Once "waiting" is journaled (then handed to the room actor), stop.
    let journal = surfaces::journal::Journal::open(&bot.view()?.store)?;
    surfaces_testkit::wait::wait_until(WAIT, surfaces_testkit::wait::POLL, || {
        let known = journal.is_known(waiting.as_str()).unwrap_or(false);
        async move { known.then_some(()) }
    })
    .await?;
    drop(journal);
    assert_eq!(bot.stop().await?, std::process::ExitCode::SUCCESS);
    // The turn in flight was answered before the exit; the waiting message was not started.
    assert_eq!(
        bot.world.answers_to(&chat, &running)[0].text(),
        "ref-agent ref got: running"
    );
    assert!(
        bot.world.answers_to(&chat, &waiting).is_empty(),
        "{}",
        bot.transcript(&chat)
    );
    // The next start answers it, once.
    bot.start_again().await?;
    assert_eq!(
        bot.answer(&chat, &waiting).await?.text(),
        "ref-agent ref got: waiting"
    );
    assert_eq!(
        bot.ask_text(&alice, &chat, "after").await?,
        "ref-agent ref got: after"
    );
    assert_eq!(bot.world.answers_to(&chat, &waiting).len(), 1);
    assert_eq!(bot.world.answers_to(&chat, &running).len(), 1);
    Ok(())
}
