//! The sync actor: keeps the Matrix sync loop running.
//!
//! It drives our own `sync_once` loop (see `matrix::sync`) in a task and watches it: if
//! the loop fails, the actor fails and its supervisor restarts it with backoff; if the
//! access token is rejected, it says so in the log and stops the whole process, since no
//! restart can fix that. The loop never waits on an agent: matrix-sdk hands events to the
//! dispatcher, which only queues them.

use std::sync::Arc;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use actors::ChildCtx;
use matrix_sdk::Client;
use tokio::sync::watch;

use crate::matrix::{run_sync_loop, SyncHealth, SyncLoopSettings};

/// Exit code of the process when the homeserver rejects the bot's access token.
pub const EXIT_INVALID_TOKEN: i32 = 3;

/// The sync actor.
pub struct SyncActor {
    client: Client,
    health: Arc<SyncHealth>,
    shutdown: watch::Receiver<bool>,
    ctx: ChildCtx,
    task: Option<tokio::task::AbortHandle>,
}

impl SyncActor {
    /// A fresh incarnation; it continues from the sync token stored by matrix-sdk.
    pub fn new(
        client: Client,
        health: Arc<SyncHealth>,
        shutdown: watch::Receiver<bool>,
        ctx: ChildCtx,
    ) -> Self {
        Self {
            client,
            health,
            shutdown,
            ctx,
            task: None,
        }
    }
}

impl Actor for SyncActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let client = self.client.clone();
        let health = self.health.clone();
        let mut shutdown = self.shutdown.clone();
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            };
            run_sync_loop(
                &client,
                None,
                &SyncLoopSettings::default(),
                &health,
                |_| {},
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
