//! A Telegram Bot API emulator on loopback, for the Telegram adapter's end-to-end tests: the
//! npm package `telegram-test-api` (not ours), installed by `ops/telegram/install` into
//! `<repo>/.telegram-emulator` (or `$SURFACES_TELEGRAM_EMULATOR`) and started by
//! `ops/telegram/emulator.js` with the `node` found on `PATH`. Dropping it stops the process
//! by its pid.
//!
//! The bot talks to [`TelegramEmulator::base_url`] as it would to `https://api.telegram.org`
//! (`/bot<token>/<method>`, JSON bodies). The test plays the person through the emulator's
//! own client routes: [`TelegramEmulator::send_text`] and friends put updates in the bot's
//! queue, [`TelegramEmulator::bot_messages`] reads what the bot sent. The emulator covers a
//! small part of the Bot API (no files, no chat actions, no topics; `getUpdates` ignores
//! `offset` and `timeout`): `ops/telegram/README.md` lists what it does and does not do.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::synapse::repo_root;
use crate::wait::{file_tail, free_port, terminate_child_blocking, try_wait_until, until_http_ok};

/// The environment variable naming the install prefix (default `<repo>/.telegram-emulator`).
pub const INSTALL_ENV: &str = "SURFACES_TELEGRAM_EMULATOR";
/// What `getMe` answers for every token: the emulator has one fixed bot identity.
pub const BOT_USERNAME: &str = "TestNameBot";
/// The fixed bot user id of `getMe`.
pub const BOT_ID: i64 = 666;
/// Longest wait for the emulator to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// SIGTERM grace before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Attempts at a free port (another process can take it between our probe and node's bind).
const PORT_ATTEMPTS: usize = 3;
/// Seconds the emulator keeps messages (its own default, 60, would drop them mid-test).
const STORE_TIMEOUT_SECS: u32 = 3600;

/// Where `ops/telegram/install` puts the emulator: `$SURFACES_TELEGRAM_EMULATOR`, else
/// `<repo>/.telegram-emulator`.
pub fn install_dir() -> PathBuf {
    match std::env::var_os(INSTALL_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo_root().join(".telegram-emulator"),
    }
}

/// `program` on `PATH`, if it is there.
fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A message the bot sent (`sendMessage`), as the emulator stores it, with edits applied.
#[derive(Debug, Clone, PartialEq)]
pub struct BotMessage {
    /// The id the emulator gave it (what `sendMessage` answered).
    pub message_id: i64,
    /// The `chat_id` the bot sent to.
    pub chat_id: i64,
    /// `text`, after any `editMessageText`.
    pub text: Option<String>,
    /// `message_thread_id`, if the bot sent one (stored as given: the emulator has no topics).
    pub message_thread_id: Option<i64>,
    /// `reply_markup`, parsed when the bot sent it as a JSON string.
    pub reply_markup: Option<Value>,
    /// `reply_to_message_id`, or `reply_parameters.message_id`.
    pub reply_to_message_id: Option<i64>,
    /// `parse_mode`.
    pub parse_mode: Option<String>,
    /// Everything the bot sent for it, as stored (request fields merged with later edits).
    pub raw: Value,
}

/// One entry of the emulator's `/getUpdatesHistory`: a bot message or a person's update.
#[derive(Debug, Deserialize)]
struct HistoryEntry {
    #[serde(rename = "messageId")]
    message_id: i64,
    /// Absent for callback queries.
    #[serde(default)]
    message: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ClientReply {
    ok: bool,
    #[serde(default)]
    result: Value,
}

/// An integer that Telegram clients may send as a number or a string.
fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl BotMessage {
    /// A history entry's message if the bot sent it (bot messages carry `chat_id`; a person's
    /// carry `chat`).
    fn from_entry(entry: &HistoryEntry) -> Option<BotMessage> {
        let message = entry.message.as_ref()?;
        let chat_id = as_i64(message.get("chat_id")?)?;
        let reply_markup = match message.get("reply_markup") {
            Some(Value::String(s)) => serde_json::from_str(s).ok(),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.clone()),
        };
        let reply_to_message_id =
            message
                .get("reply_to_message_id")
                .and_then(as_i64)
                .or_else(|| {
                    let parameters = match message.get("reply_parameters")? {
                        Value::String(s) => serde_json::from_str::<Value>(s).ok()?,
                        other => other.clone(),
                    };
                    parameters.get("message_id").and_then(as_i64)
                });
        Some(BotMessage {
            message_id: entry.message_id,
            chat_id,
            text: message
                .get("text")
                .and_then(Value::as_str)
                .map(str::to_owned),
            message_thread_id: message.get("message_thread_id").and_then(as_i64),
            reply_markup,
            reply_to_message_id,
            parse_mode: message
                .get("parse_mode")
                .and_then(Value::as_str)
                .map(str::to_owned),
            raw: message.clone(),
        })
    }
}

