//! `[replies]`: how big an agent's reply may grow and how a long one is delivered.
//!
//! Why this file exists: homeservers refuse events over 64 KiB (an encrypted room inflates the
//! body, the rendered HTML doubles it), so a long reply must be cut into messages or sent as a
//! file, and what a turn may accumulate at all must be bounded (an agent is not trusted to
//! stop). The section, its defaults and its rules live here, apart from the shared sections.

use serde::Deserialize;

use super::error::ConfigError;

/// Default `replies.max_turn_bytes`: 1 MiB.
pub const DEFAULT_MAX_TURN_BYTES: usize = crate::agent::accumulator::DEFAULT_MAX_TURN_BYTES;
/// Default `replies.max_message_bytes`: 16 KiB of text, so that the text and its HTML,
/// encrypted, stay well under Matrix's 64 KiB per event.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Default `replies.max_inline_bytes`: 64 KiB (four messages at the default size).
pub const DEFAULT_MAX_INLINE_BYTES: usize = 64 * 1024;
/// Smallest `replies.max_message_bytes` (room for a code fence and some text).
pub const MIN_MESSAGE_BYTES: usize = crate::runtime::room::split::MIN_PART_BYTES;

/// `[replies]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepliesConfig {
    /// Most text one turn may accumulate, in bytes; past it the turn is cut (with a note) and
    /// the agent call ends.
    pub max_turn_bytes: usize,
    /// Largest message a reply is sent in, in bytes of text; longer replies are split at
    /// paragraph and code-block boundaries.
    pub max_message_bytes: usize,
    /// Largest reply sent as messages, in bytes; longer ones are attached as `reply.md`.
    pub max_inline_bytes: usize,
}

impl Default for RepliesConfig {
    fn default() -> Self {
        RepliesConfig {
            max_turn_bytes: DEFAULT_MAX_TURN_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_inline_bytes: DEFAULT_MAX_INLINE_BYTES,
        }
    }
}

impl RepliesConfig {
    /// The `[replies]` rules, for [`super::Config::check`].
    pub(super) fn check(&self, problems: &mut Vec<ConfigError>) {
        if self.max_turn_bytes == 0 {
            problems.push(ConfigError::invalid(
                "replies.max_turn_bytes",
                "must be at least 1",
            ));
        }
        if self.max_message_bytes < MIN_MESSAGE_BYTES {
            problems.push(ConfigError::invalid(
                "replies.max_message_bytes",
                format!("must be at least {MIN_MESSAGE_BYTES}"),
            ));
        }
        if self.max_inline_bytes < self.max_message_bytes {
            problems.push(ConfigError::invalid(
                "replies.max_inline_bytes",
                format!(
                    "{} is smaller than replies.max_message_bytes ({})",
                    self.max_inline_bytes, self.max_message_bytes
                ),
            ));
        }
    }

    /// The delivery limits of a reply.
    pub fn limits(&self) -> crate::runtime::room::split::ReplyLimits {
        crate::runtime::room::split::ReplyLimits {
            max_message_bytes: self.max_message_bytes,
            max_inline_bytes: self.max_inline_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{load_err, load_ok, MINIMAL};

    #[test]
    fn replies_defaults_file_env_and_check() {
        let c = load_ok(MINIMAL, &[]);
        assert_eq!(c.replies, super::RepliesConfig::default());
        let toml = format!(
            "{MINIMAL}[replies]\nmax_turn_bytes = 5000\nmax_message_bytes = 1000\nmax_inline_bytes = 3000\n"
        );
        let c = load_ok(&toml, &[("SURFACES__REPLIES__MAX_INLINE_BYTES", "4000")]);
        assert_eq!(
            (
                c.replies.max_turn_bytes,
                c.replies.max_message_bytes,
                c.replies.max_inline_bytes
            ),
            (5000, 1000, 4000)
        );
        let cases = [
            (
                "SURFACES__REPLIES__MAX_TURN_BYTES",
                "0",
                "replies.max_turn_bytes",
            ),
            (
                "SURFACES__REPLIES__MAX_MESSAGE_BYTES",
                "10",
                "replies.max_message_bytes",
            ),
            (
                "SURFACES__REPLIES__MAX_INLINE_BYTES",
                "999",
                "replies.max_inline_bytes",
            ),
        ];
        for (var, value, key) in cases {
            let e = load_err(&toml, &[(var, value)]);
            assert!(e.keys().contains(&key), "{var}={value}: {e}");
        }
    }
}
