//! The Bot API calls the adapter makes, with one error type and its retry classification.
//!
//! Why this exists: the adapter's other files speak in [`Place`]s and rendered text; this
//! file is the only one that builds `frankenstein` requests, reads their answers and maps
//! what went wrong to [`TelegramError`] (and from there to the core's [`SurfaceError`]).
//! Downloads (`getFile`'s path under `/file/bot<token>/`) are read here too, capped while
//! they stream, since the crate does not fetch file contents.

use std::path::PathBuf;
use std::time::Duration;

use frankenstein::client_reqwest::Bot;
use frankenstein::methods::{
    CreateForumTopicParams, DeleteWebhookParams, EditForumTopicParams, EditMessageTextParams,
    GetFileParams, GetUpdatesParams, SendChatActionParams, SendDocumentParams, SendMessageParams,
    SendPhotoParams, SetMyCommandsParams,
};
use frankenstein::types::{BotCommand, ChatAction, LinkPreviewOptions, ReplyParameters};
use frankenstein::updates::Update;
use frankenstein::{AsyncTelegramApi, ParseMode};
use futures_util::StreamExt;

use super::ids::Place;
use crate::retry::{RetryKind, Retryable};
use crate::surface::SurfaceError;

/// How long a request may take beyond the long-poll wait before it is given up.
const REQUEST_MARGIN: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bot API error code of a rejected token.
const UNAUTHORIZED: u64 = 401;
/// Bot API error code of too many requests (with `retry_after`).
const TOO_MANY_REQUESTS: u64 = 429;
/// What the Bot API says when an edit would not change the message.
const NOT_MODIFIED: &str = "message is not modified";
/// What the Bot API says when the HTML of a message does not parse.
const CANNOT_PARSE: &str = "can't parse entities";

/// A failed Bot API call.
#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    /// The Bot API answered with an error.
    #[error("the Bot API refused {method}: {description} (error {code})")]
    Api {
        /// The method called.
        method: &'static str,
        /// Its error code (HTTP-like).
        code: u64,
        /// What it said.
        description: String,
        /// How long it asked us to wait, if it did.
        retry_after: Option<Duration>,
    },
    /// The Bot API could not be reached, or did not answer in time.
    #[error("cannot reach the Bot API for {method}: {message}")]
    Network {
        /// The method called.
        method: &'static str,
        /// What went wrong (the URL, which holds the token, is never included).
        message: String,
    },
    /// The answer could not be read.
    #[error("the Bot API's answer to {method} could not be read: {message}")]
    Garbled {
        /// The method called.
        method: &'static str,
        /// What was wrong with it.
        message: String,
    },
    /// A file is over a limit.
    #[error("the file is over the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// A local step failed (writing an upload's temporary file).
    #[error("{0}")]
    Local(String),
}

impl TelegramError {
    fn from_crate(method: &'static str, error: frankenstein::Error) -> Self {
        match error {
            frankenstein::Error::Api(response) => TelegramError::Api {
                method,
                code: response.error_code,
                description: response.description,
                retry_after: response
                    .parameters
                    .and_then(|p| p.retry_after)
                    .map(|s| Duration::from_secs(u64::from(s))),
            },
            frankenstein::Error::HttpReqwest(e) => TelegramError::Network {
                method,
                message: e.without_url().to_string(),
            },
            other => TelegramError::Garbled {
                method,
                message: other.to_string(),
            },
        }
    }

    /// Whether the Bot API rejected the token.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, TelegramError::Api { code, .. } if *code == UNAUTHORIZED)
    }

    fn says(&self, words: &str) -> bool {
        matches!(self, TelegramError::Api { description, .. }
            if description.to_ascii_lowercase().contains(words))
    }

    /// The core's error for this failure while doing `context`.
    pub fn into_surface(self, context: impl Into<String>) -> SurfaceError {
        if self.is_unauthorized() {
            return SurfaceError::InvalidCredentials(
                "the Bot API rejected the bot's token: fix telegram.token \
                 (SURFACES__TELEGRAM__TOKEN), then restart"
                    .to_owned(),
            );
        }
        let retry = self.retry_kind();
        SurfaceError::failed(context, retry, self)
    }
}

impl Retryable for TelegramError {
    fn retry_kind(&self) -> RetryKind {
        match self {
            TelegramError::Api {
                code, retry_after, ..
            } if *code == TOO_MANY_REQUESTS || *code >= 500 => RetryKind::Transient {
                retry_after: *retry_after,
            },
            TelegramError::Api { .. }
            | TelegramError::TooLarge { .. }
            | TelegramError::Local(_) => RetryKind::Permanent,
            TelegramError::Network { .. } => RetryKind::Network,
            TelegramError::Garbled { .. } => RetryKind::Transient { retry_after: None },
        }
    }
}

