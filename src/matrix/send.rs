//! Sending what the bot says: replies, notices, typing.
//!
//! Replies are markdown rendered to `formatted_body` HTML (the plain `body`
//! keeps the markdown source) and are rich replies (`m.in_reply_to`) to the
//! person's message. Every send takes a transaction id: the homeserver
//! deduplicates a `PUT /send/{type}/{txnId}` it has already accepted from
//! the same device, so a send retried after a timeout or a crash with the
//! same id yields one message, not two. [`txn_id_for`] derives that id from
//! the person's event id, so the same answer part always gets the same id.
//!
//! Caveat: the homeserver keeps transaction ids for a limited time (Synapse:
//! about 30 minutes) and per access token, so deduplication covers retries,
//! not replays days later or after a re-login.

use matrix_sdk::{
    ruma::{
        events::room::message::{
            AddMentions, ForwardThread, ReplyMetadata, RoomMessageEventContent,
        },
        EventId, OwnedEventId, OwnedTransactionId, TransactionId,
    },
    Room,
};
use sha2::{Digest, Sha256};
use tracing::debug;

use super::MatrixError;

/// Prefix of our transaction ids.
const TXN_ID_PREFIX: &str = "sfc-";
/// How many bytes of the event id's SHA-256 go into a transaction id.
const TXN_ID_HASH_BYTES: usize = 16;

/// Sends `markdown` as an `m.text` reply to the message described by
/// `reply_to` (build it from the received event with `(&event).into()`, or
/// with `ReplyMetadata::new(event_id, sender, None)`), with transaction id
/// `txn_id`. A reply to a message in a thread stays in that thread.
///
/// Returns the id of the sent event (the same id when the homeserver
/// deduplicated a repeated transaction).
pub async fn send_reply<'a>(
    room: &Room,
    reply_to: impl Into<ReplyMetadata<'a>>,
    markdown: &str,
    txn_id: &TransactionId,
) -> Result<OwnedEventId, MatrixError> {
    let content = reply_content(markdown, reply_to.into());
    let result = room
        .send(content)
        .with_transaction_id(txn_id.to_owned())
        .await
        .map_err(|e| MatrixError::from_sdk("sending a reply", e))?;
    Ok(result.response.event_id)
}

/// Sends `markdown` as an `m.notice` reply to the message described by
/// `reply_to`, with transaction id `txn_id`: the bot's status answers
/// (failures, refusals) stay attached to the message they are about.
pub async fn send_notice_reply<'a>(
    room: &Room,
    reply_to: impl Into<ReplyMetadata<'a>>,
    markdown: &str,
    txn_id: &TransactionId,
) -> Result<OwnedEventId, MatrixError> {
    let content = RoomMessageEventContent::notice_markdown(markdown).make_reply_to(
        reply_to.into(),
        ForwardThread::Yes,
        AddMentions::Yes,
    );
    let result = room
        .send(content)
        .with_transaction_id(txn_id.to_owned())
        .await
        .map_err(|e| MatrixError::from_sdk("sending a notice", e))?;
    Ok(result.response.event_id)
}

/// Sends `text` (markdown) as an `m.notice` (bots' status messages). Without a
/// transaction id a fresh one is used, so a retry may duplicate it.
pub async fn send_notice(
    room: &Room,
    text: &str,
    txn_id: Option<&TransactionId>,
) -> Result<OwnedEventId, MatrixError> {
    let mut send = room.send(RoomMessageEventContent::notice_markdown(text));
    if let Some(txn_id) = txn_id {
        send = send.with_transaction_id(txn_id.to_owned());
    }
    let result = send
        .await
        .map_err(|e| MatrixError::from_sdk("sending a notice", e))?;
    Ok(result.response.event_id)
}

/// Shows or hides the bot's typing indicator; failures are only logged
/// (typing is cosmetic).
pub async fn typing(room: &Room, on: bool) {
    if let Err(error) = room.typing_notice(on).await {
        debug!(room_id = %room.room_id(), %error, on, "typing notice failed");
    }
}

/// The transaction id of answer part `part` to event `event_id`:
/// `sfc-<hex of the first 16 bytes of sha256(event_id)>-<part>`.
/// Deterministic, so a retried send is deduplicated by the homeserver.
pub fn txn_id_for(event_id: &EventId, part: u32) -> OwnedTransactionId {
    let digest = Sha256::digest(event_id.as_str().as_bytes());
    let hex = to_hex(&digest[..TXN_ID_HASH_BYTES]);
    OwnedTransactionId::from(format!("{TXN_ID_PREFIX}{hex}-{part}"))
}

/// The content of a markdown reply.
fn reply_content(markdown: &str, reply_to: ReplyMetadata<'_>) -> RoomMessageEventContent {
    RoomMessageEventContent::text_markdown(markdown).make_reply_to(
        reply_to,
        ForwardThread::Yes,
        AddMentions::Yes,
    )
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use matrix_sdk::ruma::{
        event_id,
        events::room::message::{MessageType, Relation},
        user_id,
    };

    use super::*;

    #[test]
    fn txn_ids_are_deterministic_and_distinct() {
        let a = event_id!("$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        let b = event_id!("$bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
        let cases: &[(&EventId, u32)] = &[(a, 0), (a, 1), (a, 2), (b, 0), (b, 1), (a, 10)];
        let mut seen = HashSet::new();
        for &(event, part) in cases {
            let id = txn_id_for(event, part);
            assert_eq!(id, txn_id_for(event, part), "not deterministic");
            assert!(seen.insert(id.clone()), "duplicate {id}");
            let s = id.as_str();
            assert!(s.starts_with(TXN_ID_PREFIX), "{s}");
            assert!(s.ends_with(&format!("-{part}")), "{s}");
            assert_eq!(
                s.len(),
                TXN_ID_PREFIX.len() + 2 * TXN_ID_HASH_BYTES + 1 + part.to_string().len()
            );
        }
    }

    #[test]
    fn txn_id_known_value() {
        // sha256("$x") = 2c0e6e...; pinned so the id never changes across
        // releases (a change would defeat deduplication during an upgrade).
        let id = txn_id_for(event_id!("$x"), 0);
        let digest = Sha256::digest(b"$x");
        assert_eq!(
            id.as_str(),
            format!("sfc-{}-0", to_hex(&digest[..TXN_ID_HASH_BYTES]))
        );
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn reply_has_markdown_and_relation() {
        let event = event_id!("$orig");
        let sender = user_id!("@alice:example.org");
        let content = reply_content("**hello** _world_", ReplyMetadata::new(event, sender, None));
        let MessageType::Text(text) = &content.msgtype else {
            panic!("not m.text: {:?}", content.msgtype);
        };
        assert_eq!(text.body, "**hello** _world_");
        let html = &text.formatted.as_ref().expect("formatted body").body;
        assert!(html.contains("<strong>hello</strong>"), "{html}");
        match &content.relates_to {
            Some(Relation::Reply(reply)) => assert_eq!(reply.in_reply_to.event_id, event),
            other => panic!("not a reply: {other:?}"),
        }
        let mentions = content.mentions.as_ref().expect("mentions");
        assert!(mentions.user_ids.contains(sender));
    }

    #[test]
    fn plain_text_reply_has_no_html() {
        let content = reply_content(
            "just words",
            ReplyMetadata::new(event_id!("$orig"), user_id!("@a:b.c"), None),
        );
        let MessageType::Text(text) = &content.msgtype else {
            panic!("not m.text");
        };
        assert!(text.formatted.is_none());
    }
}
