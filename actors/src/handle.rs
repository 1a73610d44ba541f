//! Handles that reach the current incarnation of a supervised child.
//!
//! A [`ChildHandle`] outlives restarts: it reads the child's current address on every
//! send. What a sender sees, by design:
//!
//! - child running or starting: the message is queued and handled in order;
//! - child backing off, failed, stopping or stopped: `SendError::Unavailable` at once;
//! - the incarnation dies with the message queued or in hand: `SendError::Closed` as soon
//!   as the mailbox is dropped (never a hang);
//! - [`ChildHandle::send_redelivering`] retries such a message on the next incarnation,
//!   but only for children whose spec declares redelivery safe (idempotent messages);
//! - [`ChildHandle::tell`] is fire-and-forget: a message lost with a dead mailbox is only
//!   counted (`lost` in the registry). Durable delivery is the application's journal's job.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Context, Handler, MailboxError, Message};
use parking_lot::RwLock;
use thiserror::Error;

use crate::envelope::Envelope;
use crate::health::{ActorHealth, ActorState, ChildCore};
use crate::id::ActorId;

/// Why a message did not reach a supervised child or got no reply.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SendError {
    /// No incarnation is running (backing off, failed, stopping or stopped).
    #[error("{id} is {} and cannot take messages", state.label())]
    Unavailable {
        /// The child.
        id: ActorId,
        /// Its state when the message was refused.
        state: ActorState,
    },
    /// The incarnation ended (or refused the message) before replying.
    #[error("{id} ended or refused the message before replying")]
    Closed {
        /// The child.
        id: ActorId,
    },
    /// No reply within the caller's timeout.
    #[error("{id} did not reply in time")]
    Timeout {
        /// The child.
        id: ActorId,
    },
}

impl SendError {
    /// True when a later incarnation might take the message (not failed or stopped).
    pub fn may_succeed_later(&self) -> bool {
        match self {
            SendError::Unavailable { state, .. } => {
                matches!(state, ActorState::BackingOff | ActorState::Starting)
            }
            SendError::Closed { .. } => true,
            SendError::Timeout { .. } => false,
        }
    }
}

/// The shared slot a child's handles read its current address from.
pub(crate) struct Slot<A: Actor> {
    pub(crate) core: Arc<ChildCore>,
    pub(crate) addr: RwLock<Option<Addr<A>>>,
}

/// A handle to a supervised child, valid across its restarts. Cheap to clone.
pub struct ChildHandle<A: Actor> {
    pub(crate) slot: Arc<Slot<A>>,
}

impl<A: Actor> Clone for ChildHandle<A> {
    fn clone(&self) -> Self {
        Self {
            slot: self.slot.clone(),
        }
    }
}

impl<A: Actor<Context = Context<A>>> ChildHandle<A> {
    /// The child's id.
    pub fn id(&self) -> &ActorId {
        &self.slot.core.id
    }

    /// The child's state now.
    pub fn state(&self) -> ActorState {
        self.slot.core.state()
    }

    /// The child's health now.
    pub fn health(&self) -> ActorHealth {
        self.slot.core.health()
    }

    /// The current incarnation's address, if one is up (for advanced uses such as
    /// `Recipient`s; messages sent through it bypass the handle's counting).
    pub fn addr(&self) -> Option<Addr<A>> {
        self.slot.addr.read().clone()
    }

    fn unavailable(&self) -> SendError {
        SendError::Unavailable {
            id: self.id().clone(),
            state: self.state(),
        }
    }

    /// Sends a message and waits for the reply.
    pub async fn send<M>(&self, msg: M) -> Result<M::Result, SendError>
    where
        A: Handler<Envelope<M>>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        // Enqueue under the read lock: cloning an actix `Addr` allocates, this does not.
        let request = {
            let guard = self.slot.addr.read();
            let Some(addr) = guard.as_ref() else {
                return Err(self.unavailable());
            };
            self.slot.core.note_enqueued();
            addr.send(Envelope::new(msg, self.slot.core.clone()))
        };
        request.await.map_err(|e| self.mailbox_error(e))
    }

    /// Sends a message and waits at most `timeout` for the reply.
    pub async fn send_timeout<M>(&self, msg: M, timeout: Duration) -> Result<M::Result, SendError>
    where
        A: Handler<Envelope<M>>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        match tokio::time::timeout(timeout, self.send(msg)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout {
                id: self.id().clone(),
            }),
        }
    }

    /// Queues a message without waiting for a reply (fire and forget).
    pub fn tell<M>(&self, msg: M) -> Result<(), SendError>
    where
        A: Handler<Envelope<M>>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        let guard = self.slot.addr.read();
        let Some(addr) = guard.as_ref() else {
            return Err(self.unavailable());
        };
        self.slot.core.note_enqueued();
        addr.do_send(Envelope::new(msg, self.slot.core.clone()));
        Ok(())
    }

    /// Sends a message; if the incarnation dies or is restarting, sends it again to the
    /// next one, until `deadline` has passed. Only children whose spec declared
    /// redelivery safe get a second delivery; for others this is [`Self::send`].
    pub async fn send_redelivering<M>(
        &self,
        msg: M,
        deadline: Duration,
    ) -> Result<M::Result, SendError>
    where
        A: Handler<Envelope<M>>,
        M: Message + Clone + Send + 'static,
        M::Result: Send,
    {
        if !self.slot.core.redeliver {
            return self.send(msg).await;
        }
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let incarnation = self.slot.core.incarnation();
            // Register interest before trying, so a start in between is not missed.
            let started = self.slot.core.started.notified();
            let err = match self.send(msg.clone()).await {
                Ok(reply) => return Ok(reply),
                Err(err) if err.may_succeed_later() => err,
                Err(err) => return Err(err),
            };
            if self.slot.core.incarnation() != incarnation && self.slot.addr.read().is_some() {
                continue;
            }
            if tokio::time::timeout_at(until, started).await.is_err() {
                return Err(err);
            }
        }
    }

    fn mailbox_error(&self, err: MailboxError) -> SendError {
        let id = self.id().clone();
        match err {
            MailboxError::Closed => SendError::Closed { id },
            MailboxError::Timeout => SendError::Timeout { id },
        }
    }
}

/// Given to a child's factory on every (re)start: who it is and how to stop with an error.
#[derive(Clone)]
pub struct ChildCtx {
    pub(crate) core: Arc<ChildCore>,
    pub(crate) incarnation: u64,
}

impl ChildCtx {
    /// The child's id.
    pub fn id(&self) -> &ActorId {
        &self.core.id
    }

    /// This incarnation's number, from 1.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Stops the actor with an error: the supervisor sees `ExitReason::Error(reason)`
    /// (a transient child is restarted; a normal `ctx.stop()` is a normal exit).
    pub fn fail<A>(&self, ctx: &mut Context<A>, reason: impl Into<String>)
    where
        A: Actor<Context = Context<A>>,
    {
        self.core.set_exit_error(self.incarnation, reason.into());
        actix::ActorContext::stop(ctx);
    }
}
