//! Child specs and how one incarnation of a child runs.
//!
//! A [`ChildSpec`] says how to build a child (a factory called for every start, so each
//! incarnation gets fresh state), when to restart it and how long it may take to stop.
//!
//! An incarnation runs as one task on its arbiter: the actix context future, wrapped so
//! that every way it can end is reported to the supervisor exactly once:
//! - the future completes: a normal stop, or an error if the actor called `ChildCtx::fail`;
//! - it panics (a handler, `started()`, the factory): caught at the wrapper with
//!   `catch_unwind`, reported with the panic message (actix itself would just lose the task);
//! - the task is dropped without finishing (aborted after a shutdown timeout, or its arbiter
//!   stopped): a guard's `Drop` reports it, so a missed report is still caught.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use actix::dev::channel;
use actix::{Actor, Addr, ArbiterHandle, Context, Handler, Recipient};
use futures_util::FutureExt;
use parking_lot::RwLock;

use crate::envelope::Shutdown;
use crate::handle::{ChildCtx, Slot};
use crate::health::{ActorState, ChildCore, EventKind};
use crate::id::ActorId;
use crate::policy::{ExitReason, RestartConfig, RestartPolicy};
use crate::supervisor::ChildExited;

/// Default time a child gets to drain and stop before it is aborted.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Mailbox capacity of a supervised child (actix's default).
pub const MAILBOX_CAPACITY: usize = 16;

type Factory<A> = Arc<dyn Fn(ChildCtx) -> A + Send + Sync>;

/// How to build, restart and stop one child.
pub struct ChildSpec<A: Actor> {
    pub(crate) id: ActorId,
    pub(crate) factory: Factory<A>,
    pub(crate) policy: RestartPolicy,
    pub(crate) restart: Option<RestartConfig>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) redeliver: bool,
    pub(crate) escalate: bool,
    pub(crate) arbiter: Option<ArbiterHandle>,
}

