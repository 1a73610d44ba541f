//! From sync responses to the core's intake: the inbound half of the Matrix adapter.
//!
//! The sync loop hands over one response at a time ([`MatrixInbound::handle_sync`]); for each
//! room, in the room's order:
//! - when the timeline came back `limited` (a gap the homeserver left), or on the first sync
//!   of a run (catch-up after down time), a managed room is caught up first ([`super::catch_up`]
//!   decides, [`super::backfill`] pages): the missed messages come before the newer ones,
//!   within the `[sync]` bounds, and the room is told once how many the bounds left out;
//! - its messages become the core's [`Incoming`] (text, or a file with its media source;
//!   an edit or a redaction of an earlier message as such, a reply without its fallback
//!   quote: see [`super::relations`]);
//! - a message the bot could not decrypt (in a managed room, from a person it serves) is
//!   handed over to be held, and to the [`super::undecryptable`] watcher once held;
//! - the whole response goes to the intake as one [`Batch`] with the response's token as the
//!   cursor, made durable in one write before anything is answered.
//!
//! A room whose gap cannot be fetched gets nothing this round and the response counts as
//! not handled: the loop hands the same response over again after a pause (what was journaled is
//! not journaled twice). After [`MAX_GAP_ROUNDS`] such rounds, or at once for an error
//! retrying cannot fix, the bot gives up on that gap, tells the room, and goes on.

use std::collections::HashMap;
use std::sync::Arc;

use matrix_sdk::deserialized_responses::TimelineEvent;
use matrix_sdk::ruma::events::room::message::{MessageType, OriginalSyncRoomMessageEvent};
use matrix_sdk::ruma::events::room::redaction::{
    OriginalSyncRoomRedactionEvent, SyncRoomRedactionEvent,
};
use matrix_sdk::ruma::events::{
    AnySyncMessageLikeEvent, AnySyncTimelineEvent, SyncMessageLikeEvent,
};
use matrix_sdk::ruma::{OwnedRoomId, OwnedUserId, UserId};
use matrix_sdk::sync::SyncResponse;
use matrix_sdk::{Client, Room, RoomState};
use parking_lot::Mutex;

use super::backfill::{catch_up_room, CatchUpParams, RoomCatchUp, SyncedTimeline};
use super::catch_up::{Bounds, EventFacts, FactKind};
use super::relations::{self, Shape};
use super::sync::{CatchUpCounters, SyncHealth};
use super::{media, surface, undecryptable};
use crate::config::SyncConfig;
use crate::surface::{
    AnswerPart, Batch, ChatId, DeliveryError, Inbound, Incoming, IncomingBody, MessageId,
    OutMessage, PersonId, SendKey, Surface, Undecryptable,
};
use crate::texts;

/// Rounds in a row a room's gap may fail to be fetched before the bot gives up on it.
pub const MAX_GAP_ROUNDS: u32 = 5;

/// Why a sync response was not handled in full (the loop reads it again).
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// Gaps of some rooms could not be fetched this round.
    #[error("the gaps of {rooms} room(s) could not be fetched")]
    Gaps {
        /// How many rooms.
        rooms: usize,
    },
    /// The intake could not make the batch durable.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

/// The inbound half of the Matrix adapter. Cloning shares it.
#[derive(Clone)]
pub struct MatrixInbound {
    inner: Arc<Inner>,
}

/// What the inbound half works with.
pub struct InboundDeps {
    /// The adapter's outbound half (handed to the core with every batch).
    pub surface: Arc<dyn Surface>,
    /// The bot's Matrix client.
    pub client: Client,
    /// The bot's user id.
    pub bot: OwnedUserId,
    /// The core.
    pub inbound: Arc<dyn Inbound>,
    /// The sync loop's health, with the catch-up counters.
    pub health: Arc<SyncHealth>,
    /// `[sync]`: catch-up bounds and page sizes.
    pub sync: SyncConfig,
    /// The watcher of messages that cannot be decrypted yet.
    pub undecryptable: undecryptable::Watch,
}

struct Inner {
    deps: InboundDeps,
    /// Rounds in a row each room's gap failed.
    gap_failures: Mutex<HashMap<OwnedRoomId, u32>>,
}

impl MatrixInbound {
    /// The inbound half of the bot logged in as `client`, delivering to `inbound`.
    pub fn new(deps: InboundDeps) -> Self {
        Self {
            inner: Arc::new(Inner {
                deps,
                gap_failures: Mutex::default(),
            }),
        }
    }

    /// The cursor stored with the last response handled in full, if any.
    pub fn cursor(&self) -> Result<Option<String>, crate::store::StoreError> {
        self.inner
            .deps
            .inbound
            .cursor(self.inner.deps.surface.name())
    }

