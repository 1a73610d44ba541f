//! The reference agent: an in-process implementation of the agent platform API
//! (`docs/agent-api.md`) for the tests.
//!
//! It exists so that tests can check Surfaces against the contract itself, including the parts a
//! well-behaved agent rarely shows: it runs an axum 0.8 server on `127.0.0.1:<free port>` inside
//! the test's tokio runtime, records every request it gets (for assertions), honours idempotency
//! (a repeated `turn_id` replays the stored events; "executions" are counted apart from
//! "requests"), and takes orders from the test through [`ReferenceAgent`]:
//!
//! - be slow ([`ReferenceAgent::set_delay`], [`ReferenceAgent::set_interval`]);
//! - fail the next turn requests with a status, optionally with `Retry-After`
//!   ([`ReferenceAgent::fail_next`], [`ReferenceAgent::fail_next_with_retry_after`]);
//! - answer garbage or end a stream without `done` ([`Fault`]);
//! - ask for a confirmation, post a file, fail a turn with an `error` event ([`Script`]);
//! - require a Bearer token ([`ReferenceAgent::require_token`]);
//! - go down (the port refuses connections, open connections are cut) and come back up on the
//!   same port ([`ReferenceAgent::go_down`], [`ReferenceAgent::come_up`]).
//!
//! The reply to a turn is `"ref-agent <id> got: <text>"` (plus ` [attachments: a, b]` when the
//! turn has some), streamed as a `status`, two `delta`s and a `done`. The server stops when the
//! [`ReferenceAgent`] is dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle};

/// Version the reference agent reports in its health.
pub const REF_AGENT_VERSION: &str = "ref-1";
/// How long [`ReferenceAgent::come_up`] keeps trying to bind its old port.
pub const REBIND_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two bind attempts.
pub const REBIND_POLL: Duration = Duration::from_millis(20);
/// Pause between two checks of [`ReferenceAgent::wait_until`].
pub const WAIT_POLL: Duration = Duration::from_millis(10);
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// Events buffered between the task producing a stream and the connection.
const STREAM_BUFFER: usize = 16;
/// Code of the `error` event of a cancelled turn.
pub const CANCELLED: &str = "cancelled";

/// A transmission fault for the next turn request. The turn is still executed and stored
/// (except for [`Fault::Status`], which answers before anything runs), so a retry replays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with an `{"error": ...}` body, with `Retry-After: <secs>` if given.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// `200` with an HTML body (not an event stream).
    NotSse,
    /// `200` event stream whose first event's data is not JSON.
    InvalidJson,
    /// `200` event stream with bytes that are not UTF-8.
    InvalidUtf8,
    /// The turn's events without the final `done` / `confirm` / `error`, then the end.
    NoDone,
}

/// What the next executed turn does instead of a plain reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// End the turn with a `confirm` event asking `prompt`.
    Confirm { prompt: String },
    /// Post a file (a `file` event) before `done`.
    File {
        path: String,
        name: String,
        mime: String,
    },
    /// Fail the turn with an `error` event.
    Error { code: String, message: String },
}

/// Which endpoint of the contract a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Health,
    Turn,
    Confirm,
    Cancel,
    Context,
    Snapshot,
    Restore,
    Delete,
    /// Nothing of the contract (answered 404).
    Unknown,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub endpoint: Endpoint,
    pub method: String,
    /// Path as sent (still percent-encoded).
    pub raw_path: String,
    /// Decoded `{chat}`, for chat endpoints.
    pub chat: Option<String>,
    /// The `Authorization` header, verbatim.
    pub authorization: Option<String>,
    /// The `Accept` header.
    pub accept: Option<String>,
    /// The JSON body (`Null` when absent or not JSON).
    pub body: Value,
}

/// An attachment of a recorded turn.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordedAttachment {
    pub path: String,
    pub name: String,
    pub mime: String,
    pub size: u64,
}

/// A turn request as received (retries included: one entry per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedTurn {
    pub chat: String,
    pub turn_id: String,
    pub text: String,
    pub sender_id: String,
    pub sender_display_name: Option<String>,
    pub attachments: Vec<RecordedAttachment>,
    pub authorization: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TurnBody {
    turn_id: String,
    sender: SenderBody,
    text: String,
    #[serde(default)]
    attachments: Vec<RecordedAttachment>,
}

