//! Metrics of a running bot, recorded by the runtime and served by the ops endpoint at
//! `/metrics`.
//!
//! Why this file exists: operators alert on numbers, not on log lines. It is a leaf: the
//! runtime and the adapters record here, the ops endpoint only exposes it. The metrics are
//! kept with `prometheus-client` and named `surfaces_*`, in base units (seconds), counters
//! ending in `_total`. No label carries a room id or a user id: a label per room would make
//! one time series per room (cardinality); per-room detail lives in `/status`.
//!
//! Two kinds of numbers:
//! - recorded where they happen: message outcomes (room actors, [`Metrics::message`]),
//!   agent turn durations (agent connections, [`Metrics::turn_finished`]), reply latency as
//!   the person feels it and the queue wait before a turn (room actors, through
//!   `runtime::room::latency`), messages refused by a limit (the intake and room actors,
//!   [`Metrics::refused`]), restarts and give-ups (a task following the supervision events,
//!   [`Metrics::follow`]);
//! - read at scrape time from the running bot ([`Observed`]): actors by kind and state,
//!   mailbox depth by kind, turns in flight, sync lag and failures, readiness, messages
//!   pending in the inbound journal.
//!
//! Messages, final reply latencies, turn times and restarts also feed the last hour's
//! minute-by-minute trends ([`Metrics::trends`]), which `/status` draws as charts.
//!
//! The exposition is OpenMetrics when the scraper asks for it (`Accept:
//! application/openmetrics-text`, as Prometheus does), else the classic Prometheus text
//! format 0.0.4 (curl, older scrapers, text parsers).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use actors::{ActorHealth, ActorId, ActorState, EventKind, SupervisionEvent};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast::error::RecvError;

use crate::idmap::IdMap;
use crate::telemetry::trends::{TrendWindow, Trends};

mod series;
pub use series::{ReplySeries, TurnSeries};

/// Prefix of every metric name.
pub const METRIC_PREFIX: &str = "surfaces";
/// Upper bounds (seconds) of the agent turn duration buckets: from a quick echo to the
/// longest configurable turns (agents time out after `agents[].timeout_secs`, 120 s default).
pub const TURN_DURATION_BUCKETS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];
/// Upper bounds (seconds) of the reply latency buckets (a person's message accepted → the
/// first words or the final reply accepted by the messenger): from an echo answered at once,
/// through the seconds a person notices, to a turn at its 120 s default timeout and a queue
/// ahead of it.
pub const REPLY_LATENCY_BUCKETS: [f64; 17] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0,
];
/// Upper bounds (seconds) of the queue wait buckets (a message accepted → its agent turn
/// started): usually one flush and a hop between actors (milliseconds), longer behind a
/// running turn of the same chat.
pub const QUEUE_WAIT_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Content type of the OpenMetrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text exposition.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The most characters an exemplar's label set may hold, names and values together
/// (OpenMetrics 1.0: 128 UTF-8 characters).
pub const EXEMPLAR_MAX_CHARS: usize = 128;
/// The exemplar label of `surfaces_reply_latency_seconds`: the message's id, as on the
/// `msg` field of its log lines.
pub const EXEMPLAR_LABEL: &str = "message_id";
/// The restart reason recorded when the exit that caused a restart was not seen (e.g. the
/// event stream lagged).
const UNKNOWN_REASON: &str = "unknown";

/// How a person's message ended, as counted by `surfaces_messages_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageOutcome {
    /// The agent's answer was sent as a reply.
    Replied,
    /// The agent answered with an error (a notice explained it).
    AgentError,
    /// The agent's connection actor could not be reached (restarting or failed).
    AgentUnavailable,
    /// The room is bound to an agent that is no longer configured.
    StaleAgent,
    /// Something of ours failed (store, router, sending the reply).
    InternalError,
    /// Not taken: the person was past their rate (`limits.messages_per_minute`).
    Limited,
}

impl MessageOutcome {
    /// Every outcome (each is exported from the start, at 0).
    pub const ALL: [MessageOutcome; 6] = [
        MessageOutcome::Replied,
        MessageOutcome::AgentError,
        MessageOutcome::AgentUnavailable,
        MessageOutcome::StaleAgent,
        MessageOutcome::InternalError,
        MessageOutcome::Limited,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            MessageOutcome::Replied => "replied",
            MessageOutcome::AgentError => "agent_error",
            MessageOutcome::AgentUnavailable => "agent_unavailable",
            MessageOutcome::StaleAgent => "stale_agent",
            MessageOutcome::InternalError => "internal_error",
            MessageOutcome::Limited => "limited",
        }
    }
}

/// Which part of a reply reached the person, as labelled in
/// `surfaces_reply_latency_seconds{stage}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyStage {
    /// The first words: a live reply's first post, or the whole reply when not streamed.
    First,
    /// The whole reply, sent (a live reply: its final edit and the parts after it).
    Final,
}

impl ReplyStage {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            ReplyStage::First => "first",
            ReplyStage::Final => "final",
        }
    }
}

/// Why a person's message was not taken, as counted by
/// `surfaces_messages_refused_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The person was past their rate (`limits.messages_per_minute`, the intake).
    RateLimited,
    /// The chat's queue was full (`limits.room_queue_max`, the room actor).
    QueueFull,
    /// Too many `!cancel` in flight (`limits.max_concurrent_cancels`, the intake).
    CancelsBusy,
    /// A file over `files.max_bytes` (the room actor).
    FileTooLarge,
}

impl Refusal {
    /// Every reason (each is exported from the start, at 0).
    pub const ALL: [Refusal; 4] = [
        Refusal::RateLimited,
        Refusal::QueueFull,
        Refusal::CancelsBusy,
        Refusal::FileTooLarge,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::RateLimited => "rate_limited",
            Refusal::QueueFull => "queue_full",
            Refusal::CancelsBusy => "cancels_busy",
            Refusal::FileTooLarge => "file_too_large",
        }
    }
}

/// Which exposition format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposition {
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// Prometheus text 0.0.4.
    Prometheus,
}

impl Exposition {
    /// The format an `Accept` header asks for (OpenMetrics only when named).
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => {
                Exposition::OpenMetrics
            }
            _ => Exposition::Prometheus,
        }
    }

    /// The response's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Exposition::Prometheus => PROMETHEUS_CONTENT_TYPE,
        }
    }
}