/// What `getMe` says about the bot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Me {
    /// Its user id.
    pub id: u64,
    /// Its username, if any.
    pub username: Option<String>,
    /// Whether it has topics in private chats (BotFather's threaded mode, Bot API 9.3).
    pub has_topics_enabled: bool,
}

/// One update as polled.
#[derive(Debug)]
pub enum Polled {
    /// An update this build can read.
    Update(Box<Update>),
    /// One it cannot (its id, when even that is unreadable, is `None`).
    Unreadable {
        /// Its `update_id`, if readable.
        update_id: Option<u32>,
        /// Why it could not be read.
        error: String,
    },
}

impl Polled {
    /// Reads one update leniently: one this build cannot read keeps its id when it has one.
    pub fn read(value: serde_json::Value) -> Self {
        let update_id = value
            .get("update_id")
            .and_then(serde_json::Value::as_u64)
            .and_then(|id| u32::try_from(id).ok());
        match serde_json::from_value::<Update>(value) {
            Ok(update) => Polled::Update(Box::new(update)),
            Err(error) => Polled::Unreadable {
                update_id,
                error: error.to_string(),
            },
        }
    }

    /// The update's id, if known.
    pub fn update_id(&self) -> Option<u32> {
        match self {
            Polled::Update(update) => Some(update.update_id),
            Polled::Unreadable { update_id, .. } => *update_id,
        }
    }
}

/// A file's contents to upload: a temporary file, removed when this is dropped.
pub struct Upload {
    path: PathBuf,
}

impl Upload {
    /// Writes `data` to a fresh file in `dir` named `name` (the name people see).
    pub async fn write(
        dir: &std::path::Path,
        name: &str,
        data: &[u8],
    ) -> Result<Self, TelegramError> {
        let local = |e: std::io::Error| TelegramError::Local(format!("preparing an upload: {e}"));
        let folder = dir.join(format!("up-{:016x}", fastrand::u64(..)));
        tokio::fs::create_dir_all(&folder).await.map_err(local)?;
        let path = folder.join(name);
        tokio::fs::write(&path, data).await.map_err(local)?;
        Ok(Self { path })
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(folder) = self.path.parent() {
            if let Err(error) = std::fs::remove_dir_all(folder) {
                tracing::warn!(%error, path = %folder.display(), "cannot remove an upload's temporary file");
            }
        }
    }
}

/// The Bot API of one bot.
#[derive(Clone)]
pub struct Api {
    bot: Bot,
    http: reqwest::Client,
    /// `<base>/file/bot<token>`: where downloads come from.
    file_base: String,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

impl Api {
    /// The Bot API at `base` (e.g. `https://api.telegram.org`) for the bot with `token`;
    /// requests may take up to `poll_timeout` plus a margin (long polling).
    pub fn new(base: &str, token: &str, poll_timeout: Duration) -> Result<Self, TelegramError> {
        let base = base.trim_end_matches('/');
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(poll_timeout + REQUEST_MARGIN)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| TelegramError::Local(format!("building the HTTP client: {e}")))?;
        let bot = Bot::builder()
            .api_url(format!("{base}/bot{token}"))
            .client(http.clone())
            .build();
        Ok(Self {
            bot,
            http,
            file_base: format!("{base}/file/bot{token}"),
        })
    }

