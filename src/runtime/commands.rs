//! Executing chat commands in a room (parsing is pure and lives in `crate::commands`).
//!
//! Commands run inside the room actor, in order with the room's messages, except
//! `!cancel`, which the dispatcher handles at once (the room actor is busy with the very
//! turn it cancels). Every command answers with a notice replying to the command.
//! Write order for state changes: the room's state event first, then sled.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use actors::ChildHandle;
use matrix_sdk::ruma::events::room::message::ReplyMetadata;
use matrix_sdk::ruma::{OwnedRoomId, OwnedUserId, RoomId};
use matrix_sdk::Room;
use parking_lot::Mutex;

use super::agent_conn::{AgentCall, Call, CallOutcome};
use super::provisioner::{NewChat, NewChatError, Provisioner};
use super::room::{notice, RoomDeps, UserMessage};
use super::router::{AgentRoute, ListAgents, MintChatId, ResolveAgent};
use super::RuntimeView;
use crate::agent::{AgentError, ConfirmEvent};
use crate::commands::{help_text, Command};
use crate::config::AccessPolicy;
use crate::confirmations::{Confirmation, Confirmations, Pending};
use crate::matrix::{self, SurfacesRoomEventContent};
use crate::store::RoomRecord;
use crate::texts;

/// The turn running in a room, for `!cancel`.
#[derive(Clone, Debug)]
pub struct InFlight {
    /// The turn.
    pub turn_id: String,
    /// Its platform chat.
    pub chat_id: String,
    /// Its agent.
    pub agent_id: String,
}

/// Parts of the runtime that exist only after the room directory (set once at start-up).
pub struct Late {
    /// The provisioner (`!new`).
    pub provisioner: ChildHandle<Provisioner>,
    /// The runtime view (`!status`).
    pub view: RuntimeView,
}

/// What commands need.
#[derive(Clone)]
pub struct CommandDeps {
    /// Who is an admin.
    pub access: AccessPolicy,
    /// Pending confirmations.
    pub confirmations: Confirmations,
    /// Turns in flight, per room.
    pub inflight: Arc<Mutex<HashMap<OwnedRoomId, InFlight>>>,
    /// Config `commands.delete_old_chat_on_clear`.
    pub delete_old_chat_on_clear: bool,
    /// Set once start-up has built them.
    pub late: Arc<OnceLock<Late>>,
}

/// Runs `command` from `msg` in `room`; true once the person got an answer.
pub(super) async fn execute(
    room: &Room,
    record: &RoomRecord,
    deps: &RoomDeps,
    msg: &UserMessage,
    command: Command,
) -> bool {
    let cmd = &deps.commands;
    let sender = msg.sender.as_str();
    if command.is_admin_only() && !cmd.access.is_admin(sender) {
        return notice(room, msg, texts::ADMIN_ONLY).await;
    }
    tracing::info!(command = command.name(), sender, "command");
    let text = match command {
        Command::Help => help_text(cmd.access.is_admin(sender)),
        Command::New { name } => new_chat(deps, msg, name).await,
        Command::Rename { name } => rename(room, record, deps, &name).await,
        Command::Archive => match cmd
            .confirmations
            .ask(room.room_id().as_str(), sender, Pending::Archive)
            .await
        {
            Ok(()) => texts::archive_ask(cmd.confirmations.ttl().as_secs()),
            Err(error) => internal(&error),
        },
        Command::Agent { id: None } => list_agents(deps, record, sender).await,
        Command::Agent { id: Some(id) } => select_agent(deps, sender, &id).await,
        Command::Clear => clear(room, record, deps).await,
        Command::Save { name } => {
            let name = name.unwrap_or_else(default_snapshot_name);
            match call(deps, record, Call::Save { name: name.clone() }).await {
                Ok((_, CallOutcome::Saved(info))) => texts::saved(&info.name, info.messages),
                Ok((route, _)) => {
                    texts::saved(&name, 0).replace("(0 messages)", &format!("({})", route.name))
                }
                Err(text) => text,
            }
        }
        Command::Load { name } => load(deps, record, &name).await,
        Command::Context => match call(deps, record, Call::Context).await {
            Ok((_, CallOutcome::Context(info))) => texts::context_summary(
                info.messages,
                info.tokens,
                info.summary.as_deref(),
                &info.snapshots,
            ),
            Ok(_) => texts::internal_error().to_owned(),
            Err(text) => text,
        },
        Command::Settings => settings(deps, record, sender).await,
        Command::Yes => return answer_confirmation(room, deps, msg, true).await,
        Command::No => return answer_confirmation(room, deps, msg, false).await,
        Command::Cancel => texts::NOTHING_TO_CANCEL.to_owned(),
        Command::Status => status(deps),
    };
    notice(room, msg, &text).await
}

