//! A narrow fake of the Telegram Bot API, in process, for the adapter's in-process tests.
//!
//! Why this exists: the only Bot API emulator available from a registry ([`crate::telegram`])
//! has no topics, no files, no chat actions and ignores `getUpdates`' `offset` and `timeout`,
//! yet those are what the Telegram adapter's topics mode, file transfer, "typing…" and
//! crash-safe acknowledgement rest on. This fake implements exactly those parts, for one bot
//! token, shaped as real Telegram answers them (`{"ok":true,"result":…}` or
//! `{"ok":false,"error_code":…,"description":…}` with the HTTP status of the error code), and
//! nothing more: it is no general emulator.
//!
//! The bot talks to [`FakeBotApi::url`] as to `https://api.telegram.org`. The test plays the
//! people ([`FakeBotApi::send_text`], [`FakeBotApi::send_document`]: each becomes an update)
//! and reads what the bot did ([`FakeBotApi::sent`], [`FakeBotApi::edits`],
//! [`FakeBotApi::topics`], [`FakeBotApi::uploads`], [`FakeBotApi::offsets`], …), waiting with
//! [`FakeBotApi::wait_for`]. [`FakeBotApi::fail_next`] makes the next call of a method fail.
//!
//! Semantics kept from Telegram: message ids count per chat (a topic's thread id is the id of
//! the message that created it), update ids count globally; `getUpdates` drops every update
//! below the `offset` it is asked with (that acknowledges them), returns those from it on, and
//! waits up to `timeout` seconds for one, woken as soon as a person writes; an edit to the
//! same text is refused with "message is not modified". Dropping the fake stops its server.
//!
//! Webhooks: `setWebhook` and `deleteWebhook` are recorded ([`FakeBotApi::webhook`],
//! [`FakeBotApi::webhook_calls`]); while a webhook is set, `getUpdates` is refused with 409
//! as Telegram does. The fake does not push updates by itself: the test hands one to the
//! bot's webhook as Telegram would ([`FakeBotApi::post_update`], with the secret header of
//! its choice) and reads the status the bot answered.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::inproc::WAIT;
use crate::wait::{wait_until, POLL};

/// The bot's user id, as `getMe` says.
pub const BOT_ID: u64 = 777_000;
/// The bot's username, as `getMe` says.
pub const BOT_USERNAME: &str = "surfaces_fake_bot";
/// The bot's first name, as `getMe` says.
pub const BOT_FIRST_NAME: &str = "Surfaces";
/// The colour every topic gets (one of the six Telegram allows).
pub const TOPIC_ICON_COLOR: u32 = 7_322_096;
/// The longest long poll the fake honours, whatever the bot asks (Telegram's own cap).
const MAX_POLL_SECS: u64 = 50;
/// The most updates one `getUpdates` returns when no `limit` is asked (Telegram's default).
const DEFAULT_LIMIT: usize = 100;
/// Bot API error: a bad request.
const BAD_REQUEST: u64 = 400;
/// Bot API error: a rejected token.
const UNAUTHORIZED: u64 = 401;
/// Bot API error: an unknown method or file.
const NOT_FOUND: u64 = 404;
/// Bot API error: too many requests.
const TOO_MANY_REQUESTS: u64 = 429;
/// Bot API error: `getUpdates` while a webhook is set.
const CONFLICT: u64 = 409;
/// The header Telegram sends a webhook's `secret_token` in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";
/// How long a webhook call may take (Telegram gives up on a slow webhook too).
const WEBHOOK_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A webhook as the bot set it (`setWebhook`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// Where Telegram would POST updates.
    pub url: String,
    /// The secret Telegram would send in [`SECRET_HEADER`].
    pub secret_token: Option<String>,
    /// The most connections Telegram would open, if the bot said.
    pub max_connections: Option<i64>,
    /// Whether the bot asked to drop the pending updates.
    pub drop_pending_updates: bool,
}

/// A message the bot sent (`sendMessage`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMessage {
    /// The chat (a private chat's id is the person's user id).
    pub chat: i64,
    /// The topic, if it was sent in one.
    pub thread: Option<i32>,
    /// The message it answers (`reply_parameters.message_id`), if any.
    pub reply_to: Option<i32>,
    /// Its text, as sent (HTML when `parse_mode` is `HTML`).
    pub text: String,
    /// Its `parse_mode`, if any.
    pub parse_mode: Option<String>,
    /// The id the fake gave it.
    pub message_id: i32,
}

