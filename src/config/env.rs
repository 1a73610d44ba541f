//! The `SURFACES__*` environment variables as a figment provider.
//!
//! Why this file exists: in containers the environment is the usual way to configure, and
//! every key of the config file can be set as `SURFACES__SECTION__KEY`. figment's own `Env`
//! provider reads the process environment and guesses types; this one reads a given list
//! (so tests never touch the process environment, which is read in
//! [`Config::load`](super::Config::load) only) and keeps secrets verbatim.

use std::collections::BTreeMap;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "SURFACES__";
/// Separator between the sections of an environment variable name.
pub const ENV_SEPARATOR: &str = "__";

/// Figment provider over an explicit list of environment variables: `SURFACES__A__B=v`
/// sets `a.b`. Like `figment::providers::Env::prefixed("SURFACES__").split("__")`, but over
/// a given list (tests inject theirs) and keeping scalar values as text, so `12345` stays a
/// string for a password; numbers and booleans are read with `extract_lossy`. A value that
/// parses as an array or a table (`["a", "b"]`, `{ id = "x" }`) is used as one.
pub(super) struct EnvProvider {
    vars: Vec<(String, String)>,
}

impl EnvProvider {
    pub(super) fn new(vars: &[(String, String)]) -> Self {
        EnvProvider {
            vars: vars.to_vec(),
        }
    }
}

/// Keys whose environment values are always taken verbatim (a password may look like a list).
const SECRET_KEYS: &[&str] = &[
    "password",
    "access_token",
    "token",
    "fault_token",
    "recovery_key",
    "secret_token",
];

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
pub(super) fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

pub(super) fn env_lookup<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_support::{load_ok, MINIMAL};
    use crate::config::{env_var_for, AgentKind};

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
}
