//! `!cancel`: stops the turn running in a chat.
//!
//! Why this file exists: `!cancel` cannot wait in the chat's queue behind the very turn it
//! cancels, so the intake runs it at once, beside the room actor, and it reads the turn in
//! flight from the shared table the room actor keeps.

use super::agents::call_chat;
use super::answer_text;
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
    let call = Call::Cancel {
        turn_id: turn.turn_id.clone(),
    };
    let result = call_chat(deps, &turn.agent_id, &turn.chat_id, call)
        .await
        .map(|_| texts::CANCELLING.to_owned());
    chat.notice(msg, &answer_text(result)).await;
}
