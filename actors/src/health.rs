//! The health registry: what every supervised actor is doing, readable cheaply at any time.
//!
//! Each child has one [`ChildCore`] shared by its supervisor, its handles and its running
//! incarnation; counters are atomics so the hot path (send, handle) takes no lock. The
//! [`Registry`] maps ids to cores for snapshots (the ops endpoint) and carries the
//! supervision event stream (tests, logs). actix exposes no queue length, so the mailbox
//! depth is counted here: messages enqueued through a handle minus messages handled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use tokio::sync::{broadcast, Notify};

use crate::id::ActorId;
use crate::policy::ExitReason;

/// How many supervision events a slow subscriber may fall behind before it lags.
pub const EVENT_BUFFER: usize = 4096;

/// The life-cycle state of a supervised actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ActorState {
    /// An incarnation is being built and has not finished `started()` yet.
    Starting = 0,
    /// An incarnation is running.
    Running = 1,
    /// The last incarnation ended; a restart is scheduled after a backoff.
    BackingOff = 2,
    /// The restart intensity was exceeded: not restarted until removed and re-added.
    Failed = 3,
    /// A stop was requested; the actor drains its mailbox and stops.
    Stopping = 4,
    /// The actor ended and will not be restarted.
    Stopped = 5,
}

impl ActorState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => ActorState::Starting,
            1 => ActorState::Running,
            2 => ActorState::BackingOff,
            3 => ActorState::Failed,
            4 => ActorState::Stopping,
            _ => ActorState::Stopped,
        }
    }

    /// Lower-case label for metrics and JSON (`running`, `backing-off`, ...).
    pub fn label(self) -> &'static str {
        match self {
            ActorState::Starting => "starting",
            ActorState::Running => "running",
            ActorState::BackingOff => "backing-off",
            ActorState::Failed => "failed",
            ActorState::Stopping => "stopping",
            ActorState::Stopped => "stopped",
        }
    }

    /// Every state, for metrics that list each one.
    pub const ALL: [ActorState; 6] = [
        ActorState::Starting,
        ActorState::Running,
        ActorState::BackingOff,
        ActorState::Failed,
        ActorState::Stopping,
        ActorState::Stopped,
    ];
}

/// The last abnormal exit of an actor.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// Why it ended (with the panic message for panics).
    pub reason: ExitReason,
    /// When.
    pub at: SystemTime,
}

/// A point-in-time copy of one actor's health.
#[derive(Clone, Debug)]
pub struct ActorHealth {
    /// The actor.
    pub id: ActorId,
    /// Its state.
    pub state: ActorState,
    /// The current (or last) incarnation number, from 1.
    pub incarnation: u64,
    /// Restarts since the child was added.
    pub restarts: u32,
    /// The last abnormal exit, if any.
    pub last_failure: Option<Failure>,
    /// Messages enqueued through handles and not handled yet.
    pub mailbox_depth: u64,
    /// Messages handled, over all incarnations.
    pub handled: u64,
    /// Messages that were queued in a mailbox that died (their senders got an error).
    pub lost: u64,
    /// When the actor last handled a message.
    pub last_activity: Option<SystemTime>,
}

/// A supervision event, for tests and logs.
#[derive(Clone, Debug, PartialEq)]
pub struct SupervisionEvent {
    /// The actor concerned.
    pub id: ActorId,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a supervised actor.
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// An incarnation finished `started()` and runs.
    Started {
        /// Its number, from 1.
        incarnation: u64,
    },
    /// An incarnation ended.
    Exited {
        /// Its number.
        incarnation: u64,
        /// Why.
        reason: ExitReason,
    },
    /// A restart is scheduled.
    Restarting {
        /// The restart's number within the intensity period.
        attempt: u32,
        /// The backoff before it.
        delay: Duration,
    },
    /// The intensity was exceeded: the actor is failed and will not be restarted.
    GaveUp {
        /// Restarts already made within the period.
        restarts_in_period: u32,
    },
    /// The actor left its supervisor (stopped on request, or ended for good).
    Removed,
}

