//! The runtime: builds the actor tree and runs it until shutdown.
//!
//! ```text
//! root Supervisor
//! ├── agent:<id>     AgentConn, one per configured agent
//! ├── router         Router: agent routes, chat ids
//! ├── provisioner    Provisioner: invites → Space + first chat room
//! ├── room:<id>      RoomActor, one per managed room (dynamic)
//! └── sync           SyncActor: our own sync_once loop
//! ```
//! Start-up: open the store, connect to Matrix (restoring the session), start the agents,
//! the router and the provisioner, run a first sync (its timeline is history: not
//! answered), start an actor for every managed room, go live, then keep syncing.
//! SIGTERM / SIGINT: stop syncing, stop the actors (each drains its mailbox within its
//! shutdown timeout), flush the store.

pub mod agent_conn;
pub mod commands;
pub mod directory;
pub mod dispatch;
pub mod provisioner;
pub mod reconcile;
pub mod room;
pub mod router;
pub mod sync_actor;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actors::{ActorId, ChildSpec, Registry, RestartConfig, Supervisor, SupervisorConfig};
use anyhow::Context as _;
use matrix_sdk::ruma::RoomId;
use tokio::sync::watch;

use self::agent_conn::{AgentConn, AgentStats};
use self::directory::RoomDirectory;
use self::dispatch::Dispatcher;
use self::provisioner::{ProvisionDeps, Provisioner};
use self::room::RoomDeps;
use self::router::{AgentRoute, Router};
use self::sync_actor::{SyncActor, SyncDeps};
use crate::agent::AgentClient;
use crate::config::{AgentKind, Config};
use crate::confirmations::Confirmations;
use crate::journal::Journal;
use crate::matrix::{self, LoginParams, SyncHealth, SyncLoopSettings};
use crate::retry::{retry, RetryPolicy};
use crate::store::Store;

/// How often expired confirmations are looked for (and announced).
pub const CONFIRMATION_SWEEP: Duration = Duration::from_secs(2);
/// Subdirectory of the data dir holding the sled store.
pub const STORE_DIR: &str = "store";

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
#[derive(Clone)]
pub struct RuntimeView {
    /// Health of every supervised actor.
    pub registry: Registry,
    /// The store (room records: names, owners, agents).
    pub store: Store,
    /// The sync loop's health.
    pub sync: Arc<SyncHealth>,
    /// The agent connections.
    pub agents: Vec<AgentView>,
    /// The managed rooms.
    pub rooms: RoomDirectory,
    /// The Matrix client (room names).
    pub client: matrix_sdk::Client,
    /// Start-up is complete (first sync done, rooms started) and live events are handled.
    pub live: Arc<AtomicBool>,
    /// The start-up reconciliation's report (conflicts included), once it ran.
    pub reconciliation: Arc<parking_lot::Mutex<Option<reconcile::Report>>>,
    /// The metrics (`/metrics`).
    pub metrics: Arc<crate::ops::Metrics>,
    /// The inbound journal (pending messages, for `/metrics`).
    pub journal: Journal,
}

