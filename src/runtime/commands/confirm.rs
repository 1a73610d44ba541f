//! Confirmations: `!yes` / `!no` for `!archive` and for an agent's question, and their
//! expiry.
//!
//! Why this file exists: a confirmation outlives the message that asked for it (it is
//! stored, keyed by person and chat), and an agent's question resumes a turn on the agent,
//! whose answer is then the agent speaking, like any turn's reply.

use super::agents::call_chat;
use super::{answer_text, chats, CommandError, InFlight};
use crate::agent::ConfirmEvent;
use crate::confirmations::{Confirmation, Confirmations, Pending};
use crate::runtime::agent_conn::{Call, CallOutcome};
use crate::runtime::directory::Surfaces;
use crate::runtime::room::{reply, Chat, RoomDeps, UserMessage};
use crate::runtime::router::AgentRoute;
use crate::store::Store;
use crate::surface::ChatId;
use crate::texts;

/// Stores an agent's question and returns the text asking it.
pub async fn ask_for_agent(
    deps: &RoomDeps,
    chat: &ChatId,
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
        .ask(chat.as_str(), msg.sender.as_str(), pending)
        .await
    {
        tracing::error!(%error, "cannot store the agent's question");
    }
    let ttl = deps.commands.confirmations.ttl().as_secs();
    if route.free_answers {
        texts::agent_asks_free(&route.name(), &confirm.prompt, ttl)
    } else {
        texts::agent_asks(&route.name(), &confirm.prompt, ttl)
    }
}

/// A message to an agent whose questions take any answer is the answer to its question
/// waiting for this person here: the stored confirmation goes (no `!yes` for it later, no
/// expiry notice).
pub async fn answered_by_message(deps: &RoomDeps, chat: &ChatId, person: &str, agent_id: &str) {
    let confirmations = &deps.commands.confirmations;
    match confirmations.get(chat.as_str(), person) {
        Ok(Some(c)) if matches!(&c.pending, Pending::Agent { agent_id: a, .. } if a == agent_id) => {
            if let Err(error) = confirmations.take(chat.as_str(), person).await {
                tracing::warn!(%error, "cannot drop the question the message answers");
            }
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot read the question waiting here"),
    }
}

/// `!yes` (`yes`) or `!no`: answers what is waiting for this person in this chat; true once
/// the person got an answer.
pub async fn answer(chat: &Chat, deps: &RoomDeps, msg: &UserMessage, yes: bool) -> bool {
    let taken = deps
        .commands
        .confirmations
        .take(chat.id.as_str(), msg.sender.as_str())
        .await;
    let confirmation = match taken {
        Ok(Some(c)) => c,
        Ok(None) => return chat.notice(msg, texts::NOTHING_TO_CONFIRM).await,
        Err(error) => {
            return chat
                .notice(msg, &answer_text(Err(CommandError::internal(error))))
                .await
        }
    };
    match (confirmation.pending, yes) {
        (Pending::Archive, true) => {
            let text = answer_text(chats::archive(chat, deps).await);
            chat.notice(msg, &text).await
        }
        (Pending::Archive, false) => chat.notice(msg, texts::ARCHIVE_KEPT).await,
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
                            texts::empty_reply(&route.name())
                        } else {
                            texts::AGENT_DECLINED.to_owned()
                        };
                        return chat.notice(msg, &text).await;
                    }
                    // The rest of the turn is the agent speaking: a normal reply, like any turn's.
                    let text = if outcome.truncated {
                        reply::with_cut_note(outcome.reply, &deps.replies)
                    } else {
                        outcome.reply
                    };
                    match reply::send_reply(chat, msg, &route.name(), text, &deps.replies).await {
                        reply::Delivery::Sent => true,
                        reply::Delivery::Refused(_) => {
                            chat.notice(msg, &texts::reply_undeliverable(&route.name()))
                                .await
                        }
                        reply::Delivery::Failed(error) => {
                            tracing::error!(%error, "cannot send the confirmed turn's reply");
                            false
                        }
                    }
                }
                Ok((_, other)) => {
                    let error = CommandError::Internal(format!(
                        "the agent answered a confirmation with {other:?}"
                    ));
                    chat.notice(msg, &answer_text(Err(error))).await
                }
                Err(error) => chat.notice(msg, &answer_text(Err(error))).await,
            }
        }
    }
}

/// Tells chats about confirmations that expired (run periodically).
pub async fn sweep_expired(confirmations: &Confirmations, store: &Store, surfaces: &Surfaces) {
    let expired: Vec<Confirmation> = match confirmations.take_expired().await {
        Ok(expired) => expired,
        Err(error) => {
            tracing::warn!(%error, "cannot sweep expired confirmations");
            return;
        }
    };
    for c in expired {
        let surface = match store.room(&c.room_id) {
            Ok(Some(record)) => surfaces.get(&record.surface),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, room_id = %c.room_id, "cannot read the chat of an expired confirmation");
                None
            }
        };
        let Some(surface) = surface else {
            continue;
        };
        tracing::info!(room_id = %c.room_id, person = %c.person, "a confirmation expired");
        Chat::new(surface, ChatId::new(c.room_id.as_str()))
            .say(texts::CONFIRMATION_EXPIRED, None)
            .await;
    }
}
