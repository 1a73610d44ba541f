//! One actor per configured agent: the connection to that agent.
//!
//! It owns the agent client, bounds how many turns run at once (config
//! `agents[].max_concurrent_turns`), retries transient failures with backoff, and keeps
//! the connection's health (in-flight turns, last error) for operators. A turn is handed
//! out as a future ([`TurnFuture`]) that its room awaits in its own context: one slow turn
//! never blocks another room's turn, and the connection's context does not carry every
//! room's turn (that cost a third of the pipeline's throughput, `ops/bench/RESULTS.md`,
//! "Where a turn runs"). The request still goes through the connection's mailbox, so its
//! supervision and fault drills apply to every turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, Context, Handler, Message, ResponseFuture};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::agent::{
    turn_with_retry_observed, AgentClient, AgentError, RetryPolicy, TurnOutcome, TurnRequest,
};
use crate::metrics::{Metrics, TurnSeries};

/// What operators see of an agent connection.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Turns running now.
    pub in_flight: AtomicUsize,
    /// The last failed turn's error, if the last turn failed.
    pub last_error: Mutex<Option<String>>,
}

/// One turn counted in [`AgentStats::in_flight`] while it lives.
struct InFlight(Arc<AgentStats>);

impl InFlight {
    fn count(stats: &Arc<AgentStats>) -> Self {
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(stats.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The actor.
pub struct AgentConn {
    agent_id: String,
    metrics: Arc<Metrics>,
    /// The agent's turn duration series, made once for every turn.
    turn_series: Arc<TurnSeries>,
    client: Arc<AgentClient>,
    permits: Arc<Semaphore>,
    retry: RetryPolicy,
    stats: Arc<AgentStats>,
}

impl AgentConn {
    /// The connection to agent `agent_id` using `client`, at most `max_concurrent` turns
    /// at once; turn durations go to `metrics`.
    pub fn new(
        agent_id: String,
        client: Arc<AgentClient>,
        max_concurrent: usize,
        stats: Arc<AgentStats>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            turn_series: Arc::new(metrics.turn_series(&agent_id)),
            agent_id,
            metrics,
            client,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            retry: RetryPolicy::AGENT,
            stats,
        }
    }
}

impl Actor for AgentConn {
    type Context = Context<Self>;
}
actors::supervised_actor!(AgentConn);

/// A turn handed out by its connection: awaiting it runs the turn (waiting for a permit
/// first, retrying transient failures) on the awaiting task's thread.
pub type TurnFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<TurnOutcome, AgentError>> + Send>>;

/// Hands out one turn on this agent, to be run by the caller ([`TurnFuture`]).
#[derive(Message)]
#[rtype(result = "TurnFuture")]
pub struct RunTurn {
    /// The room's platform chat id.
    pub chat_id: String,
    /// The person's message the turn answers: its id is the `msg` field of the turn's span,
    /// as of every other log line of that message (spans do not cross actor mailboxes).
    pub message: crate::surface::MessageId,
    /// The turn.
    pub request: TurnRequest,
    /// Where the reply text and progress go as they arrive (a live reply), if anywhere.
    pub live: Option<tokio::sync::mpsc::UnboundedSender<Live>>,
}

/// What a turn says while it runs, for a live reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Live {
    /// More reply text.
    Delta(String),
    /// A progress line (replaces the previous one).
    Status(String),
    /// The turn is tried again: what was heard so far is replayed from the start.
    Restart,
}

impl Handler<RunTurn> for AgentConn {
    type Result = actix::MessageResult<RunTurn>;

