//! Reply latency and refusals in `/metrics` (issue 18): a replied message lands in the reply
//! latency and queue wait histograms under its agent's id, a message refused by a limit in
//! the refusal counter under its reason; a streamed reply's first words come before its end.

use std::time::Duration;

use surfaces::metrics::{Exposition, Observed};
use surfaces::texts;
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup, WAIT};
use surfaces_testkit::reference_agent::{streamed_reply, STREAM_COMMAND};
use surfaces_testkit::wait::{wait_until, POLL};

/// A burst of one and a refill so slow that none comes back during the test.
const ONE_MESSAGE: &str = "[limits]\nmessages_burst = 1\nmessages_per_minute = 1\n";

/// The metrics as Prometheus scrapes them.
fn scrape(bot: &Bot) -> anyhow::Result<String> {
    Ok(bot
        .view()?
        .metrics
        .encode(&Observed::default(), Exposition::Prometheus)?)
}

/// The value of one series (`name{labels}` exactly as exported), if exported.
fn sample(text: &str, series: &str) -> Option<f64> {
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

/// Waits until `series` is exported at `want` (the reply is recorded once the messenger
/// accepted it, a moment after the person sees it); returns the exposition.
async fn until_at(bot: &Bot, series: &str, want: f64) -> anyhow::Result<String> {
    wait_until(WAIT, POLL, || {
        let text = scrape(bot).ok();
        async move { text.filter(|t| sample(t, series) == Some(want)) }
    })
    .await
    .map_err(|e| e.context(format!("{series} never reached {want}")))
}

#[actix_rt::test]
async fn a_reply_is_timed_by_agent_and_a_refusal_counted_by_reason() -> anyhow::Result<()> {
    let setup = Setup {
        extra_toml: ONE_MESSAGE.to_owned(),
        ..Setup::default()
    };
    let (bot, alice, chat) = Bot::with_person(setup, "alice").await?;
    let before = scrape(&bot)?;
    for reason in [
        "rate_limited",
        "queue_full",
        "cancels_busy",
        "file_too_large",
    ] {
        let series = format!("surfaces_messages_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(sample(&before, &series), Some(0.0), "{series}:\n{before}");
    }

    let hello = bot.world.say(&alice, &chat, "hello");
    assert_eq!(bot.answer(&chat, &hello).await?.text(), "echo: hello");
    let final_count =
        "surfaces_reply_latency_seconds_count{agent=\"echo\",surface=\"memory\",stage=\"final\"}";
    let text = until_at(&bot, final_count, 1.0).await?;
    let first_count =
        "surfaces_reply_latency_seconds_count{agent=\"echo\",surface=\"memory\",stage=\"first\"}";
    assert_eq!(sample(&text, first_count), Some(1.0), "{text}");
    let queue_count = "surfaces_queue_wait_seconds_count{agent=\"echo\",surface=\"memory\"}";
    assert_eq!(sample(&text, queue_count), Some(1.0), "{text}");
    let final_sum =
        "surfaces_reply_latency_seconds_sum{agent=\"echo\",surface=\"memory\",stage=\"final\"}";
    let took = sample(&text, final_sum).unwrap_or(-1.0);
    assert!(
        (0.0..WAIT.as_secs_f64()).contains(&took),
        "final sum {took}"
    );
    let replied = "surfaces_messages_total{surface=\"memory\",outcome=\"replied\"}";
    assert_eq!(sample(&text, replied), Some(1.0), "{text}");
    // OpenMetrics: the final bucket that timed it names the message (its exemplar).
    let open = bot
        .view()?
        .metrics
        .encode(&Observed::default(), Exposition::OpenMetrics)?;
    let exemplar = format!("# {{message_id=\"{hello}\"}}");
    // Label order is the encoder's (OpenMetrics writes `le` first).
    let labels = ["agent=\"echo\"", "surface=\"memory\"", "stage=\"final\""];
    assert!(
        open.lines().any(|l| {
            l.starts_with("surfaces_reply_latency_seconds_bucket{")
                && labels.iter().all(|label| l.contains(label))
                && l.contains(&exemplar)
        }),
        "no exemplar {exemplar} in:\n{open}"
    );
    // The memory messenger gives no timestamp of its own: nothing measured from it.
    assert!(
        !text.contains("surfaces_reply_latency_from_origin_seconds_count{"),
        "{text}"
    );

    // Past the burst: refused, told, counted under its reason, and not timed.
    let refused = bot.ask(&alice, &chat, "again").await?;
    assert_eq!(refused.text(), texts::limits::rate_limited(1, 1));
    let text = until_at(
        &bot,
        "surfaces_messages_refused_total{reason=\"rate_limited\"}",
        1.0,
    )
    .await?;
    assert_eq!(
        sample(
            &text,
            "surfaces_messages_refused_total{reason=\"queue_full\"}"
        ),
        Some(0.0)
    );
    assert_eq!(sample(&text, final_count), Some(1.0), "{text}");
    assert_eq!(sample(&text, queue_count), Some(1.0), "{text}");
    Ok(())
}

#[actix_rt::test]
async fn a_streamed_reply_shows_its_first_words_before_its_end() -> anyhow::Result<()> {
    let setup = Setup {
        agent: AgentSetup::Reference,
        extra_toml: "\n[streaming]\nfirst_interval_ms = 40\nmax_interval_ms = 150\n".to_owned(),
        ..Setup::default()
    };
    let (bot, alice, chat) = Bot::with_person(setup, "alice").await?;
    bot.reference()?.set_interval(Duration::from_millis(20));
    let words = 40;
    let id = bot
        .world
        .say(&alice, &chat, &format!("{STREAM_COMMAND}{words}"));
    let whole = streamed_reply(words);
    wait_until(WAIT, POLL, || {
        let done = bot
            .world
            .answers_to(&chat, &id)
            .iter()
            .any(|p| p.text() == whole);
        async move { done.then_some(()) }
    })
    .await
    .map_err(|e| e.context(bot.transcript(&chat)))?;
    let final_count =
        "surfaces_reply_latency_seconds_count{agent=\"ref\",surface=\"memory\",stage=\"final\"}";
    let text = until_at(&bot, final_count, 1.0).await?;
    let sum = |stage: &str| {
        let series =
            format!("surfaces_reply_latency_seconds_sum{{agent=\"ref\",surface=\"memory\",stage=\"{stage}\"}}");
        sample(&text, &series)
    };
    let (first, last) = (sum("first"), sum("final"));
    assert!(
        matches!((first, last), (Some(f), Some(l)) if f < l),
        "first words ({first:?} s) before the end ({last:?} s):\n{text}"
    );
    Ok(())
}