impl<A> ChildSpec<A>
where
    A: Actor<Context = Context<A>> + Handler<Shutdown>,
{
    /// A permanent child built by `factory` on every start.
    pub fn new(id: ActorId, factory: impl Fn(ChildCtx) -> A + Send + Sync + 'static) -> Self {
        Self {
            id,
            factory: Arc::new(factory),
            policy: RestartPolicy::Permanent,
            restart: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            redeliver: false,
            escalate: false,
            arbiter: None,
        }
    }

    /// Sets the restart policy.
    pub fn policy(mut self, policy: RestartPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Overrides the supervisor's backoff and intensity for this child.
    pub fn restart(mut self, restart: RestartConfig) -> Self {
        self.restart = Some(restart);
        self
    }

    /// Sets how long the child may take to stop before it is aborted.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Declares the child's messages idempotent: `send_redelivering` may deliver a
    /// message again to the next incarnation when the one holding it died.
    pub fn redeliver(mut self, safe: bool) -> Self {
        self.redeliver = safe;
        self
    }

    /// When this child exceeds its restart intensity, the supervisor stops itself with
    /// an error, so its own parent decides (OTP's escalation).
    pub fn escalate_on_give_up(mut self, escalate: bool) -> Self {
        self.escalate = escalate;
        self
    }

    /// Runs the child on this arbiter (default: the supervisor's, or its pool's).
    pub fn on_arbiter(mut self, arbiter: ArbiterHandle) -> Self {
        self.arbiter = Some(arbiter);
        self
    }
}

/// A child as the supervisor sees it: type-erased.
pub(crate) trait Runner: Send + Sync {
    fn core(&self) -> &Arc<ChildCore>;
    /// Starts incarnation `incarnation` on `arbiter` (None: the caller's); false if
    /// that arbiter is gone.
    fn spawn(
        &self,
        incarnation: u64,
        exits: Recipient<ChildExited>,
        arbiter: Option<&ArbiterHandle>,
    ) -> bool;
    /// Asks the running incarnation to drain and stop.
    fn request_stop(&self);
    /// Aborts the running incarnation's task.
    fn kill(&self);
    /// Forgets the current address (no incarnation is up).
    fn clear_addr(&self);
}

pub(crate) struct TypedRunner<A: Actor> {
    slot: Arc<Slot<A>>,
    factory: Factory<A>,
}

impl<A: Actor> TypedRunner<A> {
    pub(crate) fn new(core: Arc<ChildCore>, factory: Factory<A>) -> Self {
        Self {
            slot: Arc::new(Slot {
                core,
                addr: RwLock::new(None),
            }),
            factory,
        }
    }

    pub(crate) fn slot(&self) -> Arc<Slot<A>> {
        self.slot.clone()
    }
}

impl<A> Runner for TypedRunner<A>
where
    A: Actor<Context = Context<A>> + Handler<Shutdown>,
{
    fn core(&self) -> &Arc<ChildCore> {
        &self.slot.core
    }

    fn spawn(
        &self,
        incarnation: u64,
        exits: Recipient<ChildExited>,
        arbiter: Option<&ArbiterHandle>,
    ) -> bool {
        // The mailbox exists before the actor does, so handles reach the new
        // incarnation at once, whichever arbiter builds it.
        let (tx, rx) = channel::channel::<A>(MAILBOX_CAPACITY);
        *self.slot.addr.write() = Some(Addr::new(tx));
        let core = self.slot.core.clone();
        let factory = self.factory.clone();
        let start = move || {
            let abort_core = core.clone();
            let task = actix_rt::spawn(run_incarnation(core, factory, rx, incarnation, exits));
            *abort_core.abort.lock() = Some(task.abort_handle());
        };
        match arbiter {
            Some(arbiter) => arbiter.spawn_fn(start),
            None => {
                start();
                true
            }
        }
    }

    fn request_stop(&self) {
        if let Some(addr) = &*self.slot.addr.read() {
            addr.do_send(Shutdown);
        }
    }

    fn kill(&self) {
        if let Some(abort) = self.slot.core.abort.lock().take() {
            abort.abort();
        }
    }

    fn clear_addr(&self) {
        *self.slot.addr.write() = None;
    }
}

/// One incarnation, from factory to exit report.
async fn run_incarnation<A>(
    core: Arc<ChildCore>,
    factory: Factory<A>,
    rx: channel::AddressReceiver<A>,
    incarnation: u64,
    exits: Recipient<ChildExited>,
) where
    A: Actor<Context = Context<A>>,
{
    let mut report = ExitReport {
        id: core.id.clone(),
        incarnation,
        exits: Some(exits),
    };
    let running = core.clone();
    let child_ctx = ChildCtx {
        core: core.clone(),
        incarnation,
    };
    let body = async move {
        #[cfg(feature = "fault-injection")]
        if child_ctx.core.faults.on_start(&child_ctx.core.id) {
            // A deliberate panic: the injected start failure.
            panic!(
                "injected fault: failure in started() of {}",
                child_ctx.core.id
            );
        }
        let actor = factory(child_ctx);
        let fut = Context::with_receiver(rx).into_future(actor);
        AfterFirstPoll {
            inner: fut,
            hook: Some(move || {
                running.set_state(ActorState::Running);
                running.started.notify_waiters();
                running.emit(EventKind::Started { incarnation });
            }),
        }
        .await;
    };
    let reason = match AssertUnwindSafe(body).catch_unwind().await {
        Ok(()) => match core.take_exit_error(incarnation) {
            Some(message) => ExitReason::Error(message),
            None => ExitReason::Normal,
        },
        Err(payload) => ExitReason::Panic(panic_message(payload.as_ref())),
    };
    report.send(reason);
}

/// Reports an incarnation's end once; if dropped unsent (task aborted or its arbiter
/// gone), reports it as lost.
struct ExitReport {
    id: ActorId,
    incarnation: u64,
    exits: Option<Recipient<ChildExited>>,
}

impl ExitReport {
    fn send(&mut self, reason: ExitReason) {
        if let Some(exits) = self.exits.take() {
            exits.do_send(ChildExited {
                id: self.id.clone(),
                incarnation: self.incarnation,
                reason,
            });
        }
    }
}

impl Drop for ExitReport {
    fn drop(&mut self) {
        self.send(ExitReason::Lost);
    }
}

/// Runs `hook` once, right after the first poll of `inner` (which runs `started()`)
/// returned without panicking.
struct AfterFirstPoll<F, H> {
    inner: F,
    hook: Option<H>,
}

impl<F: Future + Unpin, H: FnOnce() + Unpin> Future for AfterFirstPoll<F, H> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll(cx);
        if let Some(hook) = this.hook.take() {
            hook();
        }
        result
    }
}

/// The text of a panic payload (`&str` or `String`; anything else is named as such).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
