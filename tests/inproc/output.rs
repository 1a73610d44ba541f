//! What agents put in front of people, in-process (issue 12, items 11): an agent's failure
//! shown in a room names no internal address and no credentials.
//!
//! (Sanitized HTML and malformed media links are the Matrix adapter's business: they are
//! proved by the unit tests of `src/matrix/html.rs` and `src/matrix/mxc.rs` and end to end in
//! `tests/e2e/output.rs`.)

use surfaces_testkit::inproc::{AgentSetup, Bot, Setup};

use crate::support::{command, expect};

/// A password and a user name that must never reach a room.
const SECRET: &str = "hunter2-secret";
const USER: &str = "agent-user";

/// An HTTP agent whose base URL carries credentials, on a port that refuses connections, as
/// the default agent (the echo agent stays beside it).
fn locked_agent() -> Setup {
    Setup {
        agent: AgentSetup::Echo,
        extra_toml: format!(
            "\n[[agents]]\nid = \"locked\"\nname = \"Locked\"\nkind = \"http\"\n\
             base_url = \"http://{USER}:{SECRET}@127.0.0.1:9/prefix\"\ntimeout_secs = 2\n\
             default = true\n"
        ),
        ..Setup::default()
    }
}

#[actix_rt::test]
async fn a_failed_context_call_shows_no_address_and_no_credentials() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(locked_agent(), "alice").await?;
    let said = command(&bot, &alice, &chat, "!context").await;
    expect(&said, "Locked");
    for leak in [SECRET, USER, "127.0.0.1", ":9", "http://", "/prefix"] {
        assert!(!said.contains(leak), "{leak:?} shown to people: {said}");
    }
    expect(&said, "address hidden");
    // The room goes on.
    command(&bot, &alice, &chat, "!help").await;
    Ok(())
}
