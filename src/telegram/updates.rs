//! What a Telegram update means for the core: a message of a conversation, a knock on the
//! person's home, or nothing. Pure, table-tested.
//!
//! Why this exists: Telegram delivers everything a bot may see as updates; the core wants
//! [`Incoming`] messages in its own terms. The decisions — which chats are conversations
//! (topics of a private chat, or the private chat itself when topics are off), what a
//! slash command becomes, which file a photo is, what is ignored and why — are made here,
//! apart from the polling loop that carries them out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use frankenstein::types::{ChatType, Message};
use frankenstein::updates::{Update, UpdateContent};
use serde::{Deserialize, Serialize};

use super::ids::{self, Place};
use crate::surface::{FileRef, Incoming, IncomingBody, IncomingFile, MessageId, PersonId};

/// How conversations map onto a person's private chat with the bot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Each conversation is a topic; the private chat's root is the person's home.
    Topics,
    /// Topics are unavailable: the private chat is the person's one conversation.
    Single,
}

/// What an update asks of the adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A message (or an edit) of a conversation, for the core.
    Message(Incoming),
    /// A person wrote in the root of their private chat (topics mode): their home. They are
    /// onboarded (first time) or shown where their conversations are.
    Home {
        /// The private chat.
        place: Place,
        /// Who wrote.
        person: PersonId,
    },
    /// A kind of message the bot cannot pass on (a sticker, a location…): the person is told.
    Unsupported {
        /// Where it was written.
        place: Place,
    },
    /// Nothing to do; the reason is for the debug log.
    Ignore(&'static str),
}

/// Where the adapter fetches a file: its Bot API `file_id` (the core keeps it opaque).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSource {
    /// The Bot API's id of the file.
    pub file_id: String,
}

/// The slash commands Telegram clients offer (`setMyCommands`), with what they do.
pub const SLASH_COMMANDS: &[(&str, &str)] = &[
    ("new", "Start a new conversation"),
    ("clear", "Start this conversation afresh"),
    ("agent", "Show or pick the agent"),
    ("save", "Save this conversation's context"),
    ("load", "Load a saved context"),
    ("context", "Show what the agent remembers"),
    ("cancel", "Stop the answer in progress"),
    ("settings", "Show this conversation's settings"),
    ("help", "What I can do"),
];

/// What the update means, for a bot whose own user id is `bot`.
pub fn decide(update: &Update, mode: Mode, bot: u64) -> Decision {
    match &update.content {
        UpdateContent::Message(message) => new_message(message, mode, bot),
        UpdateContent::EditedMessage(message) => edited(message, mode, bot),
        _ => Decision::Ignore("not a message"),
    }
}

/// The place of a private-chat message from a person; `Err` says why it is ignored.
fn origin(
    message: &Message,
    mode: Mode,
    bot: u64,
) -> Result<(Place, PersonId, String), &'static str> {
    if message.chat.type_field != ChatType::Private {
        return Err("not a private chat (groups and channels are not served)");
    }
    let Some(from) = message.from.as_deref() else {
        return Err("no sender");
    };
    if from.is_bot || from.id == bot {
        return Err("written by a bot");
    }
    let place = match (mode, message.message_thread_id) {
        (Mode::Topics, Some(thread)) if message.is_topic_message == Some(true) => {
            Place::topic(message.chat.id, thread)
        }
        _ => Place::chat(message.chat.id),
    };
    let name = match &from.last_name {
        Some(last) => format!("{} {last}", from.first_name),
        None => from.first_name.clone(),
    };
    Ok((place, ids::person_id(from.id), name))
}

fn new_message(message: &Message, mode: Mode, bot: u64) -> Decision {
    let (place, person, name) = match origin(message, mode, bot) {
        Ok(origin) => origin,
        Err(reason) => return Decision::Ignore(reason),
    };
    if mode == Mode::Topics && place.thread.is_none() {
        return Decision::Home { place, person };
    }
    let body = if let Some(text) = &message.text {
        IncomingBody::Text(command_text(text))
    } else if let Some(file) = attached_file(message) {
        IncomingBody::File(file)
    } else {
        return Decision::Unsupported { place };
    };
    Decision::Message(Incoming {
        chat: ids::chat_id(place),
        id: ids::message_id(message.chat.id, message.message_id),
        sender: person,
        display_name: Some(name),
        body,
        origin_ts: Some(sent_at(message.date)),
    })
}

