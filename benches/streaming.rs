//! Live replies (part 7 of `ops/bench`): how soon a person sees the first words of a slow
//! reply, and how kind the stream is to the room. Prints figures; not a timed test.
//!
//! ```text
//! cargo bench --bench streaming -- [REPLY_SECS] [LONG_SECS]
//! ```
//!
//! The real runtime (`surfaces_testkit::inproc::Bot` over the in-memory messenger) with the
//! reference agent streaming a reply word by word (`ref:stream <n>`: one `delta` per word, a
//! `status` every five), an event every [`EVENT_EVERY`]:
//! - a reply written over `REPLY_SECS` (default 20): time to the first word and to the final
//!   text with streaming at the default `[streaming]`, against the same turn with streaming
//!   off (the baseline: the whole reply at the end), in the same run;
//! - a reply written over `LONG_SECS` (default 120) at the default cadence: edits of the one
//!   message (the cap is `streaming.max_edits`, 20 with the final edit) and events per minute
//!   in the room.

use std::time::{Duration, Instant};

use surfaces::config::StreamingConfig;
use surfaces::surface::{ChatId, MessageId, PersonId};
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup};
use surfaces_testkit::memory::Post;
use surfaces_testkit::reference_agent::{streamed_reply, STATUS_EVERY, STREAM_COMMAND};

/// The agent's pace: one event of the stream every this long.
const EVENT_EVERY: Duration = Duration::from_millis(100);
/// How often the room is looked at.
const POLL: Duration = Duration::from_millis(2);

fn fail(what: &str, error: impl std::fmt::Display) -> ! {
    eprintln!("streaming bench: {what}: {error}");
    std::process::exit(1)
}

/// Words of a reply the agent writes in about `secs` (a status every [`STATUS_EVERY`] words).
fn words_for(secs: u64) -> usize {
    let events = (Duration::from_secs(secs).as_millis() / EVENT_EVERY.as_millis()) as usize;
    (events * STATUS_EVERY / (STATUS_EVERY + 1)).max(1)
}

async fn bot(streaming: bool) -> (Bot, PersonId, ChatId) {
    let setup = Setup {
        agent: AgentSetup::Reference,
        extra_toml: format!("\n[streaming]\nenabled = {streaming}\n"),
        ..Setup::default()
    };
    let (bot, person, chat) = Bot::with_person(setup, "alice")
        .await
        .unwrap_or_else(|e| fail("starting the bot", e));
    match bot.reference() {
        Ok(agent) => agent.set_interval(EVENT_EVERY),
        Err(e) => fail("the reference agent", e),
    }
    (bot, person, chat)
}

/// What one streamed turn looked like from the room.
struct Seen {
    first_word: Duration,
    final_text: Duration,
    reply: Post,
}

/// Asks for a reply of `words` words and watches the room until it shows the whole reply.
async fn watch(bot: &Bot, person: &PersonId, chat: &ChatId, words: usize) -> Seen {
    let whole = streamed_reply(words);
    let t0 = Instant::now();
    let id: MessageId = bot
        .world
        .say(person, chat, &format!("{STREAM_COMMAND}{words}"));
    let timeout = Duration::from_secs(60) + EVENT_EVERY * (words as u32 * 2);
    let mut first_word = None;
    loop {
        if t0.elapsed() > timeout {
            fail("waiting for the reply", bot.transcript(chat));
        }
        if let Some(reply) = bot.world.answers_to(chat, &id).into_iter().next() {
            first_word.get_or_insert(t0.elapsed());
            if reply.text() == whole {
                return Seen {
                    first_word: first_word.unwrap_or_default(),
                    final_text: t0.elapsed(),
                    reply,
                };
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // The inproc bot is actix actors on a multi-threaded tokio runtime, as in the product.
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| fail("tokio runtime", e))
    });
    system.block_on(run());
}

async fn run() {
    let reply_secs = arg(0, 20);
    let long_secs = arg(1, 120);
    let defaults = StreamingConfig::default();

    let words = words_for(reply_secs);
    println!("a reply of {words} words written over about {reply_secs} s, streaming off then on");
    let (off, person, chat) = bot(false).await;
    let baseline = watch(&off, &person, &chat, words).await;
    drop(off);
    let (on, person, chat) = bot(true).await;
    let live = watch(&on, &person, &chat, words).await;
    drop(on);
    println!(
        "   off: first word {:.2} s, final text {:.2} s; on: first word {:.2} s, final text \
         {:.2} s, {} edits",
        secs(baseline.first_word),
        secs(baseline.final_text),
        secs(live.first_word),
        secs(live.final_text),
        live.reply.edits.len()
    );
    println!("FIGURE stream_words {words}");
    println!(
        "FIGURE stream_off_first_word_s {:.2}",
        secs(baseline.first_word)
    );
    println!("FIGURE stream_off_final_s {:.2}", secs(baseline.final_text));
    println!("FIGURE stream_on_first_word_s {:.2}", secs(live.first_word));
    println!("FIGURE stream_on_final_s {:.2}", secs(live.final_text));
    println!(
        "FIGURE stream_first_word_ratio {:.3}",
        secs(live.first_word) / secs(baseline.first_word).max(1e-9)
    );

    let words = words_for(long_secs);
    println!("a reply of {words} words written over about {long_secs} s at the default cadence");
    let (on, person, chat) = bot(true).await;
    let long = watch(&on, &person, &chat, words).await;
    // Every edit of the message, the final one included (the in-memory messenger keeps each).
    let edits = long.reply.edits.len();
    let minutes = secs(long.final_text) / 60.0;
    // The post and its edits are the room's events of this reply.
    let per_minute = (1 + edits) as f64 / minutes.max(1e-9);
    println!(
        "   {edits} edits (cap {} with the final one) over {:.1} s: {per_minute:.1} events a \
         minute",
        defaults.max_edits,
        secs(long.final_text)
    );
    println!("FIGURE stream_long_secs {:.1}", secs(long.final_text));
    println!("FIGURE stream_long_edits {edits}");
    println!("FIGURE stream_long_cap {}", defaults.max_edits);
    // The cap counts every edit of the message, the final one included.
    println!("FIGURE stream_long_edit_limit {}", defaults.max_edits);
    println!("FIGURE stream_long_events_per_minute {per_minute:.1}");
}
