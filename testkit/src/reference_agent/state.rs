//! The reference agent's state, shared by the test's handle, the server and its stream
//! tasks: the test's orders, the recorded requests, the stored turns (for idempotent
//! replays and cancellation), the chats' contexts and snapshots, pending confirmations; and
//! the execution of a turn.
//!
//! It exists so that every endpoint and the handle see one consistent agent, behind one lock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Weak;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::Response;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::listener::ConnFlag;
use super::orders::{Fault, Script};
use super::records::{Endpoint, RecordedRequest};
use super::routes::{error_response, header_str, Meta};
use super::sse::{cancelled_event, Ev};
use super::wire::TurnBody;

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ChatState {
    pub(super) messages: u64,
    pub(super) tokens: u64,
}

pub(super) type TurnKey = (String, String);

pub(super) struct StoredTurn {
    pub(super) events: Vec<Ev>,
    pub(super) cancel: watch::Sender<bool>,
    pub(super) finished: bool,
}

pub(super) struct PendingConfirm {
    pub(super) chat: String,
    pub(super) text: String,
    pub(super) answer: Option<Vec<Ev>>,
}

#[derive(Default)]
pub(super) struct AgentState {
    pub(super) delay: Duration,
    /// Per-chat delays, overriding `delay` for those chats.
    pub(super) chat_delays: HashMap<String, Duration>,
    pub(super) interval: Duration,
    pub(super) required_token: Option<String>,
    pub(super) faults: VecDeque<Fault>,
    pub(super) scripts: VecDeque<Script>,
    pub(super) requests: Vec<RecordedRequest>,
    pub(super) turns: HashMap<TurnKey, StoredTurn>,
    pub(super) precancelled: HashSet<TurnKey>,
    pub(super) executions: HashMap<TurnKey, u32>,
    pub(super) chats: HashMap<String, ChatState>,
    pub(super) snapshots: HashMap<(String, String), ChatState>,
    pub(super) confirms: HashMap<String, PendingConfirm>,
}

/// State shared by the handle, the server and its stream tasks.
pub(super) struct Shared {
    pub(super) agent_id: String,
    pub(super) state: Mutex<AgentState>,
    pub(super) conns: Mutex<Vec<Weak<ConnFlag>>>,
    pub(super) tasks: Mutex<Vec<AbortHandle>>,
    pub(super) confirm_seq: AtomicU64,
}

impl Shared {
    pub(super) fn kill_connections(&self) {
        let conns = std::mem::take(&mut *self.conns.lock());
        for c in conns.iter().filter_map(Weak::upgrade) {
            c.kill();
        }
    }

    pub(super) fn abort_tasks(&self) {
        for t in std::mem::take(&mut *self.tasks.lock()) {
            t.abort();
        }
    }

    /// The 401 response to give when a token is required and not given.
    /// Records a request and checks its token: `Err` is the response to send at once.
    pub(super) fn admit(
        &self,
        endpoint: Endpoint,
        meta: &Meta,
        chat: Option<&str>,
        body: &[u8],
    ) -> Result<(), Response> {
        let authorization = header_str(&meta.headers, header::AUTHORIZATION);
        let req = RecordedRequest {
            endpoint,
            method: meta.method.to_string(),
            raw_path: meta.uri.path().to_owned(),
            chat: chat.map(str::to_owned),
            authorization: authorization.clone(),
            accept: header_str(&meta.headers, header::ACCEPT),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
        };
        self.state.lock().requests.push(req);
        match self.check_auth(&authorization) {
            Some(response) => Err(response),
            None => Ok(()),
        }
    }

    pub(super) fn check_auth(&self, authorization: &Option<String>) -> Option<Response> {
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

    pub(super) fn reply_text(&self, body: &TurnBody) -> String {
        if let Some(bytes) = super::long::requested(&body.text) {
            return super::long::long_reply(bytes);
        }
        if let Some(words) = super::streamed::requested(&body.text) {
            return super::streamed::streamed_reply(words);
        }
        let mut reply = format!("ref-agent {} got: {}", self.agent_id, body.text);
        if !body.attachments.is_empty() {
            let names: Vec<&str> = body.attachments.iter().map(|a| a.name.as_str()).collect();
            reply.push_str(&format!(" [attachments: {}]", names.join(", ")));
        }
        reply
    }

    /// Streams a reply as two deltas then done (word by word for `ref:stream`).
    pub(super) fn reply_events(&self, reply: &str) -> Vec<Ev> {
        if let Some(words) = self.streamed_words(reply) {
            return super::streamed::events(words);
        }
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

    /// The number of words of a streamed reply, if `reply` is one.
    fn streamed_words(&self, reply: &str) -> Option<usize> {
        if !reply.starts_with("word-1") {
            return None;
        }
        let words = reply.split(' ').count();
        (reply == super::streamed::streamed_reply(words)).then_some(words)
    }

    /// Runs a new turn (stores its events) or finds the stored one. Returns the events to send
    /// and the turn's cancellation signal.
    pub(super) fn execute_or_replay(
        &self,
        chat: &str,
        body: &TurnBody,
    ) -> (Vec<Ev>, watch::Receiver<bool>) {
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
