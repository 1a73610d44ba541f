//! The runtime: the core's actor tree, its start-up and its shutdown (`main` composes it
//! with the messengers' connectors and the ops endpoint).
//!
//! ```text
//! root Supervisor
//! ├── agent:<id>     AgentConn, one per configured agent
//! ├── router         Router: agent routes, chat ids
//! ├── provisioner    Provisioner: invites → home + first chat; !new
//! ├── room:<chat>    RoomActor, one per active chat (activated on demand)
//! └── …              each messenger's inbound actors (Matrix: `sync`)
//! ```
//! [`start`] builds the core around the messengers' [`Connector`]s and returns a
//! [`Running`] at once; start-up goes on in the background: each connector catches up with
//! its messenger (Matrix: the first sync), the store is reconciled with what each holds, the
//! chats the journal holds messages of are activated, then each connector goes live (a
//! chat's actor is virtual: activated when needed, passivated when idle, see [`directory`]). [`Running::run_until`]
//! waits for the shutdown future (or a fatal stop), then stops reading, lets the actors
//! drain within the grace period and flushes the store; it returns the process's exit code.
//! No messenger type appears here: the core speaks to them through [`crate::surface`].

pub mod agent_conn;
pub mod commands;
pub mod directory;
pub mod ids;
pub mod intake;
pub mod invites;
pub mod presence;
pub mod provisioner;
pub mod reconcile;
pub mod room;
pub mod router;

use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actors::{
    ActorId, ChildSpec, Registry, RestartConfig, Supervisor, SupervisorConfig, SupervisorHandle,
};
use anyhow::Context as _;
use tokio::sync::{mpsc, watch};

use self::agent_conn::{AgentConn, AgentStats};
use self::commands::{CommandDeps, StatusDeps};
use self::directory::{RoomDirectory, RoomStarter, Surfaces};
use self::intake::{Intake, IntakeLimits};
use self::provisioner::{ProvisionDeps, Provisioner};
use self::room::RoomDeps;
use self::router::{AgentRoute, RouteTable, Router};
use crate::agent::about::SharedAbout;
use crate::agent::{AgentClient, AgentError};
use crate::config::{AgentKind, Config};
use crate::confirmations::Confirmations;
use crate::files;
use crate::journal::Journal;
use crate::limits::{CancelGate, PersonLimiter, Rate};
use crate::metrics::Metrics;
use crate::store::{Durability, Store};
use crate::surface::health::SyncHealth;
use crate::surface::{
    ChatId, Connector, FatalStop, Inbound, Stopper, SurfaceError, EXIT_INVALID_CREDENTIALS,
};

/// How often expired confirmations are looked for (and announced).
pub const CONFIRMATION_SWEEP: Duration = Duration::from_secs(2);
/// Subdirectory of the data dir holding the sled store.
pub const STORE_DIR: &str = "store";
/// Exit code of a failed start-up or run.
pub const EXIT_FAILURE: u8 = 1;

/// An agent connection as operators see it.
#[derive(Clone)]
pub struct AgentView {
    /// The agent's id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Its connection actor (state, restarts: see the registry).
    pub conn: actors::ChildHandle<AgentConn>,
    /// In-flight turns and last error.
    pub stats: Arc<AgentStats>,
}

/// Everything the ops endpoint reads from a running bot (cheap to clone).
/// One messenger's inbound loop, as the ops endpoint reads it.
#[derive(Clone, Debug)]
pub struct InboundView {
    /// The messenger (`Surface::name`).
    pub surface: String,
    /// How its loop is doing.
    pub health: Arc<SyncHealth>,
    /// The supervised actor running it, if any.
    pub reader: Option<actors::ActorId>,
}

