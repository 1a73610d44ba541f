//! Telegram as the core's [`Surface`]: sending, editing, typing, files and topics.
//!
//! Why this exists: the core says what to show; this file shows it with Bot API calls.
//! Replies are rendered to Telegram HTML ([`super::render`]); sends with a key are made
//! idempotent by the adapter's own record ([`SentLog`]), since Telegram has no transaction
//! ids; "typing…" lasts five seconds on Telegram, so it is refreshed while it is on; a new
//! conversation is a topic of the person's private chat ([`Mode::Topics`]) or, when topics
//! are off, the private chat itself (one conversation). Telegram keeps no chat state, so
//! bindings live in the core's store only ([`Capabilities::chat_state`] is false).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::api::{Api, TelegramError, Upload};
use super::ids::{self, Place};
use super::render;
use super::sent::SentLog;
use super::updates::{FileSource, Mode};
use crate::retry::RetryKind;
use crate::surface::{
    Binding, Capabilities, ChatFacts, ChatId, FetchError, HomePrefs, Inbound, IncomingFile,
    MessageId, NewChat, OutFile, OutMessage, PersonId, SendKey, Surface, SurfaceError,
};

/// The surface's name: its records' key in the store, and a metrics label.
pub const SURFACE_NAME: &str = "telegram";
/// How often "typing…" is shown again while it is on (Telegram shows it for 5 s).
pub const TYPING_REFRESH: Duration = Duration::from_secs(4);
/// The longest "typing…" is kept up without being switched off (a turn that never ends).
pub const TYPING_MAX: Duration = Duration::from_secs(10 * 60);
/// The largest file the Bot API lets a bot upload.
pub const MAX_UPLOAD_BYTES: u64 = 50 * 1024 * 1024;
/// The largest photo the Bot API takes as a photo (bigger images go as documents).
pub const MAX_PHOTO_BYTES: u64 = 10 * 1024 * 1024;
/// Image types Telegram shows as photos.
const PHOTO_TYPES: &[&str] = &["image/jpeg", "image/png", "image/webp"];

/// What the surface is built from.
pub struct SurfaceParts {
    /// The Bot API.
    pub api: Api,
    /// The bot's user id.
    pub bot_id: u64,
    /// Topics or one conversation per private chat.
    pub mode: Mode,
    /// The record of sent messages.
    pub sent: SentLog,
    /// Where uploads are staged.
    pub uploads: PathBuf,
}

/// Telegram, as the core sees it.
pub struct TelegramSurface {
    api: Api,
    bot: PersonId,
    mode: Mode,
    sent: SentLog,
    uploads: PathBuf,
    /// Chats showing "typing…", with the task refreshing it.
    typing: Mutex<HashMap<ChatId, tokio::task::AbortHandle>>,
    /// The core's inbound side (set when the connector prepares): whether a private chat is
    /// already a conversation. Weak: the core holds this surface (through its chats), so a
    /// strong reference would keep both alive after the runtime stops.
    pub(super) inbound: OnceLock<Weak<dyn Inbound>>,
}

impl std::fmt::Debug for TelegramSurface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramSurface")
            .field("bot", &self.bot)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

fn place_of(chat: &ChatId) -> Result<Place, SurfaceError> {
    ids::parse_chat(chat).ok_or_else(|| SurfaceError::UnknownChat(chat.to_string()))
}

impl TelegramSurface {
    /// The surface over `parts`.
    pub fn new(parts: SurfaceParts) -> Self {
        Self {
            api: parts.api,
            bot: ids::person_id(parts.bot_id),
            mode: parts.mode,
            sent: parts.sent,
            uploads: parts.uploads,
            typing: Mutex::new(HashMap::new()),
            inbound: OnceLock::new(),
        }
    }

    /// Topics or one conversation per private chat.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The Bot API.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// The message `key` already became, if it was sent.
    fn already_sent(&self, key: Option<&SendKey>) -> Option<MessageId> {
        let record = self.sent.get(key?)?;
        Some(ids::message_id(record.chat, record.message))
    }

    /// Records what `key` became (a failure only loses the deduplication, so it is logged).
    async fn record_sent(&self, key: Option<&SendKey>, chat: i64, message: i32) {
        if let Some(key) = key {
            if let Err(error) = self.sent.put(key, chat, message).await {
                tracing::error!(%error, %key, "cannot record a sent Telegram message: \
                    after a restart it may be sent again");
            }
        }
    }

