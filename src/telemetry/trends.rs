//! Trends of the last hour, one point a minute, kept in memory for the charts of `/status`.
//!
//! Why this file exists: the Prometheus metrics are totals since start-up; a person who
//! opens `/status` at 3 a.m. wants to see *when* it went wrong without a Prometheus at
//! hand. [`TrendWindow`] keeps a ring of [`TREND_MINUTES`] one-minute buckets keyed by the
//! wall-clock minute: a minute without events reads as zeros (no reply latency: absent,
//! not zero), a minute older than the window is overwritten by the next one that reuses its
//! slot. Its memory is bounded: per minute a few counters, a fixed histogram of reply
//! latencies ([`LATENCY_BINS`] bins) and turn times of at most [`MAX_TREND_AGENTS`] agents
//! (more are folded into [`OTHER_AGENTS`]). It lives with the metrics, so it starts empty
//! at every start-up.
//!
//! Which messages count: [`MessageOutcome::Replied`] is *replied*; the outcomes where the
//! bot or the agent could not answer (agent error, agent unavailable, stale agent,
//! internal error) are *failed*; a message refused by a limit ([`MessageOutcome::Limited`])
//! is neither: it was not taken, the bot worked as configured.
//!
//! Recording takes the time as an argument and [`TrendWindow::snapshot`] is pure, so the
//! bucketing and the quantiles are tested with an injected clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::metrics::MessageOutcome;

/// Minutes the trends cover (the last is the current, partial minute).
pub const TREND_MINUTES: usize = 60;
/// The width of one point of the trends.
pub const TREND_BUCKET: Duration = Duration::from_secs(60);
/// Agents whose turn times are kept apart, per minute and per snapshot; the others are
/// summed as [`OTHER_AGENTS`] (agents are configured, so this is only a safety net).
pub const MAX_TREND_AGENTS: usize = 8;
/// The series name of the agents past [`MAX_TREND_AGENTS`].
pub const OTHER_AGENTS: &str = "(other agents)";
/// Bins of the per-minute reply latency histogram: [`BINS_PER_DOUBLING`] per doubling from
/// [`LATENCY_FLOOR`], so 160 bins reach about 17 minutes (longer ones go in the last bin).
pub const LATENCY_BINS: usize = 160;
/// Bins per doubling of the latency histogram: a quantile is off by at most about 4.5 %.
pub const BINS_PER_DOUBLING: f64 = 8.0;
/// The lower bound of the second bin (the first holds everything below).
pub const LATENCY_FLOOR: Duration = Duration::from_millis(1);
/// The quantiles drawn for the reply latency.
pub const P50: f64 = 0.50;
/// See [`P50`].
pub const P99: f64 = 0.99;

/// The last hour, one value a minute, oldest first: what `/status` shows as charts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Trends {
    /// Start of the oldest minute (Unix milliseconds); the last point is the current minute.
    pub start_ms: u64,
    /// Seconds per point.
    pub bucket_secs: u64,
    /// People's messages answered, per minute.
    pub replied: Vec<u64>,
    /// People's messages that ended in an error (agent or ours), per minute.
    pub failed: Vec<u64>,
    /// Median time from a message accepted to its whole reply sent (seconds; `null`: no
    /// reply that minute).
    pub latency_p50_secs: Vec<Option<f64>>,
    /// The 99th percentile of the same.
    pub latency_p99_secs: Vec<Option<f64>>,
    /// Agent turn times, one series per agent (by name).
    pub turns: Vec<AgentTrend>,
    /// Actor restarts, per minute.
    pub restarts: Vec<u64>,
}

/// One agent's turn times in [`Trends`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentTrend {
    /// The agent's id (or [`OTHER_AGENTS`]).
    pub agent: String,
    /// Mean turn time per minute (seconds; `null`: no turn ended that minute).
    pub mean_secs: Vec<Option<f64>>,
    /// Longest turn per minute (seconds).
    pub max_secs: Vec<Option<f64>>,
}

/// Turn times of one agent in one minute.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct TurnStats {
    count: u64,
    sum_secs: f64,
    max_secs: f64,
}

impl TurnStats {
    fn add(&mut self, secs: f64) {
        self.count += 1;
        self.sum_secs += secs;
        self.max_secs = self.max_secs.max(secs);
    }

