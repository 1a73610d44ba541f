//! Messages the bot received but cannot read yet: end-to-end encrypted, and their key has
//! not reached the bot's device.
//!
//! Why this exists: a message the bot cannot decrypt used to be dropped without a word —
//! the most common complaint about bots on encrypted messengers. Keys often arrive late (a
//! slow to-device message, a key backup), so such a message is **kept**: the adapter hands
//! it to the core in its [`super::Batch`], and the journal holds it (durably, in the same
//! write as the cursor that moved past it) until the adapter decrypts it and delivers it as
//! an ordinary message. If it stays unreadable past a grace period, the person is told once
//! per person and chat ([`give_up`] decides), and it is still kept: a key that comes even
//! later still gets it answered.
//!
//! What is here is messenger-agnostic: the record, and the pure decision of what to give up
//! on and whom to tell. The adapter (Matrix: `crate::matrix::undecryptable`) owns the
//! decryption.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::ids::{ChatId, MessageId, PersonId};

/// One message the bot cannot read yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undecryptable {
    /// Where it was written.
    pub chat: ChatId,
    /// Its id.
    pub id: MessageId,
    /// Who wrote it (the messenger says so in the clear).
    pub sender: PersonId,
    /// When the bot first saw it (ms since the epoch).
    pub since_ms: u64,
    /// Whether the bot gave up waiting for its key (the person was told, once per person
    /// and chat); it is still decrypted and answered if the key comes.
    pub given_up: bool,
    /// What the adapter needs to try again (opaque to the core; Matrix: the encrypted
    /// event's JSON).
    pub payload: String,
}

/// What [`give_up`] decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GiveUp {
    /// Messages whose grace period is over: recorded as given up.
    pub ids: Vec<MessageId>,
    /// Who to tell, once per person and chat: the chat, the person, and the message to
    /// answer (the oldest of theirs given up now).
    pub notices: Vec<(ChatId, PersonId, MessageId)>,
}

/// Which waiting messages are past `grace_ms` at `now_ms`, and whom to tell: a person is
/// told about a chat only when none of their messages there was given up before (so a
/// burst of unreadable messages brings one notice, and a new problem after one was solved
/// brings a new one). Pure.
pub fn give_up<'a>(
    waiting: impl IntoIterator<Item = &'a Undecryptable>,
    now_ms: u64,
    grace_ms: u64,
) -> GiveUp {
    let mut told_before: BTreeSet<(&ChatId, &PersonId)> = BTreeSet::new();
    // Per person and chat: the oldest message given up now.
    let mut oldest: BTreeMap<(&ChatId, &PersonId), (u64, &MessageId)> = BTreeMap::new();
    let mut decision = GiveUp::default();
    for message in waiting {
        let who = (&message.chat, &message.sender);
        if message.given_up {
            told_before.insert(who);
            continue;
        }
        if now_ms.saturating_sub(message.since_ms) < grace_ms {
            continue;
        }
        decision.ids.push(message.id.clone());
        let entry = oldest.entry(who).or_insert((message.since_ms, &message.id));
        if (message.since_ms, &message.id) < (entry.0, entry.1) {
            *entry = (message.since_ms, &message.id);
        }
    }
    decision.notices = oldest
        .into_iter()
        .filter(|(who, _)| !told_before.contains(who))
        .map(|((chat, sender), (_, id))| (chat.clone(), sender.clone(), id.clone()))
        .collect();
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(chat: &str, id: &str, sender: &str, since_ms: u64, given_up: bool) -> Undecryptable {
        Undecryptable {
            chat: ChatId::new(chat),
            id: MessageId::new(id),
            sender: PersonId::new(sender),
            since_ms,
            given_up,
            payload: String::new(),
        }
    }

    #[test]
    fn what_to_give_up_on_and_whom_to_tell() {
        const GRACE: u64 = 60_000;
        const NOW: u64 = 1_000_000;
        let old = NOW - GRACE;
        // (name, waiting, given-up ids, notices as (chat, sender, anchor))
        let table: Vec<(&str, Vec<Undecryptable>, Vec<&str>, Vec<(&str, &str, &str)>)> = vec![
            ("nothing waits", vec![], vec![], vec![]),
            (
                "still within the grace period",
                vec![msg("!r", "$a", "@p", NOW - GRACE + 1, false)],
                vec![],
                vec![],
            ),
            (
                "exactly at the end of the grace period",
                vec![msg("!r", "$a", "@p", old, false)],
                vec!["$a"],
                vec![("!r", "@p", "$a")],
            ),
            (
                "a burst brings one notice, answering the oldest",
                vec![
                    msg("!r", "$b", "@p", old - 5, false),
                    msg("!r", "$a", "@p", old - 9, false),
                    msg("!r", "$c", "@p", old, false),
                ],
                vec!["$b", "$a", "$c"],
                vec![("!r", "@p", "$a")],
            ),
            (
                "one notice per person and per chat",
                vec![
                    msg("!r", "$a", "@p", old, false),
                    msg("!r", "$b", "@q", old, false),
                    msg("!s", "$c", "@p", old, false),
                ],
                vec!["$a", "$b", "$c"],
                vec![("!r", "@p", "$a"), ("!r", "@q", "$b"), ("!s", "@p", "$c")],
            ),
            (
                "told before: given up again without a second notice",
                vec![
                    msg("!r", "$a", "@p", old - 100, true),
                    msg("!r", "$b", "@p", old, false),
                ],
                vec!["$b"],
                vec![],
            ),
            (
                "told in another chat only",
                vec![
                    msg("!s", "$a", "@p", old - 100, true),
                    msg("!r", "$b", "@p", old, false),
                ],
                vec!["$b"],
                vec![("!r", "@p", "$b")],
            ),
            (
                "a clock that went back gives nothing up",
                vec![msg("!r", "$a", "@p", NOW + 5_000, false)],
                vec![],
                vec![],
            ),
        ];
        for (name, waiting, ids, notices) in table {
            let decision = give_up(&waiting, NOW, GRACE);
            let got_ids: Vec<&str> = decision.ids.iter().map(MessageId::as_str).collect();
            assert_eq!(got_ids, ids, "{name}");
            let got: Vec<(&str, &str, &str)> = decision
                .notices
                .iter()
                .map(|(c, p, m)| (c.as_str(), p.as_str(), m.as_str()))
                .collect();
            assert_eq!(got, notices, "{name}");
        }
    }
}
