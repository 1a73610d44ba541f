//! # actors: supervision for actix 0.13
//!
//! Surfaces runs every room and every agent connection as an actor under a supervisor,
//! so one broken room never takes the others down, operators see the health of each, and
//! tests break any one on purpose. actix's own `Supervisor` restarts an actor only when it
//! stops itself: a panic in a handler ends the task and closes the mailbox for good, with
//! no backoff, no restart limit, and a restart loop that does not yield. This crate is the
//! supervision layer instead. It knows nothing of Matrix or agents.
//!
//! ## The tree
//! ```text
//! Supervisor (root)                 a plain actix actor; owns its children
//! ├── child  ActorId "router"       ChildSpec: factory, policy, backoff, shutdown timeout
//! ├── child  ActorId "agent:echo"
//! └── Supervisor  ActorId "rooms"   supervisors nest: a supervisor is a child too
//!     ├── child  "room:!a:hs"       dynamic children: added and removed at run time
//!     └── child  "room:!b:hs"
//! ```
//! Every incarnation runs as one task wrapped so its end is always reported: a normal
//! stop, an error (`ChildCtx::fail`), a panic (caught with its message), or the task
//! vanishing (a drop guard reports it). Restarts wait a jittered exponential backoff on a
//! timer, so they yield; a restart intensity per child per period ends a crash loop.
//!
//! ## Restart policy × exit reason → action
//! | policy \ exit | normal | error / panic / lost | stop requested (killed after timeout too) |
//! |---|---|---|---|
//! | permanent | restart | restart | remove |
//! | transient | remove | restart | remove |
//! | temporary | remove | remove | remove |
//!
//! A restart beyond `max_restarts` within `period` marks the child **failed** instead:
//! it stays in the registry (state `failed`), a `GaveUp` event is emitted, and if its spec
//! asked for escalation the supervisor stops itself with an error so its parent decides.
//!
//! ## Messages and handles
//! Callers hold a [`ChildHandle`], which reaches the current incarnation. A message sent
//! while the child is down gets `SendError::Unavailable` at once; one queued in a mailbox
//! that died gets `SendError::Closed` as soon as the mailbox is dropped; nothing hangs
//! (except under the injected `Hang` fault, whose point is to hang). Children that declare
//! their messages idempotent may have them redelivered to the next incarnation
//! (`send_redelivering`). See [`handle`] for the details.
//!
//! ## Health, events, faults
//! The [`Registry`] has each actor's state, restarts, last failure, mailbox depth (counted
//! here: enqueued minus handled), messages handled and last activity, as a cheap snapshot,
//! plus a stream of [`SupervisionEvent`]s. With the `fault-injection` feature, `fault`
//! breaks a chosen actor or kind on purpose; without it, no hook is compiled.
//!
//! ## Making an actor supervisable
//! ```ignore
//! struct Room { /* state */ }
//! impl actix::Actor for Room { type Context = actix::Context<Self>; }
//! actors::supervised_actor!(Room);   // envelopes + Shutdown
//! let room = sup.start_child(ChildSpec::new(ActorId::new("room", "!a:hs"), |_ctx| Room {})).await?;
//! room.send(SomeMessage).await?;
//! ```

pub mod child;
pub mod envelope;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod handle;
pub mod health;
pub mod id;
pub mod policy;
pub mod supervisor;
pub mod testing;

pub use child::ChildSpec;
pub use envelope::{deliver, Delivery, Envelope, Shutdown};
#[cfg(feature = "fault-injection")]
pub use fault::{Fault, FaultGuard, FaultTable, FaultTarget};
pub use handle::{ChildCtx, ChildHandle, SendError};
pub use health::{ActorHealth, ActorState, EventKind, Failure, Registry, SupervisionEvent};
pub use id::ActorId;
pub use policy::{ExitReason, RestartConfig, RestartPolicy};
pub use supervisor::{Supervisor, SupervisorConfig, SupervisorError, SupervisorHandle};

/// Re-exported so the macro works in crates that name actix differently.
#[doc(hidden)]
pub use actix;

/// Makes an actor supervisable: implements `Handler<Envelope<M>>` for every message `M`
/// it handles (counting, fault hooks) and `Handler<Shutdown>` (drain, then stop).
#[macro_export]
macro_rules! supervised_actor {
    ($ty:ty) => {
        $crate::supervised_actor!(@envelope $ty);
        impl $crate::actix::Handler<$crate::Shutdown> for $ty {
            type Result = ();
            fn handle(&mut self, _: $crate::Shutdown, ctx: &mut Self::Context) {
                $crate::actix::ActorContext::stop(ctx);
            }
        }
    };
    (@envelope $ty:ty) => {
        impl<M> $crate::actix::Handler<$crate::Envelope<M>> for $ty
        where
            M: $crate::actix::Message + 'static,
            $ty: $crate::actix::Handler<M>,
        {
            type Result = $crate::Delivery<$ty, M>;
            fn handle(
                &mut self,
                env: $crate::Envelope<M>,
                ctx: &mut Self::Context,
            ) -> Self::Result {
                $crate::deliver(self, env, ctx)
            }
        }
    };
}
