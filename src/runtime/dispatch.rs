//! From Matrix events to actor messages.
//!
//! matrix-sdk calls the handlers registered here while it processes a sync response; they
//! never wait on an agent: a message is queued to its room's actor and the handler
//! returns. Messages from before the bot's first sync of this run are history and are not
//! answered. Messages in rooms the bot does not manage are not registered: a warning in
//! the log and, once per room, an explanation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actors::ChildHandle;
use matrix_sdk::event_handler::EventHandlerHandle;
use matrix_sdk::ruma::events::room::member::{MembershipState, StrippedRoomMemberEvent};
use matrix_sdk::ruma::events::room::message::{MessageType, OriginalSyncRoomMessageEvent};
use matrix_sdk::ruma::OwnedUserId;
use matrix_sdk::{Client, Room, RoomState};

use super::directory::RoomDirectory;
use super::provisioner::{Invited, Provisioner};
use super::room::UserMessage;
use crate::config::AccessPolicy;
use crate::matrix;
use crate::store::Store;
use crate::texts;

/// How long a message waits for its room actor to come back from a restart.
pub const REDELIVERY_DEADLINE: Duration = Duration::from_secs(60);

/// Routes Matrix events to actors. Cloning shares it.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    bot: OwnedUserId,
    rooms: RoomDirectory,
    provisioner: ChildHandle<Provisioner>,
    store: Store,
    access: AccessPolicy,
    /// Set once the first sync of this run is processed: earlier timeline events are history.
    live: AtomicBool,
}

impl Dispatcher {
    /// A dispatcher for the bot `bot`.
    pub fn new(
        bot: OwnedUserId,
        rooms: RoomDirectory,
        provisioner: ChildHandle<Provisioner>,
        store: Store,
        access: AccessPolicy,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                bot,
                rooms,
                provisioner,
                store,
                access,
                live: AtomicBool::new(false),
            }),
        }
    }

    /// From now on, timeline messages are live and answered.
    pub fn go_live(&self) {
        self.inner.live.store(true, Ordering::Release);
    }

    /// Registers the event handlers on `client`.
    pub fn register(&self, client: &Client) -> Vec<EventHandlerHandle> {
        let on_invite = self.clone();
        let on_message = self.clone();
        vec![
            client.add_event_handler(move |ev: StrippedRoomMemberEvent, room: Room| {
                let this = on_invite.clone();
                async move { this.invite(ev, room) }
            }),
            client.add_event_handler(move |ev: OriginalSyncRoomMessageEvent, room: Room| {
                let this = on_message.clone();
                async move { this.message(ev, room) }
            }),
        ]
    }

    fn invite(&self, ev: StrippedRoomMemberEvent, room: Room) {
        if ev.state_key != self.inner.bot || ev.content.membership != MembershipState::Invite {
            return;
        }
        if room.state() != RoomState::Invited {
            return;
        }
        let invite = Invited {
            room_id: room.room_id().to_owned(),
            inviter: ev.sender,
        };
        if let Err(error) = self.inner.provisioner.tell(invite) {
            tracing::error!(%error, room_id = %room.room_id(), "cannot hand an invite to the provisioner");
        }
    }

    fn message(&self, ev: OriginalSyncRoomMessageEvent, room: Room) {
        if ev.sender == self.inner.bot || room.state() != RoomState::Joined {
            return;
        }
        if !self.inner.live.load(Ordering::Acquire) {
            return; // history from before this run
        }
        let body = match &ev.content.msgtype {
            MessageType::Text(text) => text.body.clone(),
            MessageType::Emote(emote) => emote.body.clone(),
            MessageType::Notice(_) => return, // other bots' notices are not addressed to us
            other => {
                tracing::info!(room_id = %room.room_id(), msgtype = other.msgtype(),
                    "ignoring a message type that is not supported yet");
                return;
            }
        };
        let Some(actor) = self.inner.rooms.get(room.room_id()) else {
            self.unmanaged(room, ev.sender);
            return;
        };
        if !self.inner.access.allows(ev.sender.as_str()) {
            tracing::info!(room_id = %room.room_id(), sender = %ev.sender,
                "ignoring a message from a user the access policy does not allow");
            return;
        }
        let msg = UserMessage {
            event_id: ev.event_id,
            sender: ev.sender,
            display_name: None,
            body,
        };
        if actor.tell(msg.clone()).is_err() {
            // The room actor is restarting: hand the message over when it is back.
            tokio::spawn(async move {
                if let Err(error) = actor.send_redelivering(msg, REDELIVERY_DEADLINE).await {
                    tracing::error!(%error, "a message could not reach its room actor");
                }
            });
        }
    }

    fn unmanaged(&self, room: Room, sender: OwnedUserId) {
        tracing::warn!(room_id = %room.room_id(), %sender,
            "message in a room the bot does not manage; not registering it");
        let store = self.inner.store.clone();
        let bot = self.inner.bot.clone();
        tokio::spawn(async move {
            match store.mark_unmanaged_notified(room.room_id().as_str()).await {
                Ok(true) => {
                    let text = texts::unmanaged_room(bot.as_str());
                    if let Err(error) = matrix::send_notice(&room, &text, None).await {
                        tracing::warn!(%error, "cannot explain an unmanaged room");
                    }
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "cannot record an unmanaged room"),
            }
        });
    }
}
