//! In-process benchmarks of the runtime without Matrix (parts 3 and 4 of `ops/bench`).
//! Prints figures; not a timed test.
//!
//! ```text
//! cargo bench --bench pipeline -- throughput [ROOMS] [MESSAGES_PER_ROOM]
//! cargo bench --bench pipeline -- journal    [ROOMS] [MESSAGES_PER_ROOM]
//! cargo bench --bench pipeline -- memory     [N1,N2,...]
//! cargo bench --bench pipeline -- startup    [ROOMS]
//! ```
//! (no mode: all four in turn; `ops/bench/run` runs each in a process of its own). The
//! pipeline modes run `BENCH_RUNS` times (default 3) and report the median and the best.
//! Diagnostics, not the product's setup: `BENCH_NO_TYPING=1` leaves the per-message typing
//! task out; `BENCH_ARBITERS=N` runs the room actors on N arbiters of their own.
//!
//! **throughput / journal**: events in → room actors → router → agent connection (the
//! real `AgentConn` with the built-in echo agent) → replies out, with the Matrix side
//! replaced by an in-memory transport. What is real and what mirrors the product:
//! - real: the `actors` supervisor and handles, `Router` (`ResolveAgent`), `AgentConn`
//!   (`RunTurn`, semaphore, retry wrapper, metrics), the echo `AgentClient`, `Store`
//!   (room record read + JSON decode per message), `Journal`, `AccessPolicy`,
//!   `commands::parse`, `turn_id_for`, `txn_id_for`, `FileDeps::take`, `Metrics`, the reply
//!   content (markdown rendered to HTML, rich reply), actix on a multi-thread tokio runtime
//!   as `main.rs` builds it;
//! - mirrored: the dispatcher's per-event work (`Dispatcher::handle_event`: managed-room
//!   lookup, access check, `!cancel` check, journal accept, `tell`) runs in a spawned task
//!   like the sync loop's handlers; the room actor is a bench-local copy of
//!   `runtime::room::RoomActor`'s text path (`ctx.wait` strict order; record, command
//!   parse, route, typing task, in-flight entry, turn, reply, metrics, journal done),
//!   because the real one calls matrix-sdk (`client.get_room`, `matrix::send_reply`)
//!   directly. Where it would talk to the homeserver (get_room, typing, send) it talks to
//!   the in-memory transport instead.
//! - `throughput` leaves the journal out (no fsync); `journal` puts it in exactly as the
//!   product does: the dispatcher awaits `Journal::accept` (written and flushed) before
//!   queueing the next event, the room awaits `Journal::complete` (flushed) after replying.
//!
//! **memory**: resident memory (VmRSS) and exact heap (a counting allocator) before and
//! after starting N idle *real* `RoomActor`s through the real `RoomDirectory` (with a
//! `matrix_sdk::Client` built without a network).
//!
//! **startup**: with an intact sled holding N rooms and users (and N done journal ids): the
//! time of `Store::open` + `Journal::open` + `Confirmations::open` + `prune_done`, the
//! reconciliation fast path (`reconcile::plan` with every joined room known, the empty
//! `apply` and the chat-sequence check, both flushed), and starting the N real room actors.
//! The homeserver parts of start-up (session restore, first sync, `joined_rooms`) are not
//! in it: `ops/bench/run` times the real binary for those.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, Handler, WrapFuture};
use actors::{ActorId, ChildCtx, ChildHandle, ChildSpec, Registry, Supervisor, SupervisorConfig};
use matrix_sdk::ruma::events::room::message::{
    AddMentions, ForwardThread, ReplyMetadata, RoomMessageEventContent,
};
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};
use parking_lot::{Mutex, RwLock};
use surfaces::agent::{AgentClient, TurnRequest, TurnSender};
use surfaces::commands::{Command, Parsed};
use surfaces::config::{AccessConfig, AccessPolicy};
use surfaces::confirmations::Confirmations;
use surfaces::journal::{Accepted, Journal, DONE_RETENTION};
use surfaces::matrix::txn_id_for;
use surfaces::ops::{MessageOutcome, Metrics};
use surfaces::runtime::agent_conn::{AgentConn, AgentStats, RunTurn};
use surfaces::runtime::commands::{CommandDeps, InFlight};
use surfaces::runtime::directory::RoomDirectory;
use surfaces::runtime::room::{turn_id_for, FileDeps, RoomDeps, UserMessage, TYPING_REFRESH};
use surfaces::runtime::router::{AgentRoute, ResolveAgent, Router};
use surfaces::store::{RoomRecord, Store, UserRecord};
use surfaces_testkit::alloc::Counting;

