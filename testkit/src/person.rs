//! A simulated human: a matrix-sdk client with E2EE, its own sqlite store in
//! a tempdir and its own background sync loop. Everything it receives is
//! recorded (decrypted) so tests can poll for it.
//!
//! It exists so that tests see the bot the way a user does, through a real Matrix client
//! with end-to-end encryption, rather than through the bot's internals.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use matrix_sdk::config::SyncSettings;
use matrix_sdk::event_handler::RawEvent;
use matrix_sdk::ruma::api::client::room::create_room::v3::{
    Request as CreateRoomRequest, RoomPreset,
};
use matrix_sdk::ruma::events::relation::{InReplyTo, Replacement, Reply};
use matrix_sdk::ruma::events::room::encrypted::OriginalSyncRoomEncryptedEvent;
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::{
    OriginalSyncRoomMessageEvent, Relation, RoomMessageEventContent,
    RoomMessageEventContentWithoutRelation,
};
use matrix_sdk::ruma::events::InitialStateEvent;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use matrix_sdk::{Client, Room, RoomMemberships, RoomState};
use serde_json::Value;
pub use surfaces::matrix::crypto::CollectStrategy;
use tokio::task::JoinHandle;

use crate::synapse::{Synapse, UserCreds};
use crate::wait::{try_wait_until, wait_until, POLL, WAIT};

/// Long-poll timeout of the background sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeline events per room in one sync of the person's client.
const PERSON_TIMELINE_LIMIT: u32 = 1000;
/// Events per `/messages` request of [`Person::history`].
const HISTORY_PAGE: u32 = 500;

/// An `m.room.message` as the person's client saw it (decrypted when it was
/// encrypted).
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub sender: OwnedUserId,
    /// `m.text`, `m.notice`, `m.emote`, ...
    pub msgtype: String,
    /// For an edit (`replaces` is set), the body of `m.new_content`.
    pub body: String,
    /// `formatted_body` when `format` is `org.matrix.custom.html` (of
    /// `m.new_content` for an edit).
    pub formatted_body: Option<String>,
    /// `m.relates_to.m.in_reply_to.event_id`.
    pub in_reply_to: Option<OwnedEventId>,
    /// Set for an edit (`rel_type: m.replace`): the edited event.
    pub replaces: Option<OwnedEventId>,
    /// Set for a thread message (`rel_type: m.thread`): the thread root.
    pub thread_root: Option<OwnedEventId>,
    /// Whether the event arrived encrypted (and was decrypted).
    pub was_encrypted: bool,
    /// The full (decrypted) `content`, for fields not extracted above.
    pub content: Value,
}

impl ReceivedMessage {
    /// Parses a (decrypted) `m.room.message` event as JSON.
    fn from_event_json(
        room_id: &RoomId,
        event: &Value,
        was_encrypted: bool,
    ) -> anyhow::Result<ReceivedMessage> {
        let content = event
            .get("content")
            .cloned()
            .ok_or_else(|| anyhow!("event without content: {event}"))?;
        let relates_to = content.get("m.relates_to");
        let rel_type = relates_to
            .and_then(|r| r.get("rel_type"))
            .and_then(Value::as_str);
        let related = relates_to
            .and_then(|r| r.get("event_id"))
            .and_then(Value::as_str)
            .map(|id| id.parse::<OwnedEventId>())
            .transpose()?;
        let in_reply_to = relates_to
            .and_then(|r| r.get("m.in_reply_to"))
            .and_then(|r| r.get("event_id"))
            .and_then(Value::as_str)
            .map(|id| id.parse::<OwnedEventId>())
            .transpose()?;
        let replaces = if rel_type == Some("m.replace") {
            related.clone()
        } else {
            None
        };
        let thread_root = if rel_type == Some("m.thread") {
            related
        } else {
            None
        };
        // For an edit, the text that counts is the new content.
        let text_source = match (&replaces, content.get("m.new_content")) {
            (Some(_), Some(new_content)) => new_content,
            _ => &content,
        };
        let string =
            |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let formatted_body =
            if string(text_source, "format").as_deref() == Some("org.matrix.custom.html") {
                string(text_source, "formatted_body")
            } else {
                None
            };
        Ok(ReceivedMessage {
            room_id: room_id.to_owned(),
            event_id: string(event, "event_id")
                .ok_or_else(|| anyhow!("event without event_id: {event}"))?
                .parse()?,
            sender: string(event, "sender")
                .ok_or_else(|| anyhow!("event without sender: {event}"))?
                .parse()?,
            msgtype: string(text_source, "msgtype").unwrap_or_default(),
            body: string(text_source, "body").unwrap_or_default(),
            formatted_body,
            in_reply_to,
            replaces,
            thread_root,
            was_encrypted,
            content,
        })
    }
}

