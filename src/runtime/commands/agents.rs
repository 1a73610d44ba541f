//! Commands about the chat's agent: `!agent` (list, choose), `!save`, `!load`, `!context`.
//!
//! Why this file exists: these commands talk to the agent (context operations of
//! `docs/agent-api.md`) or to the router (which agents exist), and share how an agent's
//! failure is put into words.

use super::{CommandError, CommandResult};
use crate::agent::AgentError;
use crate::runtime::agent_conn::{AgentCall, Call, CallOutcome};
use crate::runtime::room::{Chat, RoomDeps};
use crate::runtime::router::{AgentRoute, ListAgents};
use crate::store::{RoomRecord, UserRecord};
use crate::surface::{ChatId, HomePrefs, PersonId};
use crate::texts;

/// `!agent`: the configured agents, the person's choice for new chats and this chat's.
pub async fn list(deps: &RoomDeps, record: &RoomRecord, sender: &str) -> CommandResult {
    let (agents, default) = deps
        .router
        .send(ListAgents)
        .await
        .map_err(CommandError::internal)?;
    let selected = deps
        .store
        .user(sender)
        .map_err(CommandError::internal)?
        .and_then(|u| u.selected_agent)
        .unwrap_or(default);
    let mut lines = vec![texts::AGENT_LIST_HEADER.to_owned()];
    for agent in &agents {
        lines.push(texts::agent_line(
            &agent.id,
            &agent.name(),
            &agent.description(),
            agent.id == selected,
            agent.id == record.agent_id,
        ));
        let skills = agent.skills();
        if !skills.is_empty() {
            lines.push(texts::agent_skills(&skills));
        }
    }
    Ok(lines.join("\n"))
}

/// `!help`: the commands, then the chat's agent as it describes itself.
pub fn help(chat: &Chat, deps: &RoomDeps, record: &RoomRecord, is_admin: bool) -> String {
    let mut text = crate::commands::help_text(is_admin);
    if let Some(note) = chat.surface.help_note() {
        text.push_str("\n\n");
        text.push_str(note);
    }
    if let Some(route) = deps.routes.get(&record.agent_id) {
        text.push_str("\n\n");
        text.push_str(&texts::help_agent(
            &route.name(),
            &route.description(),
            &route.skills(),
        ));
    }
    text
}

/// `!agent <id>`: the agent the person's new chats start with. Kept in their home on the
/// messenger first (so it survives the loss of the store), then in the store.
pub async fn select(chat: &Chat, deps: &RoomDeps, sender: &str, id: &str) -> CommandResult {
    let route = match deps.routes.get(id) {
        Some(route) => route.clone(),
        None => return Err(CommandError::Tell(texts::agent_unknown(id))),
    };
    let mut user = deps
        .store
        .user(sender)
        .map_err(CommandError::internal)?
        .unwrap_or_else(|| UserRecord::new(sender));
    user.selected_agent = Some(route.id.clone());
    if let Some(home) = &user.space_id {
        if chat.surface.capabilities().homes {
            let prefs = HomePrefs {
                selected_agent: user.selected_agent.clone(),
            };
            chat.surface
                .set_home_prefs(&ChatId::new(home.as_str()), &PersonId::new(sender), &prefs)
                .await
                .map_err(CommandError::internal)?;
        }
    }
    deps.store
        .put_user(&user)
        .await
        .map_err(CommandError::internal)?;
    Ok(texts::agent_selected(&route.name()))
}

/// `!save [name]`: a snapshot of the conversation, on the agent.
pub async fn save(deps: &RoomDeps, record: &RoomRecord, name: Option<String>) -> CommandResult {
    let name = name.unwrap_or_else(default_snapshot_name);
    match call(deps, record, Call::Save { name: name.clone() }).await? {
        (_, CallOutcome::Saved(info)) => Ok(texts::saved(&info.name, info.messages)),
        (route, _) => Ok(texts::saved_without_count(&name, &route.name())),
    }
}

/// `!context`: what the agent holds of this conversation.
pub async fn context(deps: &RoomDeps, record: &RoomRecord) -> CommandResult {
    match call(deps, record, Call::Context).await? {
        (_, CallOutcome::Context(info)) => Ok(texts::context_summary(
            info.messages,
            info.tokens,
            info.summary.as_deref(),
            &info.snapshots,
        )),
        (_, other) => Err(CommandError::Internal(format!(
            "the agent answered !context with {other:?}"
        ))),
    }
}

/// `!load <name>`: this chat's snapshots first, then the person's other chats with the
/// same agent.
pub async fn load(deps: &RoomDeps, record: &RoomRecord, name: &str) -> CommandResult {
    let mut candidates = vec![record.platform_chat_id.clone()];
    match deps.store.rooms_of(&record.owner) {
        Ok(rooms) => candidates.extend(
            rooms
                .into_iter()
                .filter(|r| r.agent_id == record.agent_id && r.room_id != record.room_id)
                .map(|r| r.platform_chat_id),
        ),
        Err(error) => {
            tracing::warn!(%error, "cannot read the person's other chats; looking in this one only")
        }
    }
    for chat in candidates {
        let has = match call_chat(deps, &record.agent_id, &chat, Call::Context).await {
            Ok((_, CallOutcome::Context(info))) => info.snapshots.iter().any(|s| s == name),
            Ok(_) => false,
            Err(error) if chat == record.platform_chat_id => return Err(error),
            Err(error) => {
                tracing::info!(%error, chat, "cannot list another chat's snapshots");
                false
            }
        };
        if has {
            let from_chat = (chat != record.platform_chat_id).then_some(chat);
            let restore = Call::Restore {
                snapshot: name.to_owned(),
                from_chat,
            };
            call(deps, record, restore).await?;
            return Ok(texts::loaded(name));
        }
    }
    Ok(texts::no_snapshot(name))
}

fn default_snapshot_name() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("snapshot-{secs}")
}

/// Calls the chat's agent about its conversation.
pub async fn call(
    deps: &RoomDeps,
    record: &RoomRecord,
    call: Call,
) -> Result<(AgentRoute, CallOutcome), CommandError> {
    call_chat(deps, &record.agent_id, &record.platform_chat_id, call).await
}

/// Calls agent `agent_id` about conversation `chat_id`; a failure is put in the person's
/// words ([`CommandError::Tell`]).
pub async fn call_chat(
    deps: &RoomDeps,
    agent_id: &str,
    chat_id: &str,
    call: Call,
) -> Result<(AgentRoute, CallOutcome), CommandError> {
    let route = deps
        .routes
        .get(agent_id)
        .cloned()
        .ok_or_else(|| CommandError::Tell(texts::agent_gone(agent_id)))?;
    let result = route
        .conn
        .send(AgentCall {
            chat_id: chat_id.to_owned(),
            call,
        })
        .await;
    match result {
        Ok(Ok(outcome)) => Ok((route, outcome)),
        Ok(Err(AgentError::Unsupported(what))) => Err(CommandError::Tell(
            texts::agent_does_not_offer(&route.name(), &what),
        )),
        Ok(Err(error)) => Err(CommandError::Tell(texts::context_call_failed(
            &route.name(),
            &agent_reason(&error),
        ))),
        Err(error) => Err(CommandError::Tell(texts::agent_unreachable(
            &route.name(),
            &error.to_string(),
        ))),
    }
}

/// An agent's failure in words for a person.
fn agent_reason(error: &AgentError) -> String {
    match error {
        AgentError::Rejected {
            body: Some(body), ..
        } => body.message.clone(),
        other => other.to_string(),
    }
}