// ---------------------------------------------------------------------------------------
// Counting allocator (exact heap figures in `memory`; off elsewhere: one relaxed load).

#[global_allocator]
static ALLOC: Counting = Counting::new();

fn heap_live() -> isize {
    ALLOC.live()
}

/// VmRSS of this process, in bytes.
fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

const SERVER: &str = "bench.example.org";
const BOT: &str = "@surfaces:bench.example.org";
const AGENT: &str = "echo";

fn room_id(i: usize) -> OwnedRoomId {
    RoomId::parse(format!("!room{i:06}:{SERVER}")).expect("valid room id")
}

fn user_id(i: usize) -> OwnedUserId {
    OwnedUserId::try_from(format!("@person{i:06}:{SERVER}")).expect("valid user id")
}

fn record(i: usize) -> RoomRecord {
    RoomRecord {
        room_id: room_id(i).to_string(),
        owner: user_id(i).to_string(),
        agent_id: AGENT.to_owned(),
        platform_chat_id: format!("sfc-{}", i + 1),
        chat_index: 1,
        archived: false,
        name: Some("Chat 1".to_owned()),
    }
}

fn user_record(i: usize) -> UserRecord {
    let mut u = UserRecord::new(user_id(i).to_string());
    u.space_id = Some(format!("!space{i:06}:{SERVER}"));
    u.next_chat_index = 2;
    u
}

fn fmt_int(n: f64) -> String {
    let s = format!("{:.0}", n);
    let bytes = s.as_bytes();
    let mut out = String::new();
    for (i, c) in bytes.iter().enumerate() {
        if i > 0 && (bytes.len() - i) % 3 == 0 && *c != b'-' && bytes[i - 1] != b'-' {
            out.push(',');
        }
        out.push(*c as char);
    }
    out
}

/// The echo agent's connection and the router, started under `root` as `runtime::run`
/// does (`max_concurrent_turns` as configured by default).
async fn agent_and_router(
    root: &actors::SupervisorHandle,
    store: &Store,
    metrics: &Arc<Metrics>,
) -> ChildHandle<Router> {
    let client = Arc::new(AgentClient::echo());
    let stats = Arc::new(AgentStats::default());
    let m = metrics.clone();
    let conn = root
        .start_child(ChildSpec::new(ActorId::new("agent", AGENT), move |_| {
            AgentConn::new(
                AGENT.to_owned(),
                client.clone(),
                surfaces::config::DEFAULT_MAX_CONCURRENT_TURNS,
                stats.clone(),
                m.clone(),
            )
        }))
        .await
        .expect("agent connection");
    let routes = vec![AgentRoute {
        id: AGENT.to_owned(),
        name: "Echo".to_owned(),
        description: String::new(),
        conn,
        workspace: None,
    }];
    let store = store.clone();
    root.start_child(ChildSpec::new(ActorId::singleton("router"), move |_| {
        Router::new(routes.clone(), AGENT.to_owned(), store.clone())
    }))
    .await
    .expect("router")
}

// ---------------------------------------------------------------------------------------
// The in-memory transport: what the room actor would send to the homeserver.

struct Transport {
    /// Rooms the "client" knows (`client.get_room`).
    rooms: HashSet<OwnedRoomId>,
    /// Room index → the next message sequence expected in that room's replies.
    next: Vec<AtomicU32>,
    replies: AtomicU64,
    out_of_order: AtomicU64,
    typing: AtomicU64,
    reply_bytes: AtomicU64,
    done: tokio::sync::Notify,
    expected: u64,
}

impl Transport {
    fn typing(&self, _room: &RoomId, _on: bool) {
        self.typing.fetch_add(1, Ordering::Relaxed);
    }

