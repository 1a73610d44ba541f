//! The whole core in the test's process, over the in-memory messenger.
//!
//! Why this exists: the room actor, every command, confirmations, files, busy and cancel,
//! restarts and reconciliation are the core's behaviour, and the core does not need a
//! homeserver to show it. [`Bot`] runs the real [`surfaces::runtime`] — the same composition
//! root `main` uses — with a [`MemoryConnector`], a data dir of its own and either the
//! built-in echo agent or the [`ReferenceAgent`] on loopback; the test acts as people in its
//! [`World`] and reads what the bot said there. Everything waits by polling with a timeout.
//!
//! Needs an actix system: run tests with `#[actix_rt::test]`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use surfaces::config::Config;
use surfaces::runtime::RuntimeView;
use surfaces::surface::{ChatId, Connector, MessageId, PersonId};
use tokio::sync::oneshot;

use crate::memory::{Options, Post, World};
use crate::reference_agent::ReferenceAgent;
use crate::wait::{wait_until, POLL};

/// How long in-process waits last (the core answers in milliseconds; generous for CI).
pub const WAIT: Duration = Duration::from_secs(10);

/// The agent behind the bot.
pub enum AgentSetup {
    /// The built-in echo agent (`id = "echo"`).
    Echo,
    /// The reference agent of `docs/agent-api.md` on loopback (`id = "ref"`), with a
    /// workspace for files, and the echo agent beside it.
    Reference,
}

/// How to set the bot up.
pub struct Setup {
    /// The agent(s).
    pub agent: AgentSetup,
    /// What the messenger can do.
    pub options: Options,
    /// Extra TOML appended to the config (sections the test needs).
    pub extra_toml: String,
    /// `supervision.room_idle_secs` (`None`: the product's default).
    pub room_idle_secs: Option<u64>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            agent: AgentSetup::Echo,
            options: Options::default(),
            extra_toml: String::new(),
            room_idle_secs: None,
        }
    }
}

/// The bot running in-process, its messenger and its agent.
pub struct Bot {
    /// The messenger.
    pub world: World,
    /// The reference agent, with [`AgentSetup::Reference`].
    pub agent: Option<ReferenceAgent>,
    /// The agent's workspace, with [`AgentSetup::Reference`].
    pub workspace: PathBuf,
    config: Config,
    running: Option<Run>,
    _dir: tempfile::TempDir,
}

struct Run {
    /// Taken when the stop is signalled.
    stop: Option<oneshot::Sender<()>>,
    exited: tokio::task::JoinHandle<ExitCode>,
    view: RuntimeView,
    root: actors::SupervisorHandle,
}

impl Bot {
    /// Starts the bot and waits until it is live.
    pub async fn start(setup: Setup) -> anyhow::Result<Bot> {
        init_logs();
        let dir = tempfile::tempdir()?;
        let workspace = dir.path().join("agents").join("3");
        std::fs::create_dir_all(&workspace)?;
        let agent = match setup.agent {
            AgentSetup::Echo => None,
            AgentSetup::Reference => Some(ReferenceAgent::start("ref").await),
        };
        let mut extra = String::new();
        if let Some(secs) = setup.room_idle_secs {
            // Before the extra sections: still inside the harness's `[supervision]`.
            extra = format!("room_idle_secs = {secs}\n");
        }
        let toml = config_toml(
            dir.path(),
            &workspace,
            agent.as_ref(),
            &extra,
            &setup.extra_toml,
        );
        let config = load_config(dir.path(), &toml)?;
        let mut bot = Bot {
            world: World::new(setup.options),
            agent,
            workspace,
            config,
            running: None,
            _dir: dir,
        };
        bot.launch().await?;
        Ok(bot)
    }

    /// Starts the bot and onboards one person; returns the bot, the person and their chat.
    pub async fn with_person(setup: Setup, name: &str) -> anyhow::Result<(Bot, PersonId, ChatId)> {
        let bot = Bot::start(setup).await?;
        let (person, chat) = bot.onboard(name).await?;
        Ok((bot, person, chat))
    }

    /// The reference agent (set up with [`AgentSetup::Reference`]).
    pub fn reference(&self) -> anyhow::Result<&ReferenceAgent> {
        self.agent
            .as_ref()
            .ok_or_else(|| anyhow!("this bot runs without the reference agent"))
    }

    /// Starts the core on the same world and data dir.
    async fn launch(&mut self) -> anyhow::Result<()> {
        let connector: Box<dyn Connector> = Box::new(self.world.connector());
        let running = surfaces::runtime::start(self.config.clone(), vec![connector]).await?;
        let view = running.view();
        let root = running.supervisor();
        let (stop, stopped) = oneshot::channel::<()>();
        let exited = tokio::task::spawn_local(running.run_until(async move {
            let _ = stopped.await;
        }));
        self.running = Some(Run {
            stop: Some(stop),
            exited,
            view,
            root,
        });
        self.wait_live().await
    }

