//! Per-person limits in-process: a flood is cut at the person's burst, they are told once,
//! what was refused never comes back (not after a restart either), everyone else is served;
//! `!new` stops at the cap of chats per person.

use surfaces::metrics::{Exposition, Observed};
use surfaces::surface::MessageId;
use surfaces::texts;
use surfaces_testkit::inproc::{Bot, Setup, WAIT};
use surfaces_testkit::wait::{wait_until, POLL};

use crate::support::{command, expect};

/// A burst of 5 and a refill so slow that none comes back during the test.
const LIMITS: &str = "[limits]\nmessages_burst = 5\nmessages_per_minute = 1\n";
const BURST: usize = 5;
const FLOOD: usize = 15;

fn limited() -> Setup {
    Setup {
        extra_toml: LIMITS.to_owned(),
        ..Setup::default()
    }
}

#[actix_rt::test]
async fn a_flood_is_cut_at_the_burst_told_once_and_never_replayed() -> anyhow::Result<()> {
    let (mut bot, alice, chat) = Bot::with_person(limited(), "alice").await?;
    let (bob, bob_chat) = bot.onboard("bob").await?;

    let sent: Vec<MessageId> = (0..FLOOD)
        .map(|i| bot.world.say(&alice, &chat, &format!("flood {i}")))
        .collect();
    // The first BURST are answered, in order; the next one gets the one notice.
    for (i, id) in sent.iter().take(BURST).enumerate() {
        assert_eq!(
            bot.answer(&chat, id).await?.text(),
            format!("echo: flood {i}")
        );
    }
    let told = bot.answer(&chat, &sent[BURST]).await?;
    assert!(told.is_notice(), "{told:?}");
    assert_eq!(told.text(), texts::limits::rate_limited(5, 1));

    // Bob is not limited by alice's flood.
    assert_eq!(bot.ask_text(&bob, &bob_chat, "hello").await?, "echo: hello");

    // Alice's refused messages were handled before bob's (one intake, in order): none of
    // them got an answer, and the notice was said once.
    let answered = |bot: &Bot| -> Vec<usize> {
        (BURST + 1..FLOOD)
            .filter(|i| !bot.world.answers_to(&chat, &sent[*i]).is_empty())
            .collect()
    };
    assert_eq!(
        answered(&bot),
        Vec::<usize>::new(),
        "{}",
        bot.transcript(&chat)
    );
    let notices = bot
        .world
        .bot_posts(&chat)
        .into_iter()
        .filter(|p| p.text() == told.text())
        .count();
    assert_eq!(notices, 1, "{}", bot.transcript(&chat));
    let metrics = bot
        .view()?
        .metrics
        .encode(&Observed::default(), Exposition::Prometheus)?;
    expect(
        &metrics,
        &format!(
            "surfaces_messages_total{{surface=\"memory\",outcome=\"limited\"}} {}",
            FLOOD - BURST
        ),
    );

    // Refused means done: a restart replays none of them.
    let posts_before = bot.world.bot_posts(&chat).len();
    bot.restart().await?;
    assert_eq!(bot.ask_text(&bob, &bob_chat, "after").await?, "echo: after");
    assert_eq!(
        answered(&bot),
        Vec::<usize>::new(),
        "{}",
        bot.transcript(&chat)
    );
    assert_eq!(
        bot.world.bot_posts(&chat).len(),
        posts_before,
        "{}",
        bot.transcript(&chat)
    );
    Ok(())
}

#[actix_rt::test]
async fn admins_are_not_rate_limited() -> anyhow::Result<()> {
    let (bot, admin, chat) = Bot::with_person(limited(), "admin").await?;
    let sent: Vec<MessageId> = (0..BURST * 2)
        .map(|i| bot.world.say(&admin, &chat, &format!("m{i}")))
        .collect();
    for (i, id) in sent.iter().enumerate() {
        assert_eq!(bot.answer(&chat, id).await?.text(), format!("echo: m{i}"));
    }
    Ok(())
}

#[actix_rt::test]
async fn new_stops_at_the_cap_of_chats_per_person() -> anyhow::Result<()> {
    let setup = Setup {
        extra_toml: "[limits]\nmax_chats_per_person = 2\n".to_owned(),
        ..Setup::default()
    };
    let (bot, alice, chat) = Bot::with_person(setup, "alice").await?;
    let created = command(&bot, &alice, &chat, "!new second").await;
    assert!(!created.contains("already"), "{created}");
    wait_until(WAIT, POLL, || {
        let n = bot.world.chats_of(&alice).len();
        async move { (n == 2).then_some(()) }
    })
    .await?;
    expect(
        &command(&bot, &alice, &chat, "!new third").await,
        &texts::limits::too_many_chats(2),
    );
    assert_eq!(bot.world.chats_of(&alice).len(), 2);
    Ok(())
}
