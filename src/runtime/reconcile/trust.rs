//! Which facts read from a messenger reconciliation may believe.
//!
//! Why this exists: anyone with enough power in a chat can write state into it — a binding
//! naming another person as owner and their (guessable, sequential) chat id, a home marker,
//! a link to someone's home. Adopting such state would send one person's messages into
//! another's agent conversation. So a chat's binding is believed only if the bot wrote it,
//! in a chat the bot created, for an owner who is in the chat (joined or invited), with a
//! chat id of a form the bot mints and a chat index in the range it counts; a home only if
//! the bot wrote its marker in a chat it created, for an owner in it; a link to a home
//! (legacy chats without a binding) only if the bot wrote it in a chat it created. These
//! checks are pure and table-tested; what fails them is reported, never adopted.

use super::{legacy_chat_id, RoomFacts, LEGACY_CHAT_ID_PREFIX};
use crate::runtime::router::CHAT_ID_PREFIX;
use crate::surface::Binding;

/// The highest chat sequence number the bot could have minted (`sfc-<n>`): one per `!new`
/// or `!clear`, so 2^40 is out of reach of any real deployment. A larger number in a
/// binding is forged (it would push the counter to the end of its range and block every
/// later `!new`) and is ignored.
pub const MAX_CHAT_SEQ: u64 = 1 << 40;

/// The highest chat index the bot could have given (a person's "Chat <n>"): 2^20 chats for
/// one person is out of reach; a larger index is forged (and would overflow the counter).
pub const MAX_CHAT_INDEX: u32 = 1 << 20;

/// Why a chat's or home's state was not believed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Distrust {
    /// The state was written by someone other than the bot.
    #[error("its {what} was not written by the bot (sender: {sender})")]
    NotWrittenByBot {
        /// Which state (`binding`, `home marker`, `link to a home`).
        what: &'static str,
        /// Who wrote it (`unknown` if the messenger did not say).
        sender: String,
    },
    /// The chat was created by someone other than the bot.
    #[error("the room was not created by the bot (creator: {0})")]
    NotCreatedByBot(String),
    /// The owner it names is neither in the chat nor invited.
    #[error("its owner {0} is not a member")]
    OwnerNotMember(String),
    /// The chat id is not one the bot mints (or out of its range).
    #[error("its chat id {0:?} is not one the bot could have minted")]
    ChatIdNotMintable(String),
    /// The chat index is out of the bot's range.
    #[error("its chat index {0} is out of range (at most {MAX_CHAT_INDEX})")]
    ChatIndexOutOfRange(u32),
    /// Another room holds the same chat id (that one was kept).
    #[error("another room ({0}) holds the same chat id")]
    ChatIdTaken(String),
}

/// The sequence number inside a minted chat id (`sfc-<n>`, `n` written as the bot writes
/// it: decimal, no sign, no leading zero, 1..=[`MAX_CHAT_SEQ`]), if it is one.
pub fn chat_seq_of(chat_id: &str) -> Option<u64> {
    let digits = chat_id.strip_prefix(CHAT_ID_PREFIX)?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<u64>()
        .ok()
        .filter(|n| (1..=MAX_CHAT_SEQ).contains(n))
}

/// Whether `chat_id` is one the bot could have put in `room_id`'s binding: a sequence id in
/// range, the room's own legacy id, or empty (a legacy binding the bot completes).
fn mintable(room_id: &str, chat_id: &str) -> bool {
    if chat_id.is_empty() {
        return true;
    }
    if chat_id.starts_with(LEGACY_CHAT_ID_PREFIX) {
        return chat_id == legacy_chat_id(room_id);
    }
    chat_seq_of(chat_id).is_some()
}

fn written_by_bot(what: &'static str, sender: Option<&str>, bot: &str) -> Result<(), Distrust> {
    match sender {
        Some(sender) if sender == bot => Ok(()),
        other => Err(Distrust::NotWrittenByBot {
            what,
            sender: other.unwrap_or("unknown").to_owned(),
        }),
    }
}

