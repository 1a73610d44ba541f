//! Commands that show what is: `!settings` and, for admins, `!status`.
//!
//! Why this file exists: they read from many places (store, router, confirmations, the
//! supervision registry) and must say so when one of them cannot be read, rather than show
//! a default that looks true.

use std::sync::atomic::Ordering;

use super::{CommandError, CommandResult, StatusDeps};
use crate::confirmations::Pending;
use crate::runtime::room::{Chat, RoomDeps};
use crate::runtime::router::ListAgents;
use crate::store::RoomRecord;
use crate::texts;

/// `!settings`: this chat's agent and conversation, the person's choice for new chats,
/// their home and chats, what waits for their answer, and the bot's encryption keys (to
/// compare out of band: the bot cancels interactive verification).
pub async fn settings(
    chat: &Chat,
    deps: &RoomDeps,
    record: &RoomRecord,
    sender: &str,
) -> CommandResult {
    let user = deps.store.user(sender).map_err(CommandError::internal)?;
    let owner_rooms = deps
        .store
        .rooms_of(&record.owner)
        .map_err(CommandError::internal)?;
    let archived = owner_rooms.iter().filter(|r| r.archived).count();
    let (agents, default) = deps
        .router
        .send(ListAgents)
        .await
        .map_err(CommandError::internal)?;
    let name_of = |id: &str| {
        agents
            .iter()
            .find(|a| a.id == id)
            .map_or_else(|| texts::agent_not_configured(id), |a| a.name())
    };
    let selected = user
        .as_ref()
        .and_then(|u| u.selected_agent.clone())
        .unwrap_or(default);
    let pending = deps
        .commands
        .confirmations
        .get(&record.room_id, sender)
        .map_err(CommandError::internal)?
        .map(|c| match c.pending {
            Pending::Archive => texts::PENDING_ARCHIVE.to_owned(),
            Pending::Agent { prompt, .. } => prompt,
        });
    let mut text = texts::settings(
        &name_of(&record.agent_id),
        &record.platform_chat_id,
        &name_of(&selected),
        user.as_ref().and_then(|u| u.space_id.as_deref()),
        owner_rooms.len() - archived,
        archived,
        pending.as_deref(),
    );
    if let Some(identity) = chat.surface.encryption_identity().await {
        text.push_str(&texts::settings_keys(&identity));
    }
    Ok(text)
}

/// `!status` (admins): actors by kind and state, agent connections, the messengers' loops.
pub fn status(status: &StatusDeps) -> String {
    let mut counts: Vec<((String, actors::ActorState), usize)> =
        status.registry.counts().into_iter().collect();
    counts.sort();
    let mut lines = vec![texts::STATUS_HEADER.to_owned()];
    for ((kind, state), n) in counts {
        lines.push(texts::status_actors(&kind, n, state.label()));
    }
    for agent in &status.agents {
        let in_flight = agent.stats.in_flight.load(Ordering::Relaxed);
        let last = agent.stats.last_error.lock().clone();
        lines.push(texts::status_agent(&agent.id, in_flight, last.as_deref()));
    }
    for health in &status.inbound {
        lines.push(texts::status_last_sync(health.since_last_success()));
    }
    lines.join("\n")
}
