//! The people of `ops/bench` (parts 1, 2 and 5), and the bench's agent server.
//!
//! ```text
//! bench_driver roundtrip --hs URL --secret FILE --state DIR --bot USER --floor USER [--peer USER] [--n 200] [--warmup 5]
//! bench_driver burst     --hs URL --secret FILE --state DIR --bot USER [--m 10] [--k 20]
//! bench_driver isolation --hs URL --secret FILE --state DIR --bot USER [--p 4] [--secs 30] [--slow slow]
//! bench_driver agent     --port PORT [--slow-sender USER] [--delay-secs 30]
//! ```
//! Every person is a matrix-sdk client with its own sqlite store (end-to-end encryption on),
//! registered through Synapse's shared-secret admin API, syncing back to back in its own
//! `sync_once` loop. A message's latency runs from just before `room.send` until the
//! person's sync hands over the bot's reply to it (a rich reply naming the message).
//! Figures are printed as they come; lines `FIGURE <key> <value>` are for `ops/bench/run`.
//!
//! Part 1 (`roundtrip`) measures Surfaces (`--bot`) and the floor (`--floor`, the bare
//! matrix-sdk echo bot of `floor_bot.rs`), and with `--peer` a third bot, `nio` in the
//! figures (the matrix-nio echo bot of `nio_bot.py`), all in the same rotation; each is
//! compared with the floor. `--cpu name=pid,...` names the processes whose CPU is measured
//! (`synapse`, and each bot by its name for its own CPU per reply).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::client::room::create_room::v3::{
    Request as CreateRoomRequest, RoomPreset,
};
use matrix_sdk::ruma::events::room::encrypted::OriginalSyncRoomEncryptedEvent;
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::member::MembershipState;
use matrix_sdk::ruma::events::room::message::{
    OriginalSyncRoomMessageEvent, Relation, RoomMessageEventContent,
};
use matrix_sdk::ruma::events::typing::SyncTypingEvent;
use matrix_sdk::ruma::events::InitialStateEvent;
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use matrix_sdk::{Client, Room, RoomState};
use parking_lot::Mutex;
use serde_json::{json, Value};
use surfaces_testkit::register::Registrar;
use surfaces_testkit::stats::{ms, print_summary, ratio, summarize, Summary};
use tokio::sync::Notify;

/// Longest wait for one reply (the isolation run's slow reply has its own).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for onboarding (Space and chat room made, joined, welcome seen).
const ONBOARD_TIMEOUT: Duration = Duration::from_secs(120);
/// Long-poll timeout of the people's syncs.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// After the last reply of a burst: how long to watch for duplicates.
const SETTLE: Duration = Duration::from_secs(3);
/// Part 1's homeserver cost: blocks per bot, and round trips per block.
const HS_BLOCKS: usize = 5;
const HS_BLOCK_LEN: usize = 20;

// ---------------------------------------------------------------------------------------
// Arguments

struct Args {
    mode: String,
    kv: HashMap<String, String>,
}

impl Args {
    fn parse() -> anyhow::Result<Args> {
        let mut it = std::env::args().skip(1);
        let mode = it.next().context("missing mode")?;
        let mut kv = HashMap::new();
        while let Some(k) = it.next() {
            let key = k
                .strip_prefix("--")
                .ok_or_else(|| anyhow!("expected --key, got {k}"))?;
            let v = it.next().ok_or_else(|| anyhow!("--{key} needs a value"))?;
            kv.insert(key.to_owned(), v);
        }
        Ok(Args { mode, kv })
    }
    fn get(&self, key: &str) -> anyhow::Result<String> {
        self.kv
            .get(key)
            .cloned()
            .ok_or_else(|| anyhow!("missing --{key}"))
    }
    fn num(&self, key: &str, default: u64) -> anyhow::Result<u64> {
        match self.kv.get(key) {
            Some(v) => v.parse().with_context(|| format!("--{key} {v}")),
            None => Ok(default),
        }
    }
    fn or(&self, key: &str, default: &str) -> String {
        self.kv
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }
}

// ---------------------------------------------------------------------------------------
// Figures

/// CPU time (user + system) this process has used, in seconds.
fn cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