/// An `editMessageText` the fake accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EditedMessage {
    /// The chat.
    pub chat: i64,
    /// The message edited.
    pub message_id: i32,
    /// Its new text.
    pub text: String,
    /// Its `parse_mode`, if any.
    pub parse_mode: Option<String>,
}

/// A topic the bot made (`createForumTopic`), with its name after any `editForumTopic`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topic {
    /// The chat it is in.
    pub chat: i64,
    /// Its `message_thread_id`.
    pub thread: i32,
    /// The name it was made with.
    pub name: String,
    /// Its name now (renames applied).
    pub current_name: String,
}

/// A file the bot posted (`sendDocument` or `sendPhoto`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    /// `sendDocument` or `sendPhoto`.
    pub method: String,
    /// The chat.
    pub chat: i64,
    /// The topic, if any.
    pub thread: Option<i32>,
    /// The file name of the multipart part.
    pub file_name: String,
    /// The file's bytes.
    pub data: Vec<u8>,
    /// The id the fake gave the message.
    pub message_id: i32,
}

/// A `sendChatAction` (e.g. "typing").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatAction {
    /// The chat.
    pub chat: i64,
    /// The topic, if any.
    pub thread: Option<i32>,
    /// The action (`typing`, …).
    pub action: String,
}

/// One call the bot made.
#[derive(Clone, Debug)]
pub struct Call {
    /// The method.
    pub method: String,
    /// When it arrived.
    pub at: tokio::time::Instant,
    /// The error code it was answered with (injected or not), if it failed.
    pub failed: Option<u64>,
}

/// A file a person sent, for `getFile` and the download route.
struct StoredFile {
    path: String,
    data: Vec<u8>,
}

/// An error to answer the next call of a method with.
struct Failure {
    code: u64,
    retry_after: Option<u64>,
}

#[derive(Default)]
struct Inner {
    next_update_id: i64,
    /// Updates not yet acknowledged, in order.
    queue: VecDeque<Value>,
    /// Every update ever queued, by id (for redelivery).
    history: HashMap<i64, Value>,
    /// The last message id given in each chat.
    last_message_id: HashMap<i64, i32>,
    /// The current text of each message (chat, id), for "not modified".
    texts: HashMap<(i64, i32), String>,
    next_file: u64,
    files: HashMap<String, StoredFile>,
    failures: HashMap<String, VecDeque<Failure>>,
    calls: Vec<Call>,
    offsets: Vec<i64>,
    sent: Vec<SentMessage>,
    edits: Vec<EditedMessage>,
    topics: Vec<Topic>,
    uploads: Vec<Upload>,
    actions: Vec<ChatAction>,
    commands: Vec<(String, String)>,
    /// The webhook set, if any.
    webhook: Option<Webhook>,
    /// `setWebhook` (`Some`) and `deleteWebhook` (`None`) calls, in order.
    webhook_calls: Vec<Option<Webhook>>,
}

impl Inner {
    fn next_message_id(&mut self, chat: i64) -> i32 {
        let id = self.last_message_id.entry(chat).or_insert(0);
        *id += 1;
        *id
    }

    fn queue_update(&mut self, content_key: &str, message: Value) -> i64 {
        self.next_update_id += 1;
        let id = self.next_update_id;
        let update = json!({ "update_id": id, content_key: message });
        self.history.insert(id, update.clone());
        self.queue.push_back(update);
        id
    }

    fn store_file(&mut self, data: &[u8], folder: &str, name: &str) -> (String, String) {
        self.next_file += 1;
        let file_id = format!("file-{}", self.next_file);
        let extension = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("bin");
        let path = format!("{folder}/file_{}.{extension}", self.next_file);
        self.files.insert(
            file_id.clone(),
            StoredFile {
                path,
                data: data.to_vec(),
            },
        );
        (file_id.clone(), format!("unique-{file_id}"))
    }
}

struct Shared {
    /// `bot<token>`: the path segment every call carries.
    bot_segment: String,
    topics_enabled: bool,
    inner: Mutex<Inner>,
    /// Woken when an update is queued (long polls waiting for one).
    arrived: Notify,
}

