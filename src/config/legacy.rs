//! The inputs of the previous version, still honoured when no `[[agents]]` are configured.
//!
//! Why this file exists: deployments of the previous version configured their agents in a
//! YAML registry ([`DEFAULT_AGENTS_FILE`], or `agents_file`) or, for a single agent, with
//! `AGENT_BASE_URL` / `AGENT_TOKEN`. Both keep working unchanged; the formats they accept
//! (aliases, numeric ids, a bare list or an `agents:` map) are kept apart from the current
//! configuration here. Problems found in the registry name the file, not a config key.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Yaml};
use serde::Deserialize;

use super::agents::{
    string_or_number, AgentConfig, AgentKind, DEFAULT_AGENT_TIMEOUT_SECS,
    DEFAULT_MAX_CONCURRENT_TURNS, DEFAULT_MAX_TURN_SECS,
};
use super::env::env_lookup;
use super::error::ConfigError;
use super::secret::Secret;

/// The legacy YAML agent registry read when `agents_file` is not set (only if it exists).
pub const DEFAULT_AGENTS_FILE: &str = "config/matrix-agents.yaml";
/// Legacy: the base URL of the single agent of the previous version.
pub const LEGACY_AGENT_BASE_URL_ENV: &str = "AGENT_BASE_URL";
/// Legacy: the bearer token of the single agent of the previous version.
pub const LEGACY_AGENT_TOKEN_ENV: &str = "AGENT_TOKEN";
/// Id of the agent made from [`LEGACY_AGENT_BASE_URL_ENV`].
pub const LEGACY_AGENT_ID: &str = "default";
/// Name of the agent made from [`LEGACY_AGENT_BASE_URL_ENV`].
pub const LEGACY_AGENT_NAME: &str = "Agent";

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

/// The legacy YAML registry to read, if any: `agents_file` resolved against `base_dir` (a
/// problem when it is not a file), else [`DEFAULT_AGENTS_FILE`] when it exists.
pub(super) fn agents_file(
    configured: Option<PathBuf>,
    base_dir: &Path,
    problems: &mut Vec<ConfigError>,
) -> Option<PathBuf> {
    match configured {
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
    }
}

/// Reads the legacy YAML registry: a list of agents, or a map with an `agents:` list.
pub(super) fn read_legacy_agents(path: &Path) -> Result<Vec<AgentConfig>, ConfigError> {
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
            max_turn_secs: DEFAULT_MAX_TURN_SECS,
            openai: crate::config::OpenAiSettings::default(),
            max_concurrent_turns: DEFAULT_MAX_CONCURRENT_TURNS,
            default: false,
        })
        .collect())
}

/// The single agent of the previous version, made from [`LEGACY_AGENT_BASE_URL_ENV`] (and
/// [`LEGACY_AGENT_TOKEN_ENV`]) in `env`; `None` when the variable is unset or empty.
pub(super) fn agent_from_env(env: &[(String, String)]) -> Option<AgentConfig> {
    let url = env_lookup(env, LEGACY_AGENT_BASE_URL_ENV)?;
    Some(AgentConfig {
        id: LEGACY_AGENT_ID.to_owned(),
        name: LEGACY_AGENT_NAME.to_owned(),
        description: String::new(),
        kind: AgentKind::Http,
        base_url: Some(url.to_owned()),
        token: env_lookup(env, LEGACY_AGENT_TOKEN_ENV).map(Secret::new),
        workspace: None,
        timeout_secs: DEFAULT_AGENT_TIMEOUT_SECS,
        max_turn_secs: DEFAULT_MAX_TURN_SECS,
        openai: crate::config::OpenAiSettings::default(),
        max_concurrent_turns: DEFAULT_MAX_CONCURRENT_TURNS,
        default: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_support::{env, load_err, load_ok, MINIMAL};
    use crate::config::{AgentsSource, Config};

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
}
