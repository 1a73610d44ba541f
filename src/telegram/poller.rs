//! The polling loop: Telegram's updates handed to the core, the offset acknowledged only
//! after they are journaled.
//!
//! Why this exists: the Bot API keeps every update until a later `getUpdates` names an
//! offset past it. The loop asks from the offset stored with the core's journal
//! ([`Inbound::cursor`]), hands each batch to the core, which journals the messages and the
//! new offset in one durable write, and only then asks past them. A crash anywhere before
//! that write reads the same updates again; the core takes a message it already journaled
//! once. The loop runs in a task watched by a supervised actor ([`PollActor`]): it fails
//! on an error, its supervisor restarts it with backoff, and a rejected token stops the
//! process (exit code 3), as on Matrix.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use actors::ChildCtx;
use parking_lot::Mutex;

use super::api::TelegramError;
use super::ids::{self, Place};
use super::surface::{TelegramSurface, SURFACE_NAME};
use super::updates::{decide, Decision, Mode};
use crate::retry::{RetryPolicy, Retryable};
use crate::surface::health::SyncHealth;
use crate::surface::{
    AnswerPart, Batch, Inbound, Invite, OutMessage, SendKey, Shutdown, Stopper, Surface,
    EXIT_INVALID_CREDENTIALS,
};
use crate::texts;

/// The most updates asked for at once (the Bot API's own maximum).
pub const MAX_UPDATES: u32 = 100;
/// How long a message waits for its private chat to become a conversation after the
/// person was onboarded (topics off): onboarding there is one store write.
pub const ONBOARD_WAIT: Duration = Duration::from_secs(30);
/// How long a message in a topic that is not (yet) a conversation waits for it to become one
/// (`!new` records its topic moments after Telegram made it).
pub const TOPIC_SETTLE: Duration = Duration::from_secs(2);
/// How often those waits look.
const ONBOARD_POLL: Duration = Duration::from_millis(50);
/// The shortest time between two polls that found nothing: a Bot API server without long
/// polling (one that answers an empty poll at once) is asked at most this often.
pub const EMPTY_POLL_FLOOR: Duration = Duration::from_millis(100);
/// How long the loop waits before handing a batch over again after the core refused it.
const REDELIVERY_DELAY: Duration = Duration::from_millis(200);

/// What every incarnation of the loop is built from.
#[derive(Clone)]
pub struct PollDeps {
    /// The adapter's outbound side (and its Bot API).
    pub surface: Arc<TelegramSurface>,
    /// The core.
    pub inbound: Arc<dyn Inbound>,
    /// The loop's liveness, for `/status` and `/readyz`.
    pub health: Arc<SyncHealth>,
    /// The bot's own user id.
    pub bot_id: u64,
    /// How long one long poll waits.
    pub poll_timeout: Duration,
    /// Becomes `true` at shutdown.
    pub shutdown: Shutdown,
    /// Stops the process when the token is rejected.
    pub stopper: Stopper,
    /// People told they are not allowed (once per process each).
    pub refused: Arc<Mutex<HashSet<u64>>>,
}

/// Polls until shutdown; `Err` when the loop must be restarted (or the token was rejected).
pub async fn poll(deps: PollDeps) -> Result<(), TelegramError> {
    let surface: Arc<dyn Surface> = deps.surface.clone();
    let mut shutdown = deps.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let offset = stored_offset(&deps.inbound);
        let asked = tokio::time::Instant::now();
        let polled = tokio::select! {
            polled = deps.surface.api().updates(offset, deps.poll_timeout, MAX_UPDATES) => polled,
            _ = shutdown.changed() => return Ok(()),
        };
        let updates = match polled {
            Ok(updates) => updates,
            Err(error) if error.is_unauthorized() => return Err(error),
            Err(error) => {
                let failures = deps.health.record_failure();
                let wait = RetryPolicy::SYNC
                    .delay(failures, error.retry_kind(), fastrand::f64())
                    .unwrap_or(Duration::from_secs(1));
                tracing::warn!(%error, failures, wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "polling Telegram failed; trying again");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                continue;
            }
        };
        deps.health.record_success();
        if updates.is_empty() {
            tokio::select! {
                () = tokio::time::sleep_until(asked + EMPTY_POLL_FLOOR) => {}
                _ = shutdown.changed() => return Ok(()),
            }
            continue;
        }
        handle(&deps, &surface, updates).await;
    }
}

/// The offset the core stored with its last batch (0: from whatever Telegram still holds).
fn stored_offset(inbound: &Arc<dyn Inbound>) -> i64 {
    match inbound.cursor(SURFACE_NAME) {
        Ok(Some(cursor)) => cursor.parse().unwrap_or_else(|_| {
            tracing::error!(%cursor, "the stored Telegram offset is not a number; reading from \
                what Telegram still holds");
            0
        }),
        Ok(None) => 0,
        Err(error) => {
            tracing::error!(%error, "cannot read the stored Telegram offset; reading from what \
                Telegram still holds (messages already journaled are not taken twice)");
            0
        }
    }
}

