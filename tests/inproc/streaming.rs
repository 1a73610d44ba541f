//! Live replies (issue 14): a slow reply is posted at its first words and edited as it grows,
//! within the cap, with the agent's progress as its last line until the final edit carries the
//! whole reply; `!cancel` mid-stream keeps what was said and marks it stopped; a reply longer
//! than one message continues in new messages; with streaming off, one final post as before.

use std::time::Duration;

use surfaces::surface::{ChatId, MessageId, PersonId};
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup, WAIT};
use surfaces_testkit::memory::Post;
use surfaces_testkit::reference_agent::{streamed_reply, STREAM_COMMAND};
use surfaces_testkit::wait::{wait_until, POLL};

/// The cap of these tests' streams (final edit included).
const MAX_EDITS: u32 = 6;
/// The pause between two events of the agent's streams.
const AGENT_INTERVAL: Duration = Duration::from_millis(20);

fn setup(streaming: &str) -> Setup {
    Setup {
        agent: AgentSetup::Reference,
        extra_toml: format!("\n[streaming]\n{streaming}\n"),
        ..Setup::default()
    }
}

fn live() -> Setup {
    setup(&format!(
        "first_interval_ms = 40\nmax_interval_ms = 150\nmax_edits = {MAX_EDITS}"
    ))
}

/// Starts a bot with `setup`, an agent that streams at [`AGENT_INTERVAL`], and one person.
async fn start(setup: Setup) -> anyhow::Result<(Bot, PersonId, ChatId)> {
    let (bot, alice, chat) = Bot::with_person(setup, "alice").await?;
    bot.reference()?.set_interval(AGENT_INTERVAL);
    Ok((bot, alice, chat))
}

/// Waits until the bot's answer to `id` shows `text`; returns every answer to `id`.
async fn answered_with(
    bot: &Bot,
    chat: &ChatId,
    id: &MessageId,
    text: &str,
) -> anyhow::Result<Vec<Post>> {
    wait_until(WAIT, POLL, || {
        let answers = bot.world.answers_to(chat, id);
        let done = answers.iter().any(|p| p.text() == text);
        async move { done.then_some(answers) }
    })
    .await
    .map_err(|e| e.context(bot.transcript(chat)))
}

#[actix_rt::test]
async fn a_slow_reply_is_posted_early_and_edited_within_the_cap() -> anyhow::Result<()> {
    let (bot, alice, chat) = start(live()).await?;
    let words = 40;
    let id = bot
        .world
        .say(&alice, &chat, &format!("{STREAM_COMMAND}{words}"));
    let whole = streamed_reply(words);
    let answers = answered_with(&bot, &chat, &id, &whole).await?;
    assert_eq!(
        answers.len(),
        1,
        "one reply, edited: {}",
        bot.transcript(&chat)
    );
    let reply = &answers[0];
    let first = match &reply.body {
        surfaces_testkit::memory::PostBody::Text { markdown, .. } => markdown.clone(),
        other => anyhow::bail!("a text reply, not {other:?}"),
    };
    assert!(
        first.starts_with("word-1") && first.len() < whole.len(),
        "posted at its first words: {first:?}"
    );
    assert!(
        reply.edits.len() <= MAX_EDITS as usize,
        "{} edits > cap {MAX_EDITS}: {:?}",
        reply.edits.len(),
        reply.edits
    );
    assert!(
        reply.edits.len() >= 2,
        "edited as it grew: {:?}",
        reply.edits
    );
    assert!(
        std::iter::once(&first)
            .chain(&reply.edits)
            .any(|t| t.contains("_… step ")),
        "progress shown while it ran: {first:?} {:?}",
        reply.edits
    );
    assert_eq!(
        reply.edits.last(),
        Some(&whole),
        "the final edit is done.text, no progress line"
    );
    Ok(())
}

#[actix_rt::test]
async fn cancel_mid_stream_keeps_what_was_said_and_says_stopped() -> anyhow::Result<()> {
    let (bot, alice, chat) = start(live()).await?;
    bot.reference()?.set_interval(Duration::from_millis(100));
    let id = bot
        .world
        .say(&alice, &chat, &format!("{STREAM_COMMAND}200"));
    bot.answer(&chat, &id).await?;
    bot.world.say(&alice, &chat, "!cancel");
    let answers = answered_with_ending(&bot, &chat, &id, "_(stopped)_").await?;
    let text = answers[0].text().to_owned();
    assert!(text.starts_with("word-1"), "what was said stays: {text:?}");
    assert!(
        !text.contains("step "),
        "no progress line at the end: {text:?}"
    );
    assert_eq!(answers.len(), 1, "{}", bot.transcript(&chat));
    Ok(())
}

/// Waits until the bot's answer to `id` ends with `ending`.
async fn answered_with_ending(
    bot: &Bot,
    chat: &ChatId,
    id: &MessageId,
    ending: &str,
) -> anyhow::Result<Vec<Post>> {
    wait_until(WAIT, POLL, || {
        let answers = bot.world.answers_to(chat, id);
        let done = answers.iter().any(|p| p.text().ends_with(ending));
        async move { done.then_some(answers) }
    })
    .await
    .map_err(|e| e.context(bot.transcript(chat)))
}

#[actix_rt::test]
async fn with_streaming_off_the_reply_is_posted_once_whole() -> anyhow::Result<()> {
    let (bot, alice, chat) = start(setup("enabled = false")).await?;
    let id = bot.world.say(&alice, &chat, &format!("{STREAM_COMMAND}20"));
    let whole = streamed_reply(20);
    let answers = answered_with(&bot, &chat, &id, &whole).await?;
    assert_eq!(answers.len(), 1);
    assert!(
        answers[0].edits.is_empty(),
        "no edits: {:?}",
        answers[0].edits
    );
    Ok(())
}

#[actix_rt::test]
async fn a_quick_reply_is_posted_whole_even_with_streaming_on() -> anyhow::Result<()> {
    // The reference agent's usual reply: a status and two deltas at once.
    let (bot, alice, chat) = Bot::with_person(live(), "alice").await?;
    let reply = bot.ask(&alice, &chat, "quick one").await?;
    assert_eq!(reply.text(), "ref-agent ref got: quick one");
    assert!(
        reply.edits.is_empty(),
        "a turn done within streaming.first_post_ms costs one event: {:?}",
        reply.edits
    );
    Ok(())
}
