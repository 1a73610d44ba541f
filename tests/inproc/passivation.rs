//! Virtual room actors (issue 17, item 3): a chat's actor is passivated once idle for
//! `supervision.room_idle_secs`, the chat stays visible as "idle", and whatever needs it —
//! its next message, a fault drill, a pending journal entry at start-up — activates it
//! again, with nothing lost or answered twice.

use std::time::Duration;

use actors::ActorState;
use surfaces::ops::fault::{DrillRequest, Drills, FaultSpec};
use surfaces::ops::status::{self, IDLE_STATE};
use surfaces::runtime::ids;
use surfaces::runtime::RuntimeView;
use surfaces::surface::ChatId;
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup, WAIT};
use surfaces_testkit::wait::{wait_until, POLL};

/// The idle period of these bots.
const IDLE_SECS: u64 = 1;

fn idle_setup(agent: AgentSetup) -> Setup {
    Setup {
        agent,
        room_idle_secs: Some(IDLE_SECS),
        ..Setup::default()
    }
}

/// Waits until `chat`'s actor is passivated (or fails after [`WAIT`]).
async fn wait_idle(view: &RuntimeView, chat: &ChatId) -> anyhow::Result<()> {
    wait_until(WAIT, POLL, || {
        let idle =
            !view.rooms.is_active(chat) && view.registry.get(&ids::room(chat.as_str())).is_none();
        async move { idle.then_some(()) }
    })
    .await
}

#[actix_rt::test]
async fn an_idle_room_is_passivated_shown_idle_and_its_next_message_activates_it(
) -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(idle_setup(AgentSetup::Echo), "alice").await?;
    let view = bot.view()?;
    assert_eq!(bot.ask_text(&alice, &chat, "one").await?, "echo: one");
    assert!(view.rooms.is_active(&chat));

    wait_idle(&view, &chat).await?;
    // Still managed, and visible as idle.
    assert!(view.rooms.is_managed(&chat));
    let page = status::status(&view, &bot.supervisor()?);
    let row = page
        .rooms
        .iter()
        .find(|r| r.room_id == chat.as_str())
        .ok_or_else(|| anyhow::anyhow!("the idle room is not on the status page"))?;
    assert_eq!(row.state, IDLE_STATE);
    assert_eq!(row.owner.as_deref(), Some(alice.as_str()));
    assert_eq!(page.room_counts.active, 0, "{:?}", page.room_counts);
    // Counted by the store as the chat was created.
    assert!(page.room_counts.idle >= Some(1), "{:?}", page.room_counts);

    // The next message activates it and is answered once, as a fresh message.
    let two = bot.world.say(&alice, &chat, "two");
    let answers = bot.answers(&chat, &two, 1).await?;
    assert_eq!(answers[0].text(), "echo: two");
    assert!(view.rooms.is_active(&chat));
    assert_eq!(
        view.registry
            .get(&ids::room(chat.as_str()))
            .map(|h| h.state),
        Some(ActorState::Running)
    );
    // And again, after another idle period.
    wait_idle(&view, &chat).await?;
    assert_eq!(bot.ask_text(&alice, &chat, "three").await?, "echo: three");
    assert_eq!(bot.world.answers_to(&chat, &two).len(), 1, "answered once");
    Ok(())
}

#[actix_rt::test]
async fn a_room_is_not_passivated_while_its_turn_runs_or_messages_wait() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(idle_setup(AgentSetup::Reference), "alice").await?;
    let view = bot.view()?;
    // A turn three idle periods long, and a message waiting behind it.
    bot.reference()?
        .set_delay(Duration::from_secs(3 * IDLE_SECS));
    let first = bot.world.say(&alice, &chat, "slow");
    assert!(bot.reference()?.wait_for_turns(1, WAIT).await);
    let second = bot.world.say(&alice, &chat, "behind it");
    let answered = wait_until(WAIT, POLL, || {
        // Sampled on every poll until both are answered: never passivated meanwhile (the
        // actor stays registered; the directory may show the chat `Leaving` for the moment
        // its actor is asked, and answers busy).
        let active = view.registry.get(&ids::room(chat.as_str())).is_some();
        let done = bot.world.answers_to(&chat, &second).len();
        async move {
            match (active, done) {
                (false, 0) => Some(Err(anyhow::anyhow!("passivated while busy"))),
                (_, 0) => None,
                _ => Some(Ok(())),
            }
        }
    })
    .await?;
    answered?;
    assert_eq!(bot.world.answers_to(&chat, &first).len(), 1);
    assert_eq!(bot.world.answers_to(&chat, &second).len(), 1);
    // Idle at last: passivated.
    wait_idle(&view, &chat).await?;
    Ok(())
}

#[actix_rt::test]
async fn start_up_activates_no_idle_room_and_each_wakes_on_its_message() -> anyhow::Result<()> {
    let mut bot = Bot::start(Setup::default()).await?;
    let mut people = Vec::new();
    for name in ["alice", "bob", "carol"] {
        people.push(bot.onboard(name).await?);
    }
    bot.restart().await?;
    let view = bot.view()?;
    // Nothing was pending: no room actor runs, every chat is still managed.
    assert_eq!(view.rooms.active_len(), 0);
    let rooms_in_registry = view
        .registry
        .snapshot()
        .iter()
        .filter(|h| h.id.kind() == ids::ROOM_KIND)
        .count();
    assert_eq!(rooms_in_registry, 0);
    let counted = wait_until(WAIT, POLL, || {
        let managed = view.rooms.managed_len();
        async move { managed }
    })
    .await?;
    assert_eq!(
        counted,
        people.len(),
        "each person's first chat (homes are users' records)"
    );
    for (person, chat) in &people {
        assert!(view.rooms.is_managed(chat));
        assert_eq!(bot.ask_text(person, chat, "hi").await?, "echo: hi");
    }
    assert_eq!(view.rooms.active_len(), people.len());
    Ok(())
}

#[actix_rt::test]
async fn a_fault_drill_on_an_idle_room_activates_it_and_the_room_recovers() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(idle_setup(AgentSetup::Echo), "alice").await?;
    let view = bot.view()?;
    wait_idle(&view, &chat).await?;
    let drills = Drills::with_rooms(
        Some(surfaces::config::Secret::new("t0k")),
        view.registry.clone(),
        view.rooms.clone(),
    );
    let target = ids::room(chat.as_str()).to_string();
    let drill = drills
        .start(DrillRequest {
            target: target.clone(),
            fault: FaultSpec::Panic {
                nth: 1,
                message_type: Some("UserMessage".to_owned()),
            },
            duration_secs: Some(60),
        })
        .await?;
    assert!(view.rooms.is_active(&chat), "the drill activated the room");
    // The panic takes the incarnation down; its successor answers the message from the journal.
    let asked = bot.world.say(&alice, &chat, "boom");
    let answers = bot.answers(&chat, &asked, 1).await?;
    assert_eq!(answers[0].text(), "echo: boom");
    let health = view
        .registry
        .get(&ids::room(chat.as_str()))
        .ok_or_else(|| anyhow::anyhow!("no room actor"))?;
    assert!(health.restarts >= 1, "{health:?}");
    drills.stop(drill.id)?;
    // A room the bot does not manage is still refused.
    let unknown = drills
        .start(DrillRequest {
            target: "room:!nope:memory".to_owned(),
            fault: FaultSpec::Stop,
            duration_secs: None,
        })
        .await;
    assert!(unknown.is_err());
    Ok(())
}