/// A document a person sends: metadata only (the emulator stores no files, so the bot cannot
/// `getFile` or download it).
#[derive(Debug, Clone)]
pub struct DocumentMeta {
    pub file_id: String,
    pub file_unique_id: String,
    pub file_name: String,
    pub mime_type: String,
    pub file_size: u64,
}

/// A running Telegram Bot API emulator.
pub struct TelegramEmulator {
    base_url: String,
    http: reqwest::Client,
    child: Option<Child>,
    // Declared last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl TelegramEmulator {
    /// Starts an emulator from [`install_dir`] on a free loopback port.
    pub async fn start() -> anyhow::Result<TelegramEmulator> {
        Self::start_from(&install_dir()).await
    }

    /// Starts an emulator installed (by `ops/telegram/install`) in `install`.
    pub async fn start_from(install: &Path) -> anyhow::Result<TelegramEmulator> {
        let manifest = install.join("node_modules/telegram-test-api/package.json");
        if !manifest.is_file() {
            bail!(
                "the Telegram emulator is not installed in {} (no {}): run ops/telegram/install \
                 (it installs into ${INSTALL_ENV} or <repo>/.telegram-emulator)",
                install.display(),
                manifest.display()
            );
        }
        let node = find_on_path("node").ok_or_else(|| {
            anyhow!(
                "node is not on PATH: the Telegram emulator (ops/telegram/install) needs Node.js"
            )
        })?;
        let script = repo_root().join("ops/telegram/emulator.js");
        let dir = tempfile::Builder::new()
            .prefix("surfaces-telegram-")
            .tempdir()?;
        let log_path = dir.path().join("console.log");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let mut emulator = TelegramEmulator {
            base_url: String::new(),
            http,
            child: None,
            dir,
        };
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let log = std::fs::File::create(&log_path)?;
            let child = Command::new(&node)
                .arg(&script)
                .arg(port.to_string())
                .env(INSTALL_ENV, install)
                .env(
                    "TELEGRAM_EMULATOR_STORE_TIMEOUT",
                    STORE_TIMEOUT_SECS.to_string(),
                )
                // Every request the bot makes, for the log tail printed on failure.
                .env("DEBUG", "TelegramServer:*")
                .current_dir(emulator.dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("spawning {} {}", node.display(), script.display()))?;
            emulator.base_url = format!("http://127.0.0.1:{port}");
            let child = emulator.child.insert(child);
            // Any token answers getMe.
            let probe = format!("{}/botprobe/getMe", emulator.base_url);
            match until_http_ok(
                child,
                &probe,
                START_TIMEOUT,
                "the Telegram emulator",
                &log_path,
            )
            .await
            {
                Ok(()) => return Ok(emulator),
                Err(error) => {
                    if let Some(mut child) = emulator.child.take() {
                        terminate_child_blocking(&mut child, STOP_GRACE);
                    }
                    let port_taken = file_tail(&log_path, 30).contains("cannot listen");
                    last_error = Some(error);
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("the Telegram emulator did not start")))
    }