fn internal(error: &dyn std::fmt::Display) -> String {
    tracing::error!(%error, "command failed");
    texts::internal_error().to_owned()
}

fn default_snapshot_name() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("snapshot-{secs}")
}

/// Calls the room's agent; `Err` is the text to show.
async fn call(
    deps: &RoomDeps,
    record: &RoomRecord,
    call: Call,
) -> Result<(AgentRoute, CallOutcome), String> {
    call_chat(deps, &record.agent_id, &record.platform_chat_id, call).await
}

async fn call_chat(
    deps: &RoomDeps,
    agent_id: &str,
    chat_id: &str,
    call: Call,
) -> Result<(AgentRoute, CallOutcome), String> {
    let route = match deps
        .router
        .send(ResolveAgent {
            agent_id: agent_id.to_owned(),
        })
        .await
    {
        Ok(Some(route)) => route,
        Ok(None) => return Err(texts::agent_gone(agent_id)),
        Err(error) => return Err(internal(&error)),
    };
    let result = route
        .conn
        .send(AgentCall {
            chat_id: chat_id.to_owned(),
            call,
        })
        .await;
    match result {
        Ok(Ok(outcome)) => Ok((route, outcome)),
        Ok(Err(error)) => Err(texts::context_call_failed(
            &route.name,
            &agent_reason(&error),
        )),
        Err(error) => Err(texts::agent_unreachable(&route.name, &error.to_string())),
    }
}

fn agent_reason(error: &AgentError) -> String {
    match error {
        AgentError::Rejected {
            body: Some(body), ..
        } => body.message.clone(),
        other => other.to_string(),
    }
}

async fn new_chat(deps: &RoomDeps, msg: &UserMessage, name: Option<String>) -> String {
    let Some(late) = deps.commands.late.get() else {
        return texts::internal_error().to_owned();
    };
    let request = NewChat {
        person: msg.sender.clone(),
        name,
    };
    match late.provisioner.send(request).await {
        Ok(Ok(room_id)) => {
            let agent = deps
                .store
                .room(&room_id)
                .ok()
                .flatten()
                .map(|r| r.agent_id)
                .unwrap_or_default();
            let name = match deps
                .router
                .send(ResolveAgent {
                    agent_id: agent.clone(),
                })
                .await
            {
                Ok(Some(route)) => route.name,
                _ => agent,
            };
            texts::new_chat_created(&room_id, &name)
        }
        Ok(Err(NewChatError::NoSpace)) => texts::NEW_CHAT_NO_SPACE.to_owned(),
        Ok(Err(NewChatError::AgentGone(id))) => texts::new_chat_agent_gone(&id),
        Ok(Err(error)) => internal(&error),
        Err(error) => internal(&error),
    }
}

async fn rename(room: &Room, record: &RoomRecord, deps: &RoomDeps, name: &str) -> String {
    if let Err(error) = room.set_name(name.to_owned()).await {
        return internal(&error);
    }
    let mut record = record.clone();
    record.name = Some(name.to_owned());
    match deps.store.put_room(&record).await {
        Ok(()) => texts::renamed(name),
        Err(error) => internal(&error),
    }
}

