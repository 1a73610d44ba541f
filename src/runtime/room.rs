//! One actor per managed chat room: strict order within the room, independence between rooms.
//!
//! A room actor takes the room's messages one at a time (`ctx.wait`: the next message
//! waits until this one is answered, while the thread and every other room keep going),
//! runs the turn through the router and the agent's connection, shows a typing notice
//! meanwhile, and answers as a reply to the person's message. Every failure ends in a
//! notice in the room: a person never waits in silence.
//!
//! Files ([`attachments`]): a file, image, audio or video message is downloaded into the
//! agent's workspace (`inbox/`) in the same strict order. The caption rule: a file with a
//! caption is a turn of its own (the caption is its text); a file without one waits,
//! acknowledged by a notice, and goes with the same person's next message in the room. The
//! files the agent posts (`file` events) follow its reply; refused ones get a notice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context, Handler, Message, WrapFuture};
use actors::{ChildCtx, ChildHandle};
use matrix_sdk::ruma::events::room::message::ReplyMetadata;
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use matrix_sdk::{Client, Room};
use parking_lot::Mutex;
use tracing::Instrument;

pub mod attachments;

pub use self::attachments::{FileDeps, UserFile};

use super::agent_conn::RunTurn;
use super::commands::InFlight;
use super::router::{ResolveAgent, Router};
use crate::agent::{AgentError, RetryKind, TurnRequest, TurnSender};
use crate::commands::Parsed;
use crate::crash::{self, CrashPoint};
use crate::journal::Journal;
use crate::matrix::{self, txn_id_for};
use crate::ops::{MessageOutcome, Metrics};
use crate::retry::{retry, RetryPolicy};
use crate::store::Store;
use crate::texts;

/// How often the typing notice is renewed while a turn runs (the homeserver drops it
/// after a few seconds otherwise).
pub const TYPING_REFRESH: Duration = Duration::from_secs(3);
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
    /// The inbound journal (resume, completion).
    pub journal: Journal,
    /// Resumes per event in this process, across incarnations (a message that keeps
    /// killing its room actor is given up after [`MAX_RESUMES`]).
    pub resumes: Arc<Mutex<HashMap<String, u32>>>,
    /// Message outcomes are counted here.
    pub metrics: Arc<Metrics>,
    /// Files: the size limit, and the files waiting for their sender's next message.
    pub files: FileDeps,
    /// What the chat commands need.
    pub commands: super::commands::CommandDeps,
}

/// Times a journaled message is resumed by restarting incarnations of its room actor
/// before it is answered with an error notice instead (a poison message).
pub const MAX_RESUMES: u32 = 3;

/// The room actor.
pub struct RoomActor {
    room_id: OwnedRoomId,
    deps: Arc<RoomDeps>,
    _ctx: ChildCtx,
}

impl RoomActor {
    /// A fresh incarnation for `room_id`.
    pub fn new(room_id: OwnedRoomId, deps: Arc<RoomDeps>, ctx: ChildCtx) -> Self {
        Self {
            room_id,
            deps,
            _ctx: ctx,
        }
    }
}

impl Actor for RoomActor {
    type Context = Context<Self>;

    /// Every incarnation first finishes what its room left pending in the journal
    /// (after a crash of the process or of a previous incarnation), in journal order.
    fn started(&mut self, ctx: &mut Context<Self>) {
        let room_id = self.room_id.clone();
        let deps = self.deps.clone();
        ctx.wait(resume_pending(room_id, deps).into_actor(self));
    }
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
        let work = process(self.room_id.clone(), self.deps.clone(), msg);
        // Strict order: the next message of this room waits for this one.
        ctx.wait(work.into_actor(self));
    }
}

