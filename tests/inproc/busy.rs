//! A busy chat in-process: messages queued behind a slow turn answered in order, `!cancel`
//! stopping the turn at once, other chats unaffected, and an agent that fails.

use std::time::{Duration, Instant};

use surfaces::runtime::presence::TYPING_AFTER;
use surfaces::texts;
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup};
use surfaces_testkit::reference_agent::{Endpoint, Fault, Script};
use surfaces_testkit::wait::POLL;

use crate::support::{command, expect, platform_chat};

fn reference() -> Setup {
    Setup {
        agent: AgentSetup::Reference,
        ..Setup::default()
    }
}

#[actix_rt::test]
async fn cancel_stops_the_turn_in_flight_and_the_queue_goes_on() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(reference(), "alice").await?;
    let agent = bot.reference()?;
    let (bob, bob_chat) = bot.onboard("bob").await?;
    let c1 = platform_chat(&bot, &chat);

    agent.set_chat_delay(&c1, Duration::from_secs(20));
    let slow = bot.world.say(&alice, &chat, "a long task");
    let queued = bot.world.say(&alice, &chat, "queued behind it");
    assert!(
        agent
            .wait_for_turn_text("a long task", surfaces_testkit::inproc::WAIT)
            .await
    );
    // Another person's chat is not held up by alice's slow turn.
    assert_eq!(
        bot.ask_text(&bob, &bob_chat, "quick").await?,
        "ref-agent ref got: quick"
    );

    // The running turn keeps its delay; the next one is quick.
    agent.set_chat_delay(&c1, Duration::ZERO);
    let started = Instant::now();
    expect(
        &command(&bot, &alice, &chat, "!cancel").await,
        texts::CANCELLING,
    );
    let cancelled = bot.answer(&chat, &slow).await?;
    assert!(cancelled.is_notice());
    assert_eq!(cancelled.text(), texts::TURN_CANCELLED);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancelled at once"
    );
    let turn_id = agent
        .turns()
        .into_iter()
        .find(|t| t.text == "a long task")
        .map(|t| t.turn_id)
        .expect("the slow turn");
    let cancels = agent.requests_to(Endpoint::Cancel, &c1);
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    assert!(cancels[0]
        .raw_path
        .ends_with(&format!("/turns/{turn_id}/cancel")));

    // The queued message runs next.
    let answer = bot.answer(&chat, &queued).await?;
    assert_eq!(answer.text(), "ref-agent ref got: queued behind it");
    Ok(())
}
#[actix_rt::test]
async fn queued_messages_are_answered_in_order_after_a_slow_turn() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(reference(), "alice").await?;
    let agent = bot.reference()?;
    // Long enough for "typing…" to show (a quicker answer needs none).
    agent.set_delay(TYPING_AFTER + Duration::from_millis(300));
    let ids: Vec<_> = (0..4)
        .map(|i| bot.world.say(&alice, &chat, &format!("q{i}")))
        .collect();
    assert!(
        agent
            .wait_until(surfaces_testkit::inproc::WAIT, |a| !a.turns().is_empty())
            .await
    );
    // While the agent works, the chat shows that the bot is typing; not after.
    surfaces_testkit::wait::wait_until(surfaces_testkit::inproc::WAIT, POLL, || {
        let typing = bot.world.chat(&chat).is_some_and(|c| c.typing);
        async move { typing.then_some(()) }
    })
    .await?;
    for id in &ids {
        bot.answer(&chat, id).await?;
    }
    surfaces_testkit::wait::wait_until(surfaces_testkit::inproc::WAIT, POLL, || {
        let typing = bot.world.chat(&chat).is_some_and(|c| c.typing);
        async move { (!typing).then_some(()) }
    })
    .await?;
    let order: Vec<String> = agent.turns().into_iter().map(|t| t.text).collect();
    assert_eq!(
        order,
        vec!["q0", "q1", "q2", "q3"],
        "one turn at a time, in order"
    );
    Ok(())
}

