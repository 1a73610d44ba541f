//! Configuration of Surfaces: what to connect to, which agents exist, who may use the bot.
//!
//! Why this module exists: every knob of the runtime is read here, once, at start-up, and
//! validated as a whole before anything connects anywhere. Operators get every problem at
//! once, each naming the dotted key *and* the environment variable that sets it.
//!
//! Layering (later wins), with [figment]:
//! 1. serde defaults (the `DEFAULT_*` constants);
//! 2. the TOML file (`--config PATH`, else [`DEFAULT_CONFIG_FILE`] when it exists);
//! 3. environment variables `SURFACES__SECTION__KEY` (e.g. `SURFACES__MATRIX__USER_ID`);
//! 4. [`Config::check`].
//!
//! Legacy inputs of the previous version are still honoured when no `[[agents]]` are
//! configured: the YAML registry ([`DEFAULT_AGENTS_FILE`], or `agents_file`), then the
//! `AGENT_BASE_URL` / `AGENT_TOKEN` environment variables. When nothing is configured at
//! all, the built-in echo agent is the only (default) agent.
//!
//! Secrets ([`Secret`]) never print themselves: `Debug` and `Display` show `[redacted]`.
//! The process environment is read in [`Config::load`] only; everything else takes the
//! environment as a list of pairs so tests never touch the process environment.
//!
//! One concept per file: `sections.rs` (the plain sections and their defaults),
//! `agents.rs` (`[[agents]]`, resolved), `secret.rs` ([`Secret`]), `env.rs` (the
//! `SURFACES__*` provider), `legacy.rs` (the previous version's inputs), `check.rs`
//! ([`Config::check`]), `error.rs` ([`ConfigError`]); this file loads and holds [`Config`].
//! Who may use the bot ([`AccessPolicy`]) is decided in [`crate::access`].

use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::Figment;
use serde::Deserialize;

mod agents;
mod check;
mod env;
mod error;
mod legacy;
mod limits;
mod openai;
mod replies;
mod secret;
mod sections;
mod streaming;
mod telegram;
#[cfg(test)]
mod test_support;

pub use crate::access::{split_user_id, AccessPolicy};
pub use agents::{
    AgentConfig, AgentKind, AgentsSource, DEFAULT_AGENT_TIMEOUT_SECS, DEFAULT_MAX_CONCURRENT_TURNS,
    DEFAULT_MAX_TURN_SECS, ECHO_AGENT_DESCRIPTION, ECHO_AGENT_ID, ECHO_AGENT_NAME,
};
pub use env::{ENV_PREFIX, ENV_SEPARATOR};
pub use error::{env_var_for, ConfigError};
pub use legacy::{
    DEFAULT_AGENTS_FILE, LEGACY_AGENT_BASE_URL_ENV, LEGACY_AGENT_ID, LEGACY_AGENT_NAME,
    LEGACY_AGENT_TOKEN_ENV,
};
pub use limits::{LimitsConfig, DEFAULT_ROOM_QUEUE_MAX};
pub use openai::{
    OpenAiSettings, DEFAULT_HISTORY_MAX_MESSAGES, DEFAULT_HISTORY_MAX_TOKENS, MAX_TEMPERATURE,
};
pub use replies::RepliesConfig;
pub use secret::Secret;
pub use sections::{
    AccessConfig, CommandsConfig, FilesConfig, KeySharing, LogConfig, LogFormat, MatrixConfig,
    OpsConfig, ReconcileConfig, ShutdownConfig, SupervisionConfig, SyncConfig,
    DEFAULT_BACKFILL_PAGE_SIZE, DEFAULT_BACKOFF_MAX_MS, DEFAULT_BACKOFF_MIN_MS,
    DEFAULT_CATCH_UP_MAX_AGE_SECS, DEFAULT_CATCH_UP_MAX_MESSAGES, DEFAULT_CONFIRMATION_TTL_SECS,
    DEFAULT_DEVICE_NAME, DEFAULT_ENCRYPT_ROOMS, DEFAULT_FILES_MAX_BYTES, DEFAULT_LOG_FILTER,
    DEFAULT_MAX_RESTARTS, DEFAULT_OPS_BIND, DEFAULT_RESTART_PERIOD_SECS,
    DEFAULT_SHUTDOWN_GRACE_SECS, DEFAULT_SYNC_TIMELINE_LIMIT, MAX_SYNC_PAGE,
};
pub use streaming::StreamingConfig;
pub use telegram::{TelegramConfig, TopicsSetting, WebhookConfig};

