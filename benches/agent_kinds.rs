//! One reply round trip through each kind of agent connection (part 8 of `ops/bench`):
//! `http` (our API), `openai` (an OpenAI-compatible server) and `a2a` (A2A 1.0), measured in
//! the same run so the `http` kind is the baseline. Prints figures; not a timed test.
//!
//! ```text
//! cargo bench --bench agent_kinds -- [N] [WARMUP]
//! ```
//!
//! The real runtime (`surfaces_testkit::inproc::Bot` over the in-memory messenger, streaming
//! off: one reply message per turn) with one person and one chat per kind. A round trip is
//! the person's message to the bot's reply in the chat, polled every [`POLL`]. The kinds take
//! turns message by message, so a slow minute of the machine falls on all of them. The
//! servers are what the e2e tests use, and they are not alike: the reference agent
//! (`http`) is Rust in this process; LiteLLM's proxy (`openai`, a mock model streaming a
//! fixed sentence) and the `a2a-sdk` test agent (`a2a`, the `ping` turn: one artifact, no
//! pacing) are Python processes on loopback. The figures are the connection and the server
//! together, as an operator would see them.

use std::time::{Duration, Instant};

use anyhow::Context;
use surfaces::surface::{ChatId, MessageId, PersonId};
use surfaces_testkit::a2a::{A2aAgent, PING, PONG};
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup};
use surfaces_testkit::litellm::{LiteLlm, MASTER_KEY, MOCK_MODEL, MOCK_REPLY};
use surfaces_testkit::stats::{print_summary, ratio, summarize, Summary};
use surfaces_testkit::wait::wait_until;

/// How often the chat is looked at.
const POLL: Duration = Duration::from_millis(1);
/// Longest wait for one reply (or a chat to be made).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

fn fail(what: &str, error: impl std::fmt::Display) -> ! {
    eprintln!("agent kinds bench: {what}: {error:#}");
    std::process::exit(1)
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// One kind under test: its chat, what to say, and what its reply contains.
struct Kind {
    key: &'static str,
    label: &'static str,
    chat: ChatId,
    say: &'static str,
    expect: &'static str,
    samples: Vec<Duration>,
}

/// A new chat of `person`, bound to `agent` (`!agent`, then `!new` in `home`).
async fn chat_with(
    bot: &Bot,
    person: &PersonId,
    home: &ChatId,
    agent: &str,
) -> anyhow::Result<ChatId> {
    bot.ask(person, home, &format!("!agent {agent}")).await?;
    let before = bot.world.chats_of(person);
    bot.world.say(person, home, "!new");
    wait_until(REPLY_TIMEOUT, POLL, || {
        let made = bot
            .world
            .chats_of(person)
            .into_iter()
            .find(|c| !before.contains(c) && !bot.world.bot_posts(c).is_empty());
        async move { made }
    })
    .await
    .with_context(|| format!("no new chat bound to {agent}"))
}

/// The person's message in `kind`'s chat to the bot's reply.
async fn round_trip(bot: &Bot, person: &PersonId, kind: &Kind) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let id: MessageId = bot.world.say(person, &kind.chat, kind.say);
    loop {
        if let Some(reply) = bot.world.answers_to(&kind.chat, &id).into_iter().next() {
            let took = t0.elapsed();
            anyhow::ensure!(
                reply.text().contains(kind.expect),
                "{}: unexpected reply {:?}",
                kind.label,
                reply.text()
            );
            return Ok(took);
        }
        anyhow::ensure!(
            t0.elapsed() < REPLY_TIMEOUT,
            "{}: no reply; {}",
            kind.label,
            bot.transcript(&kind.chat)
        );
        tokio::time::sleep(POLL).await;
    }
}

fn main() {
    // The inproc bot is actix actors on a multi-threaded tokio runtime, as in the product.
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| fail("tokio runtime", e))
    });
    system.block_on(async {
        if let Err(error) = run(arg(0, 100), arg(1, 5)).await {
            fail("run", error);
        }
    });
}

async fn run(n: usize, warmup: usize) -> anyhow::Result<()> {
    let llm = LiteLlm::start().await.context("starting LiteLLM")?;
    let a2a = A2aAgent::start().await.context("starting the A2A agent")?;
    // One person sends every message: the per-person limit is off, as in the other parts.
    let extra = format!(
        "\n[limits]\nmessages_per_minute = 0\n\n[[agents]]\nid = \"llm\"\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"{MOCK_MODEL}\"\n\
         api_key = \"{MASTER_KEY}\"\n\n[[agents]]\nid = \"a2a\"\nkind = \"a2a\"\nbase_url = \"{}\"\n",
        llm.base_url,
        a2a.base_url
    );
    let setup = Setup {
        agent: AgentSetup::Reference,
        extra_toml: extra,
        ..Setup::default()
    };
    let (bot, person, home) = Bot::with_person(setup, "alice").await?;
    let mut kinds = vec![
        Kind {
            key: "kind_http",
            label: "http (reference agent)",
            chat: home.clone(),
            say: "ping",
            expect: "got: ping",
            samples: Vec::new(),
        },
        Kind {
            key: "kind_openai",
            label: "openai (LiteLLM mock)",
            chat: chat_with(&bot, &person, &home, "llm").await?,
            say: "ping",
            expect: MOCK_REPLY,
            samples: Vec::new(),
        },
        Kind {
            key: "kind_a2a",
            label: "a2a (a2a-sdk agent)",
            chat: chat_with(&bot, &person, &home, "a2a").await?,
            say: PING,
            expect: PONG,
            samples: Vec::new(),
        },
    ];
    println!(
        "one reply round trip per agent kind: {n} each (after {warmup} warm-up), taking turns"
    );
    for round in 0..warmup + n {
        for kind in &mut kinds {
            let took = round_trip(&bot, &person, kind).await?;
            if round >= warmup {
                kind.samples.push(took);
            }
        }
    }
    let sums: Vec<Summary> = kinds.iter().map(|k| summarize(&k.samples)).collect();
    for (kind, sum) in kinds.iter().zip(&sums) {
        print_summary(kind.label, kind.key, sum);
    }
    let http = sums[0];
    for (kind, sum) in kinds.iter().zip(&sums).skip(1) {
        let (r50, r99) = (ratio(sum.p50, http.p50), ratio(sum.p99, http.p99));
        println!("{} / http: p50 {r50:.2}  p99 {r99:.2}", kind.label);
        println!("FIGURE {}_ratio_p50 {r50:.2}", kind.key);
        println!("FIGURE {}_ratio_p99 {r99:.2}", kind.key);
    }
    Ok(())
}