    fn merge(&mut self, other: &TurnStats) {
        self.count += other.count;
        self.sum_secs += other.sum_secs;
        self.max_secs = self.max_secs.max(other.max_secs);
    }
}

/// Reply latencies of one minute: a log-spaced histogram plus the exact extremes (a
/// quantile never lies outside what was seen).
#[derive(Clone, Debug, PartialEq)]
struct LatencyHistogram {
    bins: Box<[u32; LATENCY_BINS]>,
    count: u64,
    min_secs: f64,
    max_secs: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            bins: Box::new([0; LATENCY_BINS]),
            count: 0,
            min_secs: f64::INFINITY,
            max_secs: 0.0,
        }
    }
}

/// The bin of a latency of `secs`.
fn bin_of(secs: f64) -> usize {
    let ratio = secs / LATENCY_FLOOR.as_secs_f64();
    if ratio.is_nan() || ratio < 1.0 {
        return 0;
    }
    let bin = 1.0 + (ratio.log2() * BINS_PER_DOUBLING).floor();
    if bin >= (LATENCY_BINS - 1) as f64 {
        LATENCY_BINS - 1
    } else {
        bin as usize
    }
}

/// The bounds (seconds) of bin `bin`: `[lower, upper)`.
fn bin_bounds(bin: usize) -> (f64, f64) {
    let floor = LATENCY_FLOOR.as_secs_f64();
    let at = |edge: usize| floor * ((edge as f64) / BINS_PER_DOUBLING).exp2();
    match bin {
        0 => (0.0, floor),
        _ => (at(bin - 1), at(bin)),
    }
}

impl LatencyHistogram {
    fn add(&mut self, secs: f64) {
        if !secs.is_finite() || secs < 0.0 {
            return;
        }
        let bin = bin_of(secs);
        self.bins[bin] = self.bins[bin].saturating_add(1);
        self.count += 1;
        self.min_secs = self.min_secs.min(secs);
        self.max_secs = self.max_secs.max(secs);
    }

    /// The `q` quantile (0..=1), from the middle of its bin, within the extremes seen;
    /// `None` without samples.
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (bin, &n) in self.bins.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank && bin == LATENCY_BINS - 1 {
                // The last bin is open-ended: its middle means nothing.
                return Some(self.max_secs);
            }
            if seen >= rank {
                let (lower, upper) = bin_bounds(bin);
                let middle = if lower > 0.0 {
                    (lower * upper).sqrt()
                } else {
                    upper / 2.0
                };
                return Some(middle.clamp(self.min_secs, self.max_secs));
            }
        }
        Some(self.max_secs)
    }
}

/// One minute of the ring.
#[derive(Clone, Debug, Default, PartialEq)]
struct Minute {
    /// Which minute (since the Unix epoch) this slot holds now.
    index: u64,
    replied: u64,
    failed: u64,
    latency: LatencyHistogram,
    turns: Vec<(String, TurnStats)>,
    restarts: u64,
}

/// The minute since the Unix epoch of `at` (0 before the epoch).
fn minute_of(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / TREND_BUCKET.as_secs())
        .unwrap_or(0)
}

/// Whether a message with this outcome counts as replied (`Some(true)`), failed
/// (`Some(false)`) or neither (`None`: refused by a limit, never taken).
pub fn outcome_kind(outcome: MessageOutcome) -> Option<bool> {
    match outcome {
        MessageOutcome::Replied => Some(true),
        MessageOutcome::AgentError
        | MessageOutcome::AgentUnavailable
        | MessageOutcome::StaleAgent
        | MessageOutcome::InternalError => Some(false),
        MessageOutcome::Limited => None,
    }
}

/// The ring of the last [`TREND_MINUTES`] minutes (see the module doc).
#[derive(Clone, Debug)]
pub struct TrendWindow {
    slots: Vec<Option<Minute>>,
}

impl Default for TrendWindow {
    fn default() -> Self {
        Self {
            slots: vec![None; TREND_MINUTES],
        }
    }
}

