//! In-process benchmarks of the real runtime over the in-memory messenger (parts 3 and 4 of
//! `ops/bench`). Prints figures; not a timed test.
//!
//! ```text
//! cargo bench --bench pipeline -- throughput [ROOMS] [MESSAGES_PER_ROOM]
//! cargo bench --bench pipeline -- journal    [ROOMS] [MESSAGES_PER_ROOM]
//! cargo bench --bench pipeline -- memory     [N1,N2,...]
//! cargo bench --bench pipeline -- startup    [ROOMS]
//! cargo bench --bench pipeline -- idle       [ROOMS] [ACTIVATIONS]
//! ```
//! (no mode: all four in turn; `ops/bench/run` runs each in a process of its own). The
//! pipeline modes run `BENCH_RUNS` times (default 3) and report the median and the best.
//!
//! Nothing here is a copy of product code: every mode runs `surfaces::runtime::start_with`
//! — the composition root `main` uses — with `surfaces_testkit::memory` as the messenger and
//! the built-in echo agent, on actix over a multi-thread tokio runtime as `main` builds it.
//!
//! **throughput / journal**: `ROOMS` chats (bound, in homes) are made in the messenger and
//! adopted by the start-up reconciliation; then `ROOMS × MESSAGES_PER_ROOM` messages are
//! logged at once and the clock runs until the bot has answered them all. The messenger's
//! connector delivers them in batches (as a sync response would), through the real intake
//! (journal staged, one commit per batch), room actors (strict order, typing, command
//! parse, record read), router, agent connection and echo agent, to the reply sent through
//! the `Surface` and the journal's done mark. `throughput` runs the store with
//! `Durability::Unflushed` (the journal's records are written, its flushes skipped: what the
//! core costs without the fsyncs); `journal` runs it as the product does (flushed at every
//! commit point). After each run every chat's replies are checked: each message answered
//! once, in order.
//!
//! **memory**: resident memory (VmRSS) and exact heap (a counting allocator) before and
//! after starting N idle room actors through the running core's room directory.
//!
//! **idle**: virtual room actors at scale. `ROOMS` chat records (default 1,000,000) are
//! written to a data dir; then two fresh processes (this binary, `idle-child`) start the
//! core, one over that data dir and one over an empty one, each measuring its time to
//! live, VmRSS and exact heap once settled, so the difference divided by `ROOMS` is what an
//! idle room costs resident (the store's files and page cache are the kernel's, reported
//! apart as the size on disk). The first then activates `ACTIVATIONS` (default 10,000)
//! idle chats spread over the store, one at a time, timing each from the request to the
//! new actor's first answer (a round trip through its mailbox, after its `started`): the
//! activation latency. A messenger without chat state (as Telegram) is used, so start-up
//! does no reconciliation: what the Matrix reconciler costs per room is measured by
//! `startup` and `ops/bench/reconcile`.
//!
//! **startup**: a data dir left by a first run over N chats; the time from
//! `runtime::start_with` to live (store and journal open, reconciliation, N room actors,
//! connector live), and the reconciliation's share.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Context};
use actors::{ActorId, ChildSpec};
use surfaces::runtime::{Options, Running, RuntimeView};
use surfaces::store::{Durability, RoomRecord};
use surfaces::surface::{Binding, ChatId, Connector, MessageId, PersonId, Surface};
use surfaces_testkit::alloc::Counting;
use surfaces_testkit::inproc::echo_config;
use surfaces_testkit::memory::{self, World};

// ---------------------------------------------------------------------------------------
// Counting allocator (exact heap figures in `memory`; off elsewhere: one relaxed load).

#[global_allocator]
static ALLOC: Counting = Counting::new();

/// How many chats each owner has in the benchmark's messenger.
const CHATS_PER_OWNER: usize = 100;
/// The longest a benchmark waits for the bot (start-up, or all the replies).
const BENCH_TIMEOUT: Duration = Duration::from_secs(600);
/// How often start-up is polled.
const POLL: Duration = Duration::from_millis(5);
/// Lets started actors run `started()` and the runtime go idle before memory is read.
const SETTLE: Duration = Duration::from_millis(500);

