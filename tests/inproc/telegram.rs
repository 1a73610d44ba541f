//! The Telegram adapter in process: the real runtime with the real `TelegramConnector`,
//! talking Bot API over HTTP to our narrow fake ([`FakeBotApi`]).
//!
//! Why this exists: the registry's Telegram emulator has no topics, files, chat actions or
//! `getUpdates` `offset`, so what the adapter builds on them is proven here: onboarding into a
//! first topic and `/new` making another, replies in the topic they answer, the offset
//! acknowledged only after the core journaled the updates (and no second answer after a
//! restart or a duplicate delivery), files both ways, a 429 with `retry_after`, "typing…"
//! and a live reply edited in place; and webhook mode (`[telegram.webhook]`): updates POSTed
//! as Telegram does, checked for the secret, answered once. The harness is local to this file: the testkit's
//! in-process `Bot` is built around the in-memory messenger and is shared.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use surfaces::config::Config;
use surfaces::runtime::RuntimeView;
use surfaces::surface::Connector;
use surfaces::telegram::TelegramConnector;
use surfaces_testkit::fake_bot_api::{FakeBotApi, SentMessage, Topic};
use surfaces_testkit::inproc::WAIT;
use surfaces_testkit::reference_agent::{streamed_reply, ReferenceAgent, STREAM_COMMAND};
use surfaces_testkit::wait::{wait_until, POLL};
use tokio::sync::oneshot;

/// The bot's token (the fake accepts only it).
const TOKEN: &str = "123456:fake-token";
/// The one person allowed to use the bot; their private chat has the same id.
const PERSON: i64 = 1001;
/// How long one long poll waits (short, so a stop is quick).
const POLL_TIMEOUT_SECS: u64 = 1;
/// The file limit of the scenarios with files.
const MAX_FILE_BYTES: u64 = 1_000_000;
/// The name of the first conversation the core makes.
const FIRST_CHAT: &str = "Chat 1";

/// What the bot runs with.
#[derive(Default)]
struct Options {
    /// The reference agent (with a workspace) instead of the built-in echo agent.
    reference: bool,
    /// Extra TOML appended to the config.
    extra_toml: String,
}

/// The webhook secret of the webhook scenarios.
const SECRET: &str = "webhook-secret_42";
/// The webhook path of the webhook scenarios.
const HOOK_PATH: &str = "/telegram/updates";

/// A running core.
struct Run {
    view: RuntimeView,
    stop: Option<oneshot::Sender<()>>,
    exited: tokio::task::JoinHandle<ExitCode>,
}

/// The real runtime with the Telegram connector, against the fake.
struct TelegramBot {
    fake: FakeBotApi,
    agent: Option<ReferenceAgent>,
    workspace: PathBuf,
    config: Config,
    run: Option<Run>,
    _dir: tempfile::TempDir,
}

impl TelegramBot {
    async fn start(options: Options) -> anyhow::Result<TelegramBot> {
        let fake = FakeBotApi::start(TOKEN, true).await?;
        let dir = tempfile::tempdir()?;
        let workspace = dir.path().join("workspace");
        std::fs::create_dir_all(&workspace)?;
        let agent = if options.reference {
            Some(ReferenceAgent::start("ref").await)
        } else {
            None
        };
        let toml = config_toml(
            dir.path(),
            fake.url(),
            &workspace,
            agent.as_ref(),
            &options.extra_toml,
        );
        let path = dir.path().join("surfaces.toml");
        std::fs::write(&path, toml)?;
        let config = Config::load_in(dir.path(), Some(&path), &[])?;
        anyhow::ensure!(!config.matrix_enabled(), "Matrix must be off");
        let mut bot = TelegramBot {
            fake,
            agent,
            workspace,
            config,
            run: None,
            _dir: dir,
        };
        bot.launch().await?;
        Ok(bot)
    }

    fn reference(&self) -> anyhow::Result<&ReferenceAgent> {
        self.agent
            .as_ref()
            .ok_or_else(|| anyhow!("no reference agent"))
    }

    /// Starts the core (again) on the same data dir and fake.
    async fn launch(&mut self) -> anyhow::Result<()> {
        let telegram = self
            .config
            .telegram
            .as_ref()
            .ok_or_else(|| anyhow!("no [telegram] section"))?;
        let connector = TelegramConnector::connect(telegram, &self.config.data_dir).await?;
        let connectors: Vec<Box<dyn Connector>> = vec![Box::new(connector)];
        let running = surfaces::runtime::start(self.config.clone(), connectors).await?;
        let view = running.view();
        let (stop, stopped) = oneshot::channel::<()>();
        let exited = tokio::task::spawn_local(running.run_until(async move {
            let _ = stopped.await;
        }));
        self.run = Some(Run {
            view: view.clone(),
            stop: Some(stop),
            exited,
        });
        self.wait_live(&view).await
    }

