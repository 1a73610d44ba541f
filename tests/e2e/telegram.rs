//! Telegram through the same core, end to end: the real `surfaces` binary serving Matrix
//! (a real Synapse) and Telegram (the independent Bot API emulator `telegram-test-api`, from
//! npm, installed by `ops/telegram/install`) in one process, with the reference agent.
//!
//! The emulator has no topics, no files, no typing and no long polling (see
//! `ops/telegram/README.md`): the bot runs in its one-conversation-per-private-chat mode
//! here; topics, files and the offset are proven in process against a narrow fake of the
//! Bot API (`tests/inproc/telegram.rs`).

use surfaces_testkit::telegram::{BotMessage, TelegramEmulator};

use crate::spine::{agents_toml, ask, onboard, Stack};
use crate::support::WAIT;

const TOKEN: &str = "123456:surfaces-test";
const ANN: i64 = 1001;
const STRANGER: i64 = 2002;

fn telegram_toml(emulator: &TelegramEmulator) -> String {
    format!(
        "[telegram]\ntoken = \"{TOKEN}\"\napi_url = \"{}\"\nallowed_users = [\"{ANN}\"]\n",
        emulator.base_url()
    )
}

/// Waits until the bot's messages to `chat` include one matching `want`; returns it.
async fn wait_for(
    emulator: &TelegramEmulator,
    chat: i64,
    what: &str,
    want: impl Fn(&BotMessage) -> bool,
) -> anyhow::Result<BotMessage> {
    let want = &want;
    crate::support::try_wait_until(WAIT, crate::support::POLL, || async move {
        let messages = emulator.bot_messages(TOKEN, chat).await?;
        Ok(messages.into_iter().find(|m| want(m)))
    })
    .await
    .map_err(|e| anyhow::anyhow!("waiting for {what} in Telegram chat {chat}: {e}"))
}

fn says(message: &BotMessage, needle: &str) -> bool {
    message.text.as_deref().is_some_and(|t| t.contains(needle))
}