/// VmRSS of this process, in bytes.
fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU time (user + system) this process has used, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn fmt_int(n: f64) -> String {
    let s = format!("{n:.0}");
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

/// A number from the environment (0 when unset or unreadable).
fn env_number(name: &str) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Exits with a message: a benchmark that cannot run has no figures to print.
fn fail(what: &str, error: impl std::fmt::Display) -> ! {
    eprintln!("pipeline: {what}: {error:#}");
    std::process::exit(1);
}

/// A messenger holding `rooms` bound chats of the echo agent, `CHATS_PER_OWNER` per owner;
/// returns it and the chats with their owners.
fn seeded_world(rooms: usize, keep_posts: bool) -> (World, Vec<(PersonId, ChatId)>) {
    let world = World::new(memory::Options {
        keep_posts,
        ..memory::Options::default()
    });
    let mut chats = Vec::with_capacity(rooms);
    let mut next_chat = 1u64;
    for owner_index in 0..rooms.div_ceil(CHATS_PER_OWNER) {
        let owner = World::person(&format!("person{owner_index:05}"));
        let n = CHATS_PER_OWNER.min(rooms - chats.len());
        let bindings = (0..n)
            .map(|i| {
                let binding = Binding {
                    agent_id: "echo".to_owned(),
                    platform_chat_id: format!("sfc-{next_chat}"),
                    owner: owner.to_string(),
                    chat_index: i as u32 + 1,
                    archived: false,
                };
                next_chat += 1;
                (format!("Chat {}", i + 1), binding)
            })
            .collect();
        for chat in world.seed_chats(&owner, bindings) {
            chats.push((owner.clone(), chat));
        }
    }
    (world, chats)
}

/// Starts the core over `world` with its data in `dir`; waits until it is live.
async fn start(
    world: &World,
    dir: &std::path::Path,
    durability: Durability,
) -> (Running, Duration) {
    // The raw pipeline: each seeded owner sends hundreds of messages at once, which the
    // per-person rate limit is there to refuse.
    let config = echo_config(dir, "[limits]\nmessages_per_minute = 0\n")
        .unwrap_or_else(|e| fail("config", e));
    let connector: Box<dyn Connector> = Box::new(world.connector());
    let t0 = Instant::now();
    let running = surfaces::runtime::start_with(config, vec![connector], Options { durability })
        .await
        .unwrap_or_else(|e| fail("start", e));
    let view = running.view();
    while !view.live.load(std::sync::atomic::Ordering::Acquire) {
        if t0.elapsed() > BENCH_TIMEOUT {
            fail("start", "not live in time");
        }
        tokio::time::sleep(POLL).await;
    }
    (running, t0.elapsed())
}

/// Stops the core (as on SIGTERM).
async fn stop(running: Running) {
    running.run_until(std::future::ready(())).await;
}

/// Whether every chat's replies answer its messages once each, in order.
fn answered_in_order(world: &World, sent: &HashMap<ChatId, Vec<MessageId>>) -> bool {
    sent.iter().all(|(chat, ids)| {
        // Notices (e.g. "your message is queued", for one waiting over 10 s) are not answers.
        let replies: Vec<MessageId> = world
            .bot_posts(chat)
            .into_iter()
            .filter(|p| !p.is_notice())
            .filter_map(|p| p.reply_to)
            .collect();
        &replies == ids
    })
}

/// One run: `rooms × per_room` messages through the core; returns messages per second.
async fn pipeline(rooms: usize, per_room: usize, durability: Durability, label: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail("tempdir", e));
    let (world, chats) = seeded_world(rooms, true);
    let (running, _) = start(&world, dir.path(), durability).await;
    let before = world.agent_post_count();
    let notices_before = world.bot_post_count() - before;
    let total = rooms * per_room;
    // Round-robin over the chats, as many people writing at once would.
    let mut messages = Vec::with_capacity(total);
    for round in 0..per_room {
        for (owner, chat) in &chats {
            messages.push((owner.clone(), chat.clone(), format!("message {round}")));
        }
    }
    let store = running.view().store;
    let flushes0 = store.flushes();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let ids = world.say_many(messages);
    let target = before + total as u64;
    if tokio::time::timeout(BENCH_TIMEOUT, world.wait_for_agent_posts(target))
        .await
        .is_err()
    {
        fail(
            label,
            format!(
                "timed out with {} of {total} replies",
                world.agent_post_count() - before
            ),
        );
    }
    let elapsed = t0.elapsed();
    let cpu = cpu_seconds() - cpu0;
    let notices = world.bot_post_count() - world.agent_post_count() - notices_before;
    let flushes = store.flushes() - flushes0;
    let mut sent: HashMap<ChatId, Vec<MessageId>> = HashMap::new();
    for ((_, chat), id) in chats.iter().cycle().zip(ids) {
        sent.entry(chat.clone()).or_default().push(id);
    }
    let in_order = answered_in_order(&world, &sent);
    stop(running).await;
    let rate = total as f64 / elapsed.as_secs_f64();
    println!(
        "{label}: {} messages over {} rooms ({per_room} each) in {:.3} s; each answered once and in order: {}",
        fmt_int(total as f64),
        fmt_int(rooms as f64),
        elapsed.as_secs_f64(),
        if in_order { "yes" } else { "NO" }
    );
    if notices > 0 {
        println!(
            "{label}: {notices} notices besides the replies (messages told they wait in line)"
        );
    }
    println!(
        "{label}: CPU {cpu:.2} s over {:.2} s: {:.2} cores busy on average",
        elapsed.as_secs_f64(),
        cpu / elapsed.as_secs_f64()
    );
    println!(
        "FIGURE {label}_cores_busy {:.2}",
        cpu / elapsed.as_secs_f64()
    );
    if durability == Durability::Flushed {
        // Each flush is shared by every commit point that asked before it started.
        let per_message = flushes as f64 / total as f64;
        println!("{label}: {flushes} flushes, {per_message:.3} per message");
        println!("FIGURE {label}_flushes_per_msg {per_message:.3}");
    }
    println!(
        "FIGURE {label}_in_order {}",
        if in_order { "yes" } else { "no" }
    );
    println!(
        "{label}: {} messages/s ({:.2} µs per message)",
        fmt_int(rate),
        elapsed.as_secs_f64() * 1e6 / total as f64
    );
    rate
}