#[derive(Clone)]
pub struct RuntimeView {
    /// Health of every supervised actor.
    pub registry: Registry,
    /// The store (room records: names, owners, agents).
    pub store: Store,
    /// Every messenger's inbound loop.
    pub inbound: Vec<InboundView>,
    /// The agent connections.
    pub agents: Vec<AgentView>,
    /// The managed chats.
    pub rooms: RoomDirectory,
    /// Start-up is complete (messengers caught up, chats started) and live events are handled.
    pub live: Arc<AtomicBool>,
    /// A graceful shutdown started: turns in flight finish, nothing new is taken, and
    /// readiness is false so a load balancer or orchestrator sends no more work.
    pub draining: Arc<AtomicBool>,
    /// The start-up reconciliation's report (conflicts included), once it ran.
    pub reconciliation: Arc<parking_lot::Mutex<Option<reconcile::Report>>>,
    /// The metrics (`/metrics`).
    pub metrics: Arc<Metrics>,
    /// The inbound journal (pending messages, for `/metrics`).
    pub journal: Journal,
    /// Each room's recent messages (`/status/rooms/<id>`).
    pub stories: Arc<room::story::Stories>,
    /// Each actor's last supervision events (`/status/rooms/<id>`).
    pub history: Arc<crate::ops::history::SupervisionHistory>,
    /// The pending confirmations (`/status/rooms/<id>`).
    pub confirmations: Confirmations,
}

impl RuntimeView {
    /// The first messenger's inbound loop (what the unlabelled `surfaces_sync_*` metrics and
    /// the encryption snapshot read); a loop that never ran when there is none.
    pub fn sync(&self) -> Arc<SyncHealth> {
        self.inbound
            .first()
            .map(|i| i.health.clone())
            .unwrap_or_default()
    }
}

/// A running bot: the core is up, start-up goes on in the background.
pub struct Running {
    view: RuntimeView,
    root: SupervisorHandle,
    store: Store,
    grace: Duration,
    startup: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    fatal: mpsc::UnboundedReceiver<FatalStop>,
    stop_reading: watch::Sender<bool>,
    sweeper: tokio::task::JoinHandle<()>,
    /// Passivates idle rooms (`supervision.room_idle_secs`).
    passivation: tokio::task::JoinHandle<()>,
    /// Deletes old files from the agents' inboxes (`limits.inbox_retention_hours`).
    inbox_sweeper: Option<tokio::task::JoinHandle<()>>,
}

/// How to run the core beyond its config: knobs for benchmarks, never for operators.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Whether the store's commit points flush (always, in the product).
    pub durability: Durability,
}

/// Builds the core around `connectors` and starts it (see the module docs).
pub async fn start(config: Config, connectors: Vec<Box<dyn Connector>>) -> anyhow::Result<Running> {
    start_with(config, connectors, Options::default()).await
}