fn edited(message: &Message, mode: Mode, bot: u64) -> Decision {
    let (place, person, name) = match origin(message, mode, bot) {
        Ok(origin) => origin,
        Err(reason) => return Decision::Ignore(reason),
    };
    if mode == Mode::Topics && place.thread.is_none() {
        return Decision::Ignore("an edit in the home");
    }
    let Some(text) = &message.text else {
        return Decision::Ignore("an edit without text");
    };
    let of = ids::message_id(message.chat.id, message.message_id);
    // Each edit is a message of its own for the core (an id no other message has).
    let id = MessageId::new(format!("{of}/edit-{}", message.edit_date.unwrap_or(0)));
    Decision::Message(Incoming {
        chat: ids::chat_id(place),
        id,
        sender: person,
        display_name: Some(name),
        body: IncomingBody::Edit {
            of,
            text: command_text(text),
        },
        origin_ts: Some(sent_at(message.edit_date.unwrap_or(message.date))),
    })
}

/// When Telegram says a message was sent (`date`, seconds since the epoch).
fn sent_at(date: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(date)
}

/// A slash command as the core's `!` command (`/new@surfaces_bot Work` → `!new Work`;
/// `/start`, which clients send first, → `!help`); any other text as it is.
pub fn command_text(text: &str) -> String {
    let Some(rest) = text.strip_prefix('/') else {
        return text.to_owned();
    };
    let (head, tail) = match rest.find(char::is_whitespace) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let name = head.split_once('@').map_or(head, |(name, _)| name);
    let is_command = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !is_command {
        return text.to_owned();
    }
    let name = if name == "start" { "help" } else { name };
    format!("!{name}{tail}")
}

