//! Long replies against the real Synapse (issue 12, item 7): the reference agent replies
//! 40 KB (the person gets it in parts, each accepted by Synapse, encrypted) and 200 KB (a
//! short message and `reply.md`, intact); a reply Synapse refuses (over its 64 KiB per event)
//! ends in a notice. Every message is done: after a restart the agent is not called again.

use matrix_sdk::ruma::events::room::message::{MessageType, RoomMessageEventContent};
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId};

use crate::files::download;
use crate::spine::{agents_toml, ask, onboard, Stack};
use crate::support::bot::BotProcess;
use crate::support::person::{Person, ReceivedMessage};
use crate::support::reference_agent::{long_reply, LONG_REPLY_COMMAND};
use crate::support::{wait_until, POLL, WAIT};

/// The non-blank characters of `s` outside code-fence lines (what a person reads).
fn content(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim_start().starts_with("```"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// A stack whose bot config has `extra` after the agent.
async fn stack_with(extra: &str) -> anyhow::Result<(Stack, String)> {
    let mut config = String::new();
    let stack = Stack::start_configured(
        |agent, _| {
            config = format!("{}\n{extra}\n", agents_toml(agent));
            Ok(config.clone())
        },
        &[],
    )
    .await?;
    Ok((stack, config))
}

/// Stops the bot (SIGTERM) and starts it again with `toml`.
async fn restart(stack: &mut Stack, toml: &str) -> anyhow::Result<()> {
    let status = stack.bot.stop().await?;
    assert!(status.success(), "the bot exits 0 on SIGTERM: {status:?}");
    let mut bot = BotProcess::start(
        &stack.synapse,
        &stack.bot_creds,
        &stack.data.path().join("bot"),
        &[],
        Some(toml),
    )
    .await?;
    bot.wait_for_log("surfaces is running", WAIT).await?;
    stack.bot = bot;
    Ok(())
}

/// The bot's messages in `room` from its answer to `event` on, once `enough` holds for them.
async fn bot_messages_from(
    stack: &Stack,
    person: &Person,
    room: &OwnedRoomId,
    event: &OwnedEventId,
    enough: impl Fn(&[ReceivedMessage]) -> bool,
) -> anyhow::Result<Vec<ReceivedMessage>> {
    let bot = stack.bot_id().to_owned();
    let enough = &enough;
    wait_until(WAIT, POLL, || {
        let bot = bot.clone();
        async move {
            let all = person.messages_from(room, &bot).await;
            let start = all
                .iter()
                .position(|m| m.in_reply_to.as_ref() == Some(event))?;
            let from = all[start..].to_vec();
            enough(&from).then_some(from)
        }
    })
    .await
    .map_err(|e| e.context(format!("the bot's answer to {event} never came whole")))
}

/// How many turns the agent got with this text.
fn turns_with(stack: &Stack, text: &str) -> usize {
    stack
        .agent
        .turns()
        .iter()
        .filter(|t| t.text == text)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_replies_arrive_in_parts_or_as_a_file_and_are_done() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;

    // 40 KB: in parts (16 KiB of text each by default), every one accepted by Synapse.
    let parts_text = format!("{LONG_REPLY_COMMAND}40000");
    let want = content(&long_reply(40000));
    let event = alice.send_text(&ob.chat, &parts_text).await?;
    let parts = bot_messages_from(&stack, &alice, &ob.chat, &event, |ms| {
        let got: Vec<&str> = ms.iter().map(|m| m.body.as_str()).collect();
        content(&got.join("\n")).len() >= want.len()
    })
    .await?;
    assert!(parts.len() >= 3, "{} parts", parts.len());
    for part in &parts {
        assert_eq!(part.msgtype, "m.text");
        assert!(part.body.len() <= 16 * 1024, "{} bytes", part.body.len());
        assert!(part.was_encrypted, "sent in the encrypted room");
    }
    let got: Vec<&str> = parts.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(content(&got.join("\n")), want, "nothing lost, in order");

    // 200 KB: a short message, then the whole reply as reply.md.
    let file_text = format!("{LONG_REPLY_COMMAND}200000");
    let event = alice.send_text(&ob.chat, &file_text).await?;
    let answer = bot_messages_from(&stack, &alice, &ob.chat, &event, |ms| {
        ms.iter().any(|m| m.msgtype == "m.file")
    })
    .await?;
    assert!(answer[0].body.contains("reply.md"), "{}", answer[0].body);
    let file = answer
        .iter()
        .find(|m| m.msgtype == "m.file")
        .expect("checked");
    assert_eq!(file.body, "reply.md");
    let content: RoomMessageEventContent = serde_json::from_value(file.content.clone())?;
    let MessageType::File(file) = content.msgtype else {
        panic!("not an m.file")
    };
    assert_eq!(
        download(&alice, &file.source).await?,
        long_reply(200000).into_bytes(),
        "the reply, intact"
    );

    // Both are done: a restart does not call the agent for them again.
    stack.restart_bot().await?;
    ask(&stack, &alice, &ob.chat, "after the restart").await?;
    assert_eq!(turns_with(&stack, &parts_text), 1);
    assert_eq!(turns_with(&stack, &file_text), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_synapse_refuses_ends_in_a_notice_and_is_done() -> anyhow::Result<()> {
    // Limits set past what Synapse accepts, so that the reply goes as one oversized event.
    let (mut stack, toml) =
        stack_with("[replies]\nmax_message_bytes = 200000\nmax_inline_bytes = 200000\n").await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;

    let text = format!("{LONG_REPLY_COMMAND}100000");
    let event = alice.send_text(&ob.chat, &text).await?;
    let answer = bot_messages_from(&stack, &alice, &ob.chat, &event, |ms| !ms.is_empty()).await?;
    assert_eq!(answer[0].msgtype, "m.notice", "{}", answer[0].body);
    assert!(answer[0].body.contains("could not"), "{}", answer[0].body);

    // Done: a restart does not call the agent again, and the person is told once.
    restart(&mut stack, &toml).await?;
    ask(&stack, &alice, &ob.chat, "after the restart").await?;
    assert_eq!(turns_with(&stack, &text), 1);
    let bot = stack.bot_id().to_owned();
    let told = alice
        .messages_from(&ob.chat, &bot)
        .await
        .iter()
        .filter(|m| m.in_reply_to.as_ref() == Some(&event))
        .count();
    assert_eq!(told, 1);
    Ok(())
}
