//! The per-person limits under a flood (part 6 of `ops/bench`): does one person flooding
//! the bot move another person's reply latency? Prints figures; not a timed test.
//!
//! ```text
//! cargo bench --bench flood -- [VICTIMS] [AGENT_DELAY_MS]
//! ```
//!
//! The real runtime (`surfaces_testkit::inproc::Bot`: `runtime::start_with` over the
//! in-memory messenger) with the reference agent of `docs/agent-api.md` on loopback, its
//! turns taking `AGENT_DELAY_MS` (default 20) and at most 4 at once (the default
//! `agents[].max_concurrent_turns`). `VICTIMS` people (default 10) each ask
//! [`VICTIM_MESSAGES`] messages one at a time, all at once, and time each answer — within
//! the default rate (a burst of 20), as people are; the flooder, in the second and third
//! phases, sends `!new` (20 times), then, for as long as the victims are measured, bursts of
//! messages to every chat they have, each with a `!cancel` — hundreds per second.
//!
//! Three phases, each in the same process and run: the victims alone (the baseline), beside
//! the flood with the default `[limits]`, and beside the same flood with the limits off
//! (`limits.messages_per_minute = 0`, `max_chats_per_person = 0`) to show what they prevent.
//! The figure is the victims' p99 beside the flood over the baseline (target ≤ 1.10).

use std::time::{Duration, Instant};

use surfaces::surface::{ChatId, PersonId};
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup};
use surfaces_testkit::stats::{ms, ratio, summarize, Summary};

/// Messages each victim asks (after one to warm up): within the default burst of 20.
const VICTIM_MESSAGES: usize = 15;
/// How often an answer is polled for.
const POLL: Duration = Duration::from_millis(1);
/// The longest one answer is waited for.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// `!new` commands the flooder sends first.
const FLOOD_NEW: usize = 20;
/// Messages per chat of the flooder in each burst.
const FLOOD_BURST_PER_CHAT: usize = 5;
/// Pause between the flooder's bursts.
const FLOOD_EVERY: Duration = Duration::from_millis(20);

fn fail(what: &str, error: impl std::fmt::Display) -> ! {
    eprintln!("flood bench: {what}: {error}");
    std::process::exit(1)
}

/// The victim asks `n` messages one at a time; returns each answer's latency.
async fn measure(
    bot: &Bot,
    victim: &PersonId,
    chat: &ChatId,
    n: usize,
    tag: &str,
) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        let id = bot.world.say(victim, chat, &format!("{tag} {i}"));
        while bot.world.answers_to(chat, &id).is_empty() {
            if t0.elapsed() > ANSWER_TIMEOUT {
                fail("victim", format!("no answer to {tag} {i}"));
            }
            tokio::time::sleep(POLL).await;
        }
        samples.push(t0.elapsed());
    }
    samples
}

/// One phase: a bot with `limits` (TOML), `victims` people measured beside a flood (or alone).
async fn phase(label: &str, limits: &str, flood: bool, victims: usize, delay: Duration) -> Summary {
    let setup = Setup {
        agent: AgentSetup::Reference,
        extra_toml: limits.to_owned(),
        ..Setup::default()
    };
    let mut bot = Bot::start(setup).await.unwrap_or_else(|e| fail("start", e));
    let agent = bot.reference().unwrap_or_else(|e| fail("agent", e));
    let mut people = Vec::with_capacity(victims);
    for i in 0..victims {
        let onboarded = bot.onboard(&format!("victim{i}")).await;
        people.push(onboarded.unwrap_or_else(|e| fail("onboard", e)));
    }
    let (flooder, flooder_chat) = bot
        .onboard("flooder")
        .await
        .unwrap_or_else(|e| fail("onboard", e));
    agent.set_delay(delay);
    // Warm-up: the first turns open connections.
    for (victim, chat) in &people {
        measure(&bot, victim, chat, 1, "warm-up").await;
    }

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flooding = flood.then(|| {
        let (world, stop, sent) = (bot.world.clone(), stop.clone(), sent.clone());
        let (flooder, first) = (flooder.clone(), flooder_chat.clone());
        tokio::spawn(async move {
            for i in 0..FLOOD_NEW {
                world.say(&flooder, &first, &format!("!new flood {i}"));
            }
            let mut round = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut chats = world.chats_of(&flooder);
                if chats.is_empty() {
                    chats.push(first.clone());
                }
                // One burst arrives as one batch, as a sync response would carry it.
                let burst: Vec<(PersonId, ChatId, String)> = chats
                    .iter()
                    .flat_map(|chat| {
                        (0..FLOOD_BURST_PER_CHAT)
                            .map(move |k| format!("flood {round}.{k}"))
                            .chain(std::iter::once("!cancel".to_owned()))
                            .map(|text| (flooder.clone(), chat.clone(), text))
                    })
                    .collect();
                sent.fetch_add(burst.len(), std::sync::atomic::Ordering::Relaxed);
                world.say_many(burst);
                round += 1;
                tokio::time::sleep(FLOOD_EVERY).await;
            }
        })
    });
    let runs = people
        .iter()
        .map(|(victim, chat)| measure(&bot, victim, chat, VICTIM_MESSAGES, label));
    let samples: Vec<Duration> = futures_util::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(task) = flooding {
        let _ = task.await;
    }
    let s = summarize(&samples);
    let flood_note = if flood {
        format!(
            "; the flooder sent {} messages (+{FLOOD_NEW} !new) in {} chats",
            sent.load(std::sync::atomic::Ordering::Relaxed),
            bot.world.chats_of(&flooder).len()
        )
    } else {
        String::new()
    };
    println!(
        "{label}: victims n={} p50 {:.1} ms p99 {:.1} ms{flood_note}",
        s.n,
        ms(s.p50),
        ms(s.p99)
    );
    println!("FIGURE flood_{label}_p50_ms {:.1}", ms(s.p50));
    println!("FIGURE flood_{label}_p99_ms {:.1}", ms(s.p99));
    // Stopped as on SIGTERM, not just dropped: a bot dropped mid-flood leaves its room actors
    // to the actix system's teardown, which polls their turns once more after the runtime's
    // timers are gone (a panic per phase at exit).
    if let Err(error) = bot.stop().await {
        fail("stop", error);
    }
    s
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let n = args.first().copied().filter(|n| *n > 0).unwrap_or(10);
    let delay = Duration::from_millis(args.get(1).copied().unwrap_or(20) as u64);
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| fail("tokio runtime", e))
    });
    system.block_on(async move {
        let alone = phase("alone", "", false, n, delay).await;
        let limited = phase("limited", "", true, n, delay).await;
        let unlimited = phase(
            "unlimited",
            "[limits]\nmessages_per_minute = 0\nmax_chats_per_person = 0\n",
            true,
            n,
            delay,
        )
        .await;
        println!(
            "flood: victims' p99 beside the flood / alone: with the limits {:.3} (target <= 1.10), \
             without them {:.3}",
            ratio(limited.p99, alone.p99),
            ratio(unlimited.p99, alone.p99)
        );
        println!(
            "FIGURE flood_ratio_p99 {:.3}",
            ratio(limited.p99, alone.p99)
        );
        println!(
            "FIGURE flood_ratio_p50 {:.3}",
            ratio(limited.p50, alone.p50)
        );
        println!(
            "FIGURE flood_unlimited_ratio_p99 {:.3}",
            ratio(unlimited.p99, alone.p99)
        );
    });
}
