//! The chat commands, end to end through a real Synapse: every command's happy path and
//! its main error; confirmations that survive a restart, expire, and belong to the person
//! asked; `!clear` rotating one room's chat only; `!cancel` stopping a turn in flight; an
//! agent's question answered with `!yes` / `!no`; a stale room after its agent left the
//! config; a stranger's invite declined; the agent chosen for new chats surviving the loss
//! of the bot's store.
//!
//! Nothing here sleeps: every wait polls (the bot's answer to a follow-up message is what
//! proves that something did *not* happen).

use matrix_sdk::ruma::OwnedRoomId;
use serde_json::Value;
use surfaces::matrix::{SESSION_FILE_NAME, STORE_DIR_NAME};
use surfaces::runtime::STORE_DIR;
use tempfile::TempDir;

use crate::spine::{ask, field, onboard, Stack};
use crate::support::bot::BotProcess;
use crate::support::person::Person;
use crate::support::reference_agent::{Endpoint, ReferenceAgent};
use crate::support::synapse::Synapse;
use crate::support::WAIT;

const ROOM_EVENT: &str = "org.surfaces.room";
const SPACE_EVENT: &str = "org.surfaces.space";

/// Long enough that no test runs into it (the spine's 2 s would time out a slow turn).
const TIMEOUT_SECS: u64 = 30;

/// The stack plus a second agent, `two` ("Two"), which the config may leave out.
struct Cmds {
    stack: Stack,
    two: ReferenceAgent,
}

/// The agents in the bot's config: `ref` (default), and `two` when `with_two`.
fn config_toml(stack_agent: &ReferenceAgent, two: &ReferenceAgent, with_two: bool) -> String {
    let mut toml = format!(
        "[[agents]]\nid = \"ref\"\nname = \"Reference\"\nbase_url = \"{}\"\n\
         timeout_secs = {TIMEOUT_SECS}\ndefault = true\n",
        stack_agent.base_url()
    );
    if with_two {
        toml.push_str(&format!(
            "\n[[agents]]\nid = \"two\"\nname = \"Two\"\ndescription = \"The second agent\"\n\
             base_url = \"{}\"\ntimeout_secs = {TIMEOUT_SECS}\n",
            two.base_url()
        ));
    }
    toml
}

