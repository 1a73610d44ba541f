//! The built-in echo agent.
//!
//! This exists so that Surfaces is usable (and demonstrable, and testable end to end on the
//! Matrix side) without any agent platform: when no agent is configured, rooms talk to this one.
//! It follows the same contract as a real agent (`docs/agent-api.md`) from in-memory state:
//! a reply is a `delta` then a `done`, turns are idempotent by `turn_id`, context counts the
//! messages of each chat, and snapshots are kept by name. Nothing survives a restart.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{
    AgentError, AgentEvent, ContextInfo, ErrorBody, HealthInfo, SnapshotInfo, TurnAccumulator,
    TurnOutcome, TurnRequest,
};
use crate::idmap::IdMap;

/// The id the echo agent reports in its health.
pub const ECHO_AGENT_ID: &str = "echo";

/// What the echo agent puts before the text it got.
pub const ECHO_PREFIX: &str = "echo: ";

/// How many turn ids are remembered for idempotency, across all chats (oldest forgotten first).
pub const MAX_REMEMBERED_TURNS: usize = 4096;

/// Messages a turn adds to a chat (the user's and the reply).
const MESSAGES_PER_TURN: u64 = 2;

#[derive(Debug, Default, Clone, Copy)]
struct ChatState {
    messages: u64,
    tokens: u64,
}

#[derive(Debug, Default)]
struct State {
    chats: IdMap<String, ChatState>,
    /// (chat the snapshot was saved from, name) → state at that time.
    snapshots: IdMap<(String, String), ChatState>,
    /// (chat, turn_id) → the reply, for idempotent replays.
    turns: IdMap<Arc<(String, String)>, String>,
    /// The keys of `turns`, oldest first (shared with the map: one allocation per turn).
    turn_order: VecDeque<Arc<(String, String)>>,
}

/// The built-in echo agent. Cheap to create; all state is in memory.
#[derive(Debug, Default)]
pub struct EchoAgent {
    state: Mutex<State>,
}

/// Rough token count for the context report: words.
fn approx_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The reply the echo agent gives to a request.
pub fn echo_reply(req: &TurnRequest) -> String {
    let mut reply = format!("{ECHO_PREFIX}{}", req.text);
    if !req.attachments.is_empty() {
        let names: Vec<&str> = req.attachments.iter().map(|a| a.name.as_str()).collect();
        reply.push_str(&format!(" (attachments: {})", names.join(", ")));
    }
    reply
}

fn not_found(what: &str) -> AgentError {
    AgentError::Rejected {
        status: 404,
        body: Some(ErrorBody {
            code: "not_found".to_owned(),
            message: what.to_owned(),
        }),
    }
}

fn bad_request(what: &str) -> AgentError {
    AgentError::Rejected {
        status: 400,
        body: Some(ErrorBody {
            code: "bad_request".to_owned(),
            message: what.to_owned(),
        }),
    }
}

impl EchoAgent {
    /// A fresh echo agent with no chats.
    pub fn new() -> Self {
        Self::default()
    }

    /// Echoes the request: a `delta` with the reply, then `done`.
    pub fn turn(
        &self,
        chat: &str,
        req: &TurnRequest,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        if req.turn_id.is_empty() {
            return Err(bad_request("turn_id is empty"));
        }
        let reply = {
            let mut st = self.state.lock();
            let key = (chat.to_owned(), req.turn_id.clone());
            match st.turns.get(&key) {
                Some(reply) => reply.clone(),
                None => {
                    let reply = echo_reply(req);
                    let tokens = approx_tokens(&req.text) + approx_tokens(&reply);
                    // A chat already known is not named again (no key made for it).
                    match st.chats.get_mut(chat) {
                        Some(c) => {
                            c.messages += MESSAGES_PER_TURN;
                            c.tokens += tokens;
                        }
                        None => {
                            let c = ChatState {
                                messages: MESSAGES_PER_TURN,
                                tokens,
                            };
                            st.chats.insert(chat.to_owned(), c);
                        }
                    }
                    let key = Arc::new(key);
                    st.turns.insert(Arc::clone(&key), reply.clone());
                    st.turn_order.push_back(key);
                    while st.turn_order.len() > MAX_REMEMBERED_TURNS {
                        if let Some(old) = st.turn_order.pop_front() {
                            st.turns.remove(&old);
                        }
                    }
                    reply
                }
            }
        };
        let events = [
            AgentEvent::Delta {
                text: reply.clone(),
            },
            AgentEvent::Done { text: reply },
        ];
        let mut acc = TurnAccumulator::new();
        for ev in &events {
            on_event(ev);
            if let Some(result) = acc.apply(ev) {
                return result;
            }
        }
        Err(AgentError::Incomplete)
    }

