//! The real `surfaces` binary as a child process, configured through
//! `SURFACES__*` env variables and an optional TOML file.
//!
//! It exists so that end-to-end tests exercise the binary users run (its start-up, its
//! config, its signals and exit codes), not a library call standing in for it.
//!
//! Only the `surfaces` package's own tests know where cargo put its binary
//! (`env!("CARGO_BIN_EXE_surfaces")`), so the caller names it through a [`BotBinary`] type:
//!
//! ```ignore
//! struct Surfaces;
//! impl BotBinary for Surfaces {
//!     fn path() -> PathBuf {
//!         PathBuf::from(env!("CARGO_BIN_EXE_surfaces"))
//!     }
//! }
//! type Bot = BotProcess<Surfaces>;
//! ```

use std::io::{Read, Seek, SeekFrom};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::synapse::{Synapse, UserCreds};
use crate::wait::{
    file_tail, free_port, terminate_child, terminate_child_blocking, try_wait_until, POLL,
};

/// SIGTERM grace before SIGKILL, in `stop()` and on drop.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Names the `surfaces` executable to run: implemented by the caller, which alone knows
/// where it is (see the module documentation).
pub trait BotBinary {
    /// The executable's path.
    fn path() -> PathBuf;
}

/// A running `surfaces` process (the executable named by `B`). Dropping it stops it by pid
/// (SIGTERM, bounded wait, SIGKILL).
pub struct BotProcess<B: BotBinary> {
    child: Option<Child>,
    pid: u32,
    log_path: PathBuf,
    /// Where this run's output starts in the (appended) log file.
    log_offset: u64,
    config_path: PathBuf,
    data_dir: PathBuf,
    /// `SURFACES__OPS__BIND`.
    pub ops_addr: SocketAddr,
    exit_status: Option<ExitStatus>,
    binary: PhantomData<fn() -> B>,
}

impl<B: BotBinary> BotProcess<B> {
    /// Starts `surfaces --config <file>` logged in as `creds` on `synapse`,
    /// with its data in `data_dir`.
    ///
    /// Files next to `data_dir` (in its parent, named after it): `<name>.log`
    /// (stdout and stderr, appended across restarts; [`Self::log_text`] only
    /// shows this run) and `<name>.toml` (`config_toml`, empty if `None`).
    /// `extra_env` is applied last, so it overrides the defaults.
    pub async fn start(
        synapse: &Synapse,
        creds: &UserCreds,
        data_dir: &Path,
        extra_env: &[(&str, &str)],
        config_toml: Option<&str>,
    ) -> anyhow::Result<BotProcess<B>> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let data_dir = data_dir.canonicalize()?;
        let parent = data_dir.parent().unwrap_or(&data_dir).to_owned();
        let name = data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bot".to_owned());
        let log_path = parent.join(format!("{name}.log"));
        let config_path = parent.join(format!("{name}.toml"));
        std::fs::write(&config_path, config_toml.unwrap_or(""))
            .with_context(|| format!("writing {}", config_path.display()))?;

        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let log_offset = log.metadata()?.len();