    async fn wait_live(&self, view: &RuntimeView) -> anyhow::Result<()> {
        let live = wait_until(WAIT, POLL, || {
            let live = view.live.load(std::sync::atomic::Ordering::Acquire);
            let exited = self.run.as_ref().is_none_or(|r| r.exited.is_finished());
            async move { (live || exited).then_some(live) }
        })
        .await
        .context("the bot did not start")?;
        anyhow::ensure!(live, "the bot stopped during start-up");
        Ok(())
    }

    /// Stops the core (as on SIGTERM) and waits for it.
    async fn stop(&mut self) -> anyhow::Result<ExitCode> {
        let mut run = self.run.take().ok_or_else(|| anyhow!("not running"))?;
        if let Some(stop) = run.stop.take() {
            let _ = stop.send(());
        }
        Ok(tokio::time::timeout(WAIT, run.exited)
            .await
            .context("the bot did not stop")??)
    }

    /// Person writes in the root of their private chat; waits for the first topic, the
    /// welcome in it and the pointer in the root. Returns the topic's thread id.
    async fn onboard(&self) -> anyhow::Result<i32> {
        self.fake.send_text(PERSON, "hi", None);
        let topic = self.fake.wait_for_topic(FIRST_CHAT).await?;
        self.fake
            .wait_for_sent("the welcome in the first topic", |m| {
                m.thread == Some(topic.thread) && m.text.contains("This chat is with")
            })
            .await?;
        self.fake
            .wait_for_sent("the pointer in the root", |m| {
                m.chat == PERSON && m.thread.is_none() && m.text.contains(FIRST_CHAT)
            })
            .await?;
        Ok(topic.thread)
    }

    /// Person writes `text` (in topic `thread`) and Telegram POSTs the update to the bot's
    /// webhook with `secret`; returns the message id, the update id and the status answered.
    async fn hook_text(
        &self,
        text: &str,
        thread: Option<i32>,
        secret: Option<&str>,
    ) -> anyhow::Result<(i32, i64, u16)> {
        let id = self.fake.send_text(PERSON, text, thread);
        let update = self.fake.last_update_id();
        let status = self.post(update, secret).await?;
        Ok((id, update, status))
    }

    /// POSTs update `update` to the webhook with `secret`, trying again while the receiver
    /// does not listen yet (it binds as the bot goes live); returns the status answered.
    async fn post(&self, update: i64, secret: Option<&str>) -> anyhow::Result<u16> {
        let fake = &self.fake;
        wait_until(WAIT, POLL, || async move {
            fake.post_update(update, secret).await.ok()
        })
        .await
        .context("the webhook did not answer")
    }

    /// [`TelegramBot::onboard`] over the webhook.
    async fn hook_onboard(&self) -> anyhow::Result<i32> {
        let (_, _, status) = self.hook_text("hi", None, Some(SECRET)).await?;
        anyhow::ensure!(status == 200, "the first message was answered {status}");
        let topic = self.fake.wait_for_topic(FIRST_CHAT).await?;
        self.fake
            .wait_for_sent("the welcome in the first topic", |m| {
                m.thread == Some(topic.thread) && m.text.contains("This chat is with")
            })
            .await?;
        Ok(topic.thread)
    }

    /// Person writes `text` in topic `thread`; returns the message id and the bot's answer.
    async fn ask(&self, thread: i32, text: &str) -> anyhow::Result<(i32, SentMessage)> {
        let id = self.fake.send_text(PERSON, text, Some(thread));
        let answer = self
            .fake
            .wait_for_answer(PERSON, id)
            .await
            .with_context(|| format!("no answer to {text:?}"))?;
        Ok((id, answer))
    }
}

impl Drop for TelegramBot {
    fn drop(&mut self) {
        if let Some(mut run) = self.run.take() {
            if let Some(stop) = run.stop.take() {
                let _ = stop.send(());
            }
            run.exited.abort();
        }
    }
}

