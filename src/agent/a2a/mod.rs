//! An agent speaking A2A 1.0 over JSON-RPC (`kind = "a2a"`).
//!
//! Why this exists: A2A (Agent2Agent, a Linux Foundation project) is the open protocol agent
//! platforms converged on; with this kind an operator puts any A2A agent behind a room with a
//! few lines of config. Everything above the agent connection stays as it is: a turn is a
//! message to the agent, its task's stream is folded into the usual turn events ([`fold`]).
//!
//! - **Discovery.** The agent card at `<base_url>/.well-known/agent-card.json` ([`card`]) is
//!   read on first use and on every health check. A card without a JSON-RPC interface in
//!   protocol version 1.0 is refused, logged with the key to fix (`agents[].base_url`); the
//!   card's name, description and skills fill the agent's entry in `!agent` and `!help`
//!   where the config leaves them empty ([`crate::agent::about`]). Every request carries
//!   `A2A-Version: 1.0`.
//! - **A turn** is `SendStreamingMessage` (`SendMessage`, then `GetTask` polls, when the card
//!   says the agent does not stream) with `contextId` = the room's platform chat id (so
//!   `!clear`, which rotates it, starts a new context) and `messageId` = the turn id, derived
//!   from the messenger's event id. The task each turn starts is remembered ([`chats`]): a
//!   turn retried or resumed after a crash follows that task instead of sending again.
//! - **A broken stream** is resubscribed (`SubscribeToTask`, up to [`MAX_RESUBSCRIBES`]
//!   times; `GetTask` for a task that ended meanwhile) when the agent streams; otherwise the
//!   turn fails and the retry policy takes over.
//! - **Questions.** A task in `input-required` becomes the room's confirmation: the person's
//!   next message, or `!yes`/`!no` (sent as `yes`/`no`), continues the task.
//! - **Failures.** `failed` and `rejected` end the turn with the agent's reason;
//!   `auth-required` with a notice that the operator must give Surfaces credentials.
//! - **`!cancel`** is `CancelTask`, and the stream stops being read at once.
//! - **Files.** Files sent in the room go to the agent as file parts with their bytes inline,
//!   up to [`MAX_INLINE_FILE_BYTES`] (bigger ones are refused with a notice naming the
//!   limit: Surfaces has no URL an agent could fetch them from). Files the agent returns
//!   (inline bytes, or a URL on the agent's own origin, up to [`MAX_FILE_BYTES`]) are written
//!   to the agent's workspace under `inbox/` (swept like incoming files) and posted with the
//!   same checks as any agent's files; a file that cannot be fetched is named in the reply.
//! - **Context commands.** A2A keeps no context Surfaces can read or snapshot: `!context`,
//!   `!save` and `!load` say so ([`AgentError::Unsupported`]).

pub mod card;
pub mod chats;
pub mod fold;
pub mod wire;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use parking_lot::{Mutex, RwLock};
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Serialize;
use tokio::sync::Notify;

use self::card::{Card, RawCard, CARD_PATH};
use self::chats::{A2aChats, ChatState, TurnTask};
use self::fold::TaskFold;
use self::wire::{
    code, into_result, method, parse_stream_item, FilePart, FileSource, OutMessage, OutPart,
    ParseError, Request, Response, SendConfiguration, SendParams, StreamItem, Task, TaskParams,
};
use super::about::SharedAbout;
use super::{
    AgentError, AgentEvent, Attachment, ContextInfo, ErrorBody, FileEvent, HealthInfo, HttpAgent,
    SnapshotInfo, TurnAccumulator, TurnOutcome, TurnRequest, CANCELLED_CODE,
};
use crate::store::{Store, StoreError};

/// Largest file sent to the agent inline.
pub const MAX_INLINE_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// Largest file taken from the agent (the room's `files.max_bytes` applies too).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// How many times a broken stream is resubscribed within one turn.
pub const MAX_RESUBSCRIBES: u32 = 3;
/// How often a task of an agent that does not stream is asked where it stands.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// The code of a turn whose file is too big to send inline.
pub const FILE_TOO_LARGE_CODE: &str = "file_too_large";

/// How a turn starts.
enum Start {
    /// Sends the person's message.
    Send(OutMessage),
    /// Follows the task an earlier attempt of the turn started.
    Follow(String),
}