/// The fake Bot API; its server stops when it is dropped.
pub struct FakeBotApi {
    url: String,
    token: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for FakeBotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBotApi")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeBotApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeBotApi {
    /// Starts the fake for the bot with `token` on a free loopback port; `getMe` says
    /// `has_topics_enabled: topics`. Must be called inside a tokio runtime.
    pub async fn start(token: &str, topics: bool) -> anyhow::Result<FakeBotApi> {
        let shared = Arc::new(Shared {
            bot_segment: format!("bot{token}"),
            topics_enabled: topics,
            inner: Mutex::new(Inner::default()),
            arrived: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("binding the fake Bot API")?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/{bot}/{method}", post(call))
            .route("/file/{bot}/{*path}", get(download))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("fake Bot API stopped: {error}");
            }
        });
        Ok(FakeBotApi {
            url,
            token: token.to_owned(),
            shared,
            server,
        })
    }

    /// The base URL to give the bot (`telegram.api_url`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The token the fake accepts.
    pub fn token(&self) -> &str {
        &self.token
    }

    // ---- the person's side ----

    /// Person `user` writes `text` in their private chat with the bot, in topic `thread` if
    /// given; returns the message's id.
    pub fn send_text(&self, user: i64, text: &str, thread: Option<i32>) -> i32 {
        self.person_message(user, thread, |_| json!({ "text": text }))
    }

    /// Person `user` sends a file (a document) in their private chat, in topic `thread` if
    /// given; the file can then be fetched (`getFile`, download). Returns the message's id.
    pub fn send_document(
        &self,
        user: i64,
        name: &str,
        mime: &str,
        data: &[u8],
        thread: Option<i32>,
    ) -> i32 {
        self.send_captioned_document(user, name, mime, data, None, thread)
    }

    /// [`FakeBotApi::send_document`] with a caption.
    pub fn send_captioned_document(
        &self,
        user: i64,
        name: &str,
        mime: &str,
        data: &[u8],
        caption: Option<&str>,
        thread: Option<i32>,
    ) -> i32 {
        self.person_message(user, thread, |inner| {
            let (file_id, unique) = inner.store_file(data, "documents", name);
            let mut fields = json!({
                "document": {
                    "file_id": file_id,
                    "file_unique_id": unique,
                    "file_name": name,
                    "mime_type": mime,
                    "file_size": data.len(),
                }
            });
            if let (Some(caption), Some(map)) = (caption, fields.as_object_mut()) {
                map.insert("caption".to_owned(), json!(caption));
            }
            fields
        })
    }

    /// Queues Telegram's update of a message from `user`, with the fields `content` adds.
    fn person_message(
        &self,
        user: i64,
        thread: Option<i32>,
        content: impl FnOnce(&mut Inner) -> Value,
    ) -> i32 {
        let mut inner = self.shared.inner.lock();
        let message_id = inner.next_message_id(user);
        let name = person_name(user);
        let mut message = json!({
            "message_id": message_id,
            "date": now_secs(),
            "chat": { "id": user, "type": "private", "first_name": name },
            "from": { "id": user, "is_bot": false, "first_name": name },
        });
        if let Some(map) = message.as_object_mut() {
            if let Some(thread) = thread {
                map.insert("message_thread_id".to_owned(), json!(thread));
                map.insert("is_topic_message".to_owned(), json!(true));
            }
            if let Value::Object(extra) = content(&mut inner) {
                map.extend(extra);
            }
        }
        inner.queue_update("message", message);
        drop(inner);
        self.shared.arrived.notify_waiters();
        message_id
    }

    /// Queues update `update_id` again under a new update id (Telegram delivering the same
    /// message twice); returns the new update id, or `None` if there was no such update.
    pub fn redeliver(&self, update_id: i64) -> Option<i64> {
        let mut inner = self.shared.inner.lock();
        let old = inner.history.get(&update_id)?.clone();
        let (key, content) = old
            .as_object()?
            .iter()
            .find(|(k, _)| k.as_str() != "update_id")
            .map(|(k, v)| (k.clone(), v.clone()))?;
        let id = inner.queue_update(&key, content);
        drop(inner);
        self.shared.arrived.notify_waiters();
        Some(id)
    }

    /// The id of the last update queued (0: none yet).
    pub fn last_update_id(&self) -> i64 {
        self.shared.inner.lock().next_update_id
    }

    /// How many updates wait unacknowledged.
    pub fn pending(&self) -> usize {
        self.shared.inner.lock().queue.len()
    }

    /// The webhook the bot set, if any.
    pub fn webhook(&self) -> Option<Webhook> {
        self.shared.inner.lock().webhook.clone()
    }

    /// Every `setWebhook` (`Some`) and `deleteWebhook` (`None`) call, in order.
    pub fn webhook_calls(&self) -> Vec<Option<Webhook>> {
        self.shared.inner.lock().webhook_calls.clone()
    }

    /// POSTs update `update_id` to the webhook the bot set, as Telegram does, with `secret`
    /// in [`SECRET_HEADER`] (none: no header); returns the HTTP status the bot answered.
    pub async fn post_update(&self, update_id: i64, secret: Option<&str>) -> anyhow::Result<u16> {
        let update = {
            let inner = self.shared.inner.lock();
            inner
                .history
                .get(&update_id)
                .cloned()
                .with_context(|| format!("no update {update_id}"))?
        };
        self.post_body(serde_json::to_vec(&update)?, secret).await
    }

    /// POSTs `body` to the webhook the bot set (see [`FakeBotApi::post_update`]).
    pub async fn post_body(&self, body: Vec<u8>, secret: Option<&str>) -> anyhow::Result<u16> {
        let url = self.webhook().context("the bot set no webhook")?.url;
        let client = reqwest::Client::builder()
            .timeout(WEBHOOK_CALL_TIMEOUT)
            .build()?;
        let mut request = client
            .post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(secret) = secret {
            request = request.header(SECRET_HEADER, secret);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("posting to the webhook {url}"))?;
        Ok(response.status().as_u16())
    }

    // ---- failure injection ----

    /// The next call of `method` is answered with error `code` (and `retry_after` seconds,
    /// if given) instead of being carried out. Calls queue up: two `fail_next` fail the next
    /// two calls.
    pub fn fail_next(&self, method: &str, code: u64, retry_after: Option<u64>) {
        self.shared
            .inner
            .lock()
            .failures
            .entry(method.to_owned())
            .or_default()
            .push_back(Failure { code, retry_after });
    }

    // ---- what the bot did ----

    /// Every `sendMessage`, in order.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.shared.inner.lock().sent.clone()
    }

    /// The messages sent in `chat`, topic `thread` (`None`: the chat's root).
    pub fn sent_in(&self, chat: i64, thread: Option<i32>) -> Vec<SentMessage> {
        self.sent()
            .into_iter()
            .filter(|m| m.chat == chat && m.thread == thread)
            .collect()
    }

    /// The messages sent answering message `reply_to` of `chat`.
    pub fn answers_to(&self, chat: i64, reply_to: i32) -> Vec<SentMessage> {
        self.sent()
            .into_iter()
            .filter(|m| m.chat == chat && m.reply_to == Some(reply_to))
            .collect()
    }

    /// Every accepted `editMessageText`, in order.
    pub fn edits(&self) -> Vec<EditedMessage> {
        self.shared.inner.lock().edits.clone()
    }

    /// The edits of message `message_id` of `chat`, in order.
    pub fn edits_of(&self, chat: i64, message_id: i32) -> Vec<EditedMessage> {
        self.edits()
            .into_iter()
            .filter(|e| e.chat == chat && e.message_id == message_id)
            .collect()
    }

    /// Every topic made, in order.
    pub fn topics(&self) -> Vec<Topic> {
        self.shared.inner.lock().topics.clone()
    }

    /// Every file posted, in order.
    pub fn uploads(&self) -> Vec<Upload> {
        self.shared.inner.lock().uploads.clone()
    }

    /// Every chat action, in order.
    pub fn actions(&self) -> Vec<ChatAction> {
        self.shared.inner.lock().actions.clone()
    }

    /// The `offset` of every `getUpdates`, in order.
    pub fn offsets(&self) -> Vec<i64> {
        self.shared.inner.lock().offsets.clone()
    }

    /// The commands of the last `setMyCommands` (command, description).
    pub fn commands(&self) -> Vec<(String, String)> {
        self.shared.inner.lock().commands.clone()
    }

    /// Every call, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.inner.lock().calls.clone()
    }

    /// The calls of `method`, in order.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// What the bot sent, one line each (for failure messages).
    pub fn transcript(&self) -> String {
        let inner = self.shared.inner.lock();
        let mut out = String::from("the bot sent:");
        for m in &inner.sent {
            out.push_str(&format!(
                "\n  [{} thread {:?} #{} re {:?}] {}",
                m.chat, m.thread, m.message_id, m.reply_to, m.text
            ));
        }
        for t in &inner.topics {
            out.push_str(&format!(
                "\n  topic {} in {}: {}",
                t.thread, t.chat, t.current_name
            ));
        }
        for u in &inner.uploads {
            out.push_str(&format!(
                "\n  {} {} in {} thread {:?}",
                u.method, u.file_name, u.chat, u.thread
            ));
        }
        out
    }

    /// Polls `probe` until it finds something (up to [`WAIT`]); the error says `what` was
    /// awaited and what the bot had sent.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        mut probe: impl FnMut(&FakeBotApi) -> Option<T>,
    ) -> anyhow::Result<T> {
        wait_until(WAIT, POLL, || {
            let found = probe(self);
            async move { found }
        })
        .await
        .with_context(|| format!("waiting for {what}; {}", self.transcript()))
    }

    /// Waits for a `sendMessage` that `matches`.
    pub async fn wait_for_sent(
        &self,
        what: &str,
        matches: impl Fn(&SentMessage) -> bool,
    ) -> anyhow::Result<SentMessage> {
        self.wait_for(what, |fake| fake.sent().into_iter().find(|m| matches(m)))
            .await
    }

    /// Waits for the first answer to message `reply_to` of `chat`.
    pub async fn wait_for_answer(&self, chat: i64, reply_to: i32) -> anyhow::Result<SentMessage> {
        self.wait_for_sent(&format!("an answer to message {reply_to}"), |m| {
            m.chat == chat && m.reply_to == Some(reply_to)
        })
        .await
    }

    /// Waits for a topic named `name` (as made).
    pub async fn wait_for_topic(&self, name: &str) -> anyhow::Result<Topic> {
        self.wait_for(&format!("a topic named {name:?}"), |fake| {
            fake.topics().into_iter().find(|t| t.name == name)
        })
        .await
    }

    /// Waits for a posted file named `file_name`.
    pub async fn wait_for_upload(&self, file_name: &str) -> anyhow::Result<Upload> {
        self.wait_for(&format!("an upload of {file_name:?}"), |fake| {
            fake.uploads()
                .into_iter()
                .find(|u| u.file_name == file_name)
        })
        .await
    }

    /// Waits until `getUpdates` is asked with an offset of at least `offset`.
    pub async fn wait_for_offset(&self, offset: i64) -> anyhow::Result<()> {
        self.wait_for(&format!("getUpdates with offset >= {offset}"), |fake| {
            fake.offsets().iter().any(|o| *o >= offset).then_some(())
        })
        .await
    }
}

