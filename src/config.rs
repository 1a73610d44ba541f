//! Configuration of Surfaces: what to connect to, which agents exist, who may use the bot.
//!
//! Why this module exists: every knob of the runtime is read here, once, at start-up, and
//! validated as a whole before anything connects anywhere. Operators get every problem at
//! once, each naming the dotted key *and* the environment variable that sets it.
//!
//! Layering (later wins), with [figment]:
//! 1. serde defaults (the `DEFAULT_*` constants below);
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

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Toml, Yaml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// The config file read when no path is given (only if it exists).
pub const DEFAULT_CONFIG_FILE: &str = "config/surfaces.toml";
/// The legacy YAML agent registry read when `agents_file` is not set (only if it exists).
pub const DEFAULT_AGENTS_FILE: &str = "config/matrix-agents.yaml";
/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "SURFACES__";
/// Separator between the sections of an environment variable name.
pub const ENV_SEPARATOR: &str = "__";
/// Legacy: the base URL of the single agent of the previous version.
pub const LEGACY_AGENT_BASE_URL_ENV: &str = "AGENT_BASE_URL";
/// Legacy: the bearer token of the single agent of the previous version.
pub const LEGACY_AGENT_TOKEN_ENV: &str = "AGENT_TOKEN";
/// Id of the agent made from [`LEGACY_AGENT_BASE_URL_ENV`].
pub const LEGACY_AGENT_ID: &str = "default";
/// Name of the agent made from [`LEGACY_AGENT_BASE_URL_ENV`].
pub const LEGACY_AGENT_NAME: &str = "Agent";
/// Id of the built-in echo agent used when no agent is configured.
pub const ECHO_AGENT_ID: &str = "echo";
/// Name of the built-in echo agent.
pub const ECHO_AGENT_NAME: &str = "Echo";
/// Description of the built-in echo agent.
pub const ECHO_AGENT_DESCRIPTION: &str = "Built-in test agent: repeats what you say.";

/// Default `matrix.device_name`.
pub const DEFAULT_DEVICE_NAME: &str = "surfaces";
/// Default `matrix.encrypt_rooms`.
pub const DEFAULT_ENCRYPT_ROOMS: bool = true;
/// Default `data_dir`.
pub const DEFAULT_DATA_DIR: &str = "data";
/// Default `agents[].timeout_secs`.
pub const DEFAULT_AGENT_TIMEOUT_SECS: u64 = 120;
/// Default `agents[].max_concurrent_turns`.
pub const DEFAULT_MAX_CONCURRENT_TURNS: usize = 4;
/// Default `ops.bind`.
pub const DEFAULT_OPS_BIND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9797);
/// Default `log.filter`.
pub const DEFAULT_LOG_FILTER: &str = "info,surfaces=info,actors=info";
/// Default `shutdown.grace_secs`.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 20;
/// Default `supervision.backoff_min_ms`.
pub const DEFAULT_BACKOFF_MIN_MS: u64 = 100;
/// Default `supervision.backoff_max_ms`.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 30_000;
/// Default `supervision.max_restarts`.
pub const DEFAULT_MAX_RESTARTS: u32 = 10;
/// Default `supervision.restart_period_secs`.
pub const DEFAULT_RESTART_PERIOD_SECS: u64 = 60;
/// Default `files.max_bytes`: 20 MiB.
pub const DEFAULT_FILES_MAX_BYTES: u64 = 20 * 1024 * 1024;

/// The longest Matrix user id the spec allows.
const MAX_USER_ID_LEN: usize = 255;
/// What secrets print instead of themselves.
const REDACTED: &str = "[redacted]";

// ---------------------------------------------------------------------------------------------
// Secret
// ---------------------------------------------------------------------------------------------

/// A secret string (password, token). `Debug` and `Display` print `[redacted]`;
/// use [`Secret::expose`] where the value is really needed.
///
/// Deserializes from a plain string (numbers are accepted and kept as their text, so a
/// numeric password set through the environment is not mangled).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string (treated as "not set").
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;

        impl de::Visitor<'_> for SecretVisitor {
            type Value = Secret;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }

            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }

            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }

        deserializer.deserialize_string(SecretVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A configuration problem. Each names the dotted key and where to set it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A key has a bad or missing value; `env` is the environment variable that sets it.
    #[error("{key}: {message} (set it in the config file or {env})")]
    Invalid {
        /// Dotted key, e.g. `matrix.homeserver_url` or `agents[2].base_url`.
        key: String,
        /// The environment variable that sets the key, e.g. `SURFACES__MATRIX__HOMESERVER_URL`.
        env: String,
        /// What is wrong, for a person.
        message: String,
    },
    /// A key read from a legacy file (the YAML agent registry) has a bad value.
    #[error("{key}: {message} (set it in {})", path.display())]
    InvalidIn {
        /// Dotted key, e.g. `agents[0].base_url`.
        key: String,
        /// The file the value came from.
        path: PathBuf,
        /// What is wrong, for a person.
        message: String,
    },
    /// A file could not be found or read.
    #[error("config file {}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A source could not be parsed and the error names no key.
    #[error("configuration: {message}")]
    Parse {
        /// The parser's message.
        message: String,
    },
    /// Several problems; never nested, never empty.
    #[error("{} problems in the configuration:\n{}", .0.len(), list_problems(.0))]
    Many(Vec<ConfigError>),
}

fn list_problems(problems: &[ConfigError]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] for `key`, with its environment variable filled in.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        let key = key.into();
        ConfigError::Invalid {
            env: env_var_for(&key),
            key,
            message: message.into(),
        }
    }

    /// The individual problems (one for anything but [`ConfigError::Many`]).
    pub fn problems(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Many(all) => all.iter().flat_map(|p| p.problems()).collect(),
            other => vec![other],
        }
    }

    /// The dotted keys named by the problems (for tests and for logs).
    pub fn keys(&self) -> Vec<&str> {
        self.problems()
            .into_iter()
            .filter_map(|p| match p {
                ConfigError::Invalid { key, .. } | ConfigError::InvalidIn { key, .. } => {
                    Some(key.as_str())
                }
                _ => None,
            })
            .collect()
    }

    fn into_problems(self) -> Vec<ConfigError> {
        match self {
            ConfigError::Many(all) => all.into_iter().flat_map(|p| p.into_problems()).collect(),
            other => vec![other],
        }
    }

    /// `Ok(())` for no problem, the problem for one, [`ConfigError::Many`] for several.
    fn from_problems(problems: Vec<ConfigError>) -> Result<(), ConfigError> {
        let mut flat: Vec<ConfigError> = problems
            .into_iter()
            .flat_map(ConfigError::into_problems)
            .collect();
        match flat.len() {
            0 => Ok(()),
            1 => Err(flat.remove(0)),
            _ => Err(ConfigError::Many(flat)),
        }
    }

    fn from_figment(err: figment::Error) -> ConfigError {
        let problems = err.into_iter().map(Self::from_one_figment).collect();
        match Self::from_problems(problems) {
            Err(e) => e,
            Ok(()) => ConfigError::Parse {
                message: "unknown error".to_owned(),
            },
        }
    }

    fn from_one_figment(err: figment::Error) -> ConfigError {
        use figment::error::Kind;

        let mut path = err.path.clone();
        let field = match &err.kind {
            Kind::UnknownField(field, _) => Some(field.clone()),
            Kind::MissingField(field) => Some(field.to_string()),
            _ => None,
        };
        // figment sometimes already ends the path with the field: name it once.
        if let Some(field) = field {
            if path.last() != Some(&field) {
                path.push(field);
            }
        }
        if path.is_empty() {
            return ConfigError::Parse {
                message: err.to_string(),
            };
        }
        let origin = match &err.metadata {
            Some(md) => match &md.source {
                Some(source) => format!(" (from {} {})", md.name, source),
                None => format!(" (from {})", md.name),
            },
            None => String::new(),
        };
        ConfigError::invalid(render_key(&path), format!("{}{}", err.kind, origin))
    }
}

