//! Commands about the chat itself: `!new`, `!rename`, `!archive`, `!clear`.
//!
//! Why this file exists: these change what the messenger holds (a new chat, a name, a
//! binding) and then the store, in that order, so a crash in between is repaired by
//! reconciliation and never the other way round.

use super::agents::call;
use super::{CommandError, CommandResult};
use crate::confirmations::Pending;
use crate::runtime::agent_conn::Call;
use crate::runtime::provisioner::{NewChatError, NewChatRequest};
use crate::runtime::room::{Chat, RoomDeps, UserMessage};
use crate::runtime::router::MintChatId;
use crate::store::RoomRecord;
use crate::surface::{Binding, ChatId};
use crate::texts;

/// `!new [name]`: a new chat in the person's home, bound to their chosen agent.
pub async fn new_chat(
    chat: &Chat,
    deps: &RoomDeps,
    msg: &UserMessage,
    name: Option<String>,
) -> CommandResult {
    let request = NewChatRequest {
        surface: chat.surface.clone(),
        person: msg.sender.clone(),
        name,
    };
    let created = deps
        .commands
        .provisioner
        .send(request)
        .await
        .map_err(CommandError::internal)?;
    let (new_chat, agent_id) = match created {
        Ok(created) => created,
        Err(NewChatError::NoSpace) => {
            return Err(CommandError::Tell(texts::NEW_CHAT_NO_SPACE.to_owned()))
        }
        Err(NewChatError::AgentGone(id)) => {
            return Err(CommandError::Tell(texts::new_chat_agent_gone(&id)))
        }
        Err(NewChatError::TooManyChats(max)) => {
            return Err(CommandError::Tell(texts::limits::too_many_chats(max)))
        }
        Err(NewChatError::Unsupported(what)) => {
            return Err(CommandError::Tell(texts::new_chat_unsupported(what)))
        }
        Err(error) => return Err(CommandError::internal(error)),
    };
    let name = match deps.routes.get(&agent_id) {
        Some(route) => route.name(),
        None => agent_id,
    };
    // A messenger with homes links to the new chat; elsewhere it is named (a topic).
    if chat.surface.capabilities().homes {
        Ok(texts::new_chat_created(new_chat.as_str(), &name))
    } else {
        let chat_name = crate::runtime::provisioner::chat_name(&deps.store, &new_chat);
        Ok(texts::new_chat_created_named(&chat_name, &name))
    }
}

/// `!rename <name>`.
pub async fn rename(
    chat: &Chat,
    record: &RoomRecord,
    deps: &RoomDeps,
    name: &str,
) -> CommandResult {
    chat.surface
        .rename_chat(&chat.id, name)
        .await
        .map_err(CommandError::internal)?;
    let mut record = record.clone();
    record.name = Some(name.to_owned());
    deps.store
        .put_room(&record)
        .await
        .map_err(CommandError::internal)?;
    Ok(texts::renamed(name))
}

/// `!archive`: asks for a `!yes` first.
pub async fn ask_archive(chat: &Chat, deps: &RoomDeps, msg: &UserMessage) -> CommandResult {
    let confirmations = &deps.commands.confirmations;
    confirmations
        .ask(chat.id.as_str(), msg.sender.as_str(), Pending::Archive)
        .await
        .map_err(CommandError::internal)?;
    Ok(texts::archive_ask(confirmations.ttl().as_secs()))
}

/// `!archive` confirmed: the binding says archived, the chat leaves its home.
pub async fn archive(chat: &Chat, deps: &RoomDeps) -> CommandResult {
    let mut record = deps
        .store
        .room(chat.id.as_str())
        .map_err(CommandError::internal)?
        .ok_or_else(|| CommandError::Internal("archiving a chat without a record".into()))?;
    record.archived = true;
    set_binding(chat, &record).await?;
    let home = deps
        .store
        .user(&record.owner)
        .map_err(CommandError::internal)?
        .and_then(|u| u.space_id);
    if let Some(home) = home {
        if let Err(error) = chat.surface.detach_chat(&ChatId::new(home), &chat.id).await {
            tracing::warn!(%error, "could not take the chat out of its home");
        }
    }
    deps.store
        .put_room(&record)
        .await
        .map_err(CommandError::internal)?;
    Ok(texts::ARCHIVED_DONE.to_owned())
}

/// `!clear`: the chat moves to a fresh upstream conversation.
pub async fn clear(chat: &Chat, record: &RoomRecord, deps: &RoomDeps) -> CommandResult {
    let new_chat = deps
        .router
        .send(MintChatId)
        .await
        .map_err(CommandError::internal)?
        .map_err(CommandError::internal)?;
    let mut updated = record.clone();
    updated.platform_chat_id = new_chat.clone();
    // The messenger first: a crash before the store is written is repaired by reconciliation.
    set_binding(chat, &updated).await?;
    deps.store
        .put_room(&updated)
        .await
        .map_err(CommandError::internal)?;
    if deps.commands.delete_old_chat_on_clear {
        if let Err(error) = call(deps, record, Call::Delete).await {
            tracing::warn!(%error, chat = %record.platform_chat_id, "could not delete the old conversation");
        }
    }
    tracing::info!(old = %record.platform_chat_id, new = %new_chat, "context rotated");
    Ok(texts::cleared(&record.platform_chat_id, &new_chat))
}

/// Writes `record`'s binding to the messenger, where it keeps chat state.
async fn set_binding(chat: &Chat, record: &RoomRecord) -> Result<(), CommandError> {
    if !chat.surface.capabilities().chat_state {
        return Ok(());
    }
    chat.surface
        .set_binding(&chat.id, &binding_of(record))
        .await
        .map_err(CommandError::internal)
}

/// The binding a record mirrors.
pub fn binding_of(record: &RoomRecord) -> Binding {
    Binding {
        agent_id: record.agent_id.clone(),
        platform_chat_id: record.platform_chat_id.clone(),
        owner: record.owner.clone(),
        chat_index: record.chat_index,
        archived: record.archived,
    }
}
