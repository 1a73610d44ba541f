//! The sync actor: keeps the Matrix sync loop running.
//!
//! It drives our own `sync_once` loop (see `matrix::sync`) in a task and watches it: if
//! the loop fails, the actor fails and its supervisor restarts it with backoff; if the
//! access token is rejected, it says so in the log and stops the whole process, since no
//! restart can fix that. The loop never waits on an agent: each response goes to the
//! dispatcher, which journals its messages and queues them. Every incarnation starts from
//! the dispatcher's durable cursor (else the token start-up gave it).

use std::sync::Arc;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use actors::ChildCtx;
use matrix_sdk::Client;
use tokio::sync::watch;

use super::dispatch::Dispatcher;
use crate::matrix::{run_sync_loop, SyncHealth, SyncLoopSettings};

/// Exit code of the process when the homeserver rejects the bot's access token.
pub const EXIT_INVALID_TOKEN: i32 = 3;

/// The sync actor.
pub struct SyncActor {
    deps: SyncDeps,
    ctx: ChildCtx,
    task: Option<tokio::task::AbortHandle>,
}

/// What every incarnation of the sync actor is built from.
#[derive(Clone)]
pub struct SyncDeps {
    /// The Matrix client.
    pub client: Client,
    /// Sync liveness, shared with the ops endpoint.
    pub health: Arc<SyncHealth>,
    /// Turns sync responses into actor messages.
    pub dispatcher: Dispatcher,
    /// Long-poll timeout and filter.
    pub settings: SyncLoopSettings,
    /// Where to start when the dispatcher has no cursor yet (`None`: a full sync).
    pub start: Option<String>,
    /// Becomes `true` at shutdown.
    pub shutdown: watch::Receiver<bool>,
}

impl SyncActor {
    /// A fresh incarnation; it continues from the dispatcher's cursor.
    pub fn new(deps: SyncDeps, ctx: ChildCtx) -> Self {
        Self {
            deps,
            ctx,
            task: None,
        }
    }
}

impl Actor for SyncActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let deps = self.deps.clone();
        let task = tokio::spawn(async move {
            let mut shutdown = deps.shutdown.clone();
            let stop = async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            };
            let since = match deps.dispatcher.cursor() {
                Ok(Some(cursor)) => Some(cursor),
                Ok(None) => deps.start.clone(),
                Err(error) => {
                    tracing::error!(%error, "cannot read the sync cursor; starting where start-up left off");
                    deps.start.clone()
                }
            };
            let dispatcher = deps.dispatcher.clone();
            run_sync_loop(
                &deps.client,
                since,
                &deps.settings,
                &deps.health,
                move |outcome, since| {
                    let dispatcher = dispatcher.clone();
                    async move { dispatcher.handle_sync(outcome.response, since, false).await }
                },
                stop,
            )
            .await
        });
        self.task = Some(task.abort_handle());
        ctx.spawn(task.into_actor(self).map(|result, act, ctx| match result {
            Ok(Ok(())) => actix::ActorContext::stop(ctx),
            Ok(Err(error)) if error.is_invalid_token() => {
                tracing::error!(%error, "sync stopped");
                tracing::error!(
                    "the homeserver rejected the bot's access token: fix matrix.access_token / \
                     matrix.password (SURFACES__MATRIX__ACCESS_TOKEN / SURFACES__MATRIX__PASSWORD) \
                     or delete the session file in the data dir, then restart"
                );
                actix::System::current().stop_with_code(EXIT_INVALID_TOKEN);
            }
            Ok(Err(error)) => act.ctx.fail(ctx, format!("sync loop failed: {error}")),
            Err(join) => act.ctx.fail(ctx, format!("sync task ended: {join}")),
        }));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
actors::supervised_actor!(SyncActor);