async fn list_agents(deps: &RoomDeps, record: &RoomRecord, sender: &str) -> String {
    let (agents, default) = match deps.router.send(ListAgents).await {
        Ok(list) => list,
        Err(error) => return internal(&error),
    };
    let selected = deps
        .store
        .user(sender)
        .ok()
        .flatten()
        .and_then(|u| u.selected_agent)
        .unwrap_or(default);
    let mut lines = vec![texts::AGENT_LIST_HEADER.to_owned()];
    for agent in &agents {
        lines.push(texts::agent_line(
            &agent.id,
            &agent.name,
            &agent.description,
            agent.id == selected,
            agent.id == record.agent_id,
        ));
    }
    lines.join("\n")
}

async fn select_agent(deps: &RoomDeps, sender: &str, id: &str) -> String {
    let route = match deps
        .router
        .send(ResolveAgent {
            agent_id: id.to_owned(),
        })
        .await
    {
        Ok(Some(route)) => route,
        Ok(None) => return texts::agent_unknown(id),
        Err(error) => return internal(&error),
    };
    let mut user = match deps.store.user(sender) {
        Ok(Some(user)) => user,
        Ok(None) => crate::store::UserRecord::new(sender),
        Err(error) => return internal(&error),
    };
    user.selected_agent = Some(route.id.clone());
    match deps.store.put_user(&user).await {
        Ok(()) => texts::agent_selected(&route.name),
        Err(error) => internal(&error),
    }
}

async fn clear(room: &Room, record: &RoomRecord, deps: &RoomDeps) -> String {
    let new_chat = match deps.router.send(MintChatId).await {
        Ok(Ok(id)) => id,
        Ok(Err(error)) => return internal(&error),
        Err(error) => return internal(&error),
    };
    let binding = SurfacesRoomEventContent {
        agent_id: record.agent_id.clone(),
        platform_chat_id: new_chat.clone(),
        owner: record.owner.clone(),
        chat_index: record.chat_index,
        archived: record.archived,
    };
    // Matrix first: a crash before sled is written is repaired by reconciliation.
    if let Err(error) = matrix::set_room_binding(room, binding).await {
        return internal(&error);
    }
    let mut updated = record.clone();
    updated.platform_chat_id = new_chat.clone();
    if let Err(error) = deps.store.put_room(&updated).await {
        return internal(&error);
    }
    if deps.commands.delete_old_chat_on_clear {
        if let Err(text) = call(deps, record, Call::Delete).await {
            tracing::warn!(%text, chat = %record.platform_chat_id, "could not delete the old conversation");
        }
    }
    tracing::info!(old = %record.platform_chat_id, new = %new_chat, "context rotated");
    texts::cleared(&record.platform_chat_id, &new_chat)
}

async fn load(deps: &RoomDeps, record: &RoomRecord, name: &str) -> String {
    // This chat's snapshots first, then the person's other chats with the same agent.
    let mut candidates = vec![record.platform_chat_id.clone()];
    if let Ok(rooms) = deps.store.rooms_of(&record.owner) {
        candidates.extend(
            rooms
                .into_iter()
                .filter(|r| r.agent_id == record.agent_id && r.room_id != record.room_id)
                .map(|r| r.platform_chat_id),
        );
    }
    for chat in candidates {
        let has = match call_chat(deps, &record.agent_id, &chat, Call::Context).await {
            Ok((_, CallOutcome::Context(info))) => info.snapshots.iter().any(|s| s == name),
            Ok(_) => false,
            Err(text) if chat == record.platform_chat_id => return text,
            Err(_) => false,
        };
        if has {
            let from_chat = (chat != record.platform_chat_id).then_some(chat);
            let restore = Call::Restore {
                snapshot: name.to_owned(),
                from_chat,
            };
            return match call(deps, record, restore).await {
                Ok(_) => texts::loaded(name),
                Err(text) => text,
            };
        }
    }
    texts::no_snapshot(name)
}

