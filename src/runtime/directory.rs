//! The directory of managed chats: chat → its messenger and, while it is active, its
//! supervised room actor.
//!
//! Why this exists: most chats are idle most of the time, and an idle chat should cost
//! nothing but its record in the store. Room actors are *virtual* (as Orleans grains or
//! Akka's passivated entities): a chat's actor is activated when something needs it — its
//! first message, a journal entry left pending at start-up, a fault drill, the provisioner
//! creating the chat — and passivated once it has been idle for `supervision.room_idle_secs`
//! (its queue empty, no turn running). Being managed is having a record in the store;
//! being active is having an entry here. Start-up costs what the pending work costs, not
//! the number of chats.
//!
//! Activation and passivation of one chat never overlap: a chat is `Starting`, `Active` or
//! `Leaving`, and whoever finds it starting or leaving waits for that to end. A passivation
//! asks the actor through its own mailbox whether it is idle ([`Passivate`]), so every
//! message handed to it before is handled first; the intake touches a chat when it takes its
//! handle, and only a chat untouched for the whole idle period is asked.
//!
//! The provisioner activates the chats it creates through a [`RoomStarter`] (a request to a
//! task that owns the starting), so the directory (whose room actors need the provisioner
//! for `!new`) and the provisioner do not need each other at construction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::{ChildHandle, ChildSpec, SupervisorError, SupervisorHandle};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot, watch};

use super::ids;
use super::room::{Chat, Passivate, Resume, RoomActor, RoomDeps};
use crate::idmap::IdMap;
use crate::store::StoreError;
use crate::surface::{ChatId, Surface};

/// The sweep for idle chats runs every quarter of the idle period, at least this often…
pub const PASSIVATION_SWEEP_MAX: Duration = Duration::from_secs(30);
/// …and at most this often.
pub const PASSIVATION_SWEEP_MIN: Duration = Duration::from_millis(100);
/// How long a room actor may take to say whether it is idle (it answers from its mailbox,
/// behind the messages already in it).
pub const PASSIVATE_ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// The messengers the bot is on, by name. Cheap to clone.
#[derive(Clone, Default)]
pub struct Surfaces(Arc<HashMap<String, Arc<dyn Surface>>>);

impl Surfaces {
    /// The registry of `surfaces` (names must be distinct).
    pub fn new(surfaces: impl IntoIterator<Item = Arc<dyn Surface>>) -> Self {
        Self(Arc::new(
            surfaces
                .into_iter()
                .map(|s| (s.name().to_owned(), s))
                .collect(),
        ))
    }

    /// The messenger named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Surface>> {
        self.0.get(name).cloned()
    }

    /// Every messenger.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Surface>> {
        self.0.values()
    }
}

/// An active chat: its actor, and when something last needed it.
struct Active {
    chat: Chat,
    handle: ChildHandle<RoomActor>,
    /// Milliseconds since the directory's epoch.
    touched: AtomicU64,
}

/// Where a chat's actor is in its life (absent: idle, the chat is only its record).
enum Slot {
    /// Being activated; the receiver ends when that is over.
    Starting(watch::Receiver<()>),
    /// Running (or restarting under its supervisor).
    Active(Arc<Active>),
    /// Being passivated; the receiver ends when that is over.
    Leaving(watch::Receiver<()>),
}

/// Why a chat could not be activated by its id.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// Its record could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The supervisor refused.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
}

struct Inner {
    slots: RwLock<IdMap<ChatId, Slot>>,
    supervisor: SupervisorHandle,
    deps: Arc<RoomDeps>,
    surfaces: Surfaces,
    idle_after: Option<Duration>,
    epoch: Instant,
}

/// Managed chats and their active actors. Cloning shares it.
#[derive(Clone)]
pub struct RoomDirectory {
    inner: Arc<Inner>,
}