    /// The echo agent never asks for confirmation, so every confirmation id is unknown.
    pub fn confirm(
        &self,
        _chat: &str,
        confirm_id: &str,
        _approved: bool,
        _turn_id: &str,
        _on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        Err(not_found(&format!("no confirmation {confirm_id:?}")))
    }

    /// Echo turns finish at once: nothing to cancel.
    pub fn cancel(&self, _chat: &str, _turn_id: &str) -> Result<(), AgentError> {
        Ok(())
    }

    /// Messages and tokens of the chat, and the snapshots saved from it.
    pub fn context(&self, chat: &str) -> Result<ContextInfo, AgentError> {
        let st = self.state.lock();
        let c = st.chats.get(chat).copied().unwrap_or_default();
        let mut snapshots: Vec<String> = st
            .snapshots
            .keys()
            .filter(|(from, _)| from == chat)
            .map(|(_, name)| name.clone())
            .collect();
        snapshots.sort();
        Ok(ContextInfo {
            messages: c.messages,
            tokens: c.tokens,
            summary: Some(format!("echo conversation, {} messages", c.messages)),
            snapshots,
        })
    }

    /// Saves the chat's counters under `name` (overwriting a snapshot of the same name).
    pub fn save_snapshot(&self, chat: &str, name: &str) -> Result<SnapshotInfo, AgentError> {
        if name.is_empty() {
            return Err(bad_request("snapshot name is empty"));
        }
        let mut st = self.state.lock();
        let c = st.chats.get(chat).copied().unwrap_or_default();
        st.snapshots.insert((chat.to_owned(), name.to_owned()), c);
        Ok(SnapshotInfo {
            name: name.to_owned(),
            messages: c.messages,
        })
    }

    /// Loads a snapshot saved from `from_chat` (default: `chat`) into `chat`.
    pub fn restore(
        &self,
        chat: &str,
        snapshot: &str,
        from_chat: Option<&str>,
    ) -> Result<(), AgentError> {
        let mut st = self.state.lock();
        let source = from_chat.unwrap_or(chat);
        let saved = st
            .snapshots
            .get(&(source.to_owned(), snapshot.to_owned()))
            .copied()
            .ok_or_else(|| not_found(&format!("no snapshot {snapshot:?} in chat {source:?}")))?;
        st.chats.insert(chat.to_owned(), saved);
        Ok(())
    }

    /// Forgets the conversation (its snapshots stay loadable from other chats).
    pub fn delete_chat(&self, chat: &str) -> Result<(), AgentError> {
        let mut st = self.state.lock();
        st.chats.remove(chat);
        Ok(())
    }

