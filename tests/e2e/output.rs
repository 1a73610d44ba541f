//! What agents and people's messages can put in front of people, end to end through a real
//! Synapse (issue 12, items 6, 8 and 11): the reference agent echoes hostile HTML and what
//! Synapse holds is sanitized; a file message whose `mxc://` server name is long enough to
//! panic ruma gets a notice and the room goes on; an unreachable agent whose `base_url`
//! carries `user:pass@` fails with a notice that names neither its address nor credentials.

use matrix_sdk::ruma::events::room::message::{
    FileMessageEventContent, MessageType, RoomMessageEventContent,
};
use matrix_sdk::ruma::OwnedMxcUri;

use crate::spine::{self, onboard, Stack, AGENT_TIMEOUT_SECS};
use crate::support::reference_agent::ReferenceAgent;
use crate::support::WAIT;

/// Credentials in the agent's base URL that must never reach a room nor the log.
const AGENT_USER: &str = "agent-user";
const AGENT_PASSWORD: &str = "hunter2-secret";

/// A stack (unencrypted rooms: what the person reads is what Synapse holds) whose agent's
/// base URL carries credentials (the reference agent ignores them).
async fn stack() -> anyhow::Result<Stack> {
    let toml = |agent: &ReferenceAgent, data: &std::path::Path| {
        // A workspace, so that files are fetched at all.
        let workspace = data.join("agents").join("3");
        std::fs::create_dir_all(&workspace)?;
        Ok(format!(
            "[[agents]]\nid = \"ref\"\nname = \"Reference\"\n\
             base_url = \"http://{AGENT_USER}:{AGENT_PASSWORD}@{}\"\n\
             timeout_secs = {AGENT_TIMEOUT_SECS}\ndefault = true\nworkspace = {:?}\n",
            agent.addr(),
            workspace.display().to_string()
        ))
    };
    Stack::start_configured(toml, &[("SURFACES__MATRIX__ENCRYPT_ROOMS", "false")]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_html_bad_media_links_and_leaky_errors_are_contained() -> anyhow::Result<()> {
    let stack = stack().await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;
    assert!(!alice.is_encrypted(&ob.chat).await?);
    let bot = stack.bot_id().to_owned();

    // 1. Hostile HTML in the agent's reply (the reference agent echoes the message).
    let hostile = "**bold** <img src=\"https://tracker.example/pixel.gif\"> \
                   <a href=\"javascript:alert(1)\">click</a> \
                   <mx-reply><blockquote>In reply to the boss: fake quote</blockquote></mx-reply> \
                   <script>steal()</script> <a href=\"https://example.org/\">fine</a>";
    let reply = spine::ask(&stack, &alice, &ob.chat, hostile).await?;
    assert!(reply.body.contains("got:"), "{}", reply.body);
    let html = reply.formatted_body.clone().expect("a formatted body");
    assert!(html.contains("<strong>bold</strong>"), "{html}");
    assert!(
        html.contains("<a href=\"https://example.org/\" rel=\"noopener noreferrer\">fine</a>"),
        "{html}"
    );
    for banned in [
        "tracker.example",
        "javascript",
        "mx-reply",
        "fake quote",
        "<script",
        "steal()",
    ] {
        assert!(
            !html.contains(banned),
            "{banned:?} in what Synapse holds: {html}"
        );
    }

    // 2. A file message whose server name panics ruma's `MxcUri::parts` (250 characters).
    let uri = OwnedMxcUri::from(format!("mxc://{}/abc", "a".repeat(250)));
    let mut content = FileMessageEventContent::plain("bad.pdf".into(), uri);
    content.body = "read this".into();
    content.filename = Some("bad.pdf".into());
    let event = alice
        .send_content(
            &ob.chat,
            RoomMessageEventContent::new(MessageType::File(content)),
        )
        .await?;
    let notice = alice
        .wait_for_message(
            &ob.chat,
            |m| m.sender == bot && m.in_reply_to.as_deref() == Some(&*event),
            WAIT,
        )
        .await?;
    assert_eq!(notice.msgtype, "m.notice");
    assert!(notice.body.contains("bad.pdf"), "{}", notice.body);
    assert!(
        notice.body.contains("not a valid Matrix media link"),
        "{}",
        notice.body
    );
    // The room goes on.
    let reply = spine::ask(&stack, &alice, &ob.chat, "still there?").await?;
    assert!(reply.body.contains("got: still there?"), "{}", reply.body);

    // 3. The agent goes away: `!context` fails, and the notice names no address and no
    //    credentials; the log keeps no password either.
    let port = stack.agent.addr().port().to_string();
    stack.agent.go_down().await;
    let notice = spine::ask(&stack, &alice, &ob.chat, "!context").await?;
    assert_eq!(notice.msgtype, "m.notice");
    assert!(notice.body.contains("Reference"), "{}", notice.body);
    let shown = format!(
        "{} {}",
        notice.body,
        notice.formatted_body.as_deref().unwrap_or_default()
    );
    for leak in [
        AGENT_PASSWORD,
        AGENT_USER,
        "127.0.0.1",
        port.as_str(),
        "http://",
    ] {
        assert!(!shown.contains(leak), "{leak:?} shown to people: {shown}");
    }
    assert!(
        !stack.bot.log_contains(AGENT_PASSWORD),
        "the password is in the log:\n{}",
        stack.bot.log_tail(40)
    );
    Ok(())
}
