//! From Matrix events to actor messages.
//!
//! matrix-sdk calls the handlers registered here while it processes a sync response; they
//! never wait on an agent: a message is journaled (flushed), queued to its room's actor,
//! and the handler returns. Messages the first sync brings wait until start-up is done
//! (see [`Dispatcher::go_live`]). Messages in rooms the bot does not manage are not
//! registered: a warning in the log and, once per room, an explanation.

use std::sync::Arc;

use actors::ChildHandle;
use matrix_sdk::event_handler::EventHandlerHandle;
use matrix_sdk::ruma::events::room::member::{MembershipState, StrippedRoomMemberEvent};
use matrix_sdk::ruma::events::room::message::{
    MessageType, OriginalSyncRoomMessageEvent, Relation,
};
use matrix_sdk::ruma::OwnedUserId;
use matrix_sdk::{Client, Room, RoomState};
use parking_lot::Mutex;

use super::directory::RoomDirectory;
use super::provisioner::{Invited, Provisioner};
use super::room::{RoomActor, UserFile, UserMessage};
use crate::commands::{Command, Parsed};
use crate::config::AccessPolicy;
use crate::crash::{self, CrashPoint};
use crate::journal::{Accepted, Journal};
use crate::matrix;
use crate::store::Store;
use crate::texts;

/// How long a file message waits for its room actor to come back from a restart.
const FILE_REDELIVERY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

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
    journal: Journal,
    /// Messages seen before start-up finished (first sync), handled by `go_live`.
    startup: Mutex<Option<Vec<(OriginalSyncRoomMessageEvent, Room)>>>,
}

impl Dispatcher {
    /// A dispatcher for the bot `bot`.
    pub fn new(
        bot: OwnedUserId,
        rooms: RoomDirectory,
        provisioner: ChildHandle<Provisioner>,
        store: Store,
        access: AccessPolicy,
        journal: Journal,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                bot,
                rooms,
                provisioner,
                store,
                access,
                journal,
                startup: Mutex::new(Some(Vec::new())),
            }),
        }
    }

    /// Start-up is done (rooms reconciled, their actors running): handle the messages the
    /// first sync brought, then every message as it comes.
    ///
    /// The first sync's timelines are read with care: a message the bot already replied
    /// to (its reply is in the same timeline) counts as done, so a lost sync token or a
    /// deleted store replays nothing; any other message after the bot joined is answered,
    /// so messages sent while the bot was down get their reply.
    pub async fn go_live(&self) {
        let buffered = self.inner.startup.lock().take().unwrap_or_default();
        for (ev, _) in buffered
            .iter()
            .filter(|(ev, _)| ev.sender == self.inner.bot)
        {
            if let Some(Relation::Reply(reply)) = &ev.content.relates_to {
                let answered = reply.in_reply_to.event_id.as_str();
                if let Err(error) = self.inner.journal.complete(answered).await {
                    tracing::warn!(%error, "cannot record an answered message");
                }
            }
        }
        tracing::info!(
            messages = buffered.len(),
            "handling the first sync's messages"
        );
        for (ev, room) in buffered {
            self.handle_message(ev, room).await;
        }
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
                async move { this.message(ev, room).await }
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

    async fn message(&self, ev: OriginalSyncRoomMessageEvent, room: Room) {
        {
            let mut startup = self.inner.startup.lock();
            if let Some(buffer) = startup.as_mut() {
                buffer.push((ev, room));
                return;
            }
        }
        self.handle_message(ev, room).await;
    }

    /// [`Self::handle_event`] in a span carrying the room id and the event id.
    async fn handle_message(&self, ev: OriginalSyncRoomMessageEvent, room: Room) {
        let span = tracing::info_span!("event", room_id = %room.room_id(), event_id = %ev.event_id);
        tracing::Instrument::instrument(self.handle_event(ev, room), span).await
    }

    async fn handle_event(&self, ev: OriginalSyncRoomMessageEvent, room: Room) {
        if ev.sender == self.inner.bot || room.state() != RoomState::Joined {
            return;
        }
        let body = match &ev.content.msgtype {
            MessageType::Text(text) => text.body.clone(),
            MessageType::Emote(emote) => emote.body.clone(),
            MessageType::Notice(_) => return, // other bots' notices are not addressed to us
            MessageType::File(_)
            | MessageType::Image(_)
            | MessageType::Audio(_)
            | MessageType::Video(_) => {
                self.file_message(ev, room);
                return;
            }
            other => {
                tracing::info!(room_id = %room.room_id(), msgtype = other.msgtype(),
                    "ignoring a message type that is not supported yet");
                return;
            }
        };
        let Some(actor) = self.route(&room, &ev.sender) else {
            return;
        };
        let msg = UserMessage {
            event_id: ev.event_id,
            sender: ev.sender,
            display_name: None,
            body,
        };
        if matches!(
            crate::commands::parse(&msg.body),
            Parsed::Command(Command::Cancel)
        ) {
            // Not queued behind the turn it cancels: handled at once.
            let deps = self.inner.rooms.deps().clone();
            tokio::spawn(async move { super::commands::cancel_now(&deps, &room, &msg).await });
            return;
        }
        match self
            .inner
            .journal
            .accept(
                room.room_id().as_str(),
                msg.event_id.as_str(),
                msg.sender.as_str(),
                &msg.body,
            )
            .await
        {
            Ok((Accepted::New, _)) => {}
            Ok((seen, _)) => {
                tracing::debug!(?seen, "message already journaled");
                return;
            }
            Err(error) => {
                tracing::error!(%error, "cannot journal a message; handling it without crash safety");
            }
        }
        crash::point(CrashPoint::AfterJournal);
        if let Err(error) = actor.tell(msg) {
            // Journaled: the room's next incarnation resumes it when it starts.
            tracing::info!(%error, "room actor not running; its next incarnation resumes the message");
        }
    }

    /// The actor of the room, if the bot manages it and the sender may use the bot; else
    /// the message is dealt with here (unmanaged rooms get their one explanation).
    fn route(&self, room: &Room, sender: &OwnedUserId) -> Option<ChildHandle<RoomActor>> {
        let Some(actor) = self.inner.rooms.get(room.room_id()) else {
            self.unmanaged(room.clone(), sender.clone());
            return None;
        };
        if !self.inner.access.allows(sender.as_str()) {
            tracing::info!(room_id = %room.room_id(), %sender,
                "ignoring a message from a user the access policy does not allow");
            return None;
        }
        Some(actor)
    }

    /// A file, image, audio or video message: to its room actor (not journaled; see
    /// `runtime::room::attachments`).
    fn file_message(&self, ev: OriginalSyncRoomMessageEvent, room: Room) {
        let Some(file) = matrix::media::incoming_file(&ev.content.msgtype) else {
            return;
        };
        let Some(actor) = self.route(&room, &ev.sender) else {
            return;
        };
        let msg = UserFile {
            event_id: ev.event_id,
            sender: ev.sender,
            display_name: None,
            file,
        };
        if actor.tell(msg.clone()).is_err() {
            // The room actor is restarting: hand the file over when it is back.
            tokio::spawn(async move {
                if let Err(error) = actor.send_redelivering(msg, FILE_REDELIVERY_DEADLINE).await {
                    tracing::error!(%error, "a file message could not reach its room actor");
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
