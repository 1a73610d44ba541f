//! One actor per configured agent: the connection to that agent.
//!
//! It owns the agent client, bounds how many turns run at once (config
//! `agents[].max_concurrent_turns`), retries transient failures with backoff, and keeps
//! the connection's health (in-flight turns, last error) for operators. Turns run as
//! futures inside the actor, so one slow turn never blocks another room's turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, Context, Handler, Message, ResponseFuture};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::agent::{
    turn_with_retry, AgentClient, AgentError, RetryPolicy, TurnOutcome, TurnRequest,
};
use crate::ops::Metrics;

/// What operators see of an agent connection.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Turns running now.
    pub in_flight: AtomicUsize,
    /// The last failed turn's error, if the last turn failed.
    pub last_error: Mutex<Option<String>>,
}

/// The actor.
pub struct AgentConn {
    agent_id: String,
    metrics: Arc<Metrics>,
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
            agent_id,
            metrics,
            client,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            retry: RetryPolicy::DEFAULT,
            stats,
        }
    }
}

impl Actor for AgentConn {
    type Context = Context<Self>;
}
actors::supervised_actor!(AgentConn);

/// Runs one turn on this agent (retrying transient failures) and returns its outcome.
#[derive(Message)]
#[rtype(result = "Result<TurnOutcome, AgentError>")]
pub struct RunTurn {
    /// The room's platform chat id.
    pub chat_id: String,
    /// The turn.
    pub request: TurnRequest,
}

impl Handler<RunTurn> for AgentConn {
    type Result = ResponseFuture<Result<TurnOutcome, AgentError>>;

    fn handle(&mut self, msg: RunTurn, _: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        let permits = self.permits.clone();
        let retry = self.retry;
        let stats = self.stats.clone();
        let (agent_id, metrics) = (self.agent_id.clone(), self.metrics.clone());
        Box::pin(async move {
            // The semaphore is never closed; a closed one would mean no limit to apply.
            let _permit = permits.acquire_owned().await.ok();
            stats.in_flight.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let mut first_event = true;
            let mut on_event = |_: &crate::agent::AgentEvent| {
                if std::mem::take(&mut first_event) {
                    crate::crash::point(crate::crash::CrashPoint::DuringTurn);
                }
            };
            let result =
                turn_with_retry(&client, &msg.chat_id, &msg.request, retry, &mut on_event).await;
            metrics.turn_finished(&agent_id, started.elapsed());
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            *stats.last_error.lock() = result.as_ref().err().map(ToString::to_string);
            result
        })
    }
}
