//! The supervisor: starts children, watches every exit, restarts with backoff, gives up.
//!
//! A [`Supervisor`] is an actix actor owning a set of children (static or dynamic: one
//! per room, thousands of them). It is itself supervisable (it handles envelopes and
//! `Shutdown`), so supervisors nest into a tree. Exits arrive as [`ChildExited`] reports
//! from the incarnation's task; the supervisor applies the policy table (`policy`),
//! checks the restart intensity, waits a jittered exponential backoff on a timer (so a
//! child that fails in `started()` never spins its arbiter) and starts a fresh
//! incarnation from the factory. A child that exceeds its intensity is marked failed,
//! a `GaveUp` event is emitted, and if the child asked for escalation the supervisor
//! stops itself with an error for its own parent to handle.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, Addr, ArbiterHandle, AsyncContext, Context, Handler, Message, Recipient,
    ResponseFuture,
};
use thiserror::Error;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::child::{ChildSpec, Runner, TypedRunner};
use crate::envelope::Shutdown;
use crate::handle::{ChildCtx, ChildHandle};
use crate::health::{ActorState, ChildCore, EventKind, Registry};
use crate::id::ActorId;
use crate::policy::{decide, Decision, ExitReason, RestartConfig, RestartPolicy};

/// Errors of supervisor operations.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SupervisorError {
    /// A child with this id is already registered in the tree.
    #[error("an actor with id {0} already exists")]
    AlreadyExists(ActorId),
    /// No child with this id.
    #[error("no actor with id {0}")]
    NotFound(ActorId),
    /// The supervisor itself is gone.
    #[error("the supervisor is not running")]
    SupervisorGone,
}

/// Settings of one supervisor.
#[derive(Clone, Debug, Default)]
pub struct SupervisorConfig {
    /// Backoff and intensity for children whose spec does not set their own.
    pub restart: RestartConfig,
    /// Arbiters dynamic children are spread over, round robin (empty: the supervisor's own).
    pub arbiters: Vec<ArbiterHandle>,
}

/// Report of an incarnation's end, sent by its task.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ChildExited {
    pub(crate) id: ActorId,
    pub(crate) incarnation: u64,
    pub(crate) reason: ExitReason,
}

/// Adds a child (type-erased) and starts its first incarnation.
#[derive(Message)]
#[rtype(result = "Result<(), SupervisorError>")]
struct AddChild {
    runner: Arc<dyn Runner>,
    arbiter: Option<ArbiterHandle>,
    policy: RestartPolicy,
    restart: Option<RestartConfig>,
    shutdown_timeout: Duration,
    escalate: bool,
}

/// Stops a child (drain, then stop; abort after its timeout) and removes it.
#[derive(Message)]
#[rtype(result = "Result<(), SupervisorError>")]
struct StopChild {
    id: ActorId,
}

/// A restart's backoff has passed.
#[derive(Message)]
#[rtype(result = "()")]
struct RestartDue {
    id: ActorId,
    incarnation: u64,
}

/// A stopping child's shutdown timeout has passed.
#[derive(Message)]
#[rtype(result = "()")]
struct StopDeadline {
    id: ActorId,
    incarnation: u64,
}

/// Stops every child (newest first, each within its timeout), then the supervisor.
#[derive(Message)]
#[rtype(result = "()")]
struct StopAll;

struct ChildEntry {
    runner: Arc<dyn Runner>,
    policy: RestartPolicy,
    restart: RestartConfig,
    shutdown_timeout: Duration,
    escalate: bool,
    arbiter: Option<ArbiterHandle>,
    /// Restart times within the intensity period.
    history: VecDeque<Instant>,
    incarnation: u64,
    /// An incarnation is up (started and not yet reported as exited).
    alive: bool,
    /// A stop was requested: do not restart, remove on exit.
    stopping: bool,
    waiters: Vec<oneshot::Sender<()>>,
    /// Start order, for newest-first shutdown.
    seq: u64,
}

/// The supervisor actor.
pub struct Supervisor {
    config: SupervisorConfig,
    registry: Registry,
    children: HashMap<ActorId, ChildEntry>,
    next_seq: u64,
    next_arbiter: usize,
    /// Set when this supervisor is itself a supervised child (for escalation).
    as_child: Option<ChildCtx>,
    /// Callers of `StopAll` waiting for the last child to go.
    stop_all_waiters: Vec<oneshot::Sender<()>>,
    stopping_all: bool,
}