    /// Waits until start-up is complete (or fails with the exit code).
    async fn wait_live(&mut self) -> anyhow::Result<()> {
        let view = self.view()?;
        let live = wait_until(WAIT, POLL, || {
            let live = view.live.load(std::sync::atomic::Ordering::Acquire);
            let exited = self.running.as_ref().is_none_or(|r| r.exited.is_finished());
            async move { (live || exited).then_some(live) }
        })
        .await
        .context("the bot did not start")?;
        if live {
            Ok(())
        } else {
            Err(anyhow!(
                "the bot stopped during start-up (see Bot::exit_code)"
            ))
        }
    }

    /// What the ops endpoint would read.
    pub fn view(&self) -> anyhow::Result<RuntimeView> {
        self.running
            .as_ref()
            .map(|r| r.view.clone())
            .ok_or_else(|| anyhow!("the bot is not running"))
    }

    /// The root supervisor (what the ops endpoint is served with).
    pub fn supervisor(&self) -> anyhow::Result<actors::SupervisorHandle> {
        self.running
            .as_ref()
            .map(|r| r.root.clone())
            .ok_or_else(|| anyhow!("the bot is not running"))
    }

    /// What `/readyz` would answer now.
    pub fn readiness(&self) -> anyhow::Result<surfaces::ops::status::Readiness> {
        let run = self
            .running
            .as_ref()
            .ok_or_else(|| anyhow!("the bot is not running"))?;
        Ok(surfaces::ops::status::readiness(&run.view, &run.root))
    }

    /// Starts a graceful stop (as on SIGTERM) without waiting for it: [`Bot::exit_code`]
    /// waits for the end of the drain.
    pub fn begin_stop(&mut self) -> anyhow::Result<()> {
        let run = self
            .running
            .as_mut()
            .ok_or_else(|| anyhow!("not running"))?;
        let stop = run.stop.take().ok_or_else(|| anyhow!("already stopping"))?;
        let _ = stop.send(());
        Ok(())
    }

    /// Stops the bot (as on SIGTERM) and returns its exit code.
    pub async fn stop(&mut self) -> anyhow::Result<ExitCode> {
        let run = self.running.take().ok_or_else(|| anyhow!("not running"))?;
        if let Some(stop) = run.stop {
            let _ = stop.send(());
        }
        Ok(run.exited.await?)
    }

    /// Waits for the bot to stop on its own and returns its exit code.
    pub async fn exit_code(&mut self) -> anyhow::Result<ExitCode> {
        let run = self.running.take().ok_or_else(|| anyhow!("not running"))?;
        Ok(tokio::time::timeout(WAIT, run.exited)
            .await
            .context("the bot did not stop")??)
    }