/// The first name the fake gives person `user`.
pub fn person_name(user: i64) -> String {
    format!("Person {user}")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Telegram's answer `{"ok":true,"result":…}`.
fn ok(result: Value) -> Response {
    axum::Json(json!({ "ok": true, "result": result })).into_response()
}

/// Telegram's error answer, with the error code as HTTP status.
fn error(code: u64, description: &str, retry_after: Option<u64>) -> Response {
    let mut body = json!({ "ok": false, "error_code": code, "description": description });
    if let (Some(secs), Some(map)) = (retry_after, body.as_object_mut()) {
        map.insert("parameters".to_owned(), json!({ "retry_after": secs }));
    }
    let status = u16::try_from(code)
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(body)).into_response()
}

fn bad_request(what: &str) -> Response {
    error(BAD_REQUEST, &format!("Bad Request: {what}"), None)
}

/// A call's parameters: the JSON body, or a multipart form's text fields with its files.
#[derive(Default)]
struct Params {
    fields: Map<String, Value>,
    /// (field name, file name, bytes)
    files: Vec<(String, String, Vec<u8>)>,
}

impl Params {
    fn read(headers: &HeaderMap, body: &[u8]) -> Result<Params, String> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_type.starts_with("multipart/form-data") {
            return multipart(content_type, body);
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Params::default());
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => Ok(Params {
                fields,
                files: Vec::new(),
            }),
            Ok(_) => Err("the parameters are not an object".to_owned()),
            Err(e) => Err(format!("cannot parse the JSON body: {e}")),
        }
    }

    /// A numeric parameter (a form sends numbers as text).
    fn int(&self, key: &str) -> Option<i64> {
        match self.fields.get(key)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    fn str(&self, key: &str) -> Option<String> {
        self.fields.get(key)?.as_str().map(str::to_owned)
    }

    fn thread(&self) -> Option<i32> {
        self.int("message_thread_id")
            .and_then(|t| i32::try_from(t).ok())
    }

    /// `reply_parameters.message_id` (an object in JSON, a JSON string in a form).
    fn reply_to(&self) -> Option<i32> {
        let reply = match self.fields.get("reply_parameters")? {
            Value::String(s) => serde_json::from_str::<Value>(s).ok()?,
            other => other.clone(),
        };
        reply
            .get("message_id")?
            .as_i64()
            .and_then(|m| i32::try_from(m).ok())
    }
}

