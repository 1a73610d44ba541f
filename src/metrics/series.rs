//! The series one answered message observes, resolved once per agent (and messenger) and
//! kept, instead of looked up at every observation.
//!
//! Why this exists: an answered message records its queue wait, its first words, its final
//! reply, the time since the messenger's own timestamp, and its agent turn's duration. Through
//! prometheus-client's `Family::get_or_create` each observation builds its label set (the
//! agent's name copied into a new `String`) and hashes it under the family's lock, on the
//! thread every room actor shares. A series is still created by its first observation (a
//! series nobody observed is not exported, as before), then observed directly: the families
//! are never cleared, so a kept series is always the exported one.

use std::sync::OnceLock;

use prometheus_client::metrics::histogram::Histogram;

use super::ReplyStage;
use super::{AgentLabels, AgentStageLabels, AgentSurfaceLabels, Metrics, ReplyHistogram};

/// The reply latency series of one agent on one messenger ([`Metrics::reply_series`]).
#[derive(Debug)]
pub struct ReplySeries {
    agent: String,
    surface: &'static str,
    queue_wait: OnceLock<Histogram>,
    first_words: OnceLock<ReplyHistogram>,
    final_reply: OnceLock<ReplyHistogram>,
    from_origin: OnceLock<Histogram>,
}

impl ReplySeries {
    pub(super) fn new(agent: &str, surface: &'static str) -> Self {
        Self {
            agent: agent.to_owned(),
            surface,
            queue_wait: OnceLock::new(),
            first_words: OnceLock::new(),
            final_reply: OnceLock::new(),
            from_origin: OnceLock::new(),
        }
    }

    /// The agent these series are labelled with.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The messenger these series are labelled with.
    pub fn surface(&self) -> &'static str {
        self.surface
    }

    fn agent_surface(&self) -> AgentSurfaceLabels {
        AgentSurfaceLabels {
            agent: self.agent.clone(),
            surface: self.surface,
        }
    }

    pub(super) fn queue_wait(&self, metrics: &Metrics) -> &Histogram {
        self.queue_wait.get_or_init(|| {
            metrics
                .queue_wait
                .get_or_create_owned(&self.agent_surface())
        })
    }

    pub(super) fn reply_from_origin(&self, metrics: &Metrics) -> &Histogram {
        self.from_origin.get_or_init(|| {
            metrics
                .reply_from_origin
                .get_or_create_owned(&self.agent_surface())
        })
    }

    pub(super) fn reply_latency(&self, metrics: &Metrics, stage: ReplyStage) -> &ReplyHistogram {
        let cell = match stage {
            ReplyStage::First => &self.first_words,
            ReplyStage::Final => &self.final_reply,
        };
        cell.get_or_init(|| {
            metrics
                .reply_latency
                .get_or_create_owned(&AgentStageLabels {
                    agent: self.agent.clone(),
                    surface: self.surface,
                    stage: stage.label(),
                })
        })
    }
}

/// The turn duration series of one agent ([`Metrics::turn_series`]), kept by its connection.
#[derive(Debug)]
pub struct TurnSeries {
    agent: String,
    duration: OnceLock<Histogram>,
}

impl TurnSeries {
    pub(super) fn new(agent: &str) -> Self {
        Self {
            agent: agent.to_owned(),
            duration: OnceLock::new(),
        }
    }

    /// The agent this series is labelled with.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    pub(super) fn duration(&self, metrics: &Metrics) -> &Histogram {
        self.duration.get_or_init(|| {
            metrics.turn_duration.get_or_create_owned(&AgentLabels {
                agent: self.agent.clone(),
            })
        })
    }
}
