//! Long replies (issue 12, item 7): a reply past the messenger's limit arrives in parts cut at
//! paragraph and code-block boundaries, or as `reply.md` past the inline limit; a turn past
//! `replies.max_turn_bytes` is cut with a note; a reply the messenger refuses for good ends in
//! a notice. In every case the message is done: a restart does not call the agent again.

use surfaces::retry::RetryKind;
use surfaces::surface::{Capabilities, ChatId, MessageId, PersonId};
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup};
use surfaces_testkit::memory::{Options, Post, PostBody};
use surfaces_testkit::reference_agent::{long_reply, Endpoint, LONG_REPLY_COMMAND};
use surfaces_testkit::wait::{wait_until, POLL};

use crate::support::expect;

/// The in-memory messenger refuses messages over this many bytes (as a homeserver does).
const MESSENGER_LIMIT: usize = 3000;

/// The reference agent behind a messenger with [`MESSENGER_LIMIT`], and `[replies]` limits
/// (none: the defaults).
fn setup(replies: &str) -> Setup {
    let mut options = Options::default();
    options.capabilities = Capabilities {
        max_message_bytes: Some(MESSENGER_LIMIT),
        ..options.capabilities
    };
    Setup {
        agent: AgentSetup::Reference,
        options,
        extra_toml: if replies.is_empty() {
            String::new()
        } else {
            format!("\n[replies]\n{replies}\n")
        },
        ..Setup::default()
    }
}

