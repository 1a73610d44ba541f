//! What the ops endpoint reports: readiness checks (`/readyz`) and the status document
//! (`/status`), built from a [`RuntimeView`] of the running bot.
//!
//! Why this file exists: the HTTP handlers, the HTML page and the `surfaces status` table
//! all show the same facts; they are gathered here once, as plain serde types, so the
//! JSON is the contract (the CLI deserializes it) and the page is only a rendering of it.
//! Lists are ordered failing first (failed, then backing off, ..., then running), so the
//! actor that needs a person is at the top.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actors::{ActorHealth, ActorState, SupervisorHandle};
use serde::{Deserialize, Serialize};

use crate::matrix::sync::DEFAULT_SYNC_TIMEOUT;
use crate::metrics::UndecryptableSnapshot;
pub use crate::runtime::ids::{AGENT_KIND, ROOM_KIND, SYNC_ACTOR};
use crate::runtime::{InboundView, RuntimeView};
use crate::store::RoomRecord;
use crate::telemetry::trends::Trends;

/// The sync loop counts as stale when no sync succeeded for this long: a long poll lasts
/// at most [`DEFAULT_SYNC_TIMEOUT`], so two of them plus slack.
pub const SYNC_STALE_AFTER: Duration = Duration::from_secs(DEFAULT_SYNC_TIMEOUT.as_secs() * 3);
/// A key no room has: reading it proves the store answers.
const STORE_PROBE_KEY: &str = "!ops-readiness-probe";
/// The state shown for an actor the registry does not know (not started yet, or gone).
pub const ABSENT_STATE: &str = "absent";

/// One readiness check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What is checked: `supervisor`, `store`, `shutdown`, `startup`, `sync`, `agent:<id>`.
    pub name: String,
    /// Whether it passes.
    pub ok: bool,
    /// Why, in a few words.
    pub detail: String,
}

/// The result of every readiness check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// All checks pass.
    pub ready: bool,
    /// Each check.
    pub checks: Vec<Check>,
}

impl Readiness {
    /// The text `/readyz` answers: `ready` or `not ready: a, b`, then with `verbose` one
    /// line per check (`[+] name: detail` / `[-] name: detail`).
    pub fn render(&self, verbose: bool) -> String {
        let mut out = if self.ready {
            "ready\n".to_owned()
        } else {
            let failing: Vec<&str> = self
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| c.name.as_str())
                .collect();
            format!("not ready: {}\n", failing.join(", "))
        };
        if verbose {
            for check in &self.checks {
                let mark = if check.ok { '+' } else { '-' };
                out.push_str(&format!("[{mark}] {}: {}\n", check.name, check.detail));
            }
        }
        out
    }
}

/// The sync loop, as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The messenger whose inbound loop this is (`matrix`, `telegram`).
    #[serde(default)]
    pub surface: String,
    /// The sync actor's state (`absent` before start-up completes).
    pub state: String,
    /// Its restarts.
    pub restarts: u32,
    /// Seconds since the last successful sync (`null`: none yet).
    pub last_success_secs_ago: Option<f64>,
    /// A sync succeeded within [`SYNC_STALE_AFTER`].
    pub recent: bool,
    /// Failed syncs since the last success.
    pub consecutive_failures: u32,
    /// Successful syncs since start-up.
    pub successes: u64,
    /// The sync actor's last abnormal exit.
    pub last_error: Option<String>,
    /// Catch-up since start-up: gaps filled, messages back-filled and left out.
    #[serde(default)]
    pub catch_up: crate::metrics::CatchUpSnapshot,
}

/// A disagreement between the store and Matrix found by the start-up reconciliation
/// (Matrix won: the store now has the Matrix value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The room or user concerned.
    pub subject: String,
    /// The field.
    pub field: String,
    /// What the store had.
    pub store: String,
    /// What Matrix has.
    pub matrix: String,
}

/// Start-up reconciliation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// The reconciliation ran.
    pub done: bool,
    /// How long it took (milliseconds), once done.
    pub elapsed_ms: Option<u64>,
    /// The conflicts it found.
    pub conflicts: Vec<Conflict>,
    /// Rooms whose state was not written by the bot as the bot writes it (forged bindings,
    /// homes, ids): not adopted.
    #[serde(default)]
    pub rejected: Vec<RoomProblem>,
    /// Rooms whose state could not be read or written back (the rest carried on).
    #[serde(default)]
    pub failed: Vec<RoomProblem>,
}

