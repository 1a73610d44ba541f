//! The intake: where people's messages from every messenger enter the core.
//!
//! Why this exists: whatever the messenger, a message is handled the same way before any
//! actor sees it. The adapter hands over a [`Batch`] (the messages it read, in each chat's
//! order, and the cursor it read up to); the intake decides per message — a chat the bot
//! does not manage gets one explanation, a person the access policy does not allow is
//! ignored, a person past their rate (`[limits]`, [`crate::limits`]) is not taken (recorded
//! as done, told once per flood), `!cancel` is run at once beside the busy room actor
//! (bounded), files go to their chat's actor, edits and redactions go to their chat's actor
//! (which applies them to a message still waiting, or ignores them; they are never
//! journaled nor answered), text is journaled — and makes the whole batch durable with
//! **one flush** (the cursor in the same write, so it never moves past a message that is
//! not journaled).
//! Messages the adapter cannot read yet (end-to-end encrypted without their key) are held in
//! the journal in the same flush, and released when the adapter reads them at last
//! ([`crate::surface::undecryptable`]).
//! Only then do the messages reach their room actors, in order, and each chat gets a read
//! receipt for its latest message taken. Invites go to the
//! provisioner, once [`super::invites`] found them worth joining (the others are declined
//! beside it).

use std::sync::Arc;
use std::time::Instant;

use actors::ChildHandle;
use async_trait::async_trait;
use tracing::Instrument;

use super::directory::RoomDirectory;
use super::invites::{self, Decliner, Verdict};
use super::presence::{self, Taken, RECEIPT_AFTER};
use super::provisioner::{Invited, Provisioner};
use super::room::{Amend, Arrival, Change, Chat, Resume, RoomActor, UserFile, UserMessage};
use crate::access::Standing;
use crate::commands::{Command, Parsed};
use crate::config::AccessPolicy;
use crate::crash::{self, CrashPoint};
use crate::journal::{Accepted, Journal, Staging};
use crate::limits::{Admission, CancelGate, CancelRefusal, PersonLimiter};
use crate::metrics::{MessageOutcome, Refusal};
use crate::store::{Store, StoreError};
use crate::surface::{
    Batch, ChatId, DeliveryError, Inbound, Incoming, IncomingBody, Invite, MessageId, PersonId,
    Surface, Undecryptable,
};
use crate::texts;

/// How long a file message waits for its room actor to come back from a restart.
const FILE_REDELIVERY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// The intake. Cloning shares it.
#[derive(Clone)]
pub struct Intake {
    inner: Arc<Inner>,
}

struct Inner {
    rooms: RoomDirectory,
    provisioner: ChildHandle<Provisioner>,
    store: Store,
    access: AccessPolicy,
    journal: Journal,
    declines: Decliner,
    limits: IntakeLimits,
}

/// The limits the intake enforces (`[limits]`).
pub struct IntakeLimits {
    /// Messages per person.
    pub people: PersonLimiter,
    /// `!cancel` work in flight.
    pub cancels: CancelGate,
}

/// Where a message goes: its chat's active actor, or the chat to activate again (it was
/// passivated after the batch activated it).
enum Room {
    Active(ChildHandle<RoomActor>),
    Idle(Chat),
}

impl Room {
    fn of(chat: Chat, actor: Option<ChildHandle<RoomActor>>) -> Self {
        match actor {
            Some(actor) => Room::Active(actor),
            None => Room::Idle(chat),
        }
    }
}

/// One thing to do once the batch is durable, in the chat's order.
enum Delivery {
    Text(Room, UserMessage),
    File(Room, UserFile),
    Cancel(Chat, UserMessage),
    /// The person is past their rate: told once (this message is recorded as done).
    Limited(Chat, UserMessage),
    Amend(ChildHandle<RoomActor>, Amend),
}