    /// Handles one sync response that continued from `since` (see the module docs).
    /// `first`: the first response of this run (reconciled, the rooms' actors running);
    /// every managed room is caught up then, and the bot's replies seen on the way mark
    /// their messages answered, so a lost sync token or a deleted store replays nothing
    /// while messages sent while the bot was down are answered.
    pub async fn handle_sync(
        &self,
        response: SyncResponse,
        since: Option<String>,
        first: bool,
    ) -> Result<(), InboundError> {
        let inner = &self.inner;
        let params = CatchUpParams {
            since,
            page_size: inner.deps.sync.backfill_page_size,
            bounds: Bounds {
                max_messages: usize::try_from(inner.deps.sync.catch_up_max_messages)
                    .unwrap_or(usize::MAX),
                max_age: inner.deps.sync.catch_up_max_age(),
            },
        };
        let counters = inner.deps.health.catch_up();
        let mut failed = 0usize;
        let mut batch = Batch::default();
        for (room_id, update) in response.rooms.joined {
            let Some(room) = inner.deps.client.get_room(&room_id) else {
                continue;
            };
            let timeline = SyncedTimeline {
                events: update.timeline.events,
                limited: update.timeline.limited,
                prev_batch: update.timeline.prev_batch,
            };
            let chat = ChatId::new(room_id.as_str());
            let events = if inner.deps.inbound.is_managed(&chat) && (first || timeline.limited) {
                match self.catch_up(&room, timeline, &params, counters).await {
                    Some((events, answered)) => {
                        if first {
                            batch
                                .answered
                                .extend(answered.into_iter().map(MessageId::new));
                        }
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
            if room.state() != RoomState::Joined {
                continue;
            }
            for event in events {
                if let Some(held) = self.undecryptable(&chat, &event) {
                    batch.undecryptable.push(held);
                } else if let Some(incoming) = incoming_of(&chat, event, &inner.deps.bot) {
                    batch.messages.push(incoming);
                }
            }
        }
        if first {
            tracing::info!(
                messages = batch.messages.len(),
                answered = batch.answered.len(),
                "handling the first sync's messages"
            );
        }
        if failed == 0 {
            batch.cursor = Some(response.next_batch);
        }
        let held = batch.undecryptable.clone();
        inner
            .deps
            .inbound
            .deliver(&inner.deps.surface, batch)
            .await?;
        inner.deps.undecryptable.watch(held);
        if failed > 0 {
            CatchUpCounters::add(&counters.failed_rounds, 1);
            return Err(InboundError::Gaps { rooms: failed });
        }
        Ok(())
    }

    /// Catches a managed room up: its events to deliver and the messages the bot's replies
    /// answer; `None` when its gap could not be fetched this round (the room is then left
    /// for the next one).
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
        let inbound = &inner.deps.inbound;
        let handled = |event_id: &str| inbound.is_handled(&MessageId::new(event_id));
        let answerable = |facts: &EventFacts| {
            facts.kind == FactKind::Message && inbound.serves(&PersonId::new(facts.sender.as_str()))
        };
        match catch_up_room(
            room,
            &inner.deps.bot,
            timeline,
            params,
            &handled,
            &answerable,
        )
        .await
        {
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
                if error.retry_kind().is_retryable() && rounds < MAX_GAP_ROUNDS {
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
                    anchor.map(|e| {
                        SendKey::answer(&MessageId::new(e.as_str()), AnswerPart::CatchUpUnreadable)
                    }),
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
            let sync = &self.inner.deps.sync;
            let text = texts::catch_up_skipped(
                caught.skipped.total(),
                caught.skipped.at_least,
                sync.catch_up_max_messages,
                sync.catch_up_max_age_secs / 3600,
            );
            // Keyed by the oldest message answered, so a round read again does not repeat it.
            let key = caught
                .deliver
                .first()
                .and_then(TimelineEvent::event_id)
                .map(|e| SendKey::answer(&MessageId::new(e.as_str()), AnswerPart::CatchUpSkipped));
            self.notice_later(room, text, key);
        }
    }

    /// The event as a message to hold, when the bot could not decrypt it and it concerns the
    /// core: a managed room, a person the bot serves, and room for it in the watcher.
    fn undecryptable(&self, chat: &ChatId, event: &TimelineEvent) -> Option<Undecryptable> {
        let deps = &self.inner.deps;
        let held = undecryptable::held(chat, event, &deps.bot)?;
        if !deps.inbound.is_managed(chat) || !deps.inbound.serves(&held.sender) {
            return None;
        }
        if !deps.undecryptable.has_room(&held.sender) {
            tracing::warn!(room_id = %chat, event_id = %held.id, sender = %held.sender,
                max = undecryptable::MAX_WATCHED, max_per_person = undecryptable::MAX_WATCHED_PER_PERSON,
                "too many messages that cannot be decrypted are held; not holding this one");
            return None;
        }
        tracing::info!(room_id = %chat, event_id = %held.id, sender = %held.sender,
            "cannot decrypt a message yet (its room key has not arrived)");
        Some(held)
    }

    /// Sends a notice from a task (the sync does not wait for it).
    fn notice_later(&self, room: &Room, text: String, key: Option<SendKey>) {
        let surface = self.inner.deps.surface.clone();
        let chat = ChatId::new(room.room_id().as_str());
        tokio::spawn(async move {
            if let Err(error) = surface.send(&chat, OutMessage::notice(text, key)).await {
                tracing::warn!(room_id = %chat, %error, "cannot send a catch-up notice");
            }
        });
    }
}

/// A person's event the core reads: a message (new, edit or reply) or a redaction.
enum PersonEvent {
    Message(OriginalSyncRoomMessageEvent),
    Redaction(OriginalSyncRoomRedactionEvent),
}

impl PersonEvent {
    fn sender(&self) -> &UserId {
        match self {
            PersonEvent::Message(ev) => &ev.sender,
            PersonEvent::Redaction(ev) => &ev.sender,
        }
    }

    fn incoming(self, chat: &ChatId) -> Option<Incoming> {
        match self {
            PersonEvent::Message(ev) => incoming(chat, ev),
            PersonEvent::Redaction(ev) => {
                let of = relations::redacted(&ev)?;
                Some(Incoming {
                    chat: chat.clone(),
                    id: MessageId::new(ev.event_id.as_str()),
                    sender: PersonId::new(ev.sender.as_str()),
                    display_name: None,
                    body: IncomingBody::Withdraw { of },
                    origin_ts: ev.origin_server_ts.to_system_time(),
                })
            }
        }
    }
}

/// A timeline event as the core's message, if it is a person's message (or an edit or
/// redaction) the core reads: not the bot's own.
pub(super) fn incoming_of(chat: &ChatId, event: TimelineEvent, bot: &UserId) -> Option<Incoming> {
    person_event(event)
        .filter(|ev| ev.sender() != bot)?
        .incoming(chat)
}

/// The `m.room.message` or `m.room.redaction` in a timeline event, if it is one (decrypted
/// where it could be).
fn person_event(event: TimelineEvent) -> Option<PersonEvent> {
    match event.raw().deserialize() {
        Ok(AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(
            SyncMessageLikeEvent::Original(ev),
        ))) => Some(PersonEvent::Message(ev)),
        Ok(AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomRedaction(
            SyncRoomRedactionEvent::Original(ev),
        ))) => Some(PersonEvent::Redaction(ev)),
        Ok(_) => None,
        Err(error) => {
            tracing::debug!(%error, event_id = ?event.event_id(), "unreadable timeline event");
            None
        }
    }
}

/// A person's message as the core reads it: text (and emotes, a reply without its fallback
/// quote), an edit of an earlier message, or a file, image, audio or video; other bots'
/// notices and unsupported types are left out.
fn incoming(chat: &ChatId, ev: OriginalSyncRoomMessageEvent) -> Option<Incoming> {
    let shape = relations::shape(&ev.content);
    let text = |body: &str| match shape {
        Shape::Reply => relations::strip_reply_fallback(body).to_owned(),
        _ => body.to_owned(),
    };
    let body = match (&shape, &ev.content.msgtype) {
        (Shape::Edit { of, new }, _) => match relations::text_of(new) {
            Some(new) => IncomingBody::Edit {
                of: of.clone(),
                text: new.to_owned(),
            },
            None => {
                tracing::debug!(room_id = %chat, event_id = %ev.event_id,
                    "ignoring an edit to something other than text");
                return None;
            }
        },
        (Shape::MalformedEdit, _) => {
            tracing::debug!(room_id = %chat, event_id = %ev.event_id,
                "ignoring an edit without its new content");
            return None;
        }
        (_, MessageType::Text(body)) => IncomingBody::Text(text(&body.body)),
        (_, MessageType::Emote(emote)) => IncomingBody::Text(text(&emote.body)),
        (_, MessageType::Notice(_)) => return None, // other bots' notices are not addressed to us
        (
            _,
            MessageType::File(_)
            | MessageType::Image(_)
            | MessageType::Audio(_)
            | MessageType::Video(_),
        ) => IncomingBody::File(surface::incoming_file(media::incoming_file(
            &ev.content.msgtype,
        )?)),
        (_, other) => {
            tracing::info!(room_id = %chat, msgtype = other.msgtype(),
                "ignoring a message type that is not supported yet");
            return None;
        }
    };
    Some(Incoming {
        chat: chat.clone(),
        id: MessageId::new(ev.event_id.as_str()),
        sender: PersonId::new(ev.sender.as_str()),
        display_name: None,
        body,
        origin_ts: ev.origin_server_ts.to_system_time(),
    })
}