/// What catch-up (filling the gaps a messenger left in its timelines) did since start-up;
/// the adapters count, the metrics expose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CatchUpSnapshot {
    /// Timelines of managed chats cut short (gaps).
    pub gaps: u64,
    /// Messages found by paging back into gaps and delivered.
    pub backfilled: u64,
    /// Messages left out by the age bound.
    pub skipped_too_old: u64,
    /// Messages left out by the count bound.
    pub skipped_too_many: u64,
    /// Gaps given up on because they could not be fetched.
    pub unreadable_gaps: u64,
    /// Reads not handled in full (the range is read again).
    pub failed_rounds: u64,
}

/// Messages the bot could not decrypt ([`crate::surface::undecryptable`]): what happened
/// since start-up, and what the journal holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UndecryptableSnapshot {
    /// Held since start-up because they could not be decrypted.
    pub held: u64,
    /// Decrypted later (their key arrived) since start-up.
    pub decrypted: u64,
    /// Given up on after the grace period since start-up (their person was told).
    pub given_up: u64,
    /// Held now, still within their grace period.
    pub waiting_now: usize,
    /// Held now, given up on (answered still if their key comes).
    pub given_up_now: usize,
}

impl UndecryptableSnapshot {
    /// One line for `/readyz?verbose` and `surfaces status`.
    pub fn summary(&self) -> String {
        format!(
            "undecryptable messages: {} waiting for their key, {} given up (the person was \
             told)",
            self.waiting_now, self.given_up_now
        )
    }

    /// The snapshot of `journal` now.
    pub fn of(journal: &crate::journal::Journal) -> Self {
        let (held, decrypted, given_up) = journal.undecryptable_counts().snapshot();
        let (waiting_now, given_up_now) = journal.undecryptable_now();
        Self {
            held,
            decrypted,
            given_up,
            waiting_now,
            given_up_now,
        }
    }
}

/// What is read from the running bot at scrape time.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Every supervised actor.
    pub actors: Vec<ActorHealth>,
    /// Per agent id: turns running now.
    pub turns_in_flight: Vec<(String, usize)>,
    /// Time since the last successful sync (`None`: never).
    pub since_last_sync: Option<Duration>,
    /// Failed syncs since the last success.
    pub sync_failures: u32,
    /// Every messenger's inbound loop: (messenger, time since its last success, failures
    /// since then).
    pub inbound: Vec<(String, Option<Duration>, u32)>,
    /// Whether `/readyz` would answer 200.
    pub ready: bool,
    /// Messages accepted in the inbound journal and not answered yet.
    pub journal_pending: usize,
    /// What catch-up did since start-up (gaps, back-filled and skipped messages).
    pub catch_up: CatchUpSnapshot,
    /// Messages that could not be decrypted.
    pub undecryptable: UndecryptableSnapshot,
    /// Managed chats whose actor is active now.
    pub rooms_active: usize,
    /// Managed chats in all, active and idle (`None`: the store could not say).
    pub rooms_managed: Option<usize>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    surface: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentSurfaceLabels {
    agent: String,
    surface: &'static str,
}

/// The exemplar of a reply latency observation: the message it timed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageExemplar {
    message_id: String,
}

