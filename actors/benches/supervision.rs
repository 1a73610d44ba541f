//! Supervision overhead, printed as figures (not a timed test).
//!
//! 1. Message round trip (`send().await`) through a supervised child vs a bare actix actor.
//! 2. Heap bytes per idle actor at 10,000 actors, supervised vs bare, from a counting
//!    global allocator (exact, not sampled).
//!
//! Run: `cargo bench -p actors --bench supervision`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Context, Handler, Message};
use actors::{ActorId, ChildSpec, Registry, Supervisor, SupervisorConfig};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const ROUND_TRIPS: u32 = 200_000;
const RUNS: usize = 5;
const IDLE_ACTORS: usize = 10_000;

struct Echo(u64);

impl Actor for Echo {
    type Context = Context<Self>;
}
actors::supervised_actor!(Echo);

#[derive(Message)]
#[rtype(result = "u64")]
struct Ping(u64);

impl Handler<Ping> for Echo {
    type Result = u64;
    fn handle(&mut self, msg: Ping, _: &mut Context<Self>) -> u64 {
        self.0 = self.0.wrapping_add(msg.0);
        self.0
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn bare_round_trips(addr: &Addr<Echo>) -> Duration {
    let t = Instant::now();
    for i in 0..ROUND_TRIPS {
        let _ = addr.send(Ping(u64::from(i))).await;
    }
    t.elapsed()
}

async fn supervised_round_trips(h: &actors::ChildHandle<Echo>) -> Duration {
    let t = Instant::now();
    for i in 0..ROUND_TRIPS {
        let _ = h.send(Ping(u64::from(i))).await;
    }
    t.elapsed()
}

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[actix_rt::main]
async fn main() {
    let sup = Supervisor::start_root(SupervisorConfig::default(), Registry::new());
    let bare = Echo(0).start();
    let supervised = match sup
        .start_child(ChildSpec::new(ActorId::singleton("echo"), |_| Echo(0)))
        .await
    {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cannot start the supervised child: {e}");
            std::process::exit(1);
        }
    };
    // Warm up both paths.
    bare_round_trips(&bare).await;
    supervised_round_trips(&supervised).await;
    let mut bare_ns = Vec::new();
    let mut sup_ns = Vec::new();
    for _ in 0..RUNS {
        bare_ns.push(bare_round_trips(&bare).await.as_nanos() as f64 / f64::from(ROUND_TRIPS));
        sup_ns.push(
            supervised_round_trips(&supervised).await.as_nanos() as f64 / f64::from(ROUND_TRIPS),
        );
    }
    let (b, s) = (median(bare_ns), median(sup_ns));
    println!("round trip, median of {RUNS} runs of {ROUND_TRIPS} sends:");
    println!("  bare actix       {b:8.0} ns");
    println!("  supervised child {s:8.0} ns");
    println!(
        "  overhead         {:+7.1} %  (target <= 10 %)",
        (s / b - 1.0) * 100.0
    );

    // Memory per idle actor.
    let before = live();
    let mut addrs = Vec::with_capacity(IDLE_ACTORS);
    for _ in 0..IDLE_ACTORS {
        addrs.push(Echo(0).start());
    }
    // Let every actor run its first poll (started()).
    for a in addrs.iter().step_by(1000) {
        let _ = a.send(Ping(0)).await;
    }
    tokio::task::yield_now().await;
    let bare_bytes = (live() - before) as f64 / IDLE_ACTORS as f64;

    let sup2 = Supervisor::start_root(SupervisorConfig::default(), Registry::new());
    let before = live();
    let mut handles = Vec::with_capacity(IDLE_ACTORS);
    for i in 0..IDLE_ACTORS {
        match sup2
            .start_child(ChildSpec::new(
                ActorId::new("room", &format!("!{i:08}:example.org")),
                |_| Echo(0),
            ))
            .await
        {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("cannot start child {i}: {e}");
                std::process::exit(1);
            }
        }
    }
    for h in handles.iter().step_by(1000) {
        let _ = h.send(Ping(0)).await;
    }
    tokio::task::yield_now().await;
    let sup_bytes = (live() - before) as f64 / IDLE_ACTORS as f64;
    println!("heap per idle actor at {IDLE_ACTORS} actors:");
    println!("  bare actix       {bare_bytes:8.0} B");
    println!("  supervised child {sup_bytes:8.0} B  (target <= 2048 B; includes handle, registry entry, id)");
    println!("  supervision adds {:8.0} B", sup_bytes - bare_bytes);
    let t = Instant::now();
    for h in &handles {
        let _ = sup2.stop_child(h.id()).await;
    }
    println!("stop {IDLE_ACTORS} children one by one: {:?}", t.elapsed());
    drop(addrs);
}