/// Renders figment's key path (`["agents", "2", "base_url"]`) as `agents[2].base_url`.
fn render_key(path: &[String]) -> String {
    let mut key = String::new();
    for segment in path {
        if segment.parse::<usize>().is_ok() && !key.is_empty() {
            key.push('[');
            key.push_str(segment);
            key.push(']');
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment);
        }
    }
    key
}

/// The environment variable that sets a dotted key: `matrix.user_id` →
/// `SURFACES__MATRIX__USER_ID`. List items (`agents[2].base_url`) are set as a whole list,
/// so they map to the list's variable (`SURFACES__AGENTS`).
pub fn env_var_for(key: &str) -> String {
    let mut parts = Vec::new();
    for segment in key.split('.') {
        match segment.split_once('[') {
            Some((list, _)) => {
                parts.push(list.to_ascii_uppercase());
                break;
            }
            None => parts.push(segment.to_ascii_uppercase()),
        }
    }
    format!("{ENV_PREFIX}{}", parts.join(ENV_SEPARATOR))
}

// ---------------------------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------------------------

/// `[matrix]`: the bot's account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatrixConfig {
    /// The homeserver's client-server API URL, e.g. `https://matrix.example.org`.
    pub homeserver_url: String,
    /// The bot's user id, e.g. `@surfaces:example.org`.
    pub user_id: String,
    /// Password login (one of `password` / `access_token` is required).
    pub password: Option<Secret>,
    /// Access-token login (one of `password` / `access_token` is required).
    pub access_token: Option<Secret>,
    /// Device display name used at login.
    pub device_name: String,
    /// Whether new chat rooms are created end-to-end encrypted.
    pub encrypt_rooms: bool,
}

impl Default for MatrixConfig {
    fn default() -> Self {
        MatrixConfig {
            homeserver_url: String::new(),
            user_id: String::new(),
            password: None,
            access_token: None,
            device_name: DEFAULT_DEVICE_NAME.to_owned(),
            encrypt_rooms: DEFAULT_ENCRYPT_ROOMS,
        }
    }
}

impl MatrixConfig {
    /// The server name of the bot's user id (`example.org` for `@surfaces:example.org`).
    pub fn server_name(&self) -> Option<&str> {
        split_user_id(&self.user_id).map(|(_, server)| server)
    }
}

/// `[access]`: who may talk to the bot. See [`AccessPolicy`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// User id patterns (`@alice:example.org`, `@*:example.org`; `*` is the only wildcard).
    #[serde(deserialize_with = "string_or_list")]
    pub allowed_users: Vec<String>,
    /// Homeserver names whose users are all allowed (`example.org`, `*.example.org`).
    #[serde(deserialize_with = "string_or_list")]
    pub allowed_homeservers: Vec<String>,
    /// User id patterns of the bot's administrators (always allowed too).
    #[serde(deserialize_with = "string_or_list")]
    pub admins: Vec<String>,
}

/// How an agent is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    /// An agent speaking `docs/agent-api.md` over HTTP at `base_url`.
    Http,
    /// The built-in echo agent (tests, smoke checks).
    Echo,
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AgentKind::Http => "http",
            AgentKind::Echo => "echo",
        })
    }
}

/// One agent (`[[agents]]`), resolved: `kind`, `name` and `default` are always set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Stable id (`[a-z0-9_-]+`), stored in rooms' state.
    pub id: String,
    /// Display name shown to users.
    pub name: String,
    /// One-line description shown in agent lists.
    pub description: String,
    /// How the agent is reached.
    pub kind: AgentKind,
    /// Base URL of the agent API (http agents).
    pub base_url: Option<String>,
    /// Bearer token for the agent API.
    pub token: Option<Secret>,
    /// The agent's workspace root on the shared volume.
    pub workspace: Option<PathBuf>,
    /// How long to wait for a turn before giving up.
    pub timeout_secs: u64,
    /// How many turns may run at once against this agent.
    pub max_concurrent_turns: usize,
    /// Whether new users get this agent first (exactly one agent is the default).
    pub default: bool,
}

impl AgentConfig {
    /// [`AgentConfig::timeout_secs`] as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// The built-in echo agent, the default when nothing is configured.
    pub fn builtin_echo() -> Self {
        AgentConfig {
            id: ECHO_AGENT_ID.to_owned(),
            name: ECHO_AGENT_NAME.to_owned(),
            description: ECHO_AGENT_DESCRIPTION.to_owned(),
            kind: AgentKind::Echo,
            base_url: None,
            token: None,
            workspace: None,
            timeout_secs: DEFAULT_AGENT_TIMEOUT_SECS,
            max_concurrent_turns: DEFAULT_MAX_CONCURRENT_TURNS,
            default: true,
        }
    }
}

/// Where the agent list came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentsSource {
    /// `[[agents]]` in the config file or `SURFACES__AGENTS`.
    Configured,
    /// The legacy YAML registry at this path.
    LegacyYaml(PathBuf),
    /// The legacy `AGENT_BASE_URL` environment variable.
    LegacyEnv,
    /// Nothing configured: the built-in echo agent.
    BuiltinEcho,
}

/// `[ops]`: the operations endpoint (health, metrics).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// Address the ops HTTP endpoint listens on.
    pub bind: SocketAddr,
    /// Bearer token of the fault-injection endpoint (builds with the `fault-injection`
    /// feature only); the endpoint refuses every request while it is unset.
    pub fault_token: Option<Secret>,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            bind: DEFAULT_OPS_BIND,
            fault_token: None,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive string.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::default(),
            filter: DEFAULT_LOG_FILTER.to_owned(),
        }
    }
}

/// `[shutdown]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long running turns may finish after a stop signal.
    pub grace_secs: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
        }
    }
}

impl ShutdownConfig {
    /// [`ShutdownConfig::grace_secs`] as a duration.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_secs)
    }
}

/// Default `commands.confirmation_ttl_secs`: ten minutes.
pub const DEFAULT_CONFIRMATION_TTL_SECS: u64 = 600;

/// `[commands]`: the chat commands.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommandsConfig {
    /// How long a pending confirmation (`!archive`, an agent's question) waits for
    /// `!yes` / `!no` before it expires.
    pub confirmation_ttl_secs: u64,
    /// After `!clear`, also delete the old conversation upstream (`DELETE /v1/chats/{chat}`).
    pub delete_old_chat_on_clear: bool,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        Self {
            confirmation_ttl_secs: DEFAULT_CONFIRMATION_TTL_SECS,
            delete_old_chat_on_clear: false,
        }
    }
}

impl CommandsConfig {
    /// [`CommandsConfig::confirmation_ttl_secs`] as a duration.
    pub fn confirmation_ttl(&self) -> Duration {
        Duration::from_secs(self.confirmation_ttl_secs)
    }
}

/// `[reconcile]`: how start-up rebuilds the store from Matrix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Walk every joined room at start-up even when the store was reconciled before
    /// (default false: only rooms the store does not know are walked).
    pub full: bool,
}

/// `[files]`: files exchanged between rooms and the agents' workspaces.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// Largest file passed either way, in bytes (bigger ones are refused with a notice).
    pub max_bytes: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            max_bytes: DEFAULT_FILES_MAX_BYTES,
        }
    }
}

/// Default `sync.timeline_limit`: timeline events per room in one sync response.
pub const DEFAULT_SYNC_TIMELINE_LIMIT: u32 = 50;
/// Default `sync.catch_up_max_messages`: messages answered per room from one gap.
pub const DEFAULT_CATCH_UP_MAX_MESSAGES: u32 = 1000;
/// Default `sync.catch_up_max_age_secs`: two days, so a day's normal use is answered.
pub const DEFAULT_CATCH_UP_MAX_AGE_SECS: u64 = 2 * 24 * 3600;
/// Default `sync.backfill_page_size`: events per back-pagination request.
pub const DEFAULT_BACKFILL_PAGE_SIZE: u32 = 100;
/// Largest `sync.timeline_limit` and `sync.backfill_page_size` (Synapse caps both lower).
pub const MAX_SYNC_PAGE: u32 = 1000;

