//! The A2A test agent on loopback: a real A2A 1.0 server built on the official `a2a-sdk`
//! Python package (`ops/a2a/agent.py`), for the `kind = "a2a"` agent tests. What it does is
//! chosen by the message's text (see the script's docs: [`ASK_CONFIRM`], [`FILE`], …).
//! Installed by `ops/a2a/install`; dropping it stops the process by its pid.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::synapse::install_once;
use crate::wait::{file_tail, free_port, terminate_child_blocking, until_http_ok};

/// The agent card's name.
pub const CARD_NAME: &str = "Test Agent";
/// The agent card's description.
pub const CARD_DESCRIPTION: &str = "An A2A agent for Surfaces' tests.";
/// Asks "Proceed with the plan?" (input-required); `yes` confirms.
pub const ASK_CONFIRM: &str = "confirm";
/// The question [`ASK_CONFIRM`] asks.
pub const CONFIRM_QUESTION: &str = "Proceed with the plan?";
/// The answer to `yes`.
pub const CONFIRMED: &str = "Confirmed: plan done.";
/// The answer to anything else.
pub const DROPPED: &str = "Cancelled: plan dropped.";
/// Asks "What is your name?"; the next message is the answer.
pub const ASK_NAME: &str = "ask";
/// Returns `report.txt` (inline bytes) and "Here is your report.".
pub const FILE: &str = "file";
/// The report's bytes.
pub const REPORT: &[u8] = b"report contents\n";
/// Streams "tick " every 200 ms until cancelled.
pub const SLOW: &str = "slow";
/// Fails with "The tool crashed.".
pub const FAIL: &str = "fail";
/// Is rejected with "I will not do that.".
pub const REJECT: &str = "reject";
/// Needs credentials: "Sign in to the calendar first.".
pub const AUTH: &str = "auth";
/// A working status "Thinking...", then "Done thinking.".
pub const STATUS: &str = "status";
/// Breaks the stream after "partial "; the task completes as "partial and whole.".
pub const BREAK: &str = "break";
/// What [`BREAK`] ends with.
pub const BREAK_REPLY: &str = "partial and whole.";
/// Answered [`PONG`] at once, in one artifact (the benchmark's turn).
pub const PING: &str = "ping";
/// What [`PING`] gets.
pub const PONG: &str = "pong";
/// Longest wait for the agent to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGTERM grace before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the agent answers to any other `text`, the `n`th message of its context.
pub fn echo_reply(text: &str, n: usize) -> String {
    format!("You said: {text} (message {n} in this context)")
}

/// Runs `ops/a2a/install` once per process; returns the virtualenv.
fn ensure_installed() -> anyhow::Result<PathBuf> {
    static VENV: Mutex<Option<PathBuf>> = Mutex::new(None);
    install_once(&VENV, "ops/a2a/install")
}

/// A running A2A test agent.
pub struct A2aAgent {
    /// `http://127.0.0.1:<port>` (an agent's `base_url`: its card is under it).
    pub base_url: String,
    child: Option<Child>,
    // Declared last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl A2aAgent {
    /// Starts an agent that streams.
    pub async fn start() -> anyhow::Result<A2aAgent> {
        Self::start_with(true).await
    }

    /// Starts an agent; `streaming = false` makes its card say it does not stream.
    pub async fn start_with(streaming: bool) -> anyhow::Result<A2aAgent> {
        let venv = tokio::task::spawn_blocking(ensure_installed)
            .await
            .context("install task panicked")??;
        let dir = tempfile::Builder::new().prefix("surfaces-a2a-").tempdir()?;
        let port = free_port()?;
        let script = crate::synapse::repo_root().join("ops/a2a/agent.py");
        let log_path = dir.path().join("console.log");
        let log = std::fs::File::create(&log_path)?;
        let mut command = Command::new(venv.join("bin/python"));
        command
            .arg(&script)
            .args(["--port", &port.to_string()])
            .env("A2A_REQUEST_LOG", dir.path().join("requests.jsonl"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if !streaming {
            command.arg("--no-streaming");
        }
        let child = command.spawn().context("spawning the A2A test agent")?;
        let mut agent = A2aAgent {
            base_url: format!("http://127.0.0.1:{port}"),
            child: Some(child),
            dir,
        };
        let card = format!("{}/.well-known/agent-card.json", agent.base_url);
        match agent.child.as_mut() {
            Some(child) => {
                until_http_ok(child, &card, START_TIMEOUT, "the A2A agent", &log_path).await?
            }
            None => bail!("the A2A agent is not running"),
        }
        Ok(agent)
    }

    /// Every JSON-RPC request the agent received, in order (`method`, `params`, `headers`).
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The requests of `method`.
    pub fn requests_of(&self, method: &str) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["method"] == method)
            .collect()
    }

    /// The end of the agent's output.
    pub fn log_tail(&self) -> String {
        file_tail(&self.dir.path().join("console.log"), 30)
    }
}

impl Drop for A2aAgent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("A2A agent at {}: {}", self.base_url, self.log_tail());
        }
        if let Some(mut child) = self.child.take() {
            terminate_child_blocking(&mut child, STOP_GRACE);
        }
    }
}