    /// Starts the bot again after it stopped (same world, same data dir).
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        if self.running.is_some() {
            return Err(anyhow!("the bot is still running"));
        }
        self.launch().await
    }

    /// Stops and starts the bot again (same world, same data dir).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.launch().await
    }

    /// Stops the bot, deletes its store, and starts it again: everything must come back
    /// from what the messenger holds.
    pub async fn restart_without_store(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        let store = self.config.data_dir.join(surfaces::runtime::STORE_DIR);
        std::fs::remove_dir_all(&store).with_context(|| format!("removing {}", store.display()))?;
        self.launch().await
    }

    /// A person invites the bot; returns them and their first chat (welcome posted).
    pub async fn onboard(&self, name: &str) -> anyhow::Result<(PersonId, ChatId)> {
        let person = World::person(name);
        let dm = self.world.invite_bot(&person);
        let chat = wait_until(WAIT, POLL, || {
            let chats = self.world.chats_of(&person);
            let welcomed = chats
                .first()
                .filter(|c| !self.world.bot_posts(c).is_empty())
                .cloned();
            async move { welcomed }
        })
        .await
        .with_context(|| format!("{name} got no chat"))?;
        wait_until(WAIT, POLL, || {
            let pointed = !self.world.bot_posts(&dm).is_empty();
            async move { pointed.then_some(()) }
        })
        .await
        .with_context(|| format!("{name} got no pointer in the direct chat"))?;
        Ok((person, chat))
    }

    /// `person` says `text` in `chat`; returns the bot's first answer to it.
    pub async fn ask(&self, person: &PersonId, chat: &ChatId, text: &str) -> anyhow::Result<Post> {
        let id = self.world.say(person, chat, text);
        self.answer(chat, &id)
            .await
            .with_context(|| format!("no answer to {text:?}"))
    }

    /// Like [`Bot::ask`], returning the answer's text.
    pub async fn ask_text(
        &self,
        person: &PersonId,
        chat: &ChatId,
        text: &str,
    ) -> anyhow::Result<String> {
        Ok(self.ask(person, chat, text).await?.text().to_owned())
    }

    /// Waits for the bot's first answer to `message`.
    pub async fn answer(&self, chat: &ChatId, message: &MessageId) -> anyhow::Result<Post> {
        self.answers(chat, message, 1)
            .await
            .map(|mut posts| posts.remove(0))
    }

    /// Waits until the bot answered `message` at least `n` times; returns every answer.
    pub async fn answers(
        &self,
        chat: &ChatId,
        message: &MessageId,
        n: usize,
    ) -> anyhow::Result<Vec<Post>> {
        wait_until(WAIT, POLL, || {
            let posts = self.world.answers_to(chat, message);
            async move { (posts.len() >= n).then_some(posts) }
        })
        .await
        .with_context(|| format!("{n} answer(s) to {message}; {}", self.transcript(chat)))
    }

    /// Every post in `chat`, one per line (for failure messages).
    pub fn transcript(&self, chat: &ChatId) -> String {
        let mut out = format!("transcript of {chat}:");
        for post in self.world.posts(chat) {
            let reply = post
                .reply_to
                .as_ref()
                .map(|r| format!(" (re {r})"))
                .unwrap_or_default();
            out.push_str(&format!(
                "\n  {} {}{reply}: {}",
                post.id,
                post.sender,
                post.text()
            ));
        }
        out
    }

    /// Waits for a post of the bot in `chat` (after the first `skip`) whose text holds `needle`.
    pub async fn bot_says(&self, chat: &ChatId, skip: usize, needle: &str) -> anyhow::Result<Post> {
        wait_until(WAIT, POLL, || {
            let found = self
                .world
                .bot_posts(chat)
                .into_iter()
                .skip(skip)
                .find(|p| p.text().contains(needle));
            async move { found }
        })
        .await
        .with_context(|| format!("the bot never said {needle:?}"))
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        if let Some(run) = self.running.take() {
            if let Some(stop) = run.stop {
                let _ = stop.send(());
            }
            run.exited.abort();
        }
    }
}

/// The environment variable that turns the bot's logs on in tests (an `EnvFilter`, e.g.
/// `SURFACES_TEST_LOG=surfaces=debug`); they are off otherwise.
pub const LOG_ENV: &str = "SURFACES_TEST_LOG";

/// Prints the bot's logs when [`LOG_ENV`] is set (once per test process).
fn init_logs() {
    if let Ok(filter) = std::env::var(LOG_ENV) {
        let log = surfaces::config::LogConfig {
            filter,
            ..surfaces::config::LogConfig::default()
        };
        surfaces::telemetry::init(&log);
    }
}

/// The config of a bot whose only agent is the built-in echo agent, its data in `dir`, with
/// `extra` TOML appended (benchmarks).
pub fn echo_config(dir: &std::path::Path, extra: &str) -> anyhow::Result<Config> {
    let toml = config_toml(dir, &dir.join("workspace"), None, "", extra);
    load_config(dir, &toml)
}

/// Writes `toml` as `surfaces.toml` in `dir` and loads it (no environment).
fn load_config(dir: &std::path::Path, toml: &str) -> anyhow::Result<Config> {
    let path = dir.join("surfaces.toml");
    std::fs::write(&path, toml)?;
    Ok(Config::load_in(dir, Some(&path), &[])?)
}

/// The reference agent's `timeout_secs` in-process: it bounds a whole turn, and the live-reply
/// benchmark streams one for two minutes.
const REFERENCE_TIMEOUT_SECS: u64 = 300;

/// The config of an in-process bot.
fn config_toml(
    dir: &std::path::Path,
    workspace: &std::path::Path,
    agent: Option<&ReferenceAgent>,
    supervision: &str,
    extra: &str,
) -> String {
    let mut toml = format!(
        r#"data_dir = "{data}"

[matrix]
homeserver_url = "http://127.0.0.1:9"
user_id = "@surfaces:memory"
password = "unused"

[access]
allowed_homeservers = ["memory"]
admins = ["@admin:memory"]

[ops]
bind = "127.0.0.1:0"

[supervision]
backoff_min_ms = 10
backoff_max_ms = 200
{supervision}
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
timeout_secs = {timeout}
default = true
"#,
            url = agent.base_url(),
            workspace = workspace.display(),
            timeout = REFERENCE_TIMEOUT_SECS,
        ));
    }
    toml.push_str(
        r#"
[[agents]]
id = "echo"
name = "Echo"
description = "Repeats what you say"
kind = "echo"
"#,
    );
    toml.push_str(extra);
    if !extra.contains("[streaming]") {
        // One final reply per message, as most scenarios assert; the live-reply scenarios
        // configure `[streaming]` themselves.
        toml.push_str("\n[streaming]\nenabled = false\n");
    }
    toml
}
