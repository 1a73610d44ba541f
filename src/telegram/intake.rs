//! Updates to the core: what the poller and the webhook receiver both do with the updates
//! Telegram hands them.
//!
//! Why this exists: however an update arrives (a `getUpdates` answer, a webhook call), it
//! means the same thing and must be taken the same way: decided ([`decide`]), the people
//! the access policy refuses told once, first contact onboarded, messages journaled with
//! the cursor past them ([`Inbound::deliver`]) — and only then acknowledged to Telegram (by
//! the next poll's offset, or by the webhook's `200`). One update that cannot be read is
//! logged and passed, never the rest lost. [`Persist`] is the one difference: the poller
//! waits out a core that refuses a batch (Telegram keeps the updates meanwhile), the
//! webhook answers Telegram at once with the error so Telegram delivers again later.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::api::Polled;
use super::ids::{self, Place};
use super::surface::TelegramSurface;
use super::updates::{decide, Decision, Mode};
use crate::surface::{
    AnswerPart, Batch, DeliveryError, Inbound, Invite, OutMessage, SendKey, Surface,
};
use crate::texts;

/// How long a message waits for its private chat to become a conversation after the
/// person was onboarded (topics off): onboarding there is one store write.
pub const ONBOARD_WAIT: Duration = Duration::from_secs(30);
/// How long a message in a topic that is not (yet) a conversation waits for it to become one
/// (`!new` records its topic moments after Telegram made it).
pub const TOPIC_SETTLE: Duration = Duration::from_secs(2);
/// How often those waits look.
const ONBOARD_POLL: Duration = Duration::from_millis(50);
/// How long the poller waits before handing a batch over again after the core refused it.
const REDELIVERY_DELAY: Duration = Duration::from_millis(200);

/// What to do when the core does not accept a batch (its journal cannot write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persist {
    /// Hand it over again until it is accepted (the poller: nothing is acknowledged
    /// meanwhile).
    UntilAccepted,
    /// Return the error (the webhook: Telegram is told, and delivers again later).
    Once,
}

/// What taking updates needs (cheap to clone).
#[derive(Clone)]
pub struct Intake {
    /// The adapter's outbound side (and its Bot API).
    pub surface: Arc<TelegramSurface>,
    /// The core.
    pub inbound: Arc<dyn Inbound>,
    /// The bot's own user id.
    pub bot_id: u64,
    /// People told they are not allowed (once per process each).
    pub refused: Arc<Mutex<HashSet<u64>>>,
}

