//! Messages the bot's device cannot decrypt yet: held, tried again when keys arrive, and
//! owned up to.
//!
//! Why this exists: in an encrypted room a message's room key travels separately from the
//! message (a to-device message from the sender's device, or the key backup). When the
//! message comes first, or the key never comes (the sender's app does not share keys with
//! the bot's device), matrix-sdk hands over an `m.room.encrypted` event it could not read;
//! it used to be dropped without a word. Now:
//! - the inbound half ([`super::inbound`]) puts it in its batch as
//!   [`Undecryptable`]: the core holds it in the journal, durably with the cursor;
//! - the [`Watcher`] (a task of the adapter) tries to decrypt it again as soon as a room key
//!   of its session arrives (matrix-sdk's room-key stream; `Room::decrypt_event` also asks
//!   the key backup), and every [`RETRY_ALL_EVERY`] in case a key slipped by; a message
//!   read at last goes to the core as an ordinary message (answered as usual) and leaves
//!   the journal's hold in the same write;
//! - past `matrix.undecryptable_grace_secs` the person is told once per person and room
//!   (the pure decision is [`crate::surface::undecryptable::give_up`]), and the message
//!   stays held: a key that comes even later still gets it answered;
//! - held messages survive a restart: the watcher starts from what the journal holds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use matrix_sdk::deserialized_responses::{TimelineEvent, TimelineEventKind};
use matrix_sdk::ruma::events::room::encrypted::OriginalSyncRoomEncryptedEvent;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{OwnedUserId, RoomId};
use matrix_sdk::Client;
use tokio::sync::mpsc;

use crate::journal::now_ms;
use crate::surface::undecryptable::give_up;
use crate::surface::{
    AnswerPart, Batch, ChatId, Inbound, MessageId, OutMessage, PersonId, ReplyTo, SendKey,
    Shutdown, Surface, Undecryptable,
};
use crate::texts;

/// How often the watcher checks for messages past their grace period.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often every held message is tried again, whatever keys were announced (a safety
/// net: a key imported in a way the room-key stream does not announce).
pub const RETRY_ALL_EVERY: Duration = Duration::from_secs(30);
/// The most messages held at once; beyond it new ones are not held (logged), so a flood of
/// unreadable events cannot fill memory and disk.
pub const MAX_WATCHED: usize = 10_000;
/// The most messages held at once per person (one person's flood leaves room for others).
pub const MAX_WATCHED_PER_PERSON: usize = 200;

/// The watcher's handle for the inbound half: hands it newly held messages. Cloning shares.
#[derive(Clone)]
pub struct Watch {
    tx: mpsc::UnboundedSender<Vec<Undecryptable>>,
    watched: Arc<Watched>,
}

/// How many messages are held, in all and per person (kept by the watcher).
#[derive(Debug, Default)]
struct Watched {
    total: AtomicUsize,
    per_person: parking_lot::Mutex<HashMap<PersonId, usize>>,
}

impl Watched {
    fn record(&self, waiting: &BTreeMap<MessageId, Waiting>) {
        let mut per_person: HashMap<PersonId, usize> = HashMap::new();
        for waiting in waiting.values() {
            *per_person.entry(waiting.record.sender.clone()).or_default() += 1;
        }
        self.total.store(waiting.len(), Ordering::Relaxed);
        *self.per_person.lock() = per_person;
    }

    fn has_room(&self, sender: &PersonId) -> bool {
        self.total.load(Ordering::Relaxed) < MAX_WATCHED
            && self.per_person.lock().get(sender).copied().unwrap_or(0) < MAX_WATCHED_PER_PERSON
    }
}

impl Watch {
    /// Hands messages the core now holds to the watcher.
    pub fn watch(&self, held: Vec<Undecryptable>) {
        if !held.is_empty() && self.tx.send(held).is_err() {
            tracing::warn!(
                "the undecryptable-message watcher has stopped; held messages are \
                tried again at the next start"
            );
        }
    }

    /// Whether more messages of `sender` may be held ([`MAX_WATCHED`],
    /// [`MAX_WATCHED_PER_PERSON`]).
    pub fn has_room(&self, sender: &PersonId) -> bool {
        self.watched.has_room(sender)
    }
}

/// What the watcher works with.
pub struct WatcherDeps {
    /// The bot's client (decrypts).
    pub client: Client,
    /// The bot's user id (its own events are never messages for the core).
    pub bot: OwnedUserId,
    /// The adapter's outbound half (notices; named in every batch).
    pub surface: Arc<dyn Surface>,
    /// The core.
    pub inbound: Arc<dyn Inbound>,
    /// `matrix.undecryptable_grace_secs`.
    pub grace: Duration,
    /// Stops the watcher.
    pub shutdown: Shutdown,
}