/// `pipeline` `runs` times (a fresh data dir each time); prints every run, then the median
/// and the best (a shared machine's noise only ever slows a run down).
async fn pipelines(
    rooms: usize,
    per_room: usize,
    durability: Durability,
    runs: usize,
    label: &str,
) {
    let mut rates = Vec::new();
    for _ in 0..runs.max(1) {
        rates.push(pipeline(rooms, per_room, durability, label).await);
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    let (median, best) = (rates[rates.len() / 2], rates[rates.len() - 1]);
    println!(
        "{label}: {} runs: median {} messages/s, best {}",
        rates.len(),
        fmt_int(median),
        fmt_int(best)
    );
    println!("FIGURE {label}_msgs_per_s_median {median:.0}");
    println!("FIGURE {label}_msgs_per_s_best {best:.0}");
}

/// What the journal's flushes cost: the same messages with the store unflushed (the
/// baseline, `journal_baseline_*`) and flushed as the product runs it (`journal_*`).
async fn journal(rooms: usize, per_room: usize, runs: usize) {
    pipelines(
        rooms,
        per_room,
        Durability::Unflushed,
        runs,
        "journal_baseline",
    )
    .await;
    pipelines(rooms, per_room, Durability::Flushed, runs, "journal").await;
}

/// A minimal supervised actor, for the memory floor.
struct Idle(#[allow(dead_code)] u64);

impl Actor for Idle {
    type Context = Context<Self>;
}
actors::supervised_actor!(Idle);

/// Resident memory and heap per idle room actor, started through the running core.
async fn memory(counts: Vec<usize>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail("tempdir", e));
    let max = counts.iter().copied().max().unwrap_or(0);
    let world = World::new(memory::Options::default());
    let (running, _) = start(&world, dir.path(), Durability::Flushed).await;
    let view: RuntimeView = running.view();
    let surface: Arc<dyn Surface> = Arc::new(world.surface());
    let chat = |i: usize| ChatId::new(format!("!idle{i:06}:memory"));
    let records: Vec<RoomRecord> = (0..max)
        .map(|i| RoomRecord {
            room_id: chat(i).to_string(),
            surface: memory::SURFACE_NAME.to_owned(),
            owner: format!("@person{i:06}:memory"),
            agent_id: "echo".to_owned(),
            platform_chat_id: format!("sfc-{}", i + 1),
            chat_index: 1,
            archived: false,
            name: Some("Chat 1".to_owned()),
        })
        .collect();
    view.store
        .apply(&records, &[], &[])
        .await
        .unwrap_or_else(|e| fail("records", e));
    // One room first, so one-time costs are not spread over the others; then the baseline.
    if let Err(e) = view.rooms.start(surface.clone(), chat(0)).await {
        fail("room", e);
    }
    tokio::time::sleep(SETTLE).await;
    ALLOC.set_counting(true);
    let (rss0, heap0) = (vm_rss(), ALLOC.live());
    let mut started = 1;
    println!(
        "memory: baseline VmRSS {:.1} MiB (the running core, its store, 1 room)",
        rss0 as f64 / 1048576.0
    );
    for n in counts {
        let t = Instant::now();
        for i in started..n {
            if let Err(e) = view.rooms.start(surface.clone(), chat(i)).await {
                fail("room", e);
            }
        }
        let start_time = t.elapsed();
        started = started.max(n);
        tokio::time::sleep(SETTLE).await;
        let (rss, heap) = (vm_rss(), ALLOC.live());
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
    let root = running.supervisor();
    let (rss1, heap1) = (vm_rss(), ALLOC.live());
    let mut idle = Vec::with_capacity(started);
    for i in 0..started {
        let id = ActorId::new("room", &format!("!floor{i:06}:memory"));
        match root.start_child(ChildSpec::new(id, |_| Idle(0))).await {
            Ok(handle) => idle.push(handle),
            Err(e) => fail("idle actor", e),
        }
    }
    tokio::time::sleep(SETTLE).await;
    let floor_heap = (ALLOC.live() - heap1) as f64 / started as f64;
    let floor_rss = (vm_rss() as f64 - rss1 as f64) / started as f64;
    println!(
        "memory: for comparison, {} minimal supervised actors: {floor_rss:.0} B resident and {floor_heap:.0} B heap each",
        fmt_int(started as f64)
    );
    println!("FIGURE memory_heap_minimal_supervised {floor_heap:.0}");
    ALLOC.set_counting(false);
    drop(idle);
    stop(running).await;
}

/// Start-up with an intact data dir holding `n` chats.
async fn startup(n: usize) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail("tempdir", e));
    let (world, _) = seeded_world(n, false);
    let (first, first_time) = start(&world, dir.path(), Durability::Flushed).await;
    let rooms = first.view().rooms.managed_len().unwrap_or(0);
    stop(first).await;
    println!(
        "startup: first start over {} chats (reconciliation writes them all): {:.0} ms, {} rooms",
        fmt_int(n as f64),
        first_time.as_secs_f64() * 1e3,
        fmt_int(rooms as f64)
    );
    let (again, total) = start(&world, dir.path(), Durability::Flushed).await;
    let report = again.view().reconciliation.lock().clone();
    let reconcile = report.map(|r| r.elapsed).unwrap_or_default();
    println!(
        "startup: intact data dir, {} chats: live after {:.0} ms, of which reconciliation {:.0} ms",
        fmt_int(n as f64),
        total.as_secs_f64() * 1e3,
        reconcile.as_secs_f64() * 1e3
    );
    println!(
        "FIGURE startup_total_ms_{n} {:.0}",
        total.as_secs_f64() * 1e3
    );
    println!(
        "FIGURE startup_reconcile_ms_{n} {:.0}",
        reconcile.as_secs_f64() * 1e3
    );
    stop(again).await;
}

