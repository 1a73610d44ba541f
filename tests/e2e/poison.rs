//! Poison messages against the real binary and Synapse (issue 12, item 10): a message whose
//! turn kills the whole process (SIGKILL at the crash point `during-turn`) on every start is
//! resumed at most `MAX_RESUMES` times, counted in the journal across the crashes, then given
//! up with one error notice; the agent is not called for it again.

use surfaces::runtime::room::MAX_RESUMES;
use surfaces::texts;

use crate::spine::{agents_toml, ask, onboard, Stack};
use crate::support::bot::BotProcess;
use crate::support::WAIT;

/// Kills the process when the agent's first event of a turn arrives.
const CRASH: (&str, &str) = ("SURFACES_CRASH_AT", "during-turn");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_kills_the_process_is_given_up_after_max_resumes() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;
    stack.bot.stop().await?;
    stack.relaunch(&[CRASH]).await?;
    let text = "this one kills the bot";
    let event = alice.send_text(&ob.chat, text).await?;
    let status = stack.bot.wait_for_exit(WAIT).await?;
    assert!(!status.success(), "killed by its turn: {status:?}");

    // Every start resumes it and dies again, MAX_RESUMES times.
    for attempt in 1..=MAX_RESUMES {
        stack.bot = BotProcess::start(
            &stack.synapse,
            &stack.bot_creds,
            &stack.data.path().join("bot"),
            &[CRASH],
            Some(&agents_toml(&stack.agent)),
        )
        .await?;
        let status = stack.bot.wait_for_exit(WAIT).await?;
        assert!(!status.success(), "resume {attempt} killed it: {status:?}");
    }
    let calls = usize::try_from(MAX_RESUMES)? + 1;
    let turns = |stack: &Stack| {
        stack
            .agent
            .turns()
            .iter()
            .filter(|t| t.text == text)
            .count()
    };
    assert_eq!(turns(&stack), calls);

    // The next start gives it up (still armed to crash on any turn: it stays up).
    stack.relaunch(&[CRASH]).await?;
    let bot = stack.bot_id().to_owned();
    let notice = alice
        .wait_for_message(
            &ob.chat,
            |m| m.sender == bot && m.in_reply_to.as_ref() == Some(&event),
            WAIT,
        )
        .await?;
    assert_eq!(notice.msgtype, "m.notice");
    assert_eq!(notice.body, texts::internal_error());

    // Done for good: a normal start answers new messages and leaves this one alone.
    stack.restart_bot().await?;
    ask(&stack, &alice, &ob.chat, "and now?").await?;
    assert_eq!(
        turns(&stack),
        calls,
        "the agent was not called for it again"
    );
    let told = alice
        .messages_from(&ob.chat, &bot)
        .await
        .iter()
        .filter(|m| m.in_reply_to.as_ref() == Some(&event))
        .count();
    assert_eq!(told, 1, "told once");
    Ok(())
}