crate::supervised_actor!(@envelope Supervisor);

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Children do not outlive their supervisor: ask each to stop, abort stragglers.
        for (id, entry) in self.children.drain() {
            entry.runner.request_stop();
            let runner = entry.runner.clone();
            let timeout = entry.shutdown_timeout;
            actix_rt::spawn(async move {
                tokio::time::sleep(timeout).await;
                runner.kill();
            });
            self.registry.remove(&id);
            entry.runner.core().set_state(ActorState::Stopped);
        }
    }
}

impl Supervisor {
    /// A root supervisor (not supervised by anything).
    pub fn new(config: SupervisorConfig, registry: Registry) -> Self {
        Self {
            config,
            registry,
            children: HashMap::new(),
            next_seq: 0,
            next_arbiter: 0,
            as_child: None,
            stop_all_waiters: Vec::new(),
            stopping_all: false,
        }
    }

    /// A supervisor that is itself a supervised child (it escalates through `ctx`).
    pub fn nested(config: SupervisorConfig, registry: Registry, ctx: ChildCtx) -> Self {
        Self {
            as_child: Some(ctx),
            ..Self::new(config, registry)
        }
    }

    /// Starts a root supervisor on the current arbiter.
    pub fn start_root(config: SupervisorConfig, registry: Registry) -> SupervisorHandle {
        let addr = Supervisor::new(config, registry.clone()).start();
        SupervisorHandle { addr, registry }
    }

    fn pick_arbiter(&mut self) -> Option<ArbiterHandle> {
        if self.config.arbiters.is_empty() {
            return None;
        }
        let i = self.next_arbiter % self.config.arbiters.len();
        self.next_arbiter = self.next_arbiter.wrapping_add(1);
        self.config.arbiters.get(i).cloned()
    }

    fn start_incarnation(&mut self, id: &ActorId, ctx: &mut Context<Self>) {
        let exits: Recipient<ChildExited> = ctx.address().recipient();
        let Some(entry) = self.children.get_mut(id) else {
            return;
        };
        entry.incarnation += 1;
        entry.alive = true;
        let core = entry.runner.core();
        core.set_incarnation(entry.incarnation);
        core.set_state(ActorState::Starting);
        core.settle_mailbox();
        if !entry
            .runner
            .spawn(entry.incarnation, exits, entry.arbiter.as_ref())
        {
            // The arbiter is gone: the same as an incarnation lost at once.
            ctx.notify(ChildExited {
                id: id.clone(),
                incarnation: entry.incarnation,
                reason: ExitReason::Lost,
            });
        }
    }

    fn remove_child(&mut self, id: &ActorId) {
        if let Some(entry) = self.children.remove(id) {
            let core = entry.runner.core();
            entry.runner.clear_addr();
            core.set_state(ActorState::Stopped);
            self.registry.remove(id);
            core.emit(EventKind::Removed);
            tracing::debug!(actor = %id, "removed from its supervisor");
            for waiter in entry.waiters {
                let _ = waiter.send(());
            }
        }
    }

    fn finish_stop_all(&mut self, ctx: &mut Context<Self>) {
        if self.stopping_all && self.children.is_empty() {
            for waiter in self.stop_all_waiters.drain(..) {
                let _ = waiter.send(());
            }
            ctx.stop();
        }
    }

    fn begin_stop(&mut self, id: &ActorId, ctx: &mut Context<Self>) {
        let Some(entry) = self.children.get_mut(id) else {
            return;
        };
        entry.stopping = true;
        if !entry.alive {
            // Backing off or failed: nothing runs, remove now.
            self.remove_child(id);
            return;
        }
        entry.runner.core().set_state(ActorState::Stopping);
        entry.runner.request_stop();
        let deadline = StopDeadline {
            id: id.clone(),
            incarnation: entry.incarnation,
        };
        notify_after(ctx, entry.shutdown_timeout, deadline);
    }