/// Whether `value` fits an exemplar label set as the value of [`EXEMPLAR_LABEL`].
pub fn fits_exemplar(value: &str) -> bool {
    EXEMPLAR_LABEL.chars().count() + value.chars().count() <= EXEMPLAR_MAX_CHARS
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SurfaceLabels {
    surface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindStateLabels {
    kind: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindReasonLabels {
    kind: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentStageLabels {
    agent: String,
    surface: &'static str,
    stage: &'static str,
}

fn turn_histogram() -> Histogram {
    Histogram::new(TURN_DURATION_BUCKETS)
}

fn reply_histogram() -> Histogram {
    Histogram::new(REPLY_LATENCY_BUCKETS)
}

fn reply_exemplar_histogram() -> HistogramWithExemplars<MessageExemplar> {
    HistogramWithExemplars::new(REPLY_LATENCY_BUCKETS.into_iter())
}

fn queue_histogram() -> Histogram {
    Histogram::new(QUEUE_WAIT_BUCKETS)
}

/// A reply latency histogram, each bucket with the id of the message last timed in it.
type ReplyHistogram = HistogramWithExemplars<MessageExemplar>;

/// The bot's metrics. Shared as `Arc<Metrics>` by the runtime and the ops endpoint.
pub struct Metrics {
    registry: Registry,
    /// Scrapes refresh the scrape-time gauges then encode: one at a time.
    scrape: Mutex<()>,
    created: Instant,
    messages: Family<OutcomeLabels, Counter>,
    turn_duration: Family<AgentLabels, Histogram, fn() -> Histogram>,
    reply_latency: Family<AgentStageLabels, ReplyHistogram, fn() -> ReplyHistogram>,
    reply_from_origin: Family<AgentSurfaceLabels, Histogram, fn() -> Histogram>,
    queue_wait: Family<AgentSurfaceLabels, Histogram, fn() -> Histogram>,
    refused: Family<ReasonLabels, Counter>,
    restarts: Family<KindReasonLabels, Counter>,
    gave_up: Family<KindLabels, Counter>,
    actors: Family<KindStateLabels, Gauge>,
    mailbox_depth: Family<KindLabels, Gauge>,
    turns_in_flight: Family<AgentLabels, Gauge>,
    sync_lag: Gauge<f64, AtomicU64>,
    inbound_lag: Family<SurfaceLabels, Gauge<f64, AtomicU64>>,
    inbound_failures: Family<SurfaceLabels, Gauge>,
    sync_failures: Gauge,
    ready: Gauge,
    journal_pending: Gauge,
    rooms: Family<StateLabels, Gauge>,
    sync_gaps: Counter,
    sync_backfilled: Counter,
    sync_skipped: Family<ReasonLabels, Counter>,
    sync_unreadable_gaps: Counter,
    sync_failed_rounds: Counter,
    undecryptable: Family<EventLabels, Counter>,
    undecryptable_now: Family<StateLabels, Gauge>,
    /// The last hour, minute by minute, for the charts of `/status`.
    trends: Mutex<TrendWindow>,
    /// The reply latency series made so far, by agent then messenger ([`series`]).
    reply_series: Mutex<IdMap<String, Vec<Arc<ReplySeries>>>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics (every message outcome exported at 0).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(METRIC_PREFIX);
        let messages = Family::<OutcomeLabels, Counter>::default();
        let turn_duration =
            Family::<AgentLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                turn_histogram,
            );
        let reply_latency =
            Family::<AgentStageLabels, ReplyHistogram, fn() -> ReplyHistogram>::new_with_constructor(
                reply_exemplar_histogram,
            );
        let reply_from_origin =
            Family::<AgentSurfaceLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                reply_histogram,
            );
        let queue_wait =
            Family::<AgentSurfaceLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                queue_histogram,
            );
        let refused = Family::<ReasonLabels, Counter>::default();
        let restarts = Family::<KindReasonLabels, Counter>::default();
        let gave_up = Family::<KindLabels, Counter>::default();
        let actors = Family::<KindStateLabels, Gauge>::default();
        let mailbox_depth = Family::<KindLabels, Gauge>::default();
        let turns_in_flight = Family::<AgentLabels, Gauge>::default();
        let sync_lag = Gauge::<f64, AtomicU64>::default();
        let inbound_lag = Family::<SurfaceLabels, Gauge<f64, AtomicU64>>::default();
        let inbound_failures = Family::<SurfaceLabels, Gauge>::default();
        let sync_failures = Gauge::default();
        let ready = Gauge::default();
        let journal_pending = Gauge::default();
        let rooms = Family::<StateLabels, Gauge>::default();
        let sync_gaps = Counter::default();
        let sync_backfilled = Counter::default();
        let sync_skipped = Family::<ReasonLabels, Counter>::default();
        let sync_unreadable_gaps = Counter::default();
        let sync_failed_rounds = Counter::default();
        let undecryptable = Family::<EventLabels, Counter>::default();
        let undecryptable_now = Family::<StateLabels, Gauge>::default();

        registry.register(
            "messages",
            "People's messages handled by room actors, by messenger (surface) and outcome \
             (replied, agent_error, agent_unavailable, stale_agent, internal_error, limited)",
            messages.clone(),
        );
        registry.register(
            "agent_turn_duration_seconds",
            "Duration of agent turns (retries included), by agent id",
            turn_duration.clone(),
        );
        registry.register(
            "reply_latency_seconds",
            "Time from a person's message accepted by the intake to the reply accepted by the \
             messenger, by agent id, messenger (surface) and stage (first: the first words, a \
             live reply's first post; final: the whole reply); exemplars carry the message's id \
             (message_id, the msg field of its log lines)",
            reply_latency.clone(),
        );
        registry.register(
            "reply_latency_from_origin_seconds",
            "Time from the messenger's own timestamp of a person's message to the whole reply \
             accepted by the messenger (includes the sync lag), by agent id and messenger; only for \
             messengers that give the timestamp (Matrix: origin_server_ts)",
            reply_from_origin.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "Time from a person's message accepted by the intake to its agent turn started \
             (the journal's flush and the wait behind the chat's earlier messages), by agent id \
             and messenger",
            queue_wait.clone(),
        );
        registry.register(
            "messages_refused",
            "People's messages not taken because of a limit, by reason (rate_limited: \
             limits.messages_per_minute; queue_full: limits.room_queue_max; cancels_busy: \
             limits.max_concurrent_cancels; file_too_large: files.max_bytes)",
            refused.clone(),
        );
        registry.register(
            "actor_restarts",
            "Restarts of supervised actors, by actor kind and the reason of the exit that \
             caused them (error, panic, killed, lost, normal)",
            restarts.clone(),
        );
        registry.register(
            "actor_gave_up",
            "Actors marked failed after exceeding their restart intensity, by kind",
            gave_up.clone(),
        );
        registry.register(
            "actors",
            "Supervised actors, by kind and state",
            actors.clone(),
        );
        registry.register(
            "mailbox_depth",
            "Messages queued for supervised actors and not handled yet, summed by actor kind",
            mailbox_depth.clone(),
        );
        registry.register(
            "agent_turns_in_flight",
            "Agent turns running now, by agent id",
            turns_in_flight.clone(),
        );
        registry.register(
            "sync_lag_seconds",
            "Seconds since the last successful Matrix sync (since start-up while none \
             succeeded yet)",
            sync_lag.clone(),
        );
        registry.register(
            "inbound_lag_seconds",
            "Seconds since each messenger's inbound loop last read successfully (Matrix: \
             sync; Telegram: getUpdates), by messenger",
            inbound_lag.clone(),
        );
        registry.register(
            "inbound_consecutive_failures",
            "Failed reads of each messenger's inbound loop since its last success, by messenger",
            inbound_failures.clone(),
        );
        registry.register(
            "sync_consecutive_failures",
            "Failed Matrix syncs since the last successful one",
            sync_failures.clone(),
        );
        registry.register(
            "ready",
            "1 when the bot is ready (what /readyz reports), else 0",
            ready.clone(),
        );
        registry.register(
            "journal_pending",
            "Messages accepted in the inbound journal and not answered yet",
            journal_pending.clone(),
        );
        registry.register(
            "rooms",
            "Managed chats by state: active (their actor runs) or idle (passivated after \
             supervision.room_idle_secs: only their record; the next message activates them)",
            rooms.clone(),
        );
        registry.register(
            "sync_gaps",
            "Timelines of managed rooms that a sync cut short (each gap is filled by paging \
             back, so its messages are answered in order)",
            sync_gaps.clone(),
        );
        registry.register(
            "sync_backfilled_messages",
            "Messages found by paging back into gaps and handed to the room actors",
            sync_backfilled.clone(),
        );
        registry.register(
            "sync_catch_up_skipped",
            "Messages a catch-up left unanswered because of its bounds (too_old: \
             sync.catch_up_max_age_secs, too_many: sync.catch_up_max_messages); the room is told",
            sync_skipped.clone(),
        );
        registry.register(
            "sync_unreadable_gaps",
            "Gaps given up on because they could not be fetched (the room is told)",
            sync_unreadable_gaps.clone(),
        );
        registry.register(
            "sync_failed_rounds",
            "Sync responses not handled in full (a gap could not be fetched): the same range \
             is read again",
            sync_failed_rounds.clone(),
        );
        registry.register(
            "undecryptable_messages",
            "Messages the bot could not decrypt (their room key had not reached its device), \
             by event: held (kept in the journal), decrypted (read later, when the key came), \
             given_up (still unreadable after matrix.undecryptable_grace_secs; the person is \
             told)",
            undecryptable.clone(),
        );
        registry.register(
            "undecryptable_messages_held",
            "Messages the journal holds because they cannot be decrypted yet, by state \
             (waiting: within the grace period; given_up: the person was told)",
            undecryptable_now.clone(),
        );
        for event in UNDECRYPTABLE_EVENTS {
            let _ = undecryptable.get_or_create(&EventLabels { event });
        }
        for reason in SKIP_REASONS {
            let _ = sync_skipped.get_or_create(&ReasonLabels { reason });
        }
        for reason in Refusal::ALL {
            let _ = refused.get_or_create(&ReasonLabels {
                reason: reason.label(),
            });
        }
        Self {
            registry,
            scrape: Mutex::new(()),
            created: Instant::now(),
            messages,
            turn_duration,
            reply_latency,
            reply_from_origin,
            queue_wait,
            refused,
            restarts,
            gave_up,
            actors,
            mailbox_depth,
            turns_in_flight,
            sync_lag,
            inbound_lag,
            inbound_failures,
            sync_failures,
            ready,
            journal_pending,
            rooms,
            sync_gaps,
            sync_backfilled,
            sync_skipped,
            sync_unreadable_gaps,
            sync_failed_rounds,
            undecryptable,
            undecryptable_now,
            trends: Mutex::new(TrendWindow::default()),
            reply_series: Mutex::new(IdMap::default()),
        }
    }

    /// Fresh metrics following `registry`'s supervision events (restarts, give-ups) from
    /// now on, in a task that ends with the registry or the metrics.
    pub fn start(registry: &actors::Registry) -> Arc<Self> {
        let metrics = Arc::new(Self::new());
        metrics.follow(registry);
        metrics
    }

    /// Counts restarts and give-ups from `registry`'s events, in a spawned task.
    pub fn follow(self: &Arc<Self>, registry: &actors::Registry) {
        let mut events = registry.subscribe();
        let metrics: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tracker = RestartTracker::default();
            loop {
                match events.recv().await {
                    Ok(event) => {
                        let Some(metrics) = metrics.upgrade() else {
                            break;
                        };
                        tracker.on_event(&metrics, &event);
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "the metrics fell behind the supervision events; \
                             some restarts are not counted"
                        );
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
    }

    /// Exports every message outcome of the messenger `surface` at 0 (called as each
    /// messenger starts, so its series exist before its first message).
    pub fn messenger(&self, surface: &'static str) {
        for outcome in MessageOutcome::ALL {
            let _ = self.messages.get_or_create(&OutcomeLabels {
                surface,
                outcome: outcome.label(),
            });
        }
    }

    /// Counts one handled message of the messenger `surface`.
    pub fn message(&self, surface: &'static str, outcome: MessageOutcome) {
        self.messages
            .get_or_create(&OutcomeLabels {
                surface,
                outcome: outcome.label(),
            })
            .inc();
        self.trends.lock().message(SystemTime::now(), outcome);
    }

    /// The turn duration series of `agent`, for its connection to keep ([`series`]).
    pub fn turn_series(&self, agent: &str) -> TurnSeries {
        TurnSeries::new(agent)
    }

    /// Records one agent turn that took `duration` (whatever its result).
    pub fn turn_finished(&self, series: &TurnSeries, duration: Duration) {
        series.duration(self).observe(duration.as_secs_f64());
        self.trends
            .lock()
            .turn(SystemTime::now(), series.agent(), duration);
    }

    /// The reply latency series of `agent` on the messenger `surface` ([`series`]): made once
    /// per pair, then shared by every reply clock of that pair.
    pub fn reply_series(&self, agent: &str, surface: &'static str) -> Arc<ReplySeries> {
        let mut kept = self.reply_series.lock();
        let pairs = match kept.get_mut(agent) {
            Some(pairs) => pairs,
            None => kept.entry(agent.to_owned()).or_default(),
        };
        if let Some(series) = pairs.iter().find(|s| s.surface() == surface) {
            return Arc::clone(series);
        }
        let series = Arc::new(ReplySeries::new(agent, surface));
        pairs.push(Arc::clone(&series));
        series
    }

    /// Records that `stage` of a reply reached the messenger `took` after the person's
    /// message was accepted; `message_id` (the `msg` of its log lines) becomes the bucket's
    /// exemplar, unless it does not fit one ([`fits_exemplar`]).
    pub fn reply_latency(
        &self,
        series: &ReplySeries,
        stage: ReplyStage,
        took: Duration,
        message_id: &str,
    ) {
        let exemplar = fits_exemplar(message_id).then(|| MessageExemplar {
            message_id: message_id.to_owned(),
        });
        let now = SystemTime::now();
        series
            .reply_latency(self, stage)
            .observe(took.as_secs_f64(), exemplar, Some(now));
        if stage == ReplyStage::Final {
            self.trends.lock().reply(now, took);
        }
    }

    /// Records that a whole reply reached the messenger `took` after the messenger's own
    /// timestamp of the person's message.
    pub fn reply_from_origin(&self, series: &ReplySeries, took: Duration) {
        series.reply_from_origin(self).observe(took.as_secs_f64());
    }

    /// Records that a message waited `waited` between its acceptance and its turn's start.
    pub fn queue_wait(&self, series: &ReplySeries, waited: Duration) {
        series.queue_wait(self).observe(waited.as_secs_f64());
    }

    /// Counts one message not taken because of a limit.
    pub fn refused(&self, reason: Refusal) {
        self.refused
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }

    /// Counts one restart of a `kind` actor after an exit for `reason` (the runtime's come
    /// from the supervision events, [`Metrics::follow`]).
    pub fn restart(&self, kind: &str, reason: &'static str) {
        self.restarts
            .get_or_create(&KindReasonLabels {
                kind: kind.to_owned(),
                reason,
            })
            .inc();
        self.trends.lock().restart(SystemTime::now());
    }

    /// The last hour of messages, reply latency, turn times and restarts, minute by
    /// minute up to `now` (see [`crate::telemetry::trends`]).
    pub fn trends(&self, now: SystemTime) -> Trends {
        self.trends.lock().snapshot(now)
    }

    /// Counts one `kind` actor marked failed (the runtime's come from the supervision
    /// events, [`Metrics::follow`]).
    pub fn gave_up(&self, kind: &str) {
        self.gave_up
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// The exposition of every metric, with the scrape-time gauges set from `observed`.
    pub fn encode(
        &self,
        observed: &Observed,
        format: Exposition,
    ) -> Result<String, std::fmt::Error> {
        let _one_at_a_time = self.scrape.lock();
        self.refresh(observed);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(match format {
            Exposition::OpenMetrics => text,
            Exposition::Prometheus => openmetrics_to_prometheus(&text),
        })
    }

    fn refresh(&self, observed: &Observed) {
        self.actors.clear();
        self.mailbox_depth.clear();
        let mut kinds: HashSet<&str> = HashSet::new();
        let mut by_state: HashMap<(&str, ActorState), i64> = HashMap::new();
        let mut depth: HashMap<&str, i64> = HashMap::new();
        for actor in &observed.actors {
            let kind = actor.id.kind();
            kinds.insert(kind);
            *by_state.entry((kind, actor.state)).or_default() += 1;
            *depth.entry(kind).or_default() +=
                i64::try_from(actor.mailbox_depth).unwrap_or(i64::MAX);
        }
        for kind in kinds {
            // Every state of a known kind, zeros included, so series do not vanish.
            for state in ActorState::ALL {
                self.actors
                    .get_or_create(&KindStateLabels {
                        kind: kind.to_owned(),
                        state: state.label(),
                    })
                    .set(by_state.get(&(kind, state)).copied().unwrap_or(0));
            }
            self.mailbox_depth
                .get_or_create(&KindLabels {
                    kind: kind.to_owned(),
                })
                .set(depth.get(kind).copied().unwrap_or(0));
        }
        self.turns_in_flight.clear();
        for (agent, in_flight) in &observed.turns_in_flight {
            self.turns_in_flight
                .get_or_create(&AgentLabels {
                    agent: agent.clone(),
                })
                .set(i64::try_from(*in_flight).unwrap_or(i64::MAX));
        }
        let lag = observed
            .since_last_sync
            .unwrap_or_else(|| self.created.elapsed());
        self.sync_lag.set(lag.as_secs_f64());
        self.sync_failures.set(i64::from(observed.sync_failures));
        for (surface, since, failures) in &observed.inbound {
            let labels = SurfaceLabels {
                surface: surface.clone(),
            };
            let lag = since.unwrap_or_else(|| self.created.elapsed());
            self.inbound_lag
                .get_or_create(&labels)
                .set(lag.as_secs_f64());
            self.inbound_failures
                .get_or_create(&labels)
                .set(i64::from(*failures));
        }
        self.ready.set(i64::from(observed.ready));
        self.journal_pending
            .set(i64::try_from(observed.journal_pending).unwrap_or(i64::MAX));
        let idle = observed
            .rooms_managed
            .map(|managed| managed.saturating_sub(observed.rooms_active));
        for (state, count) in [("active", Some(observed.rooms_active)), ("idle", idle)] {
            // Not exported rather than exported wrong.
            if let Some(count) = count {
                self.rooms
                    .get_or_create(&StateLabels { state })
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
        let catch_up = &observed.catch_up;
        advance(&self.sync_gaps, catch_up.gaps);
        advance(&self.sync_backfilled, catch_up.backfilled);
        for (reason, value) in [
            ("too_old", catch_up.skipped_too_old),
            ("too_many", catch_up.skipped_too_many),
        ] {
            advance(
                &self.sync_skipped.get_or_create(&ReasonLabels { reason }),
                value,
            );
        }
        advance(&self.sync_unreadable_gaps, catch_up.unreadable_gaps);
        advance(&self.sync_failed_rounds, catch_up.failed_rounds);
        let held = &observed.undecryptable;
        for (event, value) in [
            ("held", held.held),
            ("decrypted", held.decrypted),
            ("given_up", held.given_up),
        ] {
            advance(
                &self.undecryptable.get_or_create(&EventLabels { event }),
                value,
            );
        }
        for (state, value) in [
            ("waiting", held.waiting_now),
            ("given_up", held.given_up_now),
        ] {
            self.undecryptable_now
                .get_or_create(&StateLabels { state })
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }
}

/// Events of `surfaces_undecryptable_messages_total` (each exported from the start, at 0).
const UNDECRYPTABLE_EVENTS: [&str; 3] = ["held", "decrypted", "given_up"];

/// Reasons of `surfaces_sync_catch_up_skipped_total` (each exported from the start, at 0).
const SKIP_REASONS: [&str; 2] = ["too_old", "too_many"];

/// Moves a counter kept elsewhere (read at scrape time) up to `value`.
fn advance(counter: &Counter, value: u64) {
    let now = counter.get();
    if value > now {
        counter.inc_by(value - now);
    }
}

/// Turns supervision events into restart counts: a `Restarting` event is counted with
/// the reason of the same actor's last `Exited` event.
#[derive(Default)]
struct RestartTracker {
    last_exit: HashMap<ActorId, &'static str>,
}

impl RestartTracker {
    fn on_event(&mut self, metrics: &Metrics, event: &SupervisionEvent) {
        match &event.kind {
            EventKind::Exited { reason, .. } => {
                self.last_exit.insert(event.id.clone(), reason.label());
            }
            EventKind::Restarting { .. } => {
                let reason = self
                    .last_exit
                    .get(&event.id)
                    .copied()
                    .unwrap_or(UNKNOWN_REASON);
                metrics.restart(event.id.kind(), reason);
            }
            EventKind::GaveUp { .. } => metrics.gave_up(event.id.kind()),
            EventKind::Removed => {
                self.last_exit.remove(&event.id);
            }
            EventKind::Started { .. } => {}
        }
    }
}

/// Rewrites prometheus-client's OpenMetrics text as Prometheus text 0.0.4: counter
/// families are named with their `_total` suffix, `# UNIT` and `# EOF` lines go, and so do
/// exemplars (the classic format has none).
fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: HashSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, kind)| kind.trim() == "counter")
        .map(|(name, _)| name)
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let header = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|tag| line.strip_prefix(tag).map(|rest| (tag, rest)));
        match header {
            Some((tag, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = counters.contains(name) && !name.ends_with("_total");
                let suffix = if total { "_total" } else { "" };
                let _ = writeln!(out, "{tag}{name}{suffix} {tail}");
            }
            None => {
                out.push_str(without_exemplar(line));
                out.push('\n');
            }
        }
    }
    out
}

/// A sample line without its exemplar (` # {labels} value [timestamp]`). A `#` outside the
/// quoted label values can only start one: metric names and numbers hold none.
fn without_exemplar(line: &str) -> &str {
    let (mut quoted, mut escaped) = (false, false);
    for (at, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '#' if !quoted => return line[..at].trim_end(),
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use actors::{ExitReason, Failure};

    fn actor(id: &str, state: ActorState, depth: u64) -> ActorHealth {
        ActorHealth {
            id: ActorId::parse(id),
            state,
            incarnation: 1,
            restarts: 0,
            last_failure: None::<Failure>,
            mailbox_depth: depth,
            handled: 0,
            lost: 0,
            last_activity: Some(SystemTime::now()),
        }
    }

    fn parse(text: &str) -> prometheus_parse::Scrape {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
    }

    fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no {name} {labels:?}"));
        match &sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn exposition_is_parseable_and_typed() {
        let m = Metrics::new();
        m.messenger("matrix");
        m.message("matrix", MessageOutcome::Replied);
        m.message("matrix", MessageOutcome::Replied);
        m.message("telegram", MessageOutcome::AgentError);
        m.turn_finished(&m.turn_series("ref"), Duration::from_millis(300));
        m.turn_finished(&m.turn_series("ref"), Duration::from_secs(7));
        let mut tracker = RestartTracker::default();
        let id = ActorId::new("room", "!a:hs");
        for kind in [
            EventKind::Exited {
                incarnation: 1,
                reason: ExitReason::Panic("boom".into()),
            },
            EventKind::Restarting {
                attempt: 1,
                delay: Duration::from_millis(1),
            },
            EventKind::GaveUp {
                restarts_in_period: 3,
            },
        ] {
            tracker.on_event(
                &m,
                &SupervisionEvent {
                    id: id.clone(),
                    kind,
                },
            );
        }
        let observed = Observed {
            actors: vec![
                actor("room:!a:hs", ActorState::Running, 2),
                actor("room:!b:hs", ActorState::Failed, 1),
                actor("router", ActorState::Running, 0),
            ],
            turns_in_flight: vec![("ref".into(), 1)],
            since_last_sync: Some(Duration::from_millis(1500)),
            sync_failures: 2,
            inbound: vec![
                ("matrix".into(), Some(Duration::from_millis(1500)), 2),
                ("telegram".into(), Some(Duration::from_millis(250)), 0),
            ],
            ready: true,
            journal_pending: 4,
            rooms_active: 2,
            rooms_managed: Some(7),
            catch_up: CatchUpSnapshot {
                gaps: 3,
                backfilled: 40,
                skipped_too_old: 1,
                skipped_too_many: 2,
                unreadable_gaps: 0,
                failed_rounds: 1,
            },
            undecryptable: UndecryptableSnapshot {
                held: 5,
                decrypted: 3,
                given_up: 1,
                waiting_now: 1,
                given_up_now: 1,
            },
        };
        let text = m.encode(&observed, Exposition::Prometheus).unwrap();
        assert!(!text.contains("# EOF"));
        assert!(
            text.contains("# TYPE surfaces_messages_total counter"),
            "{text}"
        );
        assert!(!text.contains("!a:hs"), "no per-room labels:\n{text}");
        let scrape = parse(&text);
        let types: HashMap<&str, &prometheus_parse::Value> = scrape
            .samples
            .iter()
            .map(|s| (s.metric.as_str(), &s.value))
            .collect();
        assert!(matches!(
            types["surfaces_messages_total"],
            prometheus_parse::Value::Counter(_)
        ));
        assert!(matches!(
            types["surfaces_agent_turn_duration_seconds"],
            prometheus_parse::Value::Histogram(_)
        ));
        assert_eq!(
            value(
                &scrape,
                "surfaces_messages_total",
                &[("surface", "matrix"), ("outcome", "replied")]
            ),
            2.0
        );
        assert_eq!(
            value(
                &scrape,
                "surfaces_messages_total",
                &[("surface", "matrix"), ("outcome", "stale_agent")]
            ),
            0.0
        );
        assert_eq!(
            value(
                &scrape,
                "surfaces_messages_total",
                &[("surface", "telegram"), ("outcome", "agent_error")]
            ),
            1.0
        );
        assert!(
            !text.contains("surface=\"telegram\",outcome=\"stale_agent\""),
            "a messenger not started exports only what it counted:\n{text}"
        );
        assert_eq!(
            value(
                &scrape,
                "surfaces_actor_restarts_total",
                &[("kind", "room"), ("reason", "panic")]
            ),
            1.0
        );
        assert_eq!(
            value(&scrape, "surfaces_actor_gave_up_total", &[("kind", "room")]),
            1.0
        );
        let catch_up = [
            ("surfaces_sync_gaps_total", vec![], 3.0),
            ("surfaces_sync_backfilled_messages_total", vec![], 40.0),
            (
                "surfaces_sync_catch_up_skipped_total",
                vec![("reason", "too_old")],
                1.0,
            ),
            (
                "surfaces_sync_catch_up_skipped_total",
                vec![("reason", "too_many")],
                2.0,
            ),
            ("surfaces_sync_unreadable_gaps_total", vec![], 0.0),
            ("surfaces_sync_failed_rounds_total", vec![], 1.0),
        ];
        for (name, labels, want) in &catch_up {
            assert_eq!(value(&scrape, name, labels), *want, "{name} {labels:?}");
        }
        // A second scrape with the same numbers adds nothing; a larger one moves them up.
        let mut later = observed.clone();
        later.catch_up.gaps = 5;
        let again = parse(&m.encode(&later, Exposition::Prometheus).unwrap());
        assert_eq!(value(&again, "surfaces_sync_gaps_total", &[]), 5.0);
        assert_eq!(
            value(&again, "surfaces_sync_backfilled_messages_total", &[]),
            40.0
        );
        assert_eq!(
            value(
                &scrape,
                "surfaces_actors",
                &[("kind", "room"), ("state", "failed")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &scrape,
                "surfaces_actors",
                &[("kind", "router"), ("state", "failed")]
            ),
            0.0
        );
        assert_eq!(
            value(&scrape, "surfaces_mailbox_depth", &[("kind", "room")]),
            3.0
        );
        assert_eq!(
            value(
                &scrape,
                "surfaces_agent_turns_in_flight",
                &[("agent", "ref")]
            ),
            1.0
        );
        assert_eq!(value(&scrape, "surfaces_sync_lag_seconds", &[]), 1.5);
        assert_eq!(
            value(&scrape, "surfaces_sync_consecutive_failures", &[]),
            2.0
        );
        assert_eq!(
            value(
                &scrape,
                "surfaces_inbound_lag_seconds",
                &[("surface", "telegram")]
            ),
            0.25
        );
        assert_eq!(
            value(
                &scrape,
                "surfaces_inbound_consecutive_failures",
                &[("surface", "matrix")]
            ),
            2.0
        );
        assert_eq!(value(&scrape, "surfaces_journal_pending", &[]), 4.0);
        assert_eq!(
            value(&scrape, "surfaces_rooms", &[("state", "active")]),
            2.0
        );
        assert_eq!(value(&scrape, "surfaces_rooms", &[("state", "idle")]), 5.0);
        assert_eq!(value(&scrape, "surfaces_ready", &[]), 1.0);
        let histogram = scrape
            .samples
            .iter()
            .find(|s| s.metric == "surfaces_agent_turn_duration_seconds")
            .unwrap();
        let prometheus_parse::Value::Histogram(buckets) = &histogram.value else {
            unreachable!()
        };
        let le_one = buckets.iter().find(|b| b.less_than == 1.0).unwrap();
        assert_eq!(le_one.count, 1.0);

        let open = m.encode(&observed, Exposition::OpenMetrics).unwrap();
        assert!(open.ends_with("# EOF\n"), "{open}");
        assert!(open.contains("# TYPE surfaces_messages counter"));
    }

    /// The cumulative count of the bucket `le` of the histogram `name` with `labels`.
    fn bucket(
        scrape: &prometheus_parse::Scrape,
        name: &str,
        labels: &[(&str, &str)],
        le: f64,
    ) -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no {name} {labels:?}"));
        let prometheus_parse::Value::Histogram(buckets) = &sample.value else {
            panic!("{name} is not a histogram: {:?}", sample.value)
        };
        buckets
            .iter()
            .find(|b| b.less_than == le)
            .unwrap_or_else(|| panic!("{name} has no bucket {le}"))
            .count
    }

    #[test]
    fn refusals_start_at_zero_and_count_by_reason() {
        let m = Metrics::new();
        let fresh = parse(
            &m.encode(&Observed::default(), Exposition::Prometheus)
                .unwrap(),
        );
        for reason in Refusal::ALL {
            let labels = [("reason", reason.label())];
            assert_eq!(
                value(&fresh, "surfaces_messages_refused_total", &labels),
                0.0,
                "{reason:?}"
            );
        }
        // (refusals recorded, reason, want)
        let table = [
            (
                vec![Refusal::RateLimited, Refusal::RateLimited],
                "rate_limited",
                2.0,
            ),
            (vec![Refusal::QueueFull], "queue_full", 1.0),
            (vec![Refusal::CancelsBusy], "cancels_busy", 1.0),
            (vec![Refusal::FileTooLarge], "file_too_large", 1.0),
        ];
        for (refusals, reason, want) in table {
            let m = Metrics::new();
            for refusal in refusals {
                m.refused(refusal);
            }
            let scrape = parse(
                &m.encode(&Observed::default(), Exposition::Prometheus)
                    .unwrap(),
            );
            assert_eq!(
                value(
                    &scrape,
                    "surfaces_messages_refused_total",
                    &[("reason", reason)]
                ),
                want,
                "{reason}"
            );
            let others = Refusal::ALL.iter().filter(|r| r.label() != reason);
            for other in others {
                let labels = [("reason", other.label())];
                assert_eq!(
                    value(&scrape, "surfaces_messages_refused_total", &labels),
                    0.0
                );
            }
        }
        let open = m
            .encode(&Observed::default(), Exposition::OpenMetrics)
            .unwrap();
        assert!(
            open.contains("# TYPE surfaces_messages_refused counter"),
            "{open}"
        );
    }

    #[test]
    fn series_are_made_once_per_pair_and_exported_once_observed() {
        let m = Metrics::new();
        let ref_matrix = m.reply_series("ref", "matrix");
        assert!(Arc::ptr_eq(&ref_matrix, &m.reply_series("ref", "matrix")));
        for (agent, surface) in [("ref", "telegram"), ("other", "matrix")] {
            let series = m.reply_series(agent, surface);
            assert!(!Arc::ptr_eq(&ref_matrix, &series), "{agent} {surface}");
            assert_eq!((series.agent(), series.surface()), (agent, surface));
        }
        let turns = m.turn_series("ref");
        let exported = |m: &Metrics| {
            m.encode(&Observed::default(), Exposition::Prometheus)
                .unwrap()
        };
        // Made, not observed: nothing exported yet.
        let text = exported(&m);
        for series in [
            "surfaces_queue_wait_seconds_count",
            "surfaces_reply_latency_seconds_count",
            "surfaces_agent_turn_duration_seconds_count",
        ] {
            assert!(!text.contains(series), "{series}:\n{text}");
        }
        m.queue_wait(&ref_matrix, Duration::from_millis(5));
        m.turn_finished(&turns, Duration::from_millis(5));
        m.turn_finished(&turns, Duration::from_millis(5));
        let text = exported(&m);
        for (line, want) in [
            (
                "surfaces_queue_wait_seconds_count{agent=\"ref\",surface=\"matrix\"} 1",
                true,
            ),
            (
                "surfaces_agent_turn_duration_seconds_count{agent=\"ref\"} 2",
                true,
            ),
            ("surfaces_reply_latency_seconds_count", false),
            ("surface=\"telegram\"", false),
        ] {
            assert_eq!(text.contains(line), want, "{line}:\n{text}");
        }
    }

    #[test]
    fn reply_latency_and_queue_wait_are_histograms_by_agent() {
        let m = Metrics::new();
        let ms = Duration::from_millis;
        for (agent, surface, stage, took, message) in [
            ("ref", "matrix", ReplyStage::First, 400, "$a"),
            ("ref", "matrix", ReplyStage::Final, 2_500, "$a"),
            ("ref", "matrix", ReplyStage::Final, 40, "$b"),
            ("other", "matrix", ReplyStage::Final, 90_000, "$c"),
            ("ref", "telegram", ReplyStage::Final, 40, "telegram:1:2"),
        ] {
            m.reply_latency(&m.reply_series(agent, surface), stage, ms(took), message);
        }
        m.reply_from_origin(&m.reply_series("ref", "matrix"), ms(2_900));
        m.queue_wait(&m.reply_series("ref", "matrix"), ms(3));
        m.queue_wait(&m.reply_series("ref", "matrix"), ms(15_000));
        let text = m
            .encode(&Observed::default(), Exposition::Prometheus)
            .unwrap();
        for family in [
            "surfaces_reply_latency_seconds",
            "surfaces_reply_latency_from_origin_seconds",
            "surfaces_queue_wait_seconds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} histogram")),
                "{family}:\n{text}"
            );
        }
        let scrape = parse(&text);
        let first = [("agent", "ref"), ("surface", "matrix"), ("stage", "first")];
        let last = [("agent", "ref"), ("surface", "matrix"), ("stage", "final")];
        let other = [
            ("agent", "other"),
            ("surface", "matrix"),
            ("stage", "final"),
        ];
        let telegram = [
            ("agent", "ref"),
            ("surface", "telegram"),
            ("stage", "final"),
        ];
        let latency = "surfaces_reply_latency_seconds";
        type Labels<'a> = &'a [(&'a str, &'a str)];
        // (histogram, labels, bucket, cumulative count wanted)
        let table: [(&str, Labels, f64, f64); 13] = [
            (latency, &first, 0.25, 0.0),
            (latency, &first, 0.5, 1.0),
            (latency, &last, 0.05, 1.0),
            (latency, &last, 2.0, 1.0),
            (latency, &last, 3.0, 2.0),
            (latency, &other, 60.0, 0.0),
            (latency, &other, 90.0, 1.0),
            (latency, &telegram, 0.05, 1.0),
            (latency, &telegram, 300.0, 1.0),
            (
                "surfaces_reply_latency_from_origin_seconds",
                &[("agent", "ref")],
                3.0,
                1.0,
            ),
            (
                "surfaces_queue_wait_seconds",
                &[("agent", "ref")],
                0.005,
                1.0,
            ),
            (
                "surfaces_queue_wait_seconds",
                &[("agent", "ref")],
                10.0,
                1.0,
            ),
            (
                "surfaces_queue_wait_seconds",
                &[("agent", "ref")],
                30.0,
                2.0,
            ),
        ];
        for (name, labels, le, want) in table {
            assert_eq!(
                bucket(&scrape, name, labels, le),
                want,
                "{name} {labels:?} le={le}"
            );
        }
        assert!(
            text.contains(
                "surfaces_reply_latency_seconds_count{agent=\"ref\",surface=\"matrix\",stage=\"first\"} 1"
            ),
            "label order is agent, surface, stage:\n{text}"
        );
        assert!(
            !text.contains("{agent=\"other\",surface=\"matrix\",stage=\"first\"}"),
            "no series for a stage never seen:\n{text}"
        );
        assert!(
            !text.contains("# {message_id"),
            "no exemplars in the classic format"
        );
    }

    #[test]
    fn reply_latency_buckets_carry_the_last_message_as_exemplar() {
        let m = Metrics::new();
        let ms = Duration::from_millis;
        let long = format!("${}", "x".repeat(EXEMPLAR_MAX_CHARS));
        m.reply_latency(
            &m.reply_series("ref", "matrix"),
            ReplyStage::Final,
            ms(400),
            "$first:hs",
        );
        m.reply_latency(
            &m.reply_series("ref", "matrix"),
            ReplyStage::Final,
            ms(450),
            "$second:hs",
        );
        m.reply_latency(
            &m.reply_series("ref", "matrix"),
            ReplyStage::Final,
            ms(2_500),
            &long,
        );
        let open = m
            .encode(&Observed::default(), Exposition::OpenMetrics)
            .unwrap();
        // The bucket line with these labels, in whatever order the encoder writes them.
        let open_bucket = |le: &str| {
            let wanted = [
                format!("le=\"{le}\""),
                "agent=\"ref\"".to_owned(),
                "surface=\"matrix\"".to_owned(),
                "stage=\"final\"".to_owned(),
            ];
            open.lines()
                .find_map(|l| {
                    let rest = l.strip_prefix("surfaces_reply_latency_seconds_bucket{")?;
                    let (labels, value) = rest.split_once("} ")?;
                    let mut labels: Vec<&str> = labels.split(',').collect();
                    labels.sort_unstable();
                    let mut want: Vec<&str> = wanted.iter().map(String::as_str).collect();
                    want.sort_unstable();
                    (labels == want).then(|| value.to_owned())
                })
                .unwrap_or_else(|| panic!("no bucket {le}:\n{open}"))
        };
        // The last message timed in a bucket is its exemplar, with its value.
        let half = open_bucket("0.5");
        assert!(
            half.starts_with("2 # {message_id=\"$second:hs\"} 0.45"),
            "{half}"
        );
        // An id too long for an exemplar leaves the observation without one.
        assert_eq!(open_bucket("3.0"), "3");
        assert_eq!(open_bucket("0.25"), "0");
        // The classic format drops the exemplars and stays parseable.
        let text = m
            .encode(&Observed::default(), Exposition::Prometheus)
            .unwrap();
        assert!(!text.contains("# {message_id"), "{text}");
        let scrape = parse(&text);
        let labels = [("agent", "ref"), ("surface", "matrix"), ("stage", "final")];
        let name = "surfaces_reply_latency_seconds";
        assert_eq!(bucket(&scrape, name, &labels, 0.5), 2.0);
        assert_eq!(bucket(&scrape, name, &labels, 3.0), 3.0);
    }

    #[test]
    fn exemplars_are_cut_from_sample_lines_only() {
        // (OpenMetrics line, classic line)
        let table = [
            (
                "a_bucket{le=\"1\"} 2 # {message_id=\"$x\"} 0.4 1.5",
                "a_bucket{le=\"1\"} 2",
            ),
            ("a_bucket{le=\"1\"} 2", "a_bucket{le=\"1\"} 2"),
            ("a_total 3 # {message_id=\"t\"} 1.0", "a_total 3"),
            ("a{agent=\"x # y\"} 1", "a{agent=\"x # y\"} 1"),
            (
                "a{agent=\"x\\\" # y\"} 1 # {m=\"z\"} 1",
                "a{agent=\"x\\\" # y\"} 1",
            ),
            ("b 1", "b 1"),
        ];
        for (line, want) in table {
            assert_eq!(without_exemplar(line), want, "{line}");
        }
    }

    #[test]
    fn exemplar_ids_fit_the_openmetrics_bound() {
        let at_bound = "x".repeat(EXEMPLAR_MAX_CHARS - EXEMPLAR_LABEL.len());
        let past = format!("{at_bound}x");
        let wide = "é".repeat(EXEMPLAR_MAX_CHARS - EXEMPLAR_LABEL.len());
        // (value, fits)
        let table = [
            ("$abc:example.org", true),
            ("telegram:42:5", true),
            (at_bound.as_str(), true),
            (past.as_str(), false),
            (wide.as_str(), true),
        ];
        for (value, fits) in table {
            assert_eq!(fits_exemplar(value), fits, "{value}");
        }
    }

    #[test]
    fn buckets_are_sorted_and_span_chat_replies() {
        for (name, buckets) in [
            ("turn", &TURN_DURATION_BUCKETS[..]),
            ("reply", &REPLY_LATENCY_BUCKETS[..]),
            ("queue", &QUEUE_WAIT_BUCKETS[..]),
        ] {
            assert!(
                buckets.windows(2).all(|w| w[0] < w[1]),
                "{name}: {buckets:?}"
            );
        }
        assert!(REPLY_LATENCY_BUCKETS.first() <= Some(&0.05));
        assert!(REPLY_LATENCY_BUCKETS.contains(&120.0));
    }

    #[test]
    fn removed_kinds_vanish_and_accept_negotiates() {
        let m = Metrics::new();
        let with = Observed {
            actors: vec![actor("provisioner", ActorState::Running, 0)],
            ..Observed::default()
        };
        assert!(m
            .encode(&with, Exposition::Prometheus)
            .unwrap()
            .contains("kind=\"provisioner\""));
        let text = m
            .encode(&Observed::default(), Exposition::Prometheus)
            .unwrap();
        assert!(!text.contains("provisioner"), "{text}");
        assert_eq!(
            Exposition::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Exposition::OpenMetrics
        );
        assert_eq!(Exposition::from_accept(Some("*/*")), Exposition::Prometheus);
        assert_eq!(Exposition::from_accept(None), Exposition::Prometheus);
    }
}
