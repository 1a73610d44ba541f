//! The message path: onboarding, replies in order and exactly once, strangers and unmanaged
//! chats, send failures, restarts (messages sent while down, nothing answered twice), the
//! store rebuilt from the messenger, and the exit code of revoked credentials.

use std::process::ExitCode;

use surfaces::retry::RetryKind;
use surfaces::surface::EXIT_INVALID_CREDENTIALS;
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup, WAIT};
use surfaces_testkit::wait::{wait_until, POLL};

use crate::support::{command, expect, platform_chat};

#[actix_rt::test]
async fn onboarding_makes_a_home_and_a_first_chat_once() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(Setup::default(), "alice").await?;

    let home = bot.world.home_of(&alice).expect("a home for alice");
    let facts = bot.world.facts(&chat).expect("the chat");
    assert_eq!(facts.parent.as_ref(), Some(&home));
    let binding = facts.binding.expect("a binding stored with the chat");
    assert_eq!(binding.owner, alice.as_str());
    assert_eq!(binding.agent_id, "echo");
    assert!(!binding.platform_chat_id.is_empty());
    let welcome = &bot.world.bot_posts(&chat)[0];
    expect(welcome.text(), "This chat is with **Echo**");
    assert!(welcome.is_notice());

    // A second invite from alice reuses her home and chat.
    let dm2 = bot.world.invite_bot(&alice);
    bot.bot_says(&dm2, 0, chat.as_str()).await?;
    assert_eq!(bot.world.chats_of(&alice), vec![chat]);
    Ok(())
}

#[actix_rt::test]
async fn replies_come_once_and_in_order() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(Setup::default(), "alice").await?;
    let (bob, bob_chat) = bot.onboard("bob").await?;

    let sent: Vec<_> = (0..20)
        .map(|i| bot.world.say(&alice, &chat, &format!("message {i}")))
        .collect();
    let bobs = bot.world.say(&bob, &bob_chat, "hi from bob");
    for id in &sent {
        bot.answer(&chat, id).await?;
    }
    bot.answer(&bob_chat, &bobs).await?;

    let replies: Vec<_> = bot
        .world
        .bot_posts(&chat)
        .into_iter()
        .filter(|p| p.reply_to.is_some())
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("echo: message {i}")).collect();
    let got: Vec<String> = replies.iter().map(|p| p.text().to_owned()).collect();
    assert_eq!(got, expected, "each message answered once, in order");
    for (reply, id) in replies.iter().zip(&sent) {
        assert_eq!(reply.reply_to.as_ref(), Some(id));
        assert!(!reply.is_notice(), "the agent speaks in its own voice");
    }
    assert_eq!(bot.world.answers_to(&bob_chat, &bobs).len(), 1);
    Ok(())
}

#[actix_rt::test]
async fn strangers_are_declined_and_unmanaged_chats_told_once() -> anyhow::Result<()> {
    let bot = Bot::start(Setup::default()).await?;
    // A person of another messenger domain is not allowed (access.allowed_homeservers).
    let stranger = surfaces::surface::PersonId::new("@mallory:elsewhere");
    let dm = bot.world.invite_bot(&stranger);
    wait_until(WAIT, POLL, || {
        let pending = bot.world.chat(&dm).is_some_and(|c| !c.invited.is_empty());
        async move { (!pending).then_some(()) }
    })
    .await?;
    let state = bot.world.chat(&dm).expect("the chat");
    assert!(!state.members.contains(bot.world.bot()), "declined");
    assert!(bot.world.home_of(&stranger).is_none());

    // A chat the bot is in but does not manage: one explanation, however many messages.
    let (alice, _) = bot.onboard("alice").await?;
    let stray = bot.world.invite_bot(&alice);
    // Nothing new is made for her: she is told where her Space is.
    bot.bot_says(&stray, 0, "Your Space is already here")
        .await?;
    let first = bot.world.say(&alice, &stray, "hello?");
    let second = bot.world.say(&alice, &stray, "anyone?");
    let explained = bot
        .bot_says(&stray, 0, "I answer in the chats of [your Space]")
        .await?;
    assert!(explained.is_notice());
    // Both were read (a probe in alice's chat is answered after them).
    let chat = bot.world.chats_of(&alice)[0].clone();
    let probe = bot.world.say(&alice, &chat, "probe");
    bot.answer(&chat, &probe).await?;
    assert!(bot.world.answers_to(&stray, &first).is_empty());
    assert!(bot.world.answers_to(&stray, &second).is_empty());
    let explanations = bot
        .world
        .bot_posts(&stray)
        .iter()
        .filter(|p| p.text().contains("I answer in the chats of"))
        .count();
    assert_eq!(explanations, 1, "told once");
    Ok(())
}