/// Runs the bot until SIGTERM / SIGINT (or a fatal error).
pub async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data dir {} (config data_dir)",
            config.data_dir.display()
        )
    })?;
    let store = Store::open(&config.data_dir.join(STORE_DIR)).context("opening the store")?;
    let journal = Journal::open(&store).context("opening the journal")?;
    let confirmations = Confirmations::open(&store, config.commands.confirmation_ttl())
        .context("opening the confirmations")?;
    let late: Arc<std::sync::OnceLock<commands::Late>> = Arc::default();
    let pruned = journal.prune_done(crate::journal::DONE_RETENTION).await?;
    tracing::info!(pending = journal.pending_count(), pruned, "journal open");
    let params = LoginParams {
        homeserver_url: config.matrix.homeserver_url.clone(),
        user_id: config.matrix.user_id.clone(),
        password: config
            .matrix
            .password
            .as_ref()
            .map(|s| s.expose().to_owned()),
        access_token: config
            .matrix
            .access_token
            .as_ref()
            .map(|s| s.expose().to_owned()),
        device_name: config.matrix.device_name.clone(),
    };
    let client = matrix::connect(&params, &config.data_dir)
        .await
        .context("connecting to the homeserver")?;
    let bot = client
        .user_id()
        .map(ToOwned::to_owned)
        .context("the Matrix session has no user id")?;
    tracing::info!(user_id = %bot, "connected to the homeserver");

    let registry = Registry::new();
    let metrics = crate::ops::Metrics::start(&registry);
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

    // Agents.
    let mut routes = Vec::new();
    let mut agent_views = Vec::new();
    for agent in &config.agents {
        let client = Arc::new(match agent.kind {
            AgentKind::Echo => AgentClient::echo(),
            AgentKind::Http => AgentClient::http(
                agent.base_url.as_deref().unwrap_or_default(),
                agent.token.as_ref().map(|t| t.expose().to_owned()),
                agent.timeout(),
            )
            .with_context(|| format!("agents[{}] ({})", routes.len(), agent.id))?,
        });
        let stats = Arc::new(AgentStats::default());
        let stats_view = stats.clone();
        let max = agent.max_concurrent_turns;
        let (agent_id, agent_metrics) = (agent.id.clone(), metrics.clone());
        let conn = root
            .start_child(ChildSpec::new(
                ActorId::new("agent", &agent.id),
                move |_| {
                    let (id, metrics) = (agent_id.clone(), agent_metrics.clone());
                    AgentConn::new(id, client.clone(), max, stats.clone(), metrics)
                },
            ))
            .await?;
        agent_views.push(AgentView {
            id: agent.id.clone(),
            name: agent.name.clone(),
            conn: conn.clone(),
            stats: stats_view,
        });
        routes.push(AgentRoute {
            id: agent.id.clone(),
            name: agent.name.clone(),
            description: agent.description.clone(),
            conn,
            workspace: agent.workspace.clone(),
        });
    }
    let default_agent = config
        .default_agent()
        .map(|a| a.id.clone())
        .context("no default agent (config agents)")?;
    let router_store = store.clone();
    let router = root
        .start_child(ChildSpec::new(ActorId::singleton("router"), move |_| {
            Router::new(routes.clone(), default_agent.clone(), router_store.clone())
        }))
        .await?;

    let rooms = RoomDirectory::new(
        root.clone(),
        RoomDeps {
            client: client.clone(),
            store: store.clone(),
            router: router.clone(),
            metrics: metrics.clone(),
            journal: journal.clone(),
            resumes: Arc::default(),
            files: room::FileDeps::new(config.files.max_bytes),
            commands: commands::CommandDeps {
                access: config.access_policy(),
                confirmations: confirmations.clone(),
                inflight: Arc::default(),
                delete_old_chat_on_clear: config.commands.delete_old_chat_on_clear,
                late: late.clone(),
            },
        },
    );
    let provision = ProvisionDeps {
        client: client.clone(),
        store: store.clone(),
        access: config.access_policy(),
        router: router.clone(),
        rooms: rooms.clone(),
        encrypt_rooms: config.matrix.encrypt_rooms,
    };
    let provisioner = root
        .start_child(ChildSpec::new(
            ActorId::singleton("provisioner"),
            move |ctx| Provisioner::new(provision.clone(), ctx),
        ))
        .await?;

    let health = SyncHealth::new();
    let dispatcher = Dispatcher::new(dispatch::DispatcherDeps {
        bot: bot.clone(),
        client: client.clone(),
        rooms: rooms.clone(),
        provisioner: provisioner.clone(),
        store: store.clone(),
        access: config.access_policy(),
        journal: journal.clone(),
        health: health.clone(),
        sync: config.sync.clone(),
    });
    dispatcher.register(&client);

    let view = RuntimeView {
        registry: registry.clone(),
        store: store.clone(),
        sync: health.clone(),
        agents: agent_views,
        rooms: rooms.clone(),
        client: client.clone(),
        live: Arc::new(AtomicBool::new(false)),
        reconciliation: Arc::default(),
        metrics,
        journal: journal.clone(),
    };
    crate::ops::spawn(&config.ops, view.clone(), root.clone())
        .await
        .context("starting the ops endpoint")?;
    let _ = late.set(commands::Late {
        provisioner,
        view: view.clone(),
    });
    let sweeper = {
        let confirmations = confirmations.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CONFIRMATION_SWEEP);
            loop {
                tick.tick().await;
                commands::sweep_expired(&confirmations, &client).await;
            }
        })
    };

    // First sync (its messages are handled once start-up is done), from our own cursor.
    let sync_settings = SyncLoopSettings {
        filter: sync_filter(&client, config.sync.timeline_limit).await,
        ..SyncLoopSettings::default()
    };
    let cursor = dispatcher.cursor().context("reading the sync cursor")?;
    let initial = retry(&RetryPolicy::STARTUP, "the first sync", || {
        matrix::initial_sync(&client, &health, cursor.as_deref(), &sync_settings)
    })
    .await
    .context("the first sync")?;
    let default_agent = config
        .default_agent()
        .map(|a| a.id.clone())
        .unwrap_or_default();
    let report = reconcile::reconcile(&client, &store, &default_agent, config.reconcile.full)
        .await
        .context("reconciling the store with Matrix")?;
    tracing::info!(
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
    *view.reconciliation.lock() = Some(report);
    // Archived rooms too: their actor answers with the archived notice (without one, a
    // message there would get the explanation meant for rooms the bot does not manage).
    for record in store.rooms()? {
        match RoomId::parse(&record.room_id) {
            Ok(room_id) => {
                rooms.start(&room_id).await?;
            }
            Err(error) => {
                tracing::warn!(room_id = %record.room_id, %error, "bad room id in the store")
            }
        }
    }
    tracing::info!(rooms = rooms.len(), "managed rooms started");
    let next_batch = initial.next_batch.clone();
    let since = initial.since.clone();
    let start = match dispatcher
        .handle_sync(initial.response, since.clone(), true)
        .await
    {
        Ok(()) => Some(next_batch),
        Err(error) => {
            tracing::warn!(%error, "the first sync's messages were not all handled; the sync loop reads the same range again");
            since
        }
    };
    view.live.store(true, Ordering::Release);

    let (stop_tx, stop_rx) = watch::channel(false);
    let sync_deps = SyncDeps {
        client: client.clone(),
        health: health.clone(),
        dispatcher: dispatcher.clone(),
        settings: sync_settings,
        start,
        shutdown: stop_rx,
    };
    root.start_child(ChildSpec::new(ActorId::singleton("sync"), move |ctx| {
        SyncActor::new(sync_deps.clone(), ctx)
    }))
    .await?;
    tracing::info!("surfaces is running");

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    sweeper.abort();
    let grace = config.shutdown.grace();
    if tokio::time::timeout(grace, root.shutdown()).await.is_err() {
        tracing::warn!(
            ?grace,
            "actors did not stop within the grace period (config shutdown.grace_secs)"
        );
    }
    store.flush().await?;
    tracing::info!("stopped");
    Ok(())
}

/// The bot's sync filter (timeline limit `sync.timeline_limit`), uploaded with a few
/// retries; without it the homeserver's default limit applies (catch-up still fills the
/// gaps, with more requests), which the log says.
async fn sync_filter(
    client: &matrix_sdk::Client,
    timeline_limit: u32,
) -> Option<matrix_sdk::ruma::api::client::sync::sync_events::v3::Filter> {
    match retry(&RetryPolicy::STARTUP, "uploading the sync filter", || {
        matrix::bot_filter(client, timeline_limit)
    })
    .await
    {
        Ok(filter) => Some(filter),
        Err(error) => {
            tracing::error!(%error, "cannot upload the sync filter (sync.timeline_limit); \
                syncing with the homeserver's default timeline limit");
            None
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the bot");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