/// `[sync]`: how the bot reads rooms, and how it catches up on what a sync left out.
///
/// A sync carries at most `timeline_limit` events per room; when more arrived, the
/// homeserver leaves a gap, which the bot fills by paging backwards (`backfill_page_size`
/// events per request) so every message is answered in order. The same path catches up
/// after down time, within the bounds below; where a bound cuts, the room is told how many
/// older messages were not answered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// Timeline events per room in one sync response.
    pub timeline_limit: u32,
    /// Events fetched per back-pagination request when filling a gap.
    pub backfill_page_size: u32,
    /// At most this many of a room's missed messages are answered after one gap (the
    /// newest ones); older ones are counted and the room is told.
    pub catch_up_max_messages: u32,
    /// Missed messages older than this (seconds) are not answered after a gap (counted,
    /// and the room is told).
    pub catch_up_max_age_secs: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            timeline_limit: DEFAULT_SYNC_TIMELINE_LIMIT,
            backfill_page_size: DEFAULT_BACKFILL_PAGE_SIZE,
            catch_up_max_messages: DEFAULT_CATCH_UP_MAX_MESSAGES,
            catch_up_max_age_secs: DEFAULT_CATCH_UP_MAX_AGE_SECS,
        }
    }
}

impl SyncConfig {
    /// [`SyncConfig::catch_up_max_age_secs`] as a duration.
    pub fn catch_up_max_age(&self) -> Duration {
        Duration::from_secs(self.catch_up_max_age_secs)
    }

    fn check(&self, problems: &mut Vec<ConfigError>) {
        for (key, value) in [
            ("sync.timeline_limit", self.timeline_limit),
            ("sync.backfill_page_size", self.backfill_page_size),
        ] {
            if value == 0 || value > MAX_SYNC_PAGE {
                problems.push(ConfigError::invalid(
                    key,
                    format!("{value} is not between 1 and {MAX_SYNC_PAGE}"),
                ));
            }
        }
        if self.catch_up_max_messages == 0 {
            problems.push(ConfigError::invalid(
                "sync.catch_up_max_messages",
                "must be at least 1",
            ));
        }
        if self.catch_up_max_age_secs == 0 {
            problems.push(ConfigError::invalid(
                "sync.catch_up_max_age_secs",
                "must be at least 1",
            ));
        }
    }
}

/// `[supervision]`: restart policy of the actors.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisionConfig {
    /// First restart delay.
    pub backoff_min_ms: u64,
    /// Largest restart delay.
    pub backoff_max_ms: u64,
    /// Restarts allowed within `restart_period_secs` before the supervisor gives up.
    pub max_restarts: u32,
    /// The window `max_restarts` is counted in.
    pub restart_period_secs: u64,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            backoff_min_ms: DEFAULT_BACKOFF_MIN_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            max_restarts: DEFAULT_MAX_RESTARTS,
            restart_period_secs: DEFAULT_RESTART_PERIOD_SECS,
        }
    }
}

impl SupervisionConfig {
    /// [`SupervisionConfig::backoff_min_ms`] as a duration.
    pub fn backoff_min(&self) -> Duration {
        Duration::from_millis(self.backoff_min_ms)
    }

    /// [`SupervisionConfig::backoff_max_ms`] as a duration.
    pub fn backoff_max(&self) -> Duration {
        Duration::from_millis(self.backoff_max_ms)
    }

    /// [`SupervisionConfig::restart_period_secs`] as a duration.
    pub fn restart_period(&self) -> Duration {
        Duration::from_secs(self.restart_period_secs)
    }
}

// ---------------------------------------------------------------------------------------------
// Raw (deserialized) forms
// ---------------------------------------------------------------------------------------------

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
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawAgent {
    #[serde(deserialize_with = "string_or_number")]
    id: String,
    name: Option<String>,
    description: String,
    kind: Option<AgentKind>,
    base_url: Option<String>,
    token: Option<Secret>,
    workspace: Option<PathBuf>,
    timeout_secs: u64,
    max_concurrent_turns: usize,
    default: bool,
}

impl Default for RawAgent {
    fn default() -> Self {
        RawAgent {
            id: String::new(),
            name: None,
            description: String::new(),
            kind: None,
            base_url: None,
            token: None,
            workspace: None,
            timeout_secs: DEFAULT_AGENT_TIMEOUT_SECS,
            max_concurrent_turns: DEFAULT_MAX_CONCURRENT_TURNS,
            default: false,
        }
    }
}

/// One entry of the legacy YAML registry (unknown fields ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LegacyAgent {
    #[serde(deserialize_with = "string_or_number")]
    id: String,
    name: Option<String>,
    #[serde(alias = "url", alias = "baseUrl", alias = "baseURL")]
    base_url: Option<String>,
    workspace: Option<PathBuf>,
    description: Option<String>,
    token: Option<Secret>,
}

/// The legacy registry may also be a map with an `agents:` list.
#[derive(Debug, Deserialize)]
struct LegacyWrapped {
    #[serde(default)]
    agents: Vec<LegacyAgent>,
}

/// Accepts a list of strings, or one string of comma-separated items (handy in env vars).
fn string_or_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

/// Accepts a string or an integer (legacy registries sometimes used numeric ids).
fn string_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StringOrNumber {
        S(String),
        U(u64),
        I(i64),
    }
    Ok(match StringOrNumber::deserialize(deserializer)? {
        StringOrNumber::S(s) => s,
        StringOrNumber::U(n) => n.to_string(),
        StringOrNumber::I(n) => n.to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// Environment provider
// ---------------------------------------------------------------------------------------------

/// Figment provider over an explicit list of environment variables: `SURFACES__A__B=v`
/// sets `a.b`. Like `figment::providers::Env::prefixed("SURFACES__").split("__")`, but over
/// a given list (tests inject theirs) and keeping scalar values as text, so `12345` stays a
/// string for a password; numbers and booleans are read with `extract_lossy`. A value that
/// parses as an array or a table (`["a", "b"]`, `{ id = "x" }`) is used as one.
struct EnvProvider {
    vars: Vec<(String, String)>,
}

impl EnvProvider {
    fn new(vars: &[(String, String)]) -> Self {
        EnvProvider {
            vars: vars.to_vec(),
        }
    }
}

/// Keys whose environment values are always taken verbatim (a password may look like a list).
const SECRET_KEYS: &[&str] = &["password", "access_token", "token", "fault_token"];

/// `SURFACES__MATRIX__USER_ID` → `matrix.user_id`; `None` for other variables.
fn env_key(name: &str) -> Option<String> {
    let name = name.trim();
    let head = name.get(..ENV_PREFIX.len())?;
    if !head.eq_ignore_ascii_case(ENV_PREFIX) {
        return None;
    }
    let rest = &name[ENV_PREFIX.len()..];
    let parts: Vec<&str> = rest.split(ENV_SEPARATOR).collect();
    if parts.iter().any(|p| p.is_empty() || p.contains('.')) {
        return None;
    }
    Some(parts.join(".").to_ascii_lowercase())
}

fn merge_dicts(into: &mut Dict, from: Dict) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Dict(_, existing)), Value::Dict(_, incoming)) => {
                merge_dicts(existing, incoming)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

impl Provider for EnvProvider {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("`{ENV_PREFIX}` environment variable(s)")).interpolater(
            |_: &Profile, keys: &[&str]| {
                let upper: Vec<String> = keys.iter().map(|k| k.to_ascii_uppercase()).collect();
                format!("{ENV_PREFIX}{}", upper.join(ENV_SEPARATOR))
            },
        )
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (name, raw) in &self.vars {
            let Some(key) = env_key(name) else { continue };
            let is_secret = SECRET_KEYS
                .iter()
                .any(|s| key.rsplit('.').next() == Some(*s));
            let Ok(parsed) = raw.parse::<Value>();
            let value = match parsed {
                Value::Dict(..) | Value::Array(..) if !is_secret => parsed,
                _ => Value::from(raw.clone()),
            };
            if let Some(nested) = figment::util::nest(&key, value).into_dict() {
                merge_dicts(&mut dict, nested);
            }
        }
        let mut map = BTreeMap::new();
        map.insert(Profile::Default, dict);
        Ok(map)
    }
}

