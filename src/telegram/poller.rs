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

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use actors::ChildCtx;

use super::api::TelegramError;
use super::intake::{Intake, Persist};
use super::surface::SURFACE_NAME;
use crate::retry::{RetryPolicy, Retryable};
use crate::surface::health::SyncHealth;
use crate::surface::{Inbound, Shutdown, Stopper, EXIT_INVALID_CREDENTIALS};

/// The most updates asked for at once (the Bot API's own maximum).
pub const MAX_UPDATES: u32 = 100;
/// The shortest time between two polls that found nothing: a Bot API server without long
/// polling (one that answers an empty poll at once) is asked at most this often.
pub const EMPTY_POLL_FLOOR: Duration = Duration::from_millis(100);

/// What every incarnation of the loop is built from.
#[derive(Clone)]
pub struct PollDeps {
    /// What takes the updates to the core.
    pub intake: Intake,
    /// The loop's liveness, for `/status` and `/readyz`.
    pub health: Arc<SyncHealth>,
    /// How long one long poll waits.
    pub poll_timeout: Duration,
    /// Becomes `true` at shutdown.
    pub shutdown: Shutdown,
    /// Stops the process when the token is rejected.
    pub stopper: Stopper,
}

/// Polls until shutdown; `Err` when the loop must be restarted (or the token was rejected).
pub async fn poll(deps: PollDeps) -> Result<(), TelegramError> {
    let mut shutdown = deps.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let offset = stored_offset(&deps.intake.inbound);
        let asked = tokio::time::Instant::now();
        let polled = tokio::select! {
            polled = deps.intake.surface.api().updates(offset, deps.poll_timeout, MAX_UPDATES) => polled,
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
        if let Err(error) = deps.intake.take(updates, Persist::UntilAccepted).await {
            tracing::error!(%error, "Telegram updates were not taken; asking for them again");
        }
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