impl Cmds {
    /// Synapse, both agents and the bot; `env` gets the Synapse (for user ids).
    async fn start(env: impl Fn(&Synapse) -> Vec<(&'static str, String)>) -> anyhow::Result<Cmds> {
        let synapse = Synapse::start().await?;
        let bot_creds = synapse
            .registrar()
            .register("surfaces", "bot-password", false)
            .await?;
        let agent = ReferenceAgent::start("ref").await;
        let two = ReferenceAgent::start("two").await;
        let data = TempDir::new()?;
        let env = env(&synapse);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let bot_toml = config_toml(&agent, &two, true);
        let mut bot = BotProcess::start(
            &synapse,
            &bot_creds,
            &data.path().join("bot"),
            &env,
            Some(&bot_toml),
        )
        .await?;
        bot.wait_for_log("surfaces is running", WAIT).await?;
        Ok(Cmds {
            stack: Stack {
                synapse,
                agent,
                bot_creds,
                bot,
                data,
                bot_env: Vec::new(),
                bot_toml,
            },
            two,
        })
    }

    /// Stops the bot (SIGTERM, must exit 0) and starts it again on the same data, with
    /// agent `two` in the config or not, and `env`.
    async fn restart(&mut self, with_two: bool, env: &[(&str, &str)]) -> anyhow::Result<()> {
        self.stop_bot().await?;
        self.start_bot(with_two, env).await
    }

    /// Stops the bot (SIGTERM, must exit 0).
    async fn stop_bot(&mut self) -> anyhow::Result<()> {
        let status = self.stack.bot.stop().await?;
        assert!(status.success(), "the bot exits 0 on SIGTERM: {status:?}");
        Ok(())
    }

    /// Starts the bot again on the same data (the previous run must have stopped), with
    /// agent `two` in the config or not, and `env`; waits until it runs.
    async fn start_bot(&mut self, with_two: bool, env: &[(&str, &str)]) -> anyhow::Result<()> {
        let s = &self.stack;
        let mut bot = BotProcess::start(
            &s.synapse,
            &s.bot_creds,
            &s.data.path().join("bot"),
            env,
            Some(&config_toml(&s.agent, &self.two, with_two)),
        )
        .await?;
        bot.wait_for_log("surfaces is running", WAIT).await?;
        self.stack.bot = bot;
        Ok(())
    }
}

/// Sends `text` and returns the body of the bot's answer to it, which must be a notice.
async fn command(
    stack: &Stack,
    person: &Person,
    room: &OwnedRoomId,
    text: &str,
) -> anyhow::Result<String> {
    let reply = ask(stack, person, room, text).await?;
    assert_eq!(
        reply.msgtype, "m.notice",
        "{text:?} is answered by a notice: {}",
        reply.body
    );
    Ok(reply.body)
}

#[track_caller]
fn expect(body: &str, needle: &str) {
    assert!(body.contains(needle), "expected {needle:?} in:\n{body}");
}

#[track_caller]
fn expect_line(body: &str, line: &str) {
    assert!(
        body.lines().any(|l| l == line),
        "expected the line {line:?} in:\n{body}"
    );
}

#[track_caller]
fn expect_not(body: &str, needle: &str) {
    assert!(
        !body.contains(needle),
        "did not expect {needle:?} in:\n{body}"
    );
}

/// The room's `org.surfaces.room` binding.
async fn binding(person: &Person, room: &OwnedRoomId) -> anyhow::Result<Value> {
    person
        .wait_for_state_event(room, ROOM_EVENT, "", |_| true, WAIT)
        .await
}

/// The room's platform chat id, from its binding.
async fn chat_id(person: &Person, room: &OwnedRoomId) -> anyhow::Result<String> {
    Ok(field(&binding(person, room).await?, "platform_chat_id").to_owned())
}

/// After `!new`: joins the chat room the bot invites the person to, and waits for its
/// welcome.
async fn join_new_chat(stack: &Stack, person: &Person) -> anyhow::Result<OwnedRoomId> {
    let bot = stack.bot_id();
    let room = person
        .wait_for_invite(|i| !i.is_space && i.inviter.as_deref() == Some(bot), WAIT)
        .await?;
    person.join(&room).await?;
    person
        .wait_for_text_from(&room, bot, "This chat is with", WAIT)
        .await?;
    Ok(room)
}

/// The agent's requests to `endpoint` for `chat`.

/// The chat of the agent's turn whose text is `text` (panics if there is none).
fn turn_chat(agent: &ReferenceAgent, text: &str) -> String {
    agent
        .turns()
        .into_iter()
        .find(|t| t.text == text)
        .unwrap_or_else(|| panic!("no turn {text:?} at agent {}", agent.agent_id()))
        .chat
}

/// `…<last 8 characters>`, as the `!clear` answer shows a chat id.
fn short(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(8)..].iter().collect();
    format!("`…{tail}`")
}

fn user_id(synapse: &Synapse, localpart: &str) -> String {
    synapse.user_id(localpart).to_string()
}

