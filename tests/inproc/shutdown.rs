//! A graceful shutdown as a load balancer sees it: readiness turns false the moment the
//! drain starts, while the turn in flight still finishes and its reply is delivered.

use std::time::Duration;

use surfaces::ops::status::Readiness;
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup, WAIT};
use surfaces_testkit::wait::{wait_until, POLL};

/// Longer than it takes to see the drain start, well within the harness's grace (5 s).
const TURN: Duration = Duration::from_millis(1500);

fn shutdown_ok(r: &Readiness) -> bool {
    r.checks.iter().any(|c| c.name == "shutdown" && c.ok)
}

#[actix_rt::test]
async fn readiness_is_false_as_soon_as_a_drain_starts() -> anyhow::Result<()> {
    let setup = Setup {
        agent: AgentSetup::Reference,
        ..Setup::default()
    };
    let (mut bot, alice, chat) = Bot::with_person(setup, "alice").await?;
    let agent = bot.reference()?;
    agent.set_delay(TURN);
    // The in-memory messenger has no sync actor, so this bot is never fully ready: the
    // test watches the shutdown check and what it does to the answer.
    let before = bot.readiness()?;
    assert!(shutdown_ok(&before), "{}", before.render(true));

    let asked = bot.world.say(&alice, &chat, "finish me");
    assert!(agent.wait_until(WAIT, |a| !a.turns().is_empty()).await);
    bot.begin_stop()?;
    // Not ready while the turn is still running.
    let draining = wait_until(WAIT, POLL, || {
        let r = bot.readiness().ok().filter(|r| !shutdown_ok(r));
        async move { r }
    })
    .await?;
    let text = draining.render(true);
    assert!(!draining.ready, "{text}");
    assert!(text.starts_with("not ready: shutdown"), "{text}");
    assert!(text.contains("[-] shutdown: draining"), "{text}");
    assert!(
        bot.world.answers_to(&chat, &asked).is_empty(),
        "the turn was still running when readiness turned false"
    );

    // The drain lets it finish: one reply, then a clean exit.
    bot.exit_code().await?;
    let answers = bot.world.answers_to(&chat, &asked);
    assert_eq!(answers.len(), 1, "{}", bot.transcript(&chat));
    assert_eq!(answers[0].text(), "ref-agent ref got: finish me");
    Ok(())
}