/// Answers the room's pending journal entries, oldest first.
async fn resume_pending(room_id: OwnedRoomId, deps: Arc<RoomDeps>) {
    let entries = match deps.journal.pending() {
        Ok(entries) => entries,
        Err(error) => {
            tracing::error!(room_id = %room_id, %error, "cannot read the journal to resume");
            return;
        }
    };
    for entry in entries
        .into_iter()
        .filter(|e| e.room_id == room_id.as_str())
    {
        let (Ok(event_id), Ok(sender)) = (
            OwnedEventId::try_from(entry.event_id.as_str()),
            OwnedUserId::try_from(entry.sender.as_str()),
        ) else {
            tracing::error!(event_id = %entry.event_id, "unreadable journal entry; dropping it");
            let _ = deps.journal.complete(&entry.event_id).await;
            continue;
        };
        let msg = UserMessage {
            event_id,
            sender,
            display_name: None,
            body: entry.body,
        };
        let resumes = {
            let mut map = deps.resumes.lock();
            let n = map.entry(entry.event_id.clone()).or_insert(0);
            *n += 1;
            *n
        };
        tracing::info!(room_id = %room_id, event_id = %msg.event_id, resumes, "resuming a journaled message");
        if resumes > MAX_RESUMES {
            tracing::error!(room_id = %room_id, event_id = %msg.event_id,
                "giving up on a message that keeps failing its room");
            if let Some(room) = deps.client.get_room(&room_id) {
                notice(&room, &msg, texts::internal_error()).await;
            }
            finish(&deps, &msg).await;
            continue;
        }
        process(room_id.clone(), deps.clone(), msg).await;
    }
}

/// Answers one message unless it was answered already, then marks it done.
async fn process(room_id: OwnedRoomId, deps: Arc<RoomDeps>, msg: UserMessage) {
    match deps.journal.is_done(msg.event_id.as_str()) {
        Ok(true) => return,
        Ok(false) => {}
        Err(error) => tracing::warn!(%error, "cannot read the journal; answering anyway"),
    }
    let span = tracing::info_span!("message", room_id = %room_id, event_id = %msg.event_id);
    if answer(room_id, deps.clone(), msg.clone(), Vec::new())
        .instrument(span)
        .await
    {
        crash::point(CrashPoint::AfterSend);
        finish(&deps, &msg).await;
    }
}