#[derive(Debug, Deserialize)]
struct SenderBody {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ConfirmBody {
    approved: bool,
    // `turn_id` is only recorded (see `RecordedRequest::body`): the confirm id is the key.
}

#[derive(Debug, Deserialize)]
struct SnapshotBody {
    name: String,
}

#[derive(Debug, Deserialize)]
struct RestoreBody {
    snapshot: String,
    #[serde(default)]
    from_chat: Option<String>,
}

/// One event of a stream.
#[derive(Debug, Clone)]
struct Ev {
    name: &'static str,
    data: Value,
}

impl Ev {
    fn new(name: &'static str, data: Value) -> Self {
        Ev { name, data }
    }

    fn is_terminal(&self) -> bool {
        matches!(self.name, "done" | "confirm" | "error")
    }

    fn to_sse(&self) -> Bytes {
        Bytes::from(format!("event: {}\ndata: {}\n\n", self.name, self.data))
    }
}

fn cancelled_event() -> Ev {
    Ev::new(
        "error",
        json!({"code": CANCELLED, "message": "the turn was cancelled"}),
    )
}

#[derive(Debug, Default, Clone, Copy)]
struct ChatState {
    messages: u64,
    tokens: u64,
}

type TurnKey = (String, String);

struct StoredTurn {
    events: Vec<Ev>,
    cancel: watch::Sender<bool>,
    finished: bool,
}

struct PendingConfirm {
    chat: String,
    text: String,
    answer: Option<Vec<Ev>>,
}

#[derive(Default)]
struct AgentState {
    delay: Duration,
    /// Per-chat delays, overriding `delay` for those chats.
    chat_delays: HashMap<String, Duration>,
    interval: Duration,
    required_token: Option<String>,
    faults: VecDeque<Fault>,
    scripts: VecDeque<Script>,
    requests: Vec<RecordedRequest>,
    turns: HashMap<TurnKey, StoredTurn>,
    precancelled: HashSet<TurnKey>,
    executions: HashMap<TurnKey, u32>,
    chats: HashMap<String, ChatState>,
    snapshots: HashMap<(String, String), ChatState>,
    confirms: HashMap<String, PendingConfirm>,
}

/// State shared by the handle, the server and its stream tasks.
struct Shared {
    agent_id: String,
    state: Mutex<AgentState>,
    conns: Mutex<Vec<Weak<ConnFlag>>>,
    tasks: Mutex<Vec<AbortHandle>>,
    confirm_seq: AtomicU64,
}

impl Shared {
    fn kill_connections(&self) {
        let conns = std::mem::take(&mut *self.conns.lock());
        for c in conns.iter().filter_map(Weak::upgrade) {
            c.kill();
        }
    }

    fn abort_tasks(&self) {
        for t in std::mem::take(&mut *self.tasks.lock()) {
            t.abort();
        }
    }