/// Replies of the bot to message `id` of chat `chat`.
async fn replies_to(
    emulator: &TelegramEmulator,
    chat: i64,
    id: i64,
) -> anyhow::Result<Vec<BotMessage>> {
    Ok(emulator
        .bot_messages(TOKEN, chat)
        .await?
        .into_iter()
        .filter(|m| m.reply_to_message_id == Some(id))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_people_talk_to_the_same_agents_beside_matrix() -> anyhow::Result<()> {
    let emulator = TelegramEmulator::start().await?;
    let section = telegram_toml(&emulator);
    let mut stack = Stack::start_configured(
        |agent, _| Ok(format!("{}{section}", agents_toml(agent))),
        &[],
    )
    .await?;
    stack.bot_toml = format!("{}{section}", agents_toml(&stack.agent));

    // A person's first message: their private chat becomes their conversation (the emulator
    // has no topics), welcomed, and the message itself is answered by the agent.
    let first = emulator
        .send_text(TOKEN, ANN, ANN, "hello from telegram")
        .await?;
    wait_for(&emulator, ANN, "the welcome", |m| {
        says(m, "This chat is with")
    })
    .await?;
    let reply = wait_for(&emulator, ANN, "the reply", |m| {
        m.reply_to_message_id == Some(first)
    })
    .await?;
    assert!(says(&reply, "got: hello from telegram"), "{reply:?}");
    assert_eq!(reply.parse_mode.as_deref(), Some("HTML"), "{reply:?}");

    // Matrix works beside it, in the same process.
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;
    let matrix_reply = ask(&stack, &alice, &ob.chat, "hello from matrix").await?;
    assert!(
        matrix_reply.body.contains("got: hello from matrix"),
        "{}",
        matrix_reply.body
    );

    // A slash command is a command: /clear rotates the conversation's upstream chat id.
    let chat_before = stack
        .agent
        .turns()
        .into_iter()
        .find(|t| t.text == "hello from telegram")
        .map(|t| t.chat)
        .ok_or_else(|| anyhow::anyhow!("the agent never saw the Telegram turn"))?;
    let clear = emulator.send_text(TOKEN, ANN, ANN, "/clear").await?;
    wait_for(&emulator, ANN, "the !clear answer", |m| {
        m.reply_to_message_id == Some(clear)
    })
    .await?;
    let after = emulator.send_text(TOKEN, ANN, ANN, "after clear").await?;
    wait_for(&emulator, ANN, "the reply after !clear", |m| {
        m.reply_to_message_id == Some(after)
    })
    .await?;
    let chat_after = stack
        .agent
        .turns()
        .into_iter()
        .find(|t| t.text == "after clear")
        .map(|t| t.chat)
        .ok_or_else(|| anyhow::anyhow!("the agent never saw the turn after !clear"))?;
    assert_ne!(
        chat_before, chat_after,
        "!clear gives the conversation a new chat id"
    );
    // Matrix's conversation kept its own chat id.
    let matrix_chat = stack
        .agent
        .turns()
        .into_iter()
        .find(|t| t.text == "hello from matrix")
        .map(|t| t.chat);
    assert!(matrix_chat.is_some_and(|c| c != chat_before && c != chat_after));

    // Without topics, a second conversation cannot be made: the person is told what to do.
    let new = emulator.send_text(TOKEN, ANN, ANN, "/new").await?;
    let refused = wait_for(&emulator, ANN, "the /new answer", |m| {
        m.reply_to_message_id == Some(new)
    })
    .await?;
    assert!(
        says(&refused, "cannot make another conversation"),
        "{refused:?}"
    );

    // !help says why: one conversation here.
    let help = emulator.send_text(TOKEN, ANN, ANN, "/help").await?;
    let helped = wait_for(&emulator, ANN, "the /help answer", |m| {
        m.reply_to_message_id == Some(help)
    })
    .await?;
    assert!(says(&helped, "one conversation"), "{helped:?}");

    // A stranger is told, once, how to get in; nothing reaches the agent.
    emulator
        .send_text(TOKEN, STRANGER, STRANGER, "let me in")
        .await?;
    let told = wait_for(&emulator, STRANGER, "the refusal", |m| {
        says(m, "not open to you")
    })
    .await?;
    assert!(says(&told, &STRANGER.to_string()), "{told:?}");
    assert!(stack.agent.turns().iter().all(|t| t.text != "let me in"));
    assert!(stack.bot.log_contains("add 2002 to telegram.allowed_users"));

    // A crash between journal and reply: answered once after the restart.
    stack.bot.stop().await?;
    stack
        .relaunch(&[("SURFACES_CRASH_AT", "after-journal")])
        .await?;
    let survive = emulator
        .send_text(TOKEN, ANN, ANN, "survive the crash")
        .await?;
    let status = stack.bot.wait_for_exit(WAIT).await?;
    assert!(
        !status.success(),
        "the bot was killed at the crash point ({status:?})"
    );
    stack.relaunch(&[]).await?;
    let answered = wait_for(&emulator, ANN, "the reply after the restart", |m| {
        m.reply_to_message_id == Some(survive)
    })
    .await?;
    assert!(says(&answered, "got: survive the crash"), "{answered:?}");
    // A later message is answered too, so anything still pending was handled by now.
    let later = emulator.send_text(TOKEN, ANN, ANN, "and later").await?;
    wait_for(&emulator, ANN, "the later reply", |m| {
        m.reply_to_message_id == Some(later)
    })
    .await?;
    assert_eq!(
        replies_to(&emulator, ANN, survive).await?.len(),
        1,
        "exactly one reply"
    );
    let turn = stack
        .agent
        .turns()
        .into_iter()
        .find(|t| t.text == "survive the crash")
        .ok_or_else(|| anyhow::anyhow!("the agent never saw the turn"))?;
    assert_eq!(
        stack.agent.executions_of(&turn.turn_id),
        1,
        "the turn ran once"
    );

    // The status page shows the polling actor.
    let status = reqwest::get(format!("{}/status.json", stack.bot.ops_url()))
        .await?
        .text()
        .await?;
    assert!(status.contains("telegram-poll"), "{status}");
    Ok(())
}