/// The config: Telegram only (no Matrix keys), person [`PERSON`] allowed, the echo agent or
/// the reference agent with a workspace.
fn config_toml(
    dir: &std::path::Path,
    api_url: &str,
    workspace: &std::path::Path,
    agent: Option<&ReferenceAgent>,
    extra: &str,
) -> String {
    let mut toml = format!(
        r#"data_dir = "{data}"

[telegram]
token = "{TOKEN}"
api_url = "{api_url}"
allowed_users = ["{PERSON}"]
poll_timeout_secs = {POLL_TIMEOUT_SECS}

[ops]
bind = "127.0.0.1:0"

[supervision]
backoff_min_ms = 10
backoff_max_ms = 200

[shutdown]
grace_secs = 5
"#,
        data = dir.join("data").display()
    );
    if let Some(agent) = agent {
        toml.push_str(&format!(
            r#"
[[agents]]
id = "ref"
name = "Reference"
description = "The reference agent"
kind = "http"
base_url = "{url}"
workspace = "{workspace}"
default = true

[files]
max_bytes = {MAX_FILE_BYTES}
"#,
            url = agent.base_url(),
            workspace = workspace.display(),
        ));
    }
    toml.push_str(extra);
    if !extra.contains("[streaming]") {
        toml.push_str("\n[streaming]\nenabled = false\n");
    }
    toml
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[actix_rt::test]
async fn topics_onboard_answer_in_place_and_new_makes_another() -> anyhow::Result<()> {
    let bot = TelegramBot::start(Options::default()).await?;
    let fake = &bot.fake;
    assert!(
        fake.commands().iter().any(|(c, _)| c == "new"),
        "slash commands registered: {:?}",
        fake.commands()
    );

    let first = bot.onboard().await?;
    assert_eq!(fake.topics().len(), 1, "one topic: {}", fake.transcript());
    let pointer = fake.sent_in(PERSON, None);
    assert_eq!(pointer.len(), 1, "{}", fake.transcript());
    assert!(
        pointer[0]
            .text
            .contains("Welcome! Your first conversation is ready"),
        "{pointer:?}"
    );

    let (hello, answer) = bot.ask(first, "hello").await?;
    assert_eq!(answer.thread, Some(first), "answered in the topic");
    assert_eq!(answer.reply_to, Some(hello));
    assert!(answer.text.contains("echo: hello"), "{answer:?}");

    let new = fake.send_text(PERSON, "/new Work", Some(first));
    let work: Topic = fake.wait_for_topic("Work").await?;
    assert_ne!(work.thread, first);
    let created = fake.wait_for_answer(PERSON, new).await?;
    assert_eq!(created.thread, Some(first), "{created:?}");
    assert!(
        created.text.contains("New chat with") && created.text.contains("Work"),
        "{created:?}"
    );
    assert_eq!(fake.topics().len(), 2, "{}", fake.transcript());

    let (there, answer) = bot.ask(work.thread, "in work").await?;
    assert_eq!(
        (answer.thread, answer.reply_to),
        (Some(work.thread), Some(there))
    );
    assert!(answer.text.contains("echo: in work"), "{answer:?}");
    Ok(())
}

#[actix_rt::test]
async fn the_offset_follows_the_journal_and_nothing_is_answered_twice() -> anyhow::Result<()> {
    let mut bot = TelegramBot::start(Options::default()).await?;
    let thread = bot.onboard().await?;
    let (first, _) = bot.ask(thread, "one").await?;
    bot.ask(thread, "two").await?;
    let last = bot.fake.last_update_id();
    bot.fake.wait_for_offset(last + 1).await?;
    let offsets = bot.fake.offsets();
    assert!(
        offsets.windows(2).all(|w| w[0] <= w[1]) && offsets.iter().all(|o| *o <= last + 1),
        "offsets only grow, never past what was delivered: {offsets:?}"
    );
    assert_eq!(bot.fake.pending(), 0, "every update acknowledged");

    // Telegram delivers a message twice (as after a crash before the acknowledgement).
    let sent = bot.fake.sent().len();
    let again = bot
        .fake
        .redeliver(last)
        .ok_or_else(|| anyhow!("no update {last}"))?;
    bot.fake.wait_for_offset(again + 1).await?;
    let (_, after) = bot.ask(thread, "three").await?;
    assert!(after.text.contains("echo: three"));
    assert_eq!(
        bot.fake.sent().len(),
        sent + 1,
        "the duplicate got no answer: {}",
        bot.fake.transcript()
    );

    // A restart asks from the stored offset and answers nothing again.
    let last = bot.fake.last_update_id();
    bot.fake.wait_for_offset(last + 1).await?;
    bot.stop().await?;
    let asked = bot.fake.offsets().len();
    let sent = bot.fake.sent().len();
    bot.launch().await?;
    bot.fake
        .wait_for("a poll after the restart", |f| {
            (f.offsets().len() > asked).then_some(())
        })
        .await?;
    assert_eq!(
        bot.fake.offsets()[asked],
        last + 1,
        "the first poll after the restart starts at the stored offset"
    );
    let (four, answer) = bot.ask(thread, "four").await?;
    assert!(answer.text.contains("echo: four"));
    let new: Vec<SentMessage> = bot.fake.sent().split_off(sent);
    assert!(
        new.iter().all(|m| m.reply_to == Some(four)),
        "after the restart, only the new message was answered: {new:?}"
    );
    assert_eq!(bot.fake.answers_to(PERSON, first).len(), 1);
    bot.stop().await?;
    Ok(())
}

#[actix_rt::test]
async fn files_reach_the_inbox_and_the_agents_files_are_posted_in_the_topic() -> anyhow::Result<()>
{
    let mut bot = TelegramBot::start(Options {
        reference: true,
        ..Options::default()
    })
    .await?;
    let thread = bot.onboard().await?;
    let agent = bot.reference()?;

    let report = bytes(5000, 1);
    let id = bot.fake.send_captioned_document(
        PERSON,
        "report.pdf",
        "application/pdf",
        &report,
        Some("summarise this"),
        Some(thread),
    );
    let answer = bot.fake.wait_for_answer(PERSON, id).await?;
    assert_eq!(answer.thread, Some(thread));
    assert!(answer.text.contains("got: summarise this"), "{answer:?}");
    let turn = agent
        .turns()
        .into_iter()
        .find(|t| t.text == "summarise this")
        .ok_or_else(|| anyhow!("no captioned turn: {:?}", agent.turns()))?;
    assert_eq!(turn.attachments.len(), 1, "{turn:?}");
    let attachment = &turn.attachments[0];
    assert!(attachment.path.starts_with("inbox/"), "{attachment:?}");
    assert_eq!(attachment.name, "report.pdf");
    assert_eq!(std::fs::read(bot.workspace.join(&attachment.path))?, report);

    // The agent posts a file: a document in the same topic.
    std::fs::create_dir_all(bot.workspace.join("out"))?;
    let notes = bytes(2000, 7);
    std::fs::write(bot.workspace.join("out/notes.txt"), &notes)?;
    agent.file_next("out/notes.txt", "notes.txt", "text/plain");
    bot.ask(thread, "write notes").await?;
    let upload = bot.fake.wait_for_upload("notes.txt").await?;
    assert_eq!(upload.method, "sendDocument");
    assert_eq!((upload.chat, upload.thread), (PERSON, Some(thread)));
    assert_eq!(upload.data, notes);
    bot.stop().await?;
    Ok(())
}

#[actix_rt::test]
async fn typing_shows_in_the_topic_while_the_agent_works() -> anyhow::Result<()> {
    let mut bot = TelegramBot::start(Options {
        reference: true,
        ..Options::default()
    })
    .await?;
    let thread = bot.onboard().await?;
    bot.reference()?.set_delay(Duration::from_millis(500));
    let id = bot.fake.send_text(PERSON, "slowly", Some(thread));
    bot.fake
        .wait_for("typing in the topic", |f| {
            f.actions()
                .into_iter()
                .find(|a| a.thread == Some(thread) && a.action == "typing")
        })
        .await?;
    bot.fake.wait_for_answer(PERSON, id).await?;
    bot.stop().await?;
    Ok(())
}

#[actix_rt::test]
async fn a_429_with_retry_after_still_answers_exactly_once() -> anyhow::Result<()> {
    let mut bot = TelegramBot::start(Options::default()).await?;
    let thread = bot.onboard().await?;
    bot.fake.fail_next("sendMessage", 429, Some(1));
    let (id, answer) = bot.ask(thread, "despite limits").await?;
    assert!(answer.text.contains("echo: despite limits"));
    // The next answer comes after every retry of the first (one room, in order).
    bot.ask(thread, "and after").await?;
    assert_eq!(
        bot.fake.answers_to(PERSON, id).len(),
        1,
        "{}",
        bot.fake.transcript()
    );
    let calls = bot.fake.calls_of("sendMessage");
    let refused = calls
        .iter()
        .position(|c| c.failed == Some(429))
        .ok_or_else(|| anyhow!("the 429 was never served"))?;
    let retried = calls
        .get(refused + 1)
        .ok_or_else(|| anyhow!("no call after the 429"))?;
    assert!(
        retried.at - calls[refused].at >= Duration::from_millis(900),
        "retry_after honoured: retried after {:?}",
        retried.at - calls[refused].at
    );
    bot.stop().await?;
    Ok(())
}

#[actix_rt::test]
async fn a_live_reply_is_one_message_edited_to_the_whole_text() -> anyhow::Result<()> {
    let mut bot = TelegramBot::start(Options {
        reference: true,
        extra_toml: "\n[streaming]\nenabled = true\nfirst_interval_ms = 40\n\
                     max_interval_ms = 150\nmax_edits = 6\n"
            .to_owned(),
    })
    .await?;
    let thread = bot.onboard().await?;
    bot.reference()?.set_interval(Duration::from_millis(20));
    let words = 40;
    let whole = streamed_reply(words);
    let id = bot
        .fake
        .send_text(PERSON, &format!("{STREAM_COMMAND}{words}"), Some(thread));
    let reply = bot.fake.wait_for_answer(PERSON, id).await?;
    assert_eq!(reply.thread, Some(thread));
    let edits = bot
        .fake
        .wait_for("the final edit", |f| {
            let edits = f.edits_of(PERSON, reply.message_id);
            edits
                .last()
                .is_some_and(|e| e.text == whole)
                .then_some(edits)
        })
        .await?;
    assert!(reply.text.starts_with("word-1") && reply.text.len() < whole.len());
    assert!(edits.len() >= 2, "edited as it grew: {edits:?}");
    assert_eq!(
        bot.fake.answers_to(PERSON, id).len(),
        1,
        "one message: {}",
        bot.fake.transcript()
    );
    bot.stop().await?;
    Ok(())
}

/// A restart in the same process on the same data dir reopens the adapter's record of sent
/// messages (the surface holds the core's `Inbound` weakly: no cycle keeps it locked).
#[actix_rt::test]
async fn a_restart_on_the_same_data_dir_reopens_the_sent_record() -> anyhow::Result<()> {
    let mut bot = TelegramBot::start(Options::default()).await?;
    let thread = bot.onboard().await?;
    bot.stop().await?;
    bot.launch().await?;
    bot.ask(thread, "after the restart").await?;
    bot.stop().await?;
    Ok(())
}

/// A topic the bot did not make (the person's own) is not a conversation: after a moment the
/// person is pointed at their conversations in the root, and nothing reaches the agent.
#[actix_rt::test]
async fn a_topic_the_bot_did_not_make_points_at_the_conversations() -> anyhow::Result<()> {
    let mut bot = TelegramBot::start(Options::default()).await?;
    bot.onboard().await?;
    let before = bot.fake.sent_in(PERSON, None).len();
    bot.fake.send_text(PERSON, "in my own topic", Some(4242));
    bot.fake
        .wait_for_sent("the pointer in the root", |m| {
            m.chat == PERSON
                && m.thread.is_none()
                && m.text.contains("Your conversations are the topics")
        })
        .await?;
    assert_eq!(
        bot.fake.sent_in(PERSON, None).len(),
        before + 1,
        "{}",
        bot.fake.transcript()
    );
    assert!(
        bot.fake
            .sent()
            .iter()
            .all(|m| !m.text.contains("in my own topic")),
        "nothing reached the agent: {}",
        bot.fake.transcript()
    );
    bot.stop().await?;
    Ok(())
}

/// The `[telegram.webhook]` table of the webhook scenarios, on a free port.
fn webhook_toml() -> anyhow::Result<String> {
    let port = surfaces_testkit::wait::free_port()?;
    Ok(format!(
        r#"
[telegram.webhook]
url = "http://127.0.0.1:{port}{HOOK_PATH}"
bind = "127.0.0.1:{port}"
secret_token = "{SECRET}"
max_connections = 5
allow_insecure_url = true
"#
    ))
}

async fn webhook_bot() -> anyhow::Result<TelegramBot> {
    TelegramBot::start(Options {
        extra_toml: webhook_toml()?,
        ..Options::default()
    })
    .await
}

/// Webhook mode: the webhook is set with the URL and the secret (pending updates kept), the
/// receiver is the Telegram reader on `/status`, nobody polls, a message is answered once
/// even when Telegram delivers it twice, and a graceful stop leaves the webhook set.
#[actix_rt::test]
async fn a_message_on_the_webhook_is_answered_once() -> anyhow::Result<()> {
    let mut bot = webhook_bot().await?;
    let hook = bot
        .fake
        .webhook()
        .ok_or_else(|| anyhow!("no webhook set"))?;
    assert!(hook.url.ends_with(HOOK_PATH), "{hook:?}");
    assert_eq!(hook.secret_token.as_deref(), Some(SECRET));
    assert_eq!(hook.max_connections, Some(5));
    assert!(!hook.drop_pending_updates);
    let view = &bot.run.as_ref().ok_or_else(|| anyhow!("not running"))?.view;
    let reader = view
        .inbound
        .iter()
        .find(|i| i.surface == "telegram")
        .and_then(|i| i.reader.clone())
        .ok_or_else(|| anyhow!("no Telegram reader"))?;
    assert_eq!(reader.to_string(), "telegram-webhook");
    let registry = view.registry.clone();
    wait_until(WAIT, POLL, || {
        let running = registry
            .get(&reader)
            .is_some_and(|h| h.state == actors::ActorState::Running);
        async move { running.then_some(()) }
    })
    .await
    .context("the webhook actor is not running")?;

    let thread = bot.hook_onboard().await?;
    let (first, update, status) = bot.hook_text("one", Some(thread), Some(SECRET)).await?;
    assert_eq!(status, 200);
    let answer = bot.fake.wait_for_answer(PERSON, first).await?;
    assert!(answer.text.contains("echo: one"), "{answer:?}");

    // Telegram did not see the answer and delivers the same update again.
    assert_eq!(bot.fake.post_update(update, Some(SECRET)).await?, 200);
    let (second, _, status) = bot.hook_text("two", Some(thread), Some(SECRET)).await?;
    assert_eq!(status, 200);
    bot.fake.wait_for_answer(PERSON, second).await?;
    assert_eq!(
        bot.fake.answers_to(PERSON, first).len(),
        1,
        "the duplicate got no answer: {}",
        bot.fake.transcript()
    );
    assert!(
        bot.fake.calls_of("getUpdates").is_empty(),
        "nobody polls in webhook mode"
    );

    // A graceful stop does not delete the webhook; after the restart the journal refuses
    // the message it already holds (the receiver's memory of update ids is gone).
    bot.stop().await?;
    assert!(
        bot.fake.webhook_calls().iter().all(Option::is_some),
        "no deleteWebhook: {:?}",
        bot.fake.webhook_calls()
    );
    bot.launch().await?;
    assert_eq!(bot.post(update, Some(SECRET)).await?, 200);
    let (third, _, _) = bot.hook_text("three", Some(thread), Some(SECRET)).await?;
    bot.fake.wait_for_answer(PERSON, third).await?;
    assert_eq!(
        bot.fake.answers_to(PERSON, first).len(),
        1,
        "no answer again after the restart: {}",
        bot.fake.transcript()
    );
    bot.stop().await?;
    Ok(())
}

/// A call without the right secret is refused (401) and reaches nobody; an update over the
/// size limit is refused (413); an unreadable one is acknowledged and the next still taken.
#[actix_rt::test]
async fn a_wrong_or_missing_secret_gets_401_and_nothing_reaches_the_agent() -> anyhow::Result<()> {
    let mut bot = webhook_bot().await?;
    let thread = bot.hook_onboard().await?;
    let (stray, update, status) = bot
        .hook_text("without the secret", Some(thread), Some("not-the-secret"))
        .await?;
    assert_eq!(status, 401);
    assert_eq!(bot.post(update, None).await?, 401);
    assert_eq!(bot.post(update, Some(&format!("{SECRET}x"))).await?, 401);
    let over = vec![b' '; surfaces::telegram::webhook::MAX_UPDATE_BYTES + 1];
    assert_eq!(bot.fake.post_body(over, Some(SECRET)).await?, 413);
    let unreadable = br#"{"update_id": 999999, "message": {"message_id": "not a number"}}"#;
    assert_eq!(
        bot.fake
            .post_body(unreadable.to_vec(), Some(SECRET))
            .await?,
        200
    );
    let (real, _, status) = bot.hook_text("with it", Some(thread), Some(SECRET)).await?;
    assert_eq!(status, 200);
    bot.fake.wait_for_answer(PERSON, real).await?;
    assert!(
        bot.fake.answers_to(PERSON, stray).is_empty()
            && bot
                .fake
                .sent()
                .iter()
                .all(|m| !m.text.contains("without the secret")),
        "nothing of the refused calls reached the agent: {}",
        bot.fake.transcript()
    );
    bot.stop().await?;
    Ok(())
}
