//! The plain sections of the config file: `[matrix]`, `[access]`, `[ops]`, `[log]`,
//! `[shutdown]`, `[commands]`, `[reconcile]`, `[files]`, `[sync]`, `[supervision]`,
//! `[limits]`.
//!
//! Why this file exists: each of these sections is a struct deserialized as written, with
//! its defaults (the `DEFAULT_*` constants) and nothing resolved afterwards; they are read
//! here and validated in `check.rs`. The agent list, which is resolved, lives in
//! `agents.rs`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::de::Deserializer;
use serde::Deserialize;

use super::secret::Secret;
use crate::access::split_user_id;

/// Default `matrix.device_name`.
pub const DEFAULT_DEVICE_NAME: &str = "surfaces";
/// Default `matrix.encrypt_rooms`.
pub const DEFAULT_ENCRYPT_ROOMS: bool = true;
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
/// Default `supervision.room_idle_secs`: a chat's actor is passivated after five idle
/// minutes (a conversation's pauses rarely last longer; activating again costs well under
/// a millisecond).
pub const DEFAULT_ROOM_IDLE_SECS: u64 = 300;
/// Default `files.max_bytes`: 20 MiB.
pub const DEFAULT_FILES_MAX_BYTES: u64 = 20 * 1024 * 1024;

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
    /// The recovery key of the bot's secret storage, to restore its identity and room keys
    /// on a fresh data directory; unset: `<data_dir>/recovery-key` when it exists.
    pub recovery_key: Option<Secret>,
    /// Which devices the bot shares its room keys with.
    pub key_sharing: KeySharing,
    /// How long a message the bot cannot decrypt waits for its key before the person is
    /// told (once per person and room); it is still answered if the key comes later.
    pub undecryptable_grace_secs: u64,
}

/// `matrix.key_sharing`: which of a person's devices receive the bot's room keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySharing {
    /// Only devices cross-signed by their owner (MSC4153; Element's "exclude insecure
    /// devices"): a person's unsigned or rogue device gets no keys.
    #[default]
    IdentityBased,
    /// Every device that is not blacklisted (the legacy behaviour).
    AllDevices,
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
            recovery_key: None,
            key_sharing: KeySharing::default(),
            undecryptable_grace_secs: DEFAULT_UNDECRYPTABLE_GRACE_SECS,
        }
    }
}

/// Default of `matrix.undecryptable_grace_secs`: keys usually arrive within seconds.
pub const DEFAULT_UNDECRYPTABLE_GRACE_SECS: u64 = 60;

impl MatrixConfig {
    /// `matrix.undecryptable_grace_secs` as a duration.
    pub fn undecryptable_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.undecryptable_grace_secs)
    }

    /// The server name of the bot's user id (`example.org` for `@surfaces:example.org`).
    pub fn server_name(&self) -> Option<&str> {
        split_user_id(&self.user_id).map(|(_, server)| server)
    }
}

/// `[access]`: who may talk to the bot. See [`AccessPolicy`](crate::access::AccessPolicy).
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

/// Shortest `ops.token` accepted (a guessable token is no protection).
pub const MIN_OPS_TOKEN_CHARS: usize = 16;

/// `[ops]`: the operations endpoint (health, metrics).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// Address the ops HTTP endpoint listens on.
    pub bind: SocketAddr,
    /// Bearer token of the fault-injection endpoint (builds with the `fault-injection`
    /// feature only); the endpoint refuses every request while it is unset.
    pub fault_token: Option<Secret>,
    /// Bearer token required by `/status` (and `.json`, `.html`) and `/metrics`; unset, they
    /// are open (`/livez` and `/readyz` are always open, for probes).
    pub token: Option<Secret>,
    /// Further `Host` names the endpoint answers to, beyond loopback (`localhost`,
    /// `127.0.0.1`, `::1`) and the address of `bind` (against DNS rebinding).
    #[serde(deserialize_with = "string_or_list")]
    pub allowed_hosts: Vec<String>,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            bind: DEFAULT_OPS_BIND,
            fault_token: None,
            token: None,
            allowed_hosts: Vec::new(),
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
    /// A chat's actor idle this long (no turn running, nothing waiting) is passivated: the
    /// chat is then only its record, and its next message activates it again. `0`: never.
    pub room_idle_secs: u64,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            backoff_min_ms: DEFAULT_BACKOFF_MIN_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            max_restarts: DEFAULT_MAX_RESTARTS,
            restart_period_secs: DEFAULT_RESTART_PERIOD_SECS,
            room_idle_secs: DEFAULT_ROOM_IDLE_SECS,
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

    /// [`SupervisionConfig::room_idle_secs`] as a duration (`None`: never passivate).
    pub fn room_idle(&self) -> Option<Duration> {
        (self.room_idle_secs > 0).then(|| Duration::from_secs(self.room_idle_secs))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::PathBuf;

    use crate::config::test_support::{load_err, load_ok, MINIMAL};
    use crate::config::DEFAULT_DATA_DIR;

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
        assert_eq!(c.supervision.room_idle(), Some(Duration::from_secs(300)));
        let never = load_ok(
            &format!("{MINIMAL}[supervision]\nroom_idle_secs = 0\n"),
            &[],
        );
        assert_eq!(never.supervision.room_idle(), None);
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
}