/// The process environment as pairs (variables that are not valid UTF-8 are skipped).
fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

fn env_lookup<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

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

        let agents_file = match raw.agents_file {
            Some(path) => {
                let full = base_dir.join(&path);
                if full.is_file() {
                    Some(full)
                } else {
                    problems.push(ConfigError::invalid(
                        "agents_file",
                        format!("{} does not exist or is not a file", full.display()),
                    ));
                    None
                }
            }
            None => {
                let default = base_dir.join(DEFAULT_AGENTS_FILE);
                default.is_file().then_some(default)
            }
        };

        let mut source = AgentsSource::Configured;
        let mut agents = Vec::new();
        if !raw.agents.is_empty() {
            for (index, raw_agent) in raw.agents.into_iter().enumerate() {
                agents.push(resolve_agent(index, raw_agent, &mut problems));
            }
        }
        if agents.is_empty() {
            if let Some(path) = &agents_file {
                match read_legacy_agents(path) {
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
            if let Some(url) = env_lookup(env, LEGACY_AGENT_BASE_URL_ENV) {
                agents.push(AgentConfig {
                    id: LEGACY_AGENT_ID.to_owned(),
                    name: LEGACY_AGENT_NAME.to_owned(),
                    description: String::new(),
                    kind: AgentKind::Http,
                    base_url: Some(url.to_owned()),
                    token: env_lookup(env, LEGACY_AGENT_TOKEN_ENV).map(Secret::new),
                    workspace: None,
                    timeout_secs: DEFAULT_AGENT_TIMEOUT_SECS,
                    max_concurrent_turns: DEFAULT_MAX_CONCURRENT_TURNS,
                    default: true,
                });
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
        };
        if let Err(e) = config.check() {
            problems.push(e);
        }
        ConfigError::from_problems(problems)?;
        Ok(config)
    }

    /// Validates the whole configuration and returns every problem found.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.check_matrix(&mut problems);
        if self.data_dir.as_os_str().is_empty() {
            problems.push(ConfigError::invalid("data_dir", "must not be empty"));
        }
        self.check_access(&mut problems);
        self.check_agents(&mut problems);
        if self.log.filter.trim().is_empty() {
            problems.push(ConfigError::invalid("log.filter", "must not be empty"));
        } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            problems.push(ConfigError::invalid(
                "log.filter",
                format!("{:?} is not a valid log filter: {e}", self.log.filter),
            ));
        }
        let sup = &self.supervision;
        if sup.backoff_min_ms == 0 {
            problems.push(ConfigError::invalid(
                "supervision.backoff_min_ms",
                "must be at least 1",
            ));
        }
        if sup.backoff_max_ms < sup.backoff_min_ms {
            problems.push(ConfigError::invalid(
                "supervision.backoff_max_ms",
                format!(
                    "{} is smaller than supervision.backoff_min_ms ({})",
                    sup.backoff_max_ms, sup.backoff_min_ms
                ),
            ));
        }
        if sup.restart_period_secs == 0 {
            problems.push(ConfigError::invalid(
                "supervision.restart_period_secs",
                "must be at least 1",
            ));
        }
        if self.files.max_bytes == 0 {
            problems.push(ConfigError::invalid(
                "files.max_bytes",
                "must be at least 1",
            ));
        }
        self.sync.check(&mut problems);
        ConfigError::from_problems(problems)
    }

    fn check_matrix(&self, problems: &mut Vec<ConfigError>) {
        let m = &self.matrix;
        if m.homeserver_url.trim().is_empty() {
            problems.push(ConfigError::invalid(
                "matrix.homeserver_url",
                "missing: the URL of the bot's homeserver, e.g. https://matrix.example.org",
            ));
        } else if let Err(message) = check_http_url(&m.homeserver_url) {
            problems.push(ConfigError::invalid("matrix.homeserver_url", message));
        }
        if m.user_id.trim().is_empty() {
            problems.push(ConfigError::invalid(
                "matrix.user_id",
                "missing: the bot's Matrix user id, e.g. @surfaces:example.org",
            ));
        } else if split_user_id(&m.user_id).is_none() {
            problems.push(ConfigError::invalid(
                "matrix.user_id",
                format!(
                    "{:?} is not a Matrix user id like @surfaces:example.org",
                    m.user_id
                ),
            ));
        }
        let has = |s: &Option<Secret>| s.as_ref().is_some_and(|s| !s.is_empty());
        if !has(&m.password) && !has(&m.access_token) {
            problems.push(ConfigError::invalid(
                "matrix.password",
                format!(
                    "missing: set matrix.password or matrix.access_token ({})",
                    env_var_for("matrix.access_token")
                ),
            ));
        }
        if m.device_name.trim().is_empty() {
            problems.push(ConfigError::invalid(
                "matrix.device_name",
                "must not be empty",
            ));
        }
    }

    fn check_access(&self, problems: &mut Vec<ConfigError>) {
        let a = &self.access;
        for (field, patterns) in [("allowed_users", &a.allowed_users), ("admins", &a.admins)] {
            for (i, pattern) in patterns.iter().enumerate() {
                if !is_valid_user_pattern(pattern) {
                    problems.push(ConfigError::invalid(
                        format!("access.{field}[{i}]"),
                        format!(
                            "{pattern:?} is not a user id pattern like @alice:example.org \
                             or @*:example.org"
                        ),
                    ));
                }
            }
        }
        for (i, server) in a.allowed_homeservers.iter().enumerate() {
            if !is_valid_server_pattern(server) {
                problems.push(ConfigError::invalid(
                    format!("access.allowed_homeservers[{i}]"),
                    format!("{server:?} is not a homeserver name like example.org"),
                ));
            }
        }
    }

    fn agent_problem(&self, index: usize, field: &str, message: String) -> ConfigError {
        let key = format!("agents[{index}].{field}");
        match &self.agents_source {
            AgentsSource::LegacyYaml(path) => ConfigError::InvalidIn {
                key,
                path: path.clone(),
                message,
            },
            AgentsSource::LegacyEnv => ConfigError::Invalid {
                key,
                env: if field == "token" {
                    LEGACY_AGENT_TOKEN_ENV
                } else {
                    LEGACY_AGENT_BASE_URL_ENV
                }
                .to_owned(),
                message,
            },
            AgentsSource::Configured | AgentsSource::BuiltinEcho => {
                ConfigError::invalid(key, message)
            }
        }
    }

    fn check_agents(&self, problems: &mut Vec<ConfigError>) {
        if self.agents.is_empty() {
            problems.push(ConfigError::invalid("agents", "no agent is configured"));
            return;
        }
        let mut first_default: Option<usize> = None;
        for (i, agent) in self.agents.iter().enumerate() {
            if agent.id.is_empty() {
                problems.push(self.agent_problem(i, "id", "missing".to_owned()));
            } else if !is_valid_agent_id(&agent.id) {
                problems.push(self.agent_problem(
                    i,
                    "id",
                    format!("{:?} may only contain a-z, 0-9, _ and -", agent.id),
                ));
            } else if let Some(j) = self.agents[..i].iter().position(|a| a.id == agent.id) {
                problems.push(self.agent_problem(
                    i,
                    "id",
                    format!("{:?} is already the id of agents[{j}]", agent.id),
                ));
            }
            if agent.name.trim().is_empty() {
                problems.push(self.agent_problem(i, "name", "must not be empty".to_owned()));
            }
            if agent.kind == AgentKind::Http {
                match agent.base_url.as_deref().map(str::trim) {
                    None | Some("") => problems.push(self.agent_problem(
                        i,
                        "base_url",
                        "missing: an http agent needs the URL of its API".to_owned(),
                    )),
                    Some(url) => {
                        if let Err(message) = check_http_url(url) {
                            problems.push(self.agent_problem(i, "base_url", message));
                        }
                    }
                }
            }
            if agent.timeout_secs == 0 {
                problems.push(self.agent_problem(i, "timeout_secs", "must be at least 1".into()));
            }
            if agent.max_concurrent_turns == 0 {
                problems.push(self.agent_problem(
                    i,
                    "max_concurrent_turns",
                    "must be at least 1".into(),
                ));
            }
            if agent.default {
                match first_default {
                    None => first_default = Some(i),
                    Some(j) => problems.push(self.agent_problem(
                        i,
                        "default",
                        format!("only one agent can be the default, and agents[{j}] already is"),
                    )),
                }
            }
        }
        if first_default.is_none() {
            problems.push(ConfigError::invalid(
                "agents",
                "no agent is marked as the default",
            ));
        }
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

    /// The access policy built from `[access]` and the bot's own homeserver.
    pub fn access_policy(&self) -> AccessPolicy {
        AccessPolicy::new(&self.access, &self.matrix.user_id)
    }
}

