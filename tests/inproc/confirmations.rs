//! Confirmations in-process: `!archive` asked and answered, a question belonging to the
//! person asked, surviving a restart, expiring; the agent's own questions answered with
//! `!yes` / `!no`.

use surfaces::texts;
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup};
use surfaces_testkit::reference_agent::Endpoint;

use crate::support::{command, expect, person, platform_chat};

#[actix_rt::test]
async fn archive_is_confirmed_by_the_person_asked_and_survives_a_restart() -> anyhow::Result<()> {
    let (mut bot, alice, chat1) = Bot::with_person(Setup::default(), "alice").await?;
    command(&bot, &alice, &chat1, "!new").await;
    let chat2 = bot.world.chats_of(&alice)[1].clone();
    let home = bot.world.home_of(&alice).expect("a home");

    // !archive then !no: the chat stays.
    expect(
        &command(&bot, &alice, &chat2, "!archive").await,
        "Archive this chat?",
    );
    expect(
        &command(&bot, &alice, &chat2, "!no").await,
        texts::ARCHIVE_KEPT,
    );

    // !archive; bob, a member too, answers !yes: not his question.
    let asked = command(&bot, &alice, &chat1, "!archive").await;
    expect(&asked, "Answer `!yes` or `!no` (within 10 minutes)");
    let bob = person("bob");
    bot.world
        .edit_chat(&chat1, |c| c.members.insert(bob.clone()));
    expect(
        &command(&bot, &bob, &chat1, "!yes").await,
        texts::NOTHING_TO_CONFIRM,
    );
    expect(
        &command(&bot, &alice, &chat1, "!settings").await,
        "Waiting for your answer: archive this chat",
    );

    // The question survives a restart; !yes archives (binding, home) and the chat says so.
    bot.restart().await?;
    expect(&command(&bot, &alice, &chat1, "!yes").await, "Archived.");
    let facts = bot.world.facts(&chat1).expect("the chat");
    assert!(facts.binding.is_some_and(|b| b.archived));
    assert_eq!(facts.parent, None, "left the home");
    let home_state = bot.world.chat(&home).expect("the home");
    assert!(!home_state.children.contains(&chat1));
    assert!(home_state.children.contains(&chat2));
    expect(
        &command(&bot, &alice, &chat1, "are you there?").await,
        "This chat is archived",
    );

    // After another restart, the archived chat still says so; the other answers.
    bot.restart().await?;
    expect(
        &command(&bot, &alice, &chat1, "and now?").await,
        "This chat is archived",
    );
    assert_eq!(
        bot.ask_text(&alice, &chat2, "and here?").await?,
        "echo: and here?"
    );
    Ok(())
}

#[actix_rt::test]
async fn an_unanswered_question_expires() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(
        Setup {
            extra_toml: "\n[commands]\nconfirmation_ttl_secs = 1\n".to_owned(),
            ..Setup::default()
        },
        "alice",
    )
    .await?;
    let asked = command(&bot, &alice, &chat, "!archive").await;
    expect(&asked, "(within 1 second)");
    let seen = bot.world.bot_posts(&chat).len();
    let expired = bot
        .bot_says(&chat, seen, texts::CONFIRMATION_EXPIRED)
        .await?;
    assert!(expired.is_notice());
    expect(
        &command(&bot, &alice, &chat, "!yes").await,
        texts::NOTHING_TO_CONFIRM,
    );
    assert!(bot
        .world
        .facts(&chat)
        .and_then(|f| f.binding)
        .is_some_and(|b| !b.archived));
    assert_eq!(
        bot.ask_text(&alice, &chat, "still here").await?,
        "echo: still here"
    );
    Ok(())
}

#[actix_rt::test]
async fn the_agents_questions_are_answered_with_yes_and_no() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(
        Setup {
            agent: AgentSetup::Reference,
            ..Setup::default()
        },
        "alice",
    )
    .await?;
    let agent = bot.reference()?;
    let c1 = platform_chat(&bot, &chat);

    agent.confirm_next("Delete 3 files?");
    let question = bot.ask(&alice, &chat, "delete the files").await?;
    expect(question.text(), "Reference asks: Delete 3 files?");
    expect(question.text(), "Answer `!yes` or `!no`");
    expect(
        &command(&bot, &alice, &chat, "!settings").await,
        "Waiting for your answer: Delete 3 files?",
    );
    // The agent's answer is the rest of its turn: a reply in its voice, not a notice.
    let done = bot.ask(&alice, &chat, "!yes").await?;
    assert_eq!(done.text(), "ref-agent ref did: delete the files");
    assert!(!done.is_notice());
    let confirms = agent.requests_to(Endpoint::Confirm, &c1);
    assert_eq!(confirms.len(), 1, "{confirms:?}");
    assert_eq!(confirms[0].body["approved"], true);
    expect(
        &command(&bot, &alice, &chat, "!yes").await,
        texts::NOTHING_TO_CONFIRM,
    );

    agent.confirm_next("Drop the table?");
    let question = bot.ask(&alice, &chat, "drop the table").await?;
    expect(question.text(), "Reference asks: Drop the table?");
    let declined = bot.ask_text(&alice, &chat, "!no").await?;
    assert_eq!(declined, "ref-agent ref did not: drop the table");
    let approved: Vec<_> = agent
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::Confirm)
        .map(|r| r.body["approved"].clone())
        .collect();
    assert_eq!(
        approved,
        vec![serde_json::json!(true), serde_json::json!(false)]
    );
    Ok(())
}