/// The CPU used by other processes (`--cpu name=pid,...`) over a window of the run.
struct CpuWatch {
    pids: Vec<(String, String, f64)>,
    t0: Instant,
}

impl CpuWatch {
    fn start(args: &Args) -> CpuWatch {
        let mut pids: Vec<(String, String, f64)> = cpu_pids(args)
            .into_iter()
            .map(|(n, p)| {
                let used = cpu_seconds_of(&p);
                (n, p, used)
            })
            .collect();
        pids.push(("people".to_owned(), "self".to_owned(), cpu_seconds()));
        CpuWatch {
            pids,
            t0: Instant::now(),
        }
    }

    /// Prints what each used since `start`, and FIGURE lines `cpu_<key>_<name>`.
    fn report(&self, key: &str) {
        let wall = self.t0.elapsed().as_secs_f64();
        let parts: Vec<String> = self
            .pids
            .iter()
            .map(|(name, pid, before)| {
                let used = cpu_seconds_of(pid) - before;
                println!("FIGURE cpu_{key}_{name} {used:.1}");
                format!(
                    "{name} {used:.1} CPU-s ({:.0} % of a core)",
                    used / wall * 100.0
                )
            })
            .collect();
        println!("FIGURE cpu_{key}_wall {wall:.1}");
        println!("{key}: CPU over {wall:.1} s: {}", parts.join(", "));
    }
}

