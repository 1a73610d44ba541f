//! The inbound side of the in-memory messenger: the world's log delivered to the core.
//!
//! Why this file exists: a real adapter reads its messenger in batches from a cursor it
//! stores with the core, reports on restart which messages were already answered, hands
//! invites to the provisioner and stops the process when its credentials are revoked. This
//! one does the same over [`World`]'s log, so that restarts, catch-up and exit codes are
//! tested in-process.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use surfaces::surface::health::SyncHealth;
use surfaces::surface::{
    Batch, Connector, Inbound, Shutdown, Stopper, Surface, SurfaceError, EXIT_INVALID_CREDENTIALS,
};

use super::world::{Event, World};

/// The most messages delivered in one batch (one durable write in the core).
pub const MAX_BATCH: usize = 1000;
/// How long the live loop idles before it reports itself healthy again.
const IDLE_TICK: Duration = Duration::from_millis(500);
/// How long it waits before delivering a batch again after the core failed to accept it.
const REDELIVERY_DELAY: Duration = Duration::from_millis(100);

/// The in-memory messenger's lifecycle.
pub struct MemoryConnector {
    world: World,
    surface: Arc<dyn Surface>,
    health: Arc<SyncHealth>,
}

impl MemoryConnector {
    pub(super) fn new(world: World) -> Self {
        let surface: Arc<dyn Surface> = Arc::new(world.surface());
        Self {
            world,
            surface,
            health: SyncHealth::new(),
        }
    }
}

#[async_trait]
impl Connector for MemoryConnector {
    fn surface(&self) -> Arc<dyn Surface> {
        self.surface.clone()
    }

    fn health(&self) -> Arc<SyncHealth> {
        self.health.clone()
    }

    async fn prepare(&mut self, _inbound: Arc<dyn Inbound>) -> Result<(), SurfaceError> {
        self.world.inner.state.lock().check_credentials()?;
        self.health.record_success();
        Ok(())
    }

    async fn go_live(
        self: Box<Self>,
        inbound: Arc<dyn Inbound>,
        _supervisor: actors::SupervisorHandle,
        stopper: Stopper,
        shutdown: Shutdown,
    ) -> Result<(), SurfaceError> {
        let from = match inbound.cursor(self.surface.name()) {
            Ok(cursor) => cursor.and_then(|c| c.parse::<usize>().ok()).unwrap_or(0),
            Err(error) => {
                return Err(SurfaceError::failed(
                    "reading the cursor",
                    surfaces::retry::RetryKind::Permanent,
                    error,
                ))
            }
        };
        // What was logged before going live is catch-up: answered messages are reported.
        let caught_up_to = *self.world.inner.logged.borrow();
        tokio::spawn(live_loop(
            *self,
            inbound,
            stopper,
            shutdown,
            from,
            caught_up_to,
        ));
        Ok(())
    }
}

/// Delivers the log from `position` on until shutdown.
async fn live_loop(
    connector: MemoryConnector,
    inbound: Arc<dyn Inbound>,
    stopper: Stopper,
    mut shutdown: Shutdown,
    mut position: usize,
    caught_up_to: usize,
) {
    let world = connector.world;
    let surface = connector.surface;
    let mut logged = world.inner.logged.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if world.inner.state.lock().check_credentials().is_err() {
            stopper.stop(
                EXIT_INVALID_CREDENTIALS,
                "the memory messenger revoked the bot's credentials",
            );
            return;
        }
        let events = world.events_from(position, MAX_BATCH);
        if events.is_empty() {
            tokio::select! {
                _ = logged.changed() => {}
                _ = shutdown.changed() => {}
                () = tokio::time::sleep(IDLE_TICK) => {}
            }
            connector.health.record_success();
            continue;
        }
        let mut batch = Batch::default();
        for event in events {
            position += 1;
            match event {
                Event::Message(message) => {
                    if position <= caught_up_to && !inbound.is_handled(&message.id) {
                        let answered = world
                            .answers_to(&message.chat, &message.id)
                            .iter()
                            .any(|p| !p.is_notice());
                        if answered {
                            batch.answered.push(message.id);
                            continue;
                        }
                    }
                    batch.messages.push(message);
                }
                Event::Invite(invite) => {
                    // Messages before the invite first, in order.
                    if !batch.messages.is_empty() || !batch.answered.is_empty() {
                        batch.cursor = Some((position - 1).to_string());
                        deliver(&inbound, &surface, std::mem::take(&mut batch)).await;
                    }
                    let pending = world
                        .chat(&invite.chat)
                        .is_some_and(|c| c.invited.contains(world.bot()));
                    if pending {
                        inbound.invited(&surface, invite);
                    }
                }
            }
        }
        batch.cursor = Some(position.to_string());
        deliver(&inbound, &surface, batch).await;
        connector.health.record_success();
    }
}

/// Hands `batch` to the core until it is accepted durably.
async fn deliver(inbound: &Arc<dyn Inbound>, surface: &Arc<dyn Surface>, batch: Batch) {
    while let Err(error) = inbound.deliver(surface, batch.clone()).await {
        tracing::warn!(%error, "the core did not accept a batch; delivering it again");
        tokio::time::sleep(REDELIVERY_DELAY).await;
    }
}