    fn send(&self, room_index: usize, seq: u32, content: RoomMessageEventContent, _txn: &str) {
        self.reply_bytes
            .fetch_add(content.body().len() as u64, Ordering::Relaxed);
        if self.next[room_index].fetch_add(1, Ordering::Relaxed) != seq {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        if self.replies.fetch_add(1, Ordering::AcqRel) + 1 == self.expected {
            self.done.notify_one();
        }
    }
}

/// A number from the environment (0 when unset or unreadable).
fn env_number(name: &str) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) this process has used, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Diagnostics only (`BENCH_NO_TYPING=1`): leave the typing task out, to see its share.
fn no_typing() -> bool {
    static NO: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NO.get_or_init(|| std::env::var_os("BENCH_NO_TYPING").is_some_and(|v| v == "1"))
}

// ---------------------------------------------------------------------------------------
// The bench room actor: `runtime::room::RoomActor`'s text path, transport in memory.

#[derive(Clone)]
struct BenchDeps {
    store: Store,
    router: ChildHandle<Router>,
    journal: Option<Journal>,
    metrics: Arc<Metrics>,
    files: FileDeps,
    inflight: Arc<Mutex<HashMap<OwnedRoomId, InFlight>>>,
    transport: Arc<Transport>,
}

struct BenchRoom {
    index: usize,
    room_id: OwnedRoomId,
    deps: Arc<BenchDeps>,
    _ctx: ChildCtx,
}

impl Actor for BenchRoom {
    type Context = Context<Self>;
}
actors::supervised_actor!(BenchRoom);

impl Handler<UserMessage> for BenchRoom {
    type Result = ();

    fn handle(&mut self, msg: UserMessage, ctx: &mut Context<Self>) {
        let work = process(self.index, self.room_id.clone(), self.deps.clone(), msg);
        ctx.wait(work.into_actor(self));
    }
}

async fn process(index: usize, room_id: OwnedRoomId, deps: Arc<BenchDeps>, msg: UserMessage) {
    if let Some(journal) = &deps.journal {
        if journal.is_done(msg.event_id.as_str()).unwrap_or(false) {
            return;
        }
    }
    if answer(index, room_id, deps.clone(), msg.clone()).await {
        if let Some(journal) = &deps.journal {
            if let Err(error) = journal.complete(msg.event_id.as_str()).await {
                eprintln!("journal complete: {error}");
            }
        }
    }
}

async fn answer(
    index: usize,
    room_id: OwnedRoomId,
    deps: Arc<BenchDeps>,
    msg: UserMessage,
) -> bool {
    let transport = deps.transport.clone();
    if !transport.rooms.contains(&room_id) {
        deps.metrics.message(MessageOutcome::InternalError);
        return false;
    }
    let record = match deps.store.room(room_id.as_str()) {
        Ok(Some(record)) => record,
        _ => {
            deps.metrics.message(MessageOutcome::InternalError);
            return false;
        }
    };
    if record.archived {
        return false;
    }
    match surfaces::commands::parse(&msg.body) {
        Parsed::NotACommand => {}
        _ => return false,
    }
    let route = match deps
        .router
        .send(ResolveAgent {
            agent_id: record.agent_id.clone(),
        })
        .await
    {
        Ok(Some(route)) => route,
        _ => {
            deps.metrics.message(MessageOutcome::StaleAgent);
            return false;
        }
    };
    let typing = if no_typing() {
        None
    } else {
        let (transport, room_id) = (transport.clone(), room_id.clone());
        Some(tokio::spawn(async move {
            loop {
                transport.typing(&room_id, true);
                tokio::time::sleep(TYPING_REFRESH).await;
            }
        }))
    };
    let request = TurnRequest {
        turn_id: turn_id_for(&msg.event_id),
        sender: TurnSender {
            id: msg.sender.to_string(),
            display_name: msg.display_name.clone(),
        },
        text: msg.body.clone(),
        attachments: deps.files.take(&room_id, &msg.sender, Vec::new()),
    };
    let in_flight = InFlight {
        turn_id: request.turn_id.clone(),
        chat_id: record.platform_chat_id.clone(),
        agent_id: route.id.clone(),
    };
    deps.inflight.lock().insert(room_id.clone(), in_flight);
    let result = route
        .conn
        .send(RunTurn {
            chat_id: record.platform_chat_id.clone(),
            request,
        })
        .await;
    deps.inflight.lock().remove(&room_id);
    if let Some(typing) = typing {
        typing.abort();
    }
    // As the room actor: the typing notice is hidden beside the reply, from a task.
    {
        let (transport, room_id) = (transport.clone(), room_id.clone());
        tokio::spawn(async move { transport.typing(&room_id, false) });
    }
    match result {
        Ok(Ok(outcome)) => {
            let reply = ReplyMetadata::new(&msg.event_id, &msg.sender, None);
            let txn = txn_id_for(&msg.event_id, 0);
            let content = RoomMessageEventContent::text_markdown(&outcome.reply).make_reply_to(
                reply,
                ForwardThread::Yes,
                AddMentions::Yes,
            );
            let seq = msg
                .body
                .rsplit(' ')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(u32::MAX);
            transport.send(index, seq, content, txn.as_str());
            deps.metrics.message(MessageOutcome::Replied);
            true
        }
        _ => {
            deps.metrics.message(MessageOutcome::AgentError);
            false
        }
    }
}