/// A turn running, for `!cancel`.
#[derive(Default)]
struct Running {
    task_id: Mutex<Option<String>>,
    stop: Notify,
}

/// Ends a running turn's registration when the turn ends, however it ends.
struct Registered<'a> {
    agent: &'a A2aAgent,
    turn_id: String,
    running: Arc<Running>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.agent.running.lock().remove(&self.turn_id);
    }
}

/// An A2A agent.
pub struct A2aAgent {
    http: HttpAgent,
    agent_id: String,
    card: RwLock<Option<Card>>,
    about: SharedAbout,
    chats: A2aChats,
    workspace: Option<PathBuf>,
    running: Mutex<HashMap<String, Arc<Running>>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for A2aAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("A2aAgent")
            .field("http", &self.http)
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

fn store_error(error: StoreError) -> AgentError {
    AgentError::Store(error.to_string())
}

/// A JSON-RPC error as an agent failure: the agent's internal errors may pass, the others
/// are about the request and will not.
fn rpc_error(error: ParseError) -> AgentError {
    match error {
        ParseError::Json(message) => AgentError::Protocol(message),
        ParseError::Rpc(error) if error.code == code::INTERNAL => AgentError::Server {
            status: 500,
            body: Some(ErrorBody {
                code: format!("JSON-RPC {}", error.code),
                message: error.message,
            }),
        },
        ParseError::Rpc(error) => AgentError::TurnFailed {
            code: format!("JSON-RPC {}", error.code),
            message: error.message,
        },
    }
}

/// Whether `error` means the stream broke off (as opposed to the agent answering no).
fn broke_off(error: &AgentError) -> bool {
    matches!(
        error,
        AgentError::Io(_)
            | AgentError::Incomplete
            | AgentError::Timeout(_)
            | AgentError::Unreachable(_)
    )
}

/// Whether two URLs share scheme, host and port.
fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

impl A2aAgent {
    /// Agent `agent_id` at `base_url` (where its card is), `token` sent as a bearer token,
    /// `timeout` bounding its silences; its chats kept in `store`, files in `workspace`;
    /// what its card says shared through `about`.
    pub fn new(
        base_url: &str,
        token: Option<String>,
        timeout: Duration,
        workspace: Option<PathBuf>,
        store: &Store,
        agent_id: &str,
        about: SharedAbout,
    ) -> Result<Self, AgentError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            wire::VERSION_HEADER,
            HeaderValue::from_static(wire::PROTOCOL_VERSION),
        );
        let mut http = HttpAgent::with_headers(base_url, token, timeout, headers)?;
        // Failures found before the first event come as one JSON-RPC answer, not a stream.
        http.accept_json_answers();
        Ok(Self {
            http,
            agent_id: agent_id.to_owned(),
            card: RwLock::new(None),
            about,
            chats: A2aChats::open(store, agent_id).map_err(store_error)?,
            workspace,
            running: Mutex::default(),
            next_id: AtomicU64::new(1),
        })
    }

    /// The transport (limits are set on it).
    pub fn http_mut(&mut self) -> &mut HttpAgent {
        &mut self.http
    }

    /// Reads the agent card again; a card Surfaces cannot use is logged with the key to fix.
    pub async fn discover(&self) -> Result<Card, AgentError> {
        let raw: RawCard = self.http.get_json(CARD_PATH).await?;
        match raw.check() {
            Ok(card) => {
                *self.about.write() = Some(card.about.clone());
                *self.card.write() = Some(card.clone());
                Ok(card)
            }
            Err(refusal) => {
                let at = format!("{}{CARD_PATH}", self.http.base_url());
                tracing::error!(agent = %self.agent_id, card = %at, %refusal,
                    "cannot use this A2A agent: fix agents[].base_url (or the agent's card)");
                Err(AgentError::InvalidConfig(format!(
                    "agent card at {at}: {refusal}"
                )))
            }
        }
    }

    /// The card, read when not known yet.
    async fn card(&self) -> Result<Card, AgentError> {
        let known = self.card.read().clone();
        match known {
            Some(card) => Ok(card),
            None => self.discover().await,
        }
    }

    fn request<'a, P: Serialize>(&self, method: &'a str, params: P) -> Request<'a, P> {
        Request::new(self.next_id.fetch_add(1, Ordering::Relaxed), method, params)
    }

    /// One JSON-RPC call answered whole.
    async fn call<T, P>(&self, card: &Card, method: &str, params: P) -> Result<T, AgentError>
    where
        T: serde::de::DeserializeOwned,
        P: Serialize + Sync,
    {
        let response: Response<T> = self
            .http
            .post_json(&card.rpc_url, &self.request(method, params))
            .await?;
        into_result(response).map_err(rpc_error)
    }

    fn register(&self, turn_id: &str) -> Registered<'_> {
        let running = Arc::new(Running::default());
        self.running
            .lock()
            .insert(turn_id.to_owned(), running.clone());
        Registered {
            agent: self,
            turn_id: turn_id.to_owned(),
            running,
        }
    }

    /// One turn: the person's message (or the task an earlier attempt started) to the
    /// agent, its task's stream to `on_event`.
    pub async fn turn(
        &self,
        chat: &str,
        req: &TurnRequest,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        let card = self.card().await?;
        let mut state = self.chats.load(chat).map_err(store_error)?;
        let start = match state.task_of(&req.turn_id) {
            Some(task) => Start::Follow(task.to_owned()),
            None => {
                let files = self.file_parts(&req.attachments).await?;
                Start::Send(OutMessage::user(
                    &req.turn_id,
                    chat,
                    state.waiting_task.as_deref(),
                    &req.text,
                    files,
                ))
            }
        };
        self.run(&card, chat, &req.turn_id, start, &mut state, on_event)
            .await
    }

    /// Answers the task waiting for the person (`confirm_id` is its id) with `yes` or `no`.
    pub async fn confirm(
        &self,
        chat: &str,
        confirm_id: &str,
        approved: bool,
        turn_id: &str,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        let card = self.card().await?;
        let mut state = self.chats.load(chat).map_err(store_error)?;
        let answer = if approved { "yes" } else { "no" };
        let message_id = format!("{turn_id}.{answer}");
        let start = match state.task_of(&message_id) {
            Some(task) => Start::Follow(task.to_owned()),
            None if state.waiting_task.as_deref() == Some(confirm_id) => Start::Send(
                OutMessage::user(&message_id, chat, Some(confirm_id), answer, vec![]),
            ),
            None => {
                return Err(AgentError::Rejected {
                    status: 409,
                    body: Some(ErrorBody {
                        code: "answered".to_owned(),
                        message: crate::texts::A2A_ALREADY_ANSWERED.to_owned(),
                    }),
                })
            }
        };
        self.run(&card, chat, &message_id, start, &mut state, on_event)
            .await
    }

    /// Runs a turn to its end or a stop, and keeps what the chat must remember.
    async fn run(
        &self,
        card: &Card,
        chat: &str,
        turn_id: &str,
        start: Start,
        state: &mut ChatState,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        let registered = self.register(turn_id);
        let mut fold = TaskFold::default();
        let waiting = state.waiting_task.clone();
        let result = tokio::select! {
            result = self.drive(card, chat, turn_id, start, &mut fold, waiting, on_event) => result,
            () = registered.running.stop.notified() => Err(AgentError::TurnFailed {
                code: CANCELLED_CODE.to_owned(),
                message: "cancelled".to_owned(),
            }),
        };
        if let Err(error) = &result {
            if error.is_cancelled() {
                on_event(&AgentEvent::Error {
                    code: CANCELLED_CODE.to_owned(),
                    message: "cancelled".to_owned(),
                });
            }
        }
        if let Some(task_id) = fold.task_id.clone() {
            state.last_turn = Some(TurnTask {
                turn_id: turn_id.to_owned(),
                task_id,
            });
            // The task waits for the person only while it says so.
            state.waiting_task = match &result {
                Ok(outcome) if outcome.confirm.is_some() => fold.task_id.clone(),
                _ => None,
            };
        }
        self.chats.save(chat, state).await.map_err(store_error)?;
        let mut outcome = result?;
        let (files, notes) = self.take_files(chat, &fold, card).await;
        outcome.files.extend(files);
        for note in notes {
            outcome.reply.push_str("\n\n");
            outcome.reply.push_str(&note);
        }
        Ok(outcome)
    }

    /// Sends or follows, resubscribing to a stream that broke off.
    #[allow(clippy::too_many_arguments)]
    async fn drive(
        &self,
        card: &Card,
        chat: &str,
        turn_id: &str,
        start: Start,
        fold: &mut TaskFold,
        waiting: Option<String>,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        let mut start = start;
        let mut resubscribed = 0;
        loop {
            let attempt = match &start {
                Start::Send(message) if card.streaming => {
                    let params = SendParams {
                        message,
                        configuration: SendConfiguration::default(),
                    };
                    let note = NoteTask {
                        chat,
                        turn_id,
                        waiting: waiting.clone(),
                    };
                    self.stream(card, method::SEND_STREAMING, params, fold, &note, on_event)
                        .await
                }
                Start::Send(message) => {
                    let params = SendParams {
                        message,
                        configuration: SendConfiguration::default(),
                    };
                    let item: StreamItem = self.call(card, method::SEND, params).await?;
                    let mut acc = TurnAccumulator::with_limit(self.http.max_turn_bytes());
                    match self.fold_in(item, fold, &mut acc, on_event) {
                        Some(result) => result,
                        None => self.poll(card, fold, &mut acc, on_event).await,
                    }
                }
                Start::Follow(task) => {
                    let followed = if card.streaming {
                        let note = NoteTask {
                            chat,
                            turn_id,
                            waiting: waiting.clone(),
                        };
                        let params = TaskParams { id: task };
                        self.stream(card, method::SUBSCRIBE, params, fold, &note, on_event)
                            .await
                    } else {
                        Err(AgentError::Incomplete)
                    };
                    match followed {
                        // Not streaming, or the task ended meanwhile: where it stands.
                        Err(error) if !fold.ended() && !error.is_cancelled() => {
                            tracing::debug!(%error, task, "following the task by polling");
                            fold.task_id.get_or_insert_with(|| task.clone());
                            let mut acc = TurnAccumulator::with_limit(self.http.max_turn_bytes());
                            self.poll(card, fold, &mut acc, on_event).await
                        }
                        other => other,
                    }
                }
            };
            match (attempt, fold.task_id.clone()) {
                (Err(error), Some(task))
                    if broke_off(&error) && resubscribed < MAX_RESUBSCRIBES =>
                {
                    resubscribed += 1;
                    tracing::warn!(agent = %self.agent_id, %error, task,
                        attempt = resubscribed, "the task's stream broke off; following it again");
                    start = Start::Follow(task);
                }
                (attempt, _) => return attempt,
            }
        }
    }

    /// Streams `method`'s answer into `fold`, noting the task as soon as it is named.
    async fn stream<P: Serialize + Sync>(
        &self,
        card: &Card,
        method: &str,
        params: P,
        fold: &mut TaskFold,
        note: &NoteTask<'_>,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        let body = self.request(method, params);
        let mut known = fold.task_id.clone();
        let mut decode = |sse: &crate::agent::sse::SseEvent, out: &mut Vec<AgentEvent>| {
            if sse.data.trim().is_empty() {
                return Ok(());
            }
            let item = parse_stream_item(&sse.data).map_err(rpc_error)?;
            fold.apply(item, out);
            if fold.task_id != known {
                known = fold.task_id.clone();
                if let Some(task) = &known {
                    self.note_task(note, task);
                }
            }
            Ok(())
        };
        self.http
            .stream_decoded(&card.rpc_url, &body, &mut decode, on_event)
            .await
    }

    /// Remembers the task a turn started: for `!cancel` at once, and for a retry or resume
    /// (durable shortly after; the end of the turn writes it durably anyway).
    fn note_task(&self, note: &NoteTask<'_>, task: &str) {
        if let Some(running) = self.running.lock().get(note.turn_id) {
            *running.task_id.lock() = Some(task.to_owned());
        }
        let state = ChatState {
            waiting_task: note.waiting.clone(),
            last_turn: Some(TurnTask {
                turn_id: note.turn_id.to_owned(),
                task_id: task.to_owned(),
            }),
        };
        if let Err(error) = self.chats.put(note.chat, &state) {
            tracing::warn!(%error, task, "cannot note the turn's task; a retry may send it again");
            return;
        }
        let chats = self.chats.clone();
        tokio::spawn(async move {
            if let Err(error) = chats.flush().await {
                tracing::warn!(%error, "cannot flush the turn's task");
            }
        });
    }

    /// Folds one answer in; the turn's result when it ended the task.
    fn fold_in(
        &self,
        item: StreamItem,
        fold: &mut TaskFold,
        acc: &mut TurnAccumulator,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Option<Result<TurnOutcome, AgentError>> {
        let mut events = Vec::new();
        fold.apply(item, &mut events);
        for event in events {
            on_event(&event);
            if let Some(result) = acc.apply(&event) {
                return Some(result);
            }
        }
        None
    }

    /// Asks where the task stands until it ends (agents that do not stream).
    async fn poll(
        &self,
        card: &Card,
        fold: &mut TaskFold,
        acc: &mut TurnAccumulator,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        let Some(task_id) = fold.task_id.clone() else {
            return Err(AgentError::Protocol(
                "the agent's answer names no task".to_owned(),
            ));
        };
        let polling = async {
            loop {
                let task: Task = self
                    .call(card, method::GET_TASK, TaskParams { id: &task_id })
                    .await?;
                let item = StreamItem {
                    task: Some(task),
                    ..StreamItem::default()
                };
                if let Some(result) = self.fold_in(item, fold, acc, on_event) {
                    return result;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        };
        match tokio::time::timeout(self.http.max_turn(), polling).await {
            Ok(result) => result,
            Err(_) => Err(AgentError::TurnTooLong(self.http.max_turn())),
        }
    }

    /// The turn's files as file parts, bytes inline; a file too big fails the turn with a
    /// notice naming the limit.
    async fn file_parts(&self, files: &[Attachment]) -> Result<Vec<OutPart>, AgentError> {
        let mut parts = Vec::with_capacity(files.len());
        let Some(workspace) = &self.workspace else {
            return Ok(parts);
        };
        for file in files {
            let refuse = |message: String| AgentError::TurnFailed {
                code: FILE_TOO_LARGE_CODE.to_owned(),
                message,
            };
            let limit = crate::files::human_size(MAX_INLINE_FILE_BYTES);
            if file.size > MAX_INLINE_FILE_BYTES {
                return Err(refuse(crate::texts::a2a_file_too_large(&file.name, &limit)));
            }
            let event = FileEvent {
                path: file.path.clone(),
                name: file.name.clone(),
                mime: file.mime.clone(),
            };
            let root = workspace.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                crate::files::load_outbound(&root, &event, MAX_INLINE_FILE_BYTES)
            })
            .await
            .map_err(|e| AgentError::Io(format!("reading a file for the agent: {e}")))?;
            match loaded {
                Ok(loaded) => parts.push(OutPart::file(&file.name, &file.mime, &loaded.data)),
                Err(refusal) => {
                    tracing::warn!(name = %file.name, %refusal, "cannot read a file for the agent");
                    return Err(refuse(crate::texts::a2a_file_too_large(&file.name, &limit)));
                }
            }
        }
        Ok(parts)
    }

    /// Fetches the files the task returned into the workspace; returns them as file events
    /// to post, and a note for each that could not be fetched.
    async fn take_files(
        &self,
        chat: &str,
        fold: &TaskFold,
        card: &Card,
    ) -> (Vec<FileEvent>, Vec<String>) {
        let (mut events, mut notes) = (Vec::new(), Vec::new());
        let task = fold.task_id.clone().unwrap_or_default();
        for (i, part) in fold.files().into_iter().enumerate() {
            let name = if part.name.trim().is_empty() {
                format!("file-{}", i + 1)
            } else {
                part.name.clone()
            };
            let mime = if part.media_type.is_empty() {
                crate::files::guess_mime(&name).to_owned()
            } else {
                part.media_type.clone()
            };
            let Some(workspace) = &self.workspace else {
                // Posting says why: this agent has no workspace.
                events.push(FileEvent {
                    path: name.clone(),
                    name,
                    mime,
                });
                continue;
            };
            let data = match self.file_bytes(&part, card).await {
                Ok(data) => data,
                Err(reason) => {
                    tracing::warn!(agent = %self.agent_id, name, %reason, "cannot take the agent's file");
                    notes.push(crate::texts::a2a_file_not_taken(&name, &reason));
                    continue;
                }
            };
            let rel =
                crate::files::inbox_path(&format!("a2a\0{chat}"), &format!("{task}\0{i}"), &name);
            let (root, target) = (workspace.clone(), rel.clone());
            let written = tokio::task::spawn_blocking(move || {
                crate::files::write_into_workspace(&root, &target, &data)
            })
            .await;
            match written {
                Ok(Ok(_)) => events.push(FileEvent {
                    path: rel.as_str().to_owned(),
                    name,
                    mime,
                }),
                Ok(Err(error)) => {
                    tracing::error!(agent = %self.agent_id, name, %error,
                        "cannot write the agent's file into its workspace (agents[].workspace)");
                    notes.push(crate::texts::a2a_file_not_taken(&name, "not stored"));
                }
                Err(error) => {
                    tracing::error!(agent = %self.agent_id, name, %error, "writing a file failed");
                    notes.push(crate::texts::a2a_file_not_taken(&name, "not stored"));
                }
            }
        }
        (events, notes)
    }

    /// The bytes of a file part: inline, or fetched from the agent's own origin.
    async fn file_bytes(&self, part: &FilePart, card: &Card) -> Result<Vec<u8>, String> {
        let limit = crate::files::human_size(MAX_FILE_BYTES);
        match &part.source {
            FileSource::Inline(raw) => {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(raw.trim())
                    .map_err(|_| "not valid base64".to_owned())?;
                if data.len() as u64 > MAX_FILE_BYTES {
                    return Err(format!("larger than {limit}"));
                }
                Ok(data)
            }
            FileSource::Url(url) => {
                let parsed = url::Url::parse(url).map_err(|_| "not a valid URL".to_owned())?;
                let own = [self.http.base_url(), card.rpc_url.as_str()]
                    .iter()
                    .filter_map(|u| url::Url::parse(u).ok())
                    .any(|origin| same_origin(&origin, &parsed));
                if !own {
                    return Err(crate::texts::A2A_FOREIGN_URL.to_owned());
                }
                let cap = usize::try_from(MAX_FILE_BYTES).unwrap_or(usize::MAX);
                match self.http.get_bytes(parsed.as_str(), cap).await {
                    Ok(Some(data)) => Ok(data),
                    Ok(None) => Err(format!("larger than {limit}")),
                    Err(error) => Err(error.to_string()),
                }
            }
        }
    }

    /// `CancelTask` for the turn's task, and the turn stops being read at once; a turn not
    /// running is not an error.
    pub async fn cancel(&self, _chat: &str, turn_id: &str) -> Result<(), AgentError> {
        let Some(running) = self.running.lock().get(turn_id).cloned() else {
            return Ok(());
        };
        let task = running.task_id.lock().clone();
        let card = self.card.read().clone();
        if let (Some(task), Some(card)) = (task, card) {
            let cancelled: Result<serde_json::Value, AgentError> = self
                .call(&card, method::CANCEL_TASK, TaskParams { id: &task })
                .await;
            if let Err(error) = cancelled {
                tracing::info!(agent = %self.agent_id, task, %error, "the agent did not cancel the task");
            }
        }
        running.stop.notify_one();
        Ok(())
    }

    /// A2A offers no context to read.
    pub fn context(&self, _chat: &str) -> Result<ContextInfo, AgentError> {
        Err(AgentError::Unsupported("!context".to_owned()))
    }

    /// A2A offers no snapshots.
    pub fn save_snapshot(&self, _chat: &str, _name: &str) -> Result<SnapshotInfo, AgentError> {
        Err(AgentError::Unsupported("!save".to_owned()))
    }

    /// A2A offers no snapshots.
    pub fn restore(
        &self,
        _chat: &str,
        _snapshot: &str,
        _from: Option<&str>,
    ) -> Result<(), AgentError> {
        Err(AgentError::Unsupported("!load".to_owned()))
    }

    /// Forgets what Surfaces kept of `chat` (the agent keeps its context: A2A has no call
    /// to drop one).
    pub async fn delete_chat(&self, chat: &str) -> Result<(), AgentError> {
        self.chats.delete(chat).await.map_err(store_error)
    }

    /// Reads the card again: the agent is healthy when it serves a card Surfaces can use.
    pub async fn health(&self) -> Result<HealthInfo, AgentError> {
        let card = self.discover().await?;
        Ok(HealthInfo {
            status: "ok".to_owned(),
            agent: card.about.name,
            version: card.version,
        })
    }
}

/// What noting a turn's task needs.
struct NoteTask<'a> {
    chat: &'a str,
    turn_id: &'a str,
    waiting: Option<String>,
}
