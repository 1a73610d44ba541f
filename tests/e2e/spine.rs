//! The spine, end to end: invite → Space + chat room; message → agent → reply; failures
//! end in notices; unmanaged rooms are not registered; restarts keep everything.

use std::time::Duration;

use matrix_sdk::ruma::{EventId, OwnedRoomId, UserId};
use serde_json::Value;
use tempfile::TempDir;

use crate::support::bot::BotProcess;
use crate::support::person::Person;
use crate::support::reference_agent::ReferenceAgent;
use crate::support::synapse::{Synapse, UserCreds};
use crate::support::{wait_until, POLL, WAIT};

const ROOM_EVENT: &str = "org.surfaces.room";
const SPACE_EVENT: &str = "org.surfaces.space";

/// Synapse, a reference agent and the bot, wired together.
pub struct Stack {
    pub synapse: Synapse,
    pub agent: ReferenceAgent,
    pub bot_creds: UserCreds,
    pub bot: BotProcess,
    pub data: TempDir,
    /// Environment every start of the bot gets (e.g. [`UNLIMITED`]).
    pub bot_env: Vec<(String, String)>,
    /// The bot's config file, the same at every start.
    pub bot_toml: String,
}

/// The environment that turns the per-person rate limit off, for the tests whose subject is
/// one person sending hundreds of messages at once (gap filling, catch-up), not the limit.
pub const UNLIMITED: &[(&str, &str)] = &[("SURFACES__LIMITS__MESSAGES_PER_MINUTE", "0")];

/// The agent's timeout in the bot's config (short, so timeouts are quick to test).
pub const AGENT_TIMEOUT_SECS: u64 = 2;

pub fn agents_toml(agent: &ReferenceAgent) -> String {
    format!(
        "[[agents]]\nid = \"ref\"\nname = \"Reference\"\nbase_url = \"{}\"\ntimeout_secs = {AGENT_TIMEOUT_SECS}\ndefault = true\n",
        agent.base_url()
    )
}

impl Stack {
    pub async fn start() -> anyhow::Result<Stack> {
        Self::start_with_env(&[]).await
    }

    /// Like [`Stack::start`], with `env` for every start of the bot.
    pub async fn start_with_env(env: &[(&str, &str)]) -> anyhow::Result<Stack> {
        let mut stack = Self::start_configured(|agent, _| Ok(agents_toml(agent)), env).await?;
        stack.bot_env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(stack)
    }

