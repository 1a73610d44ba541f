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
//!   agent turn durations (agent connections, [`Metrics::turn_finished`]), restarts and
//!   give-ups (a task following the supervision events, [`Metrics::follow`]);
//! - read at scrape time from the running bot ([`Observed`]): actors by kind and state,
//!   mailbox depth by kind, turns in flight, sync lag and failures, readiness, messages
//!   pending in the inbound journal.
//!
//! The exposition is OpenMetrics when the scraper asks for it (`Accept:
//! application/openmetrics-text`, as Prometheus does), else the classic Prometheus text
//! format 0.0.4 (curl, older scrapers, text parsers).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actors::{ActorHealth, ActorId, ActorState, EventKind, SupervisionEvent};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast::error::RecvError;

/// Prefix of every metric name.
pub const METRIC_PREFIX: &str = "surfaces";
/// Upper bounds (seconds) of the agent turn duration buckets: from a quick echo to the
/// longest configurable turns (agents time out after `agents[].timeout_secs`, 120 s default).
pub const TURN_DURATION_BUCKETS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];
/// Content type of the OpenMetrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text exposition.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
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
    /// Whether `/readyz` would answer 200.
    pub ready: bool,
    /// Messages accepted in the inbound journal and not answered yet.
    pub journal_pending: usize,
    /// What catch-up did since start-up (gaps, back-filled and skipped messages).
    pub catch_up: CatchUpSnapshot,
    /// Messages that could not be decrypted.
    pub undecryptable: UndecryptableSnapshot,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
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

fn turn_histogram() -> Histogram {
    Histogram::new(TURN_DURATION_BUCKETS)
}

/// The bot's metrics. Shared as `Arc<Metrics>` by the runtime and the ops endpoint.
pub struct Metrics {
    registry: Registry,
    /// Scrapes refresh the scrape-time gauges then encode: one at a time.
    scrape: Mutex<()>,
    created: Instant,
    messages: Family<OutcomeLabels, Counter>,
    turn_duration: Family<AgentLabels, Histogram, fn() -> Histogram>,
    restarts: Family<KindReasonLabels, Counter>,
    gave_up: Family<KindLabels, Counter>,
    actors: Family<KindStateLabels, Gauge>,
    mailbox_depth: Family<KindLabels, Gauge>,
    turns_in_flight: Family<AgentLabels, Gauge>,
    sync_lag: Gauge<f64, AtomicU64>,
    sync_failures: Gauge,
    ready: Gauge,
    journal_pending: Gauge,
    sync_gaps: Counter,
    sync_backfilled: Counter,
    sync_skipped: Family<ReasonLabels, Counter>,
    sync_unreadable_gaps: Counter,
    sync_failed_rounds: Counter,
    undecryptable: Family<EventLabels, Counter>,
    undecryptable_now: Family<StateLabels, Gauge>,
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
        let restarts = Family::<KindReasonLabels, Counter>::default();
        let gave_up = Family::<KindLabels, Counter>::default();
        let actors = Family::<KindStateLabels, Gauge>::default();
        let mailbox_depth = Family::<KindLabels, Gauge>::default();
        let turns_in_flight = Family::<AgentLabels, Gauge>::default();
        let sync_lag = Gauge::<f64, AtomicU64>::default();
        let sync_failures = Gauge::default();
        let ready = Gauge::default();
        let journal_pending = Gauge::default();
        let sync_gaps = Counter::default();
        let sync_backfilled = Counter::default();
        let sync_skipped = Family::<ReasonLabels, Counter>::default();
        let sync_unreadable_gaps = Counter::default();
        let sync_failed_rounds = Counter::default();
        let undecryptable = Family::<EventLabels, Counter>::default();
        let undecryptable_now = Family::<StateLabels, Gauge>::default();

        registry.register(
            "messages",
            "People's messages handled by room actors, by outcome (replied, agent_error, \
             agent_unavailable, stale_agent, internal_error)",
            messages.clone(),
        );
        registry.register(
            "agent_turn_duration_seconds",
            "Duration of agent turns (retries included), by agent id",
            turn_duration.clone(),
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
        for outcome in MessageOutcome::ALL {
            // Created now so every outcome is exported from the start, at 0.
            let _ = messages.get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            });
        }
        Self {
            registry,
            scrape: Mutex::new(()),
            created: Instant::now(),
            messages,
            turn_duration,
            restarts,
            gave_up,
            actors,
            mailbox_depth,
            turns_in_flight,
            sync_lag,
            sync_failures,
            ready,
            journal_pending,
            sync_gaps,
            sync_backfilled,
            sync_skipped,
            sync_unreadable_gaps,
            sync_failed_rounds,
            undecryptable,
            undecryptable_now,
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

    /// Counts one handled message.
    pub fn message(&self, outcome: MessageOutcome) {
        self.messages
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// Records one agent turn of `agent` that took `duration` (whatever its result).
    pub fn turn_finished(&self, agent: &str, duration: Duration) {
        self.turn_duration
            .get_or_create(&AgentLabels {
                agent: agent.to_owned(),
            })
            .observe(duration.as_secs_f64());
    }

    fn restart(&self, kind: &str, reason: &'static str) {
        self.restarts
            .get_or_create(&KindReasonLabels {
                kind: kind.to_owned(),
                reason,
            })
            .inc();
    }

    fn gave_up(&self, kind: &str) {
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
        self.ready.set(i64::from(observed.ready));
        self.journal_pending
            .set(i64::try_from(observed.journal_pending).unwrap_or(i64::MAX));
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
/// families are named with their `_total` suffix, `# UNIT` and `# EOF` lines go.
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
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use actors::{ExitReason, Failure};
    use std::time::SystemTime;

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
        m.message(MessageOutcome::Replied);
        m.message(MessageOutcome::Replied);
        m.message(MessageOutcome::AgentError);
        m.turn_finished("ref", Duration::from_millis(300));
        m.turn_finished("ref", Duration::from_secs(7));
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
            ready: true,
            journal_pending: 4,
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
                &[("outcome", "replied")]
            ),
            2.0
        );
        assert_eq!(
            value(
                &scrape,
                "surfaces_messages_total",
                &[("outcome", "stale_agent")]
            ),
            0.0
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
        assert_eq!(value(&scrape, "surfaces_journal_pending", &[]), 4.0);
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
