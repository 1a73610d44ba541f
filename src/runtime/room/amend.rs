//! The room actor's queue in motion: taking messages in, one turn at a time, and what an
//! edit or a withdrawal (Matrix: a redaction) of a waiting message does.
//!
//! Why this exists: the actor must keep receiving while a turn runs — an edit or a
//! redaction of a message waiting behind it can only be honoured then — so the turn runs as
//! a spawned future and the next message is taken from the [`super::queue`] when it ends.
//! The rules (see `docs/ARCHITECTURE.md`, "Edits and redactions"):
//! - an edit from the original's sender of their latest message still waiting replaces its
//!   text (in the journal too, so a restart answers the edited text); any other edit is
//!   ignored, with no reply (logged at debug);
//! - a redaction from the original's sender of a message still waiting withdraws it: it is
//!   marked done in the journal and never reaches the agent; any other is ignored;
//! - past `limits.room_queue_max` waiting messages, a new one is not taken: it is marked
//!   done (so nothing loops on it) and the chat is told once per burst;
//! - a message still waiting [`super::QUEUED_NOTICE_AFTER`] behind a running turn: its
//!   sender is told it is queued, with its position, at most once per turn.

use std::sync::Arc;

use actix::{ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message, WrapFuture};

use tracing::Instrument;

use super::queue::{Offered, Queued};
use super::{Chat, RoomActor, RoomDeps, UserMessage};
use crate::metrics::Refusal;
use crate::surface::{AnswerPart, MessageId, OutMessage, PersonId, ReplyTo, SendKey};
use crate::texts;

/// What a person did to one of their earlier messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Edited it to this text.
    Edit(String),
    /// Withdrew it (a redaction).
    Withdraw,
}

/// An edit or withdrawal of an earlier message of this chat.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Amend {
    /// The message changed.
    pub of: MessageId,
    /// Who asked (honoured only if they sent `of`).
    pub sender: PersonId,
    /// The edit or withdrawal event's own id (for the log).
    pub id: MessageId,
    /// What they did.
    pub change: Change,
}

impl RoomActor {
    /// Takes a message in: queued, or refused when the queue is full.
    pub(super) fn enqueue(&mut self, item: Queued, ctx: &mut Context<Self>) {
        self.touch();
        match self.queue.offer(item) {
            Offered::Taken if self.busy => {
                // Behind a running turn: if it runs long, the first person waiting hears
                // they wait. One timer per turn, not one per message: the context polls
                // every pending timer each time it wakes, so a timer per waiting message
                // cost ~12,000 instructions per message in the pipeline benchmark. None once
                // someone was told during this turn (once per turn).
                if self.waiting_notice.is_none() && self.told_waiting != Some(self.turns) {
                    let turn = self.turns;
                    let timer = ctx.run_later(super::QUEUED_NOTICE_AFTER, move |actor, ctx| {
                        actor.waiting_notice = None;
                        actor.tell_waiting(turn, ctx);
                    });
                    self.waiting_notice = Some(timer);
                }
            }
            Offered::Taken => self.pump(ctx),
            Offered::Duplicate(item) => {
                tracing::debug!(room_id = %self.chat.id, event_id = %item.id(), "already waiting");
            }
            Offered::Refused { notify, item } => {
                tracing::warn!(room_id = %self.chat.id, event_id = %item.id(),
                    sender = %item.sender(), waiting = self.queue.len(), notify,
                    "the chat's queue is full; not taking the message");
                self.deps.metrics.refused(Refusal::QueueFull);
                let (chat, deps) = (self.chat.clone(), self.deps.clone());
                let refusal = refuse(chat, deps, item, notify).in_current_span();
                ctx.spawn(refusal.into_actor(self));
            }
        }
    }

    /// Tells the sender of the next message waiting that it waits behind the turn `turn`,
    /// if that turn still runs, a message waits, and nobody was told during this turn.
    fn tell_waiting(&mut self, turn: u64, ctx: &mut Context<Self>) {
        if !self.busy || self.turns != turn || self.told_waiting == Some(turn) {
            return;
        }
        let Some(item) = self.queue.first() else {
            return;
        };
        let to = ReplyTo {
            message: MessageId::new(item.id()),
            sender: PersonId::new(item.sender()),
        };
        self.told_waiting = Some(turn);
        let _span = super::message_span(&self.chat, to.message.as_str()).entered();
        tracing::info!(room_id = %self.chat.id, event_id = %to.message,
            "the next message waits behind a long turn; telling its sender");
        let chat = self.chat.clone();
        let key = SendKey::answer(&to.message, AnswerPart::Queued);
        let text = texts::queued(1);
        ctx.spawn(
            async move {
                if let Err(error) = chat.send(OutMessage::notice_to(to, text, key)).await {
                    tracing::warn!(%error, "cannot tell a person their message waits");
                }
            }
            .in_current_span()
            .into_actor(self),
        );
    }