use agents::{resolve_agent, RawAgent};
use env::{process_env, EnvProvider};

/// The config file read when no path is given (only if it exists).
pub const DEFAULT_CONFIG_FILE: &str = "config/surfaces.toml";
/// Default `data_dir`.
pub const DEFAULT_DATA_DIR: &str = "data";

/// The configuration as deserialized from the layered sources, before the agents are
/// resolved and before [`Config::check`].
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    matrix: MatrixConfig,
    data_dir: Option<PathBuf>,
    access: AccessConfig,
    agents: Vec<RawAgent>,
    agents_file: Option<PathBuf>,
    ops: OpsConfig,
    log: LogConfig,
    shutdown: ShutdownConfig,
    supervision: SupervisionConfig,
    reconcile: ReconcileConfig,
    files: FilesConfig,
    commands: CommandsConfig,
    sync: SyncConfig,
    limits: LimitsConfig,
    replies: RepliesConfig,
    streaming: StreamingConfig,
    telegram: Option<TelegramConfig>,
}

/// The whole, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[matrix]`.
    pub matrix: MatrixConfig,
    /// Where the store and the Matrix session live.
    pub data_dir: PathBuf,
    /// `[access]`.
    pub access: AccessConfig,
    /// The agents, resolved (never empty after [`Config::load`]; exactly one default).
    pub agents: Vec<AgentConfig>,
    /// Where [`Config::agents`] came from.
    pub agents_source: AgentsSource,
    /// The legacy YAML registry in use or configured, if any.
    pub agents_file: Option<PathBuf>,
    /// `[ops]`.
    pub ops: OpsConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[shutdown]`.
    pub shutdown: ShutdownConfig,
    /// `[supervision]`.
    pub supervision: SupervisionConfig,
    /// `[reconcile]`.
    pub reconcile: ReconcileConfig,
    /// `[files]`.
    pub files: FilesConfig,
    /// `[commands]`.
    pub commands: CommandsConfig,
    /// `[sync]`.
    pub sync: SyncConfig,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[replies]`.
    pub replies: RepliesConfig,
    /// `[streaming]`.
    pub streaming: StreamingConfig,
    /// `[telegram]`, when the bot serves Telegram.
    pub telegram: Option<TelegramConfig>,
}