/// [`start`] with [`Options`].
pub async fn start_with(
    config: Config,
    connectors: Vec<Box<dyn Connector>>,
    options: Options,
) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data dir {} (config data_dir)",
            config.data_dir.display()
        )
    })?;
    let store = Store::open_with(&config.data_dir.join(STORE_DIR), options.durability)
        .context("opening the store")?;
    let journal = Journal::open(&store).context("opening the journal")?;
    let confirmations = Confirmations::open(&store, config.commands.confirmation_ttl())
        .context("opening the confirmations")?;
    let pruned = journal.prune_done(crate::journal::DONE_RETENTION).await?;
    tracing::info!(pending = journal.pending_count(), pruned, "journal open");

    let registry = Registry::new();
    let metrics = Metrics::start(&registry);
    let history = crate::ops::history::SupervisionHistory::follow(&registry);
    let stories = room::story::Stories::new();
    let restart = RestartConfig {
        backoff_min: config.supervision.backoff_min(),
        backoff_max: config.supervision.backoff_max(),
        max_restarts: config.supervision.max_restarts,
        period: config.supervision.restart_period(),
        ..RestartConfig::default()
    };
    let root = Supervisor::start_root(
        SupervisorConfig {
            restart,
            ..Default::default()
        },
        registry.clone(),
    );

    let (routes, agent_views) = start_agents(&config, &store, &root, &metrics).await?;
    let default_agent = config
        .default_agent()
        .map(|a| a.id.clone())
        .context("no default agent (config agents)")?;
    let route_table = RouteTable::new(&routes);
    let router_store = store.clone();
    let router_default = default_agent.clone();
    let router_table = route_table.clone();
    let router = root
        .start_child(ChildSpec::new(ActorId::singleton(ids::ROUTER), move |_| {
            Router::new(
                router_table.clone(),
                router_default.clone(),
                router_store.clone(),
            )
        }))
        .await?;

    for connector in &connectors {
        metrics.messenger(connector.surface().name());
    }
    let surfaces = Surfaces::new(connectors.iter().map(|c| c.surface()));
    let inbound_health: Vec<InboundView> = connectors
        .iter()
        .map(|c| InboundView {
            surface: c.surface().name().to_owned(),
            health: c.health(),
            reader: c.reader(),
        })
        .collect();
    let (starter, start_requests) = RoomStarter::new();
    let provision = ProvisionDeps {
        store: store.clone(),
        access: config.access_policy(),
        router: router.clone(),
        routes: route_table.clone(),
        rooms: starter,
        max_chats_per_person: config.limits.max_chats_per_person,
    };
    let provisioner = root
        .start_child(ChildSpec::new(
            ActorId::singleton(ids::PROVISIONER),
            move |ctx| Provisioner::new(provision.clone(), ctx),
        ))
        .await?;
    let rooms = RoomDirectory::new(
        root.clone(),
        RoomDeps {
            store: store.clone(),
            router: router.clone(),
            routes: route_table,
            metrics: metrics.clone(),
            stories: stories.clone(),
            journal: journal.clone(),
            files: room::FileDeps::new(config.files.max_bytes, journal.clone()),
            queue_max: config.limits.room_queue_max,
            stop_timeout: room::stop_timeout(config.shutdown.grace()),
            commands: CommandDeps {
                access: config.access_policy(),
                confirmations: confirmations.clone(),
                inflight: Arc::default(),
                delete_old_chat_on_clear: config.commands.delete_old_chat_on_clear,
                provisioner: provisioner.clone(),
                status: StatusDeps {
                    registry: registry.clone(),
                    agents: agent_views.clone(),
                    inbound: inbound_health.iter().map(|i| i.health.clone()).collect(),
                },
            },
            replies: config.replies.clone(),
            streaming: config.streaming.clone(),
        },
        surfaces.clone(),
        config.supervision.room_idle(),
    );
    tokio::spawn(rooms.clone().serve(start_requests));
    let passivation = tokio::spawn(rooms.clone().sweep());
    let intake = Intake::new(
        rooms.clone(),
        provisioner,
        store.clone(),
        config.access_policy(),
        journal.clone(),
        IntakeLimits {
            people: PersonLimiter::new(Rate {
                burst: config.limits.messages_burst,
                per_minute: config.limits.messages_per_minute,
            }),
            cancels: CancelGate::new(config.limits.max_concurrent_cancels as usize),
        },
    );

    let view = RuntimeView {
        registry,
        store: store.clone(),
        inbound: inbound_health,
        agents: agent_views,
        rooms: rooms.clone(),
        live: Arc::new(AtomicBool::new(false)),
        draining: Arc::new(AtomicBool::new(false)),
        reconciliation: Arc::default(),
        metrics,
        journal,
        stories,
        history,
        confirmations: confirmations.clone(),
    };
    let sweeper = {
        let (confirmations, store, surfaces) = (confirmations, store.clone(), surfaces.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CONFIRMATION_SWEEP);
            loop {
                tick.tick().await;
                commands::sweep_expired(&confirmations, &store, &surfaces).await;
            }
        })
    };
    let (stopper, fatal) = Stopper::new();
    let (stop_reading, shutdown) = watch::channel(false);
    let startup = tokio::spawn(start_up(StartUp {
        connectors,
        intake: Arc::new(intake),
        rooms,
        store: store.clone(),
        journal: view.journal.clone(),
        view: view.clone(),
        root: root.clone(),
        stopper,
        shutdown,
        default_agent,
        full: config.reconcile.full,
    }));
    Ok(Running {
        view,
        root,
        store,
        grace: config.shutdown.grace(),
        startup: Some(startup),
        fatal,
        stop_reading,
        sweeper,
        passivation,
        inbox_sweeper: spawn_inbox_sweeper(&config),
    })
}

