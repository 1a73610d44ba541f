//! Telegram's names of things as the core's opaque ids, and back.
//!
//! Why this exists: the core knows chats, people and messages only as strings
//! ([`crate::surface::ids`]). On Telegram a conversation is a private chat, or a topic
//! (`message_thread_id`) in one; a message number is unique only within its chat; a person
//! is a numeric user id (a username can change hands, so it never identifies anyone). This
//! module mints the core's ids from those numbers and reads them back, strictly: a string
//! that is not exactly what [`chat_id`] or [`message_id`] would write is refused.
//!
//! - person: `telegram:<user id>`
//! - chat: `telegram:<chat id>` (a private chat: the person's home, or their only
//!   conversation without topics), `telegram:<chat id>/<thread id>` (a topic)
//! - message: `telegram:<chat id>:<message id>`

use crate::surface::{ChatId, MessageId, PersonId};

/// The prefix of every Telegram id (also the surface's name and the access namespace).
pub const PREFIX: &str = "telegram:";

/// Where a message goes on Telegram: a chat, and a topic of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Place {
    /// The Telegram chat (a private chat's id is the person's user id).
    pub chat: i64,
    /// The topic (`message_thread_id`), if any.
    pub thread: Option<i32>,
}

impl Place {
    /// The private chat itself (no topic).
    pub fn chat(chat: i64) -> Self {
        Self { chat, thread: None }
    }

    /// A topic of `chat`.
    pub fn topic(chat: i64, thread: i32) -> Self {
        Self {
            chat,
            thread: Some(thread),
        }
    }
}

/// The core's id of a person.
pub fn person_id(user: u64) -> PersonId {
    PersonId::new(format!("{PREFIX}{user}"))
}

/// The core's id of a chat or topic.
pub fn chat_id(place: Place) -> ChatId {
    match place.thread {
        Some(thread) => ChatId::new(format!("{PREFIX}{}/{thread}", place.chat)),
        None => ChatId::new(format!("{PREFIX}{}", place.chat)),
    }
}

/// The core's id of message `message` of `chat`.
pub fn message_id(chat: i64, message: i32) -> MessageId {
    MessageId::new(format!("{PREFIX}{chat}:{message}"))
}

/// Reads a chat id back; `None` when it is not one of ours.
pub fn parse_chat(id: &ChatId) -> Option<Place> {
    let rest = id.as_str().strip_prefix(PREFIX)?;
    let place = match rest.split_once('/') {
        Some((chat, thread)) => Place::topic(number(chat)?, number(thread)?),
        None => Place::chat(number(rest)?),
    };
    (chat_id(place) == *id).then_some(place)
}

/// Reads a message id back as (chat, message); `None` when it is not one of ours.
pub fn parse_message(id: &MessageId) -> Option<(i64, i32)> {
    let rest = id.as_str().strip_prefix(PREFIX)?;
    let (chat, message) = rest.split_once(':')?;
    let parsed = (number(chat)?, number(message)?);
    (message_id(parsed.0, parsed.1) == *id).then_some(parsed)
}

/// Reads a person id back as a Telegram user id; `None` when it is not one of ours.
pub fn parse_person(id: &PersonId) -> Option<u64> {
    let user = number(id.as_str().strip_prefix(PREFIX)?)?;
    (person_id(user) == *id).then_some(user)
}

/// A decimal number, written canonically (no sign on positives, no leading zeros), so a
/// parsed id always writes back to the same string.
fn number<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || text.starts_with('+') {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_ids_round_trip_and_strangers_are_refused() {
        let table: &[(&str, Option<Place>)] = &[
            ("telegram:42", Some(Place::chat(42))),
            ("telegram:42/7", Some(Place::topic(42, 7))),
            ("telegram:-1001234/1", Some(Place::topic(-1001234, 1))),
            ("telegram:042", None),
            ("telegram:+42", None),
            ("telegram:42/", None),
            ("telegram:/7", None),
            ("telegram:42/7/8", None),
            ("telegram:42/99999999999", None),
            ("telegram:x", None),
            ("telegram:", None),
            ("!room:example.org", None),
            ("42", None),
        ];
        for (text, expected) in table {
            let id = ChatId::new(*text);
            assert_eq!(parse_chat(&id), *expected, "{text:?}");
            if let Some(place) = expected {
                assert_eq!(chat_id(*place), id, "{text:?}");
            }
        }
    }

    #[test]
    fn message_and_person_ids_round_trip() {
        let id = message_id(-100, 5);
        assert_eq!(id.as_str(), "telegram:-100:5");
        assert_eq!(parse_message(&id), Some((-100, 5)));
        for bad in [
            "telegram:1",
            "telegram:1:x",
            "telegram:1:05",
            "$event:server",
            "telegram::5",
        ] {
            assert_eq!(parse_message(&MessageId::new(bad)), None, "{bad:?}");
        }
        let person = person_id(777);
        assert_eq!(person.as_str(), "telegram:777");
        assert_eq!(parse_person(&person), Some(777));
        for bad in [
            "telegram:-1",
            "telegram:07",
            "@alice:example.org",
            "telegram:",
        ] {
            assert_eq!(parse_person(&PersonId::new(bad)), None, "{bad:?}");
        }
    }
}
