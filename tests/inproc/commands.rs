//! Every command, in-process: answers, effects on the messenger (names, bindings, homes) and
//! on the agent (context, snapshots, deletes), and the refusals.

use surfaces::texts;
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup};
use surfaces_testkit::reference_agent::Endpoint;

use crate::support::{command, expect, platform_chat};

fn reference() -> Setup {
    Setup {
        agent: AgentSetup::Reference,
        extra_toml: "\n[commands]\ndelete_old_chat_on_clear = true\n".to_owned(),
        ..Setup::default()
    }
}

/// `…<last 8 characters>`, as `!clear` shows a chat id.
fn short(id: &str) -> String {
    format!("`…{}`", surfaces::texts::short_id(id))
}

#[actix_rt::test]
async fn answers_and_refusals_of_each_command() -> anyhow::Result<()> {
    let (bot, admin, chat) = Bot::with_person(reference(), "admin").await?;
    let (bob, bob_chat) = bot.onboard("bob").await?;

    // (who, command, what the answer holds, what it must not hold)
    let table: &[(
        &surfaces::surface::PersonId,
        &surfaces::surface::ChatId,
        &str,
        &[&str],
        &[&str],
    )] = &[
        (
            &admin,
            &chat,
            "!help",
            &[
                "`!new [name]`",
                "`!rename <name>`",
                "(or `!reset`)",
                "`!status`",
            ],
            &[],
        ),
        (
            &bob,
            &bob_chat,
            "!help",
            &["`!archive`", "`!cancel`"],
            &["!status"],
        ),
        (&bob, &bob_chat, "!status", &[texts::ADMIN_ONLY], &[]),
        (
            &admin,
            &chat,
            "!status",
            &["Status", "- agent ref:", "- agent echo:"],
            &[],
        ),
        (
            &admin,
            &chat,
            "!hlep",
            &["I don't know `!hlep`. Did you mean `!help`?"],
            &[],
        ),
        (&admin, &chat, "!rename", &["`!rename` needs a name"], &[]),
        (&admin, &chat, "!load", &["`!load` needs"], &[]),
        (&admin, &chat, "!help me", &["`!help` takes no"], &[]),
        (
            &admin,
            &chat,
            "!agent nope",
            &["There is no agent `nope`"],
            &[],
        ),
        (&admin, &chat, "!yes", &[texts::NOTHING_TO_CONFIRM], &[]),
        (&admin, &chat, "!no", &[texts::NOTHING_TO_CONFIRM], &[]),
        (&admin, &chat, "!cancel", &[texts::NOTHING_TO_CANCEL], &[]),
        (
            &admin,
            &chat,
            "!load nope",
            &["I found no snapshot called “nope”"],
            &[],
        ),
    ];
    for (who, room, text, needles, absent) in table {
        let answer = command(&bot, who, room, text).await;
        for needle in *needles {
            assert!(
                answer.contains(needle),
                "{text}: expected {needle:?} in:\n{answer}"
            );
        }
        for needle in *absent {
            assert!(
                !answer.contains(needle),
                "{text}: unexpected {needle:?} in:\n{answer}"
            );
        }
    }
    let agent = bot.reference()?;
    assert!(
        agent.turns().iter().all(|t| !t.text.starts_with('!')),
        "no command reached the agent as a turn"
    );
    Ok(())
}