/// Marks a message answered in the journal.
async fn finish(deps: &RoomDeps, msg: &UserMessage) {
    if let Err(error) = deps.journal.complete(msg.event_id.as_str()).await {
        tracing::error!(%error, event_id = %msg.event_id, "cannot mark a message answered");
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

/// Runs the turn and answers; true once the person got a reply or a notice (false if
/// even the notice could not be sent: the message stays pending in the journal).
/// The turn's attachments are the files waiting for the sender, then `extra`.
async fn answer(
    room_id: OwnedRoomId,
    deps: Arc<RoomDeps>,
    msg: UserMessage,
    extra: Vec<crate::agent::Attachment>,
) -> bool {
    let Some(room) = deps.client.get_room(&room_id) else {
        tracing::warn!(room_id = %room_id, "message for a room the client does not know");
        deps.metrics.message(MessageOutcome::InternalError);
        return false;
    };
    let record = match deps.store.room(room_id.as_str()) {
        Ok(Some(record)) => record,
        Ok(None) => {
            tracing::error!("managed room without a record in the store");
            deps.metrics.message(MessageOutcome::InternalError);
            return notice(&room, &msg, texts::internal_error()).await;
        }
        Err(error) => {
            tracing::error!(%error, "cannot read the room's record");
            deps.metrics.message(MessageOutcome::InternalError);
            return notice(&room, &msg, texts::internal_error()).await;
        }
    };
    if record.archived {
        return notice(&room, &msg, texts::ROOM_ARCHIVED).await;
    }
    match crate::commands::parse(&msg.body) {
        Parsed::Command(command) => {
            return super::commands::execute(&room, &record, &deps, &msg, command).await;
        }
        Parsed::Invalid(error) => return notice(&room, &msg, &error.to_string()).await,
        Parsed::NotACommand => {}
    }
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
            deps.metrics.message(MessageOutcome::StaleAgent);
            return notice(&room, &msg, &texts::agent_gone(&record.agent_id)).await;
        }
        Err(error) => {
            tracing::error!(%error, "router unavailable");
            deps.metrics.message(MessageOutcome::InternalError);
            return notice(&room, &msg, texts::internal_error()).await;
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
        attachments: deps.files.take(&room_id, &msg.sender, extra),
    };
    let attachments = request.attachments.clone();
    let in_flight = InFlight {
        turn_id: request.turn_id.clone(),
        chat_id: record.platform_chat_id.clone(),
        agent_id: route.id.clone(),
    };
    deps.commands
        .inflight
        .lock()
        .insert(room_id.clone(), in_flight.clone());
    let result = route
        .conn
        .send(RunTurn {
            chat_id: record.platform_chat_id.clone(),
            request,
        })
        .await;
    deps.commands.inflight.lock().remove(&room_id);
    typing.abort();
    // Hide the typing notice without holding the answer back by a round trip.
    let typing_room = room.clone();
    tokio::spawn(async move { matrix::typing(&typing_room, false).await });

    match result {
        Ok(Ok(mut outcome)) => {
            crash::point(CrashPoint::AfterAgent);
            let reply = ReplyMetadata::new(&msg.event_id, &msg.sender, None);
            let txn = txn_id_for(&msg.event_id, REPLY_PART);
            let files = std::mem::take(&mut outcome.files);
            if let Some(confirm) = outcome.confirm.take() {
                let question = super::commands::ask_for_agent(
                    &deps, &room_id, &msg, &in_flight, &route, confirm,
                )
                .await;
                outcome.reply = if outcome.reply.trim().is_empty() {
                    question
                } else {
                    format!("{}\n\n{question}", outcome.reply)
                };
            }
            let text = if outcome.reply.trim().is_empty() && !files.is_empty() {
                texts::files_only_reply(&route.name, files.len())
            } else if outcome.reply.trim().is_empty() {
                texts::empty_reply(&route.name)
            } else {
                outcome.reply
            };
            let sent = retry(&RetryPolicy::SEND, "sending the reply", || {
                matrix::send_reply(&room, reply.clone(), &text, &txn)
            })
            .await;
            match sent {
                Ok(_) => {
                    deps.metrics.message(MessageOutcome::Replied);
                    attachments::post_turn_files(&room, &deps, &route, &msg, &files).await;
                    true
                }
                Err(error) => {
                    tracing::error!(%error, "cannot send the reply; the message stays pending");
                    deps.metrics.message(MessageOutcome::InternalError);
                    false
                }
            }
        }
        Ok(Err(error)) if error.is_cancelled() => {
            tracing::info!(agent = %route.id, "turn cancelled");
            deps.files.put_back(&room_id, &msg.sender, attachments);
            notice(&room, &msg, texts::TURN_CANCELLED).await
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, agent = %route.id, "agent turn failed");
            deps.files.put_back(&room_id, &msg.sender, attachments);
            deps.metrics.message(MessageOutcome::AgentError);
            notice(&room, &msg, &agent_failure_text(&route.name, &error)).await
        }
        Err(error) => {
            tracing::error!(%error, agent = %route.id, "agent connection unavailable");
            deps.files.put_back(&room_id, &msg.sender, attachments);
            deps.metrics.message(MessageOutcome::AgentUnavailable);
            let text = texts::agent_unreachable(&route.name, "restarting");
            notice(&room, &msg, &text).await
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
/// true if it was sent (failures are logged).
pub(super) async fn notice(room: &Room, msg: &UserMessage, text: &str) -> bool {
    let txn = txn_id_for(&msg.event_id, NOTICE_PART);
    let reply = ReplyMetadata::new(&msg.event_id, &msg.sender, None);
    match matrix::send_notice_reply(room, reply, text, &txn).await {
        Ok(_) => true,
        Err(error) => {
            tracing::error!(%error, "cannot send a notice to the room");
            false
        }
    }
}
