//! From Matrix events to actor messages.
//!
//! The sync loop hands the dispatcher one sync response at a time ([`Dispatcher::handle_sync`]);
//! it never waits on an agent. For each room, in the room's order:
//! - when the timeline came back `limited` (a gap the homeserver left), or on the first sync
//!   of a run (catch-up after down time), the room is caught up first (`matrix::catch_up`
//!   decides, `matrix::backfill` pages): the missed messages come before the newer ones,
//!   within the `[sync]` bounds, and the room is told once how many the bounds left out;
//! - every new text message is journaled; the whole response shares one flush, together with
//!   the sync cursor, so the cursor never moves past a message that is not durably journaled;
//! - then the messages go to their room actors, in order.
//!
//! A room whose gap cannot be fetched gets nothing this round and the response counts as
//! not handled: the loop reads the same range again after a pause (what was journaled is
//! not journaled twice). After [`MAX_GAP_ROUNDS`] such rounds, or at once for an error
//! retrying cannot fix, the bot gives up on that gap, tells the room, and goes on.
//!
//! Messages in rooms the bot does not manage are not registered: a warning in the log and,
//! once per room, an explanation.

use std::collections::HashMap;
use std::sync::Arc;

use actors::ChildHandle;
use matrix_sdk::deserialized_responses::TimelineEvent;
use matrix_sdk::event_handler::EventHandlerHandle;
use matrix_sdk::ruma::events::room::member::{MembershipState, StrippedRoomMemberEvent};
use matrix_sdk::ruma::events::room::message::{MessageType, OriginalSyncRoomMessageEvent};
use matrix_sdk::ruma::events::{
    AnySyncMessageLikeEvent, AnySyncTimelineEvent, SyncMessageLikeEvent,
};
use matrix_sdk::ruma::{OwnedRoomId, OwnedUserId};
use matrix_sdk::sync::SyncResponse;
use matrix_sdk::{Client, Room, RoomState};
use parking_lot::Mutex;

use super::directory::RoomDirectory;
use super::provisioner::{Invited, Provisioner};
use super::room::{RoomActor, UserFile, UserMessage};
use crate::commands::{Command, Parsed};
use crate::config::SyncConfig;
use crate::crash::{self, CrashPoint};
use crate::journal::{Accepted, Journal};
use crate::matrix::backfill::{catch_up_room, CatchUpParams, RoomCatchUp, SyncedTimeline};
use crate::matrix::catch_up::{Bounds, EventFacts, FactKind};
use crate::matrix::{self, txn_id_for, CatchUpCounters, SyncHealth};
use crate::store::{Store, StoreError};
use crate::texts;

/// How long a file message waits for its room actor to come back from a restart.
const FILE_REDELIVERY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);
/// Rounds in a row a room's gap may fail to be fetched before the bot gives up on it.
pub const MAX_GAP_ROUNDS: u32 = 5;
/// The store's name for the Matrix sync cursor.
pub const MATRIX_CURSOR: &str = "matrix";
/// Transaction-id part of the notice about messages a catch-up left out.
const CATCH_UP_NOTICE_PART: u32 = 2;
/// Transaction-id part of the notice about a gap that could not be read.
const UNREADABLE_NOTICE_PART: u32 = 3;

/// Why a sync response was not handled in full (the loop reads it again).
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Gaps of some rooms could not be fetched this round.
    #[error("the gaps of {rooms} room(s) could not be fetched")]
    Gaps {
        /// How many rooms.
        rooms: usize,
    },
    /// The journal (or the cursor) could not be made durable.
    #[error("cannot journal the response: {0}")]
    Journal(#[from] StoreError),
}

/// Routes Matrix events to actors. Cloning shares it.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    bot: OwnedUserId,
    client: Client,
    rooms: RoomDirectory,
    provisioner: ChildHandle<Provisioner>,
    store: Store,
    access: crate::config::AccessPolicy,
    journal: Journal,
    health: Arc<SyncHealth>,
    sync: SyncConfig,
    /// Rounds in a row each room's gap failed.
    gap_failures: Mutex<HashMap<OwnedRoomId, u32>>,
}

