//! Carrying out chat commands in a chat (parsing is pure and lives in `crate::commands`).
//!
//! Commands run inside the room actor, in order with the chat's messages, except
//! `!cancel`, which the intake hands over at once ([`cancel::cancel_now`]: the room actor is
//! busy with the very turn it cancels). One executor per command group ([`chats`],
//! [`agents`], [`confirm`], [`info`]); each returns the text to answer with, or a
//! [`CommandError`], which is turned into a notice here, in one place. Every command answers
//! with a notice replying to the command. Write order for state changes: the messenger's
//! state first, then the store.

pub mod agents;
pub mod cancel;
pub mod chats;
pub mod confirm;
pub mod info;

use std::sync::Arc;

use actors::{ChildHandle, Registry};
use parking_lot::Mutex;

pub use self::cancel::cancel_now;
pub use self::confirm::{answered_by_message, ask_for_agent, sweep_expired};
use super::provisioner::Provisioner;
use super::room::{Chat, RoomDeps, UserMessage};
use super::AgentView;
use crate::commands::Command;
use crate::config::AccessPolicy;
use crate::confirmations::Confirmations;
use crate::idmap::IdMap;
use crate::store::RoomRecord;
use crate::surface::health::SyncHealth;
use crate::surface::ChatId;
use crate::texts;

/// The turn running in a chat, for `!cancel`.
#[derive(Clone, Debug)]
pub struct InFlight {
    /// The turn.
    pub turn_id: String,
    /// Its platform chat.
    pub chat_id: String,
    /// Its agent.
    pub agent_id: String,
    /// Whose message it answers (they may cancel it, as may the chat's owner).
    pub sender: crate::surface::PersonId,
}

/// What commands need.
#[derive(Clone)]
pub struct CommandDeps {
    /// Who is an admin.
    pub access: AccessPolicy,
    /// Pending confirmations.
    pub confirmations: Confirmations,
    /// Turns in flight, per chat.
    pub inflight: Arc<Mutex<IdMap<ChatId, Arc<InFlight>>>>,
    /// Config `commands.delete_old_chat_on_clear`.
    pub delete_old_chat_on_clear: bool,
    /// The provisioner (`!new`).
    pub provisioner: ChildHandle<Provisioner>,
    /// What `!status` reports.
    pub status: StatusDeps,
}

/// What `!status` reads.
#[derive(Clone)]
pub struct StatusDeps {
    /// Every supervised actor.
    pub registry: Registry,
    /// The agent connections.
    pub agents: Vec<AgentView>,
    /// The messengers' inbound loops.
    pub inbound: Vec<Arc<SyncHealth>>,
}

/// Why a command could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Something of ours failed: logged with the reason, the person gets the generic notice.
    #[error("{0}")]
    Internal(String),
    /// The person is told this (a refusal, or an agent's failure in their words).
    #[error("{0}")]
    Tell(String),
}

impl CommandError {
    /// An internal failure, from any error.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        CommandError::Internal(error.to_string())
    }
}

/// What a command answers with.
pub type CommandResult = Result<String, CommandError>;

/// Runs `command` from `msg` in `chat`; true once the person got an answer.
pub(super) async fn execute(
    chat: &Chat,
    record: &RoomRecord,
    deps: &RoomDeps,
    msg: &UserMessage,
    command: Command,
) -> bool {
    let cmd = &deps.commands;
    let sender = msg.sender.as_str();
    let asker = asker(cmd, record, sender);
    if !crate::commands::may_run(&command, asker) {
        tracing::info!(room_id = %chat.id, command = command.name(), sender,
            owner = %record.owner, "refusing a command the asker may not run here");
        let text = match crate::commands::permission(&command) {
            crate::commands::Permission::Admin => texts::ADMIN_ONLY,
            _ => texts::OWNER_ONLY,
        };
        return chat.notice(msg, text).await;
    }
    tracing::info!(command = command.name(), sender, "command");
    let result = match command {
        Command::Help => Ok(agents::help(
            chat,
            deps,
            record,
            cmd.access.is_admin(sender),
        )),
        Command::New { name } => chats::new_chat(chat, deps, msg, name).await,
        Command::Rename { name } => chats::rename(chat, record, deps, &name).await,
        Command::Archive => chats::ask_archive(chat, deps, msg).await,
        Command::Clear => chats::clear(chat, record, deps).await,
        Command::Agent { id: None } => agents::list(deps, record, sender).await,
        Command::Agent { id: Some(id) } => agents::select(chat, deps, sender, &id).await,
        Command::Save { name } => agents::save(deps, record, name).await,
        Command::Load { name } => agents::load(deps, record, &name).await,
        Command::Context => agents::context(deps, record).await,
        Command::Settings => info::settings(chat, deps, record, sender).await,
        Command::Status => Ok(info::status(&cmd.status)),
        Command::Cancel => Ok(texts::NOTHING_TO_CANCEL.to_owned()),
        Command::Yes => return confirm::answer(chat, deps, msg, true).await,
        Command::No => return confirm::answer(chat, deps, msg, false).await,
    };
    chat.notice(msg, &answer_text(result)).await
}

/// Who `sender` is in the chat of `record`: its owner, an admin, both or neither.
pub fn asker(cmd: &CommandDeps, record: &RoomRecord, sender: &str) -> crate::commands::Asker {
    crate::commands::Asker {
        owner: record.owner == sender,
        admin: cmd.access.is_admin(sender),
    }
}

/// The text a command's result is answered with (internal failures are logged here).
pub fn answer_text(result: CommandResult) -> String {
    match result {
        Ok(text) | Err(CommandError::Tell(text)) => text,
        Err(CommandError::Internal(error)) => {
            tracing::error!(%error, "command failed");
            texts::internal_error().to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_become_one_notice_each() {
        assert_eq!(answer_text(Ok("done".into())), "done");
        assert_eq!(
            answer_text(Err(CommandError::Tell("no such snapshot".into()))),
            "no such snapshot"
        );
        assert_eq!(
            answer_text(Err(CommandError::internal("disk on fire"))),
            texts::internal_error(),
            "internal reasons stay in the log"
        );
    }
}