/// A room the start-up reconciliation rejected or could not handle, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomProblem {
    /// The room.
    pub room_id: String,
    /// Why.
    pub reason: String,
}

/// One room actor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomStatus {
    /// The actor id (`room:<room id>`).
    pub actor_id: String,
    /// The Matrix room id.
    pub room_id: String,
    /// The room's name (user input: escape it before showing it).
    pub name: Option<String>,
    /// Who the room belongs to.
    pub owner: Option<String>,
    /// The agent it talks to.
    pub agent: Option<String>,
    /// The actor's state (`running`, `backing-off`, `failed`, ...).
    pub state: String,
    /// Restarts since the room was started.
    pub restarts: u32,
    /// Messages queued and not handled yet.
    pub mailbox_depth: u64,
    /// Messages handled.
    pub handled: u64,
    /// Messages lost with a mailbox that died.
    pub lost: u64,
    /// The last abnormal exit (`panic: ...`, `error: ...`).
    pub last_error: Option<String>,
    /// When it happened (Unix milliseconds).
    pub last_error_at_ms: Option<u64>,
    /// When the actor last handled a message (Unix milliseconds).
    pub last_activity_ms: Option<u64>,
}

/// One agent connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The agent's id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// The connection actor's id (`agent:<id>`).
    pub actor_id: String,
    /// The connection actor's state.
    pub state: String,
    /// Its restarts.
    pub restarts: u32,
    /// Turns running now.
    pub in_flight: usize,
    /// The last turn's error, if the last turn failed.
    pub last_error: Option<String>,
    /// The connection actor's last abnormal exit.
    pub last_failure: Option<String>,
    /// When the actor last handled a message (Unix milliseconds).
    pub last_activity_ms: Option<u64>,
}

/// Any other supervised actor (router, provisioner, sync).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActorStatus {
    /// The actor id.
    pub id: String,
    /// Its state.
    pub state: String,
    /// Its restarts.
    pub restarts: u32,
    /// Messages queued and not handled yet.
    pub mailbox_depth: u64,
    /// The last abnormal exit.
    pub last_error: Option<String>,
    /// When it last handled a message (Unix milliseconds).
    pub last_activity_ms: Option<u64>,
}

/// The whole `/status` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// When this document was made (Unix milliseconds).
    pub generated_at_ms: u64,
    /// The version of the running binary.
    pub version: String,
    /// Readiness, with every check.
    pub readiness: Readiness,
    /// The first messenger's inbound loop (kept for readers of the single-messenger form).
    pub sync: SyncStatus,
    /// Every messenger's inbound loop.
    #[serde(default)]
    pub inbounds: Vec<SyncStatus>,
    /// Start-up reconciliation.
    pub reconciliation: Reconciliation,
    /// Every active room, failing first, then the first [`IDLE_ROOMS_LISTED`] idle ones.
    pub rooms: Vec<RoomStatus>,
    /// How many rooms are active and idle (more may be idle than are listed).
    #[serde(default)]
    pub room_counts: RoomCounts,
    /// Every agent connection, failing first.
    pub agents: Vec<AgentStatus>,
    /// The other actors, failing first.
    pub actors: Vec<ActorStatus>,
    /// The bot's end-to-end encryption state (messengers that encrypt).
    #[serde(default)]
    pub encryption: Option<crate::surface::encryption::EncryptionHealth>,
    /// Messages the bot could not decrypt: held now, and what happened since start-up.
    #[serde(default)]
    pub undecryptable: UndecryptableSnapshot,
    /// The last hour, minute by minute (messages, reply latency, turn times, restarts).
    #[serde(default)]
    pub trends: Trends,
}

/// Unix milliseconds of a time (0 before the epoch).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Sort key putting the states that need a person first (idle rooms last).
pub fn state_rank(state: &str) -> u8 {
    match state {
        "failed" => 0,
        "backing-off" => 1,
        "stopped" | ABSENT_STATE => 2,
        "stopping" => 3,
        "starting" => 4,
        IDLE_STATE => 6,
        _ => 5,
    }
}