/// What the dispatcher is built from.
pub struct DispatcherDeps {
    /// The bot's user id.
    pub bot: OwnedUserId,
    /// The Matrix client (rooms, paging).
    pub client: Client,
    /// Managed rooms.
    pub rooms: RoomDirectory,
    /// Invites go there.
    pub provisioner: ChildHandle<Provisioner>,
    /// The store (cursor, unmanaged rooms told).
    pub store: Store,
    /// Who may use the bot.
    pub access: crate::config::AccessPolicy,
    /// The inbound journal.
    pub journal: Journal,
    /// Sync health (catch-up counters).
    pub health: Arc<SyncHealth>,
    /// `[sync]`.
    pub sync: SyncConfig,
}

/// One thing to do once the response is journaled, in the room's order.
enum Delivery {
    Text(ChildHandle<RoomActor>, UserMessage),
    File(ChildHandle<RoomActor>, UserFile),
    Cancel(Room, UserMessage),
}

impl Dispatcher {
    /// A dispatcher.
    pub fn new(deps: DispatcherDeps) -> Self {
        let DispatcherDeps {
            bot,
            client,
            rooms,
            provisioner,
            store,
            access,
            journal,
            health,
            sync,
        } = deps;
        Self {
            inner: Arc::new(Inner {
                bot,
                client,
                rooms,
                provisioner,
                store,
                access,
                journal,
                health,
                sync,
                gap_failures: Mutex::default(),
            }),
        }
    }

    /// Registers the invite handler on `client` (messages come through
    /// [`Dispatcher::handle_sync`]).
    pub fn register(&self, client: &Client) -> Vec<EventHandlerHandle> {
        let on_invite = self.clone();
        vec![
            client.add_event_handler(move |ev: StrippedRoomMemberEvent, room: Room| {
                let this = on_invite.clone();
                async move { this.invite(ev, room) }
            }),
        ]
    }

    /// The sync cursor stored by the last response handled in full, if any.
    pub fn cursor(&self) -> Result<Option<String>, StoreError> {
        self.inner.store.cursor(MATRIX_CURSOR)
    }

    /// Handles one sync response that continued from `since` (see the module docs).
    /// `first`: the first response of this run (start-up is done: rooms reconciled, their
    /// actors running); every managed room is caught up then, and the bot's replies seen
    /// on the way mark their messages answered, so a lost sync token or a deleted store
    /// replays nothing while messages sent while the bot was down are answered.
    pub async fn handle_sync(
        &self,
        response: SyncResponse,
        since: Option<String>,
        first: bool,
    ) -> Result<(), DispatchError> {
        let inner = &self.inner;
        let params = CatchUpParams {
            since,
            page_size: inner.sync.backfill_page_size,
            bounds: Bounds {
                max_messages: usize::try_from(inner.sync.catch_up_max_messages)
                    .unwrap_or(usize::MAX),
                max_age: inner.sync.catch_up_max_age(),
            },
        };
        let counters = inner.health.catch_up();
        let mut failed = 0usize;
        let mut deliveries = Vec::new();
        let mut answered = Vec::new();
        let mut delivered_messages = 0usize;
        for (room_id, update) in response.rooms.joined {
            let Some(room) = inner.client.get_room(&room_id) else {
                continue;
            };
            let timeline = SyncedTimeline {
                events: update.timeline.events,
                limited: update.timeline.limited,
                prev_batch: update.timeline.prev_batch,
            };
            let managed = inner.rooms.get(&room_id).is_some();
            let events = if managed && (first || timeline.limited) {
                match self.catch_up(&room, timeline, &params, counters).await {
                    Some((events, room_answered)) => {
                        answered.extend(room_answered);
                        events
                    }
                    None => {
                        failed += 1;
                        continue;
                    }
                }
            } else {
                timeline.events
            };
            for event in events {
                if let Some(ev) = room_message(event) {
                    delivered_messages += 1;
                    let span =
                        tracing::info_span!("event", room_id = %room_id, event_id = %ev.event_id);
                    if let Some(delivery) = span.in_scope(|| self.stage(ev, &room)) {
                        deliveries.push(delivery);
                    }
                }
            }
        }
        if first {
            for event_id in &answered {
                if let Err(error) = inner.journal.stage_done(event_id) {
                    tracing::warn!(%error, %event_id, "cannot record an answered message");
                }
            }
            tracing::info!(
                messages = delivered_messages,
                answered = answered.len(),
                "handling the first sync's messages"
            );
        }
        if failed == 0 {
            inner
                .store
                .set_cursor(MATRIX_CURSOR, &response.next_batch)?;
        }
        let committed = inner.journal.commit().await;
        if let Err(error) = &committed {
            tracing::error!(%error, "cannot journal the sync's messages; handling them without crash safety");
        }
        if deliveries.iter().any(|d| matches!(d, Delivery::Text(..))) {
            crash::point(CrashPoint::AfterJournal);
        }
        for delivery in deliveries {
            self.deliver(delivery);
        }
        committed?;
        if failed > 0 {
            CatchUpCounters::add(&counters.failed_rounds, 1);
            return Err(DispatchError::Gaps { rooms: failed });
        }
        Ok(())
    }

