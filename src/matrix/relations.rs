//! What a person's Matrix event means for the core, once its relations are read: an edit,
//! a reply (with its fallback quote stripped), a redaction, or a plain message.
//!
//! Why this exists: Matrix carries edits, replies and redactions as events of their own,
//! and reading them as plain messages is wrong in ways a room member can use — an edit
//! (`m.replace`) arrived as a second message prefixed with `* `, and a reply's fallback quote
//! (`> <@alice> !clear`, then a blank line) was parsed with the reply, so a quoted command
//! ran and a command under a quote did not. These decisions are pure and table-tested here;
//! `inbound.rs` applies them. (`formatted_body`, with its `<mx-reply>` block, never reaches
//! the core: only `body` is read, after [`strip_reply_fallback`].)

use matrix_sdk::ruma::events::relation::RelationType;
use matrix_sdk::ruma::events::room::message::{MessageType, Relation, RoomMessageEventContent};
use matrix_sdk::ruma::events::room::redaction::OriginalSyncRoomRedactionEvent;

use crate::surface::MessageId;

/// What an `m.room.message` is.
#[derive(Debug)]
pub enum Shape<'a> {
    /// An edit of `of` to `new`.
    Edit {
        /// The message edited.
        of: MessageId,
        /// Its new content.
        new: &'a MessageType,
    },
    /// An `m.replace` ruma could not read in full (no `m.new_content`): not a message either.
    MalformedEdit,
    /// A reply: its body may start with a fallback quote to strip.
    Reply,
    /// Anything else (threads without a reply, plain messages).
    Plain,
}

/// Reads the relation of a message's content.
pub fn shape(content: &RoomMessageEventContent) -> Shape<'_> {
    match &content.relates_to {
        Some(Relation::Replacement(replacement)) => Shape::Edit {
            of: MessageId::new(replacement.event_id.as_str()),
            new: &replacement.new_content.msgtype,
        },
        Some(relation) if relation.rel_type() == Some(RelationType::Replacement) => {
            Shape::MalformedEdit
        }
        Some(Relation::Reply(_)) => Shape::Reply,
        Some(Relation::Thread(thread))
            if thread.in_reply_to.is_some() && !thread.is_falling_back =>
        {
            Shape::Reply
        }
        _ => Shape::Plain,
    }
}

/// The text of a text or emote message type (what an edit may change to).
pub fn text_of(msgtype: &MessageType) -> Option<&str> {
    match msgtype {
        MessageType::Text(text) => Some(&text.body),
        MessageType::Emote(emote) => Some(&emote.body),
        _ => None,
    }
}

/// A reply's body without its fallback quote: the lines starting with `>` at its start
/// (the first one starting with `> `), then the blank line after them. A body that does not
/// start with a quote is returned as it is.
pub fn strip_reply_fallback(body: &str) -> &str {
    if !body.starts_with("> ") {
        return body;
    }
    let mut rest = body;
    loop {
        let (line, after) = match rest.split_once('\n') {
            Some((line, after)) => (line, after),
            None => (rest, ""),
        };
        if !line.starts_with('>') {
            break;
        }
        rest = after;
        if rest.is_empty() {
            return "";
        }
    }
    match rest.split_once('\n') {
        Some((line, after)) if line.trim().is_empty() => after,
        None if rest.trim().is_empty() => "",
        _ => rest,
    }
}

/// The message a redaction withdraws (in the content from room version 11 on, at the top
/// level before).
pub fn redacted(ev: &OriginalSyncRoomRedactionEvent) -> Option<MessageId> {
    ev.content
        .redacts
        .as_deref()
        .or(ev.redacts.as_deref())
        .map(|id| MessageId::new(id.as_str()))
}

#[cfg(test)]
mod tests {
    use matrix_sdk::ruma::events::AnySyncTimelineEvent;
    use serde_json::json;

    use super::*;

