//! Messages as they travel through a supervised handle.
//!
//! Every message sent through a [`ChildHandle`](crate::ChildHandle) is wrapped in an
//! [`Envelope`] so the child can count it as handled (mailbox depth, last activity) and,
//! with the `fault-injection` feature, apply an injected fault before the real handler
//! runs. A supervised actor opts in with [`supervised_actor!`](crate::supervised_actor),
//! which implements `Handler<Envelope<M>>` for every `M` it handles and
//! `Handler<Shutdown>`. The reply channel is passed straight through to the actor's own
//! response, so a handled message costs no extra allocation.

use std::sync::Arc;

use actix::dev::{MessageResponse, OneshotSender};
use actix::{Actor, Context, Handler, Message};

use crate::health::ChildCore;

/// A message on its way to a supervised actor.
pub struct Envelope<M> {
    msg: M,
    core: Arc<ChildCore>,
}

impl<M> Envelope<M> {
    pub(crate) fn new(msg: M, core: Arc<ChildCore>) -> Self {
        Self { msg, core }
    }
}

impl<M: Message> Message for Envelope<M> {
    type Result = M::Result;
}

/// Asks a supervised actor to stop once the messages already in its mailbox are handled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// What became of an envelope; the actor's response when it was handled.
pub enum Delivery<A: Handler<M>, M: Message> {
    /// The actor handled it; its response.
    Handled(A::Result),
    /// Refused by an injected fault: the sender gets an error.
    Refused,
    /// Delayed by an injected fault, then handled.
    #[cfg(feature = "fault-injection")]
    Delayed(M, std::time::Duration),
    /// Swallowed by an injected fault: never answered.
    #[cfg(feature = "fault-injection")]
    Hang,
}

/// The body of `Handler<Envelope<M>>::handle` for every supervised actor.
pub fn deliver<A, M>(act: &mut A, env: Envelope<M>, ctx: &mut Context<A>) -> Delivery<A, M>
where
    A: Actor<Context = Context<A>> + Handler<M>,
    M: Message + 'static,
{
    env.core.note_handled();
    #[cfg(feature = "fault-injection")]
    {
        use crate::fault::MessageFault;
        if let Some(fault) = env
            .core
            .faults
            .on_message(&env.core.id, std::any::type_name::<M>())
        {
            match fault {
                // A deliberate panic: this is the fault being injected.
                MessageFault::Panic(message) => panic!("{message}"),
                MessageFault::Stop => {
                    actix::ActorContext::stop(ctx);
                    return Delivery::Refused;
                }
                MessageFault::ReturnError => return Delivery::Refused,
                MessageFault::Delay(d) => return Delivery::Delayed(env.msg, d),
                MessageFault::Hang => return Delivery::Hang,
            }
        }
    }
    Delivery::Handled(<A as Handler<M>>::handle(act, env.msg, ctx))
}

impl<A, M> MessageResponse<A, Envelope<M>> for Delivery<A, M>
where
    A: Actor<Context = Context<A>> + Handler<M>,
    M: Message + 'static,
{
    fn handle(self, ctx: &mut Context<A>, tx: Option<OneshotSender<M::Result>>) {
        match self {
            Delivery::Handled(response) => response.handle(ctx, tx),
            Delivery::Refused => drop(tx),
            #[cfg(feature = "fault-injection")]
            Delivery::Delayed(msg, delay) => {
                use actix::{ActorFutureExt, AsyncContext};
                let sleep = actix::fut::wrap_future::<_, A>(tokio::time::sleep(delay));
                ctx.wait(sleep.map(move |(), act: &mut A, ctx: &mut Context<A>| {
                    <A as Handler<M>>::handle(act, msg, ctx).handle(ctx, tx);
                }));
            }
            #[cfg(feature = "fault-injection")]
            Delivery::Hang => {
                use actix::AsyncContext;
                // Keep the reply channel alive until the actor stops: the sender waits.
                ctx.spawn(actix::fut::wrap_future::<_, A>(async move {
                    let _reply = tx;
                    std::future::pending::<()>().await;
                }));
            }
        }
    }
}
