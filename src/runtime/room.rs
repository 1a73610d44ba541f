//! One actor per managed chat room: strict order within the room, independence between rooms.
//!
//! A room actor takes the room's messages one at a time (`ctx.wait`: the next message
//! waits until this one is answered, while the thread and every other room keep going),
//! runs the turn through the router and the agent's connection, shows a typing notice
//! meanwhile, and answers as a reply to the person's message. Every failure ends in a
//! notice in the room: a person never waits in silence.

use std::time::Duration;

use actix::{Actor, AsyncContext, Context, Handler, Message, WrapFuture};
use actors::{ChildCtx, ChildHandle};
use matrix_sdk::ruma::events::room::message::ReplyMetadata;
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use matrix_sdk::{Client, Room};

use super::agent_conn::RunTurn;
use super::router::{ResolveAgent, Router};
use crate::agent::{AgentError, RetryKind, TurnRequest, TurnSender};
use crate::matrix::{self, txn_id_for};
use crate::store::Store;
use crate::texts;

/// How often the typing notice is renewed while a turn runs (the homeserver drops it
/// after a few seconds otherwise).
pub const TYPING_REFRESH: Duration = Duration::from_secs(3);
/// Attempts to send a reply before giving up (the transaction id makes retries safe).
pub const SEND_ATTEMPTS: u32 = 4;
/// First pause between send attempts; doubles each time.
pub const SEND_RETRY_BASE: Duration = Duration::from_millis(300);
/// Transaction-id part of the reply to a message.
const REPLY_PART: u32 = 0;
/// Transaction-id part of a notice answering a message (failure notices).
const NOTICE_PART: u32 = 1;

/// What a room actor needs from the rest of the runtime.
#[derive(Clone)]
pub struct RoomDeps {
    /// The Matrix client.
    pub client: Client,
    /// The store.
    pub store: Store,
    /// The router.
    pub router: ChildHandle<Router>,
}

/// The room actor.
pub struct RoomActor {
    room_id: OwnedRoomId,
    deps: RoomDeps,
    _ctx: ChildCtx,
}

impl RoomActor {
    /// A fresh incarnation for `room_id`.
    pub fn new(room_id: OwnedRoomId, deps: RoomDeps, ctx: ChildCtx) -> Self {
        Self {
            room_id,
            deps,
            _ctx: ctx,
        }
    }
}

impl Actor for RoomActor {
    type Context = Context<Self>;
}
actors::supervised_actor!(RoomActor);

/// A person's text message in this room.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct UserMessage {
    /// The Matrix event id (turn and transaction ids derive from it).
    pub event_id: OwnedEventId,
    /// Who wrote it.
    pub sender: OwnedUserId,
    /// Their display name, if known.
    pub display_name: Option<String>,
    /// The text.
    pub body: String,
}

impl Handler<UserMessage> for RoomActor {
    type Result = ();

    fn handle(&mut self, msg: UserMessage, ctx: &mut Context<Self>) {
        let work = answer(self.room_id.clone(), self.deps.clone(), msg);
        // Strict order: the next message of this room waits for this one.
        ctx.wait(work.into_actor(self));
    }
}

/// The turn id of the turn answering `event_id` (stable across retries and restarts).
pub fn turn_id_for(event_id: &matrix_sdk::ruma::EventId) -> String {
    let txn = txn_id_for(event_id, REPLY_PART);
    format!(
        "turn-{}",
        txn.as_str()
            .trim_start_matches("sfc-")
            .trim_end_matches("-0")
    )
}

