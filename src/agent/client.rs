//! One configured agent of whichever kind, and the turn retry loop.
//!
//! Why this file exists: callers hold an [`AgentClient`] and never care which kind it is;
//! [`turn_with_retry`] relies on the contract's idempotency (a turn retried with the same
//! `turn_id` never runs twice on the agent).

use std::time::Duration;

use super::a2a::A2aAgent;
use super::about::SharedAbout;
use super::echo::EchoAgent;
use super::error::AgentError;
use super::http::HttpAgent;
use super::openai::OpenAiAgent;
use super::types::{AgentEvent, ContextInfo, HealthInfo, SnapshotInfo, TurnOutcome, TurnRequest};
use crate::retry::RetryPolicy;

/// One configured agent, of whichever kind.
#[derive(Debug)]
pub enum AgentClient {
    /// A real agent server.
    Http(HttpAgent),
    /// The built-in echo agent.
    Echo(EchoAgent),
    /// An OpenAI-compatible chat completions server (Surfaces keeps the conversations).
    OpenAi(OpenAiAgent),
    /// An agent speaking A2A.
    A2a(A2aAgent),
}

impl AgentClient {
    /// A client for the agent server at `base_url` (`http` or `https`, may carry a path prefix).
    /// `token` is sent as a Bearer token; `timeout` bounds each call, a whole turn stream included.
    pub fn http(
        base_url: &str,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, AgentError> {
        HttpAgent::new(base_url, token, timeout).map(AgentClient::Http)
    }

    /// An OpenAI-compatible server at `base_url` (up to and including `/v1`) as agent
    /// `agent_id`: `api_key` is sent as a bearer token, `timeout` bounds its silences,
    /// images are read from `workspace`, and the conversations are kept in `store`.
    pub fn openai(
        base_url: &str,
        api_key: Option<String>,
        timeout: Duration,
        settings: crate::config::OpenAiSettings,
        workspace: Option<std::path::PathBuf>,
        store: &crate::store::Store,
        agent_id: &str,
    ) -> Result<Self, AgentError> {
        let http = HttpAgent::new(base_url, api_key, timeout)?;
        OpenAiAgent::new(http, settings, workspace, store, agent_id).map(AgentClient::OpenAi)
    }

    /// An A2A agent whose card is at `base_url`: `token` is sent as a bearer token,
    /// `timeout` bounds its silences, files go through `workspace`, what Surfaces remembers
    /// of its chats is kept in `store`, and what its card says is shared through `about`.
    pub fn a2a(
        base_url: &str,
        token: Option<String>,
        timeout: Duration,
        workspace: Option<std::path::PathBuf>,
        store: &crate::store::Store,
        agent_id: &str,
        about: SharedAbout,
    ) -> Result<Self, AgentError> {
        A2aAgent::new(base_url, token, timeout, workspace, store, agent_id, about)
            .map(AgentClient::A2a)
    }

    /// Whether the agent's questions take any answer (the person's next message), not only
    /// `!yes` / `!no`.
    pub fn takes_free_answers(&self) -> bool {
        matches!(self, AgentClient::A2a(_))
    }

    /// The HTTP transport of the kinds that have one.
    fn transport(&mut self) -> Option<&mut HttpAgent> {
        match self {
            AgentClient::Http(agent) => Some(agent),
            AgentClient::OpenAi(agent) => Some(agent.http_mut()),
            AgentClient::A2a(agent) => Some(agent.http_mut()),
            AgentClient::Echo(_) => None,
        }
    }

    /// Cuts a turn past `max_bytes` of text and file events (config `replies.max_turn_bytes`).
    /// The echo agent's replies are bounded by the message they repeat.
    pub fn with_max_turn_bytes(mut self, max_bytes: usize) -> Self {
        if let Some(agent) = self.transport() {
            agent.set_max_turn_bytes(max_bytes);
        }
        self
    }

    /// Gives up on a turn still running after `max_turn` (config `agents[].max_turn_secs`);
    /// `timeout` bounds the agent's silences.
    pub fn with_max_turn(mut self, max_turn: Duration) -> Self {
        if let Some(agent) = self.transport() {
            agent.set_max_turn(max_turn);
        }
        self
    }

    /// The built-in echo agent.
    pub fn echo() -> Self {
        AgentClient::Echo(EchoAgent::new())
    }

    /// Runs one turn, once (no retry: see [`turn_with_retry`]). `on_event` sees every event of
    /// the stream as it arrives, the final one included.
    pub async fn turn(
        &self,
        chat: &str,
        req: &TurnRequest,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        match self {
            AgentClient::Http(a) => a.turn(chat, req, on_event).await,
            AgentClient::Echo(a) => a.turn(chat, req, on_event),
            AgentClient::OpenAi(a) => a.turn(chat, req, on_event).await,
            AgentClient::A2a(a) => a.turn(chat, req, on_event).await,
        }
    }

    /// Answers a `confirm`; the outcome is the rest of the turn.
    pub async fn confirm(
        &self,
        chat: &str,
        confirm_id: &str,
        approved: bool,
        turn_id: &str,
    ) -> Result<TurnOutcome, AgentError> {
        self.confirm_with_events(chat, confirm_id, approved, turn_id, &mut |_| {})
            .await
    }

    /// [`AgentClient::confirm`], also passing each event of the continued stream to `on_event`.
    pub async fn confirm_with_events(
        &self,
        chat: &str,
        confirm_id: &str,
        approved: bool,
        turn_id: &str,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        match self {
            AgentClient::Http(a) => {
                a.confirm(chat, confirm_id, approved, turn_id, on_event)
                    .await
            }
            AgentClient::Echo(a) => a.confirm(chat, confirm_id, approved, turn_id, on_event),
            AgentClient::A2a(a) => {
                a.confirm(chat, confirm_id, approved, turn_id, on_event)
                    .await
            }
            // It never asks (no `confirm` events): nothing waits for an answer.
            AgentClient::OpenAi(_) => Err(AgentError::Rejected {
                status: 404,
                body: None,
            }),
        }
    }

    /// Asks the agent to cancel a running turn (its stream then ends with `error` `cancelled`).
    pub async fn cancel(&self, chat: &str, turn_id: &str) -> Result<(), AgentError> {
        match self {
            AgentClient::Http(a) => a.cancel(chat, turn_id).await,
            AgentClient::Echo(a) => a.cancel(chat, turn_id),
            AgentClient::OpenAi(a) => a.cancel(chat, turn_id),
            AgentClient::A2a(a) => a.cancel(chat, turn_id).await,
        }
    }

    /// What the agent holds for a chat.
    pub async fn context(&self, chat: &str) -> Result<ContextInfo, AgentError> {
        match self {
            AgentClient::Http(a) => a.context(chat).await,
            AgentClient::Echo(a) => a.context(chat),
            AgentClient::OpenAi(a) => a.context(chat),
            AgentClient::A2a(a) => a.context(chat),
        }
    }

    /// Saves the chat's context under `name`.
    pub async fn save_snapshot(&self, chat: &str, name: &str) -> Result<SnapshotInfo, AgentError> {
        match self {
            AgentClient::Http(a) => a.save_snapshot(chat, name).await,
            AgentClient::Echo(a) => a.save_snapshot(chat, name),
            AgentClient::OpenAi(a) => a.save_snapshot(chat, name).await,
            AgentClient::A2a(a) => a.save_snapshot(chat, name),
        }
    }

    /// Loads snapshot `snapshot` into `chat`; `from_chat` names the chat it was saved in when
    /// that is another one (a rotated or other room of the same owner).
    pub async fn restore(
        &self,
        chat: &str,
        snapshot: &str,
        from_chat: Option<&str>,
    ) -> Result<(), AgentError> {
        match self {
            AgentClient::Http(a) => a.restore(chat, snapshot, from_chat).await,
            AgentClient::Echo(a) => a.restore(chat, snapshot, from_chat),
            AgentClient::OpenAi(a) => a.restore(chat, snapshot, from_chat).await,
            AgentClient::A2a(a) => a.restore(chat, snapshot, from_chat),
        }
    }

    /// Drops a conversation. Deleting one the agent does not know is not an error.
    pub async fn delete_chat(&self, chat: &str) -> Result<(), AgentError> {
        match self {
            AgentClient::Http(a) => a.delete_chat(chat).await,
            AgentClient::Echo(a) => a.delete_chat(chat),
            AgentClient::OpenAi(a) => a.delete_chat(chat).await,
            AgentClient::A2a(a) => a.delete_chat(chat).await,
        }
    }

    /// The agent's health.
    pub async fn health(&self) -> Result<HealthInfo, AgentError> {
        match self {
            AgentClient::Http(a) => a.health().await,
            AgentClient::Echo(a) => Ok(a.health()),
            AgentClient::OpenAi(a) => a.health().await,
            AgentClient::A2a(a) => a.health().await,
        }
    }
}

/// Runs a turn, retrying network and transient failures per `policy` with the same `turn_id`
/// (the agent replays rather than re-runs a turn it has seen).
///
/// `on_event` sees the events of every attempt: after a retry it may see the start of the reply
/// again. The returned [`TurnOutcome`] is authoritative.
pub async fn turn_with_retry(
    client: &AgentClient,
    chat: &str,
    req: &TurnRequest,
    policy: RetryPolicy,
    on_event: &mut (dyn FnMut(&AgentEvent) + Send),
) -> Result<TurnOutcome, AgentError> {
    turn_with_retry_observed(client, chat, req, policy, on_event, &mut || {}).await
}

/// [`turn_with_retry`], calling `on_retry` before each new attempt (whoever shows the events
/// as they come starts over: the agent replays the turn from its start).
pub async fn turn_with_retry_observed(
    client: &AgentClient,
    chat: &str,
    req: &TurnRequest,
    policy: RetryPolicy,
    on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    on_retry: &mut (dyn FnMut() + Send),
) -> Result<TurnOutcome, AgentError> {
    let mut attempts_made = 0u32;
    loop {
        if attempts_made > 0 {
            on_retry();
        }
        attempts_made += 1;
        let err = match client.turn(chat, req, on_event).await {
            Ok(outcome) => return Ok(outcome),
            Err(err) => err,
        };
        let Some(delay) = policy.delay(attempts_made, err.retry_kind(), fastrand::f64()) else {
            return Err(err);
        };
        tracing::warn!(
            chat,
            turn_id = %req.turn_id,
            attempt = attempts_made,
            delay_ms = delay.as_millis() as u64,
            error = %err,
            "agent turn failed, retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::types::TurnSender;
    use super::*;
    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn client_futures_are_send() {
        let client = AgentClient::echo();
        let req = TurnRequest {
            turn_id: "t".into(),
            sender: TurnSender {
                id: "@a:b".into(),
                display_name: None,
            },
            text: String::new(),
            attachments: vec![],
        };
        let mut on_event = |_: &AgentEvent| {};
        let fut = turn_with_retry(&client, "c", &req, RetryPolicy::AGENT, &mut on_event);
        assert_send(&fut);
        drop(fut);
        let fut = client.context("c");
        assert_send(&fut);
    }
}
