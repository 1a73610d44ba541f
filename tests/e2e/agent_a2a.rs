//! `kind = "a2a"` against a real A2A 1.0 server built on the official `a2a-sdk` (the test
//! agent of `ops/a2a/agent.py`): discovery from the agent card, streamed turns in a context
//! per chat, `input-required` answered by `!yes` or by the next message, files both ways,
//! the task's failures, `CancelTask`, a broken stream followed again, and an agent that does
//! not stream. And the whole path: a room on a real Synapse bound to such an agent.

use std::sync::Arc;
use std::time::Duration;

use surfaces::agent::about::SharedAbout;
use surfaces::agent::{AgentClient, AgentError, AgentEvent, Attachment};
use surfaces::store::Store;

use crate::agent_http::{request, turn_collect};
use crate::support::a2a::{self, A2aAgent};

/// The client's silence timeout.
const TIMEOUT: Duration = Duration::from_secs(20);

fn client(
    agent: &A2aAgent,
    store: &Store,
    workspace: &std::path::Path,
) -> (AgentClient, SharedAbout) {
    let about = SharedAbout::default();
    let client = AgentClient::a2a(
        &agent.base_url,
        None,
        TIMEOUT,
        Some(workspace.to_path_buf()),
        store,
        "a2a",
        about.clone(),
    )
    .expect("client");
    (client, about)
}