fn resolve_agent(index: usize, raw: RawAgent, problems: &mut Vec<ConfigError>) -> AgentConfig {
    let has_url = raw
        .base_url
        .as_deref()
        .is_some_and(|u| !u.trim().is_empty());
    let kind = match raw.kind {
        Some(kind) => kind,
        None if has_url => AgentKind::Http,
        None => {
            problems.push(ConfigError::invalid(
                format!("agents[{index}].kind"),
                "missing: give base_url for an http agent, or set kind = \"echo\"",
            ));
            AgentKind::Echo
        }
    };
    let name = match raw.name {
        Some(name) if !name.trim().is_empty() => name,
        _ => raw.id.clone(),
    };
    AgentConfig {
        id: raw.id,
        name,
        description: raw.description,
        kind,
        base_url: raw.base_url,
        token: raw.token.filter(|t| !t.is_empty()),
        workspace: raw.workspace,
        timeout_secs: raw.timeout_secs,
        max_concurrent_turns: raw.max_concurrent_turns,
        default: raw.default,
    }
}

/// Reads the legacy YAML registry: a list of agents, or a map with an `agents:` list.
fn read_legacy_agents(path: &Path) -> Result<Vec<AgentConfig>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let entries = match Yaml::from_str::<Vec<LegacyAgent>>(&text) {
        Ok(list) => list,
        Err(list_err) => match Yaml::from_str::<LegacyWrapped>(&text) {
            Ok(wrapped) => wrapped.agents,
            Err(_) => {
                return Err(ConfigError::File {
                    path: path.to_path_buf(),
                    message: format!("not a list of agents: {list_err}"),
                })
            }
        },
    };
    Ok(entries
        .into_iter()
        .map(|e| AgentConfig {
            name: e
                .name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| e.id.clone()),
            id: e.id,
            description: e.description.unwrap_or_default(),
            kind: AgentKind::Http,
            base_url: e.base_url,
            token: e.token.filter(|t| !t.is_empty()),
            workspace: e.workspace,
            timeout_secs: DEFAULT_AGENT_TIMEOUT_SECS,
            max_concurrent_turns: DEFAULT_MAX_CONCURRENT_TURNS,
            default: false,
        })
        .collect())
}

fn check_http_url(value: &str) -> Result<(), String> {
    match url::Url::parse(value.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(format!("{value:?} is not an http(s) URL")),
    }
}

fn is_valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

// ---------------------------------------------------------------------------------------------
// Access policy
// ---------------------------------------------------------------------------------------------

/// Splits a Matrix user id into (localpart, server name); `None` when malformed.
///
/// Strict on purpose (it gates access): `@` + localpart of printable ASCII without `:`
/// (the spec's historical grammar) + `:` + a server name of ASCII letters, digits and
/// `.-:[]` (hostname or IP literal, optional port); at most 255 bytes. Non-ASCII ids are
/// malformed, which also shuts out look-alike characters.
pub fn split_user_id(user_id: &str) -> Option<(&str, &str)> {
    if user_id.len() > MAX_USER_ID_LEN {
        return None;
    }
    let rest = user_id.strip_prefix('@')?;
    let (local, server) = rest.split_once(':')?;
    let local_ok = !local.is_empty() && local.bytes().all(|b| (0x21..=0x7e).contains(&b));
    let server_ok = !server.is_empty()
        && server
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    (local_ok && server_ok).then_some((local, server))
}

/// `*` matches any run of characters (including none); everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn is_valid_user_pattern(pattern: &str) -> bool {
    // A pattern is valid when replacing its wildcards gives a valid user id.
    split_user_id(&pattern.replace('*', "x")).is_some()
}

fn is_valid_server_pattern(pattern: &str) -> bool {
    split_user_id(&format!("@x:{}", pattern.replace('*', "x"))).is_some()
}

/// Who may use the bot, and who administers it. Pure: no I/O, table-tested.
///
/// - A malformed user id is never allowed.
/// - With both `allowed_users` and `allowed_homeservers` empty, the users of the bot's own
///   homeserver (the server name of `matrix.user_id`) are allowed.
/// - Otherwise a user is allowed when an `allowed_users` pattern matches the id or an
///   `allowed_homeservers` pattern matches its server name.
/// - Admins are always allowed.
///
/// Localparts compare exactly; server names compare ASCII-case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    allowed_users: Vec<String>,
    allowed_homeservers: Vec<String>,
    admins: Vec<String>,
    own_server: Option<String>,
}

impl AccessPolicy {
    /// Builds the policy from `[access]` and the bot's own user id.
    pub fn new(access: &AccessConfig, bot_user_id: &str) -> Self {
        AccessPolicy {
            allowed_users: access.allowed_users.clone(),
            allowed_homeservers: access.allowed_homeservers.clone(),
            admins: access.admins.clone(),
            own_server: split_user_id(bot_user_id).map(|(_, s)| s.to_ascii_lowercase()),
        }
    }

    /// Whether `user_id` may use the bot.
    pub fn allows(&self, user_id: &str) -> bool {
        let Some((_, server)) = split_user_id(user_id) else {
            return false;
        };
        if self.is_admin(user_id) {
            return true;
        }
        let server = server.to_ascii_lowercase();
        if self.allowed_users.is_empty() && self.allowed_homeservers.is_empty() {
            return self.own_server.as_deref() == Some(server.as_str());
        }
        self.allowed_users
            .iter()
            .any(|p| user_pattern_matches(p, user_id))
            || self
                .allowed_homeservers
                .iter()
                .any(|p| glob_match(&p.to_ascii_lowercase(), &server))
    }

    /// Whether `user_id` is one of the bot's administrators.
    pub fn is_admin(&self, user_id: &str) -> bool {
        split_user_id(user_id).is_some()
            && self.admins.iter().any(|p| user_pattern_matches(p, user_id))
    }
}