impl TrendWindow {
    /// The bucket of the minute of `at`, emptied if it held an older minute; `None` when
    /// the slot holds a later minute (the clock went back more than the window).
    fn bucket(&mut self, at: SystemTime) -> Option<&mut Minute> {
        let index = minute_of(at);
        let slot = &mut self.slots[(index % TREND_MINUTES as u64) as usize];
        match slot {
            Some(minute) if minute.index > index => return None,
            Some(minute) if minute.index == index => {}
            _ => {
                *slot = Some(Minute {
                    index,
                    ..Minute::default()
                })
            }
        }
        slot.as_mut()
    }

    /// Counts a message that ended with `outcome` at `at`.
    pub fn message(&mut self, at: SystemTime, outcome: MessageOutcome) {
        let Some(replied) = outcome_kind(outcome) else {
            return;
        };
        if let Some(minute) = self.bucket(at) {
            if replied {
                minute.replied += 1;
            } else {
                minute.failed += 1;
            }
        }
    }

    /// Records a whole reply sent `took` after its message was accepted.
    pub fn reply(&mut self, at: SystemTime, took: Duration) {
        if let Some(minute) = self.bucket(at) {
            minute.latency.add(took.as_secs_f64());
        }
    }

    /// Records a turn of `agent` that took `took`.
    pub fn turn(&mut self, at: SystemTime, agent: &str, took: Duration) {
        let Some(minute) = self.bucket(at) else {
            return;
        };
        let position = minute.turns.iter().position(|(a, _)| a == agent);
        let position = match position {
            Some(position) => position,
            None if minute.turns.len() < MAX_TREND_AGENTS => {
                minute.turns.push((agent.to_owned(), TurnStats::default()));
                minute.turns.len() - 1
            }
            None => match minute.turns.iter().position(|(a, _)| a == OTHER_AGENTS) {
                Some(position) => position,
                None => {
                    minute
                        .turns
                        .push((OTHER_AGENTS.to_owned(), TurnStats::default()));
                    minute.turns.len() - 1
                }
            },
        };
        minute.turns[position].1.add(took.as_secs_f64());
    }

    /// Counts one actor restart.
    pub fn restart(&mut self, at: SystemTime) {
        if let Some(minute) = self.bucket(at) {
            minute.restarts += 1;
        }
    }

    /// The last [`TREND_MINUTES`] minutes up to the minute of `now`, oldest first.
    pub fn snapshot(&self, now: SystemTime) -> Trends {
        let last = minute_of(now);
        let first = last.saturating_sub(TREND_MINUTES as u64 - 1);
        let minutes: Vec<Option<&Minute>> = (0..TREND_MINUTES as u64)
            .map(|offset| {
                let index = first + offset;
                self.slots[(index % TREND_MINUTES as u64) as usize]
                    .as_ref()
                    .filter(|m| m.index == index && index <= last)
            })
            .collect();
        let count = |f: fn(&Minute) -> u64| -> Vec<u64> {
            minutes.iter().map(|m| m.map_or(0, f)).collect()
        };
        let quantile = |q: f64| -> Vec<Option<f64>> {
            minutes
                .iter()
                .map(|m| m.and_then(|m| m.latency.quantile(q)))
                .collect()
        };
        Trends {
            start_ms: first * TREND_BUCKET.as_secs() * 1_000,
            bucket_secs: TREND_BUCKET.as_secs(),
            replied: count(|m| m.replied),
            failed: count(|m| m.failed),
            latency_p50_secs: quantile(P50),
            latency_p99_secs: quantile(P99),
            turns: agent_trends(&minutes),
            restarts: count(|m| m.restarts),
        }
    }
}