/// A pending invite, as seen by [`Person::wait_for_invite`].
#[derive(Debug, Clone)]
pub struct InviteInfo {
    pub room_id: OwnedRoomId,
    pub inviter: Option<OwnedUserId>,
    pub is_direct: bool,
    pub is_space: bool,
    pub name: Option<String>,
}

/// An encrypted event we could not decrypt yet (retried while polling).
struct Undecrypted {
    room_id: OwnedRoomId,
    event_id: Option<String>,
    raw: Raw<OriginalSyncRoomEncryptedEvent>,
}

#[derive(Default)]
struct Inbox {
    messages: Vec<ReceivedMessage>,
    undecrypted: Vec<Undecrypted>,
}

impl Inbox {
    fn push(&mut self, message: ReceivedMessage) {
        if !self.messages.iter().any(|m| m.event_id == message.event_id) {
            self.messages.push(message);
        }
    }
}

#[derive(Default)]
struct SyncStatus {
    syncs: u64,
    last_error: Option<String>,
}

/// A simulated human. Dropping it stops its sync task.
pub struct Person {
    client: Client,
    creds: UserCreds,
    base_url: String,
    http: reqwest::Client,
    inbox: Arc<Mutex<Inbox>>,
    status: Arc<Mutex<SyncStatus>>,
    sync_task: JoinHandle<()>,
    _store: tempfile::TempDir,
}

impl Person {
    /// Logs in with the password (a new device with its own sqlite store and
    /// E2EE keys), does a first sync (which uploads the device keys), then
    /// keeps syncing in the background.
    pub async fn login(synapse: &Synapse, creds: &UserCreds) -> anyhow::Result<Person> {
        Person::login_sharing(synapse, creds, CollectStrategy::AllDevices).await
    }

    /// [`Person::login`] with a client that shares its room keys as `key_sharing` says:
    /// [`CollectStrategy::IdentityBasedStrategy`] is Element's "exclude insecure devices"
    /// (MSC4153), which gives no keys to a device its owner has not cross-signed.
    pub async fn login_sharing(
        synapse: &Synapse,
        creds: &UserCreds,
        key_sharing: CollectStrategy,
    ) -> anyhow::Result<Person> {
        Person::login_at(&synapse.base_url, creds, key_sharing).await
    }