/// The held message as the event the sync delivered, if `event` is one the bot could not
/// decrypt (sent by someone else than the bot).
pub fn held(chat: &ChatId, event: &TimelineEvent, bot: &OwnedUserId) -> Option<Undecryptable> {
    let TimelineEventKind::UnableToDecrypt { event: raw, .. } = &event.kind else {
        return None;
    };
    let id = raw.get_field::<String>("event_id").ok().flatten()?;
    let sender = raw.get_field::<OwnedUserId>("sender").ok().flatten()?;
    if &sender == bot {
        return None;
    }
    Some(Undecryptable {
        chat: chat.clone(),
        id: MessageId::new(id),
        sender: PersonId::new(sender.as_str()),
        since_ms: now_ms(),
        given_up: false,
        payload: raw.json().get().to_owned(),
    })
}

/// Starts the watcher on what the journal holds; returns the inbound half's handle.
pub fn start(deps: WatcherDeps) -> Watch {
    let (tx, rx) = mpsc::unbounded_channel();
    let watched = Arc::new(Watched::default());
    let watcher = Watcher {
        deps,
        waiting: BTreeMap::new(),
        watched: watched.clone(),
    };
    tokio::spawn(watcher.run(rx));
    Watch { tx, watched }
}

/// One held message and the key session it needs.
struct Waiting {
    record: Undecryptable,
    session: Option<String>,
}

/// The task: see the module docs.
struct Watcher {
    deps: WatcherDeps,
    waiting: BTreeMap<MessageId, Waiting>,
    watched: Arc<Watched>,
}

/// Session ids of the room keys that arrived (`None`: announcements were missed).
type KeyStream = Pin<Box<dyn Stream<Item = Option<Vec<String>>> + Send>>;

