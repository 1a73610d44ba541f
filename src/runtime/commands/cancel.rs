//! `!cancel`: stops the turn running in a chat.
//!
//! Why this file exists: `!cancel` cannot wait in the chat's queue behind the very turn it
//! cancels, so the intake runs it at once, beside the room actor, and it reads the turn in
//! flight from the shared table the room actor keeps. Only the chat's owner, an admin or
//! the person whose message the turn answers may cancel it.

use super::agents::call_chat;
use super::{answer_text, InFlight};
use crate::runtime::agent_conn::Call;
use crate::runtime::room::{Chat, RoomDeps, UserMessage};
use crate::texts;

/// Asks the agent to cancel the chat's running turn; answers the person either way.
pub async fn cancel_now(deps: &RoomDeps, chat: &Chat, msg: &UserMessage) {
    let running = deps.commands.inflight.lock().get(&chat.id).cloned();
    let Some(turn) = running else {
        chat.notice(msg, texts::NOTHING_TO_CANCEL).await;
        return;
    };
    if !may_cancel(deps, chat, msg, &turn) {
        tracing::info!(room_id = %chat.id, sender = %msg.sender, turn_sender = %turn.sender,
            "refusing !cancel of someone else's turn");
        chat.notice(msg, texts::CANCEL_NOT_YOURS).await;
        return;
    }
    let call = Call::Cancel {
        turn_id: turn.turn_id.clone(),
    };
    let result = call_chat(deps, &turn.agent_id, &turn.chat_id, call)
        .await
        .map(|_| texts::CANCELLING.to_owned());
    chat.notice(msg, &answer_text(result)).await;
}

/// Whether the sender of `msg` may cancel `turn` (an unreadable record: only the turn's
/// sender and admins may).
fn may_cancel(deps: &RoomDeps, chat: &Chat, msg: &UserMessage, turn: &InFlight) -> bool {
    let sender = msg.sender.as_str();
    let owner = match deps.store.room(chat.id.as_str()) {
        Ok(Some(record)) => record.owner == sender,
        Ok(None) => false,
        Err(error) => {
            tracing::warn!(room_id = %chat.id, %error, "cannot read the chat's owner for !cancel");
            false
        }
    };
    let asker = crate::commands::Asker {
        owner,
        admin: deps.commands.access.is_admin(sender),
    };
    crate::commands::may_cancel(asker, turn.sender == msg.sender)
}