    /// [`Person::login`] with a client that reaches the homeserver at `base_url` (e.g. a
    /// [`crate::key_hold::KeyHold`] in front of Synapse).
    pub async fn login_at(
        base_url: &str,
        creds: &UserCreds,
        key_sharing: CollectStrategy,
    ) -> anyhow::Result<Person> {
        let store = tempfile::Builder::new()
            .prefix(&format!("surfaces-person-{}-", creds.localpart))
            .tempdir()?;
        let client = crate::login::password_client_sharing(
            base_url,
            creds.user_id.as_str(),
            &creds.password,
            store.path(),
            &format!("e2e person {}", creds.localpart),
            key_sharing,
        )
        .await?;

        let inbox = Arc::new(Mutex::new(Inbox::default()));
        {
            let inbox = inbox.clone();
            client.add_event_handler(
                move |_event: OriginalSyncRoomMessageEvent,
                      room: Room,
                      raw: RawEvent,
                      encryption: Option<matrix_sdk::deserialized_responses::EncryptionInfo>| {
                    let inbox = inbox.clone();
                    async move {
                        record_message(&inbox, room.room_id(), raw.get(), encryption.is_some());
                    }
                },
            );
        }
        {
            let inbox = inbox.clone();
            client.add_event_handler(
                move |_event: OriginalSyncRoomEncryptedEvent, room: Room, raw: RawEvent| {
                    let inbox = inbox.clone();
                    async move {
                        let raw: Raw<OriginalSyncRoomEncryptedEvent> = Raw::from_json(raw.0);
                        let event_id = raw.get_field::<String>("event_id").ok().flatten();
                        inbox.lock().unwrap().undecrypted.push(Undecrypted {
                            room_id: room.room_id().to_owned(),
                            event_id,
                            raw,
                        });
                    }
                },
            );
        }

        // A generous timeline limit, so what a test waits for is not left in a gap of the
        // person's own syncs (the homeserver's default is 10 events per room).
        let mut filter = matrix_sdk::ruma::api::client::filter::FilterDefinition::default();
        filter.room.timeline.limit = Some(PERSON_TIMELINE_LIMIT.into());
        let settings = SyncSettings::default().timeout(SYNC_TIMEOUT).filter(
            matrix_sdk::ruma::api::client::sync::sync_events::v3::Filter::FilterDefinition(filter),
        );
        client
            .sync_once(settings.clone())
            .await
            .with_context(|| format!("first sync of {}", creds.user_id))?;
        let status = Arc::new(Mutex::new(SyncStatus {
            syncs: 1,
            last_error: None,
        }));
        let sync_task = tokio::spawn(sync_loop(client.clone(), settings, status.clone()));

        Ok(Person {
            client,
            creds: creds.clone(),
            base_url: base_url.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            inbox,
            status,
            sync_task,
            _store: store,
        })
    }

    pub fn user_id(&self) -> &UserId {
        &self.creds.user_id
    }

    /// The same person on another device (a second client logged in with the same
    /// password, with its own keys and store), e.g. a phone beside a desktop.
    pub async fn another_device(&self, synapse: &Synapse) -> anyhow::Result<Person> {
        Person::login(synapse, &self.creds).await
    }

    /// The matrix-sdk client, for anything the helpers below do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The access token of this person's (logged-in) device.
    pub fn access_token(&self) -> String {
        self.client.access_token().unwrap_or_default()
    }

    /// How many syncs completed, and the last sync error (if any).
    pub fn sync_status(&self) -> (u64, Option<String>) {
        let status = self.status.lock().unwrap();
        (status.syncs, status.last_error.clone())
    }

    /// The room as the local client knows it, waiting (up to [`WAIT`]) for
    /// sync to bring it in.
    pub async fn room(&self, room_id: &RoomId) -> anyhow::Result<Room> {
        wait_until(WAIT, POLL, || async { self.client.get_room(room_id) })
            .await
            .with_context(|| format!("{} never saw room {room_id}", self.user_id()))
    }

    /// Creates a private, encrypted, `is_direct` room and invites `other`.
    pub async fn create_dm(&self, other: &UserId) -> anyhow::Result<OwnedRoomId> {
        let room = self
            .client
            .create_dm(other)
            .await
            .with_context(|| format!("{} creating a DM with {other}", self.user_id()))?;
        Ok(room.room_id().to_owned())
    }