        let ops_addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let binary = B::path();
        let mut command = Command::new(&binary);
        command
            .arg("--config")
            .arg(&config_path)
            .current_dir(&parent)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Nothing from the developer's environment leaks into the config.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("SURFACES__") || key == "AGENT_BASE_URL" {
                command.env_remove(key.as_ref());
            }
        }
        command
            .env("SURFACES__MATRIX__HOMESERVER_URL", &synapse.base_url)
            .env("SURFACES__MATRIX__USER_ID", creds.user_id.as_str())
            .env("SURFACES__MATRIX__PASSWORD", &creds.password)
            .env("SURFACES__DATA_DIR", &data_dir)
            .env("SURFACES__OPS__BIND", ops_addr.to_string())
            .env("SURFACES__LOG__FILTER", "info")
            // One final reply per message, as most scenarios assert; the live-reply
            // scenarios turn streaming on with their own environment.
            .env("SURFACES__STREAMING__ENABLED", "false")
            .env("RUST_BACKTRACE", "1");
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        Ok(BotProcess {
            pid: child.id(),
            child: Some(child),
            log_path,
            log_offset,
            config_path,
            data_dir,
            ops_addr,
            exit_status: None,
            binary: PhantomData,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `http://127.0.0.1:<ops port>`.
    pub fn ops_url(&self) -> String {
        format!("http://{}", self.ops_addr)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// This run's stdout and stderr so far.
    pub fn log_text(&self) -> String {
        let mut text = Vec::new();
        if let Ok(mut file) = std::fs::File::open(&self.log_path) {
            if file.seek(SeekFrom::Start(self.log_offset)).is_ok() {
                let _ = file.read_to_end(&mut text);
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log_text().contains(needle)
    }

    /// The last lines of this run's log, for error messages.
    pub fn log_tail(&self, max_lines: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(max_lines)..].join("\n")
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub fn try_exit_status(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if let Some(status) = self.exit_status {
            return Ok(Some(status));
        }
        let Some(child) = self.child.as_mut() else {
            return Ok(self.exit_status);
        };
        if let Some(status) = child.try_wait()? {
            self.exit_status = Some(status);
            self.child = None;
        }
        Ok(self.exit_status)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.try_exit_status(), Ok(None))
    }

    /// Waits until this run's log contains `needle`; fails at once (with the
    /// log tail) if the process exits first.
    pub async fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let outcome = try_wait_until(timeout, POLL, || {
            let found = self.log_contains(needle);
            let exited = self.try_exit_status();
            async move {
                if found {
                    return Ok(Some(Ok(())));
                }
                // An exit is final: stop polling.
                Ok(exited?.map(|status| Err(anyhow!("surfaces exited ({status})"))))
            }
        })
        .await
        .and_then(|outcome| outcome);
        outcome.with_context(|| {
            format!(
                "waiting for {needle:?} in the surfaces log ({}); tail:\n{}",
                self.log_path.display(),
                self.log_tail(40)
            )
        })
    }

    /// Waits for the process to exit on its own.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        try_wait_until(timeout, POLL, || {
            let status = self.try_exit_status();
            async move { status }
        })
        .await
        .with_context(|| {
            format!(
                "surfaces (pid {}) did not exit; log tail:\n{}",
                self.pid,
                self.log_tail(40)
            )
        })
    }

    /// Waits until `GET {ops_url}{path}` answers 2xx (e.g. a health
    /// endpoint); fails at once if the process exits.
    pub async fn wait_for_ops_ok(&mut self, path: &str, timeout: Duration) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.ops_url());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let outcome = try_wait_until(timeout, POLL, || {
            let exited = self.try_exit_status();
            let request = http.get(&url).send();
            async move {
                if let Some(status) = exited? {
                    return Ok(Some(Err(anyhow!("surfaces exited ({status})"))));
                }
                let ok = request
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                Ok(ok.then_some(Ok(())))
            }
        })
        .await
        .and_then(|outcome| outcome);
        outcome.with_context(|| format!("waiting for {url}; log tail:\n{}", self.log_tail(40)))
    }

    /// Graceful stop: SIGTERM, bounded wait, then SIGKILL. Idempotent.
    pub async fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(mut child) = self.child.take() {
            let status = terminate_child(&mut child, STOP_GRACE).await?;
            self.exit_status = Some(status);
        }
        self.exit_status
            .ok_or_else(|| anyhow!("surfaces (pid {}) has no exit status", self.pid))
    }

    /// Hard stop (SIGKILL), as a crash would. Idempotent.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(mut child) = self.child.take() {
            if let Some(status) = child.try_wait()? {
                self.exit_status = Some(status);
            } else {
                child.kill()?;
                self.exit_status = Some(child.wait()?);
            }
        }
        self.exit_status
            .ok_or_else(|| anyhow!("surfaces (pid {}) has no exit status", self.pid))
    }
}

impl<B: BotBinary> Drop for BotProcess<B> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate_child_blocking(&mut child, STOP_GRACE);
        }
        if std::thread::panicking() {
            eprintln!(
                "surfaces (pid {}) log {} (tail):\n{}",
                self.pid,
                self.log_path.display(),
                file_tail(&self.log_path, 60)
            );
        }
    }
}
