//! [`ConfigError`]: what is wrong with the configuration, and where to fix it.
//!
//! Why this file exists: a problem is only useful to an operator when it names the dotted
//! key (`matrix.user_id`, `agents[2].base_url`) *and* the place that sets it (the config
//! file or its `SURFACES__*` variable, see [`env_var_for`], or the legacy file it came
//! from). Loading and checking collect every problem and report them together
//! ([`ConfigError::Many`]); figment's own errors are translated here into the same shape.

use std::path::PathBuf;

use super::env::{ENV_PREFIX, ENV_SEPARATOR};

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
    pub(super) fn from_problems(problems: Vec<ConfigError>) -> Result<(), ConfigError> {
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

    pub(super) fn from_figment(err: figment::Error) -> ConfigError {
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_support::load_err;

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
}