impl Watcher {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Vec<Undecryptable>>) {
        match self.deps.inbound.undecryptable(self.deps.surface.name()) {
            Ok(held) => {
                if !held.is_empty() {
                    tracing::info!(
                        held = held.len(),
                        "messages that could not be decrypted are held; trying them again"
                    );
                }
                self.add(held);
            }
            Err(error) => tracing::error!(%error,
                "cannot read the undecryptable messages the journal holds; they are tried \
                 again at the next start"),
        }
        let mut keys: Option<KeyStream> = self
            .deps
            .client
            .encryption()
            .room_keys_received_stream()
            .await
            .map(|stream| {
                Box::pin(stream.map(|keys| {
                    keys.ok()
                        .map(|keys| keys.into_iter().map(|k| k.session_id).collect())
                })) as KeyStream
            });
        if keys.is_none() {
            tracing::warn!(
                "no room-key stream (encryption is not set up): held messages are \
                tried again every {} s only",
                RETRY_ALL_EVERY.as_secs()
            );
        }
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_full_try = Instant::now();
        self.try_decrypt(self.all()).await;
        let mut shutdown = self.deps.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { return; }
                }
                new = rx.recv() => match new {
                    Some(new) => {
                        let ids = self.add(new);
                        // Its key may have come between the sync and now.
                        self.try_decrypt(ids).await;
                    }
                    None => return,
                },
                Some(keys) = next_keys(&mut keys) => {
                    let ids = match keys {
                        Some(keys) => {
                            let sessions: HashSet<&str> = keys.iter().map(String::as_str).collect();
                            self.waiting
                                .iter()
                                .filter(|(_, w)| w.session.as_deref().is_some_and(|s| sessions.contains(s)))
                                .map(|(id, _)| id.clone())
                                .collect()
                        }
                        // Missed announcements: any held message may be readable now.
                        None => self.all(),
                    };
                    self.try_decrypt(ids).await;
                }
                _ = check.tick() => {
                    if last_full_try.elapsed() >= RETRY_ALL_EVERY {
                        last_full_try = Instant::now();
                        self.try_decrypt(self.all()).await;
                    }
                    self.give_up_due().await;
                }
            }
        }
    }

    fn all(&self) -> Vec<MessageId> {
        self.waiting.keys().cloned().collect()
    }

    /// Watches `held` (what is watched already keeps its record); returns the new ids.
    fn add(&mut self, held: Vec<Undecryptable>) -> Vec<MessageId> {
        let mut added = Vec::new();
        for record in held {
            if self.waiting.contains_key(&record.id) {
                continue;
            }
            if self.waiting.len() >= MAX_WATCHED {
                // Only after a restart with more held than the bound (the inbound half
                // holds no more than it).
                tracing::warn!(room_id = %record.chat, event_id = %record.id,
                    "too many undecryptable messages held; this one stays in the journal \
                     and is tried again at the next start");
                continue;
            }
            let session = session_of(&record.payload);
            added.push(record.id.clone());
            self.waiting
                .insert(record.id.clone(), Waiting { record, session });
        }
        self.watched.record(&self.waiting);
        added
    }

    /// Tries to decrypt `ids`; what can be read goes to the core as messages, in one batch.
    async fn try_decrypt(&mut self, ids: Vec<MessageId>) {
        let mut batch = Batch::default();
        for id in ids {
            let Some(waiting) = self.waiting.get(&id) else {
                continue;
            };
            let Some(event) = self.decrypt(&waiting.record).await else {
                continue;
            };
            let chat = &waiting.record.chat;
            if let Some(incoming) = super::inbound::incoming_of(chat, event, &self.deps.bot) {
                batch.messages.push(incoming);
            }
            batch.decrypted.push(id);
        }
        if batch.decrypted.is_empty() {
            return;
        }
        let decrypted = batch.decrypted.clone();
        if let Err(error) = self.deps.inbound.deliver(&self.deps.surface, batch).await {
            // Kept: tried again (the journal does not take a message twice).
            tracing::warn!(%error, "cannot hand over messages that were decrypted at last");
            return;
        }
        let now = now_ms();
        for id in decrypted {
            if let Some(waiting) = self.waiting.remove(&id) {
                tracing::info!(room_id = %waiting.record.chat, event_id = %id,
                    waited_secs = now.saturating_sub(waiting.record.since_ms) / 1000,
                    given_up = waiting.record.given_up,
                    "decrypted a message whose key arrived late; answering it");
            }
        }
        self.watched.record(&self.waiting);
    }

    /// The event, decrypted; `None` while its key is still missing (or it cannot be read).
    async fn decrypt(&self, record: &Undecryptable) -> Option<TimelineEvent> {
        let room_id = <&RoomId>::try_from(record.chat.as_str()).ok()?;
        let room = self.deps.client.get_room(room_id)?;
        let raw =
            match Raw::<OriginalSyncRoomEncryptedEvent>::from_json_string(record.payload.clone()) {
                Ok(raw) => raw,
                Err(error) => {
                    tracing::warn!(room_id = %record.chat, event_id = %record.id, %error,
                    "a held undecryptable message is not valid JSON");
                    return None;
                }
            };
        match room.decrypt_event(&raw, None).await {
            Ok(event) if !matches!(event.kind, TimelineEventKind::UnableToDecrypt { .. }) => {
                Some(event)
            }
            Ok(_) => None,
            Err(error) => {
                tracing::debug!(room_id = %record.chat, event_id = %record.id, %error,
                    "cannot decrypt a held message yet");
                None
            }
        }
    }

    /// Gives up on what is past its grace period and tells each person once.
    async fn give_up_due(&mut self) {
        let grace_ms = u64::try_from(self.deps.grace.as_millis()).unwrap_or(u64::MAX);
        let decision = give_up(self.waiting.values().map(|w| &w.record), now_ms(), grace_ms);
        if decision.ids.is_empty() {
            return;
        }
        let batch = Batch {
            given_up: decision.ids.clone(),
            ..Batch::default()
        };
        if let Err(error) = self.deps.inbound.deliver(&self.deps.surface, batch).await {
            tracing::error!(%error, "cannot record giving up on undecryptable messages; \
                telling the people all the same");
        }
        for id in &decision.ids {
            if let Some(waiting) = self.waiting.get_mut(id) {
                waiting.record.given_up = true;
            }
        }
        tracing::warn!(
            messages = decision.ids.len(),
            people = decision.notices.len(),
            grace_secs = self.deps.grace.as_secs(),
            "messages still cannot be decrypted after matrix.undecryptable_grace_secs; telling \
             their senders (they stay held and are answered if their key arrives)"
        );
        for (chat, sender, anchor) in decision.notices {
            let surface = self.deps.surface.clone();
            tokio::spawn(async move {
                let key = SendKey::answer(&anchor, AnswerPart::Undecryptable);
                let to = ReplyTo {
                    message: anchor,
                    sender,
                };
                let notice = OutMessage::notice_to(to, texts::UNDECRYPTABLE, key);
                if let Err(error) = surface.send(&chat, notice).await {
                    tracing::warn!(room_id = %chat, %error,
                        "cannot tell a person that their message could not be decrypted");
                }
            });
        }
    }
}

async fn next_keys(keys: &mut Option<KeyStream>) -> Option<Option<Vec<String>>> {
    match keys {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

/// The Megolm session id of an encrypted event's JSON, if it names one.
fn session_of(payload: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    value
        .get("content")?
        .get("session_id")?
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_of_an_encrypted_event() {
        let table = [
            (
                r#"{"content":{"algorithm":"m.megolm.v1.aes-sha2","session_id":"abc"}}"#,
                Some("abc"),
            ),
            (r#"{"content":{"algorithm":"m.olm.v1"}}"#, None),
            (r#"{"content":{"session_id":7}}"#, None),
            ("not json", None),
        ];
        for (payload, session) in table {
            assert_eq!(session_of(payload).as_deref(), session, "{payload}");
        }
    }
}