impl Intake {
    /// Hands `updates` to the core, in order: journaled (with the cursor past them) when
    /// this returns `Ok`. `persist` says whether a refusal of the core is waited out or
    /// returned at once.
    pub async fn take(&self, updates: Vec<Polled>, persist: Persist) -> Result<(), DeliveryError> {
        let deps = self;
        let surface: Arc<dyn Surface> = self.surface.clone();
        let surface = &surface;
        let mode = deps.surface.mode();
        let mut batch = Batch::default();
        for polled in updates {
            let next = polled.update_id().map(|id| i64::from(id) + 1);
            let update = match polled {
                Polled::Update(update) => update,
                Polled::Unreadable { update_id, error } => {
                    tracing::error!(?update_id, %error, "skipping a Telegram update that cannot be read");
                    if let Some(next) = next {
                        batch.cursor = Some(next.to_string());
                    }
                    continue;
                }
            };
            match decide(&update, mode, deps.bot_id) {
                Decision::Message(message) => {
                    let person = message.sender.clone();
                    if !deps.inbound.serves(&person) {
                        deps.refuse(surface, ids::parse_chat(&message.chat), &person)
                            .await;
                    } else if mode == Mode::Single && !deps.inbound.is_managed(&message.chat) {
                        // The first message of someone new: onboard them, then take it.
                        deps.hand_over(surface, &mut batch, persist).await?;
                        deps.inbound.invited(
                            surface,
                            Invite {
                                chat: message.chat.clone(),
                                inviter: person,
                                direct: true,
                                knock: Some(message.id.clone()),
                            },
                        );
                        if deps.wait_managed(&message.chat, ONBOARD_WAIT).await {
                            batch.messages.push(message);
                        } else {
                            tracing::warn!(chat = %message.chat, "the person was not onboarded in time; \
                                their first message is not taken");
                        }
                    } else if mode == Mode::Topics && !deps.inbound.is_managed(&message.chat) {
                        // A topic that is not a conversation (one the person made, or one `!new`
                        // is still making): give it a moment, else point at the conversations.
                        deps.hand_over(surface, &mut batch, persist).await?;
                        if deps.wait_managed(&message.chat, TOPIC_SETTLE).await {
                            batch.messages.push(message);
                        } else if let Some(place) = ids::parse_chat(&message.chat) {
                            deps.inbound.invited(
                                surface,
                                Invite {
                                    chat: ids::chat_id(Place::chat(place.chat)),
                                    inviter: person,
                                    direct: true,
                                    knock: Some(message.id.clone()),
                                },
                            );
                        }
                    } else {
                        batch.messages.push(message);
                    }
                }
                Decision::Home { place, person } => {
                    if deps.inbound.serves(&person) {
                        deps.hand_over(surface, &mut batch, persist).await?;
                        deps.inbound.invited(
                            surface,
                            Invite {
                                chat: ids::chat_id(place),
                                inviter: person,
                                direct: true,
                                knock: Some(ids::message_id(
                                    place.chat,
                                    update_message_id(&update),
                                )),
                            },
                        );
                    } else {
                        deps.refuse(surface, Some(place), &person).await;
                    }
                }
                Decision::Unsupported { place } => {
                    let id = ids::message_id(place.chat, update_message_id(&update));
                    let notice = OutMessage::notice(
                        texts::TELEGRAM_UNSUPPORTED_MESSAGE,
                        Some(SendKey::answer(&id, AnswerPart::Notice)),
                    );
                    if let Err(error) = surface.send(&ids::chat_id(place), notice).await {
                        tracing::warn!(%error, "cannot tell a person their message kind is not supported");
                    }
                }
                Decision::Ignore(reason) => {
                    tracing::debug!(
                        update_id = update.update_id,
                        reason,
                        "ignoring a Telegram update"
                    );
                }
            }
            if let Some(next) = next {
                batch.cursor = Some(next.to_string());
            }
        }
        deps.hand_over(surface, &mut batch, persist).await?;
        Ok(())
    }

    /// Tells a person the bot is not theirs to use (once per process), and the operator how
    /// to let them in.
    async fn refuse(
        &self,
        surface: &Arc<dyn Surface>,
        place: Option<Place>,
        person: &crate::surface::PersonId,
    ) {
        let Some(user) = ids::parse_person(person) else {
            return;
        };
        if !self.refused.lock().insert(user) {
            return;
        }
        tracing::warn!(
            telegram_user = user,
            "a Telegram user the access policy does not allow wrote \
            to the bot; to let them in, add {user} to telegram.allowed_users"
        );
        if let Some(place) = place {
            let chat = ids::chat_id(Place::chat(place.chat));
            if let Err(error) = surface
                .send(
                    &chat,
                    OutMessage::notice(texts::telegram_not_allowed(user), None),
                )
                .await
            {
                tracing::warn!(%error, "cannot tell a Telegram user they are not allowed");
            }
        }
    }

    /// Hands what `batch` holds to the core: durably accepted when this returns `Ok`.
    async fn hand_over(
        &self,
        surface: &Arc<dyn Surface>,
        batch: &mut Batch,
        persist: Persist,
    ) -> Result<(), DeliveryError> {
        if batch.messages.is_empty() && batch.cursor.is_none() {
            return Ok(());
        }
        let batch = std::mem::take(batch);
        loop {
            match self.inbound.deliver(surface, batch.clone()).await {
                Ok(()) => return Ok(()),
                Err(error) if persist == Persist::Once => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, "the core did not accept Telegram messages; \
                        handing them over again");
                    tokio::time::sleep(REDELIVERY_DELAY).await;
                }
            }
        }
    }

    /// Waits until `chat` is a conversation of the core (onboarding done), up to `bound`.
    async fn wait_managed(&self, chat: &crate::surface::ChatId, bound: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + bound;
        while tokio::time::Instant::now() < deadline {
            if self.inbound.is_managed(chat) {
                return true;
            }
            tokio::time::sleep(ONBOARD_POLL).await;
        }
        self.inbound.is_managed(chat)
    }
}

fn update_message_id(update: &frankenstein::updates::Update) -> i32 {
    match &update.content {
        frankenstein::updates::UpdateContent::Message(m)
        | frankenstein::updates::UpdateContent::EditedMessage(m) => m.message_id,
        _ => 0,
    }
}