    /// Catches a managed room up; `None` when its gap could not be fetched this round (the
    /// room is then left for the next one).
    async fn catch_up(
        &self,
        room: &Room,
        timeline: SyncedTimeline,
        params: &CatchUpParams,
        counters: &CatchUpCounters,
    ) -> Option<(Vec<TimelineEvent>, Vec<String>)> {
        let inner = &self.inner;
        let room_id = room.room_id().to_owned();
        if timeline.limited {
            CatchUpCounters::add(&counters.gaps, 1);
            tracing::info!(room_id = %room_id, events = timeline.events.len(),
                since = ?params.since, "a sync left a gap in a room; catching up");
        }
        // Kept for giving up on the gap (then at least the sync's own events are answered).
        let fallback = timeline.limited.then(|| timeline.events.clone());
        let handled = |event_id: &str| inner.journal.is_known(event_id).unwrap_or(false);
        let answerable = |facts: &EventFacts| {
            facts.kind == FactKind::Message && inner.access.allows(&facts.sender)
        };
        match catch_up_room(room, &inner.bot, timeline, params, &handled, &answerable).await {
            Ok(caught) => {
                inner.gap_failures.lock().remove(&room_id);
                self.report_catch_up(room, &caught, counters);
                Some((caught.deliver, caught.answered))
            }
            Err(error) => {
                let rounds = {
                    let mut failures = inner.gap_failures.lock();
                    let n = failures.entry(room_id.clone()).or_insert(0);
                    *n += 1;
                    *n
                };
                if error.is_retryable() && rounds < MAX_GAP_ROUNDS {
                    tracing::warn!(room_id = %room_id, %error, rounds,
                        "cannot fetch the messages a sync left out; trying again next round");
                    return None;
                }
                tracing::error!(room_id = %room_id, %error, rounds,
                    "giving up on fetching the messages a sync left out of this room; \
                     answering the newest ones and telling the room");
                inner.gap_failures.lock().remove(&room_id);
                CatchUpCounters::add(&counters.unreadable_gaps, 1);
                let events = fallback.unwrap_or_default();
                let anchor = events.iter().find_map(TimelineEvent::event_id);
                self.notice_later(
                    room,
                    texts::CATCH_UP_UNREADABLE.to_owned(),
                    anchor,
                    UNREADABLE_NOTICE_PART,
                );
                Some((events, Vec::new()))
            }
        }
    }

    /// Counts a catch-up and tells the room what the bounds left out.
    fn report_catch_up(&self, room: &Room, caught: &RoomCatchUp, counters: &CatchUpCounters) {
        CatchUpCounters::add(&counters.backfilled, caught.backfilled);
        CatchUpCounters::add(&counters.skipped_too_old, caught.skipped.too_old);
        CatchUpCounters::add(&counters.skipped_too_many, caught.skipped.too_many);
        if caught.pages > 0 || caught.skipped.total() > 0 {
            tracing::info!(room_id = %room.room_id(), pages = caught.pages,
                fetched = caught.fetched, backfilled = caught.backfilled,
                delivered = caught.deliver.len(), too_old = caught.skipped.too_old,
                too_many = caught.skipped.too_many, at_least = caught.skipped.at_least,
                stop = ?caught.stop, "caught up on a room");
        }
        if caught.skipped.total() > 0 {
            let sync = &self.inner.sync;
            let text = texts::catch_up_skipped(
                caught.skipped.total(),
                caught.skipped.at_least,
                sync.catch_up_max_messages,
                sync.catch_up_max_age_secs / 3600,
            );
            let anchor = caught.deliver.first().and_then(TimelineEvent::event_id);
            self.notice_later(room, text, anchor, CATCH_UP_NOTICE_PART);
        }
    }