/// Reads a `multipart/form-data` body: text parts become fields, parts with a file name files.
fn multipart(content_type: &str, body: &[u8]) -> Result<Params, String> {
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"'))
        .ok_or("a multipart body without a boundary")?;
    let delimiter = format!("--{boundary}");
    let mut params = Params::default();
    let mut rest = body;
    // The preamble, up to the first delimiter.
    let start = find(rest, delimiter.as_bytes()).ok_or("no multipart delimiter")?;
    rest = &rest[start + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Ok(params);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or("a malformed multipart part")?;
        let end = find(rest, format!("\r\n{delimiter}").as_bytes()).ok_or("an unended part")?;
        let part = &rest[..end];
        rest = &rest[end + 2 + delimiter.len()..];
        let split = find(part, b"\r\n\r\n").ok_or("a part without headers")?;
        let head = String::from_utf8_lossy(&part[..split]).to_string();
        let data = &part[split + 4..];
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .ok_or("a part without Content-Disposition")?;
        let name = quoted(disposition, "name").ok_or("a part without a name")?;
        match quoted(disposition, "filename") {
            Some(file_name) => params.files.push((name, file_name, data.to_vec())),
            None => {
                params.fields.insert(
                    name,
                    Value::String(String::from_utf8_lossy(data).to_string()),
                );
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of `key="…"` in a header line.
fn quoted(line: &str, key: &str) -> Option<String> {
    let marker = format!("{key}=\"");
    let at = line
        .match_indices(&marker)
        .map(|(i, _)| i)
        // `name=` must not match inside `filename=`.
        .find(|i| *i == 0 || !line.as_bytes()[i - 1].is_ascii_alphanumeric())?;
    let value = &line[at + marker.len()..];
    Some(value[..value.find('"')?].to_owned())
}

/// The bot as a Telegram `User`.
fn bot_user() -> Value {
    json!({ "id": BOT_ID, "is_bot": true, "first_name": BOT_FIRST_NAME, "username": BOT_USERNAME })
}

/// A message the bot sent, as Telegram answers it.
fn bot_message(chat: i64, message_id: i32, thread: Option<i32>, extra: Value) -> Value {
    let mut message = json!({
        "message_id": message_id,
        "date": now_secs(),
        "chat": { "id": chat, "type": "private", "first_name": person_name(chat) },
        "from": bot_user(),
    });
    if let Some(map) = message.as_object_mut() {
        if let Some(thread) = thread {
            map.insert("message_thread_id".to_owned(), json!(thread));
            map.insert("is_topic_message".to_owned(), json!(true));
        }
        if let Value::Object(extra) = extra {
            map.extend(extra);
        }
    }
    message
}

/// `POST /bot<token>/<method>`.
async fn call(
    State(shared): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if bot != shared.bot_segment {
        return error(UNAUTHORIZED, "Unauthorized", None);
    }
    let injected = {
        let mut inner = shared.inner.lock();
        let failure = inner
            .failures
            .get_mut(&method)
            .and_then(VecDeque::pop_front);
        inner.calls.push(Call {
            method: method.clone(),
            at: tokio::time::Instant::now(),
            failed: failure.as_ref().map(|f| f.code),
        });
        failure
    };
    if let Some(failure) = injected {
        let description = if failure.code == TOO_MANY_REQUESTS {
            format!(
                "Too Many Requests: retry after {}",
                failure.retry_after.unwrap_or(1)
            )
        } else {
            "Injected failure".to_owned()
        };
        return error(failure.code, &description, failure.retry_after);
    }
    let params = match Params::read(&headers, &body) {
        Ok(params) => params,
        Err(what) => return bad_request(&what),
    };
    match method.as_str() {
        "getMe" => {
            let mut me = bot_user();
            if let Some(map) = me.as_object_mut() {
                map.insert("can_join_groups".to_owned(), json!(false));
                map.insert("can_read_all_group_messages".to_owned(), json!(false));
                map.insert("supports_inline_queries".to_owned(), json!(false));
                map.insert(
                    "has_topics_enabled".to_owned(),
                    json!(shared.topics_enabled),
                );
            }
            ok(me)
        }
        "deleteWebhook" => {
            let mut inner = shared.inner.lock();
            inner.webhook = None;
            inner.webhook_calls.push(None);
            ok(json!(true))
        }
        "setWebhook" => set_webhook(&shared, &params),
        "getUpdates" if shared.inner.lock().webhook.is_some() => error(
            CONFLICT,
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook \
             to delete the webhook first",
            None,
        ),
        "setMyCommands" => set_commands(&shared, &params),
        "getUpdates" => updates(&shared, &params).await,
        "sendMessage" => send_message(&shared, &params),
        "editMessageText" => edit_text(&shared, &params),
        "sendChatAction" => chat_action(&shared, &params),
        "createForumTopic" => create_topic(&shared, &params),
        "editForumTopic" => edit_topic(&shared, &params),
        "getFile" => get_file(&shared, &params),
        "sendDocument" | "sendPhoto" => send_file(&shared, &method, params),
        _ => error(NOT_FOUND, "Not Found: method not found", None),
    }
}

fn set_webhook(shared: &Shared, params: &Params) -> Response {
    let Some(url) = params.str("url") else {
        return bad_request("url is missing");
    };
    let webhook = Webhook {
        url,
        secret_token: params.str("secret_token"),
        max_connections: params.int("max_connections"),
        drop_pending_updates: params
            .fields
            .get("drop_pending_updates")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    let mut inner = shared.inner.lock();
    inner.webhook = Some(webhook.clone());
    inner.webhook_calls.push(Some(webhook));
    ok(json!(true))
}

fn set_commands(shared: &Shared, params: &Params) -> Response {
    let Some(list) = params.fields.get("commands").and_then(Value::as_array) else {
        return bad_request("commands are missing");
    };
    let commands = list
        .iter()
        .map(|c| {
            let field = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            (field("command"), field("description"))
        })
        .collect();
    shared.inner.lock().commands = commands;
    ok(json!(true))
}

async fn updates(shared: &Shared, params: &Params) -> Response {
    let offset = params.int("offset").unwrap_or(0);
    let limit = params
        .int("limit")
        .and_then(|l| usize::try_from(l).ok())
        .filter(|l| *l > 0)
        .unwrap_or(DEFAULT_LIMIT);
    let timeout = params
        .int("timeout")
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(0)
        .min(MAX_POLL_SECS);
    shared.inner.lock().offsets.push(offset);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        // Registered before looking, so an update queued in between still wakes this poll.
        let arrived = shared.arrived.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        let found: Vec<Value> = {
            let mut inner = shared.inner.lock();
            if offset > 0 {
                while inner
                    .queue
                    .front()
                    .and_then(|u| u.get("update_id"))
                    .and_then(Value::as_i64)
                    .is_some_and(|id| id < offset)
                {
                    inner.queue.pop_front();
                }
            }
            inner.queue.iter().take(limit).cloned().collect()
        };
        if !found.is_empty() || tokio::time::Instant::now() >= deadline {
            return ok(Value::Array(found));
        }
        let _ = tokio::time::timeout_at(deadline, arrived).await;
    }
}

/// The `chat_id` of a call (a private chat's id is the person's user id).
fn chat_of(params: &Params) -> Option<i64> {
    params.int("chat_id")
}

fn send_message(shared: &Shared, params: &Params) -> Response {
    let Some(chat) = chat_of(params) else {
        return bad_request("chat not found");
    };
    let Some(text) = params.str("text").filter(|t| !t.trim().is_empty()) else {
        return bad_request("message text is empty");
    };
    let thread = params.thread();
    let mut inner = shared.inner.lock();
    let message_id = inner.next_message_id(chat);
    inner.texts.insert((chat, message_id), text.clone());
    inner.sent.push(SentMessage {
        chat,
        thread,
        reply_to: params.reply_to(),
        text: text.clone(),
        parse_mode: params.str("parse_mode"),
        message_id,
    });
    ok(bot_message(
        chat,
        message_id,
        thread,
        json!({ "text": text }),
    ))
}

fn edit_text(shared: &Shared, params: &Params) -> Response {
    let Some(chat) = chat_of(params) else {
        return bad_request("chat not found");
    };
    let (Some(message_id), Some(text)) = (
        params.int("message_id").and_then(|m| i32::try_from(m).ok()),
        params.str("text"),
    ) else {
        return bad_request("message_id and text are required");
    };
    let mut inner = shared.inner.lock();
    match inner.texts.get(&(chat, message_id)) {
        None => return bad_request("message to edit not found"),
        Some(old) if *old == text => {
            return bad_request(
                "message is not modified: specified new message content and reply markup are \
                 exactly the same as a current content and reply markup of the message",
            )
        }
        Some(_) => {}
    }
    inner.texts.insert((chat, message_id), text.clone());
    inner.edits.push(EditedMessage {
        chat,
        message_id,
        text: text.clone(),
        parse_mode: params.str("parse_mode"),
    });
    ok(bot_message(
        chat,
        message_id,
        None,
        json!({ "text": text, "edit_date": now_secs() }),
    ))
}

fn chat_action(shared: &Shared, params: &Params) -> Response {
    let Some(chat) = chat_of(params) else {
        return bad_request("chat not found");
    };
    let Some(action) = params.str("action") else {
        return bad_request("action is missing");
    };
    shared.inner.lock().actions.push(ChatAction {
        chat,
        thread: params.thread(),
        action,
    });
    ok(json!(true))
}

fn create_topic(shared: &Shared, params: &Params) -> Response {
    let Some(chat) = chat_of(params) else {
        return bad_request("chat not found");
    };
    if !shared.topics_enabled {
        return bad_request("the chat is not a forum");
    }
    let Some(name) = params.str("name").filter(|n| !n.is_empty()) else {
        return bad_request("topic name is empty");
    };
    let mut inner = shared.inner.lock();
    // A topic's thread id is the id of the service message that made it.
    let thread = inner.next_message_id(chat);
    inner.topics.push(Topic {
        chat,
        thread,
        name: name.clone(),
        current_name: name.clone(),
    });
    ok(json!({ "message_thread_id": thread, "name": name, "icon_color": TOPIC_ICON_COLOR }))
}

fn edit_topic(shared: &Shared, params: &Params) -> Response {
    let Some(chat) = chat_of(params) else {
        return bad_request("chat not found");
    };
    let thread = params.thread();
    let mut inner = shared.inner.lock();
    let Some(topic) = inner
        .topics
        .iter_mut()
        .find(|t| t.chat == chat && Some(t.thread) == thread)
    else {
        return bad_request("message thread not found");
    };
    if let Some(name) = params.str("name") {
        topic.current_name = name;
    }
    ok(json!(true))
}

fn get_file(shared: &Shared, params: &Params) -> Response {
    let Some(file_id) = params.str("file_id") else {
        return bad_request("file_id is missing");
    };
    let inner = shared.inner.lock();
    match inner.files.get(&file_id) {
        Some(file) => ok(json!({
            "file_id": file_id,
            "file_unique_id": format!("unique-{file_id}"),
            "file_size": file.data.len(),
            "file_path": file.path,
        })),
        None => bad_request("invalid file_id"),
    }
}

fn send_file(shared: &Shared, method: &str, params: Params) -> Response {
    let Some(chat) = chat_of(&params) else {
        return bad_request("chat not found");
    };
    let field = if method == "sendPhoto" {
        "photo"
    } else {
        "document"
    };
    let Some((_, file_name, data)) = params.files.iter().find(|(name, _, _)| name == field) else {
        return bad_request(&format!("there is no {field} in the request"));
    };
    let thread = params.thread();
    let mut inner = shared.inner.lock();
    let message_id = inner.next_message_id(chat);
    let folder = if method == "sendPhoto" {
        "photos"
    } else {
        "documents"
    };
    let (file_id, unique) = inner.store_file(data, folder, file_name);
    inner.uploads.push(Upload {
        method: method.to_owned(),
        chat,
        thread,
        file_name: file_name.clone(),
        data: data.clone(),
        message_id,
    });
    let extra = if method == "sendPhoto" {
        json!({ "photo": [{ "file_id": file_id, "file_unique_id": unique, "width": 1, "height": 1, "file_size": data.len() }] })
    } else {
        json!({ "document": { "file_id": file_id, "file_unique_id": unique, "file_name": file_name, "file_size": data.len() } })
    };
    ok(bot_message(chat, message_id, thread, extra))
}

/// `GET /file/bot<token>/<file_path>`: a file's bytes.
async fn download(
    State(shared): State<Arc<Shared>>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    if bot != shared.bot_segment {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let inner = shared.inner.lock();
    match inner.files.values().find(|f| f.path == path) {
        Some(file) => file.data.clone().into_response(),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_bodies_are_read() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n42\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"document\"; filename=\"a b.txt\"\r\n\
Content-Type: text/plain\r\n\r\nline1\r\nline2\r\n--XyZ--\r\n";
        let params = multipart("multipart/form-data; boundary=XyZ", body).expect("a readable form");
        assert_eq!(params.int("chat_id"), Some(42));
        assert_eq!(
            params.files,
            vec![(
                "document".to_owned(),
                "a b.txt".to_owned(),
                b"line1\r\nline2".to_vec()
            )]
        );
    }

    #[test]
    fn quoted_values_do_not_confuse_name_and_filename() {
        let line = "Content-Disposition: form-data; filename=\"f.txt\"; name=\"document\"";
        assert_eq!(quoted(line, "name").as_deref(), Some("document"));
        assert_eq!(quoted(line, "filename").as_deref(), Some("f.txt"));
    }
}
