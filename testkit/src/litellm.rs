//! A LiteLLM proxy on loopback: an OpenAI-compatible server that is not ours, for the
//! `kind = "openai"` agent tests. Its models answer with mock responses (no model runs, no
//! key leaves the machine): [`MOCK_MODEL`] streams [`MOCK_REPLY`], [`BUSY_MODEL`] answers
//! 429 as a rate-limited provider would. Installed by `ops/litellm/install`; dropping it
//! stops the process by its pid.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::synapse::install_once;
use crate::wait::{file_tail, free_port, terminate_child_blocking, until_http_ok};

/// The model that answers [`MOCK_REPLY`].
pub const MOCK_MODEL: &str = "mock-gpt";
/// What [`MOCK_MODEL`] says, whatever it is asked.
pub const MOCK_REPLY: &str = "Hello from the mock model.";
/// The model that is always rate-limited (HTTP 429).
pub const BUSY_MODEL: &str = "mock-busy";
/// The proxy's key (the agent's `api_key`).
pub const MASTER_KEY: &str = "sk-surfaces-test";
/// Longest wait for the proxy to answer (it imports a lot at start).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// SIGTERM grace before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs `ops/litellm/install` once per process; returns the virtualenv.
fn ensure_installed() -> anyhow::Result<PathBuf> {
    static VENV: Mutex<Option<PathBuf>> = Mutex::new(None);
    install_once(&VENV, "ops/litellm/install")
}

/// A running LiteLLM proxy.
pub struct LiteLlm {
    /// `http://127.0.0.1:<port>/v1` (an agent's `base_url`).
    pub base_url: String,
    child: Option<Child>,
    // Declared last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl LiteLlm {
    /// Starts a proxy serving [`MOCK_MODEL`] and [`BUSY_MODEL`].
    pub async fn start() -> anyhow::Result<LiteLlm> {
        let venv = tokio::task::spawn_blocking(ensure_installed)
            .await
            .context("install task panicked")??;
        let dir = tempfile::Builder::new()
            .prefix("surfaces-litellm-")
            .tempdir()?;
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "model_list:\n\
                 \x20 - model_name: {MOCK_MODEL}\n\
                 \x20   litellm_params:\n\
                 \x20     model: openai/{MOCK_MODEL}\n\
                 \x20     api_key: sk-unused\n\
                 \x20     mock_response: \"{MOCK_REPLY}\"\n\
                 \x20 - model_name: {BUSY_MODEL}\n\
                 \x20   litellm_params:\n\
                 \x20     model: openai/{BUSY_MODEL}\n\
                 \x20     api_key: sk-unused\n\
                 \x20     mock_response: \"litellm.RateLimitError\"\n\
                 general_settings:\n\
                 \x20 master_key: {MASTER_KEY}\n"
            ),
        )?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.path().join("console.log"))?;
        let child = Command::new(venv.join("bin/litellm"))
            .arg("--config")
            .arg(&config)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .current_dir(dir.path())
            .env("LITELLM_TELEMETRY", "False")
            .env("NO_DOCS", "True")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning litellm")?;
        let mut proxy = LiteLlm {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            child: Some(child),
            dir,
        };
        proxy.wait_ready(port).await?;
        Ok(proxy)
    }

    async fn wait_ready(&mut self, port: u16) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{port}/health/liveliness");
        let log = self.dir.path().join("console.log");
        match self.child.as_mut() {
            Some(child) => until_http_ok(child, &url, START_TIMEOUT, "litellm", &log).await,
            None => bail!("litellm is not running"),
        }
    }

    /// The end of the proxy's output.
    pub fn log_tail(&self) -> String {
        file_tail(&self.dir.path().join("console.log"), 30)
    }
}

impl Drop for LiteLlm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("litellm at {}: {}", self.base_url, self.log_tail());
        }
        if let Some(mut child) = self.child.take() {
            terminate_child_blocking(&mut child, STOP_GRACE);
        }
    }
}