    /// The bot itself: its id, username and whether it has topics in private chats. Read
    /// leniently (only these fields), so a Bot API server that leaves others out still works.
    pub async fn me(&self) -> Result<Me, TelegramError> {
        let value = self.raw("getMe", None::<()>).await?;
        let id = value
            .get("id")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| TelegramError::Garbled {
                method: "getMe",
                message: "no numeric id".to_owned(),
            })?;
        Ok(Me {
            id,
            username: value
                .get("username")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            has_topics_enabled: value
                .get("has_topics_enabled")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// Calls `method` and returns its `result` as JSON (read by the caller for the fields it
    /// needs: answers of servers that differ in the rest are still understood).
    async fn raw<P>(
        &self,
        method: &'static str,
        params: Option<P>,
    ) -> Result<serde_json::Value, TelegramError>
    where
        P: serde::Serialize + std::fmt::Debug + Send,
    {
        self.bot
            .request(method, params)
            .await
            .map(|r: frankenstein::response::MethodResponse<serde_json::Value>| r.result)
            .map_err(|e| TelegramError::from_crate(method, e))
    }

    /// The `message_id` of a sent message (`result` of a send method).
    fn message_id(method: &'static str, result: &serde_json::Value) -> Result<i32, TelegramError> {
        result
            .get("message_id")
            .and_then(serde_json::Value::as_i64)
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| TelegramError::Garbled {
                method,
                message: "no message_id in the sent message".to_owned(),
            })
    }

    /// Long polling needs no webhook: removes one (keeping pending updates).
    pub async fn delete_webhook(&self) -> Result<(), TelegramError> {
        let params = DeleteWebhookParams::builder()
            .drop_pending_updates(false)
            .build();
        self.raw("deleteWebhook", Some(params)).await.map(drop)
    }

    /// Updates from `offset` on (which acknowledges every update before it), waiting up to
    /// `timeout` for one. Each is read on its own: one that cannot be read (a kind newer than
    /// this build, a malformed one) is reported, never the whole answer lost.
    pub async fn updates(
        &self,
        offset: i64,
        timeout: Duration,
        limit: u32,
    ) -> Result<Vec<Polled>, TelegramError> {
        let params = GetUpdatesParams::builder()
            .offset(offset)
            .timeout(u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX))
            .limit(limit)
            .build();
        let raw: Vec<serde_json::Value> = self
            .bot
            .request("getUpdates", Some(params))
            .await
            .map(|r: frankenstein::response::MethodResponse<Vec<serde_json::Value>>| r.result)
            .map_err(|e| TelegramError::from_crate("getUpdates", e))?;
        Ok(raw.into_iter().map(Polled::read).collect())
    }

    /// Has Telegram POST updates to `url` with `secret` in every call's
    /// `X-Telegram-Bot-Api-Secret-Token`, keeping the updates still pending (they are then
    /// delivered to the webhook). The kinds of update are left as polling leaves them.
    pub async fn set_webhook(
        &self,
        url: &str,
        secret: &str,
        max_connections: Option<u32>,
    ) -> Result<(), TelegramError> {
        let mut params = serde_json::json!({
            "url": url,
            "secret_token": secret,
            "drop_pending_updates": false,
        });
        if let (Some(max), Some(map)) = (max_connections, params.as_object_mut()) {
            map.insert("max_connections".to_owned(), max.into());
        }
        self.raw("setWebhook", Some(params)).await.map(drop)
    }

    /// Sends `html` (Telegram HTML) to `place`, answering message `reply_to` of the same chat;
    /// if the HTML does not parse there, `plain` is sent as plain text instead.
    pub async fn send_text(
        &self,
        place: Place,
        html: &str,
        plain: &str,
        reply_to: Option<i32>,
    ) -> Result<i32, TelegramError> {
        let reply = reply_to.map(|message_id| {
            ReplyParameters::builder()
                .message_id(message_id)
                .allow_sending_without_reply(true)
                .build()
        });
        let params = |text: &str, html: bool| {
            SendMessageParams::builder()
                .chat_id(place.chat)
                .maybe_message_thread_id(place.thread)
                .text(text)
                .maybe_parse_mode(html.then_some(ParseMode::Html))
                .link_preview_options(LinkPreviewOptions::builder().is_disabled(true).build())
                .maybe_reply_parameters(reply.clone())
                .build()
        };
        let sent = match self.raw("sendMessage", Some(params(html, true))).await {
            Err(error) if error.says(CANNOT_PARSE) => {
                tracing::warn!(%error, "Telegram refused a reply's HTML; sending it as plain text");
                self.raw("sendMessage", Some(params(plain, false))).await?
            }
            sent => sent?,
        };
        Self::message_id("sendMessage", &sent)
    }

    /// Replaces the text of message `message` of `chat` (unchanged text is not an error).
    pub async fn edit_text(
        &self,
        chat: i64,
        message: i32,
        html: &str,
        plain: &str,
    ) -> Result<(), TelegramError> {
        let params = |text: &str, html: bool| {
            EditMessageTextParams::builder()
                .chat_id(chat)
                .message_id(message)
                .text(text)
                .maybe_parse_mode(html.then_some(ParseMode::Html))
                .link_preview_options(LinkPreviewOptions::builder().is_disabled(true).build())
                .build()
        };
        let mut result = self
            .raw("editMessageText", Some(params(html, true)))
            .await
            .map(drop);
        if matches!(&result, Err(e) if e.says(CANNOT_PARSE)) {
            result = self
                .raw("editMessageText", Some(params(plain, false)))
                .await
                .map(drop);
        }
        match result {
            Err(error) if error.says(NOT_MODIFIED) => Ok(()),
            other => other,
        }
    }