/// `!help`, `!status` (admins only), an unknown command, `!rename`, `!agent`, `!new`,
/// `!context`, `!save`, `!load` (also from another room), `!settings`, `!clear` / `!reset`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyday_commands_and_their_errors() -> anyhow::Result<()> {
    let cmds = Cmds::start(|synapse| {
        vec![
            ("SURFACES__ACCESS__ADMINS", user_id(synapse, "alice")),
            (
                "SURFACES__COMMANDS__DELETE_OLD_CHAT_ON_CLEAR",
                "true".into(),
            ),
        ]
    })
    .await?;
    let (stack, two) = (&cmds.stack, &cmds.two);
    let alice = stack.person("alice").await?;
    let bob = stack.person("bob").await?;
    let a = onboard(stack, &alice).await?;
    let b = onboard(stack, &bob).await?;
    let chat1 = a.chat.clone();
    let bob_chat = chat_id(&bob, &b.chat).await?;

    // !help lists the commands; !status only for admins, and only admins may run it.
    let help = command(stack, &alice, &chat1, "!help").await?;
    for needle in [
        "`!new [name]`",
        "`!rename <name>`",
        "(or `!reset`)",
        "`!status`",
    ] {
        expect(&help, needle);
    }
    let help = command(stack, &bob, &b.chat, "!help").await?;
    expect(&help, "`!archive`");
    expect_not(&help, "!status");
    let refused = command(stack, &bob, &b.chat, "!status").await?;
    expect(&refused, "Only the bot's administrators");
    let status = command(stack, &alice, &chat1, "!status").await?;
    for needle in ["Status", "- agent ref:", "- agent two:", "- last sync:"] {
        expect(&status, needle);
    }

    // An unknown command gets a suggestion and never reaches the agent.
    let unknown = command(stack, &alice, &chat1, "!hlep").await?;
    expect(&unknown, "I don't know `!hlep`. Did you mean `!help`?");

    // !rename: the Matrix room name changes; without a name, the usage.
    let missing = command(stack, &alice, &chat1, "!rename").await?;
    expect(&missing, "`!rename` needs a name");
    let renamed = command(stack, &alice, &chat1, "!rename Project X").await?;
    expect(&renamed, "Renamed this chat to “Project X”");
    alice
        .wait_for_state_event(
            &chat1,
            "m.room.name",
            "",
            |c| field(c, "name") == "Project X",
            WAIT,
        )
        .await?;

    // !agent lists the agents, marking the selected one and this room's.
    let list = command(stack, &alice, &chat1, "!agent").await?;
    expect_line(
        &list,
        "- `ref` Reference (selected for new chats, this chat)",
    );
    expect_line(&list, "- `two` Two: The second agent");
    let unknown = command(stack, &alice, &chat1, "!agent nope").await?;
    expect(&unknown, "There is no agent `nope`");
    let selected = command(stack, &alice, &chat1, "!agent two").await?;
    expect(&selected, "New chats will use Two");
    let list = command(stack, &alice, &chat1, "!agent").await?;
    expect_line(&list, "- `ref` Reference (this chat)");
    expect_line(
        &list,
        "- `two` Two: The second agent (selected for new chats)",
    );

    // !new: a named room in the Space, bound to the selected agent; this room keeps its own.
    let made = command(stack, &alice, &chat1, "!new Second").await?;
    expect(&made, "New chat with Two ready");
    let chat2 = join_new_chat(stack, &alice).await?;
    alice
        .wait_for_text_from(&chat2, stack.bot_id(), "This chat is with **Two**", WAIT)
        .await?;
    let bound = binding(&alice, &chat2).await?;
    assert_eq!(field(&bound, "agent_id"), "two");
    assert_eq!(field(&bound, "owner"), alice.user_id().as_str());
    let c2 = field(&bound, "platform_chat_id").to_owned();
    assert!(alice
        .room_state_event(&chat2, "m.room.name", "")
        .await?
        .is_some_and(|c| field(&c, "name") == "Second"));
    assert!(alice
        .room_state_event(&a.space, "m.space.child", chat2.as_str())
        .await?
        .is_some_and(|c| c.get("via").is_some()));
    let reply = ask(stack, &alice, &chat2, "hello two").await?;
    expect(&reply.body, "ref-agent two got: hello two");
    assert_eq!(turn_chat(two, "hello two"), c2);
    let reply = ask(stack, &alice, &chat1, "hello ref").await?;
    expect(&reply.body, "ref-agent ref got: hello ref");
    let list = command(stack, &alice, &chat2, "!agent").await?;
    expect_line(
        &list,
        "- `two` Two: The second agent (selected for new chats, this chat)",
    );

    // Back to ref; a room without a name gets the default one.
    command(stack, &alice, &chat1, "!agent ref").await?;
    let made = command(stack, &alice, &chat1, "!new").await?;
    expect(&made, "New chat with Reference ready");
    let chat3 = join_new_chat(stack, &alice).await?;
    let c3 = chat_id(&alice, &chat3).await?;
    assert!(alice
        .room_state_event(&chat3, "m.room.name", "")
        .await?
        .is_some_and(|c| field(&c, "name") == "Chat 3"));

    // !context, !save, !load: this room's snapshot, a missing one, one from another room.
    let c1 = chat_id(&alice, &chat1).await?;
    let context = command(stack, &alice, &chat1, "!context").await?;
    expect(&context, "This conversation: 2 messages");
    let saved = command(stack, &alice, &chat1, "!save first").await?;
    expect(
        &saved,
        "Saved snapshot “first” (2 messages). Load it with `!load first`.",
    );
    let saved = command(stack, &alice, &chat1, "!save").await?;
    expect(&saved, "Saved snapshot “snapshot-");
    let context = command(stack, &alice, &chat1, "!context").await?;
    expect(&context, "Snapshots: first");
    let missing = command(stack, &alice, &chat1, "!load nope").await?;
    expect(&missing, "I found no snapshot called “nope”");
    let loaded = command(stack, &alice, &chat1, "!load first").await?;
    expect(&loaded, "Loaded snapshot “first” into this chat.");
    let loaded = command(stack, &alice, &chat3, "!load first").await?;
    expect(&loaded, "Loaded snapshot “first” into this chat.");
    let restore = stack.agent.requests_to(Endpoint::Restore, &c3);
    assert_eq!(restore.len(), 1, "{restore:?}");
    assert_eq!(restore[0].body["snapshot"], "first");
    assert_eq!(restore[0].body["from_chat"], c1.as_str());
    let context = command(stack, &alice, &chat3, "!context").await?;
    expect(&context, "This conversation: 2 messages");
    // The agent's calls failing: a notice naming the agent, then back to normal.
    stack.agent.go_down().await;
    let failed = command(stack, &alice, &chat1, "!context").await?;
    expect(&failed, "Reference could not do that");
    stack.agent.come_up().await;

    // !settings.
    let settings = command(stack, &alice, &chat1, "!settings").await?;
    for needle in [
        format!("This chat: agent Reference, conversation {}", short(&c1)),
        "New chats use: Reference".to_owned(),
        "Chats: 3 active, 0 archived".to_owned(),
        "Waiting for your answer: nothing".to_owned(),
    ] {
        expect(&settings, &needle);
    }

    // !clear: a new chat id for this room only (state event, then the next turn); the
    // old conversation is deleted upstream (commands.delete_old_chat_on_clear).
    let cleared = command(stack, &alice, &chat1, "!clear").await?;
    let new_c1 = chat_id(&alice, &chat1).await?;
    assert_ne!(new_c1, c1);
    expect(&cleared, &format!("{} → {}", short(&c1), short(&new_c1)));
    assert_eq!(
        chat_id(&alice, &chat2).await?,
        c2,
        "other rooms keep theirs"
    );
    assert_eq!(
        chat_id(&alice, &chat3).await?,
        c3,
        "other rooms keep theirs"
    );
    assert_eq!(
        chat_id(&bob, &b.chat).await?,
        bob_chat,
        "other people's rooms too"
    );
    ask(stack, &alice, &chat1, "after the clear").await?;
    assert_eq!(turn_chat(&stack.agent, "after the clear"), new_c1);
    ask(stack, &alice, &chat3, "chat three").await?;
    assert_eq!(turn_chat(&stack.agent, "chat three"), c3);
    ask(stack, &alice, &chat2, "chat two").await?;
    assert_eq!(turn_chat(two, "chat two"), c2);
    assert_eq!(stack.agent.requests_to(Endpoint::Delete, &c1).len(), 1);
    let context = command(stack, &alice, &chat1, "!context").await?;
    expect(&context, "This conversation: 2 messages");
    // The alias does the same.
    let reset = command(stack, &alice, &chat1, "!reset").await?;
    let newer_c1 = chat_id(&alice, &chat1).await?;
    assert!(![c1.as_str(), new_c1.as_str(), c2.as_str(), c3.as_str()].contains(&newer_c1.as_str()));
    expect(
        &reset,
        &format!("{} → {}", short(&new_c1), short(&newer_c1)),
    );

    // None of the commands reached an agent as a turn.
    for agent in [&stack.agent, two] {
        let commands: Vec<String> = agent
            .turns()
            .into_iter()
            .map(|t| t.text)
            .filter(|t| t.starts_with('!'))
            .collect();
        assert!(commands.is_empty(), "commands sent as turns: {commands:?}");
    }
    Ok(())
}