async fn settings(deps: &RoomDeps, record: &RoomRecord, sender: &str) -> String {
    let user = deps.store.user(sender).ok().flatten();
    let owner_rooms = deps.store.rooms_of(&record.owner).unwrap_or_default();
    let archived = owner_rooms.iter().filter(|r| r.archived).count();
    let (agents, default) = deps.router.send(ListAgents).await.unwrap_or_default();
    let name_of = |id: &str| {
        agents
            .iter()
            .find(|a| a.id == id)
            .map_or_else(|| format!("{id} (gone)"), |a| a.name.clone())
    };
    let selected = user
        .as_ref()
        .and_then(|u| u.selected_agent.clone())
        .unwrap_or(default);
    let pending = deps
        .commands
        .confirmations
        .get(&record.room_id, sender)
        .ok()
        .flatten()
        .map(|c| match c.pending {
            Pending::Archive => "archive this chat".to_owned(),
            Pending::Agent { prompt, .. } => prompt,
        });
    texts::settings(
        &name_of(&record.agent_id),
        &record.platform_chat_id,
        &name_of(&selected),
        user.as_ref().and_then(|u| u.space_id.as_deref()),
        owner_rooms.len() - archived,
        archived,
        pending.as_deref(),
    )
}

fn status(deps: &RoomDeps) -> String {
    let Some(late) = deps.commands.late.get() else {
        return texts::internal_error().to_owned();
    };
    let view = &late.view;
    let mut counts: Vec<((String, actors::ActorState), usize)> =
        view.registry.counts().into_iter().collect();
    counts.sort();
    let mut lines = vec!["**Status**".to_owned()];
    for ((kind, state), n) in counts {
        lines.push(format!("- {kind}: {n} {}", state.label()));
    }
    for agent in &view.agents {
        let in_flight = agent
            .stats
            .in_flight
            .load(std::sync::atomic::Ordering::Relaxed);
        let last = agent
            .stats
            .last_error
            .lock()
            .clone()
            .unwrap_or_else(|| "none".into());
        lines.push(format!(
            "- agent {}: {in_flight} turns running, last error: {}",
            agent.id,
            texts::short_reason(&last)
        ));
    }
    let sync = view.sync.since_last_success().map_or_else(
        || "never".to_owned(),
        |d| format!("{} ms ago", d.as_millis()),
    );
    lines.push(format!("- last sync: {sync}"));
    lines.join("\n")
}

/// Stores an agent's question and returns the text asking it.
pub(super) async fn ask_for_agent(
    deps: &RoomDeps,
    room_id: &RoomId,
    msg: &UserMessage,
    turn: &InFlight,
    route: &AgentRoute,
    confirm: ConfirmEvent,
) -> String {
    let pending = Pending::Agent {
        confirm_id: confirm.confirm_id,
        turn_id: turn.turn_id.clone(),
        chat_id: turn.chat_id.clone(),
        agent_id: route.id.clone(),
        prompt: confirm.prompt.clone(),
    };
    if let Err(error) = deps
        .commands
        .confirmations
        .ask(room_id.as_str(), msg.sender.as_str(), pending)
        .await
    {
        tracing::error!(%error, "cannot store the agent's question");
    }
    texts::agent_asks(
        &route.name,
        &confirm.prompt,
        deps.commands.confirmations.ttl().as_secs(),
    )
}

async fn answer_confirmation(room: &Room, deps: &RoomDeps, msg: &UserMessage, yes: bool) -> bool {
    let taken = deps
        .commands
        .confirmations
        .take(room.room_id().as_str(), msg.sender.as_str())
        .await;
    let confirmation = match taken {
        Ok(Some(c)) => c,
        Ok(None) => return notice(room, msg, texts::NOTHING_TO_CONFIRM).await,
        Err(error) => return notice(room, msg, &internal(&error)).await,
    };
    match (confirmation.pending, yes) {
        (Pending::Archive, true) => {
            let text = archive(room, deps).await;
            notice(room, msg, &text).await
        }
        (Pending::Archive, false) => notice(room, msg, texts::ARCHIVE_KEPT).await,
        (
            Pending::Agent {
                confirm_id,
                turn_id,
                chat_id,
                agent_id,
                ..
            },
            approved,
        ) => {
            let call = Call::Confirm {
                confirm_id,
                approved,
                turn_id,
            };
            match call_chat(deps, &agent_id, &chat_id, call).await {
                Ok((route, CallOutcome::Turn(outcome))) => {
                    if outcome.reply.trim().is_empty() {
                        let text = if approved {
                            texts::empty_reply(&route.name)
                        } else {
                            texts::AGENT_DECLINED.to_owned()
                        };
                        return notice(room, msg, &text).await;
                    }
                    // The rest of the turn is the agent speaking: a normal reply, like any turn's.
                    let reply_to = ReplyMetadata::new(&msg.event_id, &msg.sender, None);
                    let txn = matrix::txn_id_for(&msg.event_id, 0);
                    match matrix::send_reply(room, reply_to, &outcome.reply, &txn).await {
                        Ok(_) => true,
                        Err(error) => {
                            tracing::error!(%error, "cannot send the confirmed turn's reply");
                            false
                        }
                    }
                }
                Ok(_) => notice(room, msg, texts::internal_error()).await,
                Err(text) => notice(room, msg, &text).await,
            }
        }
    }
}