    fn give_up(&mut self, id: &ActorId, restarts_in_period: u32, ctx: &mut Context<Self>) {
        let Some(entry) = self.children.get_mut(id) else {
            return;
        };
        let core = entry.runner.core();
        core.set_state(ActorState::Failed);
        core.emit(EventKind::GaveUp { restarts_in_period });
        tracing::error!(
            actor = %id,
            restarts_in_period,
            period = ?entry.restart.period,
            "restart intensity exceeded; the actor is marked failed and not restarted"
        );
        if entry.escalate {
            let reason = format!("child {id} exceeded its restart intensity");
            tracing::error!(%reason, "escalating to the parent supervisor");
            match &self.as_child {
                Some(child_ctx) => child_ctx.clone().fail(ctx, reason),
                None => ctx.stop(),
            }
        }
    }
}

impl Handler<AddChild> for Supervisor {
    type Result = Result<(), SupervisorError>;

    fn handle(&mut self, msg: AddChild, ctx: &mut Context<Self>) -> Self::Result {
        let core = msg.runner.core().clone();
        let id = core.id.clone();
        if !self.registry.insert(core) {
            return Err(SupervisorError::AlreadyExists(id));
        }
        self.next_seq += 1;
        let arbiter = msg.arbiter.or_else(|| self.pick_arbiter());
        self.children.insert(
            id.clone(),
            ChildEntry {
                runner: msg.runner,
                policy: msg.policy,
                restart: msg.restart.unwrap_or_else(|| self.config.restart.clone()),
                shutdown_timeout: msg.shutdown_timeout,
                escalate: msg.escalate,
                arbiter,
                history: VecDeque::new(),
                incarnation: 0,
                alive: false,
                stopping: false,
                waiters: Vec::new(),
                seq: self.next_seq,
            },
        );
        self.start_incarnation(&id, ctx);
        Ok(())
    }
}

impl Handler<ChildExited> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: ChildExited, ctx: &mut Context<Self>) {
        let Some(entry) = self.children.get_mut(&msg.id) else {
            return;
        };
        if !entry.alive || entry.incarnation != msg.incarnation {
            return; // a stale or duplicate report
        }
        entry.alive = false;
        entry.runner.clear_addr();
        let core: Arc<ChildCore> = entry.runner.core().clone();
        core.settle_mailbox();
        let reason = match msg.reason {
            ExitReason::Lost if entry.stopping => ExitReason::Killed,
            other => other,
        };
        if reason.is_abnormal() && !entry.stopping {
            core.record_failure(&reason);
            tracing::warn!(actor = %msg.id, incarnation = msg.incarnation, %reason, "actor exited abnormally");
        } else {
            tracing::debug!(actor = %msg.id, incarnation = msg.incarnation, %reason, "actor exited");
        }
        core.emit(EventKind::Exited {
            incarnation: msg.incarnation,
            reason: reason.clone(),
        });
        match decide(entry.policy, &reason, entry.stopping) {
            Decision::Remove => {
                self.remove_child(&msg.id);
                self.finish_stop_all(ctx);
            }
            Decision::Restart => match entry.restart.admit(&mut entry.history, Instant::now()) {
                Ok(attempt) => {
                    let delay = entry.restart.backoff(attempt, fastrand::f64());
                    core.set_state(ActorState::BackingOff);
                    core.note_restart();
                    core.emit(EventKind::Restarting { attempt, delay });
                    tracing::info!(actor = %msg.id, attempt, ?delay, "restarting after backoff");
                    let due = RestartDue {
                        id: msg.id.clone(),
                        incarnation: msg.incarnation,
                    };
                    notify_after(ctx, delay, due);
                }
                Err(restarts_in_period) => self.give_up(&msg.id, restarts_in_period, ctx),
            },
        }
    }
}

/// Sends `msg` to the supervisor after `delay`, from a task of its own: actix polls every
/// `run_later` item of a context on each wake-up, which would make thousands of pending
/// per-child timers cost O(children) per message.
fn notify_after<M>(ctx: &Context<Supervisor>, delay: Duration, msg: M)
where
    M: Message<Result = ()> + Send + 'static,
    Supervisor: Handler<M>,
{
    let addr = ctx.address();
    actix_rt::spawn(async move {
        tokio::time::sleep(delay).await;
        addr.do_send(msg);
    });
}