/// The non-blank characters of `s` outside code-fence lines (what a person reads).
fn content(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim_start().starts_with("```"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// The bot's posts in `chat` from its answer to `id` on, once there are `n` after it.
async fn posts_from(
    bot: &Bot,
    chat: &ChatId,
    id: &MessageId,
    n: usize,
) -> anyhow::Result<Vec<Post>> {
    wait_until(surfaces_testkit::inproc::WAIT, POLL, || {
        let posts = bot.world.bot_posts(chat);
        let from = posts
            .iter()
            .position(|p| p.reply_to.as_ref() == Some(id))
            .map(|i| posts[i..].to_vec())
            .filter(|p| p.len() >= n);
        async move { from }
    })
    .await
    .map_err(|e| {
        e.context(format!(
            "no {n} posts answering {id}; {}",
            bot.transcript(chat)
        ))
    })
}

/// Restarts the bot, asks something else, and checks the agent saw `text` only once.
async fn done_after_restart(
    bot: &mut Bot,
    alice: &PersonId,
    chat: &ChatId,
    text: &str,
) -> anyhow::Result<()> {
    let before = bot.reference()?.request_count(Endpoint::Turn);
    bot.restart().await?;
    bot.ask(alice, chat, "still there?").await?;
    let agent = bot.reference()?;
    assert_eq!(
        agent.request_count(Endpoint::Turn),
        before + 1,
        "only the new message"
    );
    assert_eq!(
        agent.turns().iter().filter(|t| t.text == text).count(),
        1,
        "the long turn was not run again"
    );
    Ok(())
}

#[actix_rt::test]
async fn a_long_reply_arrives_in_parts_under_the_limit() -> anyhow::Result<()> {
    let (mut bot, alice, chat) = Bot::with_person(
        setup("max_message_bytes = 1000\nmax_inline_bytes = 20000"),
        "alice",
    )
    .await?;
    let text = format!("{LONG_REPLY_COMMAND}9000");
    let id = bot.world.say(&alice, &chat, &text);
    let want = long_reply(9000);
    let posts = wait_until(surfaces_testkit::inproc::WAIT, POLL, || {
        let all = bot.world.bot_posts(&chat);
        let start = all.iter().position(|p| p.reply_to.as_ref() == Some(&id));
        let got = start.map(|i| all[i..].to_vec()).filter(|parts| {
            content(&parts.iter().map(Post::text).collect::<Vec<_>>().join("\n")).len()
                >= content(&want).len()
        });
        async move { got }
    })
    .await
    .map_err(|e| {
        e.context(format!(
            "the reply never arrived; {}",
            bot.transcript(&chat)
        ))
    })?;

    assert!(posts.len() >= 9, "{} parts", posts.len());
    for (i, post) in posts.iter().enumerate() {
        assert!(
            post.text().len() <= 1000,
            "part {i}: {} bytes",
            post.text().len()
        );
        assert!(!post.is_notice(), "part {i} is the agent speaking");
        // A part never ends inside a code block it opened (the last one may: the reply
        // itself ends inside one).
        let fences = post.text().lines().filter(|l| l.starts_with("```")).count();
        if i + 1 < posts.len() {
            assert_eq!(fences % 2, 0, "part {i}: {:?}", post.text());
        }
        // Only the first part answers the message; each has a key of its own.
        assert_eq!(post.reply_to.is_some(), i == 0, "part {i}");
    }
    let mut keys: Vec<_> = posts.iter().filter_map(|p| p.key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), posts.len(), "one key per part");
    let joined: Vec<&str> = posts.iter().map(Post::text).collect();
    assert_eq!(content(&joined.join("\n")), content(&want), "nothing lost");

    done_after_restart(&mut bot, &alice, &chat, &text).await
}

#[actix_rt::test]
async fn a_reply_past_the_inline_limit_is_attached_as_a_file() -> anyhow::Result<()> {
    let (mut bot, alice, chat) = Bot::with_person(
        setup("max_message_bytes = 1000\nmax_inline_bytes = 5000"),
        "alice",
    )
    .await?;
    let text = format!("{LONG_REPLY_COMMAND}200000");
    let id = bot.world.say(&alice, &chat, &text);
    let posts = posts_from(&bot, &chat, &id, 2).await?;
    expect(posts[0].text(), "reply.md");
    expect(posts[0].text(), "Reference");
    let PostBody::File { name, mime, data } = &posts[1].body else {
        panic!("not a file: {:?}", posts[1]);
    };
    assert_eq!(
        (name.as_str(), mime.as_str()),
        ("reply.md", "text/markdown")
    );
    assert_eq!(
        data,
        long_reply(200000).as_bytes(),
        "the whole reply, intact"
    );

    done_after_restart(&mut bot, &alice, &chat, &text).await
}

#[actix_rt::test]
async fn a_turn_past_the_accumulation_limit_is_cut_with_a_note() -> anyhow::Result<()> {
    let (mut bot, alice, chat) = Bot::with_person(
        setup("max_turn_bytes = 4000\nmax_message_bytes = 2000\nmax_inline_bytes = 100000"),
        "alice",
    )
    .await?;
    let text = format!("{LONG_REPLY_COMMAND}50000");
    let id = bot.world.say(&alice, &chat, &text);
    let posts = wait_until(surfaces_testkit::inproc::WAIT, POLL, || {
        let all = bot.world.bot_posts(&chat);
        let start = all.iter().position(|p| p.reply_to.as_ref() == Some(&id));
        let got = start
            .map(|i| all[i..].to_vec())
            .filter(|p| p.iter().any(|p| p.text().contains("cut here")));
        async move { got }
    })
    .await
    .map_err(|e| e.context(format!("no cut reply; {}", bot.transcript(&chat))))?;
    let total: usize = posts.iter().map(|p| p.text().len()).sum();
    assert!(total < 4000 + 400, "{total} bytes: cut near the limit");
    let joined: Vec<&str> = posts.iter().map(Post::text).collect();
    let joined = content(&joined.join("\n"));
    assert!(
        content(&long_reply(50000)).starts_with(joined.split("✂").next().unwrap_or_default()),
        "the beginning of the reply"
    );

    done_after_restart(&mut bot, &alice, &chat, &text).await
}

#[actix_rt::test]
async fn a_reply_refused_for_good_ends_in_a_notice_and_is_done() -> anyhow::Result<()> {
    let (mut bot, alice, chat) = Bot::with_person(setup(""), "alice").await?;
    bot.world
        .faults(|f| f.sends.push_back(RetryKind::Permanent));
    let text = "refused for good";
    let id = bot.world.say(&alice, &chat, text);
    let answer = bot.answer(&chat, &id).await?;
    assert!(answer.is_notice(), "{answer:?}");
    expect(answer.text(), "could not");
    expect(answer.text(), "Reference");

    done_after_restart(&mut bot, &alice, &chat, text).await?;
    assert_eq!(bot.world.answers_to(&chat, &id).len(), 1, "told once");
    Ok(())
}