impl Intake {
    /// An intake handing messages to `rooms`, invites to `provisioner`.
    pub fn new(
        rooms: RoomDirectory,
        provisioner: ChildHandle<Provisioner>,
        store: Store,
        access: AccessPolicy,
        journal: Journal,
        limits: IntakeLimits,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                rooms,
                provisioner,
                store,
                access,
                journal,
                limits,
                declines: Decliner::default(),
            }),
        }
    }

    /// Decides what to do with one message: journals (staged, not flushed) a text for its
    /// room actor, or returns the file / `!cancel` to hand over. `None`: nothing to do.
    fn stage(
        &self,
        surface: &Arc<dyn Surface>,
        message: Incoming,
        staging: &mut Staging<'_>,
    ) -> Option<Delivery> {
        if &message.sender == surface.bot() {
            return None;
        }
        let (chat, actor) = match self.inner.rooms.get(&message.chat) {
            Some((chat, actor)) => (chat, Some(actor)),
            // Activated before the batch was staged: passivated since only if this batch
            // took longer than the idle period. Taken all the same, and activated again.
            None => match self.inner.rooms.chat(&message.chat) {
                Ok(Some(chat)) => (chat, None),
                Ok(None) => {
                    self.unmanaged(surface, &message.chat, &message.sender);
                    return None;
                }
                Err(error) => {
                    tracing::error!(room_id = %message.chat, %error,
                        "cannot read the chat's record; not taking the message");
                    return None;
                }
            },
        };
        let standing = self.inner.access.standing(message.sender.as_str());
        if standing == Standing::Refused {
            tracing::info!(room_id = %message.chat, sender = %message.sender,
                "ignoring a message from a person the access policy does not allow");
            return None;
        }
        if let Some(limited) = self.limited(&chat, &message, standing) {
            return limited;
        }
        let body = match message.body {
            IncomingBody::Text(body) => body,
            // Not new messages: the room actor applies them to its queue, or ignores them.
            IncomingBody::Edit { of, text } => {
                // An idle chat has nothing waiting to amend.
                return Some(Delivery::Amend(
                    actor?,
                    Amend {
                        of,
                        sender: message.sender,
                        id: message.id,
                        change: Change::Edit(text),
                    },
                ));
            }
            IncomingBody::Withdraw { of } => {
                return Some(Delivery::Amend(
                    actor?,
                    Amend {
                        of,
                        sender: message.sender,
                        id: message.id,
                        change: Change::Withdraw,
                    },
                ))
            }
            IncomingBody::File(file) => {
                return Some(Delivery::File(
                    Room::of(chat, actor),
                    UserFile {
                        id: message.id,
                        sender: message.sender,
                        display_name: message.display_name,
                        file,
                    },
                ))
            }
        };
        let msg = UserMessage {
            id: message.id,
            sender: message.sender,
            display_name: message.display_name,
            body,
            arrival: Some(Arrival::now(message.origin_ts)),
        };
        if matches!(
            crate::commands::parse(&msg.body),
            Parsed::Command(Command::Cancel)
        ) {
            // Not queued behind the turn it cancels: handled at once.
            return Some(Delivery::Cancel(chat, msg));
        }
        match staging.add(
            message.chat.as_str(),
            msg.id.as_str(),
            msg.sender.as_str(),
            &msg.body,
        ) {
            Ok((Accepted::New, _)) => tracing::debug!("message journaled"),
            Ok((seen, _)) => {
                tracing::debug!(room_id = %message.chat, event_id = %msg.id, ?seen,
                    "message already journaled");
                return None;
            }
            Err(error) => {
                tracing::error!(room_id = %message.chat, event_id = %msg.id, %error,
                    "cannot journal a message; handling it without crash safety");
            }
        }
        Some(Delivery::Text(Room::of(chat, actor), msg))
    }

    /// Activates the idle chats `messages` are for (at once, each chat once).
    async fn activate(&self, surface: &Arc<dyn Surface>, messages: &[Incoming]) {
        let rooms = &self.inner.rooms;
        let mut idle = std::collections::HashSet::new();
        for message in messages {
            if &message.sender != surface.bot() && !rooms.is_active(&message.chat) {
                idle.insert(&message.chat);
            }
        }
        let activations = idle.into_iter().map(|chat| async move {
            match rooms.chat(chat) {
                Ok(Some(chat)) => {
                    if let Err(error) = rooms.activate(&chat, Resume::Nothing).await {
                        tracing::error!(room_id = %chat.id, %error, "cannot activate the chat's actor");
                    }
                }
                // Not managed: `stage` explains it to the chat.
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(room_id = %chat, %error, "cannot read the chat's record");
                }
            }
        });
        futures_util::future::join_all(activations).await;
    }

    /// Applies the person's rate (an admin has none): `None` takes the message; `Some` is
    /// what to do instead (the message is recorded as done, so no catch-up or restart brings
    /// it back).
    fn limited(
        &self,
        chat: &Chat,
        message: &Incoming,
        standing: Standing,
    ) -> Option<Option<Delivery>> {
        if standing == Standing::Admin {
            return None;
        }
        let sender = message.sender.as_str();
        let admission = self.inner.limits.people.admit(sender, Instant::now());
        if admission == Admission::Take {
            return None;
        }
        tracing::info!(room_id = %message.chat, event_id = %message.id, %sender,
            "not taking a message: the person is past limits.messages_per_minute");
        if let Err(error) = self.inner.journal.stage_done(message.id.as_str()) {
            tracing::warn!(%error, event_id = %message.id, "cannot record a refused message");
        }
        let metrics = &self.inner.rooms.deps().metrics;
        metrics.message(chat.surface.name(), MessageOutcome::Limited);
        metrics.refused(Refusal::RateLimited);
        if admission == Admission::Refuse {
            return Some(None);
        }
        let msg = UserMessage {
            id: message.id.clone(),
            sender: message.sender.clone(),
            display_name: message.display_name.clone(),
            body: String::new(),
            arrival: None,
        };
        Some(Some(Delivery::Limited(chat.clone(), msg)))
    }

    /// Hands a staged message over (after the journal's flush); called in the message's
    /// span, which the futures spawned here keep.
    fn deliver_one(&self, delivery: Delivery) {
        let span = tracing::Span::current();
        match delivery {
            Delivery::Text(Room::Active(actor), msg) => match actor.tell(msg) {
                Ok(()) => tracing::debug!("handed to the room actor"),
                // Journaled: the room's next incarnation resumes it when it starts.
                Err(error) => {
                    tracing::info!(%error, "room actor not running; its next incarnation resumes the message");
                }
            },
            // Journaled: the chat's actor, activated again, resumes it from the journal (in
            // order with whatever else of the chat is there).
            Delivery::Text(Room::Idle(chat), _) => {
                let rooms = self.inner.rooms.clone();
                let wake = async move {
                    if let Err(error) = rooms.activate(&chat, Resume::Scan).await {
                        tracing::error!(%error, "cannot activate the chat's actor; the message waits in the journal");
                    }
                };
                tokio::spawn(wake.instrument(span));
            }
            Delivery::File(Room::Idle(chat), msg) => {
                let rooms = self.inner.rooms.clone();
                let wake = async move {
                    let sent = match rooms.activate(&chat, Resume::Nothing).await {
                        Ok(actor) => actor
                            .send_redelivering(msg, FILE_REDELIVERY_DEADLINE)
                            .await
                            .map_err(|e| e.to_string()),
                        Err(error) => Err(error.to_string()),
                    };
                    if let Err(error) = sent {
                        tracing::error!(%error, "a file message could not reach its room actor");
                    }
                };
                tokio::spawn(wake.instrument(span));
            }
            Delivery::File(Room::Active(actor), msg) => {
                if actor.tell(msg.clone()).is_err() {
                    // The room actor is restarting: hand the file over when it is back.
                    let redeliver = async move {
                        if let Err(error) =
                            actor.send_redelivering(msg, FILE_REDELIVERY_DEADLINE).await
                        {
                            tracing::error!(%error, "a file message could not reach its room actor");
                        }
                    };
                    tokio::spawn(redeliver.instrument(span));
                }
            }
            Delivery::Amend(actor, amend) => {
                if let Err(error) = actor.tell(amend) {
                    // Its queue went with the old incarnation: nothing waits to amend.
                    tracing::debug!(%error, "room actor not running; ignoring an edit or redaction");
                }
            }
            Delivery::Cancel(chat, msg) => {
                let permit = match self.inner.limits.cancels.enter(chat.id.as_str()) {
                    Ok(permit) => permit,
                    Err(CancelRefusal::AlreadyCancelling) => {
                        // The one in flight answers for both.
                        tracing::debug!(room_id = %chat.id, "a !cancel is already in flight here");
                        return;
                    }
                    Err(CancelRefusal::Busy) => {
                        tracing::warn!(room_id = %chat.id,
                            "too many !cancel in flight (limits.max_concurrent_cancels)");
                        self.inner
                            .rooms
                            .deps()
                            .metrics
                            .refused(Refusal::CancelsBusy);
                        let notice = async move {
                            chat.notice(&msg, texts::limits::CANCEL_BUSY).await;
                        };
                        tokio::spawn(notice.instrument(span));
                        return;
                    }
                };
                let deps = self.inner.rooms.deps().clone();
                let cancel = async move {
                    super::commands::cancel_now(&deps, &chat, &msg).await;
                    drop(permit);
                };
                tokio::spawn(cancel.instrument(span));
            }
            Delivery::Limited(chat, msg) => {
                let rate = self.inner.limits.people.rate();
                let text = texts::limits::rate_limited(rate.burst, rate.per_minute);
                let notice = async move {
                    chat.notice(&msg, &text).await;
                };
                tokio::spawn(notice.instrument(span));
            }
        }
    }

    /// Stages what a batch says about messages the adapter cannot read yet (held, given up
    /// on, read at last), for the batch's flush. A failure is logged: the adapter keeps
    /// them in memory and tries again, and the person is told all the same.
    fn stage_undecryptable(&self, surface: &str, batch: &Batch) {
        let journal = &self.inner.journal;
        for message in &batch.undecryptable {
            match journal.stage_undecryptable(surface, message) {
                Ok(true) => tracing::info!(room_id = %message.chat, event_id = %message.id,
                    sender = %message.sender, "holding a message that cannot be decrypted yet"),
                Ok(false) => {}
                Err(error) => tracing::error!(room_id = %message.chat, event_id = %message.id,
                    %error, "cannot journal a message that cannot be decrypted yet"),
            }
        }
        for id in &batch.given_up {
            if let Err(error) = journal.stage_given_up(surface, id) {
                tracing::error!(event_id = %id, %error,
                    "cannot record giving up on an undecryptable message");
            }
        }
        for id in &batch.decrypted {
            if let Err(error) = journal.stage_decrypted(surface, id) {
                tracing::error!(event_id = %id, %error,
                    "cannot release a message that was decrypted at last");
            }
        }
    }

    /// A message in a chat the bot does not manage: not registered; a warning in the log
    /// and, once per chat, an explanation.
    fn unmanaged(&self, surface: &Arc<dyn Surface>, chat: &ChatId, sender: &PersonId) {
        tracing::warn!(room_id = %chat, %sender,
            "message in a chat the bot does not manage; not registering it");
        let store = self.inner.store.clone();
        let chat = Chat::new(surface.clone(), chat.clone());
        let sender = sender.clone();
        tokio::spawn(async move {
            match store.mark_unmanaged_notified(chat.id.as_str()).await {
                Ok(true) => {
                    // Someone with a Space (writing in their onboarding chat, say) is pointed
                    // there; anyone else is told how to start.
                    let space = match store.user(sender.as_str()) {
                        Ok(user) => user.and_then(|u| u.space_id),
                        Err(error) => {
                            tracing::warn!(%error, "cannot read the person's record");
                            None
                        }
                    };
                    let text = match space {
                        Some(space) => texts::unmanaged_room_has_space(&space),
                        None => texts::unmanaged_room(chat.surface.bot().as_str()),
                    };
                    chat.say(&text, None).await;
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "cannot record an unmanaged chat"),
            }
        });
    }
}