    fn record(
        &self,
        endpoint: Endpoint,
        method: &Method,
        uri: &Uri,
        chat: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<String> {
        let authorization = header_str(headers, header::AUTHORIZATION);
        let req = RecordedRequest {
            endpoint,
            method: method.to_string(),
            raw_path: uri.path().to_owned(),
            chat: chat.map(str::to_owned),
            authorization: authorization.clone(),
            accept: header_str(headers, header::ACCEPT),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
        };
        self.state.lock().requests.push(req);
        authorization
    }

    /// The 401 response to give when a token is required and not given.
    fn check_auth(&self, authorization: &Option<String>) -> Option<Response> {
        let st = self.state.lock();
        match &st.required_token {
            Some(token) if authorization.as_deref() != Some(&format!("Bearer {token}")) => {
                Some(error_response(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "bad or missing token",
                ))
            }
            _ => None,
        }
    }

    fn reply_text(&self, body: &TurnBody) -> String {
        let mut reply = format!("ref-agent {} got: {}", self.agent_id, body.text);
        if !body.attachments.is_empty() {
            let names: Vec<&str> = body.attachments.iter().map(|a| a.name.as_str()).collect();
            reply.push_str(&format!(" [attachments: {}]", names.join(", ")));
        }
        reply
    }

    /// Streams a reply as two deltas then done.
    fn reply_events(&self, reply: &str) -> Vec<Ev> {
        let head = format!("ref-agent {} ", self.agent_id);
        let (first, rest) = match reply.strip_prefix(&head) {
            Some(rest) => (head.as_str(), rest),
            None => {
                let mid = reply
                    .char_indices()
                    .nth(reply.chars().count() / 2)
                    .map_or(reply.len(), |(i, _)| i);
                reply.split_at(mid)
            }
        };
        vec![
            Ev::new("delta", json!({ "text": first })),
            Ev::new("delta", json!({ "text": rest })),
            Ev::new("done", json!({ "text": reply })),
        ]
    }

    /// Runs a new turn (stores its events) or finds the stored one. Returns the events to send
    /// and the turn's cancellation signal.
    fn execute_or_replay(&self, chat: &str, body: &TurnBody) -> (Vec<Ev>, watch::Receiver<bool>) {
        let key = (chat.to_owned(), body.turn_id.clone());
        let mut st = self.state.lock();
        if let Some(stored) = st.turns.get(&key) {
            return (stored.events.clone(), stored.cancel.subscribe());
        }
        *st.executions.entry(key.clone()).or_default() += 1;
        let script = st.scripts.pop_front();
        let mut events = vec![Ev::new("status", json!({"text": "thinking"}))];
        if st.precancelled.remove(&key) {
            events = vec![cancelled_event()];
        } else {
            let reply = self.reply_text(body);
            match script {
                None => events.extend(self.reply_events(&reply)),
                Some(Script::File { path, name, mime }) => {
                    events.push(Ev::new(
                        "file",
                        json!({"path": path, "name": name, "mime": mime}),
                    ));
                    events.extend(self.reply_events(&reply));
                }
                Some(Script::Confirm { prompt }) => {
                    let n = self.confirm_seq.fetch_add(1, Ordering::SeqCst) + 1;
                    let confirm_id = format!("confirm-{n}");
                    st.confirms.insert(
                        confirm_id.clone(),
                        PendingConfirm {
                            chat: chat.to_owned(),
                            text: body.text.clone(),
                            answer: None,
                        },
                    );
                    events.push(Ev::new(
                        "confirm",
                        json!({"confirm_id": confirm_id, "prompt": prompt}),
                    ));
                }
                Some(Script::Error { code, message }) => {
                    events.push(Ev::new("error", json!({"code": code, "message": message})));
                }
            }
            let c = st.chats.entry(chat.to_owned()).or_default();
            c.messages += 2;
            c.tokens += words(&body.text) + words(&reply);
        }
        let (cancel, rx) = watch::channel(false);
        st.turns.insert(
            key,
            StoredTurn {
                events: events.clone(),
                cancel,
                finished: false,
            },
        );
        (events, rx)
    }
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
        .into_response()
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn fault_status_response(status: u16, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = error_response(status, "injected", "fault injected by the test");
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    resp
}

/// Waits `d` unless the turn is cancelled first; false when cancelled.
async fn wait_or_cancel(d: Duration, cancel: &mut Option<watch::Receiver<bool>>) -> bool {
    let Some(rx) = cancel else {
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
        return true;
    };
    if *rx.borrow() {
        return false;
    }
    if d.is_zero() {
        return true;
    }
    let sleep = tokio::time::sleep(d);
    tokio::pin!(sleep);
    let cancelled = tokio::select! {
        _ = &mut sleep => None,
        changed = rx.wait_for(|c| *c) => Some(changed.is_ok()),
    };
    match cancelled {
        None => !*rx.borrow(),
        Some(true) => false,
        // The turn was forgotten (its chat deleted): nobody can cancel it any more.
        Some(false) => {
            sleep.await;
            true
        }
    }
}

/// How to send a stream.
struct StreamPlan {
    events: Vec<Ev>,
    fault: Option<Fault>,
    cancel: Option<watch::Receiver<bool>>,
    /// The stored turn to mark finished at the end.
    turn: Option<TurnKey>,
}

fn stream_response(shared: &Arc<Shared>, plan: StreamPlan) -> Response {
    let StreamPlan {
        mut events,
        fault,
        mut cancel,
        turn,
    } = plan;
    let prefix: Option<Bytes> = match fault {
        Some(Fault::NotSse) => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<html><body><h1>502 Bad Gateway</h1>(a proxy, not an agent)</body></html>",
            )
                .into_response();
        }
        Some(Fault::InvalidJson) => Some(Bytes::from_static(
            b"event: delta\ndata: {\"text\": this is not json\n\n",
        )),
        Some(Fault::InvalidUtf8) => Some(Bytes::from_static(
            b"event: delta\ndata: {\"text\":\"\xff\xfe\xfd\"}\n\n",
        )),
        Some(Fault::NoDone) => {
            events.retain(|e| !e.is_terminal());
            None
        }
        Some(Fault::Status { .. }) | None => None,
    };
    let (delay, interval) = {
        let st = shared.state.lock();
        let chat_delay = turn
            .as_ref()
            .and_then(|(chat, _)| st.chat_delays.get(chat))
            .copied();
        (chat_delay.unwrap_or(st.delay), st.interval)
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(STREAM_BUFFER);
    let task_shared = Arc::clone(shared);
    let task = tokio::spawn(async move {
        if let Some(bytes) = prefix {
            // Garbage ends the stream: the client must give up on it.
            let _ = tx.send(bytes).await;
            return;
        }
        let mut cancelled = !wait_or_cancel(delay, &mut cancel).await;
        for (i, ev) in events.iter().enumerate() {
            if cancelled {
                break;
            }
            if i > 0 && !wait_or_cancel(interval, &mut cancel).await {
                cancelled = true;
                break;
            }
            if tx.send(ev.to_sse()).await.is_err() {
                return;
            }
        }
        if cancelled {
            let _ = tx.send(cancelled_event().to_sse()).await;
        }
        if let Some(key) = turn {
            if let Some(t) = task_shared.state.lock().turns.get_mut(&key) {
                t.finished = true;
            }
        }
    });
    {
        let mut tasks = shared.tasks.lock();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task.abort_handle());
    }
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|b| b.map(Ok::<Bytes, io::Error>))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

type Sh = State<Arc<Shared>>;

async fn health(State(sh): Sh, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let auth = sh.record(Endpoint::Health, &method, &uri, None, &headers, b"");
    if let Some(resp) = sh.check_auth(&auth) {
        return resp;
    }
    json_response(
        StatusCode::OK,
        json!({"status": "ok", "agent": sh.agent_id, "version": REF_AGENT_VERSION}),
    )
}

async fn turn(
    State(sh): Sh,
    Path(chat): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = sh.record(Endpoint::Turn, &method, &uri, Some(&chat), &headers, &body);
    if let Some(resp) = sh.check_auth(&auth) {
        return resp;
    }
    let req: TurnBody = match serde_json::from_slice(&body) {
        Ok(req) => req,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
    };
    if req.turn_id.is_empty() || req.sender.id.is_empty() {
        return error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "turn_id and sender.id are required",
        );
    }
    let fault = sh.state.lock().faults.pop_front();
    if let Some(Fault::Status {
        status,
        retry_after,
    }) = fault
    {
        return fault_status_response(status, retry_after);
    }
    let (events, cancel) = sh.execute_or_replay(&chat, &req);
    stream_response(
        &sh,
        StreamPlan {
            events,
            fault,
            cancel: Some(cancel),
            turn: Some((chat, req.turn_id)),
        },
    )
}