/// The shared, per-child record: counters, state and the last failure.
pub(crate) struct ChildCore {
    pub(crate) id: ActorId,
    state: AtomicU8,
    incarnation: AtomicU64,
    restarts: AtomicU32,
    enqueued: AtomicU64,
    handled: AtomicU64,
    lost: AtomicU64,
    last_activity_ms: AtomicU64,
    last_failure: Mutex<Option<Failure>>,
    /// The error an incarnation stopped itself with (`ChildCtx::fail`), keyed by incarnation.
    exit_error: Mutex<Option<(u64, String)>>,
    /// Aborts the running incarnation's task (shutdown timeout).
    pub(crate) abort: Mutex<Option<tokio::task::AbortHandle>>,
    /// Woken when a new incarnation starts (redelivery waits on it).
    pub(crate) started: Notify,
    /// Messages may be redelivered to the next incarnation (the child declared it safe).
    pub(crate) redeliver: bool,
    pub(crate) events: broadcast::Sender<SupervisionEvent>,
    #[cfg(feature = "fault-injection")]
    pub(crate) faults: Arc<crate::fault::FaultTable>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl ChildCore {
    pub(crate) fn new(id: ActorId, registry: &Registry, redeliver: bool) -> Self {
        Self {
            id,
            state: AtomicU8::new(ActorState::Starting as u8),
            incarnation: AtomicU64::new(0),
            restarts: AtomicU32::new(0),
            enqueued: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            last_activity_ms: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            exit_error: Mutex::new(None),
            abort: Mutex::new(None),
            started: Notify::new(),
            redeliver,
            events: registry.inner.events.clone(),
            #[cfg(feature = "fault-injection")]
            faults: registry.inner.faults.clone(),
        }
    }

    pub(crate) fn state(&self) -> ActorState {
        ActorState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, state: ActorState) {
        self.state.store(state as u8, Ordering::Release);
    }

    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::Acquire)
    }

    pub(crate) fn set_incarnation(&self, n: u64) {
        self.incarnation.store(n, Ordering::Release);
    }

    pub(crate) fn note_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn note_enqueued(&self) {
        self.enqueued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn note_handled(&self) {
        self.handled.fetch_add(1, Ordering::Relaxed);
        self.last_activity_ms
            .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
    }

    /// After an incarnation died: the messages still counted as queued were lost with
    /// its mailbox (their senders got `SendError::Closed`). Fold them into `lost`.
    pub(crate) fn settle_mailbox(&self) {
        let enqueued = self.enqueued.load(Ordering::Acquire);
        let handled = self.handled.load(Ordering::Acquire);
        if enqueued > handled {
            let gone = enqueued - handled;
            self.enqueued.fetch_sub(gone, Ordering::AcqRel);
            self.lost.fetch_add(gone, Ordering::Relaxed);
        }
    }

    pub(crate) fn record_failure(&self, reason: &ExitReason) {
        *self.last_failure.lock() = Some(Failure {
            reason: reason.clone(),
            at: SystemTime::now(),
        });
    }

    pub(crate) fn set_exit_error(&self, incarnation: u64, message: String) {
        *self.exit_error.lock() = Some((incarnation, message));
    }

    pub(crate) fn take_exit_error(&self, incarnation: u64) -> Option<String> {
        let mut slot = self.exit_error.lock();
        match slot.take() {
            Some((n, message)) if n == incarnation => Some(message),
            _ => None,
        }
    }

    pub(crate) fn emit(&self, kind: EventKind) {
        // No subscriber is fine: events are for whoever listens.
        let _ = self.events.send(SupervisionEvent {
            id: self.id.clone(),
            kind,
        });
    }

    pub(crate) fn health(&self) -> ActorHealth {
        let enqueued = self.enqueued.load(Ordering::Relaxed);
        let handled = self.handled.load(Ordering::Relaxed);
        let last = self.last_activity_ms.load(Ordering::Relaxed);
        ActorHealth {
            id: self.id.clone(),
            state: self.state(),
            incarnation: self.incarnation(),
            restarts: self.restarts.load(Ordering::Relaxed),
            last_failure: self.last_failure.lock().clone(),
            mailbox_depth: enqueued.saturating_sub(handled),
            handled,
            lost: self.lost.load(Ordering::Relaxed),
            last_activity: (last > 0).then(|| UNIX_EPOCH + Duration::from_millis(last)),
        }
    }
}

pub(crate) struct RegistryInner {
    children: RwLock<HashMap<ActorId, Arc<ChildCore>>>,
    events: broadcast::Sender<SupervisionEvent>,
    #[cfg(feature = "fault-injection")]
    faults: Arc<crate::fault::FaultTable>,
}

/// The health registry of one supervision tree. Cloning shares it.
#[derive(Clone)]
pub struct Registry {
    pub(crate) inner: Arc<RegistryInner>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry with its own event stream (and fault table).
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            inner: Arc::new(RegistryInner {
                children: RwLock::new(HashMap::new()),
                events,
                #[cfg(feature = "fault-injection")]
                faults: Arc::new(crate::fault::FaultTable::default()),
            }),
        }
    }

    /// Adds a child; false if the id is taken.
    pub(crate) fn insert(&self, core: Arc<ChildCore>) -> bool {
        let mut children = self.inner.children.write();
        if children.contains_key(&core.id) {
            return false;
        }
        children.insert(core.id.clone(), core);
        true
    }

    pub(crate) fn remove(&self, id: &ActorId) {
        self.inner.children.write().remove(id);
    }

    /// Health of every registered actor, sorted by id.
    pub fn snapshot(&self) -> Vec<ActorHealth> {
        let cores: Vec<Arc<ChildCore>> = self.inner.children.read().values().cloned().collect();
        let mut out: Vec<ActorHealth> = cores.iter().map(|c| c.health()).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Health of one actor.
    pub fn get(&self, id: &ActorId) -> Option<ActorHealth> {
        self.inner.children.read().get(id).map(|c| c.health())
    }

    /// Number of registered actors.
    pub fn len(&self) -> usize {
        self.inner.children.read().len()
    }

    /// True when no actor is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts of actors per (kind, state), without copying per-actor records.
    pub fn counts(&self) -> HashMap<(String, ActorState), usize> {
        let mut out = HashMap::new();
        for core in self.inner.children.read().values() {
            *out.entry((core.id.kind().to_owned(), core.state()))
                .or_insert(0) += 1;
        }
        out
    }

    /// Subscribes to supervision events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SupervisionEvent> {
        self.inner.events.subscribe()
    }

    /// The fault table of this tree (only with the `fault-injection` feature).
    #[cfg(feature = "fault-injection")]
    pub fn faults(&self) -> &Arc<crate::fault::FaultTable> {
        &self.inner.faults
    }
}