fn user_pattern_matches(pattern: &str, user_id: &str) -> bool {
    let (Some(pattern), Some((local, server))) =
        (pattern.strip_prefix('@'), split_user_id(user_id))
    else {
        return false;
    };
    let Some((local_pattern, server_pattern)) = pattern.split_once(':') else {
        return false;
    };
    glob_match(local_pattern, local)
        && glob_match(
            &server_pattern.to_ascii_lowercase(),
            &server.to_ascii_lowercase(),
        )
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[matrix]
homeserver_url = "https://matrix.example.org"
user_id = "@surfaces:example.org"
password = "file-password"
"#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A temp dir with `surfaces.toml` holding `toml`.
    fn dir_with(toml: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("surfaces.toml");
        std::fs::write(&path, toml).unwrap();
        (dir, path)
    }

    fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let (dir, path) = dir_with(toml);
        Config::load_in(dir.path(), Some(&path), &env(vars))
    }

    fn load_ok(toml: &str, vars: &[(&str, &str)]) -> Config {
        match load(toml, vars) {
            Ok(c) => c,
            Err(e) => panic!("expected a valid config, got: {e}"),
        }
    }

    fn load_err(toml: &str, vars: &[(&str, &str)]) -> ConfigError {
        match load(toml, vars) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults_apply_when_not_set() {
        let c = load_ok(MINIMAL, &[]);
        assert_eq!(c.matrix.device_name, DEFAULT_DEVICE_NAME);
        assert!(c.matrix.encrypt_rooms);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.ops.bind, "127.0.0.1:9797".parse().unwrap());
        assert_eq!(c.log.format, LogFormat::Pretty);
        assert_eq!(c.log.filter, DEFAULT_LOG_FILTER);
        assert_eq!(c.shutdown.grace_secs, 20);
        assert_eq!(c.supervision, SupervisionConfig::default());
        assert_eq!(c.supervision.backoff_min_ms, 100);
        assert_eq!(c.supervision.backoff_max_ms, 30_000);
        assert_eq!(c.supervision.max_restarts, 10);
        assert_eq!(c.supervision.restart_period_secs, 60);
    }

    #[test]
    fn files_max_bytes_default_file_env_and_check() {
        assert_eq!(load_ok(MINIMAL, &[]).files.max_bytes, 20 * 1024 * 1024);
        let toml = format!("{MINIMAL}[files]\nmax_bytes = 4096\n");
        assert_eq!(load_ok(&toml, &[]).files.max_bytes, 4096);
        let c = load_ok(&toml, &[("SURFACES__FILES__MAX_BYTES", "1000")]);
        assert_eq!(c.files.max_bytes, 1000);
        let e = load_err(&toml, &[("SURFACES__FILES__MAX_BYTES", "0")]);
        assert!(e.keys().contains(&"files.max_bytes"), "{e}");
    }

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
    fn env_alone_is_enough_and_numeric_secrets_stay_text() {
        let c = load_ok(
            "",
            &[
                ("SURFACES__MATRIX__HOMESERVER_URL", "http://localhost:8008"),
                ("SURFACES__MATRIX__USER_ID", "@bot:localhost"),
                ("SURFACES__MATRIX__PASSWORD", "0012345"),
                ("SURFACES__MATRIX__ACCESS_TOKEN", "[not-a-list]"),
            ],
        );
        assert_eq!(c.matrix.password.as_ref().unwrap().expose(), "0012345");
        assert_eq!(
            c.matrix.access_token.as_ref().unwrap().expose(),
            "[not-a-list]"
        );
    }

    #[test]
    fn env_lists_accept_arrays_and_comma_lists() {
        let c = load_ok(
            MINIMAL,
            &[
                (
                    "SURFACES__ACCESS__ALLOWED_USERS",
                    "@alice:example.org, @*:friends.org",
                ),
                ("SURFACES__ACCESS__ADMINS", r#"["@root:example.org"]"#),
            ],
        );
        assert_eq!(
            c.access.allowed_users,
            vec!["@alice:example.org", "@*:friends.org"]
        );
        assert_eq!(c.access.admins, vec!["@root:example.org"]);
    }

    #[test]
    fn env_can_set_the_agents_list() {
        let c = load_ok(
            MINIMAL,
            &[(
                "SURFACES__AGENTS",
                r#"[{ id = "a", name = "A", base_url = "http://127.0.0.1:1" }]"#,
            )],
        );
        assert_eq!(c.agents.len(), 1);
        assert_eq!(c.agents[0].id, "a");
        assert_eq!(c.agents[0].kind, AgentKind::Http);
        assert!(c.agents[0].default);
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

    /// Every check names the dotted key and the env var that sets it.
    #[test]
    fn check_errors_name_key_and_env_var() {
        let base = "[matrix]\nhomeserver_url = \"https://m.example.org\"\n\
                    user_id = \"@s:example.org\"\npassword = \"p\"\n";
        let cases: Vec<(String, &str, &str)> = vec![
            (
                "[matrix]\nhomeserver_url = \"ftp://x\"\nuser_id = \"@s:e.org\"\npassword = \"p\"\n"
                    .into(),
                "matrix.homeserver_url",
                "SURFACES__MATRIX__HOMESERVER_URL",
            ),
            (
                "[matrix]\nhomeserver_url = \"https://m.e.org\"\nuser_id = \"surfaces\"\npassword = \"p\"\n"
                    .into(),
                "matrix.user_id",
                "SURFACES__MATRIX__USER_ID",
            ),
            (
                "[matrix]\nhomeserver_url = \"https://m.e.org\"\nuser_id = \"@s:e.org\"\n".into(),
                "matrix.password",
                "SURFACES__MATRIX__PASSWORD",
            ),
            (
                format!("{base}device_name = \"\"\n"),
                "matrix.device_name",
                "SURFACES__MATRIX__DEVICE_NAME",
            ),
            (
                format!("data_dir = \"\"\n{base}"),
                "data_dir",
                "SURFACES__DATA_DIR",
            ),
            (
                format!("{base}[access]\nallowed_users = [\"@ok:e.org\", \"alice\"]\n"),
                "access.allowed_users[1]",
                "SURFACES__ACCESS__ALLOWED_USERS",
            ),
            (
                format!("{base}[access]\nallowed_homeservers = [\"bad host\"]\n"),
                "access.allowed_homeservers[0]",
                "SURFACES__ACCESS__ALLOWED_HOMESERVERS",
            ),
            (
                format!("{base}[access]\nadmins = [\"@:e.org\"]\n"),
                "access.admins[0]",
                "SURFACES__ACCESS__ADMINS",
            ),
            (
                format!(
                    "{base}[[agents]]\nid = \"a\"\nbase_url = \"http://a\"\n\
                     [[agents]]\nid = \"b\"\nbase_url = \"http://b\"\n\
                     [[agents]]\nid = \"c\"\nbase_url = \"mailto:c@d\"\n"
                ),
                "agents[2].base_url",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nid = \"a\"\nkind = \"http\"\n"),
                "agents[0].base_url",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nid = \"a\"\n"),
                "agents[0].kind",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nid = \"Bad Id\"\nkind = \"echo\"\n"),
                "agents[0].id",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nname = \"x\"\nkind = \"echo\"\n"),
                "agents[0].id",
                "SURFACES__AGENTS",
            ),
            (
                format!(
                    "{base}[[agents]]\nid = \"a\"\nkind = \"echo\"\n\
                     [[agents]]\nid = \"a\"\nkind = \"echo\"\n"
                ),
                "agents[1].id",
                "SURFACES__AGENTS",
            ),
            (
                format!(
                    "{base}[[agents]]\nid = \"a\"\nkind = \"echo\"\ndefault = true\n\
                     [[agents]]\nid = \"b\"\nkind = \"echo\"\ndefault = true\n"
                ),
                "agents[1].default",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nid = \"a\"\nkind = \"echo\"\nmax_concurrent_turns = 0\n"),
                "agents[0].max_concurrent_turns",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nid = \"a\"\nkind = \"echo\"\ntimeout_secs = 0\n"),
                "agents[0].timeout_secs",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[log]\nfilter = \"info,surfaces=notalevel\"\n"),
                "log.filter",
                "SURFACES__LOG__FILTER",
            ),
            (
                format!("{base}[supervision]\nbackoff_min_ms = 500\nbackoff_max_ms = 100\n"),
                "supervision.backoff_max_ms",
                "SURFACES__SUPERVISION__BACKOFF_MAX_MS",
            ),
            (
                format!("{base}[supervision]\nbackoff_min_ms = 0\n"),
                "supervision.backoff_min_ms",
                "SURFACES__SUPERVISION__BACKOFF_MIN_MS",
            ),
            (
                format!("{base}[supervision]\nrestart_period_secs = 0\n"),
                "supervision.restart_period_secs",
                "SURFACES__SUPERVISION__RESTART_PERIOD_SECS",
            ),
            (
                format!("{base}[sync]\ntimeline_limit = 0\n"),
                "sync.timeline_limit",
                "SURFACES__SYNC__TIMELINE_LIMIT",
            ),
            (
                format!("{base}[sync]\nbackfill_page_size = 5000\n"),
                "sync.backfill_page_size",
                "SURFACES__SYNC__BACKFILL_PAGE_SIZE",
            ),
            (
                format!("{base}[sync]\ncatch_up_max_messages = 0\n"),
                "sync.catch_up_max_messages",
                "SURFACES__SYNC__CATCH_UP_MAX_MESSAGES",
            ),
            (
                format!("{base}[sync]\ncatch_up_max_age_secs = 0\n"),
                "sync.catch_up_max_age_secs",
                "SURFACES__SYNC__CATCH_UP_MAX_AGE_SECS",
            ),
            (
                format!("agents_file = \"missing.yaml\"\n{base}"),
                "agents_file",
                "SURFACES__AGENTS_FILE",
            ),
            // Type errors found while extracting name the key too.
            (
                format!("{base}encrypt_rooms = \"maybe\"\n"),
                "matrix.encrypt_rooms",
                "SURFACES__MATRIX__ENCRYPT_ROOMS",
            ),
            (
                format!("{base}[ops]\nbind = \"not an address\"\n"),
                "ops.bind",
                "SURFACES__OPS__BIND",
            ),
            (
                format!("{base}[log]\nformat = \"xml\"\n"),
                "log.format",
                "SURFACES__LOG__FORMAT",
            ),
            (
                format!("{base}homeserver = \"typo\"\n"),
                "matrix.homeserver",
                "SURFACES__MATRIX__HOMESERVER",
            ),
            (
                format!("{base}[[agents]]\nid = \"a\"\nkind = \"echo\"\ntimeout_secs = \"soon\"\n"),
                "agents[0].timeout_secs",
                "SURFACES__AGENTS",
            ),
        ];
        for (toml, key, env_var) in cases {
            let err = load_err(&toml, &[]);
            let problem = err
                .problems()
                .into_iter()
                .find(|p| matches!(p, ConfigError::Invalid { key: k, .. } if k == key))
                .unwrap_or_else(|| panic!("no problem for {key} in: {err}\n---\n{toml}"));
            let text = problem.to_string();
            assert!(text.starts_with(&format!("{key}: ")), "{text}");
            assert!(text.contains(env_var), "{key}: {text}");
        }
    }

    #[test]
    fn the_documented_message_shape() {
        let err = load_err(
            "[matrix]\nhomeserver_url = \"ftp://x\"\nuser_id = \"@s:e.org\"\npassword = \"p\"\n",
            &[],
        );
        assert_eq!(
            err.to_string(),
            "matrix.homeserver_url: \"ftp://x\" is not an http(s) URL \
             (set it in the config file or SURFACES__MATRIX__HOMESERVER_URL)"
        );
    }

    #[test]
    fn all_problems_are_reported_together() {
        let err = load_err("[matrix]\nhomeserver_url = \"nope\"\n", &[]);
        let keys = err.keys();
        for key in ["matrix.homeserver_url", "matrix.user_id", "matrix.password"] {
            assert!(keys.contains(&key), "{key} missing from {err}");
        }
        assert!(matches!(err, ConfigError::Many(_)));
        let text = err.to_string();
        assert!(
            text.starts_with("3 problems in the configuration:"),
            "{text}"
        );
    }

    #[test]
    fn legacy_agent_base_url_env_makes_the_default_agent() {
        let c = load_ok(
            MINIMAL,
            &[
                ("AGENT_BASE_URL", "http://agent.internal:8080"),
                ("AGENT_TOKEN", "legacy-token"),
            ],
        );
        assert_eq!(c.agents_source, AgentsSource::LegacyEnv);
        assert_eq!(c.agents.len(), 1);
        let a = &c.agents[0];
        assert_eq!(a.id, LEGACY_AGENT_ID);
        assert_eq!(a.kind, AgentKind::Http);
        assert!(a.default);
        assert_eq!(a.base_url.as_deref(), Some("http://agent.internal:8080"));
        assert_eq!(a.token.as_ref().unwrap().expose(), "legacy-token");

        // Bad legacy URL: named with the legacy variable.
        let err = load_err(MINIMAL, &[("AGENT_BASE_URL", "agent.internal")]);
        assert!(err.to_string().contains("agents[0].base_url"), "{err}");
        assert!(err.to_string().contains("AGENT_BASE_URL"), "{err}");

        // Configured agents win over the legacy variable.
        let toml = format!("{MINIMAL}[[agents]]\nid = \"x\"\nkind = \"echo\"\n");
        let c = load_ok(&toml, &[("AGENT_BASE_URL", "http://agent.internal:8080")]);
        assert_eq!(c.agents_source, AgentsSource::Configured);
        assert_eq!(c.agents[0].id, "x");
    }

    #[test]
    fn legacy_yaml_registry_becomes_the_agents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        let yaml = r#"