    /// Synapse, the reference agent and the bot, whose config `toml` makes from the agent and
    /// the stack's data dir (kept for every restart), started with `env` (this start only).
    pub async fn start_configured(
        toml: impl FnOnce(&ReferenceAgent, &std::path::Path) -> anyhow::Result<String>,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Stack> {
        let synapse = Synapse::start().await?;
        let bot_creds = synapse.register("surfaces", "bot-password", false).await?;
        let agent = ReferenceAgent::start("ref").await;
        let data = TempDir::new()?;
        let toml = toml(&agent, data.path())?;
        let mut bot = BotProcess::start(
            &synapse,
            &bot_creds,
            &data.path().join("bot"),
            env,
            Some(&toml),
        )
        .await?;
        bot.wait_for_log("surfaces is running", WAIT).await?;
        Ok(Stack {
            synapse,
            agent,
            bot_creds,
            bot,
            data,
            bot_env: Vec::new(),
            bot_toml: toml,
        })
    }

    pub async fn restart_bot(&mut self) -> anyhow::Result<()> {
        let status = self.bot.stop().await?;
        assert!(status.success(), "the bot exits 0 on SIGTERM: {status:?}");
        self.relaunch(&[]).await
    }

    /// Starts a new bot process on the same data dir (the previous one must have ended,
    /// or is killed when replaced), with extra environment.
    pub async fn relaunch(&mut self, env: &[(&str, &str)]) -> anyhow::Result<()> {
        let env: Vec<(&str, &str)> = self
            .bot_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(env.iter().copied())
            .collect();
        let mut bot = BotProcess::start(
            &self.synapse,
            &self.bot_creds,
            &self.data.path().join("bot"),
            &env,
            Some(&self.bot_toml),
        )
        .await?;
        bot.wait_for_log("surfaces is running", WAIT).await?;
        self.bot = bot;
        Ok(())
    }

    pub fn bot_id(&self) -> &UserId {
        &self.bot_creds.user_id
    }

    pub async fn person(&self, localpart: &str) -> anyhow::Result<Person> {
        let creds = self
            .synapse
            .registrar()
            .register(localpart, "person-password", false)
            .await?;
        Person::login(&self.synapse, &creds).await
    }
}

/// What onboarding gave a person.
pub struct Onboarded {
    pub dm: OwnedRoomId,
    pub space: OwnedRoomId,
    pub chat: OwnedRoomId,
}

/// A stack whose only agents are `agents` (`[[agents]]` TOML), live replies on, with Alice
/// onboarded in her first chat: how each agent kind is tried in a real room.
pub async fn alice_with_agents(agents: String) -> anyhow::Result<(Stack, Person, Onboarded)> {
    let stack = Stack::start_configured(
        |_, _| Ok(agents),
        &[("SURFACES__STREAMING__ENABLED", "true")],
    )
    .await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;
    Ok((stack, alice, ob))
}

/// The person opens a direct chat with the bot and joins the Space and chat room it makes.
pub async fn onboard(stack: &Stack, person: &Person) -> anyhow::Result<Onboarded> {
    let bot = stack.bot_id();
    let dm = person.create_dm(bot).await?;
    let space = person
        .wait_for_invite(|i| i.is_space && i.inviter.as_deref() == Some(bot), WAIT)
        .await?;
    person.join(&space).await?;
    let chat = person
        .wait_for_invite(|i| !i.is_space && i.inviter.as_deref() == Some(bot), WAIT)
        .await?;
    person.join(&chat).await?;
    person
        .wait_for_text_from(&chat, bot, "This chat is with", WAIT)
        .await?;
    person.wait_for_text_from(&dm, bot, "Space", WAIT).await?;
    Ok(Onboarded { dm, space, chat })
}

pub(crate) fn field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Sends a message and waits for the bot's reply to it.
pub(crate) async fn ask(
    stack: &Stack,
    person: &Person,
    room: &OwnedRoomId,
    text: &str,
) -> anyhow::Result<crate::support::person::ReceivedMessage> {
    let event = person.send_text(room, text).await?;
    answer_to(stack, person, room, &event, None).await
}

/// Waits for the bot's first message answering `event` (of `msgtype`, if given: `m.notice`
/// for the bot's own voice).
pub(crate) async fn answer_to(
    stack: &Stack,
    person: &Person,
    room: &OwnedRoomId,
    event: &EventId,
    msgtype: Option<&str>,
) -> anyhow::Result<crate::support::person::ReceivedMessage> {
    let bot = stack.bot_id();
    person
        .wait_for_message(
            room,
            |m| {
                m.sender == bot
                    && m.in_reply_to.as_deref() == Some(event)
                    && msgtype.is_none_or(|t| m.msgtype == t)
            },
            WAIT,
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_builds_space_and_room_once_and_answers_encrypted() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;

    // The Space names its owner; the chat room carries its binding and the space links.
    let space_state = alice
        .wait_for_state_event(&ob.space, SPACE_EVENT, "", |_| true, WAIT)
        .await?;
    assert_eq!(field(&space_state, "owner"), alice.user_id().as_str());
    let binding = alice
        .wait_for_state_event(&ob.chat, ROOM_EVENT, "", |_| true, WAIT)
        .await?;
    assert_eq!(field(&binding, "agent_id"), "ref");
    assert_eq!(field(&binding, "owner"), alice.user_id().as_str());
    assert_eq!(field(&binding, "platform_chat_id"), "sfc-1");
    assert!(alice
        .room_state_event(&ob.space, "m.space.child", ob.chat.as_str())
        .await?
        .is_some());
    assert!(alice
        .room_state_event(&ob.chat, "m.space.parent", ob.space.as_str())
        .await?
        .is_some());
    assert!(
        alice.is_encrypted(&ob.chat).await?,
        "chat rooms are encrypted by default"
    );

    // A message gets a reply: to that message, markdown rendered, decrypted on our side.
    let reply = ask(&stack, &alice, &ob.chat, "hello **agent**").await?;
    assert!(reply.was_encrypted);
    assert!(reply.body.contains("hello **agent**"), "{}", reply.body);
    assert!(
        reply
            .formatted_body
            .as_deref()
            .unwrap_or_default()
            .contains("<strong>agent</strong>"),
        "{:?}",
        reply.formatted_body
    );
    let turns = stack.agent.turns();
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].chat, "sfc-1");
    assert_eq!(turns[0].sender_id, alice.user_id().as_str());