    /// The Bot API base the bot uses instead of `https://api.telegram.org`:
    /// `http://127.0.0.1:<port>` (methods at `/bot<token>/<method>`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// POSTs `body` to one of the emulator's client routes (`/sendMessage`, ...).
    async fn client_call(&self, route: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{route}", self.base_url);
        let response = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("POST {url}"))?;
        if !status.is_success() {
            bail!("POST {url}: {status}: {text}");
        }
        let reply: ClientReply =
            serde_json::from_str(&text).with_context(|| format!("POST {url}: {text}"))?;
        if !reply.ok {
            bail!("POST {url}: not ok: {text}");
        }
        Ok(reply.result)
    }

    /// The person `user_id` as Telegram shows them (`from`).
    fn person(user_id: i64) -> Value {
        json!({
            "id": user_id,
            "is_bot": false,
            "first_name": format!("User {user_id}"),
            "username": format!("user{user_id}"),
            "language_code": "en",
        })
    }

    /// Their private chat with the bot (`chat`).
    fn private_chat(user_id: i64, chat_id: i64) -> Value {
        json!({
            "id": chat_id,
            "type": "private",
            "first_name": format!("User {user_id}"),
            "username": format!("user{user_id}"),
        })
    }

    /// Puts a person's message into the bot's update queue as given: `message` is the
    /// `message` object of the update minus `message_id` (the emulator assigns it). Use it for
    /// shapes the other helpers do not make (`message_thread_id`, `reply_to_message`, ...).
    /// Returns the `message_id` the emulator gave it. Fails when the bot has set a webhook
    /// (the emulator then POSTs the update to it and keeps nothing).
    pub async fn send_raw(&self, token: &str, message: Value) -> anyhow::Result<i64> {
        let Value::Object(mut body) = message else {
            bail!("a person's message must be a JSON object, not {message}");
        };
        body.insert("botToken".into(), Value::String(token.to_owned()));
        let body = Value::Object(body);
        self.client_call("/sendMessage", &body).await?;
        // The emulator answers `null`: find the message in its history (the last one that is
        // this one; the emulator stored it before answering).
        let history = self.history(token).await?;
        history
            .iter()
            .rev()
            .find(|entry| {
                entry.message.as_ref().is_some_and(|stored| {
                    ["from", "chat", "date", "text", "document"]
                        .iter()
                        .all(|key| stored.get(key) == body.get(key))
                })
            })
            .map(|entry| entry.message_id)
            .ok_or_else(|| {
                anyhow!("the person's message is not in the emulator's history (a webhook set?)")
            })
    }

    /// The person `user_id` sends `text` to the bot in their private chat `chat_id` (in
    /// Telegram a private chat's id is the user's id). Returns the message's `message_id`.
    pub async fn send_text(
        &self,
        token: &str,
        user_id: i64,
        chat_id: i64,
        text: &str,
    ) -> anyhow::Result<i64> {
        self.send_raw(
            token,
            json!({
                "from": Self::person(user_id),
                "chat": Self::private_chat(user_id, chat_id),
                "date": unix_now(),
                "text": text,
            }),
        )
        .await
    }

    /// The person sends a document (with an optional caption) in their private chat. Only the
    /// update carries it: the emulator has no `getFile` and serves no file downloads, so the
    /// bot sees the metadata and cannot fetch the bytes.
    pub async fn send_document(
        &self,
        token: &str,
        user_id: i64,
        chat_id: i64,
        document: &DocumentMeta,
        caption: Option<&str>,
    ) -> anyhow::Result<i64> {
        let mut message = json!({
            "from": Self::person(user_id),
            "chat": Self::private_chat(user_id, chat_id),
            "date": unix_now(),
            "document": {
                "file_id": document.file_id,
                "file_unique_id": document.file_unique_id,
                "file_name": document.file_name,
                "mime_type": document.mime_type,
                "file_size": document.file_size,
            },
        });
        if let (Some(caption), Value::Object(fields)) = (caption, &mut message) {
            fields.insert("caption".into(), Value::String(caption.to_owned()));
        }
        self.send_raw(token, message).await
    }

    /// The person presses an inline button with `data` under the bot's message `message_id`
    /// in their private chat: a `callback_query` update.
    pub async fn press_button(
        &self,
        token: &str,
        user_id: i64,
        chat_id: i64,
        message_id: i64,
        data: &str,
    ) -> anyhow::Result<()> {
        let body = json!({
            "botToken": token,
            "from": Self::person(user_id),
            "message": {
                "message_id": message_id,
                "from": { "id": BOT_ID, "is_bot": true, "first_name": "Bot", "username": BOT_USERNAME },
                "chat": Self::private_chat(user_id, chat_id),
                "date": unix_now(),
            },
            "data": data,
        });
        self.client_call("/sendCallback", &body).await?;
        Ok(())
    }

    /// Everything stored for `token`, bot messages and people's updates, oldest first.
    async fn history(&self, token: &str) -> anyhow::Result<Vec<HistoryEntry>> {
        let result = self
            .client_call("/getUpdatesHistory", &json!({ "token": token }))
            .await?;
        serde_json::from_value(result).context("reading the emulator's /getUpdatesHistory")
    }

    /// What the bot (`token`) has sent to `chat_id` so far, oldest first, with edits applied
    /// and deleted messages gone. Reading does not consume anything.
    pub async fn bot_messages(&self, token: &str, chat_id: i64) -> anyhow::Result<Vec<BotMessage>> {
        Ok(self
            .history(token)
            .await?
            .iter()
            .filter_map(BotMessage::from_entry)
            .filter(|message| message.chat_id == chat_id)
            .collect())
    }

    /// Polls [`Self::bot_messages`] until there are at least `count`, for up to `timeout`.
    pub async fn wait_bot_messages(
        &self,
        token: &str,
        chat_id: i64,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<BotMessage>> {
        try_wait_until(timeout, crate::wait::POLL, || async move {
            let messages = self.bot_messages(token, chat_id).await?;
            Ok((messages.len() >= count).then_some(messages))
        })
        .await
        .with_context(|| format!("waiting for {count} bot message(s) in chat {chat_id}"))
    }

    /// The end of the emulator's output (its request log).
    pub fn log_tail(&self) -> String {
        file_tail(&self.dir.path().join("console.log"), 30)
    }
}

/// Seconds since the epoch, as Telegram's `date`.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

impl Drop for TelegramEmulator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "Telegram emulator at {}: {}",
                self.base_url,
                self.log_tail()
            );
        }
        if let Some(mut child) = self.child.take() {
            terminate_child_blocking(&mut child, STOP_GRACE);
        }
    }
}