    #[test]
    fn fallback_quotes_are_stripped() {
        // (body, what the core reads)
        let table = [
            ("> <@a:x> hello\n\n!yes", "!yes"),
            ("> <@a:x> !clear\n\nthanks", "thanks"),
            (
                "> <@a:x> line one\n> line two\n>\n> three\n\n!agent coder",
                "!agent coder",
            ),
            ("> <@a:x> quote\n\nfirst\n\nsecond", "first\n\nsecond"),
            ("> <@a:x> quote\r\n\r\n!no", "!no"),
            ("> <@a:x> quote\n!no", "!no"),
            ("> <@a:x> only a quote", ""),
            ("> <@a:x> only a quote\n", ""),
            ("> <@a:x> quote\n\n", ""),
            ("!yes", "!yes"),
            ("no quote\n> later\n\n!clear", "no quote\n> later\n\n!clear"),
            (">not a fallback\n\n!clear", ">not a fallback\n\n!clear"),
            ("", ""),
        ];
        for (body, expected) in table {
            assert_eq!(strip_reply_fallback(body), expected, "{body:?}");
        }
    }

    fn content(value: serde_json::Value) -> RoomMessageEventContent {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn relations_are_told_apart() {
        let edit = content(json!({
            "msgtype": "m.text", "body": "* fixed",
            "m.new_content": {"msgtype": "m.text", "body": "fixed"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"},
        }));
        match shape(&edit) {
            Shape::Edit { of, new } => {
                assert_eq!(of.as_str(), "$orig");
                assert_eq!(text_of(new), Some("fixed"));
            }
            other => panic!("{other:?}"),
        }
        // An `m.replace` without `m.new_content` does not even read as a message (the
        // inbound half drops it as unreadable): it never becomes a turn.
        let bare_edit = json!({
            "msgtype": "m.text", "body": "* fixed",
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"},
        });
        assert!(serde_json::from_value::<RoomMessageEventContent>(bare_edit).is_err());
        let reply = content(json!({
            "msgtype": "m.text", "body": "> <@a:x> !clear\n\nok",
            "m.relates_to": {"m.in_reply_to": {"event_id": "$q"}},
        }));
        assert!(matches!(shape(&reply), Shape::Reply));
        let thread_reply = content(json!({
            "msgtype": "m.text", "body": "x",
            "m.relates_to": {"rel_type": "m.thread", "event_id": "$root",
                "m.in_reply_to": {"event_id": "$q"}, "is_falling_back": false},
        }));
        assert!(matches!(shape(&thread_reply), Shape::Reply));
        let thread = content(json!({
            "msgtype": "m.text", "body": "x",
            "m.relates_to": {"rel_type": "m.thread", "event_id": "$root",
                "m.in_reply_to": {"event_id": "$last"}, "is_falling_back": true},
        }));
        assert!(matches!(shape(&thread), Shape::Plain));
        let plain = content(json!({"msgtype": "m.text", "body": "> quote\n\nhi"}));
        assert!(matches!(shape(&plain), Shape::Plain));
    }

    #[test]
    fn redactions_name_their_target_in_any_room_version() {
        for event in [
            json!({"type": "m.room.redaction", "event_id": "$r", "sender": "@a:x",
                "origin_server_ts": 1, "redacts": "$old", "content": {}}),
            json!({"type": "m.room.redaction", "event_id": "$r", "sender": "@a:x",
                "origin_server_ts": 1, "content": {"redacts": "$old"}}),
        ] {
            let ev: AnySyncTimelineEvent = serde_json::from_value(event).unwrap();
            let AnySyncTimelineEvent::MessageLike(
                matrix_sdk::ruma::events::AnySyncMessageLikeEvent::RoomRedaction(
                    matrix_sdk::ruma::events::room::redaction::SyncRoomRedactionEvent::Original(ev),
                ),
            ) = ev
            else {
                panic!("not a redaction")
            };
            assert_eq!(
                redacted(&ev).map(|m| m.as_str().to_owned()).as_deref(),
                Some("$old")
            );
        }
    }
}