fn created_by_bot(fact: &RoomFacts, bot: &str) -> Result<(), Distrust> {
    match fact.creator.as_deref() {
        Some(creator) if creator == bot => Ok(()),
        other => Err(Distrust::NotCreatedByBot(
            other.unwrap_or("unknown").to_owned(),
        )),
    }
}

fn owner_is_member(fact: &RoomFacts, owner: &str) -> Result<(), Distrust> {
    if fact.members.iter().any(|m| m == owner) {
        Ok(())
    } else {
        Err(Distrust::OwnerNotMember(owner.to_owned()))
    }
}

/// Whether the binding of `fact` may be adopted (the bot wrote it, in a chat it created, for
/// an owner in the chat, with a chat id and index it could have minted).
pub fn vet_chat(fact: &RoomFacts, binding: &Binding, bot: &str) -> Result<(), Distrust> {
    written_by_bot("binding", fact.binding_sender.as_deref(), bot)?;
    created_by_bot(fact, bot)?;
    owner_is_member(fact, &binding.owner)?;
    if !mintable(&fact.room_id, binding.platform_chat_id.trim()) {
        return Err(Distrust::ChatIdNotMintable(
            binding.platform_chat_id.clone(),
        ));
    }
    if binding.chat_index > MAX_CHAT_INDEX {
        return Err(Distrust::ChatIndexOutOfRange(binding.chat_index));
    }
    Ok(())
}

/// Whether `fact` may be adopted as `owner`'s home.
pub fn vet_home(fact: &RoomFacts, owner: &str, bot: &str) -> Result<(), Distrust> {
    written_by_bot("home marker", fact.space_sender.as_deref(), bot)?;
    created_by_bot(fact, bot)?;
    owner_is_member(fact, owner)
}