    /// Shows "typing…" in `place` for about five seconds.
    pub async fn typing(&self, place: Place) -> Result<(), TelegramError> {
        let params = SendChatActionParams::builder()
            .chat_id(place.chat)
            .maybe_message_thread_id(place.thread)
            .action(ChatAction::Typing)
            .build();
        self.raw("sendChatAction", Some(params)).await.map(drop)
    }

    /// Makes a topic named `name` in `chat`; returns its thread id.
    pub async fn create_topic(&self, chat: i64, name: &str) -> Result<i32, TelegramError> {
        let params = CreateForumTopicParams::builder()
            .chat_id(chat)
            .name(name)
            .build();
        self.bot
            .create_forum_topic(&params)
            .await
            .map(|r| r.result.message_thread_id)
            .map_err(|e| TelegramError::from_crate("createForumTopic", e))
    }

    /// Renames topic `thread` of `chat`.
    pub async fn rename_topic(
        &self,
        chat: i64,
        thread: i32,
        name: &str,
    ) -> Result<(), TelegramError> {
        let params = EditForumTopicParams::builder()
            .chat_id(chat)
            .message_thread_id(thread)
            .name(name)
            .build();
        self.raw("editForumTopic", Some(params)).await.map(drop)
    }

    /// Registers the commands clients offer after `/`.
    pub async fn set_commands(&self, commands: &[(&str, &str)]) -> Result<(), TelegramError> {
        let commands = commands
            .iter()
            .map(|(command, description)| {
                BotCommand::builder()
                    .command(*command)
                    .description(*description)
                    .build()
            })
            .collect();
        let params = SetMyCommandsParams::builder().commands(commands).build();
        self.raw("setMyCommands", Some(params)).await.map(drop)
    }

    /// Posts the file in `upload` to `place`, as a photo when `photo`, else as a document.
    pub async fn send_file(
        &self,
        place: Place,
        upload: &Upload,
        photo: bool,
    ) -> Result<i32, TelegramError> {
        let file = frankenstein::input_file::InputFile {
            path: upload.path.clone(),
        };
        let sent = if photo {
            let params = SendPhotoParams::builder()
                .chat_id(place.chat)
                .maybe_message_thread_id(place.thread)
                .photo(file)
                .build();
            self.bot
                .send_photo(&params)
                .await
                .map_err(|e| TelegramError::from_crate("sendPhoto", e))
        } else {
            let params = SendDocumentParams::builder()
                .chat_id(place.chat)
                .maybe_message_thread_id(place.thread)
                .document(file)
                .build();
            self.bot
                .send_document(&params)
                .await
                .map_err(|e| TelegramError::from_crate("sendDocument", e))
        };
        sent.map(|r| r.result.message_id)
    }

    /// Downloads the file `file_id`, refusing past `max_bytes` without keeping more.
    pub async fn download(&self, file_id: &str, max_bytes: u64) -> Result<Vec<u8>, TelegramError> {
        let params = GetFileParams::builder().file_id(file_id).build();
        let file = self
            .bot
            .get_file(&params)
            .await
            .map(|r| r.result)
            .map_err(|e| TelegramError::from_crate("getFile", e))?;
        if file.file_size.is_some_and(|size| size > max_bytes) {
            return Err(TelegramError::TooLarge { limit: max_bytes });
        }
        let path = file.file_path.ok_or_else(|| TelegramError::Garbled {
            method: "getFile",
            message: "no file_path (the file is over the Bot API's download limit)".to_owned(),
        })?;
        let network = |e: reqwest::Error| TelegramError::Network {
            method: "file download",
            message: e.without_url().to_string(),
        };
        let response = self
            .http
            .get(format!(
                "{}/{}",
                self.file_base,
                path.trim_start_matches('/')
            ))
            .send()
            .await
            .map_err(network)?;
        let status = response.status();
        if !status.is_success() {
            return Err(TelegramError::Api {
                method: "file download",
                code: u64::from(status.as_u16()),
                description: status.to_string(),
                retry_after: None,
            });
        }
        let mut data = Vec::new();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(network)?;
            if u64::try_from(data.len() + chunk.len()).unwrap_or(u64::MAX) > max_bytes {
                return Err(TelegramError::TooLarge { limit: max_bytes });
            }
            data.extend_from_slice(&chunk);
        }
        Ok(data)
    }
}