/// Every [`files::retention::SWEEP_INTERVAL`], deletes the files people sent that are older
/// than `limits.inbox_retention_hours` from every agent's inbox (none when it is 0).
fn spawn_inbox_sweeper(config: &Config) -> Option<tokio::task::JoinHandle<()>> {
    let hours = config.limits.inbox_retention_hours;
    let roots: Vec<(String, std::path::PathBuf)> = config
        .agents
        .iter()
        .filter_map(|a| Some((a.id.clone(), a.workspace.clone()?)))
        .collect();
    if hours == 0 || roots.is_empty() {
        return None;
    }
    let retention = Duration::from_secs(hours.saturating_mul(3600));
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(files::retention::SWEEP_INTERVAL);
        loop {
            tick.tick().await;
            let roots = roots.clone();
            let swept = tokio::task::spawn_blocking(move || {
                for (agent, root) in roots {
                    let now = std::time::SystemTime::now();
                    match files::retention::sweep(&root, retention, now) {
                        Ok(report) if report.deleted > 0 || report.errors > 0 => {
                            tracing::info!(agent, deleted = report.deleted,
                                removed_dirs = report.removed_dirs, errors = report.errors,
                                "swept old files from the agent's inbox (limits.inbox_retention_hours)");
                        }
                        Ok(_) => {}
                        Err(error) => tracing::warn!(agent, %error, root = %root.display(),
                            "cannot sweep the agent's inbox (agents[].workspace)"),
                    }
                }
            })
            .await;
            if let Err(error) = swept {
                tracing::error!(%error, "the inbox sweep failed");
            }
        }
    }))
}

/// How often an A2A agent's card is read again (its health check).
const CARD_REFRESH: Duration = Duration::from_secs(300);

/// Reads an A2A agent's card now and every [`CARD_REFRESH`]: its name, description and
/// skills stay current, and a card Surfaces cannot use is logged with the key to fix. Ends
/// when the agent's connection is gone.
async fn refresh_card(agent: String, client: std::sync::Weak<AgentClient>) {
    loop {
        let Some(client) = client.upgrade() else {
            return;
        };
        match client.health().await {
            Ok(health) => tracing::debug!(agent, name = %health.agent, "read the agent's card"),
            // A card Surfaces cannot use was logged with its reason where it was read.
            Err(AgentError::InvalidConfig(_)) => {}
            Err(error) => tracing::warn!(agent, %error,
                "cannot read the agent's A2A card (agents[].base_url); will try again"),
        }
        tokio::time::sleep(CARD_REFRESH).await;
    }
}