/// `!archive` asked, `!yes` from someone else ignored, the question surviving a restart,
/// `!yes` archiving (Space child removed, state event archived, archived notice, also after
/// the next restart), `!no` keeping a room, and a question expiring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmations_survive_restarts_expire_and_belong_to_the_asked() -> anyhow::Result<()> {
    let mut cmds = Cmds::start(|_| Vec::new()).await?;
    let stack = &cmds.stack;
    let bot = stack.bot_id().to_owned();
    let alice = stack.person("alice").await?;
    let bob = stack.person("bob").await?;
    let a = onboard(stack, &alice).await?;
    let chat1 = a.chat.clone();
    command(stack, &alice, &chat1, "!new").await?;
    let chat2 = join_new_chat(stack, &alice).await?;

    // Nothing pending: !yes says so.
    let nothing = command(stack, &alice, &chat1, "!yes").await?;
    expect(&nothing, "There is nothing waiting for your answer here.");

    // !archive then !no: the room stays.
    let asked = command(stack, &alice, &chat2, "!archive").await?;
    expect(&asked, "Archive this chat?");
    let kept = command(stack, &alice, &chat2, "!no").await?;
    expect(&kept, "OK, this chat stays as it is.");

    // !archive; bob (in the room too) answers !yes: not his question.
    let asked = command(stack, &alice, &chat1, "!archive").await?;
    expect(&asked, "Answer `!yes` or `!no` (within 10 minutes)");
    alice
        .room(&chat1)
        .await?
        .invite_user_by_id(bob.user_id())
        .await?;
    bob.wait_for_invite(|i| i.room_id == chat1, WAIT).await?;
    bob.join(&chat1).await?;
    bob.wait_for_joined_member(&chat1, &bot, WAIT).await?;
    let not_his = command(stack, &bob, &chat1, "!yes").await?;
    expect(&not_his, "There is nothing waiting for your answer here.");
    let settings = command(stack, &alice, &chat1, "!settings").await?;
    expect(&settings, "Waiting for your answer: archive this chat");
    assert_eq!(binding(&alice, &chat1).await?["archived"], false);

    // The question survives a restart (which also shortens the ttl of new questions).
    cmds.restart(true, &[("SURFACES__COMMANDS__CONFIRMATION_TTL_SECS", "2")])
        .await?;
    let stack = &cmds.stack;
    let done = command(stack, &alice, &chat1, "!yes").await?;
    expect(&done, "Archived.");
    assert_eq!(binding(&alice, &chat1).await?["archived"], true);
    let child = alice
        .room_state_event(&a.space, "m.space.child", chat1.as_str())
        .await?;
    assert!(
        child
            .as_ref()
            .and_then(Value::as_object)
            .is_some_and(|c| c.is_empty()),
        "the room left the Space: {child:?}"
    );
    assert!(alice
        .room_state_event(&a.space, "m.space.child", chat2.as_str())
        .await?
        .is_some_and(|c| c.get("via").is_some()));
    let archived = command(stack, &alice, &chat1, "are you there?").await?;
    expect(&archived, "This chat is archived");
    assert!(stack
        .agent
        .turns()
        .iter()
        .all(|t| t.text != "are you there?"));

    // A question expires: the room is told, and a late !yes does nothing.
    let asked = command(stack, &alice, &chat2, "!archive").await?;
    expect(&asked, "(within 2 seconds)");
    alice
        .wait_for_text_from(&chat2, &bot, "expired without an answer", WAIT)
        .await?;
    let late = command(stack, &alice, &chat2, "!yes").await?;
    expect(&late, "There is nothing waiting for your answer here.");
    assert_eq!(binding(&alice, &chat2).await?["archived"], false);
    let reply = ask(stack, &alice, &chat2, "still here").await?;
    expect(&reply.body, "ref-agent ref got: still here");

    // After another restart, the archived room still says so.
    cmds.restart(true, &[]).await?;
    let stack = &cmds.stack;
    let archived = command(stack, &alice, &chat1, "and now?").await?;
    expect(&archived, "This chat is archived");
    let reply = ask(stack, &alice, &chat2, "and here?").await?;
    expect(&reply.body, "ref-agent ref got: and here?");
    Ok(())
}

