//! Stable actor identities.
//!
//! An [`ActorId`] names a supervised child across all of its incarnations: the health
//! registry, the event stream, fault injection and the ops endpoint all address actors by
//! it. It is a kind plus an optional key (`room:!abc:hs`, `agent:writer`, `router`), stored
//! as one shared string so cloning it is a reference-count increment.

use std::fmt;
use std::sync::Arc;

/// The separator between an id's kind and its key.
const KIND_SEPARATOR: char = ':';

/// A kind plus an optional key, e.g. `room:!abc:example.org` or `router`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorId {
    text: Arc<str>,
    kind_len: usize,
}

impl ActorId {
    /// An id with a key: one actor of a kind among many (`room:!abc:hs`).
    pub fn new(kind: &str, key: &str) -> Self {
        Self {
            text: Arc::from(format!("{kind}{KIND_SEPARATOR}{key}")),
            kind_len: kind.len(),
        }
    }

    /// An id for the only actor of its kind (`router`).
    pub fn singleton(kind: &str) -> Self {
        Self {
            text: Arc::from(kind),
            kind_len: kind.len(),
        }
    }

    /// Parses the textual form: everything before the first `:` is the kind.
    /// Never fails: text without a separator is a singleton id.
    pub fn parse(text: &str) -> Self {
        match text.split_once(KIND_SEPARATOR) {
            Some((kind, key)) => Self::new(kind, key),
            None => Self::singleton(text),
        }
    }

    /// The kind (`room`, `agent`, `router`).
    pub fn kind(&self) -> &str {
        self.text.get(..self.kind_len).unwrap_or(&self.text)
    }

    /// The key, if the id has one.
    pub fn key(&self) -> Option<&str> {
        self.text.get(self.kind_len + KIND_SEPARATOR.len_utf8()..)
    }

    /// The whole textual form.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorId({})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_keys() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("room:!abc:hs", "room", Some("!abc:hs")),
            ("agent:writer", "agent", Some("writer")),
            ("router", "router", None),
            ("room:", "room", Some("")),
            (":x", "", Some("x")),
            ("", "", None),
            ("räum:ключ", "räum", Some("ключ")),
        ];
        for (text, kind, key) in cases {
            let id = ActorId::parse(text);
            assert_eq!(id.kind(), *kind, "{text}");
            assert_eq!(id.key(), *key, "{text}");
            assert_eq!(id.as_str(), *text);
        }
        assert_eq!(ActorId::new("room", "!a:b"), ActorId::parse("room:!a:b"));
        assert_eq!(ActorId::singleton("router").to_string(), "router");
    }
}
