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
//! - reply at length: a turn whose text is `ref:long-reply <bytes>` gets a markdown reply of
//!   that many bytes ([`long_reply`]);
//! - stream a reply word by word with progress lines: a turn whose text is `ref:stream <n>`
//!   gets `n` words, one `delta` each, a `status` every few ([`streamed_reply`]);
//! - require a Bearer token ([`ReferenceAgent::require_token`]);
//! - go down (the port refuses connections, open connections are cut) and come back up on the
//!   same port ([`ReferenceAgent::go_down`], [`ReferenceAgent::come_up`]).
//!
//! The reply to a turn is `"ref-agent <id> got: <text>"` (plus ` [attachments: a, b]` when the
//! turn has some), streamed as a `status`, two `delta`s and a `done`. The server stops when the
//! [`ReferenceAgent`] is dropped.
//!
//! This module is the handle; the agent itself is in pieces of one concept each: `orders`
//! (faults and scripts a test queues), `records` (what was received), `wire` (the request
//! bodies of the contract), `state` (the shared state and the execution of a turn), `sse` (the
//! event streams), `routes`, `turns` and `chats` (the HTTP endpoints) and `listener` (the
//! connections it can cut).

mod chats;
mod listener;
mod long;
mod orders;
mod records;
mod routes;
mod sse;
mod state;
mod streamed;
mod turns;
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use listener::spawn_server;
pub use long::{long_reply, LONG_REPLY_COMMAND};
pub use orders::{Fault, Script};
pub use records::{Endpoint, RecordedAttachment, RecordedRequest, RecordedTurn};
use state::{AgentState, Shared};
pub use streamed::{status_before, streamed_reply, STATUS_EVERY, STREAM_COMMAND};
use wire::TurnBody;

/// Version the reference agent reports in its health.
pub const REF_AGENT_VERSION: &str = "ref-1";
/// How long [`ReferenceAgent::come_up`] keeps trying to bind its old port.
pub const REBIND_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two bind attempts.
pub const REBIND_POLL: Duration = Duration::from_millis(20);
/// Pause between two checks of [`ReferenceAgent::wait_until`].
pub const WAIT_POLL: Duration = Duration::from_millis(10);
/// Code of the `error` event of a cancelled turn.
pub const CANCELLED: &str = "cancelled";

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

    /// The requests to `endpoint` for `chat`, in order.
    pub fn requests_to(&self, endpoint: Endpoint, chat: &str) -> Vec<RecordedRequest> {
        let mut requests = self.requests();
        requests.retain(|r| r.endpoint == endpoint && r.chat.as_deref() == Some(chat));
        requests
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

    /// Waits until a turn whose text is `text` arrived; returns whether one did.
    pub async fn wait_for_turn_text(&self, text: &str, timeout: Duration) -> bool {
        self.wait_until(timeout, |a| a.turns().iter().any(|t| t.text == text))
            .await
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