    /// Creates a private room, optionally encrypted and `is_direct`, and
    /// invites `invite`.
    pub async fn create_room(
        &self,
        name: Option<&str>,
        invite: &[&UserId],
        encrypted: bool,
        is_direct: bool,
    ) -> anyhow::Result<OwnedRoomId> {
        let mut request = CreateRoomRequest::new();
        request.name = name.map(str::to_owned);
        request.invite = invite.iter().map(|user| (*user).to_owned()).collect();
        request.is_direct = is_direct;
        request.preset = Some(RoomPreset::PrivateChat);
        if encrypted {
            request.initial_state = vec![InitialStateEvent::with_empty_state_key(
                RoomEncryptionEventContent::with_recommended_defaults(),
            )
            .to_raw_any()];
        }
        let room = self.client.create_room(request).await?;
        Ok(room.room_id().to_owned())
    }

    /// The pending invites, as the local client knows them.
    pub async fn invites(&self) -> Vec<InviteInfo> {
        let mut invites = Vec::new();
        for room in self.client.invited_rooms() {
            let inviter = room
                .invite_details()
                .await
                .ok()
                .map(|details| details.inviter_id);
            invites.push(InviteInfo {
                room_id: room.room_id().to_owned(),
                inviter,
                is_direct: room.is_direct().await.unwrap_or(false),
                is_space: room.is_space(),
                name: room.name(),
            });
        }
        invites
    }

