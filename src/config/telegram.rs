//! `[telegram]`: the Telegram bot, when Surfaces serves Telegram too (or only).
//!
//! Why this file exists: a Telegram bot is reachable by anyone who finds its username, so
//! who may use it must be said explicitly (numeric user ids; a username can be given up and
//! taken by someone else, so it never grants access); the token is a secret; the Bot API's
//! address can point at a self-hosted Bot API server or a test emulator. The section, its
//! defaults and its rules live here.

use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;
use super::Secret;

/// Default `telegram.api_url`.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";
/// Default `telegram.poll_timeout_secs`: how long one `getUpdates` long poll waits.
pub const DEFAULT_POLL_TIMEOUT_SECS: u64 = 25;
/// The longest long poll the Bot API honours (it answers sooner on its own).
pub const MAX_POLL_TIMEOUT_SECS: u64 = 50;
/// The access pattern that allows every Telegram user.
pub const EVERYONE: &str = "*";

/// `telegram.topics`: how a person's conversations map onto their private chat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicsSetting {
    /// Topics when the bot has them (BotFather's threaded mode: `getMe` says
    /// `has_topics_enabled`), else one conversation per private chat.
    #[default]
    Auto,
    /// One conversation per private chat, always.
    Off,
}

/// `[telegram]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramConfig {
    /// The bot's token from BotFather (`SURFACES__TELEGRAM__TOKEN`).
    pub token: Option<Secret>,
    /// The Bot API's address (a self-hosted Bot API server, or a test emulator).
    pub api_url: String,
    /// Telegram user ids allowed to use the bot, or `"*"` for everyone. Empty: nobody.
    pub allowed_users: Vec<String>,
    /// Telegram user ids of the bot's administrators (always allowed).
    pub admins: Vec<String>,
    /// How long one long poll waits for updates, in seconds.
    pub poll_timeout_secs: u64,
    /// Topics (one conversation each) or one conversation per private chat.
    pub topics: TopicsSetting,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            token: None,
            api_url: DEFAULT_API_URL.to_owned(),
            allowed_users: Vec::new(),
            admins: Vec::new(),
            poll_timeout_secs: DEFAULT_POLL_TIMEOUT_SECS,
            topics: TopicsSetting::default(),
        }
    }
}

/// Whether `id` is a Telegram user id as the config takes it (digits, no sign).
pub fn is_user_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 20
        && id.bytes().all(|b| b.is_ascii_digit())
        && !id.starts_with('0')
}

impl TelegramConfig {
    /// How long one long poll waits.
    pub fn poll_timeout(&self) -> Duration {
        Duration::from_secs(self.poll_timeout_secs)
    }

    /// The configured problems of the section.
    pub fn check(&self, problems: &mut Vec<ConfigError>) {
        if self
            .token
            .as_ref()
            .is_none_or(|t| t.expose().trim().is_empty())
        {
            problems.push(ConfigError::invalid(
                "telegram.token",
                "missing: the bot's token from BotFather (SURFACES__TELEGRAM__TOKEN)",
            ));
        }
        match url::Url::parse(&self.api_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => problems.push(ConfigError::invalid(
                "telegram.api_url",
                format!("{:?} is not an http(s) URL", self.api_url),
            )),
        }
        if self.allowed_users.is_empty() {
            problems.push(ConfigError::invalid(
                "telegram.allowed_users",
                "empty: nobody could use the bot; list Telegram user ids (numbers), \
                 or \"*\" for everyone",
            ));
        }
        for (key, list) in [
            ("telegram.allowed_users", &self.allowed_users),
            ("telegram.admins", &self.admins),
        ] {
            for entry in list {
                let wildcard = key == "telegram.allowed_users" && entry == EVERYONE;
                if !wildcard && !is_user_id(entry) {
                    problems.push(ConfigError::invalid(
                        key,
                        format!(
                            "{entry:?} is not a Telegram user id (a number; usernames can change \
                             hands, so they never grant access — the bot logs the id of anyone \
                             it refuses)"
                        ),
                    ));
                }
            }
        }
        if self.poll_timeout_secs == 0 || self.poll_timeout_secs > MAX_POLL_TIMEOUT_SECS {
            problems.push(ConfigError::invalid(
                "telegram.poll_timeout_secs",
                format!("must be between 1 and {MAX_POLL_TIMEOUT_SECS}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(config: &TelegramConfig) -> Vec<String> {
        let mut found = Vec::new();
        config.check(&mut found);
        found.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn telegram_section_rules() {
        let good = TelegramConfig {
            token: Some(Secret::new("123:abc")),
            allowed_users: vec!["42".to_owned()],
            ..TelegramConfig::default()
        };
        assert!(problems(&good).is_empty(), "{:?}", problems(&good));
        let table: Vec<(TelegramConfig, &str)> = vec![
            (
                TelegramConfig {
                    token: None,
                    ..good.clone()
                },
                "telegram.token",
            ),
            (
                TelegramConfig {
                    api_url: "ftp://x".into(),
                    ..good.clone()
                },
                "telegram.api_url",
            ),
            (
                TelegramConfig {
                    allowed_users: vec![],
                    ..good.clone()
                },
                "telegram.allowed_users",
            ),
            (
                TelegramConfig {
                    allowed_users: vec!["@ann".into()],
                    ..good.clone()
                },
                "telegram.allowed_users",
            ),
            (
                TelegramConfig {
                    admins: vec!["*".into()],
                    ..good.clone()
                },
                "telegram.admins",
            ),
            (
                TelegramConfig {
                    admins: vec!["007".into()],
                    ..good.clone()
                },
                "telegram.admins",
            ),
            (
                TelegramConfig {
                    poll_timeout_secs: 0,
                    ..good.clone()
                },
                "telegram.poll_timeout_secs",
            ),
            (
                TelegramConfig {
                    poll_timeout_secs: 51,
                    ..good.clone()
                },
                "telegram.poll_timeout_secs",
            ),
        ];
        for (config, key) in table {
            let found = problems(&config);
            assert!(
                found.len() == 1 && found[0].contains(key),
                "{key}: {found:?}"
            );
        }
        let everyone = TelegramConfig {
            allowed_users: vec!["*".into()],
            ..good
        };
        assert!(problems(&everyone).is_empty());
    }
}