/// `!cancel` stops the turn in flight (and says so when nothing runs); an agent's
/// question is asked in the room and `!yes` / `!no` resume the turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_the_agents_questions() -> anyhow::Result<()> {
    let cmds = Cmds::start(|_| Vec::new()).await?;
    let stack = &cmds.stack;
    let bot = stack.bot_id().to_owned();
    let alice = stack.person("alice").await?;
    let a = onboard(stack, &alice).await?;
    let c1 = chat_id(&alice, &a.chat).await?;

    let nothing = command(stack, &alice, &a.chat, "!cancel").await?;
    expect(&nothing, "Nothing is running here right now.");

    // A slow turn, cancelled while it runs.
    stack
        .agent
        .set_chat_delay(&c1, std::time::Duration::from_secs(TIMEOUT_SECS - 5));
    let slow = alice.send_text(&a.chat, "a long task").await?;
    assert!(stack.agent.wait_for_turn_text("a long task", WAIT).await);
    let started = std::time::Instant::now();
    let cancelling = command(stack, &alice, &a.chat, "!cancel").await?;
    expect(&cancelling, "Cancelling the answer in progress");
    let cancelled = alice
        .wait_for_message(
            &a.chat,
            |m| m.sender == bot && m.in_reply_to.as_ref() == Some(&slow),
            WAIT,
        )
        .await?;
    assert_eq!(cancelled.msgtype, "m.notice");
    assert_eq!(cancelled.body, "Cancelled.");
    assert!(started.elapsed() < std::time::Duration::from_secs(TIMEOUT_SECS - 10));
    let turn_id = stack
        .agent
        .turns()
        .into_iter()
        .find(|t| t.text == "a long task")
        .expect("the slow turn")
        .turn_id;
    let cancels = stack.agent.requests_to(Endpoint::Cancel, &c1);
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    assert!(cancels[0]
        .raw_path
        .ends_with(&format!("/turns/{turn_id}/cancel")));
    // The room goes on.
    stack.agent.set_chat_delay(&c1, std::time::Duration::ZERO);
    let reply = ask(stack, &alice, &a.chat, "after the cancel").await?;
    expect(&reply.body, "ref-agent ref got: after the cancel");

    // The agent asks; !yes resumes the turn through the confirmations call.
    stack.agent.confirm_next("Delete 3 files?");
    let question = ask(stack, &alice, &a.chat, "delete the files").await?;
    expect(&question.body, "Reference asks: Delete 3 files?");
    expect(&question.body, "Answer `!yes` or `!no`");
    let settings = command(stack, &alice, &a.chat, "!settings").await?;
    expect(&settings, "Waiting for your answer: Delete 3 files?");
    // The agent's answer is the rest of its turn: a normal reply, not a bot notice.
    let done = ask(stack, &alice, &a.chat, "!yes").await?;
    assert_eq!(done.body, "ref-agent ref did: delete the files");
    assert_eq!(done.msgtype, "m.text");
    let confirms = stack.agent.requests_to(Endpoint::Confirm, &c1);
    assert_eq!(confirms.len(), 1, "{confirms:?}");
    assert_eq!(confirms[0].body["approved"], true);
    let asked_turn = stack
        .agent
        .turns()
        .into_iter()
        .find(|t| t.text == "delete the files")
        .expect("the asking turn");
    assert_eq!(confirms[0].body["turn_id"], asked_turn.turn_id.as_str());
    let again = command(stack, &alice, &a.chat, "!yes").await?;
    expect(&again, "There is nothing waiting for your answer here.");

    // ... and !no declines.
    stack.agent.confirm_next("Drop the table?");
    let question = ask(stack, &alice, &a.chat, "drop the table").await?;
    expect(&question.body, "Reference asks: Drop the table?");
    let declined = ask(stack, &alice, &a.chat, "!no").await?.body;
    assert_eq!(declined, "ref-agent ref did not: drop the table");
    let confirms = stack.agent.requests_to(Endpoint::Confirm, &c1);
    assert_eq!(confirms.len(), 2, "{confirms:?}");
    assert_eq!(confirms[1].body["approved"], false);
    Ok(())
}

