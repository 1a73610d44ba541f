//! Names of things on a messenger, as the core sees them: opaque strings.
//!
//! Why this exists: the core (room actors, commands, journal, router) must never depend on a
//! messenger's types. A Matrix room id, a Telegram chat and topic, an event id, a message
//! number: each is just a [`ChatId`], [`PersonId`] or [`MessageId`] here, minted and read by
//! the messenger's adapter. Keys derived from them ([`SendKey`], turn ids) are pure
//! functions of those strings, so the same answer always gets the same key, on every
//! messenger and across restarts.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a messenger's identifier.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The identifier as the messenger wrote it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

opaque_id!(
    /// A conversation (Matrix: a room, a person's Space; Telegram: a private chat or a topic).
    ChatId
);
opaque_id!(
    /// A person (Matrix: a user id).
    PersonId
);
opaque_id!(
    /// One message (Matrix: an event id).
    MessageId
);
opaque_id!(
    /// An idempotency key: the messenger turns sends with the same key into one message
    /// (Matrix: the transaction id; Telegram: the adapter's record of what it sent).
    SendKey
);

/// Prefix of our send keys.
const SEND_KEY_PREFIX: &str = "sfc-";
/// Prefix of turn ids.
const TURN_ID_PREFIX: &str = "turn-";
/// How many bytes of the message id's SHA-256 go into a key.
const KEY_HASH_BYTES: usize = 16;

/// The parts of an answer to one message, each with a key of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerPart {
    /// The reply (the agent's answer, or a command's).
    Reply,
    /// A notice answering the message (failures, refusals).
    Notice,
    /// The notice after a catch-up left messages out.
    CatchUpSkipped,
    /// The notice after a gap could not be read.
    CatchUpUnreadable,
    /// The `n`-th file the agent posted after its reply.
    File(u32),
    /// Part `n` (from 1) of a reply split into several messages (part 0 is [`AnswerPart::Reply`]).
    ReplyPart(u32),
    /// A reply too long for messages, attached as a file.
    ReplyFile,
    /// The notice that a person's messages could not be decrypted (once per person and
    /// chat, answering the oldest).
    Undecryptable,
    /// The final edit of a reply streamed live.
    LiveFinal,
    /// The notice that the message waits behind a long turn.
    Queued,
    /// The final edit of message `n` (from 1) of a reply streamed live over several.
    LiveFinalPart(u32),
}

/// Key part numbers: fixed forever (a change would defeat deduplication across an upgrade).
const FILE_PART_BASE: u32 = 100;
/// Base of [`AnswerPart::ReplyPart`] numbers (far above the files a turn may post).
const REPLY_PART_BASE: u32 = 100_000;
/// Number of [`AnswerPart::ReplyFile`].
const REPLY_FILE_PART: u32 = 4;
/// Number of [`AnswerPart::Undecryptable`].
const UNDECRYPTABLE_PART: u32 = 5;
/// Number of [`AnswerPart::LiveFinal`].
const LIVE_FINAL_PART: u32 = 6;
/// Number of [`AnswerPart::Queued`].
const QUEUED_PART: u32 = 7;
/// Base of [`AnswerPart::LiveFinalPart`] numbers.
const LIVE_FINAL_PART_BASE: u32 = 200_000;

impl AnswerPart {
    fn number(self) -> u32 {
        match self {
            AnswerPart::Reply => 0,
            AnswerPart::Notice => 1,
            AnswerPart::CatchUpSkipped => 2,
            AnswerPart::CatchUpUnreadable => 3,
            AnswerPart::File(n) => FILE_PART_BASE.saturating_add(n),
            AnswerPart::ReplyPart(n) => REPLY_PART_BASE.saturating_add(n),
            AnswerPart::ReplyFile => REPLY_FILE_PART,
            AnswerPart::Undecryptable => UNDECRYPTABLE_PART,
            AnswerPart::LiveFinal => LIVE_FINAL_PART,
            AnswerPart::Queued => QUEUED_PART,
            AnswerPart::LiveFinalPart(n) => LIVE_FINAL_PART_BASE.saturating_add(n),
        }
    }
}

impl SendKey {
    /// The key of answer part `part` to `message`:
    /// `sfc-<hex of the first 16 bytes of sha256(message id)>-<part number>`.
    pub fn answer(message: &MessageId, part: AnswerPart) -> SendKey {
        SendKey(format!(
            "{SEND_KEY_PREFIX}{}-{}",
            message_hash(message),
            part.number()
        ))
    }
}

/// The turn id of the agent turn answering `message` (stable across retries and restarts):
/// `turn-<hex of the first 16 bytes of sha256(message id)>`.
pub fn turn_id_for(message: &MessageId) -> String {
    format!("{TURN_ID_PREFIX}{}", message_hash(message))
}

fn message_hash(message: &MessageId) -> String {
    let digest = Sha256::digest(message.as_str().as_bytes());
    crate::hex::lower(&digest[..KEY_HASH_BYTES])
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn keys_are_deterministic_and_distinct() {
        let a = MessageId::new("$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        let b = MessageId::new("$bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
        let parts = [
            AnswerPart::Reply,
            AnswerPart::Notice,
            AnswerPart::CatchUpSkipped,
            AnswerPart::CatchUpUnreadable,
            AnswerPart::File(0),
            AnswerPart::File(7),
            AnswerPart::ReplyPart(1),
            AnswerPart::ReplyPart(2),
            AnswerPart::ReplyFile,
            AnswerPart::Undecryptable,
            AnswerPart::LiveFinal,
            AnswerPart::Queued,
            AnswerPart::LiveFinalPart(1),
            AnswerPart::LiveFinalPart(2),
        ];
        let mut seen = HashSet::new();
        for message in [&a, &b] {
            for part in parts {
                let key = SendKey::answer(message, part);
                assert_eq!(key, SendKey::answer(message, part), "not deterministic");
                assert!(seen.insert(key.clone()), "duplicate {key}");
                assert!(key.as_str().starts_with(SEND_KEY_PREFIX));
            }
        }
    }

    #[test]
    fn keys_and_turn_ids_are_pinned() {
        // sha256("$x") starts 2c0e6e... Pinned: a change would answer twice across an
        // upgrade (the homeserver deduplicates by key) and re-run turns (the agent by id).
        let x = MessageId::new("$x");
        let digest = Sha256::digest(b"$x");
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            SendKey::answer(&x, AnswerPart::Reply).as_str(),
            format!("sfc-{hex}-0")
        );
        assert_eq!(
            SendKey::answer(&x, AnswerPart::Notice).as_str(),
            format!("sfc-{hex}-1")
        );
        assert_eq!(
            SendKey::answer(&x, AnswerPart::File(2)).as_str(),
            format!("sfc-{hex}-102")
        );
        assert_eq!(
            SendKey::answer(&x, AnswerPart::ReplyPart(3)).as_str(),
            format!("sfc-{hex}-100003")
        );
        assert_eq!(
            SendKey::answer(&x, AnswerPart::ReplyFile).as_str(),
            format!("sfc-{hex}-4")
        );
        assert_eq!(turn_id_for(&x), format!("turn-{hex}"));
    }
}