/// Read receipts for what was taken (journaled, or a file handed over), [`RECEIPT_AFTER`]
/// later, for what is not answered by then ([`presence::receipts_due`]), so people see it was
/// seen without a request per quickly answered message. The wait holds neither the intake
/// (its journal) nor the messenger: a runtime stopped meanwhile releases its store at once,
/// and sends no receipt.
fn mark_read(surface: &Arc<dyn Surface>, inner: &Arc<Inner>, taken: Vec<Taken>) {
    if taken.is_empty() {
        return;
    }
    let (surface, inner) = (Arc::downgrade(surface), Arc::downgrade(inner));
    let receipts = async move {
        tokio::time::sleep(RECEIPT_AFTER).await;
        let due = {
            let Some(inner) = inner.upgrade() else { return };
            let answered = |message: &MessageId| match inner.journal.is_done(message.as_str()) {
                Ok(done) => done,
                Err(error) => {
                    // Not answered is the safe reading: the receipt is only sent once more.
                    tracing::warn!(%error, event_id = %message, "cannot read the journal");
                    false
                }
            };
            presence::receipts_due(taken, answered)
        };
        let Some(surface) = surface.upgrade() else {
            return;
        };
        for (chat, id) in due {
            surface.mark_read(&chat, &id).await;
        }
    };
    tokio::spawn(receipts.in_current_span());
}

