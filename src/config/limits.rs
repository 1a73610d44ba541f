//! `[limits]`: what one person may ask of the bot, so that one person's flood never slows
//! everyone else down. Every limit here has a default a public deployment can live with;
//! `0` turns a limit off where that is documented.

use serde::Deserialize;

use super::ConfigError;

/// Default `limits.messages_burst`: messages (and commands) one person may send at once.
pub const DEFAULT_MESSAGES_BURST: u32 = 20;
/// Default `limits.messages_per_minute`: the rate their allowance refills at.
pub const DEFAULT_MESSAGES_PER_MINUTE: u32 = 30;
/// Default `limits.max_chats_per_person`: chats one person may have at once (not archived).
pub const DEFAULT_MAX_CHATS_PER_PERSON: u32 = 50;
/// Default `limits.max_concurrent_cancels`: `!cancel` calls to agents in flight at once.
pub const DEFAULT_MAX_CONCURRENT_CANCELS: u32 = 8;
/// Default `limits.inbox_retention_hours`: a week.
pub const DEFAULT_INBOX_RETENTION_HOURS: u64 = 7 * 24;
/// Default `limits.room_queue_max`: messages waiting in one chat's queue. As many as one
/// catch-up may deliver to a room at once (`sync.catch_up_max_messages`), so a person's
/// burst from several devices or the messages of a down time are never refused; a flood
/// beyond that is.
pub const DEFAULT_ROOM_QUEUE_MAX: usize = 1000;

/// `[limits]`: per-person limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Messages, files and commands one person may send in a burst (the token bucket's size).
    pub messages_burst: u32,
    /// How many of them per minute refill the allowance; `0` turns the rate limit off.
    pub messages_per_minute: u32,
    /// Chats one person may have (`!new` is refused past it); `0`: no cap.
    pub max_chats_per_person: u32,
    /// `!cancel` requests to agents in flight at once, for everyone together.
    pub max_concurrent_cancels: u32,
    /// Files in the agents' `inbox/` older than this are deleted; `0`: kept forever.
    pub inbox_retention_hours: u64,
    /// Messages (text and files) waiting in one chat's queue behind the turn that runs;
    /// past it a message is not taken (marked done, the chat told once per burst).
    pub room_queue_max: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            messages_burst: DEFAULT_MESSAGES_BURST,
            messages_per_minute: DEFAULT_MESSAGES_PER_MINUTE,
            max_chats_per_person: DEFAULT_MAX_CHATS_PER_PERSON,
            max_concurrent_cancels: DEFAULT_MAX_CONCURRENT_CANCELS,
            inbox_retention_hours: DEFAULT_INBOX_RETENTION_HOURS,
            room_queue_max: DEFAULT_ROOM_QUEUE_MAX,
        }
    }
}

impl LimitsConfig {
    /// Adds what is wrong with these values to `problems`.
    pub(super) fn check(&self, problems: &mut Vec<ConfigError>) {
        if self.messages_per_minute > 0 && self.messages_burst == 0 {
            problems.push(ConfigError::invalid(
                "limits.messages_burst",
                "must be at least 1 while limits.messages_per_minute is set (0 turns the limit off)",
            ));
        }
        if self.room_queue_max == 0 {
            problems.push(ConfigError::invalid(
                "limits.room_queue_max",
                "must be at least 1",
            ));
        }
        if self.max_concurrent_cancels == 0 {
            problems.push(ConfigError::invalid(
                "limits.max_concurrent_cancels",
                "must be at least 1",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_each_bad_value_names_its_key() {
        let cases: &[(LimitsConfig, Option<&str>)] = &[
            (LimitsConfig::default(), None),
            (
                LimitsConfig {
                    messages_burst: 0,
                    ..LimitsConfig::default()
                },
                Some("limits.messages_burst"),
            ),
            (
                LimitsConfig {
                    messages_burst: 0,
                    messages_per_minute: 0,
                    ..LimitsConfig::default()
                },
                None,
            ),
            (
                LimitsConfig {
                    max_concurrent_cancels: 0,
                    ..LimitsConfig::default()
                },
                Some("limits.max_concurrent_cancels"),
            ),
        ];
        for (config, key) in cases {
            let mut problems = Vec::new();
            config.check(&mut problems);
            let keys: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            match key {
                None => assert!(problems.is_empty(), "{config:?}: {keys:?}"),
                Some(key) => assert!(
                    keys.iter().any(|k| k.contains(key)),
                    "{config:?}: {keys:?} should name {key}"
                ),
            }
        }
    }
}