    // A second invite: a pointer to the same Space, no second Space.
    alice.leave(&ob.dm).await?;
    let dm2 = alice.create_dm(stack.bot_id()).await?;
    let pointer = alice
        .wait_for_text_from(&dm2, stack.bot_id(), "Space", WAIT)
        .await?;
    assert!(pointer.body.contains(ob.space.as_str()), "{}", pointer.body);
    assert!(
        alice.invites().await.is_empty(),
        "no new Space or room was made"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_stay_isolated() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    let bob = stack.person("bob").await?;
    let a = onboard(&stack, &alice).await?;
    let b = onboard(&stack, &bob).await?;
    assert_ne!(a.space, b.space);
    assert_ne!(a.chat, b.chat);
    ask(&stack, &alice, &a.chat, "alice's secret").await?;
    ask(&stack, &bob, &b.chat, "bob's question").await?;
    let chats: Vec<String> = stack.agent.turns().iter().map(|t| t.chat.clone()).collect();
    assert_eq!(chats.len(), 2);
    assert_ne!(chats[0], chats[1], "each room has its own platform chat");
    assert!(bob
        .joined_rooms()
        .await?
        .iter()
        .all(|r| r != &a.chat && r != &a.space));
    assert!(bob
        .messages(&b.chat)
        .await
        .iter()
        .all(|m| !m.body.contains("alice's secret")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_down_gives_a_notice_then_recovers() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;

    stack.agent.go_down().await;
    let notice = ask(&stack, &alice, &ob.chat, "are you there?").await?;
    assert_eq!(notice.msgtype, "m.notice");
    assert!(notice.body.contains("not answering"), "{}", notice.body);

    stack.agent.come_up().await;
    let reply = ask(&stack, &alice, &ob.chat, "and now?").await?;
    assert!(reply.body.contains("and now?"), "{}", reply.body);

    // 5xx answers are retried (the same turn id), then succeed.
    stack.agent.fail_next(1, 503);
    let reply = ask(&stack, &alice, &ob.chat, "after a glitch").await?;
    assert!(reply.body.contains("after a glitch"), "{}", reply.body);
    let last = stack.agent.turns().last().cloned().expect("a turn");
    assert_eq!(stack.agent.executions_of(&last.turn_id), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_slow_agents_end_in_notices_and_other_rooms_keep_going() -> anyhow::Result<()> {
    use crate::support::reference_agent::Fault;
    let stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    let bob = stack.person("bob").await?;
    let a = onboard(&stack, &alice).await?;
    let b = onboard(&stack, &bob).await?;

    // Garbage every time: retried, then a clear notice.
    for _ in 0..3 {
        stack.agent.push_fault(Fault::InvalidJson);
    }
    let notice = ask(&stack, &alice, &a.chat, "say something").await?;
    assert_eq!(notice.msgtype, "m.notice");
    assert!(
        notice
            .body
            .contains("its answer broke off or could not be read"),
        "{}",
        notice.body
    );
    stack.agent.clear_faults();

    // Slower than the timeout: the person hears about it; meanwhile bob's room answers.
    let a_chat = field(
        &alice
            .wait_for_state_event(&a.chat, ROOM_EVENT, "", |_| true, WAIT)
            .await?,
        "platform_chat_id",
    )
    .to_owned();
    stack
        .agent
        .set_chat_delay(&a_chat, Duration::from_secs(AGENT_TIMEOUT_SECS * 10));
    let slow = alice.send_text(&a.chat, "take your time").await?;
    assert!(stack.agent.wait_for_turn_text("take your time", WAIT).await);
    let quick = ask(&stack, &bob, &b.chat, "quick one").await?;
    assert!(quick.body.contains("quick one"));
    let bot = stack.bot_id().to_owned();
    let timeout_notice = alice
        .wait_for_message(
            &a.chat,
            |m| m.sender == bot && m.in_reply_to.as_ref() == Some(&slow),
            WAIT,
        )
        .await?;
    assert_eq!(timeout_notice.msgtype, "m.notice");
    assert!(
        timeout_notice.body.contains("took too long"),
        "{}",
        timeout_notice.body
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmanaged_room_is_not_registered() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;
    let bot = stack.bot_id().to_owned();
    // The direct chat is not a managed chat room: its owner is pointed to their Space.
    alice.send_text(&ob.dm, "can we talk here?").await?;
    alice
        .wait_for_text_from(&ob.dm, &bot, "I answer in the chats of [your Space]", WAIT)
        .await?;
    alice.send_text(&ob.dm, "hello again").await?;
    // The explanation comes once; the second log line proves the bot saw the second message.
    wait_until(WAIT, POLL, || async {
        (stack.bot.log_text().matches("not registering it").count() >= 2).then_some(())
    })
    .await?;
    let explanations = alice
        .messages_from(&ob.dm, &bot)
        .await
        .into_iter()
        .filter(|m| m.body.contains("I answer in the chats of"))
        .count();
    assert_eq!(explanations, 1);
    assert!(
        stack.agent.turns().is_empty(),
        "no agent turn for an unmanaged room"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_space_rooms_and_chat_sequence() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    let a = onboard(&stack, &alice).await?;
    stack.restart_bot().await?;
    assert!(
        stack.bot.log_contains("restored the Matrix session"),
        "the session is restored, not a new login:\n{}",
        stack.bot.log_tail(40)
    );
    // The same room answers after the restart.
    let reply = ask(&stack, &alice, &a.chat, "still there?").await?;
    assert!(reply.body.contains("still there?"));
    // A new person's room continues the chat sequence.
    let bob = stack.person("bob").await?;
    let b = onboard(&stack, &bob).await?;
    let binding = bob
        .wait_for_state_event(&b.chat, ROOM_EVENT, "", |_| true, WAIT)
        .await?;
    assert_eq!(field(&binding, "platform_chat_id"), "sfc-2");
    // And alice's second invite still points at her one Space.
    alice.leave(&a.dm).await?;
    let dm2 = alice.create_dm(stack.bot_id()).await?;
    let pointer = alice
        .wait_for_text_from(&dm2, stack.bot_id(), "Space", WAIT)
        .await?;
    assert!(pointer.body.contains(a.space.as_str()));
    Ok(())
}