- id: coder
  name: Coder
  base_url: http://coder:8000
  workspace: /agents/1
  description: Writes code
- id: 2
  name: Researcher
  url: http://researcher:8000
  workspace: /agents/2
- id: writer
  name: Writer
  baseUrl: https://writer.example.org
  some_old_field: ignored
"#;
        std::fs::write(dir.path().join(DEFAULT_AGENTS_FILE), yaml).unwrap();
        let toml = dir.path().join("s.toml");
        std::fs::write(&toml, MINIMAL).unwrap();

        // Found at the default path, relative to the base dir.
        let c = Config::load_in(dir.path(), Some(&toml), &[]).unwrap();
        assert_eq!(
            c.agents_source,
            AgentsSource::LegacyYaml(dir.path().join(DEFAULT_AGENTS_FILE))
        );
        let ids: Vec<_> = c.agents.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["coder", "2", "writer"]);
        assert_eq!(c.agents[0].description, "Writes code");
        assert_eq!(c.agents[0].workspace, Some(PathBuf::from("/agents/1")));
        assert_eq!(
            c.agents[1].base_url.as_deref(),
            Some("http://researcher:8000")
        );
        assert_eq!(
            c.agents[2].base_url.as_deref(),
            Some("https://writer.example.org")
        );
        assert!(c.agents.iter().all(|a| a.kind == AgentKind::Http));
        assert_eq!(c.default_agent().unwrap().id, "coder");
        assert_eq!(c.agents.iter().filter(|a| a.default).count(), 1);

        // The YAML wins over AGENT_BASE_URL.
        let c = Config::load_in(
            dir.path(),
            Some(&toml),
            &env(&[("AGENT_BASE_URL", "http://x:1")]),
        )
        .unwrap();
        assert!(matches!(c.agents_source, AgentsSource::LegacyYaml(_)));

        // Problems in the YAML name the file.
        std::fs::write(
            dir.path().join(DEFAULT_AGENTS_FILE),
            "agents:\n  - id: a\n    name: A\n",
        )
        .unwrap();
        let err = Config::load_in(dir.path(), Some(&toml), &[]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidIn { key, .. } if key == "agents[0].base_url"),
            "{err:?}"
        );
        assert!(err.to_string().contains("matrix-agents.yaml"), "{err}");

        // An explicit agents_file elsewhere.
        let other = dir.path().join("elsewhere.yml");
        std::fs::write(&other, "- { id: z, name: Z, url: 'http://z:1' }\n").unwrap();
        let c = Config::load_in(
            dir.path(),
            Some(&toml),
            &env(&[("SURFACES__AGENTS_FILE", other.to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(c.agents[0].id, "z");

        // Broken YAML is a file error.
        std::fs::write(&other, "- id: [unclosed\n").unwrap();
        let err = Config::load_in(
            dir.path(),
            Some(&toml),
            &env(&[("SURFACES__AGENTS_FILE", other.to_str().unwrap())]),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }), "{err:?}");
    }

    #[test]
    fn nothing_configured_means_the_echo_agent() {
        let c = load_ok(MINIMAL, &[]);
        assert_eq!(c.agents_source, AgentsSource::BuiltinEcho);
        assert_eq!(c.agents, vec![AgentConfig::builtin_echo()]);
        let echo = c.default_agent().unwrap();
        assert_eq!(
            (echo.id.as_str(), echo.name.as_str()),
            (ECHO_AGENT_ID, ECHO_AGENT_NAME)
        );
        assert_eq!(echo.kind, AgentKind::Echo);
        assert!(echo.default);
    }

    #[test]
    fn agents_resolve_kind_name_and_default() {
        let toml = format!(
            "{MINIMAL}\
             [[agents]]\nid = \"first\"\nbase_url = \"http://a:1\"\n\
             [[agents]]\nid = \"second\"\nname = \"Second\"\nkind = \"echo\"\n\
             timeout_secs = 5\nmax_concurrent_turns = 1\ntoken = \"t0k\"\n"
        );
        let c = load_ok(&toml, &[]);
        assert_eq!(c.agents[0].kind, AgentKind::Http);
        assert_eq!(c.agents[0].name, "first");
        assert!(
            c.agents[0].default,
            "the first is the default when none is marked"
        );
        assert!(!c.agents[1].default);
        assert_eq!(c.agents[1].timeout(), Duration::from_secs(5));
        assert_eq!(c.agent("second").unwrap().name, "Second");
        assert!(c.agent("third").is_none());

        let toml = toml.replace("max_concurrent_turns = 1", "default = true");
        let c = load_ok(&toml, &[]);
        assert!(!c.agents[0].default);
        assert_eq!(c.default_agent().unwrap().id, "second");
    }

    #[test]
    fn secrets_never_print() {
        let toml = format!(
            "{MINIMAL}access_token = \"tok-SECRET-1\"\n\
             [[agents]]\nid = \"a\"\nbase_url = \"http://a:1\"\ntoken = \"tok-SECRET-2\"\n"
        );
        let c = load_ok(&toml, &[]);
        let debug = format!("{c:?}");
        let pretty = format!("{c:#?}");
        for secret in ["file-password", "tok-SECRET-1", "tok-SECRET-2"] {
            assert!(!debug.contains(secret), "{debug}");
            assert!(!pretty.contains(secret));
        }
        assert!(debug.contains(REDACTED));
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn env_var_names() {
        assert_eq!(env_var_for("matrix.user_id"), "SURFACES__MATRIX__USER_ID");
        assert_eq!(env_var_for("data_dir"), "SURFACES__DATA_DIR");
        assert_eq!(env_var_for("agents[2].base_url"), "SURFACES__AGENTS");
        assert_eq!(
            env_var_for("access.allowed_users[0]"),
            "SURFACES__ACCESS__ALLOWED_USERS"
        );
        assert_eq!(
            env_key("SURFACES__MATRIX__USER_ID").as_deref(),
            Some("matrix.user_id")
        );
        assert_eq!(env_key("surfaces__data_dir").as_deref(), Some("data_dir"));
        assert_eq!(env_key("SURFACES__"), None);
        assert_eq!(env_key("SURFACES__A____B"), None);
        assert_eq!(env_key("OTHER__A"), None);
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

    fn policy(users: &[&str], servers: &[&str], admins: &[&str]) -> AccessPolicy {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        AccessPolicy::new(
            &AccessConfig {
                allowed_users: strings(users),
                allowed_homeservers: strings(servers),
                admins: strings(admins),
            },
            "@surfaces:example.org",
        )
    }

    #[test]
    fn access_default_is_own_homeserver() {
        let p = policy(&[], &[], &[]);
        let table = [
            ("@alice:example.org", true),
            ("@alice:EXAMPLE.org", true),
            ("@alice:other.org", false),
            ("@alice:sub.example.org", false),
            ("@alice:example.org.evil.com", false),
            ("alice:example.org", false),
            ("@alice", false),
            ("@:example.org", false),
            ("@alice:", false),
            ("", false),
            ("@al ice:example.org", false),
            ("@alice:example.org\n", false),
            ("@jösé:example.org", false),
            ("@alice:exämple.org", false),
        ];
        for (user, expected) in table {
            assert_eq!(p.allows(user), expected, "{user:?}");
            assert!(!p.is_admin(user), "{user:?}");
        }
        // A bot with a malformed id of its own allows nobody by default.
        let p = AccessPolicy::new(&AccessConfig::default(), "nonsense");
        assert!(!p.allows("@alice:example.org"));
    }

    #[test]
    fn access_patterns_table() {
        let p = policy(
            &[
                "@*:friends.org",
                "@bob:other.org",
                "@team-*:corp.org",
                "@*x*:ab.org",
            ],
            &["partner.net", "*.campus.edu"],
            &["@root:example.org", "@ops-*:example.org"],
        );
        let table: &[(&str, bool, bool)] = &[
            // (user, allowed, admin)
            ("@anyone:friends.org", true, false),
            ("@anyone:FRIENDS.ORG", true, false),
            ("@anyone:notfriends.org", false, false),
            ("@anyone:friends.org.evil", false, false),
            ("@bob:other.org", true, false),
            ("@Bob:other.org", false, false),
            ("@bobby:other.org", false, false),
            ("@team-a:corp.org", true, false),
            ("@team-:corp.org", true, false),
            ("@teams:corp.org", false, false),
            ("@x:ab.org", true, false),
            ("@axb:ab.org", true, false),
            ("@ab:ab.org", false, false),
            ("@carol:partner.net", true, false),
            ("@carol:partner.net:8448", false, false),
            ("@carol:a.campus.edu", true, false),
            ("@carol:campus.edu", false, false),
            // The bot's own homeserver is no longer implied once lists are set.
            ("@alice:example.org", false, false),
            // Admins are always allowed.
            ("@root:example.org", true, true),
            ("@ops-1:example.org", true, true),
            ("@ROOT:example.org", false, false),
            // Malformed and unicode ids.
            ("@:friends.org", false, false),
            ("@bob:", false, false),
            ("bob:other.org", false, false),
            ("@bоb:other.org", false, false), // Cyrillic о
            ("@ünï:friends.org", false, false),
            ("@x:frïends.org", false, false),
            ("@a b:friends.org", false, false),
        ];
        for &(user, allowed, admin) in table {
            assert_eq!(p.allows(user), allowed, "allows({user:?})");
            assert_eq!(p.is_admin(user), admin, "is_admin({user:?})");
        }
    }

    #[test]
    fn glob_matching() {
        let table = [
            ("*", "", true),
            ("*", "abc", true),
            ("a*c", "abc", true),
            ("a*c", "ac", true),
            ("a*c", "abd", false),
            ("*.org", "example.org", true),
            ("*.org", "org", false),
            ("a**b", "ab", true),
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("*a*b*", "xxaxxbxx", true),
            ("é*", "éa", true),
        ];
        for (p, t, expected) in table {
            assert_eq!(glob_match(p, t), expected, "{p:?} vs {t:?}");
        }
    }

    #[test]
    fn user_id_parsing() {
        assert_eq!(
            split_user_id("@surfaces:example.org"),
            Some(("surfaces", "example.org"))
        );
        assert_eq!(split_user_id("@a:[::1]:8448"), Some(("a", "[::1]:8448")));
        assert_eq!(split_user_id(&format!("@{}:e.org", "a".repeat(300))), None);
    }
}
