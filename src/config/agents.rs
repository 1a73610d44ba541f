//! `[[agents]]`: the AI agents the bot talks to.
//!
//! Why this file exists: the agent list is the biggest section and the only one that is
//! resolved rather than just read: `kind`, `name` and the single default are filled in
//! after deserializing ([`resolve_agent`]), and the list may come from elsewhere entirely
//! ([`AgentsSource`]: the legacy inputs in `legacy.rs`, or the built-in echo agent).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::Deserializer;
use serde::Deserialize;

use super::error::ConfigError;
use super::secret::Secret;

/// Id of the built-in echo agent used when no agent is configured.
pub const ECHO_AGENT_ID: &str = "echo";
/// Name of the built-in echo agent.
pub const ECHO_AGENT_NAME: &str = "Echo";
/// Description of the built-in echo agent.
pub const ECHO_AGENT_DESCRIPTION: &str = "Built-in test agent: repeats what you say.";
/// Default `agents[].timeout_secs`.
pub const DEFAULT_AGENT_TIMEOUT_SECS: u64 = 120;
/// Default `agents[].max_turn_secs`: half an hour.
pub const DEFAULT_MAX_TURN_SECS: u64 = 1800;
/// Default `agents[].max_concurrent_turns`.
pub const DEFAULT_MAX_CONCURRENT_TURNS: usize = 4;

/// How an agent is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    /// An agent speaking `docs/agent-api.md` over HTTP at `base_url`.
    Http,
    /// The built-in echo agent (tests, smoke checks).
    Echo,
    /// An OpenAI-compatible chat completions server at `base_url` (Surfaces keeps the
    /// conversations).
    Openai,
    /// An agent speaking A2A 1.0 (JSON-RPC), its agent card under `base_url`.
    A2a,
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AgentKind::Http => "http",
            AgentKind::Echo => "echo",
            AgentKind::Openai => "openai",
            AgentKind::A2a => "a2a",
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
    /// How long the agent may stay silent: a call's whole answer, or in a turn's stream
    /// the wait for each event (a turn that keeps streaming may run longer).
    pub timeout_secs: u64,
    /// Longest a whole turn may run, however lively its stream.
    pub max_turn_secs: u64,
    /// How many turns may run at once against this agent.
    pub max_concurrent_turns: usize,
    /// How an OpenAI-compatible agent is asked (`kind = "openai"`; defaults otherwise).
    pub openai: super::OpenAiSettings,
    /// Whether new users get this agent first (exactly one agent is the default).
    pub default: bool,
}

impl AgentConfig {
    /// [`AgentConfig::timeout_secs`] as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// [`AgentConfig::max_turn_secs`] as a duration.
    pub fn max_turn(&self) -> Duration {
        Duration::from_secs(self.max_turn_secs)
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
            max_turn_secs: DEFAULT_MAX_TURN_SECS,
            max_concurrent_turns: DEFAULT_MAX_CONCURRENT_TURNS,
            openai: super::OpenAiSettings::default(),
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

/// One `[[agents]]` entry as written (before [`resolve_agent`]).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAgent {
    #[serde(deserialize_with = "string_or_number")]
    id: String,
    name: Option<String>,
    description: String,
    kind: Option<AgentKind>,
    base_url: Option<String>,
    token: Option<Secret>,
    workspace: Option<PathBuf>,
    timeout_secs: u64,
    max_turn_secs: u64,
    max_concurrent_turns: usize,
    default: bool,
    // kind = "openai"
    api_key: Option<Secret>,
    model: Option<String>,
    system_prompt: Option<String>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    images: bool,
    history_max_messages: usize,
    history_max_tokens: u64,
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
            max_turn_secs: DEFAULT_MAX_TURN_SECS,
            max_concurrent_turns: DEFAULT_MAX_CONCURRENT_TURNS,
            default: false,
            api_key: None,
            model: None,
            system_prompt: None,
            temperature: None,
            max_tokens: None,
            images: false,
            history_max_messages: super::DEFAULT_HISTORY_MAX_MESSAGES,
            history_max_tokens: super::DEFAULT_HISTORY_MAX_TOKENS,
        }
    }
}

/// Accepts a string or an integer (legacy registries sometimes used numeric ids).
pub(super) fn string_or_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
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

/// Resolves one `[[agents]]` entry: `kind` from `base_url` when not given, `name` from `id`.
pub(super) fn resolve_agent(
    index: usize,
    raw: RawAgent,
    problems: &mut Vec<ConfigError>,
) -> AgentConfig {
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
        // An OpenAI-compatible server's API key is sent as the bearer token.
        token: raw.token.or(raw.api_key).filter(|t| !t.is_empty()),
        workspace: raw.workspace,
        timeout_secs: raw.timeout_secs,
        max_turn_secs: raw.max_turn_secs,
        max_concurrent_turns: raw.max_concurrent_turns,
        default: raw.default,
        openai: super::OpenAiSettings {
            model: raw.model.unwrap_or_default(),
            system_prompt: raw.system_prompt.filter(|p| !p.trim().is_empty()),
            temperature: raw.temperature,
            max_tokens: raw.max_tokens,
            images: raw.images,
            history_max_messages: raw.history_max_messages,
            history_max_tokens: raw.history_max_tokens,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use crate::config::test_support::{load_ok, MINIMAL};

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
}