impl Handler<RestartDue> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: RestartDue, ctx: &mut Context<Self>) {
        let due = self
            .children
            .get(&msg.id)
            .is_some_and(|e| !e.stopping && !e.alive && e.incarnation == msg.incarnation);
        if due {
            self.start_incarnation(&msg.id, ctx);
        }
    }
}

impl Handler<StopDeadline> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: StopDeadline, _: &mut Context<Self>) {
        if let Some(entry) = self.children.get(&msg.id) {
            if entry.alive && entry.incarnation == msg.incarnation {
                tracing::warn!(
                    actor = %msg.id,
                    timeout = ?entry.shutdown_timeout,
                    "did not stop in time; aborting it"
                );
                entry.runner.kill();
            }
        }
    }
}

impl Handler<StopChild> for Supervisor {
    type Result = ResponseFuture<Result<(), SupervisorError>>;

    fn handle(&mut self, msg: StopChild, ctx: &mut Context<Self>) -> Self::Result {
        let Some(entry) = self.children.get_mut(&msg.id) else {
            let id = msg.id;
            return Box::pin(async move { Err(SupervisorError::NotFound(id)) });
        };
        let (tx, rx) = oneshot::channel();
        entry.waiters.push(tx);
        self.begin_stop(&msg.id, ctx);
        Box::pin(async move { rx.await.map_err(|_| SupervisorError::SupervisorGone) })
    }
}

impl Handler<StopAll> for Supervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopAll, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.stop_all_waiters.push(tx);
        self.stopping_all = true;
        let mut ids: Vec<(u64, ActorId)> = self
            .children
            .iter()
            .map(|(id, e)| (e.seq, id.clone()))
            .collect();
        ids.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        for (_, id) in ids {
            self.begin_stop(&id, ctx);
        }
        self.finish_stop_all(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.notify(StopAllQuiet);
    }
}

/// `Shutdown` for a nested supervisor: stop all children, then itself, replying to no one.
#[derive(Message)]
#[rtype(result = "()")]
struct StopAllQuiet;

impl Handler<StopAllQuiet> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: StopAllQuiet, ctx: &mut Context<Self>) {
        // The reply future is not needed: the stop itself is started by the handler.
        drop(<Self as Handler<StopAll>>::handle(self, StopAll, ctx));
    }
}

/// The handle applications hold to a supervisor.
#[derive(Clone)]
pub struct SupervisorHandle {
    addr: Addr<Supervisor>,
    registry: Registry,
}

impl SupervisorHandle {
    /// A handle to a supervisor started elsewhere (e.g. a nested one's current address).
    pub fn from_addr(addr: Addr<Supervisor>, registry: Registry) -> Self {
        Self { addr, registry }
    }

    /// The registry of this supervisor's tree.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// True while the supervisor runs.
    pub fn is_alive(&self) -> bool {
        self.addr.connected()
    }

    /// Adds a child and starts it; the handle reaches it (and every later incarnation).
    pub async fn start_child<A>(
        &self,
        spec: ChildSpec<A>,
    ) -> Result<ChildHandle<A>, SupervisorError>
    where
        A: Actor<Context = Context<A>> + Handler<Shutdown>,
    {
        let core = Arc::new(ChildCore::new(spec.id, &self.registry, spec.redeliver));
        let runner = TypedRunner::new(core, spec.factory);
        let handle = ChildHandle {
            slot: runner.slot(),
        };
        self.addr
            .send(AddChild {
                runner: Arc::new(runner),
                arbiter: spec.arbiter,
                policy: spec.policy,
                restart: spec.restart,
                shutdown_timeout: spec.shutdown_timeout,
                escalate: spec.escalate,
            })
            .await
            .map_err(|_| SupervisorError::SupervisorGone)??;
        Ok(handle)
    }

    /// Stops a child (it drains its mailbox first; aborted after its shutdown timeout)
    /// and removes it. Resolves once it is gone.
    pub async fn stop_child(&self, id: &ActorId) -> Result<(), SupervisorError> {
        self.addr
            .send(StopChild { id: id.clone() })
            .await
            .map_err(|_| SupervisorError::SupervisorGone)?
    }

    /// Stops every child, newest first, then the supervisor itself.
    pub async fn shutdown(&self) -> Result<(), SupervisorError> {
        self.addr
            .send(StopAll)
            .await
            .map_err(|_| SupervisorError::SupervisorGone)
    }
}