/// The file a message carries (the largest size of a photo), if any.
fn attached_file(message: &Message) -> Option<IncomingFile> {
    let caption = message.caption.clone();
    let file = |file_id: &str, name: String, mime: Option<String>, size: Option<u64>| {
        let source = serde_json::to_string(&FileSource {
            file_id: file_id.to_owned(),
        })
        .ok()?;
        Some(IncomingFile {
            name,
            mime,
            size,
            caption: caption.clone(),
            source: FileRef(source),
        })
    };
    let n = message.message_id;
    if let Some(doc) = &message.document {
        let name = doc.file_name.clone().unwrap_or_else(|| format!("file-{n}"));
        return file(&doc.file_id, name, doc.mime_type.clone(), doc.file_size);
    }
    if let Some(largest) = message.photo.as_ref().and_then(|sizes| {
        sizes
            .iter()
            .max_by_key(|p| u64::from(p.width) * u64::from(p.height))
    }) {
        return file(
            &largest.file_id,
            format!("photo-{n}.jpg"),
            Some("image/jpeg".to_owned()),
            largest.file_size,
        );
    }
    if let Some(audio) = &message.audio {
        let name = audio
            .file_name
            .clone()
            .unwrap_or_else(|| format!("audio-{n}"));
        return file(
            &audio.file_id,
            name,
            audio.mime_type.clone(),
            audio.file_size,
        );
    }
    if let Some(video) = &message.video {
        let name = video
            .file_name
            .clone()
            .unwrap_or_else(|| format!("video-{n}.mp4"));
        return file(
            &video.file_id,
            name,
            video.mime_type.clone(),
            video.file_size,
        );
    }
    if let Some(voice) = &message.voice {
        return file(
            &voice.file_id,
            format!("voice-{n}.ogg"),
            voice
                .mime_type
                .clone()
                .or_else(|| Some("audio/ogg".to_owned())),
            voice.file_size,
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOT: u64 = 999;

    fn update(content: serde_json::Value) -> Update {
        let mut value = serde_json::json!({ "update_id": 1 });
        if let (Some(map), Some(extra)) = (value.as_object_mut(), content.as_object()) {
            map.extend(extra.clone());
        }
        serde_json::from_value(value).expect("a valid update")
    }

    fn message(extra: serde_json::Value) -> serde_json::Value {
        let mut value = serde_json::json!({
            "message_id": 5,
            "date": 1,
            "chat": { "id": 42, "type": "private", "first_name": "Ann" },
            "from": { "id": 42, "is_bot": false, "first_name": "Ann", "last_name": "Lee" },
        });
        if let (Some(map), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            map.extend(extra.clone());
        }
        value
    }

    fn text_in(chat: &str, text: &str) -> Decision {
        Decision::Message(Incoming {
            chat: crate::surface::ChatId::new(chat),
            id: MessageId::new("telegram:42:5"),
            sender: PersonId::new("telegram:42"),
            display_name: Some("Ann Lee".to_owned()),
            body: IncomingBody::Text(text.to_owned()),
            origin_ts: Some(UNIX_EPOCH + Duration::from_secs(1)),
        })
    }

    #[test]
    fn updates_table() {
        use serde_json::json;
        let topic = json!({ "message_thread_id": 3, "is_topic_message": true });
        let mut in_topic = message(json!({ "text": "hi" }));
        if let (Some(m), Some(t)) = (in_topic.as_object_mut(), topic.as_object()) {
            m.extend(t.clone());
        }
        let table: Vec<(&str, serde_json::Value, Mode, Decision)> = vec![
            (
                "text in a topic",
                json!({ "message": in_topic.clone() }),
                Mode::Topics,
                text_in("telegram:42/3", "hi"),
            ),
            (
                "topic ignored when topics are off",
                json!({ "message": in_topic }),
                Mode::Single,
                text_in("telegram:42", "hi"),
            ),
            (
                "root in topics mode is the home",
                json!({ "message": message(json!({ "text": "hi" })) }),
                Mode::Topics,
                Decision::Home {
                    place: Place::chat(42),
                    person: PersonId::new("telegram:42"),
                },
            ),
            (
                "root in single mode is the conversation",
                json!({ "message": message(json!({ "text": "/new@bot Work" })) }),
                Mode::Single,
                text_in("telegram:42", "!new Work"),
            ),
            (
                "a sticker is unsupported",
                json!({ "message": message(json!({ "sticker": { "file_id": "s", "file_unique_id": "u", "type": "regular", "width": 1, "height": 1, "is_animated": false, "is_video": false } })) }),
                Mode::Single,
                Decision::Unsupported {
                    place: Place::chat(42),
                },
            ),
            (
                "groups are not served",
                json!({ "message": message(json!({ "text": "x", "chat": { "id": -5, "type": "group", "title": "g" } })) }),
                Mode::Single,
                Decision::Ignore("not a private chat (groups and channels are not served)"),
            ),
            (
                "bots are not served",
                json!({ "message": message(json!({ "text": "x", "from": { "id": 7, "is_bot": true, "first_name": "b" } })) }),
                Mode::Single,
                Decision::Ignore("written by a bot"),
            ),
            (
                "not a message",
                json!({ "poll_answer": { "poll_id": "p", "option_ids": [], "option_persistent_ids": [] } }),
                Mode::Single,
                Decision::Ignore("not a message"),
            ),
        ];
        for (name, content, mode, expected) in table {
            assert_eq!(decide(&update(content), mode, BOT), expected, "{name}");
        }
    }

    #[test]
    fn files_and_edits() {
        use serde_json::json;
        let doc = update(json!({ "message": message(json!({
            "document": { "file_id": "F1", "file_unique_id": "u", "file_name": "a.pdf", "mime_type": "application/pdf", "file_size": 10 },
            "caption": "read this" })) }));
        let Decision::Message(incoming) = decide(&doc, Mode::Single, BOT) else {
            panic!("a message")
        };
        let IncomingBody::File(file) = incoming.body else {
            panic!("a file")
        };
        assert_eq!(
            (file.name.as_str(), file.size, file.caption.as_deref()),
            ("a.pdf", Some(10), Some("read this"))
        );
        let source: FileSource = serde_json::from_str(&file.source.0).expect("file source");
        assert_eq!(source.file_id, "F1");

        let photo = update(json!({ "message": message(json!({ "photo": [
            { "file_id": "small", "file_unique_id": "a", "width": 90, "height": 90 },
            { "file_id": "big", "file_unique_id": "b", "width": 800, "height": 600, "file_size": 5000 } ] })) }));
        let Decision::Message(incoming) = decide(&photo, Mode::Single, BOT) else {
            panic!("a message")
        };
        let IncomingBody::File(file) = incoming.body else {
            panic!("a file")
        };
        assert_eq!(
            (file.name.as_str(), file.mime.as_deref()),
            ("photo-5.jpg", Some("image/jpeg"))
        );
        assert!(file.source.0.contains("big"));

        let edit = update(
            json!({ "edited_message": message(json!({ "text": "fixed", "edit_date": 9 })) }),
        );
        let Decision::Message(incoming) = decide(&edit, Mode::Single, BOT) else {
            panic!("a message")
        };
        assert_eq!(incoming.id.as_str(), "telegram:42:5/edit-9");
        assert_eq!(
            incoming.body,
            IncomingBody::Edit {
                of: MessageId::new("telegram:42:5"),
                text: "fixed".to_owned()
            }
        );
    }

    #[test]
    fn slash_commands_become_bang_commands() {
        let table = [
            ("/new", "!new"),
            ("/new Work stuff", "!new Work stuff"),
            ("/clear@surfaces_bot", "!clear"),
            ("/start", "!help"),
            ("/Upper", "/Upper"),
            ("/ not a command", "/ not a command"),
            ("/usr/bin/env", "/usr/bin/env"),
            ("hello /new", "hello /new"),
            ("!new", "!new"),
        ];
        for (text, expected) in table {
            assert_eq!(command_text(text), expected, "{text:?}");
        }
    }
}