/// Starts one connection actor per configured agent.
async fn start_agents(
    config: &Config,
    store: &Store,
    root: &SupervisorHandle,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(Vec<AgentRoute>, Vec<AgentView>)> {
    let mut routes = Vec::new();
    let mut views = Vec::new();
    for agent in &config.agents {
        let about = SharedAbout::default();
        let client = Arc::new(match agent.kind {
            AgentKind::Echo => AgentClient::echo(),
            AgentKind::Http => AgentClient::http(
                agent.base_url.as_deref().unwrap_or_default(),
                agent.token.as_ref().map(|t| t.expose().to_owned()),
                agent.timeout(),
            )
            .with_context(|| format!("agents[{}] ({})", routes.len(), agent.id))?
            .with_max_turn_bytes(config.replies.max_turn_bytes)
            .with_max_turn(agent.max_turn()),
            AgentKind::A2a => AgentClient::a2a(
                agent.base_url.as_deref().unwrap_or_default(),
                agent.token.as_ref().map(|t| t.expose().to_owned()),
                agent.timeout(),
                agent.workspace.clone(),
                store,
                &agent.id,
                about.clone(),
            )
            .with_context(|| format!("agents[{}] ({})", routes.len(), agent.id))?
            .with_max_turn_bytes(config.replies.max_turn_bytes)
            .with_max_turn(agent.max_turn()),
            AgentKind::Openai => AgentClient::openai(
                agent.base_url.as_deref().unwrap_or_default(),
                agent.token.as_ref().map(|t| t.expose().to_owned()),
                agent.timeout(),
                agent.openai.clone(),
                agent.workspace.clone(),
                store,
                &agent.id,
            )
            .with_context(|| format!("agents[{}] ({})", routes.len(), agent.id))?
            .with_max_turn_bytes(config.replies.max_turn_bytes)
            .with_max_turn(agent.max_turn()),
        });
        let free_answers = client.takes_free_answers();
        if agent.kind == AgentKind::A2a {
            tokio::spawn(refresh_card(agent.id.clone(), Arc::downgrade(&client)));
        }
        let stats = Arc::new(AgentStats::default());
        let stats_view = stats.clone();
        let max = agent.max_concurrent_turns;
        let (agent_id, agent_metrics) = (agent.id.clone(), metrics.clone());
        let conn = root
            .start_child(ChildSpec::new(ids::agent(&agent.id), move |_| {
                let (id, metrics) = (agent_id.clone(), agent_metrics.clone());
                AgentConn::new(id, client.clone(), max, stats.clone(), metrics)
            }))
            .await?;
        views.push(AgentView {
            id: agent.id.clone(),
            name: agent.name.clone(),
            conn: conn.clone(),
            stats: stats_view,
        });
        routes.push(AgentRoute {
            id: agent.id.clone(),
            configured_name: agent.name.clone(),
            configured_description: agent.description.clone(),
            about: (agent.kind == AgentKind::A2a).then_some(about),
            free_answers,
            conn,
            workspace: agent.workspace.clone(),
        });
    }
    Ok((routes, views))
}

/// What the background start-up needs.
struct StartUp {
    connectors: Vec<Box<dyn Connector>>,
    intake: Arc<Intake>,
    rooms: RoomDirectory,
    store: Store,
    journal: Journal,
    view: RuntimeView,
    root: SupervisorHandle,
    stopper: Stopper,
    shutdown: watch::Receiver<bool>,
    default_agent: String,
    full: bool,
}

/// Catches up with every messenger, reconciles, starts the chats, goes live.
async fn start_up(s: StartUp) -> anyhow::Result<()> {
    let inbound: Arc<dyn Inbound> = s.intake.clone();
    let mut connectors = s.connectors;
    for connector in &mut connectors {
        let name = connector.surface().name();
        connector
            .prepare(inbound.clone())
            .await
            .with_context(|| format!("catching up with {name}"))?;
    }
    let surfaces: Vec<_> = connectors.iter().map(|c| c.surface()).collect();
    for surface in surfaces {
        if !surface.capabilities().chat_state {
            continue;
        }
        let report = reconcile::reconcile(surface.as_ref(), &s.store, &s.default_agent, s.full)
            .await
            .with_context(|| format!("reconciling the store with {}", surface.name()))?;
        tracing::info!(
            surface = surface.name(),
            joined = report.joined,
            walked = report.walked,
            rooms_written = report.rooms_written,
            users_written = report.users_written,
            removed = report.removed,
            written_back = report.written_back,
            conflicts = report.conflicts.len(),
            elapsed_ms = u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
            "reconciliation done"
        );
        *s.view.reconciliation.lock() = Some(report);
    }
    // Chats are activated when something needs them: here, those the journal holds
    // messages of (left by the last run), each given its own, in journal order.
    let resumed = resume_pending(&s.rooms, &s.journal).await?;
    match s.store.room_count() {
        Ok(managed) => tracing::info!(managed, resumed, "chats with pending messages activated"),
        Err(error) => tracing::warn!(%error, resumed,
            "chats with pending messages activated; the managed chats cannot be counted"),
    }
    for connector in connectors {
        let name = connector.surface().name();
        connector
            .go_live(
                inbound.clone(),
                s.root.clone(),
                s.stopper.clone(),
                s.shutdown.clone(),
            )
            .await
            .with_context(|| format!("going live on {name}"))?;
    }
    s.view.live.store(true, Ordering::Release);
    tracing::info!("surfaces is running");
    Ok(())
}

/// Activates every chat the journal holds pending messages of, handing each its entries
/// (the journal is read once, not once per chat); returns how many chats. A chat the bot
/// no longer manages keeps its entries (logged).
async fn resume_pending(rooms: &RoomDirectory, journal: &Journal) -> anyhow::Result<usize> {
    let mut by_chat: Vec<(ChatId, Vec<crate::journal::JournalEntry>)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for entry in journal.pending().context("reading the journal")? {
        let i = *index.entry(entry.room_id.clone()).or_insert_with(|| {
            by_chat.push((ChatId::new(entry.room_id.clone()), Vec::new()));
            by_chat.len() - 1
        });
        if let Some((_, entries)) = by_chat.get_mut(i) {
            entries.push(entry);
        }
    }
    let mut resumed = 0;
    for (chat, entries) in by_chat {
        let pending = entries.len();
        match rooms
            .activate_id(&chat, room::Resume::Entries(entries))
            .await
        {
            Ok(Some(_)) => resumed += 1,
            Ok(None) => tracing::warn!(room_id = %chat, pending,
                "the journal holds messages of a chat the bot does not manage; leaving them"),
            Err(error) => return Err(error).context(format!("activating {chat}")),
        }
    }
    Ok(resumed)
}

impl Running {
    /// What the ops endpoint reads.
    pub fn view(&self) -> RuntimeView {
        self.view.clone()
    }

    /// The root supervisor (the ops endpoint's liveness and drills).
    pub fn supervisor(&self) -> SupervisorHandle {
        self.root.clone()
    }

    /// Runs until `shutdown` completes (exit code 0), start-up fails (1; 3 when a messenger
    /// rejected the bot's credentials) or an adapter asks to stop (its code), then shuts
    /// down: stops reading, lets the actors drain within `shutdown.grace_secs`, flushes.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> ExitCode {
        tokio::pin!(shutdown);
        let code = loop {
            tokio::select! {
                result = async { self.startup.as_mut().expect("checked").await }, if self.startup.is_some() => {
                    self.startup = None;
                    match result {
                        Ok(Ok(())) => continue,
                        Ok(Err(error)) => {
                            tracing::error!("fatal: start-up failed: {error:#}");
                            break exit_code_of(&error);
                        }
                        Err(join) => {
                            tracing::error!(%join, "fatal: start-up ended abnormally");
                            break EXIT_FAILURE;
                        }
                    }
                }
                stop = self.fatal.recv() => {
                    match stop {
                        Some(stop) => {
                            tracing::error!(code = stop.code, "stopping: {}", stop.reason);
                            break stop.code;
                        }
                        None => continue,
                    }
                }
                () = &mut shutdown => {
                    tracing::info!("shutting down");
                    break 0;
                }
            }
        };
        // Not ready from the first moment of the drain, before anything else stops.
        self.view.draining.store(true, Ordering::Release);
        self.view.live.store(false, Ordering::Release);
        let _ = self.stop_reading.send(true);
        if let Some(startup) = self.startup.take() {
            startup.abort();
        }
        self.sweeper.abort();
        self.passivation.abort();
        if let Some(inbox_sweeper) = &self.inbox_sweeper {
            inbox_sweeper.abort();
        }
        if tokio::time::timeout(self.grace, self.root.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                grace = ?self.grace,
                "actors did not stop within the grace period (config shutdown.grace_secs)"
            );
        }
        if let Err(error) = self.store.flush().await {
            tracing::error!(%error, "cannot flush the store");
        }
        tracing::info!(code, "stopped");
        ExitCode::from(code)
    }
}

/// The exit code for a failed start-up: 3 when a messenger rejected the credentials.
fn exit_code_of(error: &anyhow::Error) -> u8 {
    let credentials = error.chain().any(|cause| {
        cause
            .downcast_ref::<SurfaceError>()
            .is_some_and(SurfaceError::is_invalid_credentials)
    });
    if credentials {
        EXIT_INVALID_CREDENTIALS
    } else {
        EXIT_FAILURE
    }
}
