//! The sync actor: keeps the Matrix sync loop running.
//!
//! It drives our own `sync_once` loop (see [`super::sync`]) in a task and watches it: if
//! the loop fails, the actor fails and its supervisor restarts it with backoff; if the
//! access token is rejected, it says so in the log and asks the process to stop (exit code
//! 3), since no restart can fix that. The loop never waits on an agent: each response goes
//! to [`MatrixInbound`], which has the core journal its messages and queue them. Every
//! incarnation starts from the durable cursor (else the token start-up gave it), after
//! handling again a response the last one could not handle in full (kept in
//! [`PendingResponse`]).

use std::sync::Arc;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use actors::ChildCtx;
use matrix_sdk::Client;
use tokio::sync::watch;

use super::inbound::MatrixInbound;
use super::{run_sync_loop, PendingResponse, SyncHealth, SyncLoopSettings};
use crate::surface::{Stopper, EXIT_INVALID_CREDENTIALS};

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
    /// Hands sync responses to the core.
    pub inbound: MatrixInbound,
    /// Long-poll timeout and filter.
    pub settings: SyncLoopSettings,
    /// Where to start when the core has no cursor yet (`None`: a full sync).
    pub start: Option<String>,
    /// A response not handled in full yet (start-up's first one, or the last incarnation's),
    /// handled again before the next `/sync`.
    pub pending: PendingResponse,
    /// Becomes `true` at shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// Stops the process when the token is rejected.
    pub stopper: Stopper,
}

impl SyncActor {
    /// A fresh incarnation; it continues from the cursor stored with the core.
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
            let since = match deps.inbound.cursor() {
                Ok(Some(cursor)) => Some(cursor),
                Ok(None) => deps.start.clone(),
                Err(error) => {
                    tracing::error!(%error, "cannot read the sync cursor; starting where start-up left off");
                    deps.start.clone()
                }
            };
            let inbound = deps.inbound.clone();
            run_sync_loop(
                &deps.client,
                since,
                &deps.pending,
                &deps.settings,
                &deps.health,
                move |outcome, since| {
                    let inbound = inbound.clone();
                    async move {
                        inbound
                            .handle_sync(outcome.response, since, outcome.first)
                            .await
                    }
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
                act.deps.stopper.stop(
                    EXIT_INVALID_CREDENTIALS,
                    "the homeserver rejected the bot's access token: fix matrix.access_token / \
                     matrix.password (SURFACES__MATRIX__ACCESS_TOKEN / SURFACES__MATRIX__PASSWORD) \
                     or delete the session file in the data dir, then restart",
                );
                actix::ActorContext::stop(ctx);
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
