//! `[streaming]`: live replies, shown as the agent writes them.
//!
//! Why this file exists: an agent's turn takes seconds to minutes; posting its first words
//! at once and editing the message as more arrives makes the wait visible. But every edit is
//! an event in the room: about a thousand edits of one message stopped rooms from loading in
//! other bots' deployments, and homeservers rate-limit. So edits come on a ramped cadence
//! (frequent at first, then slower) with a hard cap per message; the section, its defaults
//! and its rules live here.

use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;

/// Default `streaming.first_post_ms`: a turn that ends within 300 ms of its first words is
/// posted whole (no edit at all); a slower one shows its first words then.
pub const DEFAULT_FIRST_POST_MS: u64 = 300;
/// Default `streaming.first_interval_ms`: the first edit comes half a second after the
/// first words.
pub const DEFAULT_FIRST_INTERVAL_MS: u64 = 500;
/// Default `streaming.max_interval_ms`: edits slow down to one every 5 s.
pub const DEFAULT_MAX_INTERVAL_MS: u64 = 5_000;
/// Default `streaming.max_edits`: at most 20 edits of one message, the final one included.
pub const DEFAULT_MAX_EDITS: u32 = 20;
/// Smallest `streaming.max_edits`: room for the final edit.
pub const MIN_MAX_EDITS: u32 = 1;

/// `[streaming]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// Whether replies are streamed (on messengers that can edit); off: the whole reply is
    /// posted when the turn ends.
    pub enabled: bool,
    /// How long the first words wait before they are posted, in ms: a reply finished by then
    /// is posted whole, with no edit (fast agents cost the room one event per reply).
    pub first_post_ms: u64,
    /// The pause before the first edit after the first words, in ms; each later pause is
    /// half as long again, up to `max_interval_ms`.
    pub first_interval_ms: u64,
    /// The longest pause between two edits, in ms.
    pub max_interval_ms: u64,
    /// The most edits of one streamed message, its final edit included.
    pub max_edits: u32,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            enabled: true,
            first_post_ms: DEFAULT_FIRST_POST_MS,
            first_interval_ms: DEFAULT_FIRST_INTERVAL_MS,
            max_interval_ms: DEFAULT_MAX_INTERVAL_MS,
            max_edits: DEFAULT_MAX_EDITS,
        }
    }
}

impl StreamingConfig {
    /// The `[streaming]` rules, for [`super::Config::check`].
    pub(super) fn check(&self, problems: &mut Vec<ConfigError>) {
        if self.first_interval_ms == 0 {
            problems.push(ConfigError::invalid(
                "streaming.first_interval_ms",
                "must be at least 1",
            ));
        }
        if self.max_interval_ms < self.first_interval_ms {
            problems.push(ConfigError::invalid(
                "streaming.max_interval_ms",
                format!(
                    "{} is smaller than streaming.first_interval_ms ({})",
                    self.max_interval_ms, self.first_interval_ms
                ),
            ));
        }
        if self.max_edits < MIN_MAX_EDITS {
            problems.push(ConfigError::invalid(
                "streaming.max_edits",
                format!("must be at least {MIN_MAX_EDITS} (the final edit)"),
            ));
        }
    }

    /// How long the first words wait before they are posted.
    pub fn first_post(&self) -> Duration {
        Duration::from_millis(self.first_post_ms)
    }

    /// The pause before the first edit.
    pub fn first_interval(&self) -> Duration {
        Duration::from_millis(self.first_interval_ms)
    }

    /// The longest pause between two edits.
    pub fn max_interval(&self) -> Duration {
        Duration::from_millis(self.max_interval_ms)
    }
}
