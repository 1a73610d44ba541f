//! Owner-only commands in-process (issue 12, item 4): a member of someone else's chat may
//! not act on its owner's conversation; the owner and admins may; `!cancel` is the owner's
//! or the person whose turn runs.

use std::time::Duration;

use surfaces::texts;
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup};
use surfaces_testkit::reference_agent::Endpoint;

use crate::support::{command, expect, person, platform_chat};

fn reference() -> Setup {
    Setup {
        agent: AgentSetup::Reference,
        ..Setup::default()
    }
}

#[actix_rt::test]
async fn members_cannot_run_the_owners_commands() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(reference(), "alice").await?;
    let agent = bot.reference()?;
    let bob = person("bob");
    bot.world.join(&bob, &chat);
    let before = platform_chat(&bot, &chat);
    let name = bot.world.chat(&chat).and_then(|c| c.name);

    for line in [
        "!clear",
        "!reset",
        "!archive",
        "!rename Bob's now",
        "!load snap",
        "!save snap",
        "!context",
        "!agent echo",
    ] {
        expect(&command(&bot, &bob, &chat, line).await, texts::OWNER_ONLY);
    }
    // Nothing of alice's changed: same conversation, name, agent, not archived.
    assert_eq!(platform_chat(&bot, &chat), before);
    assert_eq!(bot.world.chat(&chat).and_then(|c| c.name), name);
    for endpoint in [
        Endpoint::Context,
        Endpoint::Snapshot,
        Endpoint::Restore,
        Endpoint::Delete,
    ] {
        assert_eq!(
            agent.request_count(endpoint),
            0,
            "{endpoint:?} called for bob"
        );
    }
    // Open commands still answer bob.
    expect(&command(&bot, &bob, &chat, "!help").await, "!new");
    // And bob's plain messages still reach the agent (the room is shared).
    assert_eq!(
        bot.ask_text(&bob, &chat, "hello from bob").await?,
        "ref-agent ref got: hello from bob"
    );
    // The owner may.
    let cleared = command(&bot, &alice, &chat, "!clear").await;
    assert!(!cleared.contains(texts::OWNER_ONLY), "{cleared}");
    assert_ne!(
        platform_chat(&bot, &chat),
        before,
        "alice's !clear started afresh"
    );
    Ok(())
}

#[actix_rt::test]
async fn admins_may_run_the_owners_commands() -> anyhow::Result<()> {
    let (bot, _alice, chat) = Bot::with_person(reference(), "alice").await?;
    let admin = person("admin");
    bot.world.join(&admin, &chat);
    let before = platform_chat(&bot, &chat);
    let cleared = command(&bot, &admin, &chat, "!clear").await;
    assert!(!cleared.contains(texts::OWNER_ONLY), "{cleared}");
    assert_ne!(platform_chat(&bot, &chat), before);
    Ok(())
}

#[actix_rt::test]
async fn only_the_owner_or_the_turns_sender_may_cancel_it() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(reference(), "alice").await?;
    let agent = bot.reference()?;
    let (bob, carol) = (person("bob"), person("carol"));
    bot.world.join(&bob, &chat);
    bot.world.join(&carol, &chat);
    let c1 = platform_chat(&bot, &chat);

    // Bob's slow turn: carol may not cancel it, bob may.
    agent.set_chat_delay(&c1, Duration::from_secs(20));
    let slow = bot.world.say(&bob, &chat, "bob's long task");
    assert!(
        agent
            .wait_for_turn_text("bob's long task", surfaces_testkit::inproc::WAIT)
            .await
    );
    expect(
        &command(&bot, &carol, &chat, "!cancel").await,
        texts::CANCEL_NOT_YOURS,
    );
    expect(
        &command(&bot, &bob, &chat, "!cancel").await,
        texts::CANCELLING,
    );
    assert_eq!(
        bot.answer(&chat, &slow).await?.text(),
        texts::TURN_CANCELLED
    );

    // The owner may cancel anyone's turn.
    let slow = bot.world.say(&bob, &chat, "another long task");
    assert!(
        agent
            .wait_for_turn_text("another long task", surfaces_testkit::inproc::WAIT)
            .await
    );
    expect(
        &command(&bot, &alice, &chat, "!cancel").await,
        texts::CANCELLING,
    );
    assert_eq!(
        bot.answer(&chat, &slow).await?.text(),
        texts::TURN_CANCELLED
    );
    Ok(())
}