/// Records written per store batch when seeding the idle-room store.
const SEED_BATCH: usize = 50_000;

/// The id of idle chat `i`.
fn idle_chat(i: usize) -> ChatId {
    ChatId::new(format!("!idle{i:07}:memory"))
}

/// A messenger without chat state: start-up reconciles nothing (as with Telegram).
fn stateless_world() -> World {
    let mut options = memory::Options {
        keep_posts: false,
        ..memory::Options::default()
    };
    options.capabilities.chat_state = false;
    World::new(options)
}

/// Writes `n` chat records into the store of the data dir the benchmark's config uses.
async fn seed_idle_store(dir: &std::path::Path, n: usize) {
    let store_dir = dir.join("data").join(surfaces::runtime::STORE_DIR);
    let store = surfaces::store::Store::open_with(&store_dir, Durability::Flushed)
        .unwrap_or_else(|e| fail("store", e));
    let mut i = 0;
    while i < n {
        let end = (i + SEED_BATCH).min(n);
        let records: Vec<RoomRecord> = (i..end)
            .map(|i| RoomRecord {
                room_id: idle_chat(i).to_string(),
                surface: memory::SURFACE_NAME.to_owned(),
                owner: format!("@person{:06}:memory", i / CHATS_PER_OWNER),
                agent_id: "echo".to_owned(),
                platform_chat_id: format!("sfc-{}", i + 1),
                chat_index: u32::try_from(i % CHATS_PER_OWNER + 1).unwrap_or(u32::MAX),
                archived: false,
                name: Some(format!("Chat {}", i % CHATS_PER_OWNER + 1)),
            })
            .collect();
        store
            .apply(&records, &[], &[])
            .await
            .unwrap_or_else(|e| fail("records", e));
        i = end;
    }
}

