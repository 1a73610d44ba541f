//! A real Synapse per test: installed once per process by
//! `ops/synapse/install`, configured and run by `ops/synapse/start` in a fresh
//! tempdir on a free loopback port, stopped by pid on drop.
//!
//! It exists so that end-to-end tests run against the homeserver users run, not a mock: each
//! test gets its own, with nothing shared between tests but the virtualenv.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

pub use crate::register::{Registrar, UserCreds};
use crate::wait::{file_tail, free_port, terminate_child_blocking};

/// How long Synapse may take to answer `/_matrix/client/versions`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGTERM grace before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Attempts when the chosen port is taken between picking and binding.
const START_ATTEMPTS: usize = 3;

/// The repository root (where `ops/` lives): the parent of this crate's directory.
pub fn repo_root() -> PathBuf {
    let testkit = Path::new(env!("CARGO_MANIFEST_DIR"));
    testkit
        .parent()
        .map_or_else(|| testkit.join(".."), Path::to_path_buf)
}

/// Runs `ops/synapse/install` once per process (it is idempotent and fast
/// when already installed); returns the virtualenv path. Respects
/// `SURFACES_VENV`.
pub fn ensure_installed() -> anyhow::Result<PathBuf> {
    static VENV: Mutex<Option<PathBuf>> = Mutex::new(None);
    install_once(&VENV, "ops/synapse/install")
}

/// Runs the install script `script` (relative to the repository) unless `cache` already
/// holds what it printed last: the path on its last line of output.
pub(crate) fn install_once(
    cache: &Mutex<Option<PathBuf>>,
    script: &str,
) -> anyhow::Result<PathBuf> {
    let mut cached = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = cached.as_ref() {
        return Ok(path.clone());
    }
    let script = repo_root().join(script);
    let output = Command::new(&script)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}):\n{}{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let path = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .map(|line| PathBuf::from(line.trim()))
        .ok_or_else(|| anyhow!("{} printed no path", script.display()))?;
    *cached = Some(path.clone());
    Ok(path)
}

/// A running Synapse, owned by the test. Dropping it stops the process (by
/// pid) and deletes its directory.
pub struct Synapse {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub base_url: String,
    pub port: u16,
    /// The Matrix server name (user ids are `@name:<server_name>`).
    pub server_name: String,
    /// `registration_shared_secret` of the config.
    pub shared_secret: String,
    /// How long the start took (install check excluded).
    pub startup: Duration,
    http: reqwest::Client,
    child: Option<Child>,
    // Declared last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl Synapse {
    /// Starts a fresh Synapse (server name `localhost`).
    pub async fn start() -> anyhow::Result<Synapse> {
        tokio::task::spawn_blocking(ensure_installed)
            .await
            .context("install task panicked")??;
        let mut last_error = None;
        for attempt in 1..=START_ATTEMPTS {
            match Self::start_once().await {
                Ok(synapse) => return Ok(synapse),
                Err(error) => {
                    // A port taken between pick and bind shows up as an early
                    // exit; anything else fails the same way again, cheaply.
                    eprintln!("synapse start attempt {attempt}/{START_ATTEMPTS} failed: {error:#}");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    async fn start_once() -> anyhow::Result<Synapse> {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("surfaces-synapse-")
            .tempdir()
            .context("creating the Synapse tempdir")?;
        let port = free_port()?;
        let server_name = "localhost".to_owned();
        let shared_secret: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(40)
            .collect();
        let console_log = std::fs::File::create(dir.path().join("console.log"))?;
        let child = Command::new(repo_root().join("ops/synapse/start"))
            .arg(dir.path())
            .arg(port.to_string())
            .arg(&server_name)
            .env("SURFACES_SYNAPSE_SHARED_SECRET", &shared_secret)
            .stdin(Stdio::null())
            .stdout(console_log.try_clone()?)
            .stderr(console_log)
            .spawn()
            .context("spawning ops/synapse/start")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut synapse = Synapse {
            base_url: format!("http://127.0.0.1:{port}"),
            port,
            server_name,
            shared_secret,
            startup: Duration::ZERO,
            http,
            child: Some(child),
            dir,
        };
        synapse.wait_ready(started).await?;
        synapse.startup = started.elapsed();
        Ok(synapse)
    }

    async fn wait_ready(&mut self, started: Instant) -> anyhow::Result<()> {
        let url = format!("{}/_matrix/client/versions", self.base_url);
        loop {
            if let Some(status) = self.child.as_mut().expect("child").try_wait()? {
                bail!(
                    "Synapse exited before it was ready ({status}){}",
                    self.log_tails()
                );
            }
            let ready = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .map(|response| response.status().is_success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "Synapse did not answer {url} within {START_TIMEOUT:?}{}",
                    self.log_tails()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The tails of the console output and of `homeserver.log`.
    pub fn log_tails(&self) -> String {
        format!(
            "\n--- {0}/console.log (tail) ---\n{1}\n--- {0}/homeserver.log (tail) ---\n{2}",
            self.dir.path().display(),
            file_tail(&self.dir.path().join("console.log"), 40),
            file_tail(&self.dir.path().join("homeserver.log"), 40),
        )
    }

    /// Synapse's data directory (config, db, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Synapse's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|child| child.id())
    }

    /// An HTTP client for raw API calls.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `@localpart:server_name`.
    pub fn user_id(&self, localpart: &str) -> matrix_sdk::ruma::OwnedUserId {
        matrix_sdk::ruma::UserId::parse(format!("@{localpart}:{}", self.server_name))
            .expect("valid user id")
    }

    /// Registers a user with the shared-secret admin API
    /// (`/_synapse/admin/v1/register`).
    pub async fn register(
        &self,
        localpart: &str,
        password: &str,
        admin: bool,
    ) -> anyhow::Result<UserCreds> {
        self.registrar().register(localpart, password, admin).await
    }

    /// A [`Registrar`] for this homeserver (its shared secret, this harness's HTTP client).
    pub fn registrar(&self) -> Registrar {
        Registrar::new(self.http.clone(), &self.base_url, &self.shared_secret)
    }

    /// Stops Synapse now (SIGTERM, bounded wait, SIGKILL). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate_child_blocking(&mut child, STOP_GRACE);
        }
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed: its captured output shows what Synapse said.
            eprintln!("Synapse at {}:{}", self.base_url, self.log_tails());
        }
        self.stop();
        if std::env::var_os("SURFACES_E2E_KEEP").is_some() {
            // Keep the directory for post-mortems.
            let dir = std::mem::replace(
                &mut self.dir,
                tempfile::Builder::new()
                    .prefix("surfaces-synapse-empty-")
                    .tempdir()
                    .expect("tempdir"),
            );
            eprintln!(
                "SURFACES_E2E_KEEP: Synapse data kept in {}",
                dir.keep().display()
            );
        }
    }
}