/// One series per agent over `minutes`: the [`MAX_TREND_AGENTS`] with the most turns by
/// name, the rest summed as [`OTHER_AGENTS`] (last).
fn agent_trends(minutes: &[Option<&Minute>]) -> Vec<AgentTrend> {
    let mut totals: Vec<(&str, u64)> = Vec::new();
    for (agent, stats) in minutes.iter().flatten().flat_map(|m| &m.turns) {
        match totals.iter_mut().find(|(a, _)| a == agent) {
            Some((_, n)) => *n += stats.count,
            None => totals.push((agent, stats.count)),
        }
    }
    totals.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut kept: Vec<&str> = totals
        .iter()
        .map(|(a, _)| *a)
        .filter(|a| *a != OTHER_AGENTS)
        .take(MAX_TREND_AGENTS)
        .collect();
    kept.sort_unstable();
    let folded = totals.iter().any(|(a, _)| !kept.contains(a));
    let series = |name: &str, pick: &dyn Fn(&str) -> bool| {
        let per_minute: Vec<Option<TurnStats>> = minutes
            .iter()
            .map(|m| {
                let mut sum: Option<TurnStats> = None;
                for (agent, stats) in m.iter().flat_map(|m| &m.turns) {
                    if pick(agent) {
                        sum.get_or_insert_with(TurnStats::default).merge(stats);
                    }
                }
                sum.filter(|s| s.count > 0)
            })
            .collect();
        AgentTrend {
            agent: name.to_owned(),
            mean_secs: per_minute
                .iter()
                .map(|s| s.map(|s| s.sum_secs / s.count as f64))
                .collect(),
            max_secs: per_minute.iter().map(|s| s.map(|s| s.max_secs)).collect(),
        }
    };
    let mut out: Vec<AgentTrend> = kept
        .iter()
        .map(|name| series(name, &|agent| agent == *name))
        .collect();
    if folded {
        out.push(series(OTHER_AGENTS, &|agent| !kept.contains(&agent)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed start, on a minute boundary, far from the epoch.
    const T0_SECS: u64 = 1_800_000_000 - 1_800_000_000 % 60;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(T0_SECS + secs)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn outcomes_split_into_replied_failed_and_neither() {
        let table = [
            (MessageOutcome::Replied, Some(true)),
            (MessageOutcome::AgentError, Some(false)),
            (MessageOutcome::AgentUnavailable, Some(false)),
            (MessageOutcome::StaleAgent, Some(false)),
            (MessageOutcome::InternalError, Some(false)),
            (MessageOutcome::Limited, None),
        ];
        assert_eq!(table.len(), MessageOutcome::ALL.len());
        for (outcome, want) in table {
            assert_eq!(outcome_kind(outcome), want, "{outcome:?}");
        }
    }

    #[test]
    fn events_land_in_their_minute_and_idle_minutes_are_zeros() {
        let mut w = TrendWindow::default();
        w.message(at(0), MessageOutcome::Replied);
        w.message(at(59), MessageOutcome::Replied);
        w.message(at(60), MessageOutcome::AgentError);
        w.message(at(61), MessageOutcome::Limited);
        w.restart(at(60 * 5 + 30));
        let now = at(60 * 10 + 1);
        let t = w.snapshot(now);
        assert_eq!(t.replied.len(), TREND_MINUTES);
        assert_eq!(t.bucket_secs, 60);
        // The last point is minute 10; minute 0 is 10 points before it.
        let p = |minute: usize| TREND_MINUTES - 1 - (10 - minute);
        // (series, point, want)
        let table = [
            (&t.replied, p(0), 2),
            (&t.failed, p(0), 0),
            (&t.replied, p(1), 0),
            (&t.failed, p(1), 1),
            (&t.restarts, p(5), 1),
            (&t.restarts, p(4), 0),
            (&t.replied, p(10), 0),
        ];
        for (series, point, want) in table {
            assert_eq!(series[point], want, "point {point}");
        }
        assert_eq!(t.replied.iter().sum::<u64>(), 2);
        assert_eq!(t.failed.iter().sum::<u64>(), 1, "limited counts as neither");
        assert_eq!(t.start_ms, (T0_SECS + 600 - 59 * 60) * 1_000);
        assert!(t.latency_p50_secs.iter().all(Option::is_none));
        assert!(t.turns.is_empty());
    }

    #[test]
    fn old_minutes_fall_off_and_reused_slots_start_empty() {
        let mut w = TrendWindow::default();
        w.message(at(0), MessageOutcome::Replied);
        // (now, replied in the window)
        let table = [(at(59 * 60), 1), (at(59 * 60 + 59), 1), (at(60 * 60), 0)];
        for (now, want) in table {
            assert_eq!(w.snapshot(now).replied.iter().sum::<u64>(), want);
        }
        // Minute 60 reuses minute 0's slot: it starts from zero.
        w.message(at(60 * 60), MessageOutcome::AgentError);
        let t = w.snapshot(at(60 * 60));
        assert_eq!((t.replied.iter().sum::<u64>(), t.failed[59]), (0, 1));
        // An event from before the slot's minute (the clock went back an hour) is dropped.
        w.message(at(0), MessageOutcome::Replied);
        assert_eq!(w.snapshot(at(60 * 60)).replied.iter().sum::<u64>(), 0);
        // A snapshot earlier than recorded minutes shows none of them.
        assert_eq!(w.snapshot(at(30 * 60)).failed.iter().sum::<u64>(), 0);
    }

    #[test]
    fn latency_quantiles_are_within_a_bin_and_the_extremes() {
        // (samples in ms, p50 ms, p99 ms)
        let table: [(Vec<u64>, f64, f64); 5] = [
            (vec![250], 250.0, 250.0),
            (vec![100, 100, 100, 4_000], 100.0, 4_000.0),
            ((1..=100).collect(), 50.0, 99.0),
            (vec![0, 0, 0], 0.0, 0.0),
            (vec![3_600_000, 10], 10.0, 3_600_000.0),
        ];
        for (samples, p50, p99) in table {
            let mut w = TrendWindow::default();
            for sample in &samples {
                w.reply(at(10), ms(*sample));
            }
            let t = w.snapshot(at(20));
            let got50 = t.latency_p50_secs[59].expect("samples") * 1_000.0;
            let got99 = t.latency_p99_secs[59].expect("samples") * 1_000.0;
            // A bin is 2^(1/8) wide: within 4.5 % of the true value.
            let close = |got: f64, want: f64| (got - want).abs() <= want * 0.045 + 1e-9;
            assert!(close(got50, p50), "{samples:?}: p50 {got50} vs {p50}");
            assert!(close(got99, p99), "{samples:?}: p99 {got99} vs {p99}");
            assert!(
                t.latency_p50_secs[58].is_none(),
                "no reply: absent, not zero"
            );
        }
    }

    #[test]
    fn bins_cover_the_range_in_order() {
        assert_eq!(bin_of(0.0), 0);
        assert_eq!(bin_of(f64::NAN), 0);
        assert_eq!(bin_of(0.001), 1);
        assert_eq!(bin_of(1e9), LATENCY_BINS - 1);
        for bin in 1..LATENCY_BINS - 1 {
            let (lower, upper) = bin_bounds(bin);
            assert!(lower < upper);
            assert_eq!(bin_of((lower * upper).sqrt()), bin, "bin {bin}");
        }
    }

    #[test]
    fn turn_times_per_agent_with_a_bound() {
        let mut w = TrendWindow::default();
        w.turn(at(0), "ref", ms(1_000));
        w.turn(at(1), "ref", ms(3_000));
        w.turn(at(70), "echo", ms(500));
        let t = w.snapshot(at(70));
        let names: Vec<&str> = t.turns.iter().map(|a| a.agent.as_str()).collect();
        assert_eq!(names, ["echo", "ref"]);
        let reference = &t.turns[1];
        assert_eq!(reference.mean_secs[58], Some(2.0));
        assert_eq!(reference.max_secs[58], Some(3.0));
        assert_eq!(reference.mean_secs[59], None, "no turn: absent");
        assert_eq!(t.turns[0].mean_secs[59], Some(0.5));

        // More agents than kept: the rest are summed as one series, last.
        let mut w = TrendWindow::default();
        for n in 0..MAX_TREND_AGENTS + 3 {
            w.turn(at(0), &format!("agent-{n:02}"), ms(1_000 * (n as u64 + 1)));
        }
        let t = w.snapshot(at(0));
        assert_eq!(t.turns.len(), MAX_TREND_AGENTS + 1);
        let other = t.turns.last().expect("a series");
        assert_eq!(other.agent, OTHER_AGENTS);
        // agents 08, 09, 10 (9 s, 10 s, 11 s): mean 10 s, max 11 s.
        assert_eq!(other.mean_secs[59], Some(10.0));
        assert_eq!(other.max_secs[59], Some(11.0));
    }

    #[test]
    fn an_empty_window_serializes_and_reads_back() {
        let t = TrendWindow::default().snapshot(at(0));
        assert_eq!(t.replied, vec![0; TREND_MINUTES]);
        let json = serde_json::to_string(&t).expect("serializes");
        let back: Trends = serde_json::from_str(&json).expect("reads back");
        assert_eq!(back, t);
        let old: Trends = serde_json::from_str("{}").expect("every field has a default");
        assert!(old.replied.is_empty());
    }
}