#[async_trait]
impl Inbound for Intake {
    fn is_managed(&self, chat: &ChatId) -> bool {
        self.inner.rooms.is_managed(chat)
    }

    fn is_handled(&self, message: &MessageId) -> bool {
        match self.inner.journal.is_known(message.as_str()) {
            Ok(known) => known,
            Err(error) => {
                // Not known is the safe answer: the journal deduplicates when it is accepted.
                tracing::warn!(%error, event_id = %message, "cannot read the journal");
                false
            }
        }
    }

    fn serves(&self, person: &PersonId) -> bool {
        self.inner.access.allows(person.as_str())
    }

    async fn deliver(&self, surface: &Arc<dyn Surface>, batch: Batch) -> Result<(), DeliveryError> {
        let inner = &self.inner;
        for message in &batch.answered {
            match inner.journal.stage_seen_answered(message.as_str()) {
                Ok(true) => {}
                Ok(false) => tracing::debug!(event_id = %message,
                    "a message shown answered is pending: its room finishes it"),
                Err(error) => {
                    tracing::warn!(%error, event_id = %message, "cannot record an answered message");
                }
            }
        }
        self.stage_undecryptable(surface.name(), &batch);
        // Before anything is staged: a chat's new actor starts with nothing to resume.
        self.activate(surface, &batch.messages).await;
        let mut deliveries = Vec::new();
        let mut taken = Vec::new();
        let mut staging = inner.journal.staging();
        for message in batch.messages {
            // `msg`: the message's id on every log line of its path (see `deliver_one`, the
            // room actor and the agent turn).
            let span = tracing::info_span!("event", room_id = %message.chat, msg = %message.id);
            let (chat, id) = (message.chat.clone(), message.id.clone());
            if let Some(delivery) = span.in_scope(|| self.stage(surface, message, &mut staging)) {
                let answered_in_chat = match delivery {
                    Delivery::Text(..) => Some(true),
                    Delivery::File(..) => Some(false),
                    _ => None,
                };
                if let Some(answered_in_chat) = answered_in_chat {
                    taken.push(Taken {
                        chat,
                        message: id,
                        answered_in_chat,
                    });
                }
                deliveries.push((span, delivery));
            }
        }
        let mut durable = staging.write();
        if let Some(cursor) = &batch.cursor {
            durable = durable.and(inner.store.set_cursor(surface.name(), cursor));
        }
        durable = durable.and(inner.journal.commit().await);
        if let Err(error) = &durable {
            tracing::error!(%error, "cannot journal the messages; handling them without crash safety");
        }
        if deliveries
            .iter()
            .any(|(_, d)| matches!(d, Delivery::Text(..)))
        {
            crash::point(CrashPoint::AfterJournal);
        }
        if durable.is_ok() {
            mark_read(surface, &self.inner, taken);
        }
        for (span, delivery) in deliveries {
            span.in_scope(|| self.deliver_one(delivery));
        }
        durable.map_err(DeliveryError::from)
    }

    fn cursor(&self, surface: &str) -> Result<Option<String>, StoreError> {
        self.inner.store.cursor(surface)
    }

    fn undecryptable(&self, surface: &str) -> Result<Vec<Undecryptable>, StoreError> {
        self.inner.journal.undecryptable(surface)
    }

    fn invited(&self, surface: &Arc<dyn Surface>, invite: Invite) {
        // Decided here: strangers' and group invites are declined off the provisioner's
        // serial path, so they never delay an allowed person's onboarding.
        if let Verdict::Decline(reason) = invites::decide(&self.inner.access, &invite) {
            self.inner.declines.decline(surface, invite, reason);
            return;
        }
        let invited = Invited {
            surface: surface.clone(),
            chat: invite.chat.clone(),
            inviter: invite.inviter,
            knock: invite.knock,
        };
        if let Err(error) = self.inner.provisioner.tell(invited) {
            tracing::error!(%error, room_id = %invite.chat, "cannot hand an invite to the provisioner");
        }
    }
}