impl Config {
    /// Loads the configuration: defaults → TOML (`path`, else [`DEFAULT_CONFIG_FILE`] if it
    /// exists) → `SURFACES__*` from the process environment → legacy agents → [`Config::check`].
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with(path, &process_env())
    }

    /// Like [`Config::load`], with the environment given as pairs instead of read from the
    /// process.
    pub fn load_with(path: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        Self::load_in(Path::new(""), path, env)
    }

    /// Like [`Config::load_with`], resolving the relative default paths
    /// ([`DEFAULT_CONFIG_FILE`], [`DEFAULT_AGENTS_FILE`], `path`, `agents_file`) against
    /// `base_dir` instead of the working directory.
    pub fn load_in(
        base_dir: &Path,
        path: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let figment = Self::figment(base_dir, path, env)?;
        Self::from_figment(&figment, base_dir, env)
    }

    /// The layered sources (TOML file, then `SURFACES__*` from `env`), not yet extracted.
    /// A given `path` that does not exist is an error naming it.
    pub fn figment(
        base_dir: &Path,
        path: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Figment, ConfigError> {
        let mut figment = Figment::new();
        match path {
            Some(path) => {
                let full = base_dir.join(path);
                match std::fs::metadata(&full) {
                    Ok(md) if md.is_file() => figment = figment.merge(Toml::file_exact(&full)),
                    Ok(_) => {
                        return Err(ConfigError::File {
                            path: full,
                            message: "is not a file".to_owned(),
                        })
                    }
                    Err(e) => {
                        let message = if e.kind() == std::io::ErrorKind::NotFound {
                            "not found".to_owned()
                        } else {
                            e.to_string()
                        };
                        return Err(ConfigError::File {
                            path: full,
                            message,
                        });
                    }
                }
            }
            None => {
                let default = base_dir.join(DEFAULT_CONFIG_FILE);
                if default.is_file() {
                    figment = figment.merge(Toml::file_exact(&default));
                }
            }
        }
        Ok(figment.merge(EnvProvider::new(env)))
    }

    /// Extracts a [`Config`] from layered sources, resolves the agents (legacy inputs read
    /// from `env` and `base_dir`), then runs [`Config::check`]. Returns every problem found.
    pub fn from_figment(
        figment: &Figment,
        base_dir: &Path,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = figment.extract_lossy().map_err(ConfigError::from_figment)?;
        let mut problems = Vec::new();

        let agents_file = legacy::agents_file(raw.agents_file, base_dir, &mut problems);

        let mut source = AgentsSource::Configured;
        let mut agents = Vec::new();
        if !raw.agents.is_empty() {
            for (index, raw_agent) in raw.agents.into_iter().enumerate() {
                agents.push(resolve_agent(index, raw_agent, &mut problems));
            }
        }
        if agents.is_empty() {
            if let Some(path) = &agents_file {
                match legacy::read_legacy_agents(path) {
                    Ok(legacy) if !legacy.is_empty() => {
                        agents = legacy;
                        source = AgentsSource::LegacyYaml(path.clone());
                    }
                    Ok(_) => {}
                    Err(e) => problems.push(e),
                }
            }
        }
        if agents.is_empty() {
            if let Some(agent) = legacy::agent_from_env(env) {
                agents.push(agent);
                source = AgentsSource::LegacyEnv;
            }
        }
        if agents.is_empty() {
            agents.push(AgentConfig::builtin_echo());
            source = AgentsSource::BuiltinEcho;
        }
        if !agents.iter().any(|a| a.default) {
            if let Some(first) = agents.first_mut() {
                first.default = true;
            }
        }

        let config = Config {
            matrix: raw.matrix,
            data_dir: raw
                .data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            access: raw.access,
            agents,
            agents_source: source,
            agents_file,
            ops: raw.ops,
            log: raw.log,
            shutdown: raw.shutdown,
            supervision: raw.supervision,
            reconcile: raw.reconcile,
            files: raw.files,
            commands: raw.commands,
            sync: raw.sync,
            limits: raw.limits,
            replies: raw.replies,
            streaming: raw.streaming,
            telegram: raw.telegram,
        };
        if let Err(e) = config.check() {
            problems.push(e);
        }
        ConfigError::from_problems(problems)?;
        Ok(config)
    }

    /// The default agent (the one marked `default`, else the first).
    pub fn default_agent(&self) -> Option<&AgentConfig> {
        self.agents
            .iter()
            .find(|a| a.default)
            .or_else(|| self.agents.first())
    }

    /// The agent with this id.
    pub fn agent(&self, id: &str) -> Option<&AgentConfig> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// The access policy built from `[access]` and the bot's own homeserver, and from
    /// `[telegram]`'s user ids for Telegram's people.
    pub fn access_policy(&self) -> AccessPolicy {
        let policy = AccessPolicy::new(&self.access, &self.matrix.user_id);
        match &self.telegram {
            Some(telegram) => policy.with_namespace(
                crate::telegram::ids::PREFIX,
                &telegram.allowed_users,
                &telegram.admins,
            ),
            None => policy,
        }
    }

    /// Whether the bot serves Matrix: always, unless only `[telegram]` is configured (no
    /// `matrix.homeserver_url` nor `matrix.user_id`).
    pub fn matrix_enabled(&self) -> bool {
        self.telegram.is_none()
            || !self.matrix.homeserver_url.is_empty()
            || !self.matrix.user_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::legacy::read_legacy_agents;
    use crate::config::test_support::{dir_with, env, load_err, load_ok, MINIMAL};

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let toml = format!(
            "{MINIMAL}device_name = \"from-file\"\nencrypt_rooms = false\n\
             [log]\nformat = \"json\"\n[shutdown]\ngrace_secs = 5\n"
        );
        let c = load_ok(&toml, &[]);
        assert_eq!(c.matrix.device_name, "from-file");
        assert!(!c.matrix.encrypt_rooms);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.shutdown.grace_secs, 5);

        let c = load_ok(
            &toml,
            &[
                ("SURFACES__MATRIX__DEVICE_NAME", "from-env"),
                ("SURFACES__MATRIX__ENCRYPT_ROOMS", "true"),
                ("SURFACES__SHUTDOWN__GRACE_SECS", "7"),
                ("SURFACES__OPS__BIND", "0.0.0.0:8080"),
                ("SURFACES__DATA_DIR", "/var/lib/surfaces"),
                ("SURFACES__LOG__FORMAT", "pretty"),
                ("UNRELATED", "x"),
            ],
        );
        assert_eq!(c.matrix.device_name, "from-env");
        assert!(c.matrix.encrypt_rooms);
        assert_eq!(c.shutdown.grace_secs, 7);
        assert_eq!(c.ops.bind, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/surfaces"));
        assert_eq!(c.log.format, LogFormat::Pretty);
        // Untouched keys keep the file's value.
        assert_eq!(c.matrix.homeserver_url, "https://matrix.example.org");
    }

    #[test]
    fn missing_given_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let err = Config::load_in(dir.path(), Some(&missing), &[]).unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.toml"), "{err}");
    }

    #[test]
    fn default_path_is_used_only_when_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        // No config/surfaces.toml: not a file error, but the required keys are missing.
        let err = Config::load_in(dir.path(), None, &[]).unwrap_err();
        assert!(!matches!(err, ConfigError::File { .. }), "{err:?}");
        assert!(err.keys().contains(&"matrix.homeserver_url"), "{err}");

        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join(DEFAULT_CONFIG_FILE), MINIMAL).unwrap();
        let c = Config::load_in(dir.path(), None, &[]).unwrap();
        assert_eq!(c.matrix.user_id, "@surfaces:example.org");
    }

    #[test]
    fn telegram_alone_is_valid_and_turns_matrix_off() {
        let toml = "[telegram]\nallowed_users = [\"42\"]\n";
        let c = load_ok(toml, &[("SURFACES__TELEGRAM__TOKEN", "123:abc")]);
        assert!(!c.matrix_enabled());
        let telegram = c.telegram.as_ref().expect("the section");
        assert_eq!(telegram.api_url, telegram::DEFAULT_API_URL);
        assert!(c.access_policy().allows("telegram:42"));
        assert!(!c.access_policy().allows("telegram:43"));
        // Beside Matrix, both are on; without the token, the key is named.
        let both = load_ok(
            &format!("{MINIMAL}{toml}"),
            &[("SURFACES__TELEGRAM__TOKEN", "1:a")],
        );
        assert!(both.matrix_enabled() && both.telegram.is_some());
        let err = load_err(toml, &[]);
        assert!(err.keys().contains(&"telegram.token"), "{err}");
        assert!(!err.keys().contains(&"matrix.homeserver_url"), "{err}");
        // The example's commented section, uncommented, is valid.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let example = std::fs::read_to_string(root.join("config/surfaces.example.toml")).unwrap();
        let section: String = example
            .lines()
            .skip_while(|l| *l != "# [telegram]")
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            section.starts_with("[telegram]\n")
                && section.contains("token")
                && section.contains("[telegram.webhook]\n")
                && section.contains("secret_token"),
            "{section}"
        );
        let with_webhook = load_ok(&section, &[]);
        assert!(with_webhook
            .telegram
            .as_ref()
            .is_some_and(|t| t.webhook.is_some()));
    }

    #[test]
    fn example_files_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let example = root.join("config/surfaces.example.toml");
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load_in(dir.path(), Some(&example), &[])
            .unwrap_or_else(|e| panic!("{}: {e}", example.display()));
        assert!(!c.agents.is_empty());

        let yaml = root.join("config/matrix-agents.example.yaml");
        let agents = read_legacy_agents(&yaml).unwrap();
        assert!(!agents.is_empty());
        let (_keep, minimal) = dir_with(MINIMAL);
        let c = Config::load_in(
            dir.path(),
            Some(&minimal),
            &env(&[("SURFACES__AGENTS_FILE", yaml.to_str().unwrap())]),
        );
        assert!(c.is_ok(), "{c:?}");
    }
}
