//! Poison messages across restarts (issue 12, item 10): a message whose processing never
//! finishes because it takes the process down each time (here: the bot is stopped while its
//! turn hangs, every time) is resumed at most `MAX_RESUMES` times, counted durably in the
//! journal, then given up with one error notice; the agent is not called for it again.

use std::time::Duration;

use surfaces::runtime::room::MAX_RESUMES;
use surfaces::texts;
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup, WAIT};
use surfaces_testkit::reference_agent::Endpoint;

/// Long enough that the turn is still running when the bot stops.
const HANG: Duration = Duration::from_secs(3600);

#[actix_rt::test]
async fn a_message_that_keeps_taking_the_process_down_is_given_up_across_restarts(
) -> anyhow::Result<()> {
    let setup = Setup {
        agent: AgentSetup::Reference,
        ..Setup::default()
    };
    let (mut bot, alice, chat) = Bot::with_person(setup, "alice").await?;
    bot.reference()?.set_delay(HANG);
    let poison = bot.world.say(&alice, &chat, "this one never finishes");
    assert!(
        bot.reference()?.wait_for_turns(1, WAIT).await,
        "the first attempt"
    );

    // Each restart resumes it (the agent is called again), up to MAX_RESUMES times.
    let attempts = usize::try_from(MAX_RESUMES)? + 1;
    for n in 2..=attempts {
        bot.restart().await?;
        assert!(
            bot.reference()?.wait_for_turns(n, WAIT).await,
            "attempt {n} after a restart"
        );
    }
    // The next start gives it up: one error notice, no call.
    bot.restart().await?;
    let notice = bot.answer(&chat, &poison).await?;
    assert!(notice.is_notice(), "{notice:?}");
    assert_eq!(notice.text(), texts::internal_error());

    // Done for good: another restart neither calls the agent for it nor tells the person again.
    bot.reference()?.set_delay(Duration::ZERO);
    bot.restart().await?;
    bot.ask(&alice, &chat, "and now?").await?;
    let agent = bot.reference()?;
    assert_eq!(
        agent.request_count(Endpoint::Turn),
        attempts + 1,
        "only the new message"
    );
    assert_eq!(bot.world.answers_to(&chat, &poison).len(), 1, "told once");
    Ok(())
}