/// The state of a managed room whose actor is passivated (`supervision.room_idle_secs`):
/// only its record exists; its next message activates it.
pub const IDLE_STATE: &str = "idle";
/// Idle rooms listed on the status page at most (the rest are counted).
pub const IDLE_ROOMS_LISTED: usize = 200;

/// How many rooms are active and idle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomCounts {
    /// Rooms whose actor is active (running, restarting or failed).
    pub active: usize,
    /// Rooms whose actor is passivated (`None`: the store could not say).
    pub idle: Option<usize>,
    /// Of those, how many are listed in `rooms`.
    pub idle_listed: usize,
}

/// A room without an actor: its record, state [`IDLE_STATE`].
fn idle_room_status(record: RoomRecord) -> RoomStatus {
    RoomStatus {
        actor_id: crate::runtime::ids::room(&record.room_id).to_string(),
        name: record.name,
        owner: Some(record.owner),
        agent: Some(record.agent_id),
        room_id: record.room_id,
        state: IDLE_STATE.to_owned(),
        restarts: 0,
        mailbox_depth: 0,
        handled: 0,
        lost: 0,
        last_error: None,
        last_error_at_ms: None,
        last_activity_ms: None,
    }
}

fn failure_text(health: &ActorHealth) -> Option<String> {
    health.last_failure.as_ref().map(|f| f.reason.to_string())
}

/// Whether the process's root supervisor runs (what `/livez` reports).
pub fn live(root: &SupervisorHandle) -> bool {
    root.is_alive()
}

/// Whether one messenger's inbound loop is healthy: its actor running (when it has one)
/// and a recent success.
fn inbound_check(view: &RuntimeView, inbound: &InboundView, started: bool) -> (bool, String) {
    if !started {
        return (false, "not started yet".to_owned());
    }
    if let Some(reader) = &inbound.reader {
        match view.registry.get(reader) {
            None => return (false, format!("the {reader} actor is absent")),
            Some(actor) if actor.state != ActorState::Running => {
                return (
                    false,
                    format!("the {reader} actor is {}", actor.state.label()),
                )
            }
            Some(_) => {}
        }
    }
    let since = inbound.health.since_last_success();
    if inbound.health.is_recent(SYNC_STALE_AFTER) {
        (
            true,
            format!(
                "running, last successful {} read {:.1} s ago",
                inbound.surface,
                since.map(|d| d.as_secs_f64()).unwrap_or_default()
            ),
        )
    } else {
        (
            false,
            match since {
                Some(age) => format!(
                    "last successful {} read {} s ago",
                    inbound.surface,
                    age.as_secs()
                ),
                None => "no successful sync yet".to_owned(),
            },
        )
    }
}

/// Every readiness check, against the running bot.
pub fn readiness(view: &RuntimeView, root: &SupervisorHandle) -> Readiness {
    let mut checks = Vec::new();
    let mut check = |name: &str, ok: bool, detail: String| {
        checks.push(Check {
            name: name.to_owned(),
            ok,
            detail,
        })
    };
    let alive = root.is_alive();
    check(
        "supervisor",
        alive,
        if alive { "running" } else { "stopped" }.to_owned(),
    );
    match view.store.room(STORE_PROBE_KEY) {
        Ok(_) => check("store", true, "open".to_owned()),
        Err(error) => check("store", false, format!("cannot read: {error}")),
    }
    // `live` is set once start-up is complete (reconciliation included, for the messengers
    // that have chat state to reconcile) and cleared at shutdown.
    let draining = view.draining.load(Ordering::Acquire);
    check(
        "shutdown",
        !draining,
        if draining {
            "draining: turns in flight finish, no new work is taken"
        } else {
            "not started"
        }
        .to_owned(),
    );
    let reconciled = view.reconciliation.lock().is_some();
    let started = view.live.load(Ordering::Acquire);
    check(
        "startup",
        started || draining,
        if draining {
            "over: the bot is shutting down (see shutdown)"
        } else if started {
            "complete: first sync, reconciliation, rooms started"
        } else if reconciled {
            "in progress: starting rooms"
        } else {
            "in progress: first sync and reconciliation"
        }
        .to_owned(),
    );
    // Every messenger's inbound loop (the first is "sync", as it always was; others
    // "sync:<messenger>").
    for (index, inbound) in view.inbound.iter().enumerate() {
        let name = if index == 0 {
            "sync".to_owned()
        } else {
            format!("sync:{}", inbound.surface)
        };
        let (ok, detail) = inbound_check(view, inbound, started);
        check(&name, ok, detail);
    }
    // Informational: an unsigned device or a missing backup does not make the bot unready.
    if let Some(encryption) = view.sync().encryption() {
        let held = UndecryptableSnapshot::of(&view.journal);
        check(
            "encryption",
            true,
            format!("{}; {}", encryption.summary(), held.summary()),
        );
    }
    for agent in &view.agents {
        let state = agent.conn.state();
        let ok = state == ActorState::Running;
        check(
            &format!("{AGENT_KIND}:{}", agent.id),
            ok,
            format!("connection {}", state.label()),
        );
    }
    let ready = checks.iter().all(|c| c.ok);
    Readiness { ready, checks }
}