// ---------------------------------------------------------------------------------------
// The dispatcher-equivalent: `Dispatcher::handle_event` for a text message.

struct Event {
    room_id: OwnedRoomId,
    event_id: OwnedEventId,
    sender: OwnedUserId,
    body: String,
}

struct Dispatch {
    rooms: RwLock<HashMap<OwnedRoomId, ChildHandle<BenchRoom>>>,
    access: AccessPolicy,
    journal: Option<Journal>,
}

impl Dispatch {
    async fn handle(&self, ev: Event) {
        if ev.sender.as_str() == BOT {
            return;
        }
        let body = ev.body;
        let Some(actor) = self.rooms.read().get(&ev.room_id).cloned() else {
            return;
        };
        if !self.access.allows(ev.sender.as_str()) {
            return;
        }
        if matches!(
            surfaces::commands::parse(&body),
            Parsed::Command(Command::Cancel)
        ) {
            return;
        }
        if let Some(journal) = &self.journal {
            match journal
                .accept(
                    ev.room_id.as_str(),
                    ev.event_id.as_str(),
                    ev.sender.as_str(),
                    &body,
                )
                .await
            {
                Ok((Accepted::New, _)) => {}
                Ok(_) => return,
                Err(error) => eprintln!("journal accept: {error}"),
            }
        }
        let msg = UserMessage {
            event_id: ev.event_id,
            sender: ev.sender,
            display_name: None,
            body,
        };
        let _ = actor.tell(msg);
    }
}

/// Events per simulated sync response (the dispatcher yields between them).
const SYNC_BATCH: usize = 100;