    /// Sends a notice from a task (the sync does not wait for it); with an `anchor` event
    /// its transaction id derives from it, so a round read again does not repeat it.
    fn notice_later(
        &self,
        room: &Room,
        text: String,
        anchor: Option<matrix_sdk::ruma::OwnedEventId>,
        part: u32,
    ) {
        let room = room.clone();
        tokio::spawn(async move {
            let txn = anchor.map(|event| txn_id_for(&event, part));
            if let Err(error) = matrix::send_notice(&room, &text, txn.as_deref()).await {
                tracing::warn!(room_id = %room.room_id(), %error, "cannot send a catch-up notice");
            }
        });
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

    /// Decides what to do with one message: journals (staged, not flushed) a text for its
    /// room actor, or returns the file / `!cancel` to hand over. `None`: nothing to do.
    fn stage(&self, ev: OriginalSyncRoomMessageEvent, room: &Room) -> Option<Delivery> {
        if ev.sender == self.inner.bot || room.state() != RoomState::Joined {
            return None;
        }
        let body = match &ev.content.msgtype {
            MessageType::Text(text) => text.body.clone(),
            MessageType::Emote(emote) => emote.body.clone(),
            MessageType::Notice(_) => return None, // other bots' notices are not addressed to us
            MessageType::File(_)
            | MessageType::Image(_)
            | MessageType::Audio(_)
            | MessageType::Video(_) => return self.file_message(ev, room),
            other => {
                tracing::info!(room_id = %room.room_id(), msgtype = other.msgtype(),
                    "ignoring a message type that is not supported yet");
                return None;
            }
        };
        let actor = self.route(room, &ev.sender)?;
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
            return Some(Delivery::Cancel(room.clone(), msg));
        }
        match self.inner.journal.stage(
            room.room_id().as_str(),
            msg.event_id.as_str(),
            msg.sender.as_str(),
            &msg.body,
        ) {
            Ok((Accepted::New, _)) => {}
            Ok((seen, _)) => {
                tracing::debug!(?seen, "message already journaled");
                return None;
            }
            Err(error) => {
                tracing::error!(%error, "cannot journal a message; handling it without crash safety");
            }
        }
        Some(Delivery::Text(actor, msg))
    }

    /// Hands a staged message over (after the journal's flush).
    fn deliver(&self, delivery: Delivery) {
        match delivery {
            Delivery::Text(actor, msg) => {
                if let Err(error) = actor.tell(msg) {
                    // Journaled: the room's next incarnation resumes it when it starts.
                    tracing::info!(%error, "room actor not running; its next incarnation resumes the message");
                }
            }
            Delivery::File(actor, msg) => {
                if actor.tell(msg.clone()).is_err() {
                    // The room actor is restarting: hand the file over when it is back.
                    tokio::spawn(async move {
                        if let Err(error) =
                            actor.send_redelivering(msg, FILE_REDELIVERY_DEADLINE).await
                        {
                            tracing::error!(%error, "a file message could not reach its room actor");
                        }
                    });
                }
            }
            Delivery::Cancel(room, msg) => {
                let deps = self.inner.rooms.deps().clone();
                tokio::spawn(async move { super::commands::cancel_now(&deps, &room, &msg).await });
            }
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
    fn file_message(&self, ev: OriginalSyncRoomMessageEvent, room: &Room) -> Option<Delivery> {
        let file = matrix::media::incoming_file(&ev.content.msgtype)?;
        let actor = self.route(room, &ev.sender)?;
        Some(Delivery::File(
            actor,
            UserFile {
                event_id: ev.event_id,
                sender: ev.sender,
                display_name: None,
                file,
            },
        ))
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

/// The person's message in a timeline event, if it is one (decrypted where it could be).
fn room_message(event: TimelineEvent) -> Option<OriginalSyncRoomMessageEvent> {
    match event.raw().deserialize() {
        Ok(AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(
            SyncMessageLikeEvent::Original(ev),
        ))) => Some(ev),
        Ok(_) => None,
        Err(error) => {
            tracing::debug!(%error, event_id = ?event.event_id(), "unreadable timeline event");
            None
        }
    }
}