#[actix_rt::test]
async fn an_agent_that_fails_gets_a_notice_and_the_chat_goes_on() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(reference(), "alice").await?;
    let agent = bot.reference()?;

    // (a fault of the transport, or none, and the agent's own error; what the notice says)
    let table: &[(Option<Fault>, Option<Script>, &str)] = &[
        (
            Some(Fault::Status {
                status: 400,
                retry_after: None,
            }),
            None,
            "Reference",
        ),
        (
            None,
            Some(Script::Error {
                code: "boom".into(),
                message: "it broke".into(),
            }),
            "it broke",
        ),
    ];
    for (i, (fault, script, needle)) in table.iter().enumerate() {
        if let Some(fault) = fault {
            agent.push_fault(fault.clone());
        }
        if let Some(script) = script {
            agent.push_script(script.clone());
        }
        let answer = bot.ask(&alice, &chat, &format!("try {i}")).await?;
        assert!(answer.is_notice(), "{i}: {answer:?}");
        expect(answer.text(), needle);
        agent.clear_faults();
    }
    agent.go_down().await;
    let down = bot.ask(&alice, &chat, "hello?").await?;
    assert!(down.is_notice());
    expect(down.text(), "Reference is not answering right now");
    expect(down.text(), "Please send it again");
    agent.come_up().await;
    assert_eq!(
        bot.ask_text(&alice, &chat, "back").await?,
        "ref-agent ref got: back"
    );
    Ok(())
}

/// Issue 14 item 6: a message taken gets a read receipt at once; one waiting behind a turn
/// that runs long gets a notice with its place in line (once per turn), then its answer.
#[actix_rt::test]
async fn a_waiting_message_is_seen_and_told_it_is_queued() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(reference(), "alice").await?;
    let agent = bot.reference()?;
    let c1 = platform_chat(&bot, &chat);
    let wait = surfaces::runtime::room::QUEUED_NOTICE_AFTER;
    agent.set_chat_delay(&c1, wait + Duration::from_secs(3));
    let slow = bot.world.say(&alice, &chat, "a long task");
    let first = bot.world.say(&alice, &chat, "first behind it");
    let second = bot.world.say(&alice, &chat, "second behind it");
    let read = || bot.world.chat(&chat).and_then(|c| c.read_up_to);
    surfaces_testkit::wait::wait_until(surfaces_testkit::inproc::WAIT, POLL, || {
        let seen = read() == Some(second.clone());
        async move { seen.then_some(()) }
    })
    .await
    .map_err(|e| e.context(format!("read up to {:?}", read())))?;
    let told = bot.answer(&chat, &first).await?;
    expect(told.text(), "yours is next");
    assert!(told.is_notice());
    // The turns after the long one are quick.
    agent.set_chat_delay(&c1, Duration::ZERO);
    let answered = bot.answer(&chat, &slow).await?;
    expect(answered.text(), "a long task");
    let answered = bot.answers(&chat, &first, 2).await?;
    expect(answered[1].text(), "first behind it");
    assert!(
        bot.world
            .answers_to(&chat, &second)
            .first()
            .is_none_or(|p| !p.is_notice()),
        "once per turn: {}",
        bot.transcript(&chat)
    );
    Ok(())
}

/// Issue 17 item 4: a message answered at once costs the messenger no read receipt and no
/// "typing…" (the reply marks it read); one whose turn runs longer gets both.
#[actix_rt::test]
async fn a_quick_answer_needs_no_receipt_and_no_typing() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(reference(), "alice").await?;
    let agent = bot.reference()?;
    let c1 = platform_chat(&bot, &chat);
    let quick = bot.world.say(&alice, &chat, "quick");
    bot.answer(&chat, &quick).await?;
    // A slow turn next: its receipt is due after the quick message's was decided.
    agent.set_chat_delay(&c1, TYPING_AFTER * 4);
    let slow = bot.world.say(&alice, &chat, "slow");
    let receipts = || {
        bot.world
            .chat(&chat)
            .map(|c| c.receipts)
            .unwrap_or_default()
    };
    surfaces_testkit::wait::wait_until(surfaces_testkit::inproc::WAIT, POLL, || {
        let seen = receipts().contains(&slow);
        async move { seen.then_some(()) }
    })
    .await
    .map_err(|e| e.context(format!("receipts {:?}", receipts())))?;
    assert_eq!(
        receipts(),
        vec![slow.clone()],
        "the quick one was marked read by its reply"
    );
    surfaces_testkit::wait::wait_until(surfaces_testkit::inproc::WAIT, POLL, || {
        let typing = bot.world.chat(&chat).is_some_and(|c| c.typing);
        async move { typing.then_some(()) }
    })
    .await?;
    bot.answer(&chat, &slow).await?;
    let starts = bot.world.chat(&chat).map(|c| c.typing_starts);
    assert_eq!(starts, Some(1), "typing shown for the slow turn only");
    Ok(())
}
