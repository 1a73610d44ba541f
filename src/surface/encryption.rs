//! A messenger's end-to-end encryption health, as the operator sees it.
//!
//! Why this exists: "the bot cannot read my messages" is the most common complaint about
//! bots on Matrix, and its causes (an unsigned device, no key backup, no recovery, no
//! one-time keys left) are invisible from outside. The adapter records a snapshot here
//! ([`super::SyncHealth::set_encryption`]); `/status`, `/readyz?verbose` and
//! `surfaces status` show it. Plain data: the core knows no messenger.

use serde::{Deserialize, Serialize};

/// The encryption state of the bot's device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionHealth {
    /// The bot's device is signed by its own cross-signing identity (clients that exclude
    /// insecure devices share room keys with it).
    pub cross_signed: bool,
    /// Room keys are uploaded to the server-side key backup.
    pub backup_enabled: bool,
    /// The key backup's version on the homeserver, when one exists.
    pub backup_version: Option<String>,
    /// Recovery (secret storage): `enabled`, `incomplete`, `disabled` or `unknown`.
    pub recovery: String,
    /// One-time keys the homeserver holds for the device (others need them to start an
    /// encrypted session with it); `None` when unknown.
    pub one_time_keys: Option<u64>,
}

/// The bot's keys as a person compares them out of band (a bot cannot compare emoji, so
/// it shows its keys instead: `!settings`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncryptionIdentity {
    /// The bot's identity key (Matrix: its cross-signing master key), unpadded base64;
    /// `None` without an identity.
    pub identity_key: Option<String>,
    /// The bot's device id.
    pub device_id: Option<String>,
    /// The device's signing key (Matrix: ed25519), unpadded base64.
    pub device_key: Option<String>,
}

/// A key as clients show it for comparison: groups of four characters.
pub fn fingerprint(key: &str) -> String {
    key.chars()
        .collect::<Vec<_>>()
        .chunks(FINGERPRINT_GROUP)
        .map(|group| group.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Characters per group of a shown fingerprint (as Element shows session keys).
const FINGERPRINT_GROUP: usize = 4;

impl EncryptionHealth {
    /// One line for `/readyz?verbose` and `surfaces status`.
    pub fn summary(&self) -> String {
        format!(
            "{}, key backup {}, recovery {}, {} one-time keys",
            if self.cross_signed {
                "device cross-signed"
            } else {
                "device NOT cross-signed"
            },
            match (self.backup_enabled, &self.backup_version) {
                (true, Some(v)) => format!("enabled (version {v})"),
                (true, None) => "enabled".to_owned(),
                (false, Some(v)) => format!("not enabled here (version {v} exists)"),
                (false, None) => "not enabled".to_owned(),
            },
            self.recovery,
            self.one_time_keys
                .map(|n| n.to_string())
                .unwrap_or_else(|| "?".to_owned()),
        )
    }

    /// Whether everything is set up (the check is informational: `/readyz` stays ready).
    pub fn is_healthy(&self) -> bool {
        self.cross_signed && self.backup_enabled && self.recovery == "enabled"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_in_groups_of_four() {
        for (key, shown) in [
            ("", ""),
            ("abc", "abc"),
            ("abcd", "abcd"),
            ("abcdefghij", "abcd efgh ij"),
        ] {
            assert_eq!(fingerprint(key), shown);
        }
    }

    #[test]
    fn summaries() {
        let table = [
            (
                EncryptionHealth {
                    cross_signed: true,
                    backup_enabled: true,
                    backup_version: Some("1".into()),
                    recovery: "enabled".into(),
                    one_time_keys: Some(50),
                },
                "device cross-signed, key backup enabled (version 1), recovery enabled, 50 \
                 one-time keys",
                true,
            ),
            (
                EncryptionHealth {
                    recovery: "disabled".into(),
                    ..Default::default()
                },
                "device NOT cross-signed, key backup not enabled, recovery disabled, ? \
                 one-time keys",
                false,
            ),
        ];
        for (health, text, healthy) in table {
            assert_eq!(health.summary(), text);
            assert_eq!(health.is_healthy(), healthy);
        }
    }
}