#[actix_rt::test]
async fn a_failed_send_is_retried_and_a_refused_one_does_not_stop_the_chat() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(Setup::default(), "alice").await?;

    bot.world.faults(|f| {
        f.sends.extend([
            RetryKind::Network,
            RetryKind::Transient { retry_after: None },
        ])
    });
    let id = bot.world.say(&alice, &chat, "through the storm");
    let reply = bot.answer(&chat, &id).await?;
    assert_eq!(reply.text(), "echo: through the storm");

    // The next message is answered normally, once; nothing was doubled.
    let next = bot.ask_text(&alice, &chat, "calm again").await?;
    assert_eq!(next, "echo: calm again");
    assert_eq!(bot.world.answers_to(&chat, &id).len(), 1);

    // A reply the messenger refuses for good is not retried forever: the person is told
    // (tests/inproc/long_replies.rs has the rest); the chat goes on.
    bot.world
        .faults(|f| f.sends.push_back(RetryKind::Permanent));
    let refused = bot.world.say(&alice, &chat, "refused");
    let after = bot.ask_text(&alice, &chat, "after the refusal").await?;
    assert_eq!(after, "echo: after the refusal");
    let answers = bot.world.answers_to(&chat, &refused);
    assert_eq!(answers.len(), 1, "{}", bot.transcript(&chat));
    assert!(answers[0].is_notice());
    Ok(())
}

#[actix_rt::test]
async fn messages_sent_while_down_are_answered_once_after_a_restart() -> anyhow::Result<()> {
    let (mut bot, alice, chat) = Bot::with_person(Setup::default(), "alice").await?;
    let before = bot.world.say(&alice, &chat, "before");
    bot.answer(&chat, &before).await?;

    let code = bot.stop().await?;
    assert_eq!(code, ExitCode::SUCCESS);
    let while_down: Vec<_> = (0..5)
        .map(|i| bot.world.say(&alice, &chat, &format!("while down {i}")))
        .collect();
    bot.start_again().await?;
    for id in &while_down {
        bot.answer(&chat, id).await?;
    }
    let after = bot.ask_text(&alice, &chat, "after").await?;
    assert_eq!(after, "echo: after");
    assert_eq!(
        bot.world.answers_to(&chat, &before).len(),
        1,
        "not answered again"
    );
    for id in &while_down {
        assert_eq!(bot.world.answers_to(&chat, id).len(), 1);
    }
    Ok(())
}

#[actix_rt::test]
async fn the_store_is_rebuilt_from_the_messenger_with_the_chosen_agent() -> anyhow::Result<()> {
    let (mut bot, alice, chat) = Bot::with_person(
        Setup {
            agent: AgentSetup::Reference,
            ..Setup::default()
        },
        "alice",
    )
    .await?;
    let c1 = platform_chat(&bot, &chat);
    bot.ask(&alice, &chat, "hello").await?;
    let selected = command(&bot, &alice, &chat, "!agent echo").await;
    expect(&selected, "New chats will use Echo");
    let home = bot.world.home_of(&alice).expect("a home");
    let prefs = bot
        .world
        .facts(&home)
        .and_then(|f| f.home)
        .expect("home facts")
        .prefs;
    assert_eq!(
        prefs.selected_agent.as_deref(),
        Some("echo"),
        "kept in the home"
    );

    // Answered messages are not answered again when the journal is gone, either.
    bot.restart_without_store().await?;
    let reply = bot.ask_text(&alice, &chat, "still you?").await?;
    assert_eq!(reply, "ref-agent ref got: still you?");
    let agent = bot.reference()?;
    assert!(
        agent.turns().iter().all(|t| t.chat == c1),
        "same conversation"
    );
    assert_eq!(
        agent.turns().iter().filter(|t| t.text == "hello").count(),
        1
    );

    // The choice survived: a new chat is with Echo.
    let made = command(&bot, &alice, &chat, "!new").await;
    expect(&made, "New chat with Echo ready");
    let chats = bot.world.chats_of(&alice);
    assert_eq!(chats.len(), 2);
    let binding = bot
        .world
        .facts(&chats[1])
        .and_then(|f| f.binding)
        .expect("bound");
    assert_eq!(binding.agent_id, "echo");
    let list = command(&bot, &alice, &chat, "!agent").await;
    expect(
        &list,
        "- `echo` Echo: Repeats what you say (selected for new chats)",
    );
    Ok(())
}

#[actix_rt::test]
async fn revoked_credentials_stop_the_process_with_exit_code_3() -> anyhow::Result<()> {
    let (mut bot, alice, chat) = Bot::with_person(Setup::default(), "alice").await?;
    bot.ask(&alice, &chat, "hello").await?;
    bot.world.faults(|f| f.revoked = true);
    bot.world.say(&alice, &chat, "anyone?");
    let code = bot.exit_code().await?;
    assert_eq!(code, ExitCode::from(EXIT_INVALID_CREDENTIALS));

    // And a start with revoked credentials stops at once with the same code.
    let started = bot.start_again().await;
    assert!(started.is_err(), "started with revoked credentials");
    let code = bot.exit_code().await?;
    assert_eq!(code, ExitCode::from(EXIT_INVALID_CREDENTIALS));
    Ok(())
}

#[actix_rt::test]
async fn a_person_the_policy_does_not_allow_is_ignored_in_a_managed_chat() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(Setup::default(), "alice").await?;
    let stranger = surfaces::surface::PersonId::new("@mallory:elsewhere");
    bot.world
        .edit_chat(&chat, |c| c.members.insert(stranger.clone()));
    let ignored = bot.world.say(&stranger, &chat, "let me in");
    let probe = bot.ask_text(&alice, &chat, "probe").await?;
    assert_eq!(probe, "echo: probe");
    assert!(bot.world.answers_to(&chat, &ignored).is_empty());
    Ok(())
}