/// Size of the files under `dir`, in bytes.
fn disk_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The `idle-child` process: starts the core over `dir` (holding `n` chats), prints what it
/// measured as one `CHILD key=value ...` line, then stops.
async fn idle_child(dir: &std::path::Path, n: usize, activations: usize) {
    ALLOC.set_counting(true);
    let world = stateless_world();
    let (running, startup) = start(&world, dir, Durability::Flushed).await;
    tokio::time::sleep(SETTLE).await;
    let (rss, heap) = (vm_rss(), ALLOC.live());
    let view = running.view();
    let active_after_start = view.rooms.active_len();
    let mut took: Vec<Duration> = Vec::with_capacity(activations);
    // Spread over the store: a stride coprime with any power of ten.
    for j in 0..activations.min(n) {
        let chat = idle_chat(j.wrapping_mul(7_919) % n);
        let t = Instant::now();
        let handle = match view
            .rooms
            .activate_id(&chat, surfaces::runtime::room::Resume::Nothing)
            .await
        {
            Ok(Some(handle)) => handle,
            Ok(None) => fail("activate", format!("{chat} is not managed")),
            Err(e) => fail("activate", e),
        };
        let never = surfaces::runtime::room::Passivate {
            idle_after: Duration::MAX,
        };
        if let Err(e) = handle.send(never).await {
            fail("first answer", e);
        }
        took.push(t.elapsed());
    }
    took.sort();
    let pct = |p: f64| -> f64 {
        if took.is_empty() {
            return 0.0;
        }
        let i = ((took.len() as f64 * p).ceil() as usize).clamp(1, took.len()) - 1;
        took[i].as_secs_f64() * 1e6
    };
    // What `/status` and `/metrics` pay for the count (kept by the store with every write).
    let t = Instant::now();
    let managed = view
        .rooms
        .managed_len()
        .unwrap_or_else(|| fail("count", "unreadable"));
    let count_ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "CHILD startup_ms={:.1} rss={rss} heap={heap} active_after_start={active_after_start} \
         managed={managed} count_ms={count_ms:.3} act_p50_us={:.0} act_p99_us={:.0} act_max_us={:.0} \
         activated={}",
        startup.as_secs_f64() * 1e3,
        pct(0.50),
        pct(0.99),
        pct(1.0),
        took.len()
    );
    stop(running).await;
}

/// Runs `idle-child` over `dir` in a fresh process; returns its figures by name.
fn run_idle_child(dir: &std::path::Path, n: usize, activations: usize) -> HashMap<String, f64> {
    let exe = std::env::current_exe().unwrap_or_else(|e| fail("current exe", e));
    let output = std::process::Command::new(exe)
        .arg("idle-child")
        .arg(dir)
        .arg(n.to_string())
        .arg(activations.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| fail("idle-child", e));
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        fail("idle-child", format!("{}: {stdout}", output.status));
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CHILD "))
        .unwrap_or_else(|| fail("idle-child", format!("no figures in: {stdout}")));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect()
}