    fn handle(&mut self, msg: RunTurn, _: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        let permits = self.permits.clone();
        let retry = self.retry;
        let stats = self.stats.clone();
        let (series, metrics) = (self.turn_series.clone(), self.metrics.clone());
        // `msg` ties these logs to the intake's and the room's of the same message; the turn
        // id (derived from it) is what the agent's own logs show.
        let span = tracing::info_span!("agent_turn", msg = %msg.message, agent = %self.agent_id,
            chat_id = %msg.chat_id, turn_id = %msg.request.turn_id);
        let turn = async move {
            // The semaphore is never closed; a closed one would mean no limit to apply.
            let _permit = permits.acquire_owned().await.ok();
            // Counted out when the turn ends or is dropped (its room stopped mid-turn).
            let _counted = InFlight::count(&stats);
            tracing::debug!("turn started");
            let started = Instant::now();
            let mut first_event = true;
            let live = msg.live;
            let mut on_event = |event: &crate::agent::AgentEvent| {
                if std::mem::take(&mut first_event) {
                    crate::crash::point(crate::crash::CrashPoint::DuringTurn);
                }
                let said = match event {
                    crate::agent::AgentEvent::Delta { text } => Live::Delta(text.clone()),
                    crate::agent::AgentEvent::Status { text } => Live::Status(text.clone()),
                    _ => return,
                };
                if let Some(live) = &live {
                    // A live reply that ended early (its post failed) no longer listens.
                    let _ = live.send(said);
                }
            };
            let mut on_retry = || {
                if let Some(live) = &live {
                    let _ = live.send(Live::Restart);
                }
            };
            let result = turn_with_retry_observed(
                &client,
                &msg.chat_id,
                &msg.request,
                retry,
                &mut on_event,
                &mut on_retry,
            )
            .await;
            let took = started.elapsed();
            tracing::debug!(?took, ok = result.is_ok(), "turn finished");
            metrics.turn_finished(&series, took);
            *stats.last_error.lock() = result.as_ref().err().map(ToString::to_string);
            result
        };
        let turn: TurnFuture = Box::pin(tracing::Instrument::instrument(turn, span));
        actix::MessageResult(turn)
    }
}

/// A call to the agent other than a turn (context management, cancel, confirmations).
#[derive(Message)]
#[rtype(result = "Result<CallOutcome, AgentError>")]
pub struct AgentCall {
    /// The room's platform chat id.
    pub chat_id: String,
    /// The call.
    pub call: Call,
}

/// The calls of `docs/agent-api.md` besides turns.
#[derive(Clone, Debug)]
pub enum Call {
    /// `GET /v1/chats/{chat}/context`.
    Context,
    /// `POST /v1/chats/{chat}/snapshots`.
    Save {
        /// The snapshot's name.
        name: String,
    },
    /// `POST /v1/chats/{chat}/restore`.
    Restore {
        /// The snapshot's name.
        snapshot: String,
        /// The chat it was saved in, when another room's.
        from_chat: Option<String>,
    },
    /// `DELETE /v1/chats/{chat}`.
    Delete,
    /// `POST /v1/chats/{chat}/turns/{turn_id}/cancel`.
    Cancel {
        /// The turn.
        turn_id: String,
    },
    /// `POST /v1/chats/{chat}/confirmations/{confirm_id}`: continues the turn.
    Confirm {
        /// The agent's confirmation id.
        confirm_id: String,
        /// The person's answer.
        approved: bool,
        /// The turn being continued.
        turn_id: String,
    },
}

/// What an [`AgentCall`] returned.
#[derive(Debug)]
pub enum CallOutcome {
    /// The chat's context.
    Context(crate::agent::ContextInfo),
    /// The saved snapshot.
    Saved(crate::agent::SnapshotInfo),
    /// Done, nothing to show.
    Done,
    /// The rest of a confirmed turn.
    Turn(TurnOutcome),
}

impl Handler<AgentCall> for AgentConn {
    type Result = ResponseFuture<Result<CallOutcome, AgentError>>;

    fn handle(&mut self, msg: AgentCall, _: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        Box::pin(async move {
            let chat = msg.chat_id.as_str();
            match msg.call {
                Call::Context => client.context(chat).await.map(CallOutcome::Context),
                Call::Save { name } => client
                    .save_snapshot(chat, &name)
                    .await
                    .map(CallOutcome::Saved),
                Call::Restore {
                    snapshot,
                    from_chat,
                } => client
                    .restore(chat, &snapshot, from_chat.as_deref())
                    .await
                    .map(|()| CallOutcome::Done),
                Call::Delete => client.delete_chat(chat).await.map(|()| CallOutcome::Done),
                Call::Cancel { turn_id } => client
                    .cancel(chat, &turn_id)
                    .await
                    .map(|()| CallOutcome::Done),
                Call::Confirm {
                    confirm_id,
                    approved,
                    turn_id,
                } => client
                    .confirm(chat, &confirm_id, approved, &turn_id)
                    .await
                    .map(CallOutcome::Turn),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_is_counted_in_flight_until_it_ends_or_is_dropped() {
        let stats = Arc::new(AgentStats::default());
        let first = InFlight::count(&stats);
        let second = InFlight::count(&stats);
        assert_eq!(stats.in_flight.load(Ordering::Relaxed), 2);
        drop(first);
        assert_eq!(stats.in_flight.load(Ordering::Relaxed), 1);
        drop(second);
        assert_eq!(stats.in_flight.load(Ordering::Relaxed), 0);
    }
}