/// A stranger's invite is declined (the log names the config key); after an agent is
/// removed from the config and the bot restarted, its room says it is stale and `!new`
/// with it selected says the agent is gone, while the other rooms go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_rooms_and_strangers() -> anyhow::Result<()> {
    let allowed = |synapse: &Synapse| {
        format!(
            "{}, {}",
            user_id(synapse, "alice"),
            user_id(synapse, "nobody")
        )
    };
    let mut cmds =
        Cmds::start(|synapse| vec![("SURFACES__ACCESS__ALLOWED_USERS", allowed(synapse))]).await?;
    let stack = &cmds.stack;
    let bot = stack.bot_id().to_owned();
    let alice = stack.person("alice").await?;
    let a = onboard(stack, &alice).await?;

    // A stranger (not in access.allowed_users) invites the bot: it declines.
    let mallory = stack.person("mallory").await?;
    let dm = mallory.create_dm(&bot).await?;
    mallory
        .wait_for_state_event(
            &dm,
            "m.room.member",
            bot.as_str(),
            |c| field(c, "membership") == "leave",
            WAIT,
        )
        .await?;
    assert!(
        stack.bot.log_contains("access.allowed_users"),
        "the log names the config key:\n{}",
        stack.bot.log_tail(40)
    );
    assert!(!mallory.joined_members(&dm).await?.iter().any(|m| m == &bot));
    assert!(
        mallory.invites().await.is_empty(),
        "no Space for a stranger"
    );

    // A room with agent two.
    command(stack, &alice, &a.chat, "!agent two").await?;
    command(stack, &alice, &a.chat, "!new").await?;
    let chat2 = join_new_chat(stack, &alice).await?;
    let reply = ask(stack, &alice, &chat2, "hi two").await?;
    expect(&reply.body, "ref-agent two got: hi two");

    // Agent two leaves the config.
    let allowed = allowed(&stack.synapse);
    cmds.restart(
        false,
        &[("SURFACES__ACCESS__ALLOWED_USERS", allowed.as_str())],
    )
    .await?;
    let stack = &cmds.stack;
    let stale = command(stack, &alice, &chat2, "are you still there?").await?;
    expect(
        &stale,
        "This chat is bound to the agent `two`, which is no longer available here",
    );
    assert!(cmds
        .two
        .turns()
        .iter()
        .all(|t| t.text != "are you still there?"));
    let gone = command(stack, &alice, &a.chat, "!new").await?;
    expect(&gone, "Your selected agent `two` is no longer available");
    let list = command(stack, &alice, &a.chat, "!agent").await?;
    expect_not(&list, "`two`");
    let reply = ask(stack, &alice, &a.chat, "and you?").await?;
    expect(&reply.body, "ref-agent ref got: and you?");
    Ok(())
}