impl RoomDirectory {
    /// A directory whose chats' actors run under `supervisor`, sharing `deps`, on the
    /// messengers `surfaces`; a chat idle for `idle_after` is passivated (`None`: never).
    pub fn new(
        supervisor: SupervisorHandle,
        deps: RoomDeps,
        surfaces: Surfaces,
        idle_after: Option<Duration>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                slots: RwLock::default(),
                supervisor,
                // One copy shared by every room actor (memory per active room matters).
                deps: Arc::new(deps),
                surfaces,
                idle_after,
                epoch: Instant::now(),
            }),
        }
    }

    /// What room actors share (the intake uses it for `!cancel`).
    pub fn deps(&self) -> &Arc<RoomDeps> {
        &self.inner.deps
    }

    /// How long a chat stays active without work (`supervision.room_idle_secs`).
    pub fn idle_after(&self) -> Option<Duration> {
        self.inner.idle_after
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The chat and actor of an active chat, touched (it will not be passivated for a
    /// whole idle period from now).
    pub fn get(&self, chat: &ChatId) -> Option<(Chat, ChildHandle<RoomActor>)> {
        let slots = self.inner.slots.read();
        match slots.get(chat)? {
            Slot::Active(active) => {
                active.touched.store(self.now_ms(), Ordering::Relaxed);
                Some((active.chat.clone(), active.handle.clone()))
            }
            Slot::Starting(_) | Slot::Leaving(_) => None,
        }
    }

    /// Whether `chat`'s actor is active now.
    pub fn is_active(&self, chat: &ChatId) -> bool {
        matches!(self.inner.slots.read().get(chat), Some(Slot::Active(_)))
    }

    /// A managed chat, active or idle (its record read from the store when idle); `None`
    /// when the bot does not manage it, or it belongs to a messenger not configured.
    pub fn chat(&self, chat: &ChatId) -> Result<Option<Chat>, StoreError> {
        if let Some(Slot::Active(active)) = self.inner.slots.read().get(chat) {
            return Ok(Some(active.chat.clone()));
        }
        let Some(record) = self.inner.deps.store.room(chat.as_str())? else {
            return Ok(None);
        };
        match self.inner.surfaces.get(&record.surface) {
            Some(surface) => Ok(Some(Chat::new(surface, chat.clone()))),
            None => {
                tracing::warn!(room_id = %chat, surface = %record.surface,
                    "a chat of a messenger that is not configured; leaving it alone");
                Ok(None)
            }
        }
    }

    /// Whether the bot manages `chat` (a store that cannot be read says no, logged).
    pub fn is_managed(&self, chat: &ChatId) -> bool {
        match self.chat(chat) {
            Ok(found) => found.is_some(),
            Err(error) => {
                tracing::warn!(room_id = %chat, %error, "cannot read the chat's record");
                false
            }
        }
    }

    /// Number of active chats.
    pub fn active_len(&self) -> usize {
        self.inner
            .slots
            .read()
            .values()
            .filter(|s| matches!(s, Slot::Active(_)))
            .count()
    }

    /// Number of managed chats, active and idle (the store keeps it with every write);
    /// `None` when it cannot be read (logged).
    pub fn managed_len(&self) -> Option<usize> {
        match self.inner.deps.store.room_count() {
            Ok(count) => Some(count),
            Err(error) => {
                tracing::warn!(%error, "cannot read the number of managed chats");
                None
            }
        }
    }

    /// The active chats' ids.
    pub fn active(&self) -> Vec<ChatId> {
        self.inner
            .slots
            .read()
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Active(_)))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Activates `chat`'s actor (returns the running one if it is active), its first
    /// incarnation resuming as `resume` says. Waits for an activation or passivation of the
    /// same chat in progress to end first.
    pub async fn activate(
        &self,
        chat: &Chat,
        resume: Resume,
    ) -> Result<ChildHandle<RoomActor>, SupervisorError> {
        if let Some((_, handle)) = self.get(&chat.id) {
            return Ok(handle);
        }
        let started = loop {
            let mut wait = {
                let mut slots = self.inner.slots.write();
                match slots.get(&chat.id) {
                    Some(Slot::Active(active)) => {
                        active.touched.store(self.now_ms(), Ordering::Relaxed);
                        return Ok(active.handle.clone());
                    }
                    Some(Slot::Starting(wait) | Slot::Leaving(wait)) => wait.clone(),
                    None => {
                        let (started, wait) = watch::channel(());
                        slots.insert(chat.id.clone(), Slot::Starting(wait));
                        break started;
                    }
                }
            };
            // Ends (with an error) when the other activation or passivation drops its sender.
            let _ = wait.changed().await;
        };
        let result = self.start_actor(chat, resume).await;
        let mut slots = self.inner.slots.write();
        match &result {
            Ok(handle) => {
                slots.insert(
                    chat.id.clone(),
                    Slot::Active(Arc::new(Active {
                        chat: chat.clone(),
                        handle: handle.clone(),
                        touched: AtomicU64::new(self.now_ms()),
                    })),
                );
            }
            Err(_) => {
                slots.remove(&chat.id);
            }
        }
        drop(slots);
        drop(started);
        result
    }

    async fn start_actor(
        &self,
        chat: &Chat,
        resume: Resume,
    ) -> Result<ChildHandle<RoomActor>, SupervisorError> {
        let id = ids::room(chat.id.as_str());
        let deps = self.inner.deps.clone();
        let factory_room = chat.clone();
        // The first incarnation resumes as asked; one restarted after a failure reads the
        // journal for what its predecessor left.
        let first = Mutex::new(Some(resume));
        // Replies and turns are idempotent (keys derived from the message id): safe to redeliver.
        let stop_timeout = deps.stop_timeout;
        let spec = ChildSpec::new(id, move |ctx| {
            let resume = match ctx.incarnation() {
                1 => first.lock().take().unwrap_or(Resume::Scan),
                _ => Resume::Scan,
            };
            RoomActor::new(factory_room.clone(), deps.clone(), resume, ctx)
        })
        .redeliver(true)
        .shutdown_timeout(stop_timeout);
        self.inner.supervisor.start_child(spec).await
    }

    /// Activates a managed chat by its id (`None`: not managed).
    pub async fn activate_id(
        &self,
        chat: &ChatId,
        resume: Resume,
    ) -> Result<Option<ChildHandle<RoomActor>>, ActivateError> {
        let Some(chat) = self.chat(chat)? else {
            return Ok(None);
        };
        Ok(Some(self.activate(&chat, resume).await?))
    }

    /// Activates the actor of a chat just created (nothing of it is pending).
    pub async fn start(
        &self,
        surface: Arc<dyn Surface>,
        chat: ChatId,
    ) -> Result<ChildHandle<RoomActor>, SupervisorError> {
        self.activate(&Chat::new(surface, chat), Resume::Nothing)
            .await
    }

    /// Passivates `chat` if it has been idle for `idle_after` (untouched here, and its actor
    /// has neither a turn running nor messages waiting); true if it was.
    pub async fn passivate(&self, chat: &ChatId, idle_after: Duration) -> bool {
        let idle_ms = u64::try_from(idle_after.as_millis()).unwrap_or(u64::MAX);
        let (active, leaving) = {
            let mut slots = self.inner.slots.write();
            let Some(Slot::Active(active)) = slots.get(chat) else {
                return false;
            };
            let touched = active.touched.load(Ordering::Relaxed);
            if self.now_ms().saturating_sub(touched) < idle_ms {
                return false;
            }
            let active = active.clone();
            let (leaving, wait) = watch::channel(());
            slots.insert(chat.clone(), Slot::Leaving(wait));
            (active, leaving)
        };
        // Asked through its mailbox: whatever was handed to it before is handled first.
        let asked = active
            .handle
            .send_timeout(Passivate { idle_after }, PASSIVATE_ASK_TIMEOUT)
            .await;
        let passivated = match asked {
            Ok(true) => {
                if let Err(error) = self.inner.supervisor.stop_child(active.handle.id()).await {
                    tracing::warn!(room_id = %chat, %error, "cannot stop an idle room actor");
                }
                self.inner.slots.write().remove(chat);
                tracing::debug!(room_id = %chat, "passivated an idle room");
                true
            }
            Ok(false) | Err(_) => {
                // Busy after all (or restarting, or failed): it stays, as it was.
                active.touched.store(self.now_ms(), Ordering::Relaxed);
                self.inner
                    .slots
                    .write()
                    .insert(chat.clone(), Slot::Active(active));
                false
            }
        };
        drop(leaving);
        passivated
    }

    /// One sweep: passivates every chat idle for the idle period; returns how many.
    pub async fn passivate_idle(&self) -> usize {
        let Some(idle_after) = self.inner.idle_after else {
            return 0;
        };
        let idle_ms = u64::try_from(idle_after.as_millis()).unwrap_or(u64::MAX);
        let now = self.now_ms();
        let candidates: Vec<ChatId> = self
            .inner
            .slots
            .read()
            .iter()
            .filter_map(|(id, slot)| match slot {
                Slot::Active(a)
                    if now.saturating_sub(a.touched.load(Ordering::Relaxed)) >= idle_ms =>
                {
                    Some(id.clone())
                }
                _ => None,
            })
            .collect();
        let mut passivated = 0;
        for chat in candidates {
            if self.passivate(&chat, idle_after).await {
                passivated += 1;
            }
        }
        passivated
    }

    /// Passivates idle chats for ever, every quarter of the idle period (spawn it once;
    /// returns at once when passivation is off).
    pub async fn sweep(self) {
        let Some(idle_after) = self.inner.idle_after else {
            return;
        };
        let every = (idle_after / 4).clamp(PASSIVATION_SWEEP_MIN, PASSIVATION_SWEEP_MAX);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let passivated = self.passivate_idle().await;
            if passivated > 0 {
                tracing::debug!(
                    passivated,
                    active = self.active_len(),
                    "passivated idle rooms"
                );
            }
        }
    }

    /// Serves [`RoomStarter`] requests until every starter is dropped (spawn it once).
    pub async fn serve(self, mut requests: mpsc::UnboundedReceiver<StartRoom>) {
        while let Some(StartRoom {
            surface,
            chat,
            done,
        }) = requests.recv().await
        {
            let result = self.start(surface, chat).await.map(|_| ());
            let _ = done.send(result);
        }
    }
}

/// A request to start a chat's actor.
pub struct StartRoom {
    surface: Arc<dyn Surface>,
    chat: ChatId,
    done: oneshot::Sender<Result<(), SupervisorError>>,
}

/// Starts room actors through the directory's [`RoomDirectory::serve`] task.
#[derive(Clone)]
pub struct RoomStarter(mpsc::UnboundedSender<StartRoom>);

/// Why a room actor could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The supervisor refused.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    /// Nobody serves the requests (shutting down).
    #[error("the room directory is not running")]
    Gone,
}

impl RoomStarter {
    /// A starter and the requests [`RoomDirectory::serve`] takes.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<StartRoom>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Starts the actor of `chat` and waits until it runs.
    pub async fn start(&self, surface: Arc<dyn Surface>, chat: ChatId) -> Result<(), StartError> {
        let (done, started) = oneshot::channel();
        self.0
            .send(StartRoom {
                surface,
                chat,
                done,
            })
            .map_err(|_| StartError::Gone)?;
        started.await.map_err(|_| StartError::Gone)??;
        Ok(())
    }
}