    /// Starts answering the next waiting message, unless one is being answered.
    pub(super) fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        if self.draining {
            // Stopping: the turn that ran is answered; the rest waits in the journal.
            ctx.stop();
            return;
        }
        let Some(next) = self.queue.pop() else {
            return;
        };
        self.busy = true;
        self.turns += 1;
        // Boxed where it is made: a turn's future is kilobytes, and each wrapper below moved
        // it whole (the system thread's memory copies fell by a fifth, `ops/bench/RESULTS.md`).
        let work = Box::pin(run(self.chat.clone(), self.deps.clone(), next));
        ctx.spawn(work.into_actor(self).map(|(), actor, ctx| {
            actor.busy = false;
            if let Some(timer) = actor.waiting_notice.take() {
                ctx.cancel_future(timer);
            }
            actor.touch();
            actor.pump(ctx);
        }));
    }
}

/// Answers one message taken from the queue, in its span ([`super::message_span`]; a file
/// has a span of its own, `file`, with the same `msg` field).
async fn run(chat: Chat, deps: Arc<RoomDeps>, item: Queued) {
    match item {
        Queued::Text(msg) => {
            let span = super::message_span(&chat, msg.id.as_str());
            super::process(chat, deps, msg).instrument(span).await
        }
        Queued::Resumed(entry) => {
            let span = super::message_span(&chat, &entry.event_id);
            super::resume_pending(chat, deps, entry)
                .instrument(span)
                .await
        }
        Queued::File(file) => super::attachments::receive_queued(chat, deps, file).await,
    }
}

/// A message not taken: marked done so it is never answered nor resumed; the chat is told
/// once per burst (replying to the first message refused).
async fn refuse(chat: Chat, deps: Arc<RoomDeps>, item: Queued, notify: bool) {
    let msg = UserMessage {
        id: MessageId::new(item.id()),
        sender: PersonId::new(item.sender()),
        display_name: None,
        body: String::new(),
        arrival: None,
    };
    if !matches!(item, Queued::File(_)) {
        super::finish(&deps, &msg).await;
    }
    if notify {
        let text = texts::queue_full(deps.queue_max);
        let notice = OutMessage::notice_to(
            msg.reply_to(),
            text,
            SendKey::answer(&msg.id, AnswerPart::Notice),
        );
        if let Err(error) = chat.send(notice).await {
            tracing::warn!(room_id = %chat.id, %error, "cannot tell the chat its queue is full");
        }
    }
}

impl Handler<Amend> for RoomActor {
    type Result = ();

    fn handle(&mut self, amend: Amend, ctx: &mut Context<Self>) {
        let _span = super::message_span(&self.chat, amend.of.as_str()).entered();
        let room_id = self.chat.id.clone();
        match amend.change {
            Change::Edit(text) => match self.queue.edit(&amend.of, &amend.sender, &text) {
                Ok(()) => {
                    tracing::info!(%room_id, event_id = %amend.of, edit = %amend.id,
                        "a waiting message was edited; answering the new text");
                    let journal = self.deps.journal.clone();
                    let of = amend.of;
                    ctx.spawn(
                        async move {
                            if let Err(error) = journal.amend(of.as_str(), &text).await {
                                tracing::error!(event_id = %of, %error,
                                    "cannot journal an edit; a restart would answer the old text");
                            }
                        }
                        .in_current_span()
                        .into_actor(self),
                    );
                }
                Err(why) => tracing::debug!(%room_id, event_id = %amend.of, edit = %amend.id,
                    sender = %amend.sender, ?why, "ignoring an edit"),
            },
            Change::Withdraw => match self.queue.withdraw(&amend.of, &amend.sender) {
                Ok(item) => {
                    tracing::info!(%room_id, event_id = %amend.of, redaction = %amend.id,
                        "a waiting message was withdrawn; it will not be answered");
                    let deps = self.deps.clone();
                    ctx.spawn(
                        async move {
                            if !matches!(item, Queued::File(_)) {
                                if let Err(error) = deps.journal.complete(item.id()).await {
                                    tracing::error!(event_id = %item.id(), %error,
                                        "cannot mark a withdrawn message done");
                                }
                            }
                        }
                        .in_current_span()
                        .into_actor(self),
                    );
                }
                Err(why) => tracing::debug!(%room_id, event_id = %amend.of,
                    redaction = %amend.id, sender = %amend.sender, ?why,
                    "ignoring a redaction"),
            },
        }
    }
}