/// Whether `fact`, a chat without a binding linked to `owner`'s (trusted) home, may be
/// adopted as a legacy chat of theirs.
pub fn vet_legacy(fact: &RoomFacts, owner: &str, bot: &str) -> Result<(), Distrust> {
    written_by_bot("link to a home", fact.parent_sender.as_deref(), bot)?;
    created_by_bot(fact, bot)?;
    owner_is_member(fact, owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOT: &str = "@bot:x";
    const ALICE: &str = "@a:x";

    fn bound(chat_id: &str, index: u32) -> (RoomFacts, Binding) {
        let binding = Binding {
            agent_id: "echo".into(),
            platform_chat_id: chat_id.into(),
            owner: ALICE.into(),
            chat_index: index,
            archived: false,
        };
        let fact = RoomFacts {
            room_id: "!r:x".into(),
            binding: Some(binding.clone()),
            creator: Some(BOT.into()),
            binding_sender: Some(BOT.into()),
            members: vec![BOT.into(), ALICE.into()],
            ..RoomFacts::default()
        };
        (fact, binding)
    }

    #[test]
    fn chat_bindings_are_believed_only_as_the_bot_writes_them() {
        type Change = fn(&mut RoomFacts, &mut Binding);
        let cases: Vec<(&str, Change, Option<&str>)> = vec![
            ("the bot's own", |_, _| {}, None),
            (
                "a legacy binding without id",
                |_, b| b.platform_chat_id = String::new(),
                None,
            ),
            (
                "the room's own legacy id",
                |f, b| b.platform_chat_id = legacy_chat_id(&f.room_id),
                None,
            ),
            (
                "bound by someone else",
                |f, _| f.binding_sender = Some("@m:x".into()),
                Some("not written by the bot"),
            ),
            (
                "sender unknown",
                |f, _| f.binding_sender = None,
                Some("sender: unknown"),
            ),
            (
                "a room someone else made",
                |f, _| f.creator = Some("@m:x".into()),
                Some("not created by the bot"),
            ),
            (
                "creator unknown",
                |f, _| f.creator = None,
                Some("creator: unknown"),
            ),
            (
                "owner not in the room",
                |f, _| f.members = vec![BOT.into(), "@m:x".into()],
                Some("not a member"),
            ),
            (
                "another room's legacy id",
                |_, b| b.platform_chat_id = legacy_chat_id("!other:x"),
                Some("could have minted"),
            ),
            (
                "the end of the range",
                |_, b| b.platform_chat_id = "sfc-18446744073709551615".into(),
                Some("could have minted"),
            ),
            (
                "just past the range",
                |_, b| b.platform_chat_id = format!("sfc-{}", MAX_CHAT_SEQ + 1),
                Some("could have minted"),
            ),
            (
                "a leading zero",
                |_, b| b.platform_chat_id = "sfc-07".into(),
                Some("could have minted"),
            ),
            (
                "a sign",
                |_, b| b.platform_chat_id = "sfc-+7".into(),
                Some("could have minted"),
            ),
            (
                "zero",
                |_, b| b.platform_chat_id = "sfc-0".into(),
                Some("could have minted"),
            ),
            (
                "another format",
                |_, b| b.platform_chat_id = "conv-7".into(),
                Some("could have minted"),
            ),
            (
                "an index out of range",
                |_, b| b.chat_index = MAX_CHAT_INDEX + 1,
                Some("out of range"),
            ),
            ("the last index", |_, b| b.chat_index = MAX_CHAT_INDEX, None),
            (
                "the last sequence number",
                |_, b| b.platform_chat_id = format!("sfc-{MAX_CHAT_SEQ}"),
                None,
            ),
        ];
        for (name, change, expected) in cases {
            let (mut fact, mut binding) = bound("sfc-7", 2);
            change(&mut fact, &mut binding);
            let got = vet_chat(&fact, &binding, BOT);
            match expected {
                None => assert_eq!(got, Ok(()), "{name}"),
                Some(needle) => {
                    let reason = got.expect_err(name).to_string();
                    assert!(reason.contains(needle), "{name}: {reason}");
                }
            }
        }
    }

    #[test]
    fn homes_and_links_to_homes_are_believed_only_from_the_bot() {
        let home = RoomFacts {
            room_id: "!h:x".into(),
            space_owner: Some(ALICE.into()),
            space_sender: Some(BOT.into()),
            creator: Some(BOT.into()),
            members: vec![BOT.into(), ALICE.into()],
            ..RoomFacts::default()
        };
        assert_eq!(vet_home(&home, ALICE, BOT), Ok(()));
        let mut forged = home.clone();
        forged.space_sender = Some(ALICE.into());
        assert!(vet_home(&forged, ALICE, BOT).is_err());
        let mut theirs = home.clone();
        theirs.creator = Some(ALICE.into());
        assert!(vet_home(&theirs, ALICE, BOT).is_err());
        let mut left = home.clone();
        left.members = vec![BOT.into()];
        assert!(vet_home(&left, ALICE, BOT).is_err());

        let legacy = RoomFacts {
            room_id: "!l:x".into(),
            parent: Some("!h:x".into()),
            parent_sender: Some(BOT.into()),
            creator: Some(BOT.into()),
            members: vec![BOT.into(), ALICE.into()],
            ..RoomFacts::default()
        };
        assert_eq!(vet_legacy(&legacy, ALICE, BOT), Ok(()));
        let mut linked = legacy.clone();
        linked.parent_sender = Some("@m:x".into());
        assert!(vet_legacy(&linked, ALICE, BOT).is_err());
        let mut theirs = legacy;
        theirs.creator = Some("@m:x".into());
        assert!(vet_legacy(&theirs, ALICE, BOT).is_err());
    }

    #[test]
    fn chat_seq_parsing_is_strict_and_bounded() {
        let cases = [
            ("sfc-12", Some(12)),
            ("sfc-1", Some(1)),
            ("sfc-1099511627776", Some(MAX_CHAT_SEQ)),
            ("sfc-1099511627777", None),
            ("sfc-18446744073709551615", None),
            ("sfc-99999999999999999999999", None),
            ("sfc-0", None),
            ("sfc-012", None),
            ("sfc-+12", None),
            ("sfc- 12", None),
            ("sfc-r12", None),
            ("sfc-", None),
            ("other-3", None),
        ];
        for (id, expected) in cases {
            assert_eq!(chat_seq_of(id), expected, "{id}");
        }
    }
}
