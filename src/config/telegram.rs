//! `[telegram]`: the Telegram bot, when Surfaces serves Telegram too (or only).
//!
//! Why this file exists: a Telegram bot is reachable by anyone who finds its username, so
//! who may use it must be said explicitly (numeric user ids; a username can be given up and
//! taken by someone else, so it never grants access); the token is a secret; the Bot API's
//! address can point at a self-hosted Bot API server or a test emulator. The section, its
//! defaults and its rules live here. Updates arrive by long polling unless the operator
//! configures `[telegram.webhook]` (a table: its keys belong together, and without it the
//! bot polls as before).

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
/// Default `telegram.webhook.bind`: loopback, behind the operator's HTTPS reverse proxy.
pub const DEFAULT_WEBHOOK_BIND: &str = "127.0.0.1:8090";
/// The longest `telegram.webhook.secret_token` the Bot API takes.
pub const MAX_SECRET_TOKEN_LEN: usize = 256;
/// The most simultaneous webhook connections the Bot API opens (`max_connections`).
pub const MAX_WEBHOOK_CONNECTIONS: u32 = 100;

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
    /// Receive updates on a webhook instead of long polling.
    pub webhook: Option<WebhookConfig>,
}

/// `[telegram.webhook]`: Telegram calls the bot over HTTPS instead of being polled.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// The public URL Telegram POSTs updates to (`https://`; a reverse proxy forwards it to
    /// `bind`, same path).
    pub url: String,
    /// Where the receiver listens.
    pub bind: String,
    /// What Telegram sends in `X-Telegram-Bot-Api-Secret-Token`
    /// (`SURFACES__TELEGRAM__WEBHOOK__SECRET_TOKEN`).
    pub secret_token: Option<Secret>,
    /// The most connections Telegram opens at once (1..=100; Telegram's default 40 if unset).
    pub max_connections: Option<u32>,
    /// Allows an `http://` URL: for tests against an emulator only (Telegram requires https).
    pub allow_insecure_url: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            bind: DEFAULT_WEBHOOK_BIND.to_owned(),
            secret_token: None,
            max_connections: None,
            allow_insecure_url: false,
        }
    }
}