/// The status document of the running bot.
pub fn status(view: &RuntimeView, root: &SupervisorHandle) -> Status {
    let now = SystemTime::now();
    let readiness = readiness(view, root);
    let snapshot = view.registry.snapshot();
    // The records of the active rooms, and a page of the idle ones (a million idle rooms
    // are a count, not a table).
    let active: Vec<&ActorHealth> = snapshot
        .iter()
        .filter(|h| h.id.kind() == ROOM_KIND)
        .collect();
    let mut records: std::collections::HashMap<String, RoomRecord> = Default::default();
    for health in &active {
        let room_id = health.id.key().unwrap_or_default();
        match view.store.room(room_id) {
            Ok(Some(record)) => {
                records.insert(record.room_id.clone(), record);
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(room_id, %error, "status: cannot read a room's record"),
        }
    }
    let skip: std::collections::HashSet<&str> = active.iter().filter_map(|h| h.id.key()).collect();
    let idle_records = match view.store.rooms_except(&skip, IDLE_ROOMS_LISTED) {
        Ok(records) => records,
        Err(error) => {
            tracing::warn!(%error, "status: cannot read the idle rooms' records");
            Vec::new()
        }
    };
    let room_counts = RoomCounts {
        active: active.len(),
        idle: view
            .rooms
            .managed_len()
            .map(|managed| managed.saturating_sub(active.len())),
        idle_listed: idle_records.len(),
    };
    let mut rooms = Vec::new();
    let mut actors = Vec::new();
    let mut inbounds: Vec<SyncStatus> = view
        .inbound
        .iter()
        .map(|inbound| {
            let reader = inbound.reader.as_ref().and_then(|id| view.registry.get(id));
            SyncStatus {
                surface: inbound.surface.clone(),
                state: reader
                    .as_ref()
                    .map_or(ABSENT_STATE, |actor| actor.state.label())
                    .to_owned(),
                restarts: reader.as_ref().map_or(0, |actor| actor.restarts),
                last_success_secs_ago: inbound.health.since_last_success().map(|d| d.as_secs_f64()),
                recent: inbound.health.is_recent(SYNC_STALE_AFTER),
                consecutive_failures: inbound.health.consecutive_failures(),
                successes: inbound.health.successes(),
                last_error: reader.as_ref().and_then(failure_text),
                catch_up: inbound.health.catch_up().snapshot(),
            }
        })
        .collect();
    if inbounds.is_empty() {
        inbounds.push(SyncStatus {
            surface: String::new(),
            state: ABSENT_STATE.to_owned(),
            restarts: 0,
            last_success_secs_ago: None,
            recent: false,
            consecutive_failures: 0,
            successes: 0,
            last_error: None,
            catch_up: Default::default(),
        });
    }
    let sync = inbounds[0].clone();
    rooms.extend(idle_records.into_iter().map(idle_room_status));
    for health in &snapshot {
        match health.id.kind() {
            ROOM_KIND => rooms.push(room_status(health, &records)),
            AGENT_KIND => {}
            _ => {
                actors.push(ActorStatus {
                    id: health.id.to_string(),
                    state: health.state.label().to_owned(),
                    restarts: health.restarts,
                    mailbox_depth: health.mailbox_depth,
                    last_error: failure_text(health),
                    last_activity_ms: health.last_activity.map(unix_ms),
                });
            }
        }
    }
    let mut agents: Vec<AgentStatus> = view
        .agents
        .iter()
        .map(|agent| {
            let health = agent.conn.health();
            AgentStatus {
                id: agent.id.clone(),
                name: agent.name.clone(),
                actor_id: health.id.to_string(),
                state: health.state.label().to_owned(),
                restarts: health.restarts,
                in_flight: agent.stats.in_flight.load(Ordering::Relaxed),
                last_error: agent.stats.last_error.lock().clone(),
                last_failure: failure_text(&health),
                last_activity_ms: health.last_activity.map(unix_ms),
            }
        })
        .collect();
    rooms.sort_by(|a, b| {
        (
            state_rank(&a.state),
            std::cmp::Reverse(a.restarts),
            &a.room_id,
        )
            .cmp(&(
                state_rank(&b.state),
                std::cmp::Reverse(b.restarts),
                &b.room_id,
            ))
    });
    agents.sort_by(|a, b| {
        (state_rank(&a.state), a.last_error.is_none(), &a.id).cmp(&(
            state_rank(&b.state),
            b.last_error.is_none(),
            &b.id,
        ))
    });
    actors.sort_by(|a, b| (state_rank(&a.state), &a.id).cmp(&(state_rank(&b.state), &b.id)));
    Status {
        generated_at_ms: unix_ms(now),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        readiness,
        sync,
        inbounds,
        reconciliation: reconciliation(view),
        rooms,
        room_counts,
        agents,
        actors,
        encryption: view.sync().encryption(),
        undecryptable: UndecryptableSnapshot::of(&view.journal),
        trends: view.metrics.trends(now),
    }
}

fn reconciliation(view: &RuntimeView) -> Reconciliation {
    match view.reconciliation.lock().as_ref() {
        Some(report) => Reconciliation {
            done: true,
            elapsed_ms: Some(u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX)),
            conflicts: report
                .conflicts
                .iter()
                .map(|c| Conflict {
                    subject: c.subject.clone(),
                    field: c.field.to_owned(),
                    store: c.store.clone(),
                    matrix: c.matrix.clone(),
                })
                .collect(),
            rejected: problems(&report.rejected),
            failed: problems(&report.failed),
        },
        None => Reconciliation {
            done: false,
            elapsed_ms: None,
            conflicts: Vec::new(),
            rejected: Vec::new(),
            failed: Vec::new(),
        },
    }
}

