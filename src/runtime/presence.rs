//! When the bot shows a person it is on their message: a read receipt, and "typing…".
//!
//! Why this exists: each of the two is a request the messenger's server must handle, for every
//! message, and in a burst the server (not Surfaces) is the bottleneck — a receipt, typing on
//! and typing off tripled the requests of a quick answer. A person does not miss them when the
//! answer itself comes quickly: a reply is later in the chat than the message it answers, so
//! clients show the bot's read marker on the reply (a message sent implies reading what came
//! before it), and a typing notice that would flash for a fraction of a second tells nothing.
//! So both wait a short moment and are sent only when the answer is not there by then: the
//! receipt for a message still pending in the journal, typing for a turn still running. A
//! message that waits behind a long turn, or a slow agent, is seen and shown as before.
//!
//! The decisions are pure ([`receipts_due`]); the intake and the room actor do the effects.

use std::time::Duration;

use crate::idmap::IdMap;
use crate::surface::{ChatId, MessageId};

/// How long a taken message waits for its answer before the bot marks it read.
pub const RECEIPT_AFTER: Duration = Duration::from_millis(500);
/// How long a turn runs before the bot shows that it is typing.
pub const TYPING_AFTER: Duration = Duration::from_millis(500);

/// What was taken from one chat, in the chat's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    /// The chat.
    pub chat: ChatId,
    /// The message.
    pub message: MessageId,
    /// Whether the bot answers it with a message of its own (a text in the journal), which
    /// marks it read when it comes; false for what gets no answer of its own (a file held
    /// for the next turn).
    pub answered_in_chat: bool,
}

/// The receipts to send, [`RECEIPT_AFTER`] after `taken` was journaled: one per chat, for its
/// latest message (a receipt covers the messages before it), unless that message was answered
/// by then (`answered` says; the answer marks it, and all before it, read).
pub fn receipts_due(
    taken: Vec<Taken>,
    answered: impl Fn(&MessageId) -> bool,
) -> Vec<(ChatId, MessageId)> {
    // In the order chats first appear; a batch can hold thousands of chats (linear, not a
    // search per message).
    let mut latest: Vec<Taken> = Vec::new();
    let mut index: IdMap<ChatId, usize> = IdMap::default();
    for item in taken {
        match index.get(&item.chat) {
            Some(&i) => latest[i] = item,
            None => {
                index.insert(item.chat.clone(), latest.len());
                latest.push(item);
            }
        }
    }
    latest
        .into_iter()
        .filter(|t| !(t.answered_in_chat && answered(&t.message)))
        .map(|t| (t.chat, t.message))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(chat: &str, message: &str, answered_in_chat: bool) -> Taken {
        Taken {
            chat: ChatId::new(chat),
            message: MessageId::new(message),
            answered_in_chat,
        }
    }

    #[test]
    fn one_receipt_per_chat_for_its_latest_message_unless_answered() {
        // (taken, answered ids, receipts wanted)
        let cases: Vec<(Vec<Taken>, Vec<&str>, Vec<(&str, &str)>)> = vec![
            (vec![], vec![], vec![]),
            // A quick answer marks it read: no receipt.
            (vec![taken("a", "1", true)], vec!["1"], vec![]),
            // Still pending: seen.
            (vec![taken("a", "1", true)], vec![], vec![("a", "1")]),
            // The latest of a chat counts; an earlier one answered does not cover it.
            (
                vec![taken("a", "1", true), taken("a", "2", true)],
                vec!["1"],
                vec![("a", "2")],
            ),
            // The latest answered covers the earlier one still waiting.
            (
                vec![taken("a", "1", true), taken("a", "2", true)],
                vec!["2"],
                vec![],
            ),
            // Chats apart, in the order first seen.
            (
                vec![
                    taken("a", "1", true),
                    taken("b", "2", true),
                    taken("a", "3", true),
                ],
                vec!["3"],
                vec![("b", "2")],
            ),
            // A held file gets no answer of its own: always seen.
            (vec![taken("a", "f", false)], vec!["f"], vec![("a", "f")]),
        ];
        for (input, answered, want) in cases {
            let got = receipts_due(input.clone(), |m| answered.contains(&m.as_str()));
            let want: Vec<(ChatId, MessageId)> = want
                .into_iter()
                .map(|(c, m)| (ChatId::new(c), MessageId::new(m)))
                .collect();
            assert_eq!(got, want, "{input:?} answered {answered:?}");
        }
    }
}