/// Whether `token` is a secret token as the Bot API takes it: 1 to 256 of `A-Z a-z 0-9 _ -`.
pub fn is_secret_token(token: &str) -> bool {
    (1..=MAX_SECRET_TOKEN_LEN).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl WebhookConfig {
    /// The listen address (checked by [`WebhookConfig::check`]).
    pub fn bind_addr(&self) -> Option<std::net::SocketAddr> {
        self.bind.parse().ok()
    }

    /// The path of `url`, the one route the receiver answers.
    pub fn path(&self) -> String {
        url::Url::parse(&self.url)
            .map(|u| u.path().to_owned())
            .unwrap_or_else(|_| "/".to_owned())
    }

    /// The configured problems of the table; `token` is the bot's (never part of the URL).
    fn check(&self, token: Option<&Secret>, problems: &mut Vec<ConfigError>) {
        match url::Url::parse(&self.url) {
            Err(_) if self.url.trim().is_empty() => problems.push(ConfigError::invalid(
                "telegram.webhook.url",
                "missing: the public https:// URL Telegram sends updates to",
            )),
            Err(error) => problems.push(ConfigError::invalid(
                "telegram.webhook.url",
                format!("{:?} is not a URL: {error}", self.url),
            )),
            Ok(url) if url.scheme() == "https" => {}
            Ok(url) if url.scheme() == "http" && self.allow_insecure_url => {}
            Ok(_) => problems.push(ConfigError::invalid(
                "telegram.webhook.url",
                format!(
                    "{:?} is not an https:// URL (Telegram calls webhooks over HTTPS only;                      telegram.webhook.allow_insecure_url is for test emulators)",
                    self.url
                ),
            )),
        }
        if token.is_some_and(|t| !t.is_empty() && self.url.contains(t.expose())) {
            problems.push(ConfigError::invalid(
                "telegram.webhook.url",
                "contains the bot's token: the URL is not secret (telegram.webhook.secret_token \
                 authenticates Telegram's calls)",
            ));
        }
        if self.bind_addr().is_none() {
            problems.push(ConfigError::invalid(
                "telegram.webhook.bind",
                format!(
                    "{:?} is not a listen address like 127.0.0.1:8090",
                    self.bind
                ),
            ));
        }
        match &self.secret_token {
            None => problems.push(ConfigError::invalid(
                "telegram.webhook.secret_token",
                "missing: 1 to 256 of A-Z a-z 0-9 _ - that Telegram sends with every update \
                 (SURFACES__TELEGRAM__WEBHOOK__SECRET_TOKEN)",
            )),
            Some(secret) if !is_secret_token(secret.expose()) => {
                problems.push(ConfigError::invalid(
                    "telegram.webhook.secret_token",
                    "must be 1 to 256 of A-Z a-z 0-9 _ - (the Bot API's rule)",
                ));
            }
            Some(_) => {}
        }
        if self
            .max_connections
            .is_some_and(|n| n == 0 || n > MAX_WEBHOOK_CONNECTIONS)
        {
            problems.push(ConfigError::invalid(
                "telegram.webhook.max_connections",
                format!("must be between 1 and {MAX_WEBHOOK_CONNECTIONS}"),
            ));
        }
    }
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
            webhook: None,
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
        if let Some(webhook) = &self.webhook {
            webhook.check(self.token.as_ref(), problems);
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

    #[test]
    fn webhook_table_rules() {
        let hook = WebhookConfig {
            url: "https://bot.example.org/telegram".into(),
            secret_token: Some(Secret::new("s3cret_-X")),
            ..WebhookConfig::default()
        };
        let with = |webhook: WebhookConfig| TelegramConfig {
            token: Some(Secret::new("123:abc")),
            allowed_users: vec!["42".to_owned()],
            webhook: Some(webhook),
            ..TelegramConfig::default()
        };
        assert!(problems(&with(hook.clone())).is_empty());
        assert_eq!(hook.path(), "/telegram");
        let insecure_test = WebhookConfig {
            url: "http://127.0.0.1:9/hook".into(),
            allow_insecure_url: true,
            max_connections: Some(100),
            ..hook.clone()
        };
        assert!(problems(&with(insecure_test)).is_empty());
        let table: Vec<(WebhookConfig, &str)> = vec![
            (
                WebhookConfig {
                    url: String::new(),
                    ..hook.clone()
                },
                "telegram.webhook.url",
            ),
            (
                WebhookConfig {
                    url: "http://bot.example.org/telegram".into(),
                    ..hook.clone()
                },
                "telegram.webhook.url",
            ),
            (
                WebhookConfig {
                    url: "not a url".into(),
                    ..hook.clone()
                },
                "telegram.webhook.url",
            ),
            (
                WebhookConfig {
                    url: "https://bot.example.org/123:abc".into(),
                    ..hook.clone()
                },
                "telegram.webhook.url",
            ),
            (
                WebhookConfig {
                    bind: "localhost".into(),
                    ..hook.clone()
                },
                "telegram.webhook.bind",
            ),
            (
                WebhookConfig {
                    secret_token: None,
                    ..hook.clone()
                },
                "telegram.webhook.secret_token",
            ),
            (
                WebhookConfig {
                    secret_token: Some(Secret::new("with space")),
                    ..hook.clone()
                },
                "telegram.webhook.secret_token",
            ),
            (
                WebhookConfig {
                    secret_token: Some(Secret::new("a".repeat(MAX_SECRET_TOKEN_LEN + 1))),
                    ..hook.clone()
                },
                "telegram.webhook.secret_token",
            ),
            (
                WebhookConfig {
                    max_connections: Some(0),
                    ..hook.clone()
                },
                "telegram.webhook.max_connections",
            ),
            (
                WebhookConfig {
                    max_connections: Some(101),
                    ..hook.clone()
                },
                "telegram.webhook.max_connections",
            ),
        ];
        for (webhook, key) in table {
            let found = problems(&with(webhook));
            assert!(
                found.len() == 1 && found[0].contains(key),
                "{key}: {found:?}"
            );
        }
    }

    #[test]
    fn secret_tokens_as_the_bot_api_takes_them() {
        for (token, ok) in [
            ("a", true),
            ("A-z_09", true),
            (&*"x".repeat(MAX_SECRET_TOKEN_LEN), true),
            ("", false),
            (&*"x".repeat(MAX_SECRET_TOKEN_LEN + 1), false),
            ("a b", false),
            ("a.b", false),
            ("ä", false),
        ] {
            assert_eq!(is_secret_token(token), ok, "{token:?}");
        }
    }
}