/// `!agent two` is kept in the person's Space (`org.surfaces.space`, `selected_agent`): after
/// the bot's store is deleted (the Matrix session and its crypto store kept), reconciliation
/// rebuilds the choice from the Space, so `!agent` still marks `two` and `!new` makes a chat
/// bound to `two`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chosen_agent_survives_losing_the_store() -> anyhow::Result<()> {
    let mut cmds = Cmds::start(|_| Vec::new()).await?;
    let stack = &cmds.stack;
    let alice = stack.person("alice").await?;
    let a = onboard(stack, &alice).await?;
    let c1 = chat_id(&alice, &a.chat).await?;
    let selected = command(stack, &alice, &a.chat, "!agent two").await?;
    expect(&selected, "New chats will use Two");
    let prefs = alice
        .wait_for_state_event(
            &a.space,
            SPACE_EVENT,
            "",
            |c| field(c, "selected_agent") == "two",
            WAIT,
        )
        .await?;
    assert_eq!(field(&prefs, "owner"), alice.user_id().as_str());

    // The store is lost while the bot is down; the Matrix session and its stores are not.
    cmds.stop_bot().await?;
    let data_dir = cmds.stack.data.path().join("bot");
    let store = data_dir.join(STORE_DIR);
    assert!(store.is_dir(), "the store is at {}", store.display());
    std::fs::remove_dir_all(&store)?;
    assert!(data_dir.join(SESSION_FILE_NAME).is_file());
    assert!(data_dir.join(STORE_DIR_NAME).is_dir());
    cmds.start_bot(true, &[]).await?;
    let stack = &cmds.stack;
    assert!(
        stack.bot.log_contains("restored the Matrix session")
            && stack.bot.log_contains("reconciliation done"),
        "the same device, and the store rebuilt from Matrix:\n{}",
        stack.bot.log_tail(40)
    );

    // The choice came back from the Space.
    let list = command(stack, &alice, &a.chat, "!agent").await?;
    expect_line(&list, "- `ref` Reference (this chat)");
    expect_line(
        &list,
        "- `two` Two: The second agent (selected for new chats)",
    );
    let made = command(stack, &alice, &a.chat, "!new").await?;
    expect(&made, "New chat with Two ready");
    let chat2 = join_new_chat(stack, &alice).await?;
    let bound = binding(&alice, &chat2).await?;
    assert_eq!(field(&bound, "agent_id"), "two");
    assert_eq!(field(&bound, "owner"), alice.user_id().as_str());
    assert_ne!(
        field(&bound, "platform_chat_id"),
        c1,
        "no chat id is minted twice"
    );
    // Both rooms answer, each with its own agent.
    let reply = ask(stack, &alice, &chat2, "hello two").await?;
    expect(&reply.body, "ref-agent two got: hello two");
    let reply = ask(stack, &alice, &a.chat, "hello ref").await?;
    expect(&reply.body, "ref-agent ref got: hello ref");
    Ok(())
}