async fn answer(room_id: OwnedRoomId, deps: RoomDeps, msg: UserMessage) {
    let Some(room) = deps.client.get_room(&room_id) else {
        tracing::warn!(room_id = %room_id, "message for a room the client does not know");
        return;
    };
    let span = tracing::info_span!("turn", room_id = %room_id, event_id = %msg.event_id);
    let _entered = span.enter();
    let record = match deps.store.room(room_id.as_str()) {
        Ok(Some(record)) => record,
        Ok(None) => {
            tracing::error!("managed room without a record in the store");
            notice(&room, &msg, texts::internal_error()).await;
            return;
        }
        Err(error) => {
            tracing::error!(%error, "cannot read the room's record");
            notice(&room, &msg, texts::internal_error()).await;
            return;
        }
    };
    let route = match deps
        .router
        .send(ResolveAgent {
            agent_id: record.agent_id.clone(),
        })
        .await
    {
        Ok(Some(route)) => route,
        Ok(None) => {
            tracing::warn!(agent_id = %record.agent_id, "room bound to an agent that is not configured");
            notice(&room, &msg, &texts::agent_gone(&record.agent_id)).await;
            return;
        }
        Err(error) => {
            tracing::error!(%error, "router unavailable");
            notice(&room, &msg, texts::internal_error()).await;
            return;
        }
    };

    let typing = spawn_typing(room.clone());
    let request = TurnRequest {
        turn_id: turn_id_for(&msg.event_id),
        sender: TurnSender {
            id: msg.sender.to_string(),
            display_name: msg.display_name.clone(),
        },
        text: msg.body.clone(),
        attachments: Vec::new(),
    };
    let result = route
        .conn
        .send(RunTurn {
            chat_id: record.platform_chat_id.clone(),
            request,
        })
        .await;
    typing.abort();
    matrix::typing(&room, false).await;

    match result {
        Ok(Ok(outcome)) => {
            let reply = ReplyMetadata::new(&msg.event_id, &msg.sender, None);
            let txn = txn_id_for(&msg.event_id, REPLY_PART);
            let text = if outcome.reply.trim().is_empty() {
                texts::empty_reply(&route.name)
            } else {
                outcome.reply
            };
            let mut attempt = 0;
            loop {
                attempt += 1;
                match matrix::send_reply(&room, reply, &text, &txn).await {
                    Ok(_) => break,
                    Err(error) if attempt < SEND_ATTEMPTS && error.is_retryable() => {
                        tracing::warn!(%error, attempt, "sending the reply failed; retrying");
                        tokio::time::sleep(SEND_RETRY_BASE * 2u32.pow(attempt - 1)).await;
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot send the reply");
                        break;
                    }
                }
            }
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, agent = %route.id, "agent turn failed");
            notice(&room, &msg, &agent_failure_text(&route.name, &error)).await;
        }
        Err(error) => {
            tracing::error!(%error, agent = %route.id, "agent connection unavailable");
            notice(
                &room,
                &msg,
                &texts::agent_unreachable(&route.name, "restarting"),
            )
            .await;
        }
    }
}

/// The notice for a failed turn, by kind of failure, in words a person can use.
fn agent_failure_text(agent_name: &str, error: &AgentError) -> String {
    let reason = match error {
        AgentError::Timeout(after) => return texts::agent_timeout(agent_name, after.as_secs()),
        AgentError::Unreachable(_) | AgentError::Io(_) => "cannot connect".to_owned(),
        AgentError::Busy { status, .. } => format!("busy, HTTP {status}"),
        AgentError::Server { status, .. } => format!("server error, HTTP {status}"),
        AgentError::Rejected { status, .. } => format!("request refused, HTTP {status}"),
        AgentError::Protocol(_) | AgentError::Incomplete => "garbled answer".to_owned(),
        AgentError::TurnFailed { code, message } => format!("{code}: {message}"),
        AgentError::InvalidConfig(_) | AgentError::InvalidChatId(_) => {
            "misconfigured connection".to_owned()
        }
    };
    match error.retry_kind() {
        RetryKind::Network | RetryKind::Transient { .. } => {
            texts::agent_unreachable(agent_name, &reason)
        }
        RetryKind::Permanent => texts::agent_error(agent_name, &reason),
    }
}

/// Keeps the typing notice on until aborted.
fn spawn_typing(room: Room) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            matrix::typing(&room, true).await;
            tokio::time::sleep(TYPING_REFRESH).await;
        }
    })
}

/// A notice answering `msg`, as a reply to it (deduplicated by its transaction id);
/// failures are logged.
async fn notice(room: &Room, msg: &UserMessage, text: &str) {
    let txn = txn_id_for(&msg.event_id, NOTICE_PART);
    let reply = ReplyMetadata::new(&msg.event_id, &msg.sender, None);
    if let Err(error) = matrix::send_notice_reply(room, reply, text, &txn).await {
        tracing::error!(%error, "cannot send a notice to the room");
    }
}