fn deltas(events: &[AgentEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, AgentEvent::Delta { .. }))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a2a_agent_streams_keeps_a_context_per_chat_and_asks() {
    let agent = A2aAgent::start().await.expect("a2a agent");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("data")).expect("store");
    let (client, about) = client(&agent, &store, dir.path());

    // The card: discovered, its name and skills shared with the rooms.
    let health = client.health().await.expect("health");
    assert!(health.is_ok());
    let said = about.read().clone().expect("the card was read");
    assert_eq!(said.name, a2a::CARD_NAME);
    assert_eq!(said.description, a2a::CARD_DESCRIPTION);
    let skills: Vec<&str> = said.skills.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(skills, ["Echo", "Files"]);

    // A streamed turn: the reply in pieces; messageId and contextId as promised.
    let (out, events) = turn_collect(&client, "chat-1", &request("t1", "hello")).await;
    assert_eq!(out.expect("a reply").reply, a2a::echo_reply("hello", 1));
    assert!(deltas(&events) >= 3, "streamed in pieces: {events:?}");
    let sent = agent.requests_of("SendStreamingMessage");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["params"]["message"]["messageId"], "t1");
    assert_eq!(sent[0]["params"]["message"]["contextId"], "chat-1");
    assert_eq!(sent[0]["headers"]["a2a-version"], "1.0");

    // The same chat is the same context; another chat (as after !clear) a new one.
    let (out, _) = turn_collect(&client, "chat-1", &request("t2", "again")).await;
    assert_eq!(out.expect("a reply").reply, a2a::echo_reply("again", 2));
    let (out, _) = turn_collect(&client, "chat-2", &request("t1b", "fresh")).await;
    assert_eq!(out.expect("a reply").reply, a2a::echo_reply("fresh", 1));

    // A retried turn follows its task: same reply, the message not sent again.
    let (out, _) = turn_collect(&client, "chat-1", &request("t2", "again")).await;
    assert_eq!(out.expect("a replay").reply, a2a::echo_reply("again", 2));
    assert_eq!(agent.requests_of("SendStreamingMessage").len(), 3);

    // Progress is a status line, not the reply.
    let (out, events) = turn_collect(&client, "chat-1", &request("t3", a2a::STATUS)).await;
    assert_eq!(out.expect("a reply").reply, "Done thinking.");
    assert!(events.contains(&AgentEvent::Status {
        text: "Thinking...".to_owned()
    }));

    // input-required: a question; !yes continues the task.
    let (out, _) = turn_collect(&client, "chat-1", &request("t4", a2a::ASK_CONFIRM)).await;
    let confirm = out
        .expect("a question")
        .confirm
        .expect("input-required asks");
    assert_eq!(confirm.prompt, a2a::CONFIRM_QUESTION);
    let out = client
        .confirm("chat-1", &confirm.confirm_id, true, "t4")
        .await
        .expect("confirmed");
    assert_eq!(out.reply, a2a::CONFIRMED);
    let answers = agent.requests_of("SendStreamingMessage");
    let answer = &answers.last().expect("the answer")["params"]["message"];
    assert_eq!(answer["taskId"], confirm.confirm_id.as_str());
    assert_eq!(answer["parts"][0]["text"], "yes");

    // Or the person's next message is the answer; the question cannot be answered twice.
    let (out, _) = turn_collect(&client, "chat-1", &request("t5", a2a::ASK_NAME)).await;
    let ask = out.expect("a question").confirm.expect("asks a name");
    let (out, _) = turn_collect(&client, "chat-1", &request("t6", "Alice")).await;
    assert_eq!(out.expect("a reply").reply, "Nice to meet you, Alice.");
    let again = client.confirm("chat-1", &ask.confirm_id, false, "t5").await;
    assert!(
        matches!(again, Err(AgentError::Rejected { status: 409, .. })),
        "{again:?}"
    );

    // A2A keeps no context Surfaces can read.
    assert!(matches!(
        client.context("chat-1").await,
        Err(AgentError::Unsupported(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a2a_agent_s_files_failures_cancel_and_broken_stream() {
    let agent = A2aAgent::start().await.expect("a2a agent");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("data")).expect("store");
    let workspace = dir.path().join("ws");
    std::fs::create_dir_all(workspace.join("inbox/r")).expect("workspace");
    let (client, _) = client(&agent, &store, &workspace);
    let client = Arc::new(client);

    // A file artifact lands in the workspace, to be posted like any agent's file.
    let (out, _) = turn_collect(&client, "c", &request("f1", a2a::FILE)).await;
    let out = out.expect("a reply");
    assert_eq!(out.reply, "Here is your report.");
    assert_eq!(out.files.len(), 1, "{out:?}");
    assert_eq!(out.files[0].name, "report.txt");
    let written = std::fs::read(workspace.join(&out.files[0].path)).expect("the file");
    assert_eq!(written, a2a::REPORT);

    // A file from the room goes as an inline file part.
    std::fs::write(workspace.join("inbox/r/notes.txt"), b"twelve bytes").expect("write");
    let mut with_file = request("f2", "");
    with_file.attachments.push(Attachment {
        path: "inbox/r/notes.txt".to_owned(),
        name: "notes.txt".to_owned(),
        mime: "text/plain".to_owned(),
        size: 12,
    });
    let (out, _) = turn_collect(&client, "c", &with_file).await;
    assert_eq!(out.expect("a reply").reply, "Got file notes.txt (12 bytes)");

    // The task's failures, with the agent's words.
    for (text, code, said) in [
        (a2a::FAIL, "failed", "The tool crashed."),
        (a2a::REJECT, "rejected", "I will not do that."),
        (a2a::AUTH, "auth_required", "Sign in to the calendar first."),
    ] {
        let (out, _) = turn_collect(&client, "c", &request(&format!("x-{text}"), text)).await;
        match out {
            Err(AgentError::TurnFailed { code: c, message }) => {
                assert_eq!((c.as_str(), message.as_str()), (code, said), "{text}")
            }
            other => panic!("{text}: expected a failed turn, got {other:?}"),
        }
    }

    // !cancel: CancelTask for the running task, and the turn ends cancelled.
    let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let turn = {
        let (client, started) = (client.clone(), started.clone());
        tokio::spawn(async move {
            client
                .turn("c", &request("slow-1", a2a::SLOW), &mut |e: &AgentEvent| {
                    if matches!(e, AgentEvent::Delta { .. }) {
                        started.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                })
                .await
        })
    };
    crate::support::wait_until(crate::support::WAIT, Duration::from_millis(20), || {
        let started = started.clone();
        async move {
            started
                .load(std::sync::atomic::Ordering::SeqCst)
                .then_some(())
        }
    })
    .await
    .expect("ticking");
    client.cancel("c", "slow-1").await.expect("cancel");
    let out = tokio::time::timeout(TIMEOUT, turn)
        .await
        .expect("ends")
        .expect("joined");
    assert!(matches!(&out, Err(e) if e.is_cancelled()), "{out:?}");
    let cancels = agent.requests_of("CancelTask");
    assert_eq!(cancels.len(), 1);

    // A stream that breaks off is followed again to the task's end.
    let (out, _) = turn_collect(&client, "c", &request("b1", a2a::BREAK)).await;
    assert_eq!(out.expect("the whole reply").reply, a2a::BREAK_REPLY);
    let followed = agent.requests_of("SubscribeToTask").len() + agent.requests_of("GetTask").len();
    assert!(followed >= 1, "the task was followed again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a2a_agent_that_does_not_stream_is_asked_whole() {
    let agent = A2aAgent::start_with(false).await.expect("a2a agent");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("data")).expect("store");
    let (client, _) = client(&agent, &store, dir.path());
    let (out, _) = turn_collect(&client, "c", &request("n1", "hello")).await;
    assert_eq!(out.expect("a reply").reply, a2a::echo_reply("hello", 1));
    assert_eq!(agent.requests_of("SendMessage").len(), 1);
    assert!(agent.requests_of("SendStreamingMessage").is_empty());
    let (out, _) = turn_collect(&client, "c", &request("n2", a2a::ASK_CONFIRM)).await;
    let confirm = out.expect("a question").confirm.expect("asks");
    let out = client
        .confirm("c", &confirm.confirm_id, false, "n2")
        .await
        .expect("answered");
    assert_eq!(out.reply, a2a::DROPPED);
}

/// The whole path: a room on a real Synapse bound to an A2A agent whose config gives no
/// name: `!agent` shows the card's name and skills, a question is answered with `!yes`,
/// and `!context` says plainly the agent does not offer it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_talks_to_an_a2a_agent() -> anyhow::Result<()> {
    use crate::spine::{alice_with_agents, answer_to};

    let agent = A2aAgent::start().await?;
    let agents = format!(
        "[[agents]]\nid = \"remote\"\nkind = \"a2a\"\nbase_url = \"{}\"\ndefault = true\n",
        agent.base_url
    );
    let (stack, alice, ob) = alice_with_agents(agents).await?;

    let ask = alice.send_text(&ob.chat, "!agent").await?;
    let list = answer_to(&stack, &alice, &ob.chat, &ask, None).await?;
    assert!(
        list.body.contains(a2a::CARD_NAME) && list.body.contains("Echo"),
        "{list:?}"
    );

    let question = alice.send_text(&ob.chat, a2a::ASK_CONFIRM).await?;
    let asked = answer_to(&stack, &alice, &ob.chat, &question, None).await?;
    if !asked.body.contains(a2a::CONFIRM_QUESTION) {
        alice
            .wait_for_message(
                &ob.chat,
                |m| {
                    m.replaces.as_ref() == Some(&asked.event_id)
                        && m.body.contains(a2a::CONFIRM_QUESTION)
                },
                crate::support::WAIT,
            )
            .await?;
    }
    let yes = alice.send_text(&ob.chat, "!yes").await?;
    let done = answer_to(&stack, &alice, &ob.chat, &yes, None).await?;
    assert!(done.body.contains(a2a::CONFIRMED), "{done:?}");

    let ask = alice.send_text(&ob.chat, "!context").await?;
    let context = answer_to(&stack, &alice, &ob.chat, &ask, None).await?;
    assert!(context.body.contains("does not offer"), "{context:?}");
    Ok(())
}