/// Virtual room actors at `n` chats (see the module docs).
async fn idle(n: usize, activations: usize) {
    let full = tempfile::tempdir().unwrap_or_else(|e| fail("tempdir", e));
    let empty = tempfile::tempdir().unwrap_or_else(|e| fail("tempdir", e));
    let t = Instant::now();
    seed_idle_store(full.path(), n).await;
    let on_disk = disk_bytes(full.path());
    println!(
        "idle: wrote {} chat records in {:.1} s ({:.0} MiB on disk)",
        fmt_int(n as f64),
        t.elapsed().as_secs_f64(),
        on_disk as f64 / 1048576.0
    );
    let base = run_idle_child(empty.path(), 0, 0);
    let at_n = run_idle_child(full.path(), n, activations);
    let get = |m: &HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    let per_rss = (get(&at_n, "rss") - get(&base, "rss")) / n as f64;
    let per_heap = (get(&at_n, "heap") - get(&base, "heap")) / n as f64;
    println!(
        "idle: start-up to live: {:.0} ms with {} chats, {:.0} ms with none; {} actors active after it",
        get(&at_n, "startup_ms"),
        fmt_int(n as f64),
        get(&base, "startup_ms"),
        get(&at_n, "active_after_start")
    );
    println!(
        "idle: VmRSS {:.1} MiB with {} idle chats vs {:.1} MiB with none: {per_rss:.1} B resident and {per_heap:.1} B heap per idle room (store files {:.0} MiB, apart)",
        get(&at_n, "rss") / 1048576.0,
        fmt_int(n as f64),
        get(&base, "rss") / 1048576.0,
        on_disk as f64 / 1048576.0
    );
    println!(
        "idle: activation of {} idle chats, one at a time, to the new actor's first answer: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        get(&at_n, "activated"),
        get(&at_n, "act_p50_us"),
        get(&at_n, "act_p99_us"),
        get(&at_n, "act_max_us")
    );
    println!(
        "idle: the number of managed chats ({}), as /status and /metrics read it (kept by the store with every write): {:.3} ms",
        fmt_int(get(&at_n, "managed")),
        get(&at_n, "count_ms")
    );
    println!("FIGURE idle_rooms {n}");
    println!("FIGURE idle_rss_per_room {per_rss:.1}");
    println!("FIGURE idle_heap_per_room {per_heap:.1}");
    println!("FIGURE idle_startup_ms {:.0}", get(&at_n, "startup_ms"));
    println!(
        "FIGURE idle_startup_empty_ms {:.0}",
        get(&base, "startup_ms")
    );
    println!(
        "FIGURE idle_activation_p50_us {:.0}",
        get(&at_n, "act_p50_us")
    );
    println!(
        "FIGURE idle_activation_p99_us {:.0}",
        get(&at_n, "act_p99_us")
    );
    println!("FIGURE idle_store_mib {:.0}", on_disk as f64 / 1048576.0);
    println!("FIGURE idle_count_ms {:.3}", get(&at_n, "count_ms"));
}

// ---------------------------------------------------------------------------------------

fn main() {
    // As `main.rs`: the process's memory in 4 KiB pages.
    if let Err(error) = surfaces::allocator::settle() {
        eprintln!("pipeline: cannot turn transparent huge pages off: {error}");
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let mode = args.first().cloned().unwrap_or_else(|| "all".to_owned());
    let num = |i: usize, default: usize| -> usize {
        args.get(i)
            .and_then(|s| s.replace(['_', ','], "").parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    };
    // `BENCH_RUNS`: runs of the pipeline modes (default 3; the median is the figure).
    let runs = match env_number("BENCH_RUNS") {
        0 => 3,
        n => n,
    };
    let counts: Vec<usize> = args
        .get(1)
        .map(|s| {
            s.split(',')
                .filter_map(|n| n.replace('_', "").parse().ok())
                .filter(|n| *n > 1)
                .collect()
        })
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1_000, 10_000]);
    // `idle-child DIR N K`: the data dir it measures.
    let child_dir = std::path::PathBuf::from(args.get(1).cloned().unwrap_or_default());
    // As `main.rs`: actix on a multi-thread tokio runtime.
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| fail("tokio runtime", e))
    });
    system.block_on(async move {
        match mode.as_str() {
            "throughput" => {
                pipelines(
                    num(1, 10_000),
                    num(2, 20),
                    Durability::Unflushed,
                    runs,
                    "throughput",
                )
                .await
            }
            "journal" => journal(num(1, 10_000), num(2, 1), runs).await,
            "memory" => memory(counts).await,
            "startup" => startup(num(1, 10_000)).await,
            "idle" => idle(num(1, 1_000_000), num(2, 10_000)).await,
            "idle-child" => idle_child(&child_dir, num(2, 0), num(3, 0)).await,
            "all" => {
                pipelines(10_000, 20, Durability::Unflushed, runs, "throughput").await;
                journal(10_000, 1, runs).await;
                memory(vec![1_000, 10_000]).await;
                startup(10_000).await;
                idle(1_000_000, 10_000).await;
            }
            other => fail(
                "mode",
                format!("unknown mode {other}: throughput | journal | memory | startup | idle"),
            ),
        }
    });
}
