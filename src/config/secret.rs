//! [`Secret`]: passwords and tokens read from the configuration.
//!
//! Why this file exists: a secret must never reach a log line, a panic message or a
//! `{config:?}` dump, so secrets get their own type whose `Debug` and `Display` print
//! `[redacted]`, and whose deserializer keeps numbers as their text (a numeric password set
//! through the environment is not mangled). Where the value is really needed,
//! [`Secret::expose`] says so in the code.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// What secrets print instead of themselves.
const REDACTED: &str = "[redacted]";

/// A secret string (password, token). `Debug` and `Display` print `[redacted]`;
/// use [`Secret::expose`] where the value is really needed.
///
/// Deserializes from a plain string (numbers are accepted and kept as their text, so a
/// numeric password set through the environment is not mangled).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string (treated as "not set").
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;

        impl de::Visitor<'_> for SecretVisitor {
            type Value = Secret;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }

            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }

            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }

        deserializer.deserialize_string(SecretVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_support::{load_ok, MINIMAL};

    #[test]
    fn secrets_never_print() {
        let toml = format!(
            "{MINIMAL}access_token = \"tok-SECRET-1\"\n\
             [[agents]]\nid = \"a\"\nbase_url = \"http://a:1\"\ntoken = \"tok-SECRET-2\"\n"
        );
        let c = load_ok(&toml, &[]);
        let debug = format!("{c:?}");
        let pretty = format!("{c:#?}");
        for secret in ["file-password", "tok-SECRET-1", "tok-SECRET-2"] {
            assert!(!debug.contains(secret), "{debug}");
            assert!(!pretty.contains(secret));
        }
        assert!(debug.contains(REDACTED));
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
    }
}