/// CPU time (user + system) process `pid` (or `self`) has used, in seconds.
/// The processes named by `--cpu name=pid,...`, as (name, pid).
fn cpu_pids(args: &Args) -> Vec<(String, String)> {
    args.kv
        .get("cpu")
        .map(|v| {
            v.split(',')
                .filter_map(|p| p.split_once('='))
                .map(|(n, p)| (n.to_owned(), p.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn cpu_seconds_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

// ---------------------------------------------------------------------------------------
// A person

#[derive(Default)]
struct Inbox {
    /// Event replied to → (arrival, reply body), in arrival order.
    replies: Mutex<HashMap<OwnedEventId, Vec<(Instant, String)>>>,
    /// Every message seen: (room, sender, body).
    messages: Mutex<Vec<(OwnedRoomId, OwnedUserId, String)>>,
    /// Encrypted events that could not be decrypted.
    undecrypted: AtomicUsize,
    /// Typing notifications naming someone typing, per room.
    typing: Mutex<HashMap<OwnedRoomId, usize>>,
    notify: Notify,
}

struct Person {
    client: Client,
    id: OwnedUserId,
    inbox: Arc<Inbox>,
    sync: tokio::task::JoinHandle<()>,
}

impl Drop for Person {
    fn drop(&mut self) {
        self.sync.abort();
    }
}

struct Ctx {
    hs: String,
    /// Registers the people (Synapse's shared-secret admin API).
    registrar: Registrar,
    state: PathBuf,
}

impl Ctx {
    fn from(args: &Args) -> anyhow::Result<Ctx> {
        let secret_file = args.get("secret")?;
        let secret = std::fs::read_to_string(&secret_file)
            .with_context(|| format!("reading {secret_file}"))?
            .trim()
            .to_owned();
        let hs = args.get("hs")?;
        Ok(Ctx {
            registrar: Registrar::new(reqwest::Client::new(), &hs, &secret),
            hs,
            state: PathBuf::from(args.get("state")?),
        })
    }
}

impl Person {
    async fn new(ctx: &Ctx, localpart: &str) -> anyhow::Result<Person> {
        let password = format!("{localpart}-bench-password");
        // A person of an earlier run on the same homeserver is logged in again.
        ctx.registrar
            .register_unless_taken(localpart, &password, false)
            .await?;
        let store = ctx.state.join(format!("person-{localpart}"));
        let _ = std::fs::remove_dir_all(&store);
        let client = surfaces_testkit::login::password_client(
            &ctx.hs,
            localpart,
            &password,
            &store,
            "bench person",
        )
        .await?;
        let inbox = Arc::new(Inbox::default());
        {
            let inbox = inbox.clone();
            client.add_event_handler(move |ev: OriginalSyncRoomMessageEvent, room: Room| {
                let inbox = inbox.clone();
                async move {
                    let now = Instant::now();
                    let body = ev.content.body().to_owned();
                    if let Some(Relation::Reply(reply)) = &ev.content.relates_to {
                        inbox
                            .replies
                            .lock()
                            .entry(reply.in_reply_to.event_id.clone())
                            .or_default()
                            .push((now, body.clone()));
                    }
                    inbox.messages.lock().push((
                        room.room_id().to_owned(),
                        ev.sender.clone(),
                        body,
                    ));
                    inbox.notify.notify_waiters();
                }
            });
        }
        {
            let inbox = inbox.clone();
            client.add_event_handler(move |ev: SyncTypingEvent, room: Room| {
                let inbox = inbox.clone();
                async move {
                    if !ev.content.user_ids.is_empty() {
                        *inbox
                            .typing
                            .lock()
                            .entry(room.room_id().to_owned())
                            .or_default() += 1;
                    }
                }
            });
        }
        {
            let inbox = inbox.clone();
            client.add_event_handler(move |_: OriginalSyncRoomEncryptedEvent| {
                let inbox = inbox.clone();
                async move {
                    inbox.undecrypted.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let first = client
            .sync_once(SyncSettings::default().timeout(Duration::ZERO))
            .await?;
        let id = client.user_id().context("no user id")?.to_owned();
        let syncer = client.clone();
        let sync = tokio::spawn(async move {
            let mut token = first.next_batch;
            loop {
                let settings = SyncSettings::default()
                    .timeout(SYNC_TIMEOUT)
                    .token(token.clone());
                match syncer.sync_once(settings).await {
                    Ok(r) => token = r.next_batch,
                    Err(error) => {
                        eprintln!("person sync failed: {error}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        Ok(Person {
            client,
            id,
            inbox,
            sync,
        })
    }

    /// Waits until `f` finds something in the inbox.
    async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Inbox) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inbox.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = f(&self.inbox) {
                return Ok(v);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                bail!(
                    "{}: timed out waiting for {what} ({} undecryptable events seen)",
                    self.id,
                    self.inbox.undecrypted.load(Ordering::Relaxed)
                );
            }
        }
    }

    /// The first reply to `event` (its arrival).
    async fn reply_to(&self, event: &OwnedEventId, timeout: Duration) -> anyhow::Result<Instant> {
        self.wait(&format!("the reply to {event}"), timeout, |inbox| {
            inbox.replies.lock().get(event).map(|v| v[0].0)
        })
        .await
    }

    async fn send(&self, room: &Room, text: &str) -> anyhow::Result<OwnedEventId> {
        Ok(room
            .send(RoomMessageEventContent::text_plain(text))
            .await?
            .response
            .event_id)
    }

    /// Sends `text` and waits for the reply: the round trip.
    async fn round_trip(&self, room: &Room, text: &str) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let event = self.send(room, text).await?;
        let arrival = self.reply_to(&event, REPLY_TIMEOUT).await?;
        Ok(arrival.saturating_duration_since(t0))
    }

    fn room(&self, id: &RoomId) -> anyhow::Result<Room> {
        self.client
            .get_room(id)
            .ok_or_else(|| anyhow!("{} does not know {id}", self.id))
    }

    /// The person invites the bot to a direct chat, joins the Space and the chat room the
    /// bot makes, and waits for the welcome; returns the chat room.
    async fn onboard(&self, bot: &UserId) -> anyhow::Result<Room> {
        let mut request = CreateRoomRequest::new();
        request.invite = vec![bot.to_owned()];
        request.is_direct = true;
        let dm = self.client.create_room(request).await?.room_id().to_owned();
        let deadline = tokio::time::Instant::now() + ONBOARD_TIMEOUT;
        loop {
            for room in self.client.invited_rooms() {
                let _ = room.join().await;
            }
            let found = self
                .inbox
                .messages
                .lock()
                .iter()
                .find(|(room, sender, _)| sender == bot && room != &dm)
                .map(|(room, _, _)| room.clone());
            if let Some(chat) = found {
                let room = self.room(&chat)?;
                if room.state() == RoomState::Joined {
                    return Ok(room);
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{}: onboarding with {bot} timed out ({} undecryptable events)",
                    self.id,
                    self.inbox.undecrypted.load(Ordering::Relaxed)
                );
            }
            let notified = self.inbox.notify.notified();
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    }

    /// An encrypted room with `bot` (invited), once the bot has joined.
    async fn room_with(&self, bot: &UserId) -> anyhow::Result<Room> {
        let mut request = CreateRoomRequest::new();
        request.invite = vec![bot.to_owned()];
        request.is_direct = true;
        request.preset = Some(RoomPreset::PrivateChat);
        request.initial_state = vec![InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any()];
        let room = self.client.create_room(request).await?;
        let deadline = tokio::time::Instant::now() + ONBOARD_TIMEOUT;
        loop {
            if let Ok(Some(member)) = room.get_member_no_sync(bot).await {
                if *member.membership() == MembershipState::Join {
                    return Ok(room);
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{bot} did not join {}", room.room_id());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Starts `n` people named `<prefix><i>` at once.
async fn people(ctx: &Arc<Ctx>, prefix: &str, n: usize) -> anyhow::Result<Vec<Person>> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let ctx = ctx.clone();
            let name = format!("{prefix}{i}");
            tokio::spawn(async move { Person::new(&ctx, &name).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// Onboards everyone at once; returns their chat rooms.
async fn onboard_all(people: &[Arc<Person>], bot: &UserId) -> anyhow::Result<Vec<Room>> {
    let tasks: Vec<_> = people
        .iter()
        .map(|p| {
            let (p, bot) = (p.clone(), bot.to_owned());
            tokio::spawn(async move { p.onboard(&bot).await })
        })
        .collect();
    let mut rooms = Vec::new();
    for t in tasks {
        rooms.push(t.await??);
    }
    Ok(rooms)
}

// ---------------------------------------------------------------------------------------
// Part 1: reply round trip, Surfaces, the floor and the peer interleaved

/// The bot every other one of part 1 is compared with.
const FLOOR: &str = "floor";
/// Surfaces, the bot whose ratios to the floor have targets.
const SURFACES: &str = "surfaces";

/// A bot of part 1: its name in figures, the person's room with it, its round trips.
struct Target {
    name: &'static str,
    room: Room,
    samples: Vec<Duration>,
}

impl Target {
    /// The end of its ratio figures' keys (`rtt_ratio<..>_p50`, `hs_cpu_ratio<..>`): none
    /// for Surfaces (the names its figures had before there was a peer), `_<name>` else.
    fn ratio_suffix(&self) -> String {
        if self.name == SURFACES {
            String::new()
        } else {
            format!("_{}", self.name)
        }
    }

    /// What its ratio to the floor is held to, for the printed line: Surfaces' only.
    fn ratio_target(&self, limit: &str) -> String {
        if self.name == SURFACES {
            format!("  (target <= {limit})")
        } else {
            String::new()
        }
    }
}

/// The targets but the floor, with the floor's index.
fn versus_floor(
    targets: &[Target],
) -> anyhow::Result<(usize, impl Iterator<Item = (usize, &Target)>)> {
    let floor = targets
        .iter()
        .position(|t| t.name == FLOOR)
        .context("no floor among the targets")?;
    Ok((
        floor,
        targets.iter().enumerate().filter(move |(k, _)| *k != floor),
    ))
}

/// The homeserver's CPU per answered message, for each bot apart: blocks of
/// [`HS_BLOCK_LEN`] round trips to one bot at a time, the bots taking turns block by block
/// (so drift in the machine's load hits them alike), Synapse's CPU-seconds over a bot's
/// blocks divided by its messages. Within a block only that bot's traffic runs, so its
/// typing, receipts and syncs are what Synapse spends; only the tail of a block's last reply
/// (a request sent after the person saw it) can spill into the next block.
async fn homeserver_cost(args: &Args, person: &Person, targets: &[Target]) -> anyhow::Result<()> {
    let pids: HashMap<String, String> = cpu_pids(args).into_iter().collect();
    let Some(synapse) = pids.get("synapse") else {
        println!("roundtrip: no synapse pid given (--cpu synapse=PID): homeserver cost skipped");
        return Ok(());
    };
    // Per bot: (Synapse CPU-s, the bot's own CPU-s, messages).
    let mut used = vec![(0.0f64, 0.0f64, 0usize); targets.len()];
    for b in 0..HS_BLOCKS {
        for j in 0..targets.len() {
            let k = (b + j) % targets.len();
            let own = pids.get(targets[k].name);
            let cpu = || {
                (
                    cpu_seconds_of(synapse),
                    own.map_or(0.0, |p| cpu_seconds_of(p)),
                )
            };
            let (h0, o0) = cpu();
            for i in 0..HS_BLOCK_LEN {
                person
                    .round_trip(&targets[k].room, &format!("homeserver cost {b}.{i}"))
                    .await?;
            }
            let (h1, o1) = cpu();
            used[k].0 += h1 - h0;
            used[k].1 += o1 - o0;
            used[k].2 += HS_BLOCK_LEN;
        }
    }
    let per_reply: Vec<f64> = used
        .iter()
        .map(|(h, _, n)| h / (*n).max(1) as f64 * 1000.0)
        .collect();
    for (t, (h, o, n)) in targets.iter().zip(&used) {
        let n = (*n).max(1) as f64;
        println!(
            "roundtrip {:<12} homeserver {:.1} CPU-ms per answered message, the bot itself {:.1} ({} messages in {HS_BLOCKS} blocks)",
            t.name,
            h / n * 1000.0,
            o / n * 1000.0,
            n
        );
        println!("FIGURE hs_cpu_ms_{} {:.1}", t.name, h / n * 1000.0);
        println!("FIGURE own_cpu_ms_{} {:.1}", t.name, o / n * 1000.0);
    }
    let (floor, others) = versus_floor(targets)?;
    if per_reply[floor] > 0.0 {
        for (k, t) in others {
            let r = per_reply[k] / per_reply[floor];
            println!(
                "roundtrip: homeserver cost {} / floor {r:.3}{}",
                t.name,
                t.ratio_target("1.10")
            );
            println!("FIGURE hs_cpu_ratio{} {r:.3}", t.ratio_suffix());
        }
    }
    Ok(())
}

async fn roundtrip(args: &Args) -> anyhow::Result<()> {
    let ctx = Arc::new(Ctx::from(args)?);
    let bot: OwnedUserId = args.get("bot")?.parse()?;
    let floor: OwnedUserId = args.get("floor")?.parse()?;
    let peer: Option<OwnedUserId> = args.kv.get("peer").map(|p| p.parse()).transpose()?;
    let n = args.num("n", 200)? as usize;
    let warmup = args.num("warmup", 5)? as usize;
    let person = Person::new(&ctx, "rtt").await?;
    let t = Instant::now();
    let chat = person.onboard(&bot).await?;
    println!(
        "roundtrip: onboarded with Surfaces in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let target = |name, room| Target {
        name,
        room,
        samples: Vec::with_capacity(n),
    };
    let mut targets = vec![
        target(SURFACES, chat),
        target(FLOOR, person.room_with(&floor).await?),
    ];
    if let Some(peer) = &peer {
        targets.push(target("nio", person.room_with(peer).await?));
    }
    let mut encrypted = Vec::new();
    for t in &targets {
        let on = t.room.latest_encryption_state().await?.is_encrypted();
        encrypted.push(format!("{} {on}", t.name));
    }
    println!("roundtrip: encrypted rooms: {}", encrypted.join(", "));
    for i in 0..warmup {
        for t in &targets {
            person.round_trip(&t.room, &format!("warm-up {i}")).await?;
        }
    }
    // Interleaved, one message at a time, the order rotating: machine noise hits all alike.
    let cpu = CpuWatch::start(args);
    for i in 0..n {
        let text = format!("round trip message number {i}");
        for j in 0..targets.len() {
            let k = (i + j) % targets.len();
            let d = person.round_trip(&targets[k].room, &text).await?;
            targets[k].samples.push(d);
        }
    }
    cpu.report("rtt");
    for t in &targets {
        let seen = person
            .inbox
            .typing
            .lock()
            .get(t.room.room_id())
            .copied()
            .unwrap_or(0);
        println!(
            "roundtrip {}: {seen} typing notifications seen for {} messages (warm-up included)",
            t.name,
            t.samples.len() + warmup
        );
        println!("FIGURE rtt_{}_typing_seen {seen}", t.name);
    }
    homeserver_cost(args, &person, &targets).await?;
    let sums: Vec<Summary> = targets.iter().map(|t| summarize(&t.samples)).collect();
    for (t, sum) in targets.iter().zip(&sums) {
        print_summary(
            &format!("roundtrip {:<12}", t.name),
            &format!("rtt_{}", t.name),
            sum,
        );
    }
    let (floor, others) = versus_floor(&targets)?;
    let f = &sums[floor];
    for (k, t) in others {
        let s = &sums[k];
        let (r50, r90, r99) = (
            ratio(s.p50, f.p50),
            ratio(s.p90, f.p90),
            ratio(s.p99, f.p99),
        );
        println!(
            "roundtrip: {} / floor: p50 {r50:.3}  p90 {r90:.3}  p99 {r99:.3}{}",
            t.name,
            t.ratio_target("1.05")
        );
        let key = format!("rtt_ratio{}", t.ratio_suffix());
        println!("FIGURE {key}_p50 {r50:.3}");
        println!("FIGURE {key}_p90 {r90:.3}");
        println!("FIGURE {key}_p99 {r99:.3}");
    }
    println!(
        "FIGURE rtt_undecryptable {}",
        person.inbox.undecrypted.load(Ordering::Relaxed)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Part 2: burst

async fn burst(args: &Args) -> anyhow::Result<()> {
    let ctx = Arc::new(Ctx::from(args)?);
    let bot: OwnedUserId = args.get("bot")?.parse()?;
    let m = args.num("m", 10)? as usize;
    let k = args.num("k", 20)? as usize;
    let t = Instant::now();
    let persons: Vec<Arc<Person>> = people(&ctx, "burst", m)
        .await?
        .into_iter()
        .map(Arc::new)
        .collect();
    let rooms = onboard_all(&persons, &bot).await?;
    println!(
        "burst: {m} people onboarded in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // One warm-up round trip each (room keys shared both ways), not counted.
    for (p, r) in persons.iter().zip(&rooms) {
        p.round_trip(r, "warm-up").await?;
    }
    let start = Arc::new(tokio::sync::Barrier::new(m));
    let cpu = CpuWatch::start(args);
    let t0 = Instant::now();
    let senders: Vec<_> = persons
        .iter()
        .zip(rooms.iter().cloned())
        .map(|(p, room)| {
            let (p, start) = (p.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let mut sent = Vec::with_capacity(k);
                for i in 0..k {
                    let text = format!("burst message {i} of {}", p.id);
                    let t = Instant::now();
                    let event = p.send(&room, &text).await?;
                    sent.push((event, t, text));
                }
                anyhow::Ok(sent)
            })
        })
        .collect();
    let mut sent = Vec::new();
    for (i, s) in senders.into_iter().enumerate() {
        for (event, t, text) in s.await?? {
            sent.push((i, event, t, text));
        }
    }
    let sends_done = t0.elapsed();
    let mut latencies = Vec::with_capacity(sent.len());
    let mut last = t0;
    for (i, event, t, _) in &sent {
        let arrival = persons[*i].reply_to(event, REPLY_TIMEOUT).await?;
        latencies.push(arrival.saturating_duration_since(*t));
        last = last.max(arrival);
    }
    let elapsed = last.saturating_duration_since(t0);
    cpu.report("burst");
    tokio::time::sleep(SETTLE).await;
    let (mut once, mut twice, mut wrong) = (0, 0, 0);
    for (i, event, _, text) in &sent {
        let replies = persons[*i].inbox.replies.lock();
        let got = replies.get(event).map(Vec::as_slice).unwrap_or_default();
        match got.len() {
            1 => once += 1,
            0 => {}
            _ => twice += 1,
        }
        if got.iter().any(|(_, body)| body != &format!("echo: {text}")) {
            wrong += 1;
        }
    }
    let total = m * k;
    let rate = total as f64 / elapsed.as_secs_f64();
    println!(
        "burst: {m} people x {k} messages = {total}: all sent in {:.2} s, all answered in {:.2} s",
        sends_done.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "burst: answered once {once}/{total}, more than once {twice}, wrong text {wrong}; {rate:.1} messages/s"
    );
    print_summary("burst latency", "burst", &summarize(&latencies));
    println!("FIGURE burst_total {total}");
    println!("FIGURE burst_once {once}");
    println!("FIGURE burst_dupes {twice}");
    println!("FIGURE burst_wrong {wrong}");
    println!("FIGURE burst_msgs_per_s {rate:.1}");
    println!("FIGURE burst_elapsed_s {:.2}", elapsed.as_secs_f64());
    if once != total || twice != 0 || wrong != 0 {
        bail!("burst: not every message was answered exactly once");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Part 5: isolation

/// One round trip of a phase: when it started (since the phase began), how long it took,
/// whose it was.
type Sample = (Duration, Duration, usize);

/// Every person sends one message at a time (waiting for its reply) for `secs`.
async fn phase(
    persons: &[Arc<Person>],
    rooms: &[Room],
    secs: u64,
    tag: &str,
) -> anyhow::Result<Vec<Sample>> {
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(secs);
    let tasks: Vec<_> = persons
        .iter()
        .zip(rooms.iter().cloned())
        .enumerate()
        .map(|(who, (p, room))| {
            let (p, tag) = (p.clone(), tag.to_owned());
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut i = 0;
                while Instant::now() < until {
                    let at = t0.elapsed();
                    out.push((at, p.round_trip(&room, &format!("{tag} {i}")).await?, who));
                    i += 1;
                }
                anyhow::Ok(out)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

fn latencies(samples: &[Sample]) -> Vec<Duration> {
    samples.iter().map(|s| s.1).collect()
}

/// The slowest samples of a phase: when they were sent, how long they took.
fn print_tail(label: &str, samples: &[Sample]) {
    let mut s = samples.to_vec();
    s.sort_by_key(|e| std::cmp::Reverse(e.1));
    let tail: Vec<String> = s
        .iter()
        .take(5)
        .map(|(at, d, who)| {
            format!(
                "{:.0} ms at {:.1} s (person {who})",
                ms(*d),
                at.as_secs_f64()
            )
        })
        .collect();
    println!("{label}: slowest: {}", tail.join(", "));
}

async fn isolation(args: &Args) -> anyhow::Result<()> {
    let ctx = Arc::new(Ctx::from(args)?);
    let bot: OwnedUserId = args.get("bot")?.parse()?;
    let p = args.num("p", 4)? as usize;
    let secs = args.num("secs", 30)?;
    let warm = args.num("warm-secs", 5)?;
    let cycles = args.num("cycles", 2)?.max(1);
    let slow_name = args.or("slow", "slow");
    let mut persons: Vec<Arc<Person>> = people(&ctx, "iso", p)
        .await?
        .into_iter()
        .map(Arc::new)
        .collect();
    persons.push(Arc::new(Person::new(&ctx, &slow_name).await?));
    let mut rooms = onboard_all(&persons, &bot).await?;
    let (slow, slow_room) = (persons.pop().context("slow")?, rooms.pop().context("room")?);
    println!(
        "isolation: {p} people, phases of {secs} s: baseline, then {cycles} x (beside the slow room, baseline), after {warm} s of warm-up traffic; the agent is slow only for {}",
        slow.id
    );
    phase(&persons, &rooms, warm, "warm-up").await?;

    let mut without: Vec<Duration> = Vec::new();
    let mut beside: Vec<Duration> = Vec::new();
    let mut slow_replies = Vec::new();
    let a = phase(&persons, &rooms, secs, "baseline").await?;
    print_summary(
        "isolation baseline 0      ",
        "iso_base0",
        &summarize(&latencies(&a)),
    );
    print_tail("isolation baseline 0      ", &a);
    without.extend(latencies(&a));
    for cycle in 1..=cycles {
        let t_slow = Instant::now();
        let slow_event = slow
            .send(
                &slow_room,
                &format!("a question that takes the agent long ({cycle})"),
            )
            .await?;
        let cpu = CpuWatch::start(args);
        let b = phase(&persons, &rooms, secs, &format!("beside-slow-{cycle}")).await?;
        cpu.report(&format!("iso{cycle}"));
        print_summary(
            &format!("isolation beside slow {cycle}  "),
            &format!("iso_slow{cycle}"),
            &summarize(&latencies(&b)),
        );
        print_tail(&format!("isolation beside slow {cycle}  "), &b);
        beside.extend(latencies(&b));
        let slow_arrival = slow
            .reply_to(&slow_event, Duration::from_secs(secs + 120))
            .await?;
        let slow_latency = slow_arrival.saturating_duration_since(t_slow);
        println!(
            "isolation: the slow room's reply {cycle} came after {:.1} s",
            slow_latency.as_secs_f64()
        );
        slow_replies.push(slow_latency);
        let c = phase(&persons, &rooms, secs, &format!("baseline-{cycle}")).await?;
        print_summary(
            &format!("isolation baseline {cycle}      "),
            &format!("iso_base{cycle}"),
            &summarize(&latencies(&c)),
        );
        print_tail(&format!("isolation baseline {cycle}      "), &c);
        without.extend(latencies(&c));
    }
    let slowest_reply = slow_replies.iter().max().copied().unwrap_or_default();
    println!("FIGURE iso_slow_reply_s {:.1}", slowest_reply.as_secs_f64());
    // The run without the slow room: every baseline, which bracket the slow phases in time
    // (drift of the machine's load falls on both sides).
    let (sw, sb) = (summarize(&without), summarize(&beside));
    print_summary("isolation without (pooled)", "iso_without", &sw);
    print_summary("isolation beside (pooled) ", "iso_beside", &sb);
    let (r99, r90, r50) = (
        ratio(sb.p99, sw.p99),
        ratio(sb.p90, sw.p90),
        ratio(sb.p50, sw.p50),
    );
    println!(
        "isolation: beside the slow room / without it: p50 {r50:.3}  p90 {r90:.3}  p99 {r99:.3} (target p99 <= 1.10)"
    );
    println!("FIGURE iso_ratio_p99 {r99:.3}");
    println!("FIGURE iso_ratio_p90 {r90:.3}");
    println!("FIGURE iso_ratio_p50 {r50:.3}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The bench's agent server (`docs/agent-api.md`, turns only): echoes, slow for one sender.

async fn agent(args: &Args) -> anyhow::Result<()> {
    use axum::extract::{Json, State};
    use axum::http::header::CONTENT_TYPE;
    use axum::response::IntoResponse;
    use axum::routing::{get, post};

    struct Cfg {
        slow_sender: String,
        delay: Duration,
    }
    async fn turn(
        State(cfg): State<Arc<Cfg>>,
        Json(body): Json<Value>,
    ) -> axum::response::Response {
        let sender = body["sender"]["id"].as_str().unwrap_or_default();
        let text = body["text"].as_str().unwrap_or_default();
        if sender == cfg.slow_sender {
            tokio::time::sleep(cfg.delay).await;
        }
        let data = json!({ "text": format!("echo: {text}") }).to_string();
        let sse = format!("event: delta\ndata: {data}\n\nevent: done\ndata: {data}\n\n");
        ([(CONTENT_TYPE, "text/event-stream")], sse).into_response()
    }
    let port = args.num("port", 0)?;
    let cfg = Arc::new(Cfg {
        slow_sender: args.or("slow-sender", ""),
        delay: Duration::from_secs(args.num("delay-secs", 30)?),
    });
    let app = axum::Router::new()
        .route(
            "/v1/health",
            get(|| async { axum::Json(json!({"status": "ok", "agent": "bench", "version": "1"})) }),
        )
        .route("/v1/chats/{chat}/turns", post(turn))
        .with_state(cfg);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port as u16)).await?;
    println!("agent ready on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    match args.mode.as_str() {
        "roundtrip" => roundtrip(&args).await,
        "burst" => burst(&args).await,
        "isolation" => isolation(&args).await,
        "agent" => agent(&args).await,
        other => bail!("unknown mode {other}: roundtrip | burst | isolation | agent"),
    }
}