async fn confirm(
    State(sh): Sh,
    Path((chat, confirm_id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = sh.record(
        Endpoint::Confirm,
        &method,
        &uri,
        Some(&chat),
        &headers,
        &body,
    );
    if let Some(resp) = sh.check_auth(&auth) {
        return resp;
    }
    let answer: ConfirmBody = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
    };
    let events = {
        let mut st = sh.state.lock();
        let Some(pending) = st.confirms.get_mut(&confirm_id).filter(|p| p.chat == chat) else {
            return error_response(StatusCode::NOT_FOUND, "not_found", "no such confirmation");
        };
        match &pending.answer {
            Some(events) => events.clone(),
            None => {
                let events = if answer.approved {
                    sh.reply_events(&format!("ref-agent {} did: {}", sh.agent_id, pending.text))
                } else {
                    vec![Ev::new(
                        "done",
                        json!({"text": format!("ref-agent {} did not: {}", sh.agent_id, pending.text)}),
                    )]
                };
                pending.answer = Some(events.clone());
                events
            }
        }
    };
    stream_response(
        &sh,
        StreamPlan {
            events,
            fault: None,
            cancel: None,
            turn: None,
        },
    )
}

async fn cancel(
    State(sh): Sh,
    Path((chat, turn_id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = sh.record(
        Endpoint::Cancel,
        &method,
        &uri,
        Some(&chat),
        &headers,
        &body,
    );
    if let Some(resp) = sh.check_auth(&auth) {
        return resp;
    }
    let key = (chat, turn_id);
    let mut st = sh.state.lock();
    match st.turns.get_mut(&key) {
        Some(t) if !t.finished => {
            t.events = vec![cancelled_event()];
            t.cancel.send_replace(true);
        }
        Some(_) => {}
        None => {
            st.precancelled.insert(key);
        }
    }
    StatusCode::ACCEPTED.into_response()
}

async fn context(
    State(sh): Sh,
    Path(chat): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let auth = sh.record(Endpoint::Context, &method, &uri, Some(&chat), &headers, b"");
    if let Some(resp) = sh.check_auth(&auth) {
        return resp;
    }
    let st = sh.state.lock();
    let c = st.chats.get(&chat).copied().unwrap_or_default();
    let mut snapshots: Vec<&String> = st
        .snapshots
        .keys()
        .filter(|(from, _)| *from == chat)
        .map(|(_, name)| name)
        .collect();
    snapshots.sort();
    json_response(
        StatusCode::OK,
        json!({
            "messages": c.messages,
            "tokens": c.tokens,
            "summary": format!("{} messages with ref-agent {}", c.messages, sh.agent_id),
            "snapshots": snapshots,
        }),
    )
}

async fn snapshot(
    State(sh): Sh,
    Path(chat): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = sh.record(
        Endpoint::Snapshot,
        &method,
        &uri,
        Some(&chat),
        &headers,
        &body,
    );
    if let Some(resp) = sh.check_auth(&auth) {
        return resp;
    }
    let req = match serde_json::from_slice::<SnapshotBody>(&body) {
        Ok(r) if !r.name.is_empty() => r,
        _ => return error_response(StatusCode::BAD_REQUEST, "bad_request", "name is required"),
    };
    let mut st = sh.state.lock();
    let c = st.chats.get(&chat).copied().unwrap_or_default();
    st.snapshots.insert((chat, req.name.clone()), c);
    json_response(
        StatusCode::CREATED,
        json!({"name": req.name, "messages": c.messages}),
    )
}

async fn restore(
    State(sh): Sh,
    Path(chat): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = sh.record(
        Endpoint::Restore,
        &method,
        &uri,
        Some(&chat),
        &headers,
        &body,
    );
    if let Some(resp) = sh.check_auth(&auth) {
        return resp;
    }
    let req: RestoreBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
    };
    let mut st = sh.state.lock();
    let source = req.from_chat.clone().unwrap_or_else(|| chat.clone());
    let Some(saved) = st.snapshots.get(&(source, req.snapshot.clone())).copied() else {
        return error_response(StatusCode::NOT_FOUND, "not_found", "no such snapshot");
    };
    st.chats.insert(chat, saved);
    json_response(
        StatusCode::OK,
        json!({"restored": req.snapshot, "messages": saved.messages}),
    )
}

async fn delete_chat(
    State(sh): Sh,
    Path(chat): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let auth = sh.record(Endpoint::Delete, &method, &uri, Some(&chat), &headers, b"");
    if let Some(resp) = sh.check_auth(&auth) {
        return resp;
    }
    let mut st = sh.state.lock();
    st.chats.remove(&chat);
    StatusCode::NO_CONTENT.into_response()
}

async fn fallback(State(sh): Sh, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    sh.record(Endpoint::Unknown, &method, &uri, None, &headers, b"");
    error_response(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/chats/{chat}/turns", post(turn))
        .route("/v1/chats/{chat}/confirmations/{confirm_id}", post(confirm))
        .route("/v1/chats/{chat}/turns/{turn_id}/cancel", post(cancel))
        .route("/v1/chats/{chat}/context", get(context))
        .route("/v1/chats/{chat}/snapshots", post(snapshot))
        .route("/v1/chats/{chat}/restore", post(restore))
        .route("/v1/chats/{chat}", axum::routing::delete(delete_chat))
        .fallback(fallback)
        .with_state(shared)
}

/// Kill switch of one accepted connection.
#[derive(Default)]
struct ConnFlag {
    killed: AtomicBool,
    read: AtomicWaker,
    write: AtomicWaker,
}

impl ConnFlag {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.read.wake();
        self.write.wake();
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

fn killed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "reference agent went down",
    )
}

/// A TCP connection the agent can cut when it "goes down" (axum serves each connection in its
/// own task, which stopping the server does not end).
struct KillableStream {
    inner: TcpStream,
    flag: Arc<ConnFlag>,
}

impl AsyncRead for KillableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.flag.read.register(cx.waker());
        if this.flag.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.flag.write.register(cx.waker());
        if this.flag.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.flag.write.register(cx.waker());
        if this.flag.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

struct KillableListener {
    inner: TcpListener,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for KillableListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let flag = Arc::new(ConnFlag::default());
                    {
                        let mut conns = self.shared.conns.lock();
                        conns.retain(|c| c.strong_count() > 0);
                        conns.push(Arc::downgrade(&flag));
                    }
                    return (
                        KillableStream {
                            inner: stream,
                            flag,
                        },
                        addr,
                    );
                }
                Err(_) => tokio::time::sleep(ACCEPT_ERROR_PAUSE).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

fn spawn_server(shared: &Arc<Shared>, listener: TcpListener) -> JoinHandle<()> {
    let app = router(Arc::clone(shared));
    let listener = KillableListener {
        inner: listener,
        shared: Arc::clone(shared),
    };
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// A running reference agent and the test's remote control for it. Dropping it stops the
/// server and cuts its connections.
pub struct ReferenceAgent {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ReferenceAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceAgent")
            .field("agent_id", &self.shared.agent_id)
            .field("addr", &self.addr)
            .finish()
    }
}

impl ReferenceAgent {
    /// Starts an agent with id `agent_id` on a free loopback port. Must be called inside a
    /// tokio runtime. Panics if no port can be bound (a test setup failure).
    pub async fn start(agent_id: &str) -> ReferenceAgent {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("reference agent: bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("reference agent: local address");
        let shared = Arc::new(Shared {
            agent_id: agent_id.to_owned(),
            state: Mutex::new(AgentState::default()),
            conns: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
            confirm_seq: AtomicU64::new(0),
        });
        let server = spawn_server(&shared, listener);
        ReferenceAgent {
            shared,
            addr,
            server: Mutex::new(Some(server)),
        }
    }

    /// The agent's id.
    pub fn agent_id(&self) -> &str {
        &self.shared.agent_id
    }

    /// `http://127.0.0.1:<port>` (the same after [`ReferenceAgent::come_up`]).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address the agent listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Delay before the first event of every stream (replays and confirmations included).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.state.lock().delay = delay;
    }

    /// Delays turns of one chat only (the other chats keep the general delay).
    pub fn set_chat_delay(&self, chat: &str, delay: Duration) {
        self.shared
            .state
            .lock()
            .chat_delays
            .insert(chat.to_owned(), delay);
    }

    /// Delay between two events of a stream.
    pub fn set_interval(&self, interval: Duration) {
        self.shared.state.lock().interval = interval;
    }

    /// Requires `Authorization: Bearer <token>` on every call (401 otherwise); `None` lifts it.
    pub fn require_token(&self, token: Option<&str>) {
        self.shared.state.lock().required_token = token.map(str::to_owned);
    }

    /// Queues a fault for the next turn request (faults are used one per turn request, in order).
    pub fn push_fault(&self, fault: Fault) {
        self.shared.state.lock().faults.push_back(fault);
    }

    /// The next `n` turn requests get `status` (and an `{"error"}` body), before running.
    pub fn fail_next(&self, n: usize, status: u16) {
        for _ in 0..n {
            self.push_fault(Fault::Status {
                status,
                retry_after: None,
            });
        }
    }

    /// Like [`ReferenceAgent::fail_next`], with `Retry-After: <secs>`.
    pub fn fail_next_with_retry_after(&self, n: usize, status: u16, secs: u64) {
        for _ in 0..n {
            self.push_fault(Fault::Status {
                status,
                retry_after: Some(secs),
            });
        }
    }

    /// Drops the faults not used yet.
    pub fn clear_faults(&self) {
        self.shared.state.lock().faults.clear();
    }

    /// Queues a script for the next executed turn (replays do not use scripts).
    pub fn push_script(&self, script: Script) {
        self.shared.state.lock().scripts.push_back(script);
    }

    /// The next executed turn ends with a `confirm` asking `prompt`.
    pub fn confirm_next(&self, prompt: &str) {
        self.push_script(Script::Confirm {
            prompt: prompt.to_owned(),
        });
    }

    /// The next executed turn posts a file (the test writes it into the workspace itself).
    pub fn file_next(&self, path: &str, name: &str, mime: &str) {
        self.push_script(Script::File {
            path: path.to_owned(),
            name: name.to_owned(),
            mime: mime.to_owned(),
        });
    }

    /// Stops accepting connections (the port refuses them) and cuts the open ones.
    pub async fn go_down(&self) {
        let server = self.server.lock().take();
        if let Some(server) = server {
            server.abort();
            let _ = server.await;
        }
        self.shared.kill_connections();
        self.shared.abort_tasks();
    }

    /// Listens again, on the same port. Panics if the port cannot be bound within
    /// [`REBIND_TIMEOUT`] (another process took it: a test setup failure).
    pub async fn come_up(&self) {
        if self.is_up() {
            return;
        }
        let deadline = tokio::time::Instant::now() + REBIND_TIMEOUT;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    panic!("reference agent: cannot bind {} again: {e}", self.addr)
                }
                Err(_) => tokio::time::sleep(REBIND_POLL).await,
            }
        };
        let server = spawn_server(&self.shared, listener);
        *self.server.lock() = Some(server);
    }

    /// Whether the agent is listening.
    pub fn is_up(&self) -> bool {
        self.server.lock().is_some()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state.lock().requests.clone()
    }

    /// How many requests hit `endpoint`.
    pub fn request_count(&self, endpoint: Endpoint) -> usize {
        self.shared
            .state
            .lock()
            .requests
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .count()
    }

    /// Every turn request received (one per request, retries included) whose body was a turn.
    pub fn turns(&self) -> Vec<RecordedTurn> {
        self.shared
            .state
            .lock()
            .requests
            .iter()
            .filter(|r| r.endpoint == Endpoint::Turn)
            .filter_map(|r| {
                let body: TurnBody = serde_json::from_value(r.body.clone()).ok()?;
                Some(RecordedTurn {
                    chat: r.chat.clone().unwrap_or_default(),
                    turn_id: body.turn_id,
                    text: body.text,
                    sender_id: body.sender.id,
                    sender_display_name: body.sender.display_name,
                    attachments: body.attachments,
                    authorization: r.authorization.clone(),
                })
            })
            .collect()
    }

    /// Turns actually run (a replay of a known `turn_id` does not count).
    pub fn executions(&self) -> u64 {
        self.shared
            .state
            .lock()
            .executions
            .values()
            .map(|&n| u64::from(n))
            .sum()
    }

    /// How many times the turn `turn_id` ran (in any chat): 1 when idempotency holds.
    pub fn executions_of(&self, turn_id: &str) -> u32 {
        self.shared
            .state
            .lock()
            .executions
            .iter()
            .filter(|((_, t), _)| t == turn_id)
            .map(|(_, &n)| n)
            .sum()
    }

    /// Messages the agent holds for `chat`.
    pub fn messages_in(&self, chat: &str) -> u64 {
        self.shared
            .state
            .lock()
            .chats
            .get(chat)
            .map_or(0, |c| c.messages)
    }

    /// Polls `condition` every [`WAIT_POLL`] until it holds or `timeout` passes; returns
    /// whether it held.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        condition: impl Fn(&ReferenceAgent) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }

    /// Waits until at least `n` turn requests arrived.
    pub async fn wait_for_turns(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |a| a.request_count(Endpoint::Turn) >= n)
            .await
    }
}

impl Drop for ReferenceAgent {
    fn drop(&mut self) {
        if let Some(server) = self.server.get_mut().take() {
            server.abort();
        }
        self.shared.kill_connections();
        self.shared.abort_tasks();
    }
}