    fn stop_typing(&self, chat: &ChatId) {
        if let Some(task) = self.typing.lock().remove(chat) {
            task.abort();
        }
    }
}

#[async_trait]
impl Surface for TelegramSurface {
    fn name(&self) -> &'static str {
        SURFACE_NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            edits: true,
            chat_state: false,
            homes: false,
            max_message_bytes: Some(render::MAX_MESSAGE_CHARS),
        }
    }

    fn bot(&self) -> &PersonId {
        &self.bot
    }

    async fn send(&self, chat: &ChatId, message: OutMessage) -> Result<MessageId, SurfaceError> {
        let place = place_of(chat)?;
        if let Some(id) = self.already_sent(message.key.as_ref()) {
            return Ok(id);
        }
        // A reply quotes a message of the same chat only (a stranger's id is dropped).
        let reply_to = message
            .reply_to
            .as_ref()
            .and_then(|r| ids::parse_message(&r.message))
            .filter(|(c, _)| *c == place.chat)
            .map(|(_, m)| m);
        let html = render::html(&message.markdown);
        let sent = self
            .api
            .send_text(place, &html, &message.markdown, reply_to)
            .await
            .map_err(|e| e.into_surface(format!("sending to {chat}")))?;
        self.record_sent(message.key.as_ref(), place.chat, sent)
            .await;
        let sent = ids::message_id(place.chat, sent);
        // In the caller's span: the `msg` of the message this answers.
        tracing::debug!(%chat, %sent, "sent to Telegram");
        Ok(sent)
    }

    async fn edit(
        &self,
        chat: &ChatId,
        target: &MessageId,
        message: OutMessage,
    ) -> Result<MessageId, SurfaceError> {
        let place = place_of(chat)?;
        let (target_chat, target_message) = ids::parse_message(target)
            .filter(|(c, _)| *c == place.chat)
            .ok_or_else(|| {
                SurfaceError::failed(
                    format!("editing in {chat}"),
                    RetryKind::Permanent,
                    format!("{target} is not a message of this chat"),
                )
            })?;
        let html = render::html(&message.markdown);
        self.api
            .edit_text(target_chat, target_message, &html, &message.markdown)
            .await
            .map_err(|e| e.into_surface(format!("editing {target}")))?;
        Ok(target.clone())
    }

    async fn typing(&self, chat: &ChatId, on: bool) {
        if !on {
            self.stop_typing(chat);
            return;
        }
        let Some(place) = ids::parse_chat(chat) else {
            return;
        };
        let api = self.api.clone();
        let task = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            while started.elapsed() < TYPING_MAX {
                if let Err(error) = api.typing(place).await {
                    tracing::debug!(%error, "cannot show typing on Telegram");
                }
                tokio::time::sleep(TYPING_REFRESH).await;
            }
        });
        if let Some(old) = self.typing.lock().insert(chat.clone(), task.abort_handle()) {
            old.abort();
        }
    }

    async fn mark_read(&self, _chat: &ChatId, _message: &MessageId) {
        // The Bot API has no read receipts: people see the bot read a message when it
        // answers (typing first).
    }

    async fn fetch_file(&self, file: &IncomingFile, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
        if file.size.is_some_and(|size| size > max_bytes) {
            return Err(FetchError::TooLarge { limit: max_bytes });
        }
        let source: FileSource = serde_json::from_str(&file.source.0)
            .map_err(|e| FetchError::Failed(format!("not a Telegram file reference: {e}")))?;
        self.api
            .download(&source.file_id, max_bytes)
            .await
            .map_err(|e| match e {
                TelegramError::TooLarge { limit } => FetchError::TooLarge { limit },
                other => FetchError::Failed(other.to_string()),
            })
    }

    async fn send_file(
        &self,
        chat: &ChatId,
        file: OutFile,
        key: SendKey,
    ) -> Result<MessageId, SurfaceError> {
        let place = place_of(chat)?;
        if let Some(id) = self.already_sent(Some(&key)) {
            return Ok(id);
        }
        let size = u64::try_from(file.data.len()).unwrap_or(u64::MAX);
        if size > MAX_UPLOAD_BYTES {
            return Err(TelegramError::TooLarge {
                limit: MAX_UPLOAD_BYTES,
            }
            .into_surface(format!("posting {} in {chat}", file.name)));
        }
        let photo = size <= MAX_PHOTO_BYTES && PHOTO_TYPES.contains(&file.mime.as_str());
        let upload = Upload::write(&self.uploads, &file.name, &file.data)
            .await
            .map_err(|e| e.into_surface(format!("posting {} in {chat}", file.name)))?;
        let sent = self
            .api
            .send_file(place, &upload, photo)
            .await
            .map_err(|e| e.into_surface(format!("posting {} in {chat}", file.name)))?;
        self.record_sent(Some(&key), place.chat, sent).await;
        Ok(ids::message_id(place.chat, sent))
    }

    async fn accept_invite(&self, _chat: &ChatId) -> Result<(), SurfaceError> {
        // A private chat with the bot needs no joining.
        Ok(())
    }

    async fn decline_invite(&self, _chat: &ChatId) -> Result<(), SurfaceError> {
        // Nothing to leave: the person was told (or not, for a stranger) by the core.
        Ok(())
    }

    async fn create_home(&self, _owner: &PersonId, _name: &str) -> Result<ChatId, SurfaceError> {
        Err(SurfaceError::Unsupported("make homes"))
    }

    async fn create_chat(&self, chat: NewChat) -> Result<ChatId, SurfaceError> {
        let home = place_of(&chat.home)?;
        if ids::parse_person(&chat.owner).and_then(|u| i64::try_from(u).ok()) != Some(home.chat) {
            return Err(SurfaceError::failed(
                "making a conversation",
                RetryKind::Permanent,
                format!("{} is not {}'s private chat", chat.home, chat.owner),
            ));
        }
        match self.mode {
            Mode::Topics => {
                let thread = self
                    .api
                    .create_topic(home.chat, &chat.name)
                    .await
                    .map_err(|e| e.into_surface(format!("making a topic in {}", chat.home)))?;
                Ok(ids::chat_id(Place::topic(home.chat, thread)))
            }
            Mode::Single => {
                let private = ids::chat_id(Place::chat(home.chat));
                let taken = self
                    .inbound
                    .get()
                    .and_then(Weak::upgrade)
                    .is_some_and(|inbound| inbound.is_managed(&private));
                if taken {
                    Err(SurfaceError::Unsupported(
                        "hold a second conversation in a private chat without topics",
                    ))
                } else {
                    Ok(private)
                }
            }
        }
    }

    async fn rename_chat(&self, chat: &ChatId, name: &str) -> Result<(), SurfaceError> {
        match place_of(chat)? {
            Place {
                chat: id,
                thread: Some(thread),
            } => self
                .api
                .rename_topic(id, thread, name)
                .await
                .map_err(|e| e.into_surface(format!("renaming {chat}"))),
            Place { thread: None, .. } => Err(SurfaceError::Unsupported(
                "rename a private chat (only topics have names)",
            )),
        }
    }

    async fn detach_chat(&self, _home: &ChatId, _chat: &ChatId) -> Result<(), SurfaceError> {
        // A topic stays where it is; the archived binding makes it answer with a notice.
        Ok(())
    }

    async fn set_binding(&self, _chat: &ChatId, _binding: &Binding) -> Result<(), SurfaceError> {
        Err(SurfaceError::Unsupported("store bindings"))
    }

    async fn set_home_prefs(
        &self,
        _home: &ChatId,
        _owner: &PersonId,
        _prefs: &HomePrefs,
    ) -> Result<(), SurfaceError> {
        Err(SurfaceError::Unsupported("store preferences"))
    }

    async fn chats(&self) -> Result<Vec<ChatId>, SurfaceError> {
        // No chat state to reconcile: the store is the source of truth on Telegram.
        Ok(Vec::new())
    }

    async fn chat_facts(&self, _chat: &ChatId) -> Result<ChatFacts, SurfaceError> {
        Err(SurfaceError::Unsupported("report chat state"))
    }

    fn help_note(&self) -> Option<&'static str> {
        (self.mode == Mode::Single).then_some(crate::texts::TELEGRAM_NO_TOPICS)
    }
}