async fn archive(room: &Room, deps: &RoomDeps) -> String {
    let record = match deps.store.room(room.room_id().as_str()) {
        Ok(Some(record)) => record,
        Ok(None) => return texts::internal_error().to_owned(),
        Err(error) => return internal(&error),
    };
    let binding = SurfacesRoomEventContent {
        agent_id: record.agent_id.clone(),
        platform_chat_id: record.platform_chat_id.clone(),
        owner: record.owner.clone(),
        chat_index: record.chat_index,
        archived: true,
    };
    if let Err(error) = matrix::set_room_binding(room, binding).await {
        return internal(&error);
    }
    let space = deps
        .store
        .user(&record.owner)
        .ok()
        .flatten()
        .and_then(|u| u.space_id);
    if let Some(space) = space.as_deref().and_then(|s| RoomId::parse(s).ok()) {
        if let Some(space_room) = deps.client.get_room(&space) {
            let empty = serde_json::json!({});
            if let Err(error) = space_room
                .send_state_event_raw("m.space.child", room.room_id().as_str(), empty)
                .await
            {
                tracing::warn!(%error, "could not remove the room from its Space");
            }
        }
    }
    let mut record = record;
    record.archived = true;
    match deps.store.put_room(&record).await {
        Ok(()) => texts::ARCHIVED_DONE.to_owned(),
        Err(error) => internal(&error),
    }
}

/// `!cancel`, handled by the dispatcher at once: asks the agent to cancel the room's turn.
pub async fn cancel_now(deps: &RoomDeps, room: &Room, msg: &UserMessage) {
    let running = deps.commands.inflight.lock().get(room.room_id()).cloned();
    let Some(turn) = running else {
        notice(room, msg, texts::NOTHING_TO_CANCEL).await;
        return;
    };
    let call = Call::Cancel {
        turn_id: turn.turn_id.clone(),
    };
    match call_chat(deps, &turn.agent_id, &turn.chat_id, call).await {
        Ok(_) => {
            notice(room, msg, texts::CANCELLING).await;
        }
        Err(text) => {
            notice(room, msg, &text).await;
        }
    }
}

/// Tells rooms about confirmations that expired (run periodically).
pub async fn sweep_expired(confirmations: &Confirmations, client: &matrix_sdk::Client) {
    let expired: Vec<Confirmation> = match confirmations.take_expired().await {
        Ok(expired) => expired,
        Err(error) => {
            tracing::warn!(%error, "cannot sweep expired confirmations");
            return;
        }
    };
    for c in expired {
        let Ok(room_id) = RoomId::parse(&c.room_id) else {
            continue;
        };
        if let Some(room) = client.get_room(&room_id) {
            let person: Option<OwnedUserId> = c.person.parse().ok();
            tracing::info!(room_id = %room_id, person = ?person, "a confirmation expired");
            if let Err(error) = matrix::send_notice(&room, texts::CONFIRMATION_EXPIRED, None).await
            {
                tracing::warn!(%error, "cannot announce an expired confirmation");
            }
        }
    }
}
