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

/// A live bot whose messages hold `max_message_bytes` and whose replies go as a file past
/// `max_inline_bytes`, with a cap high enough to see a reply spill over mid-stream.
fn live_and_small(max_message_bytes: usize, max_inline_bytes: usize) -> Setup {
    let mut setup = setup(&format!(
        "first_interval_ms = 40\nmax_interval_ms = 150\nmax_edits = {LONG_MAX_EDITS}"
    ));
    setup.extra_toml.push_str(&format!(
        "\n[replies]\nmax_message_bytes = {max_message_bytes}\nmax_inline_bytes = {max_inline_bytes}\n"
    ));
    setup
}

/// The cap of the long streams below.
const LONG_MAX_EDITS: u32 = 12;

/// The non-blank characters of `s` (what a person reads, whatever the cuts).
fn content(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The bot's posts in `chat` from its answer to `id` on, once `done` holds for them.
async fn posts_from(
    bot: &Bot,
    chat: &ChatId,
    id: &MessageId,
    done: impl Fn(&[Post]) -> bool,
) -> anyhow::Result<Vec<Post>> {
    wait_until(WAIT, POLL, || {
        let posts = bot.world.bot_posts(chat);
        let from = posts
            .iter()
            .position(|p| p.reply_to.as_ref() == Some(id))
            .map(|i| posts[i..].to_vec())
            .filter(|p| done(p));
        async move { from }
    })
    .await
    .map_err(|e| e.context(bot.transcript(chat)))
}

/// What a post showed when it was first posted.
fn first_shown(post: &Post) -> &str {
    match &post.body {
        surfaces_testkit::memory::PostBody::Text { markdown, .. } => markdown,
        surfaces_testkit::memory::PostBody::File { name, .. } => name,
    }
}

#[actix_rt::test]
async fn a_reply_longer_than_a_message_continues_live_in_the_next() -> anyhow::Result<()> {
    let max_message_bytes = 400;
    let (bot, alice, chat) = start(live_and_small(max_message_bytes, 65_536)).await?;
    let words = 150; // about 1.3 KB: four messages or more
    let id = bot
        .world
        .say(&alice, &chat, &format!("{STREAM_COMMAND}{words}"));
    let whole = streamed_reply(words);
    let posts = posts_from(&bot, &chat, &id, |posts| {
        let shown: String = posts.iter().map(|p| content(p.text())).collect();
        shown == content(&whole)
    })
    .await?;
    assert!(posts.len() >= 4, "{}", bot.transcript(&chat));
    for post in &posts {
        assert!(
            post.text().len() <= max_message_bytes,
            "{} bytes: {}",
            post.text().len(),
            bot.transcript(&chat)
        );
        assert!(
            post.edits.len() <= LONG_MAX_EDITS as usize,
            "{} edits > cap: {}",
            post.edits.len(),
            bot.transcript(&chat)
        );
        assert!(
            !post.text().contains("step "),
            "no progress line at the end"
        );
    }
    // The second message was posted while the reply was still being written (it carried
    // the progress line), not at the end.
    assert!(
        first_shown(&posts[1]).contains("_… step "),
        "continued live: {}",
        bot.transcript(&chat)
    );
    assert_eq!(
        bot.world.answers_to(&chat, &id).len(),
        1,
        "one message answers the question, the others follow it"
    );
    Ok(())
}

#[actix_rt::test]
async fn a_live_reply_past_the_inline_limit_ends_as_a_file() -> anyhow::Result<()> {
    let (bot, alice, chat) = start(live_and_small(400, 800)).await?;
    let words = 150;
    let id = bot
        .world
        .say(&alice, &chat, &format!("{STREAM_COMMAND}{words}"));
    let posts = posts_from(&bot, &chat, &id, |posts| {
        posts.iter().any(|p| p.text() == "reply.md")
    })
    .await?;
    let Some((file, messages)) = posts.split_last() else {
        anyhow::bail!("no posts");
    };
    let surfaces_testkit::memory::PostBody::File { data, .. } = &file.body else {
        anyhow::bail!("the last post is not the file: {}", bot.transcript(&chat));
    };
    assert_eq!(data.as_slice(), streamed_reply(words).as_bytes());
    assert!(
        messages[0].text().contains("reply.md"),
        "the first message is the file's note: {}",
        bot.transcript(&chat)
    );
    assert!(
        messages.len() >= 2,
        "it streamed past one message first: {}",
        bot.transcript(&chat)
    );
    for later in &messages[1..] {
        assert_eq!(later.text(), "_(continued in reply.md)_");
    }
    Ok(())
}