    /// Waits for a pending invite matching `predicate`.
    pub async fn wait_for_invite(
        &self,
        predicate: impl Fn(&InviteInfo) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<OwnedRoomId> {
        let predicate = &predicate;
        wait_until(timeout, POLL, || async move {
            self.invites()
                .await
                .into_iter()
                .find(|invite| predicate(invite))
                .map(|invite| invite.room_id)
        })
        .await
        .with_context(|| {
            format!(
                "{} waiting for an invite{}",
                self.user_id(),
                self.diagnostics()
            )
        })
    }

    /// Waits for an invite from `inviter` and joins it.
    pub async fn accept_invite_from(
        &self,
        inviter: &UserId,
        timeout: Duration,
    ) -> anyhow::Result<OwnedRoomId> {
        let room_id = self
            .wait_for_invite(|invite| invite.inviter.as_deref() == Some(inviter), timeout)
            .await?;
        self.join(&room_id).await?;
        Ok(room_id)
    }

    /// Joins every pending invite until `done` says so (checked after each
    /// round); returns the rooms joined.
    pub async fn accept_all_invites_until(
        &self,
        done: impl Fn(&[OwnedRoomId]) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Vec<OwnedRoomId>> {
        let joined = Mutex::new(Vec::<OwnedRoomId>::new());
        let done = &done;
        let joined_ref = &joined;
        try_wait_until(timeout, POLL, || async move {
            for invite in self.invites().await {
                self.join(&invite.room_id).await?;
                joined_ref.lock().unwrap().push(invite.room_id);
            }
            let joined = joined_ref.lock().unwrap();
            Ok(done(&joined).then_some(()))
        })
        .await
        .with_context(|| format!("{} accepting invites{}", self.user_id(), self.diagnostics()))?;
        Ok(joined.into_inner().unwrap())
    }

    /// Joins a room (by id) and waits until the local client sees it joined.
    pub async fn join(&self, room_id: &RoomId) -> anyhow::Result<()> {
        self.client
            .join_room_by_id(room_id)
            .await
            .with_context(|| format!("{} joining {room_id}", self.user_id()))?;
        wait_until(WAIT, POLL, || async {
            self.client
                .get_room(room_id)
                .filter(|room| room.state() == RoomState::Joined)
                .map(|_| ())
        })
        .await
        .with_context(|| format!("{} never saw itself joined to {room_id}", self.user_id()))
    }

    /// Leaves a room.
    pub async fn leave(&self, room_id: &RoomId) -> anyhow::Result<()> {
        self.room(room_id).await?.leave().await?;
        Ok(())
    }

    /// Waits until the local client sees `user` joined to the room (what
    /// matters before sending in an encrypted room: room keys go to the
    /// members the sender knows).
    pub async fn wait_for_joined_member(
        &self,
        room_id: &RoomId,
        user: &UserId,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        wait_until(timeout, POLL, || async {
            let room = self.client.get_room(room_id)?;
            let member = room.get_member_no_sync(user).await.ok()??;
            (*member.membership() == matrix_sdk::ruma::events::room::member::MembershipState::Join)
                .then_some(())
        })
        .await
        .with_context(|| {
            format!(
                "{} waiting for {user} to join {room_id}{}",
                self.user_id(),
                self.diagnostics()
            )
        })
    }

    /// The joined members of a room, as the local client knows them.
    pub async fn joined_members(&self, room_id: &RoomId) -> anyhow::Result<Vec<OwnedUserId>> {
        let room = self.room(room_id).await?;
        Ok(room
            .members_no_sync(RoomMemberships::JOIN)
            .await?
            .into_iter()
            .map(|member| member.user_id().to_owned())
            .collect())
    }

    /// Sends a plain-text `m.text` message; returns its event id.
    pub async fn send_text(&self, room_id: &RoomId, body: &str) -> anyhow::Result<OwnedEventId> {
        self.send_content(room_id, RoomMessageEventContent::text_plain(body))
            .await
    }

    /// Sends a plain-text reply to `in_reply_to`; returns its event id.
    pub async fn send_reply(
        &self,
        room_id: &RoomId,
        in_reply_to: &matrix_sdk::ruma::EventId,
        body: &str,
    ) -> anyhow::Result<OwnedEventId> {
        let mut content = RoomMessageEventContent::text_plain(body);
        content.relates_to = Some(Relation::Reply(Reply::new(InReplyTo::new(
            in_reply_to.to_owned(),
        ))));
        self.send_content(room_id, content).await
    }

    /// Sends a reply to `in_reply_to` the way older clients do: `body` under a fallback
    /// quote of `quoted` (`> <@sender> quoted`, then a blank line); returns its event id.
    pub async fn send_reply_with_fallback(
        &self,
        room_id: &RoomId,
        in_reply_to: &matrix_sdk::ruma::EventId,
        quoted_sender: &UserId,
        quoted: &str,
        body: &str,
    ) -> anyhow::Result<OwnedEventId> {
        let fallback: Vec<String> = quoted
            .lines()
            .enumerate()
            .map(|(i, line)| match i {
                0 => format!("> <{quoted_sender}> {line}"),
                _ => format!("> {line}"),
            })
            .collect();
        let full = format!("{}\n\n{body}", fallback.join("\n"));
        let mut content = RoomMessageEventContent::text_plain(full);
        content.relates_to = Some(Relation::Reply(Reply::new(InReplyTo::new(
            in_reply_to.to_owned(),
        ))));
        self.send_content(room_id, content).await
    }

    /// Edits this person's message `original` to `new_body` (`m.replace`, with the `* `
    /// fallback body clients send); returns the edit's event id.
    pub async fn send_edit(
        &self,
        room_id: &RoomId,
        original: &matrix_sdk::ruma::EventId,
        new_body: &str,
    ) -> anyhow::Result<OwnedEventId> {
        let mut content = RoomMessageEventContent::text_plain(format!("* {new_body}"));
        content.relates_to = Some(Relation::Replacement(Replacement::new(
            original.to_owned(),
            RoomMessageEventContentWithoutRelation::text_plain(new_body),
        )));
        self.send_content(room_id, content).await
    }

    /// Redacts an event; returns the redaction's event id, or the homeserver's refusal.
    pub async fn redact(
        &self,
        room_id: &RoomId,
        event_id: &matrix_sdk::ruma::EventId,
    ) -> anyhow::Result<OwnedEventId> {
        let room = self.room(room_id).await?;
        let response = room
            .redact(event_id, None, None)
            .await
            .with_context(|| format!("{} redacting {event_id} in {room_id}", self.user_id()))?;
        Ok(response.event_id)
    }

    /// Invites `user` to a room.
    pub async fn invite(&self, room_id: &RoomId, user: &UserId) -> anyhow::Result<()> {
        self.room(room_id)
            .await?
            .invite_user_by_id(user)
            .await
            .with_context(|| format!("{} inviting {user} to {room_id}", self.user_id()))
    }

    /// Sends any `m.room.message` content; returns its event id.
    pub async fn send_content(
        &self,
        room_id: &RoomId,
        content: RoomMessageEventContent,
    ) -> anyhow::Result<OwnedEventId> {
        let room = self.room(room_id).await?;
        let response = room
            .send(content)
            .await
            .with_context(|| format!("{} sending to {room_id}", self.user_id()))?;
        Ok(response.response.event_id)
    }

    /// Every message received in the room so far, in arrival order.
    pub async fn messages(&self, room_id: &RoomId) -> Vec<ReceivedMessage> {
        self.retry_undecrypted().await;
        let inbox = self.inbox.lock().unwrap();
        inbox
            .messages
            .iter()
            .filter(|m| m.room_id == room_id)
            .cloned()
            .collect()
    }

    /// The ids of the room's encrypted events this device has received but cannot decrypt
    /// (after trying again), e.g. because the sender withheld the room key from it.
    pub async fn undecryptable(&self, room_id: &RoomId) -> Vec<String> {
        self.retry_undecrypted().await;
        let inbox = self.inbox.lock().unwrap();
        inbox
            .undecrypted
            .iter()
            .filter(|u| u.room_id == room_id)
            .filter_map(|u| u.event_id.clone())
            .collect()
    }

    /// The room's whole history of messages as the homeserver holds it, oldest first,
    /// paged back through `/messages` and decrypted: the ground truth, independent of
    /// what this person's own syncs happened to carry. Messages this device cannot decrypt
    /// (yet) are left out; [`Person::history_ids`] has every event.
    pub async fn history(&self, room_id: &RoomId) -> anyhow::Result<Vec<ReceivedMessage>> {
        let mut messages = Vec::new();
        for json in self.history_json(room_id).await? {
            if json.get("type").and_then(Value::as_str) == Some("m.room.message") {
                let was_encrypted = json.get("surfaces_was_encrypted") == Some(&Value::Bool(true));
                messages.push(ReceivedMessage::from_event_json(
                    room_id,
                    &json,
                    was_encrypted,
                )?);
            }
        }
        Ok(messages)
    }

    /// The ids of every event of the room's history, oldest first (decryptable or not).
    pub async fn history_ids(&self, room_id: &RoomId) -> anyhow::Result<Vec<OwnedEventId>> {
        Ok(self
            .history_json(room_id)
            .await?
            .iter()
            .filter_map(|json| json.get("event_id")?.as_str()?.parse().ok())
            .collect())
    }

    /// Every event of the room's history as JSON (decrypted where this device can),
    /// oldest first; decrypted ones carry `"surfaces_was_encrypted": true`.
    async fn history_json(&self, room_id: &RoomId) -> anyhow::Result<Vec<Value>> {
        let room = self.room(room_id).await?;
        let mut newest_first = Vec::new();
        let mut from: Option<String> = None;
        loop {
            let mut options = matrix_sdk::room::MessagesOptions::backward().from(from.as_deref());
            options.limit = HISTORY_PAGE.into();
            let page = room
                .messages(options)
                .await
                .with_context(|| format!("paging back through {room_id}"))?;
            let empty = page.chunk.is_empty();
            for event in &page.chunk {
                let mut json: Value = event.raw().deserialize_as()?;
                if event.encryption_info().is_some() {
                    json["surfaces_was_encrypted"] = Value::Bool(true);
                }
                newest_first.push(json);
            }
            match page.end {
                Some(end) if !empty => from = Some(end),
                _ => break,
            }
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    /// The messages received in the room from `sender`, in arrival order.
    pub async fn messages_from(&self, room_id: &RoomId, sender: &UserId) -> Vec<ReceivedMessage> {
        let mut messages = self.messages(room_id).await;
        messages.retain(|m| m.sender == sender);
        messages
    }

    /// Waits for the first message of the room (in arrival order, including
    /// those already received) matching `predicate`. Works in encrypted
    /// rooms: messages are recorded decrypted.
    pub async fn wait_for_message(
        &self,
        room_id: &RoomId,
        predicate: impl Fn(&ReceivedMessage) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<ReceivedMessage> {
        let predicate = &predicate;
        let found = wait_until(timeout, POLL, || async move {
            self.messages(room_id)
                .await
                .into_iter()
                .find(|m| predicate(m))
        })
        .await;
        match found {
            Ok(message) => Ok(message),
            Err(error) => {
                let seen: Vec<String> = self
                    .messages(room_id)
                    .await
                    .iter()
                    .map(|m| format!("  {} {} {:?}", m.event_id, m.sender, m.body))
                    .collect();
                Err(error).with_context(|| {
                    format!(
                        "{} waiting for a message in {room_id}; received there so far:\n{}{}",
                        self.user_id(),
                        if seen.is_empty() {
                            "  (nothing)".to_owned()
                        } else {
                            seen.join("\n")
                        },
                        self.diagnostics()
                    )
                })
            }
        }
    }

    /// Waits for a message from `sender` in the room whose body contains
    /// `needle`.
    pub async fn wait_for_text_from(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<ReceivedMessage> {
        self.wait_for_message(
            room_id,
            |m| m.sender == sender && m.body.contains(needle),
            timeout,
        )
        .await
    }

    /// `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
    /// with this person's token: `Ok(None)` on 404 (no such state event).
    pub async fn room_state_event(
        &self,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
    ) -> anyhow::Result<Option<Value>> {
        self.get_json(
            &["rooms", room_id.as_str(), "state", event_type, state_key],
            &format!("state {event_type}/{state_key} of {room_id}"),
        )
        .await
    }

    /// Waits until the state event exists and `predicate` accepts its content.
    pub async fn wait_for_state_event(
        &self,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
        predicate: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let predicate = &predicate;
        try_wait_until(timeout, POLL, || async move {
            Ok(self
                .room_state_event(room_id, event_type, state_key)
                .await?
                .filter(|content| predicate(content)))
        })
        .await
        .with_context(|| {
            format!(
                "{} waiting for state {event_type}/{state_key:?} in {room_id}",
                self.user_id()
            )
        })
    }

    /// `GET` of a client-server API path as this person: the JSON body of a success,
    /// `None` on 404.
    async fn get_json(&self, segments: &[&str], what: &str) -> anyhow::Result<Option<Value>> {
        let url = self.api_url(segments)?;
        let response = self
            .http
            .get(url)
            .bearer_auth(self.access_token())
            .send()
            .await?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("GET {what}: HTTP {status}: {body}");
        }
        Ok(Some(body))
    }

    /// `GET /_matrix/client/v3/rooms/{roomId}/state`: every current state
    /// event (full events, with `type`, `state_key` and `content`).
    pub async fn room_state(&self, room_id: &RoomId) -> anyhow::Result<Vec<Value>> {
        let what = format!("state of {room_id}");
        let body = self
            .get_json(&["rooms", room_id.as_str(), "state"], &what)
            .await?
            .with_context(|| format!("GET {what}: not found"))?;
        match body {
            Value::Array(events) => Ok(events),
            other => bail!("GET state of {room_id}: not an array: {other}"),
        }
    }

    /// The rooms this person is joined to, according to the server
    /// (`GET /_matrix/client/v3/joined_rooms`).
    pub async fn joined_rooms(&self) -> anyhow::Result<Vec<OwnedRoomId>> {
        let body = self
            .get_json(&["joined_rooms"], "joined_rooms")
            .await?
            .context("GET joined_rooms: not found")?;
        body["joined_rooms"]
            .as_array()
            .ok_or_else(|| anyhow!("GET joined_rooms: unexpected {body}"))?
            .iter()
            .map(|id| {
                id.as_str()
                    .ok_or_else(|| anyhow!("room id not a string: {id}"))?
                    .parse::<OwnedRoomId>()
                    .map_err(Into::into)
            })
            .collect()
    }

    /// Whether the room is encrypted (asks the server for the latest state).
    pub async fn is_encrypted(&self, room_id: &RoomId) -> anyhow::Result<bool> {
        let room = self.room(room_id).await?;
        Ok(room.latest_encryption_state().await?.is_encrypted())
    }

    /// `{base_url}/_matrix/client/v3/<segments...>`, each segment escaped.
    fn api_url(&self, segments: &[&str]) -> anyhow::Result<url::Url> {
        let mut url = url::Url::parse(&self.base_url)?;
        url.path_segments_mut()
            .map_err(|()| anyhow!("base url {} cannot have a path", self.base_url))?
            .clear()
            .extend(["_matrix", "client", "v3"])
            .extend(segments);
        Ok(url)
    }

    /// Retries decrypting the encrypted events that arrived before their keys.
    async fn retry_undecrypted(&self) {
        let pending = std::mem::take(&mut self.inbox.lock().unwrap().undecrypted);
        let mut still_pending = Vec::new();
        for item in pending {
            let Some(room) = self.client.get_room(&item.room_id) else {
                still_pending.push(item);
                continue;
            };
            match room.decrypt_event(&item.raw, None).await {
                Ok(event) if !event.kind.is_utd() => {
                    if let Ok(json) = event.raw().deserialize_as::<Value>() {
                        if json.get("type").and_then(Value::as_str) == Some("m.room.message") {
                            if let Ok(message) =
                                ReceivedMessage::from_event_json(&item.room_id, &json, true)
                            {
                                self.inbox.lock().unwrap().push(message);
                            }
                        }
                    }
                }
                _ => still_pending.push(item),
            }
        }
        self.inbox.lock().unwrap().undecrypted.extend(still_pending);
    }

    /// Sync and decryption state, appended to wait errors.
    fn diagnostics(&self) -> String {
        let (syncs, last_error) = self.sync_status();
        let inbox = self.inbox.lock().unwrap();
        let undecrypted: Vec<String> = inbox
            .undecrypted
            .iter()
            .map(|u| format!("{} in {}", u.event_id.as_deref().unwrap_or("?"), u.room_id))
            .collect();
        format!(
            "\n[{}: {syncs} syncs, last sync error: {}, undecryptable events: {}]",
            self.user_id(),
            last_error.as_deref().unwrap_or("none"),
            if undecrypted.is_empty() {
                "none".to_owned()
            } else {
                undecrypted.join(", ")
            }
        )
    }
}

impl Drop for Person {
    fn drop(&mut self) {
        self.sync_task.abort();
    }
}

fn record_message(inbox: &Mutex<Inbox>, room_id: &RoomId, raw_json: &str, was_encrypted: bool) {
    let parsed = serde_json::from_str::<Value>(raw_json)
        .map_err(anyhow::Error::from)
        .and_then(|json| ReceivedMessage::from_event_json(room_id, &json, was_encrypted));
    match parsed {
        Ok(message) => {
            let mut inbox = inbox.lock().unwrap();
            let event_id = message.event_id.as_str();
            inbox
                .undecrypted
                .retain(|u| u.event_id.as_deref() != Some(event_id));
            inbox.push(message);
        }
        Err(error) => eprintln!("e2e person: unparsable m.room.message in {room_id}: {error:#}"),
    }
}

/// Our own `sync_once` loop: no pause between syncs; on error, note it and
/// retry shortly (the homeserver may be restarting or gone at teardown).
async fn sync_loop(client: Client, settings: SyncSettings, status: Arc<Mutex<SyncStatus>>) {
    loop {
        match client.sync_once(settings.clone()).await {
            Ok(_) => {
                let mut status = status.lock().unwrap();
                status.syncs += 1;
            }
            Err(error) => {
                status.lock().unwrap().last_error = Some(format!("{error:#}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