/// Hands one poll's updates to the core, in order.
async fn handle(deps: &PollDeps, surface: &Arc<dyn Surface>, updates: Vec<super::api::Polled>) {
    let mode = deps.surface.mode();
    let mut batch = Batch::default();
    for polled in updates {
        let next = polled.update_id().map(|id| i64::from(id) + 1);
        let update = match polled {
            super::api::Polled::Update(update) => update,
            super::api::Polled::Unreadable { update_id, error } => {
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
                    refuse(deps, surface, ids::parse_chat(&message.chat), &person).await;
                } else if mode == Mode::Single && !deps.inbound.is_managed(&message.chat) {
                    // The first message of someone new: onboard them, then take it.
                    hand_over(deps, surface, &mut batch).await;
                    deps.inbound.invited(
                        surface,
                        Invite {
                            chat: message.chat.clone(),
                            inviter: person,
                            direct: true,
                            knock: Some(message.id.clone()),
                        },
                    );
                    if wait_managed(deps, &message.chat, ONBOARD_WAIT).await {
                        batch.messages.push(message);
                    } else {
                        tracing::warn!(chat = %message.chat, "the person was not onboarded in time; \
                            their first message is not taken");
                    }
                } else if mode == Mode::Topics && !deps.inbound.is_managed(&message.chat) {
                    // A topic that is not a conversation (one the person made, or one `!new`
                    // is still making): give it a moment, else point at the conversations.
                    hand_over(deps, surface, &mut batch).await;
                    if wait_managed(deps, &message.chat, TOPIC_SETTLE).await {
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
                    hand_over(deps, surface, &mut batch).await;
                    deps.inbound.invited(
                        surface,
                        Invite {
                            chat: ids::chat_id(place),
                            inviter: person,
                            direct: true,
                            knock: Some(ids::message_id(place.chat, update_message_id(&update))),
                        },
                    );
                } else {
                    refuse(deps, surface, Some(place), &person).await;
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
    hand_over(deps, surface, &mut batch).await;
}

fn update_message_id(update: &frankenstein::updates::Update) -> i32 {
    match &update.content {
        frankenstein::updates::UpdateContent::Message(m)
        | frankenstein::updates::UpdateContent::EditedMessage(m) => m.message_id,
        _ => 0,
    }
}

/// Tells a person the bot is not theirs to use (once per process), and the operator how to
/// let them in.
async fn refuse(
    deps: &PollDeps,
    surface: &Arc<dyn Surface>,
    place: Option<Place>,
    person: &crate::surface::PersonId,
) {
    let Some(user) = ids::parse_person(person) else {
        return;
    };
    if !deps.refused.lock().insert(user) {
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

/// Hands what `batch` holds to the core until it is accepted durably.
async fn hand_over(deps: &PollDeps, surface: &Arc<dyn Surface>, batch: &mut Batch) {
    if batch.messages.is_empty() && batch.cursor.is_none() {
        return;
    }
    let batch = std::mem::take(batch);
    while let Err(error) = deps.inbound.deliver(surface, batch.clone()).await {
        tracing::warn!(%error, "the core did not accept Telegram messages; handing them over again");
        tokio::time::sleep(REDELIVERY_DELAY).await;
    }
}

/// Waits until `chat` is a conversation of the core (onboarding done), up to `bound`.
async fn wait_managed(deps: &PollDeps, chat: &crate::surface::ChatId, bound: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + bound;
    while tokio::time::Instant::now() < deadline {
        if deps.inbound.is_managed(chat) {
            return true;
        }
        tokio::time::sleep(ONBOARD_POLL).await;
    }
    deps.inbound.is_managed(chat)
}

/// The supervised actor watching the polling loop.
pub struct PollActor {
    deps: PollDeps,
    ctx: ChildCtx,
    task: Option<tokio::task::AbortHandle>,
}

impl PollActor {
    /// A fresh incarnation; it continues from the offset stored with the core.
    pub fn new(deps: PollDeps, ctx: ChildCtx) -> Self {
        Self {
            deps,
            ctx,
            task: None,
        }
    }
}

impl Actor for PollActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let task = tokio::spawn(poll(self.deps.clone()));
        self.task = Some(task.abort_handle());
        ctx.spawn(task.into_actor(self).map(|result, act, ctx| {
            match result {
                Ok(Ok(())) => actix::ActorContext::stop(ctx),
                Ok(Err(error)) if error.is_unauthorized() => {
                    tracing::error!(%error, "Telegram polling stopped");
                    act.deps.stopper.stop(
                        EXIT_INVALID_CREDENTIALS,
                        "the Bot API rejected the bot's token: fix telegram.token \
                     (SURFACES__TELEGRAM__TOKEN), then restart",
                    );
                    actix::ActorContext::stop(ctx);
                }
                Ok(Err(error)) => act
                    .ctx
                    .fail(ctx, format!("Telegram polling failed: {error}")),
                Err(join) => act
                    .ctx
                    .fail(ctx, format!("Telegram polling task ended: {join}")),
            }
        }));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
actors::supervised_actor!(PollActor);