#[actix_rt::test]
async fn rename_agent_new_context_save_load_settings_clear() -> anyhow::Result<()> {
    let (bot, alice, chat1) = Bot::with_person(reference(), "alice").await?;
    let agent = bot.reference()?;
    let (_bob, bob_chat) = bot.onboard("bob").await?;
    let bob_c = platform_chat(&bot, &bob_chat);

    // !rename: the chat's name changes in the messenger.
    let renamed = command(&bot, &alice, &chat1, "!rename Project X").await;
    expect(&renamed, "Renamed this chat to “Project X”");
    assert_eq!(
        bot.world.facts(&chat1).and_then(|f| f.name).as_deref(),
        Some("Project X")
    );

    // !agent lists, marks and selects; the selection is kept in the person's home.
    let list = command(&bot, &alice, &chat1, "!agent").await;
    expect(
        &list,
        "- `ref` Reference: The reference agent (selected for new chats, this chat)",
    );
    expect(&list, "- `echo` Echo: Repeats what you say");
    let selected = command(&bot, &alice, &chat1, "!agent echo").await;
    expect(&selected, "New chats will use Echo");
    let list = command(&bot, &alice, &chat1, "!agent").await;
    expect(&list, "- `ref` Reference: The reference agent (this chat)");
    expect(
        &list,
        "- `echo` Echo: Repeats what you say (selected for new chats)",
    );

    // !new: a named chat in the home, bound to the selected agent; the old one keeps its own.
    let made = command(&bot, &alice, &chat1, "!new Second").await;
    expect(&made, "New chat with Echo ready");
    let chats = bot.world.chats_of(&alice);
    assert_eq!(chats.len(), 2, "{chats:?}");
    let chat2 = chats[1].clone();
    let facts = bot.world.facts(&chat2).expect("the new chat");
    assert_eq!(facts.name.as_deref(), Some("Second"));
    assert_eq!(facts.parent, bot.world.home_of(&alice));
    assert_eq!(
        facts.binding.as_ref().map(|b| b.agent_id.as_str()),
        Some("echo")
    );
    bot.bot_says(&chat2, 0, "This chat is with **Echo**")
        .await?;
    assert_eq!(
        bot.ask_text(&alice, &chat2, "hi two").await?,
        "echo: hi two"
    );
    assert_eq!(
        bot.ask_text(&alice, &chat1, "hi ref").await?,
        "ref-agent ref got: hi ref"
    );
    command(&bot, &alice, &chat1, "!agent ref").await;
    let made = command(&bot, &alice, &chat1, "!new").await;
    expect(&made, "New chat with Reference ready");
    let chat3 = bot.world.chats_of(&alice)[2].clone();
    assert_eq!(
        bot.world.facts(&chat3).and_then(|f| f.name).as_deref(),
        Some("Chat 3")
    );
    let c1 = platform_chat(&bot, &chat1);
    let c3 = platform_chat(&bot, &chat3);

    // !context, !save, !load (also into another chat).
    bot.ask(&alice, &chat1, "one more").await?;
    let context = command(&bot, &alice, &chat1, "!context").await;
    expect(&context, "This conversation: 4 messages");
    let saved = command(&bot, &alice, &chat1, "!save first").await;
    expect(
        &saved,
        "Saved snapshot “first” (4 messages). Load it with `!load first`.",
    );
    let saved = command(&bot, &alice, &chat1, "!save").await;
    expect(&saved, "Saved snapshot “snapshot-");
    expect(
        &command(&bot, &alice, &chat1, "!context").await,
        "Snapshots: first",
    );
    let loaded = command(&bot, &alice, &chat3, "!load first").await;
    expect(&loaded, "Loaded snapshot “first” into this chat.");
    let restores = agent.requests_to(Endpoint::Restore, &c3);
    assert_eq!(restores.len(), 1, "{restores:?}");
    assert_eq!(restores[0].body["snapshot"], "first");
    assert_eq!(restores[0].body["from_chat"], c1.as_str());

    // The agent's calls failing: a notice naming the agent.
    agent.go_down().await;
    expect(
        &command(&bot, &alice, &chat1, "!context").await,
        "Reference could not do that",
    );
    agent.come_up().await;

    // !settings.
    let settings = command(&bot, &alice, &chat1, "!settings").await;
    for needle in [
        format!("This chat: agent Reference, conversation {}", short(&c1)),
        "New chats use: Reference".to_owned(),
        "Chats: 3 active, 0 archived".to_owned(),
        "Waiting for your answer: nothing".to_owned(),
    ] {
        expect(&settings, &needle);
    }

    // !clear: a new conversation for this chat only; the old one deleted upstream.
    let cleared = command(&bot, &alice, &chat1, "!clear").await;
    let new_c1 = platform_chat(&bot, &chat1);
    assert_ne!(new_c1, c1);
    expect(&cleared, &format!("{} → {}", short(&c1), short(&new_c1)));
    assert_eq!(platform_chat(&bot, &chat3), c3, "other chats keep theirs");
    assert_eq!(platform_chat(&bot, &bob_chat), bob_c, "other people's too");
    bot.ask(&alice, &chat1, "after the clear").await?;
    let turn = agent
        .turns()
        .into_iter()
        .find(|t| t.text == "after the clear")
        .expect("turn");
    assert_eq!(turn.chat, new_c1);
    assert_eq!(agent.requests_to(Endpoint::Delete, &c1).len(), 1);
    let reset = command(&bot, &alice, &chat1, "!reset").await;
    let newer = platform_chat(&bot, &chat1);
    assert_ne!(newer, new_c1);
    expect(&reset, &format!("{} → {}", short(&new_c1), short(&newer)));
    Ok(())
}

#[actix_rt::test]
async fn new_without_a_home_and_commands_in_a_messenger_without_homes() -> anyhow::Result<()> {
    // A messenger without homes (Telegram-like): chats are made without a Space, and the
    // chosen agent is kept in the store.
    let mut setup = reference();
    setup.options.capabilities.homes = false;
    let (bot, alice, chat) = Bot::with_person(setup, "alice").await?;
    assert!(bot.world.home_of(&alice).is_none(), "no home made");
    assert_eq!(bot.world.facts(&chat).and_then(|f| f.parent), None);
    expect(
        &command(&bot, &alice, &chat, "!agent echo").await,
        "New chats will use Echo",
    );
    expect(
        &command(&bot, &alice, &chat, "!new").await,
        "New chat with Echo ready",
    );
    assert_eq!(bot.world.chats_of(&alice).len(), 2);
    Ok(())
}