    /// Always healthy.
    pub fn health(&self) -> HealthInfo {
        HealthInfo {
            status: "ok".to_owned(),
            agent: ECHO_AGENT_ID.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{AgentClient, Attachment, TurnSender};

    fn req(turn_id: &str, text: &str) -> TurnRequest {
        TurnRequest {
            turn_id: turn_id.into(),
            sender: TurnSender {
                id: "@alice:example.org".into(),
                display_name: Some("Alice".into()),
            },
            text: text.into(),
            attachments: vec![],
        }
    }

    #[tokio::test]
    async fn echoes_with_delta_then_done() {
        let client = AgentClient::echo();
        let mut events = Vec::new();
        let out = client
            .turn("c1", &req("t1", "hello"), &mut |e| events.push(e.clone()))
            .await;
        assert_eq!(
            out.as_ref().map(|o| o.reply.as_str()).ok(),
            Some("echo: hello")
        );
        assert_eq!(
            events,
            vec![
                AgentEvent::Delta {
                    text: "echo: hello".into()
                },
                AgentEvent::Done {
                    text: "echo: hello".into()
                }
            ]
        );
    }

    #[test]
    fn mentions_attachments() {
        let mut r = req("t", "see files");
        r.attachments = vec![
            Attachment {
                path: "inbox/r/e-a.pdf".into(),
                name: "a.pdf".into(),
                mime: "application/pdf".into(),
                size: 3,
            },
            Attachment {
                path: "inbox/r/e-b.png".into(),
                name: "b.png".into(),
                mime: "image/png".into(),
                size: 4,
            },
        ];
        assert_eq!(
            echo_reply(&r),
            "echo: see files (attachments: a.pdf, b.png)"
        );
    }

    #[test]
    fn context_counts_and_turns_are_idempotent() {
        let a = EchoAgent::new();
        let mut noop = |_: &AgentEvent| {};
        assert!(a.turn("c", &req("t1", "one two"), &mut noop).is_ok());
        assert!(a.turn("c", &req("t1", "one two"), &mut noop).is_ok());
        assert!(a.turn("c", &req("t2", "three"), &mut noop).is_ok());
        let ctx = a.context("c").ok();
        assert_eq!(ctx.as_ref().map(|c| c.messages), Some(4));
        assert!(ctx.map(|c| c.tokens > 0).unwrap_or(false));
        assert_eq!(a.context("other").ok().map(|c| c.messages), Some(0));
    }

    #[test]
    fn snapshots_save_restore_across_chats() {
        let a = EchoAgent::new();
        let mut noop = |_: &AgentEvent| {};
        assert!(a.turn("old", &req("t1", "x"), &mut noop).is_ok());
        assert_eq!(
            a.save_snapshot("old", "before").ok().map(|s| s.messages),
            Some(2)
        );
        assert_eq!(
            a.context("old").ok().map(|c| c.snapshots),
            Some(vec!["before".to_owned()])
        );
        assert!(a.delete_chat("old").is_ok());
        assert_eq!(a.context("old").ok().map(|c| c.messages), Some(0));
        assert!(a.restore("new", "before", Some("old")).is_ok());
        assert_eq!(a.context("new").ok().map(|c| c.messages), Some(2));
        assert!(matches!(
            a.restore("new", "missing", None),
            Err(AgentError::Rejected { status: 404, .. })
        ));
        assert!(matches!(
            a.save_snapshot("new", ""),
            Err(AgentError::Rejected { status: 400, .. })
        ));
    }

    #[test]
    fn remembered_turns_are_bounded() {
        let a = EchoAgent::new();
        let mut noop = |_: &AgentEvent| {};
        for i in 0..(MAX_REMEMBERED_TURNS + 10) {
            assert!(a.turn("c", &req(&format!("t{i}"), "x"), &mut noop).is_ok());
        }
        assert_eq!(a.state.lock().turns.len(), MAX_REMEMBERED_TURNS);
    }

    #[tokio::test]
    async fn confirm_unknown_is_permanent_and_health_ok() {
        let client = AgentClient::echo();
        let err = client.confirm("c", "nope", true, "t").await;
        assert!(matches!(
            err.as_ref().map_err(|e| e.retry_kind()),
            Err(crate::agent::RetryKind::Permanent)
        ));
        assert!(client.cancel("c", "t").await.is_ok());
        assert!(client.health().await.map(|h| h.is_ok()).unwrap_or(false));
        assert!(matches!(
            client.turn("c", &req("", "x"), &mut |_| {}).await,
            Err(AgentError::Rejected { status: 400, .. })
        ));
    }
}
