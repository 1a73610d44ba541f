//! `kind = "openai"` against an OpenAI-compatible server that is not ours (LiteLLM's proxy,
//! mock responses): the streamed answer feeds the reply, Surfaces keeps the conversation
//! (context, snapshots, idempotent retries), and the server's failures map onto the retry
//! policy (429 transient with the server's reason; a wrong key or model permanent). And the
//! whole path: a room on a real Synapse bound to such an agent.

use std::time::Duration;

use surfaces::agent::{AgentClient, AgentError, AgentEvent, RetryKind};
use surfaces::config::OpenAiSettings;
use surfaces::store::Store;

use crate::agent_http::{request, turn_collect};
use crate::support::litellm::{LiteLlm, BUSY_MODEL, MASTER_KEY, MOCK_MODEL, MOCK_REPLY};

/// The client's silence timeout.
const TIMEOUT: Duration = Duration::from_secs(20);

fn client(proxy: &LiteLlm, store: &Store, model: &str, key: &str) -> AgentClient {
    client_with_images(proxy, store, model, key, None)
}

/// [`client`], taking images from `workspace` when one is given.
fn client_with_images(
    proxy: &LiteLlm,
    store: &Store,
    model: &str,
    key: &str,
    workspace: Option<&std::path::Path>,
) -> AgentClient {
    let settings = OpenAiSettings {
        images: workspace.is_some(),
        model: model.to_owned(),
        system_prompt: Some("You are a test.".to_owned()),
        temperature: Some(0.2),
        max_tokens: Some(64),
        history_max_messages: 3,
        ..OpenAiSettings::default()
    };
    AgentClient::openai(
        &proxy.base_url,
        Some(key.to_owned()),
        TIMEOUT,
        settings,
        workspace.map(std::path::Path::to_path_buf),
        store,
        "oa",
    )
    .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_compatible_server_streams_and_surfaces_keeps_the_conversation() {
    let proxy = LiteLlm::start().await.expect("litellm");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let agent = client(&proxy, &store, MOCK_MODEL, MASTER_KEY);
    assert!(agent.health().await.expect("health").is_ok());

    // The answer streams in pieces, and the reply is all of it.
    let (out, events) = turn_collect(&agent, "chat-1", &request("t1", "hello?")).await;
    let out = out.expect("a reply");
    assert_eq!(out.reply, MOCK_REPLY);
    let deltas: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Delta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(deltas.len() > 1, "streamed: {events:?}");
    assert!(
        matches!(events.last(), Some(AgentEvent::Done { .. })),
        "{events:?}"
    );

    // Surfaces keeps the conversation: the question and the answer.
    let context = agent.context("chat-1").await.expect("context");
    assert_eq!(context.messages, 2);
    assert!(context.tokens > 0);
    // A retry of the same turn is answered from there (no second exchange is kept).
    let (again, _) = turn_collect(&agent, "chat-1", &request("t1", "hello?")).await;
    assert_eq!(again.expect("replayed").reply, MOCK_REPLY);
    assert_eq!(agent.context("chat-1").await.expect("context").messages, 2);

    // Snapshots: saved, then loaded into another chat; the budget (3 messages) holds.
    let saved = agent.save_snapshot("chat-1", "first").await.expect("save");
    assert_eq!(saved.messages, 2);
    let (out, _) = turn_collect(&agent, "chat-1", &request("t2", "more")).await;
    out.expect("second turn");
    let context = agent.context("chat-1").await.expect("context");
    assert_eq!(context.messages, 2, "within 3 messages, whole turns kept");
    assert_eq!(context.snapshots, ["first"]);
    agent
        .restore("chat-2", "first", Some("chat-1"))
        .await
        .expect("restore");
    assert_eq!(agent.context("chat-2").await.expect("context").messages, 2);
    let missing = agent
        .restore("chat-2", "nope", None)
        .await
        .expect_err("none");
    assert_eq!(missing.retry_kind(), RetryKind::Permanent);
    agent.delete_chat("chat-1").await.expect("delete");
    assert_eq!(agent.context("chat-1").await.expect("context").messages, 0);

    // Kept across a restart (the conversations are in the store).
    drop(agent);
    drop(store);
    let store = Store::open(dir.path()).expect("store again");
    let agent = client(&proxy, &store, MOCK_MODEL, MASTER_KEY);
    assert_eq!(agent.context("chat-2").await.expect("context").messages, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_compatible_server_s_failures_map_onto_the_retry_policy() {
    let proxy = LiteLlm::start().await.expect("litellm");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");

    // Rate limited: transient, to be retried.
    let busy = client(&proxy, &store, BUSY_MODEL, MASTER_KEY);
    let (out, _) = turn_collect(&busy, "c", &request("t1", "hi")).await;
    let err = out.expect_err("429");
    assert!(matches!(err, AgentError::Busy { status: 429, .. }), "{err}");
    assert!(matches!(err.retry_kind(), RetryKind::Transient { .. }));
    assert_eq!(
        busy.context("c").await.expect("context").messages,
        0,
        "nothing kept"
    );

    // A wrong key and an unknown model: permanent (the operator must fix the config).
    let wrong_key = client(&proxy, &store, MOCK_MODEL, "sk-wrong");
    let (out, _) = turn_collect(&wrong_key, "c", &request("t2", "hi")).await;
    let err = out.expect_err("401");
    assert_eq!(err.retry_kind(), RetryKind::Permanent, "{err}");
    assert!(
        !err.to_string().contains("sk-wrong"),
        "the key is never shown: {err}"
    );
    let unknown = client(&proxy, &store, "no-such-model", MASTER_KEY);
    let (out, _) = turn_collect(&unknown, "c", &request("t3", "hi")).await;
    let err = out.expect_err("unknown model");
    assert_eq!(err.retry_kind(), RetryKind::Permanent, "{err}");

    // Files are not sent: the person is told, nothing is kept.
    let agent = client(&proxy, &store, MOCK_MODEL, MASTER_KEY);
    let mut with_file = request("t4", "see this");
    with_file.attachments.push(surfaces::agent::Attachment {
        path: "inbox/r/a.pdf".into(),
        name: "a.pdf".into(),
        mime: "application/pdf".into(),
        size: 10,
    });
    let (out, _) = turn_collect(&agent, "c", &with_file).await;
    assert_refused(out, "a.pdf", "text only");

    // With images on: an image goes with its message; another file is refused, naming the
    // limit.
    let workspace = tempfile::tempdir().expect("workspace");
    std::fs::create_dir_all(workspace.path().join("inbox/r")).expect("inbox");
    std::fs::write(
        workspace.path().join("inbox/r/chart.png"),
        b"\x89PNG\r\n\x1a\n",
    )
    .expect("png");
    let seeing = client_with_images(
        &proxy,
        &store,
        MOCK_MODEL,
        MASTER_KEY,
        Some(workspace.path()),
    );
    let mut with_image = request("t5", "what is in it?");
    with_image.attachments.push(surfaces::agent::Attachment {
        path: "inbox/r/chart.png".into(),
        name: "chart.png".into(),
        mime: "image/png".into(),
        size: 8,
    });
    let (out, _) = turn_collect(&seeing, "img", &with_image).await;
    assert_eq!(out.expect("an answer about the image").reply, MOCK_REPLY);
    let (out, _) = turn_collect(&seeing, "img", &with_file).await;
    assert_refused(out, "a.pdf", "images only");
    let mut missing = with_image.clone();
    missing.turn_id = "t6".into();
    missing.attachments[0].path = "inbox/r/gone.png".into();
    let (out, _) = turn_collect(&seeing, "img", &missing).await;
    assert_refused(out, "chart.png", "at most");
}

/// The turn was refused for its file, saying `what`.
fn assert_refused(out: Result<surfaces::agent::TurnOutcome, AgentError>, file: &str, what: &str) {
    match out {
        Err(AgentError::TurnFailed { code, message }) => {
            assert_eq!(code, "unsupported_file");
            assert!(
                message.contains(file) && message.contains(what),
                "{message}"
            );
        }
        other => panic!("expected a refusal of {file}: {other:?}"),
    }
}

/// The whole path: a person's room on a real Synapse bound to an `openai` agent (LiteLLM)
/// gets the model's answer, streamed live, and `!context`, `!save` answered from the
/// conversation Surfaces keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_talks_to_an_openai_compatible_server() -> anyhow::Result<()> {
    use crate::spine::{alice_with_agents, answer_to};

    let proxy = LiteLlm::start().await?;
    let agents = format!(
        "[[agents]]\nid = \"llm\"\nname = \"Model\"\nkind = \"openai\"\nbase_url = \"{}\"\n\
         model = \"{MOCK_MODEL}\"\napi_key = \"{MASTER_KEY}\"\ndefault = true\n",
        proxy.base_url
    );
    let (stack, alice, ob) = alice_with_agents(agents).await?;
    let question = alice.send_text(&ob.chat, "hello, model").await?;
    let answer = answer_to(&stack, &alice, &ob.chat, &question, Some("m.text")).await?;
    if answer.body != MOCK_REPLY {
        // Posted at its first words: the whole text comes as an edit.
        alice
            .wait_for_message(
                &ob.chat,
                |m| m.replaces.as_ref() == Some(&answer.event_id) && m.body == MOCK_REPLY,
                crate::support::WAIT,
            )
            .await?;
    }
    let ask = alice.send_text(&ob.chat, "!save first").await?;
    answer_to(&stack, &alice, &ob.chat, &ask, None).await?;
    let ask = alice.send_text(&ob.chat, "!context").await?;
    let context = answer_to(&stack, &alice, &ob.chat, &ask, None).await?;
    assert!(
        context.body.contains("2 messages") && context.body.contains("first"),
        "{context:?}"
    );
    Ok(())
}