async fn pipeline(rooms: usize, per_room: usize, with_journal: bool) -> f64 {
    let mut label = if with_journal {
        "journal"
    } else {
        "throughput"
    }
    .to_owned();
    if no_typing() {
        label.push_str("_no_typing");
    }
    if env_number("BENCH_ARBITERS") > 0 {
        label.push_str(&format!("_arbiters{}", env_number("BENCH_ARBITERS")));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("store");
    let records: Vec<RoomRecord> = (0..rooms).map(record).collect();
    store.apply(&records, &[], &[]).await.expect("records");
    let journal = if with_journal {
        Some(Journal::open(&store).expect("journal"))
    } else {
        None
    };
    let registry = Registry::new();
    let metrics = Metrics::start(&registry);
    let root = Supervisor::start_root(SupervisorConfig::default(), registry.clone());
    let router = agent_and_router(&root, &store, &metrics).await;
    let total = (rooms * per_room) as u64;
    let transport = Arc::new(Transport {
        rooms: (0..rooms).map(room_id).collect(),
        next: (0..rooms).map(|_| AtomicU32::new(0)).collect(),
        replies: AtomicU64::new(0),
        out_of_order: AtomicU64::new(0),
        typing: AtomicU64::new(0),
        reply_bytes: AtomicU64::new(0),
        done: tokio::sync::Notify::new(),
        expected: total,
    });
    let deps = Arc::new(BenchDeps {
        store: store.clone(),
        router,
        journal: journal.clone(),
        metrics: metrics.clone(),
        files: FileDeps::new(20 * 1024 * 1024),
        inflight: Arc::default(),
        transport: transport.clone(),
    });
    let dispatch = Arc::new(Dispatch {
        rooms: RwLock::new(HashMap::new()),
        access: AccessPolicy::new(&AccessConfig::default(), BOT),
        journal,
    });
    // Diagnostics only (`BENCH_ARBITERS=N`): the room actors on N arbiters of their own
    // (threads) instead of the system arbiter that runs every actor in the product.
    let arbiters: Vec<actix::Arbiter> = (0..env_number("BENCH_ARBITERS"))
        .map(|_| actix::Arbiter::new())
        .collect();
    let started = Instant::now();
    for i in 0..rooms {
        let id = room_id(i);
        let deps = deps.clone();
        let owned = id.clone();
        let mut spec = ChildSpec::new(ActorId::new("room", id.as_str()), move |ctx| BenchRoom {
            index: i,
            room_id: owned.clone(),
            deps: deps.clone(),
            _ctx: ctx,
        })
        .redeliver(true);
        if !arbiters.is_empty() {
            spec = spec.on_arbiter(arbiters[i % arbiters.len()].handle());
        }
        let handle = root.start_child(spec).await.expect("room actor");
        dispatch.rooms.write().insert(id, handle);
    }
    println!(
        "{label}: started {} room actors in {:.0} ms",
        fmt_int(rooms as f64),
        started.elapsed().as_secs_f64() * 1e3
    );
    // Events as the sync loop would hand them over: round-robin over the rooms.
    let mut events = Vec::with_capacity(rooms * per_room);
    for seq in 0..per_room {
        for i in 0..rooms {
            events.push(Event {
                room_id: room_id(i),
                event_id: OwnedEventId::try_from(format!("$ev{i:06}x{seq:05}:{SERVER}"))
                    .expect("event id"),
                sender: user_id(i),
                body: format!("hello from a person, message {seq}"),
            });
        }
    }
    let done = transport.done.notified();
    tokio::pin!(done);
    done.as_mut().enable();
    let t0 = Instant::now();
    let cpu0 = cpu_seconds();
    let feeder = {
        let dispatch = dispatch.clone();
        // The sync loop runs on the tokio pool (`tokio::spawn`), the actors on the arbiter.
        tokio::spawn(async move {
            let mut events = events.into_iter();
            loop {
                let mut any = false;
                for ev in events.by_ref().take(SYNC_BATCH) {
                    any = true;
                    dispatch.handle(ev).await;
                }
                if !any {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let timeout = Duration::from_secs(600);
    if tokio::time::timeout(timeout, &mut done).await.is_err() {
        eprintln!(
            "{label}: timed out with {} of {total} replies",
            transport.replies.load(Ordering::Relaxed)
        );
        std::process::exit(1);
    }
    let elapsed = t0.elapsed();
    let cpu = cpu_seconds() - cpu0;
    let _ = feeder.await;
    let replies = transport.replies.load(Ordering::Relaxed);
    let rate = replies as f64 / elapsed.as_secs_f64();
    println!(
        "{label}: {} messages over {} rooms ({} each) in {:.3} s",
        fmt_int(total as f64),
        fmt_int(rooms as f64),
        per_room,
        elapsed.as_secs_f64()
    );
    println!(
        "{label}: replies {}, out of order {}, typing calls {}",
        fmt_int(replies as f64),
        transport.out_of_order.load(Ordering::Relaxed),
        fmt_int(transport.typing.load(Ordering::Relaxed) as f64)
    );
    println!(
        "{label}: CPU {cpu:.2} s over {:.2} s: {:.2} cores busy on average",
        elapsed.as_secs_f64(),
        cpu / elapsed.as_secs_f64()
    );
    println!(
        "FIGURE {label}_cores_busy {:.2}",
        cpu / elapsed.as_secs_f64()
    );
    println!("FIGURE {label}_msgs_per_s {rate:.0}");
    println!(
        "{label}: {} messages/s ({:.2} µs per message)",
        fmt_int(rate),
        elapsed.as_secs_f64() * 1e6 / total as f64
    );
    let _ = root.shutdown().await;
    drop(store);
    rate
}

/// `pipeline` `runs` times (fresh store and actors each time); prints every run, then the
/// median and the best (a shared machine's noise only ever slows a run down).
async fn pipelines(rooms: usize, per_room: usize, with_journal: bool, runs: usize) {
    let mut rates = Vec::new();
    for _ in 0..runs.max(1) {
        rates.push(pipeline(rooms, per_room, with_journal).await);
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    let (median, best) = (rates[rates.len() / 2], rates[rates.len() - 1]);
    let mut label = if with_journal {
        "journal"
    } else {
        "throughput"
    }
    .to_owned();
    if no_typing() {
        label.push_str("_no_typing");
    }
    if env_number("BENCH_ARBITERS") > 0 {
        label.push_str(&format!("_arbiters{}", env_number("BENCH_ARBITERS")));
    }
    println!(
        "{label}: {} runs: median {} messages/s, best {}",
        rates.len(),
        fmt_int(median),
        fmt_int(best)
    );
    println!("FIGURE {label}_msgs_per_s_median {median:.0}");
    println!("FIGURE {label}_msgs_per_s_best {best:.0}");
}

// ---------------------------------------------------------------------------------------
// Memory and start-up: the real RoomActor through the real RoomDirectory.

async fn offline_client() -> matrix_sdk::Client {
    matrix_sdk::Client::builder()
        .homeserver_url("http://127.0.0.1:1")
        .build()
        .await
        .expect("a client without a network")
}

async fn room_deps(
    store: &Store,
    journal: &Journal,
    router: ChildHandle<Router>,
    metrics: Arc<Metrics>,
) -> RoomDeps {
    let access = AccessPolicy::new(&AccessConfig::default(), BOT);
    RoomDeps {
        client: offline_client().await,
        store: store.clone(),
        router,
        journal: journal.clone(),
        resumes: Arc::default(),
        metrics,
        files: FileDeps::new(20 * 1024 * 1024),
        commands: CommandDeps {
            access,
            confirmations: Confirmations::open(store, Duration::from_secs(600))
                .expect("confirmations"),
            inflight: Arc::default(),
            delete_old_chat_on_clear: false,
            late: Arc::default(),
        },
    }
}

/// Lets every started actor run `started()` (its journal resume) and the runtime go idle.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn memory(counts: Vec<usize>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("store");
    let max = counts.iter().copied().max().unwrap_or(0);
    let records: Vec<RoomRecord> = (0..max).map(record).collect();
    store.apply(&records, &[], &[]).await.expect("records");
    let journal = Journal::open(&store).expect("journal");
    let registry = Registry::new();
    let metrics = Metrics::start(&registry);
    let root = Supervisor::start_root(SupervisorConfig::default(), registry.clone());
    let router = agent_and_router(&root, &store, &metrics).await;
    let rooms = RoomDirectory::new(
        root.clone(),
        room_deps(&store, &journal, router, metrics).await,
    );
    // One room first, so one-time costs (first allocation of every structure) are not
    // spread over the others; then the baseline.
    rooms.start(&room_id(0)).await.expect("room");
    settle().await;
    ALLOC.set_counting(true);
    let (rss0, heap0) = (vm_rss(), heap_live());
    let mut started = 1; // rooms running (room 0 is in the baseline)
    println!(
        "memory: baseline VmRSS {:.1} MiB (store, client, supervisor, router, agent, 1 room)",
        rss0 as f64 / 1048576.0
    );
    for n in counts {
        let t = Instant::now();
        for i in started..n {
            rooms.start(&room_id(i)).await.expect("room");
        }
        let start_time = t.elapsed();
        started = started.max(n);
        settle().await;
        let (rss, heap) = (vm_rss(), heap_live());
        let added = (n - 1) as f64;
        let per_rss = (rss as f64 - rss0 as f64) / added;
        let per_heap = (heap - heap0) as f64 / added;
        println!(
            "memory: {} idle room actors: VmRSS {:.1} MiB (+{:.2} MiB), {per_rss:.0} B resident and {per_heap:.0} B heap per room actor (started in {:.0} ms)",
            fmt_int(n as f64),
            rss as f64 / 1048576.0,
            (rss as f64 - rss0 as f64) / 1048576.0,
            start_time.as_secs_f64() * 1e3
        );
        println!("FIGURE memory_rss_per_room_{n} {per_rss:.0}");
        println!("FIGURE memory_heap_per_room_{n} {per_heap:.0}");
        println!(
            "FIGURE memory_rss_total_mib_{n} {:.1}",
            rss as f64 / 1048576.0
        );
    }
    // For comparison, in the same process: the supervision floor, a minimal supervised
    // actor (one u64) with an id of the same length, no directory entry.
    let n = started;
    let (rss1, heap1) = (vm_rss(), heap_live());
    let mut idle = Vec::with_capacity(n);
    for i in 0..n {
        let id = ActorId::new("room", &format!("!idle{i:06}:{SERVER}"));
        idle.push(
            root.start_child(ChildSpec::new(id, |_| Idle(0)))
                .await
                .expect("idle"),
        );
    }
    settle().await;
    let floor_heap = (heap_live() - heap1) as f64 / n as f64;
    let floor_rss = (vm_rss() as f64 - rss1 as f64) / n as f64;
    println!(
        "memory: for comparison, {} minimal supervised actors: {floor_rss:.0} B resident and {floor_heap:.0} B heap each",
        fmt_int(n as f64)
    );
    println!(
        "memory: size_of RoomActor {} B, RoomDeps {} B (one copy, shared by every room through an Arc)",
        std::mem::size_of::<surfaces::runtime::room::RoomActor>(),
        std::mem::size_of::<RoomDeps>()
    );
    println!("FIGURE memory_heap_minimal_supervised {floor_heap:.0}");
    ALLOC.set_counting(false);
    let _ = root.shutdown().await;
}

/// The minimal supervised actor of the comparison.
struct Idle(#[allow(dead_code)] u64);

impl Actor for Idle {
    type Context = Context<Self>;
}
actors::supervised_actor!(Idle);

async fn startup(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    {
        // An intact store, as a previous run leaves it.
        let store = Store::open(&path).expect("store");
        let records: Vec<RoomRecord> = (0..n).map(record).collect();
        let users: Vec<UserRecord> = (0..n).map(user_record).collect();
        store.apply(&records, &users, &[]).await.expect("records");
        store.ensure_chat_seq_at_least(n as u64).await.expect("seq");
        store.set_flag("reconciled").await.expect("flag");
        let _journal = Journal::open(&store).expect("journal");
        store.flush().await.expect("flush");
    }
    // N answered messages remembered by the journal (its done tree, written directly:
    // `Journal::complete` flushes once per id, which would take minutes here).
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let db = sled::Config::new().path(&path).open().expect("sled");
        let done = db.open_tree("journal_done").expect("done tree");
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        for i in 0..n {
            done.insert(
                format!("$old{i}:{SERVER}").as_bytes(),
                &now_ms.to_be_bytes(),
            )
            .expect("done id");
        }
        db.flush().expect("flush");
    }
    // The previous handle's file lock is released from a background thread.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let registry = Registry::new();
    let metrics = Metrics::start(&registry);
    let root = Supervisor::start_root(SupervisorConfig::default(), registry.clone());

    let t0 = Instant::now();
    let p2 = path.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&p2))
        .await
        .expect("join")
        .expect("store");
    let journal = Journal::open(&store).expect("journal");
    let _confirmations = Confirmations::open(&store, Duration::from_secs(600)).expect("conf");
    let pruned = journal.prune_done(DONE_RETENTION).await.expect("prune");
    let t_open = t0.elapsed();

    let t1 = Instant::now();
    let known_rooms = store.rooms().expect("rooms");
    let known_users = store.users().expect("users");
    let joined: HashSet<String> = known_rooms.iter().map(|r| r.room_id.clone()).collect();
    let t_read = t1.elapsed();
    let tp = Instant::now();
    let plan = surfaces::runtime::reconcile::plan(&[], &joined, &known_rooms, &known_users, AGENT);
    let t_plan = tp.elapsed();
    store
        .apply(&plan.rooms, &plan.users, &plan.remove)
        .await
        .expect("apply");
    store
        .ensure_chat_seq_at_least(plan.chat_seq_at_least)
        .await
        .expect("seq");
    let t_reconcile = t1.elapsed();
    println!(
        "startup: reconcile fast path = read records {:.0} ms + plan {:.0} ms + empty apply and chat-sequence check {:.0} ms",
        t_read.as_secs_f64() * 1e3,
        t_plan.as_secs_f64() * 1e3,
        (t_reconcile - t_read - t_plan).as_secs_f64() * 1e3
    );
    println!(
        "FIGURE startup_plan_ms_{n} {:.0}",
        t_plan.as_secs_f64() * 1e3
    );
    assert!(plan.rooms.is_empty() && plan.remove.is_empty() && plan.conflicts.is_empty());

    let t2 = Instant::now();
    let router = agent_and_router(&root, &store, &metrics).await;
    let rooms = RoomDirectory::new(
        root.clone(),
        room_deps(&store, &journal, router, metrics).await,
    );
    for record in store.rooms().expect("rooms") {
        if record.archived {
            continue;
        }
        let id = RoomId::parse(&record.room_id).expect("room id");
        rooms.start(&id).await.expect("room");
    }
    let t_rooms = t2.elapsed();
    let total = t0.elapsed();
    println!(
        "startup: intact store with {} rooms, {} users, {} done journal ids (pruned {pruned})",
        fmt_int(known_rooms.len() as f64),
        fmt_int(known_users.len() as f64),
        fmt_int(n as f64)
    );
    println!(
        "startup: open store+journal+confirmations+prune {:.0} ms, reconcile fast path {:.0} ms, start {} room actors {:.0} ms, total {:.0} ms",
        t_open.as_secs_f64() * 1e3,
        t_reconcile.as_secs_f64() * 1e3,
        fmt_int(rooms.len() as f64),
        t_rooms.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3
    );
    println!(
        "FIGURE startup_open_ms_{n} {:.0}",
        t_open.as_secs_f64() * 1e3
    );
    println!(
        "FIGURE startup_reconcile_ms_{n} {:.0}",
        t_reconcile.as_secs_f64() * 1e3
    );
    println!(
        "FIGURE startup_rooms_ms_{n} {:.0}",
        t_rooms.as_secs_f64() * 1e3
    );
    println!(
        "FIGURE startup_total_ms_{n} {:.0}",
        total.as_secs_f64() * 1e3
    );
    let _ = root.shutdown().await;
}

// ---------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let mode = args.first().cloned().unwrap_or_else(|| "all".to_owned());
    let num = |i: usize, default: usize| -> usize {
        args.get(i)
            .and_then(|s| s.replace(['_', ','], "").parse().ok())
            .unwrap_or(default)
    };
    let (a1, a2) = (num(1, 0), num(2, 0));
    // `BENCH_RUNS`: runs of the pipeline modes (default 3; the median is the figure).
    let runs = match env_number("BENCH_RUNS") {
        0 => 3,
        n => n,
    };
    let or = |v: usize, default: usize| if v == 0 { default } else { v };
    let counts: Vec<usize> = args
        .get(1)
        .map(|s| {
            s.split(',')
                .filter_map(|n| n.replace('_', "").parse().ok())
                .collect()
        })
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1_000, 10_000]);
    // As `main.rs`: actix on a multi-thread tokio runtime.
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    });
    system.block_on(async move {
        match mode.as_str() {
            "throughput" => pipelines(or(a1, 10_000), or(a2, 20), false, runs).await,
            "journal" => pipelines(or(a1, 10_000), or(a2, 1), true, runs).await,
            "memory" => memory(counts).await,
            "startup" => startup(or(a1, 10_000)).await,
            "all" => {
                pipelines(10_000, 20, false, runs).await;
                pipelines(10_000, 1, true, runs).await;
                memory(vec![1_000, 10_000]).await;
                startup(10_000).await;
            }
            other => {
                eprintln!("unknown mode {other}: throughput | journal | memory | startup");
                std::process::exit(2);
            }
        }
    });
}
