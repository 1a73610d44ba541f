//! Issue 12 items 1, 2, 3, 13 in process: reconciliation believes only what the bot wrote,
//! one bad room does not stop start-up, forged numbers do not block the counters, and only
//! direct chats from allowed people are joined — strangers' invites declined beside
//! onboarding, not in front of it.

use std::time::{Duration, Instant};

use surfaces::surface::{Binding, ChatId, PersonId};
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup, WAIT};
use surfaces_testkit::wait::{wait_until, POLL};

use crate::support::{command, expect, person, platform_chat};

/// Rooms the start-up reconciliation rejected / could not handle, as `/status` lists them.
fn reconciled(bot: &Bot) -> (Vec<String>, Vec<String>) {
    let view = bot.view().expect("running");
    let report = view.reconciliation.lock();
    let report = report.as_ref().expect("reconciled");
    (
        report.rejected.iter().map(|r| r.room_id.clone()).collect(),
        report.failed.iter().map(|r| r.room_id.clone()).collect(),
    )
}

/// Waits for the bot's first post in `chat`.
async fn first_bot_post(
    bot: &Bot,
    chat: &ChatId,
) -> anyhow::Result<surfaces_testkit::memory::Post> {
    wait_until(WAIT, POLL, || {
        let post = bot.world.bot_posts(chat).first().cloned();
        async move { post }
    })
    .await
}

#[actix_rt::test]
async fn a_forged_binding_is_never_adopted_with_or_without_the_store() -> anyhow::Result<()> {
    let setup = Setup {
        agent: AgentSetup::Reference,
        ..Setup::default()
    };
    let (mut bot, alice, chat) = Bot::with_person(setup, "alice").await?;
    let (mallory, _) = bot.onboard("mallory").await?;
    bot.ask(&alice, &chat, "hello").await?;
    let victim = bot
        .world
        .chat(&chat)
        .and_then(|c| c.binding)
        .expect("bound");

    // Mallory's own room, bound by her to Alice's conversation (Alice invited, so the
    // owner is a member).
    let forged = bot
        .world
        .forge_chat(&mallory, Some(victim.clone()), None, &[alice.clone()]);

    for without_store in [false, true] {
        if without_store {
            bot.restart_without_store().await?;
        } else {
            bot.restart().await?;
        }
        let (rejected, _) = reconciled(&bot);
        assert_eq!(rejected, vec![forged.to_string()], "listed as rejected");

        // Her message there reaches no agent: the room is not managed.
        let text = format!("steal {without_store}");
        bot.world.say(&mallory, &forged, &text);
        let post = first_bot_post(&bot, &forged).await?;
        assert!(post.is_notice(), "not answered by an agent: {post:?}");
        let agent = bot.reference()?;
        assert!(
            agent.turns().iter().all(|t| t.text != text),
            "the forged room reached the agent"
        );

        // Alice's conversation is untouched.
        let reply = bot
            .ask_text(&alice, &chat, &format!("still mine {without_store}"))
            .await?;
        assert!(reply.contains("still mine"), "{reply}");
        assert_eq!(platform_chat(&bot, &chat), victim.platform_chat_id);
        assert!(bot
            .reference()?
            .turns()
            .iter()
            .filter(|t| t.chat == victim.platform_chat_id)
            .all(|t| !t.text.starts_with("steal")));
    }
    Ok(())
}

#[actix_rt::test]
async fn forged_numbers_do_not_block_new_chats() -> anyhow::Result<()> {
    let (mut bot, alice, chat) = Bot::with_person(Setup::default(), "alice").await?;
    let (mallory, _) = bot.onboard("mallory").await?;
    let forged = |chat_id: &str, index: u32| Binding {
        agent_id: "echo".into(),
        platform_chat_id: chat_id.into(),
        owner: mallory.to_string(),
        chat_index: index,
        archived: false,
    };
    let end_of_range = bot.world.forge_chat(
        &mallory,
        Some(forged("sfc-18446744073709551615", 2)),
        None,
        &[],
    );
    let huge_index = bot
        .world
        .forge_chat(&mallory, Some(forged("sfc-99", u32::MAX)), None, &[]);

    bot.restart_without_store().await?;
    let (mut rejected, _) = reconciled(&bot);
    rejected.sort();
    let mut expected = vec![end_of_range.to_string(), huge_index.to_string()];
    expected.sort();
    assert_eq!(rejected, expected);

    let made = command(&bot, &alice, &chat, "!new").await;
    expect(&made, "New chat with Echo ready");
    let chats = bot.world.chats_of(&alice);
    let newest = chats.last().expect("a new chat");
    let id = platform_chat(&bot, newest);
    let seq: u64 = id.trim_start_matches("sfc-").parse()?;
    assert!(seq < 10, "the counter did not jump: {id}");
    Ok(())
}

#[actix_rt::test]
async fn a_room_the_bot_cannot_write_does_not_stop_start_up() -> anyhow::Result<()> {
    let (mut bot, alice, chat) = Bot::with_person(Setup::default(), "alice").await?;
    let (bob, bob_chat) = bot.onboard("bob").await?;
    // Alice's chat has a legacy binding (no chat id) the bot must complete, but it lost the
    // power to write there.
    bot.world.edit_chat(&chat, |c| {
        if let Some(b) = c.binding.as_mut() {
            b.platform_chat_id.clear();
        }
    });
    bot.world.faults(|f| f.unwritable.insert(chat.clone()));

    bot.restart_without_store().await?;
    let (rejected, failed) = reconciled(&bot);
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(failed, vec![chat.to_string()], "listed as failed");

    // Everyone is served, Alice too (her chat keeps its deterministic id).
    assert_eq!(bot.ask_text(&bob, &bob_chat, "hi").await?, "echo: hi");
    assert_eq!(bot.ask_text(&alice, &chat, "me?").await?, "echo: me?");
    Ok(())
}

#[actix_rt::test]
async fn group_invites_are_declined_and_strangers_do_not_delay_onboarding() -> anyhow::Result<()> {
    const STRANGERS: usize = 40;
    const DECLINE: Duration = Duration::from_millis(250);
    let bot = Bot::start(Setup::default()).await?;
    bot.world.faults(|f| f.decline_delay = Some(DECLINE));

    let strangers: Vec<ChatId> = (0..STRANGERS)
        .map(|i| {
            bot.world
                .invite_bot(&PersonId::new(format!("@s{i}:elsewhere")))
        })
        .collect();
    let carol = person("carol");
    let group = bot.world.invite_bot_to_group(&carol);

    // An allowed person's onboarding is not stuck behind the declines (serially they
    // would take STRANGERS × DECLINE = 10 s).
    let started = Instant::now();
    let (alice, _) = bot.onboard("alice").await?;
    let took = started.elapsed();
    assert!(
        took < DECLINE * 8,
        "onboarding waited for strangers' declines: {took:?}"
    );
    assert!(bot.world.home_of(&alice).is_some());

    // Every stranger's invite and the group invite are declined; no home for a group.
    wait_until(WAIT, POLL, || {
        let all = strangers.iter().chain([&group]).all(|c| {
            bot.world.chat(c).is_some_and(|c| {
                !c.invited.contains(bot.world.bot()) && !c.members.contains(bot.world.bot())
            })
        });
        async move { all.then_some(()) }
    })
    .await?;
    assert!(
        bot.world.home_of(&carol).is_none(),
        "a group invite onboarded"
    );
    Ok(())
}
