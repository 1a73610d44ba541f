//! Test helpers: await supervision events and conditions with a timeout.
//!
//! Both wait on tokio timers, so they work under paused time (`tokio::time::pause()`),
//! where the runtime advances the clock whenever every task is idle.

use std::time::Duration;

use thiserror::Error;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::health::{EventKind, Registry, SupervisionEvent};
use crate::id::ActorId;

/// How often [`wait_until`] re-checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// A wait that ran out of time.
#[derive(Debug, Error)]
#[error("timed out after {after:?} waiting for {what}")]
pub struct WaitTimeout {
    /// What was awaited.
    pub what: String,
    /// The timeout.
    pub after: Duration,
}

/// Polls `cond` until it holds, or fails after `timeout`.
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<(), WaitTimeout> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(WaitTimeout {
                what: what.to_owned(),
                after: timeout,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Listens to a registry's supervision events from the moment it is made.
pub struct EventProbe {
    rx: broadcast::Receiver<SupervisionEvent>,
    /// Events seen so far, in order (including the ones that matched).
    pub seen: Vec<SupervisionEvent>,
}

impl EventProbe {
    /// Starts listening.
    pub fn new(registry: &Registry) -> Self {
        Self {
            rx: registry.subscribe(),
            seen: Vec::new(),
        }
    }

    /// Waits for the next event matching `pred`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&SupervisionEvent) -> bool,
    ) -> Result<SupervisionEvent, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || WaitTimeout {
            what: what.to_owned(),
            after: timeout,
        };
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return Err(timed_out()),
                Ok(Ok(event)) => {
                    self.seen.push(event.clone());
                    if pred(&event) {
                        return Ok(event);
                    }
                }
                // Fell behind: the missed events are gone; keep listening.
                Ok(Err(RecvError::Lagged(_))) => continue,
                Ok(Err(RecvError::Closed)) => return Err(timed_out()),
            }
        }
    }

    /// Waits for an event of `id` whose kind matches `pred`.
    pub async fn wait_for_actor(
        &mut self,
        id: &ActorId,
        timeout: Duration,
        pred: impl Fn(&EventKind) -> bool,
    ) -> Result<EventKind, WaitTimeout> {
        let what = format!("an event of {id}");
        self.wait_for(&what, timeout, |e| &e.id == id && pred(&e.kind))
            .await
            .map(|e| e.kind)
    }
}