fn problems(rooms: &[crate::runtime::reconcile::RoomProblem]) -> Vec<RoomProblem> {
    rooms
        .iter()
        .map(|r| RoomProblem {
            room_id: r.room_id.clone(),
            reason: r.reason.clone(),
        })
        .collect()
}

fn room_status(
    health: &ActorHealth,
    records: &std::collections::HashMap<String, RoomRecord>,
) -> RoomStatus {
    let room_id = health.id.key().unwrap_or_default().to_owned();
    let record = records.get(&room_id);
    RoomStatus {
        actor_id: health.id.to_string(),
        name: record.and_then(|r| r.name.clone()),
        owner: record.map(|r| r.owner.clone()),
        agent: record.map(|r| r.agent_id.clone()),
        room_id,
        state: health.state.label().to_owned(),
        restarts: health.restarts,
        mailbox_depth: health.mailbox_depth,
        handled: health.handled,
        lost: health.lost,
        last_error: failure_text(health),
        last_error_at_ms: health.last_failure.as_ref().map(|f| unix_ms(f.at)),
        last_activity_ms: health.last_activity.map(unix_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_text() {
        let r = Readiness {
            ready: false,
            checks: vec![
                Check {
                    name: "store".into(),
                    ok: true,
                    detail: "open".into(),
                },
                Check {
                    name: "sync".into(),
                    ok: false,
                    detail: "no successful sync yet".into(),
                },
            ],
        };
        assert_eq!(r.render(false), "not ready: sync\n");
        assert_eq!(
            r.render(true),
            "not ready: sync\n[+] store: open\n[-] sync: no successful sync yet\n"
        );
        let ok = Readiness {
            ready: true,
            checks: Vec::new(),
        };
        assert_eq!(ok.render(false), "ready\n");
    }

    #[test]
    fn failing_states_sort_first() {
        let mut states = vec!["running", "failed", "starting", "backing-off", "stopped"];
        states.sort_by_key(|s| state_rank(s));
        assert_eq!(
            states,
            vec!["failed", "backing-off", "stopped", "starting", "running"]
        );
    }
}
