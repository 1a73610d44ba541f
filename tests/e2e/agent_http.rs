//! HTTP-level tests of the agent client (`surfaces::agent`) against the reference agent:
//! the contract of `docs/agent-api.md` as the client sees it, failures included.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use surfaces::agent::{
    turn_with_retry, AgentClient, AgentError, AgentEvent, Attachment, RetryKind, RetryPolicy,
    TurnRequest, TurnSender,
};

use crate::support::reference_agent::{Endpoint, Fault, ReferenceAgent, Script};

/// Timeout of the client in the tests that do not test timeouts.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a test waits for something to happen.
const WAIT: Duration = Duration::from_secs(10);
/// A fast retry policy, so that the tests are quick.
const FAST_RETRY: RetryPolicy = RetryPolicy {
    attempts: 3,
    base: Duration::from_millis(10),
    max: Duration::from_millis(50),
    ..RetryPolicy::AGENT
};

/// A turn of `text` from Alice (shared by the tests of every agent kind).
pub(crate) fn request(turn_id: &str, text: &str) -> TurnRequest {
    TurnRequest {
        turn_id: turn_id.to_owned(),
        sender: TurnSender {
            id: "@alice:example.org".to_owned(),
            display_name: Some("Alice".to_owned()),
        },
        text: text.to_owned(),
        attachments: vec![],
    }
}

fn client_for(agent: &ReferenceAgent) -> AgentClient {
    AgentClient::http(&agent.base_url(), None, CALL_TIMEOUT).expect("client")
}

/// Runs one turn and collects its events.
pub(crate) async fn turn_collect(
    client: &AgentClient,
    chat: &str,
    req: &TurnRequest,
) -> (
    Result<surfaces::agent::TurnOutcome, AgentError>,
    Vec<AgentEvent>,
) {
    let mut events = Vec::new();
    let out = client
        .turn(chat, req, &mut |e: &AgentEvent| events.push(e.clone()))
        .await;
    (out, events)
}

#[tokio::test]
async fn agent_http_streamed_turn_delivers_deltas_then_done() {
    let agent = ReferenceAgent::start("a1").await;
    let client = client_for(&agent);
    let mut req = request("turn-1", "hello there");
    req.attachments.push(Attachment {
        path: "inbox/r/e-report.pdf".to_owned(),
        name: "report.pdf".to_owned(),
        mime: "application/pdf".to_owned(),
        size: 48213,
    });
    let (out, events) = turn_collect(&client, "sfc-1", &req).await;
    let out = out.expect("turn");
    let want = "ref-agent a1 got: hello there [attachments: report.pdf]";
    assert_eq!(out.reply, want);
    assert!(out.confirm.is_none());
    let deltas: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Delta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(deltas.len() >= 2, "{events:?}");
    assert_eq!(deltas.concat(), want);
    assert!(matches!(events.first(), Some(AgentEvent::Status { .. })));
    assert!(matches!(events.last(), Some(AgentEvent::Done { .. })));

    let turns = agent.turns();
    assert_eq!(turns.len(), 1);
    let t = &turns[0];
    assert_eq!(t.chat, "sfc-1");
    assert_eq!(t.turn_id, "turn-1");
    assert_eq!(t.text, "hello there");
    assert_eq!(t.sender_id, "@alice:example.org");
    assert_eq!(t.sender_display_name.as_deref(), Some("Alice"));
    assert_eq!(t.attachments.len(), 1);
    assert_eq!(t.attachments[0].name, "report.pdf");
    assert_eq!(t.attachments[0].size, 48213);
    assert_eq!(t.authorization, None);
    let accept = agent.requests()[0].accept.clone();
    assert_eq!(accept.as_deref(), Some("text/event-stream"));
}

#[tokio::test]
async fn agent_http_503_with_retry_after_then_success() {
    let agent = ReferenceAgent::start("a1").await;
    let client = client_for(&agent);
    agent.fail_next_with_retry_after(1, 503, 1);
    let started = Instant::now();
    let out = turn_with_retry(
        &client,
        "sfc-1",
        &request("turn-1", "hi"),
        FAST_RETRY,
        &mut |_| {},
    )
    .await
    .expect("turn after retry");
    assert_eq!(out.reply, "ref-agent a1 got: hi");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After not honoured: {:?}",
        started.elapsed()
    );
    assert_eq!(agent.request_count(Endpoint::Turn), 2);
    assert_eq!(agent.executions_of("turn-1"), 1);
}

#[tokio::test]
async fn agent_http_single_attempt_503_is_busy_with_retry_after() {
    let agent = ReferenceAgent::start("a1").await;
    let client = client_for(&agent);
    agent.fail_next_with_retry_after(1, 429, 7);
    let (out, _) = turn_collect(&client, "c", &request("t", "x")).await;
    let err = out.expect_err("429");
    assert_eq!(
        err.retry_kind(),
        RetryKind::Transient {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(matches!(err, AgentError::Busy { status: 429, .. }), "{err}");
}

#[tokio::test]
async fn agent_http_500_exhausts_retries_as_transient() {
    let agent = ReferenceAgent::start("a1").await;
    let client = client_for(&agent);
    agent.fail_next(5, 500);
    let err = turn_with_retry(&client, "c", &request("t", "x"), FAST_RETRY, &mut |_| {})
        .await
        .expect_err("500 every time");
    assert!(
        matches!(err, AgentError::Server { status: 500, .. }),
        "{err}"
    );
    assert_eq!(err.retry_kind(), RetryKind::Transient { retry_after: None });
    assert_eq!(agent.request_count(Endpoint::Turn), 3);
    assert_eq!(agent.executions(), 0);
    assert!(err.to_string().contains("injected"), "{err}");
}

#[tokio::test]
async fn agent_http_400_is_permanent_and_not_retried() {
    let agent = ReferenceAgent::start("a1").await;
    let client = client_for(&agent);
    agent.fail_next(1, 400);
    let err = turn_with_retry(&client, "c", &request("t", "x"), FAST_RETRY, &mut |_| {})
        .await
        .expect_err("400");
    match &err {
        AgentError::Rejected {
            status: 400,
            body: Some(body),
        } => assert_eq!(body.code, "injected"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.retry_kind(), RetryKind::Permanent);
    assert_eq!(agent.request_count(Endpoint::Turn), 1);
}

#[tokio::test]
async fn agent_http_garbage_is_a_protocol_error() {
    let agent = ReferenceAgent::start("a1").await;
    let client = client_for(&agent);
    for (i, fault) in [Fault::NotSse, Fault::InvalidJson, Fault::InvalidUtf8]
        .into_iter()
        .enumerate()
    {
        agent.push_fault(fault.clone());
        let (out, _) = turn_collect(&client, "c", &request(&format!("t{i}"), "x")).await;
        let err = out.expect_err("garbage");
        assert!(matches!(err, AgentError::Protocol(_)), "{fault:?}: {err}");
        assert_eq!(err.retry_kind(), RetryKind::Transient { retry_after: None });
    }
}

#[tokio::test]
async fn agent_http_garbage_once_then_retry_replays() {
    let agent = ReferenceAgent::start("a1").await;
    let client = client_for(&agent);
    agent.push_fault(Fault::InvalidJson);
    let out = turn_with_retry(&client, "c", &request("t", "x"), FAST_RETRY, &mut |_| {})
        .await
        .expect("retry after garbage");
    assert_eq!(out.reply, "ref-agent a1 got: x");
    assert_eq!(agent.request_count(Endpoint::Turn), 2);
    assert_eq!(agent.executions_of("t"), 1);
}

#[tokio::test]
async fn agent_http_stream_without_done_is_incomplete() {
    let agent = ReferenceAgent::start("a1").await;
    let client = client_for(&agent);
    agent.push_fault(Fault::NoDone);
    let (out, events) = turn_collect(&client, "c", &request("t", "x")).await;
    let err = out.expect_err("no done");
    assert!(matches!(err, AgentError::Incomplete), "{err}");
    assert_eq!(err.retry_kind(), RetryKind::Transient { retry_after: None });
    assert!(events.iter().any(|e| matches!(e, AgentEvent::Delta { .. })));
}

#[tokio::test]
async fn agent_http_idempotent_retry_executes_once() {
    let agent = ReferenceAgent::start("a1").await;
    let client = client_for(&agent);
    agent.push_fault(Fault::NoDone);
    let out = turn_with_retry(
        &client,
        "c",
        &request("turn-x", "once"),
        FAST_RETRY,
        &mut |_| {},
    )
    .await
    .expect("retried turn");
    assert_eq!(out.reply, "ref-agent a1 got: once");
    // And the same turn again, later: a replay too.
    let (again, _) = turn_collect(&client, "c", &request("turn-x", "once")).await;
    assert_eq!(again.expect("replay").reply, out.reply);
    assert_eq!(agent.request_count(Endpoint::Turn), 3);
    assert_eq!(agent.executions_of("turn-x"), 1);
    assert_eq!(agent.executions(), 1);
    assert_eq!(agent.messages_in("c"), 2);
}

#[tokio::test]
async fn agent_http_timeout() {
    let agent = ReferenceAgent::start("a1").await;
    agent.set_delay(Duration::from_secs(3));
    let timeout = Duration::from_millis(200);
    let client = AgentClient::http(&agent.base_url(), None, timeout).expect("client");
    let started = Instant::now();
    let (out, _) = turn_collect(&client, "c", &request("t", "x")).await;
    let err = out.expect_err("timeout");
    assert_eq!(err, AgentError::Timeout(timeout));
    assert_eq!(err.retry_kind(), RetryKind::Transient { retry_after: None });
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn agent_http_unreachable_port_is_a_network_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let client =
        AgentClient::http(&format!("http://127.0.0.1:{port}"), None, CALL_TIMEOUT).expect("client");
    let (out, _) = turn_collect(&client, "c", &request("t", "x")).await;
    let err = out.expect_err("nobody listens");
    assert!(matches!(err, AgentError::Unreachable(_)), "{err}");
    assert_eq!(err.retry_kind(), RetryKind::Network);
    let health = client.health().await.expect_err("nobody listens");
    assert_eq!(health.retry_kind(), RetryKind::Network);
}

#[tokio::test]
async fn agent_http_auth_header_sent() {
    let agent = ReferenceAgent::start("a1").await;
    agent.require_token(Some("s3cret"));
    let client = AgentClient::http(&agent.base_url(), Some("s3cret".to_owned()), CALL_TIMEOUT)
        .expect("client");
    let (out, _) = turn_collect(&client, "c", &request("t", "x")).await;
    out.expect("authorised turn");
    assert!(client.health().await.expect("health").is_ok());
    let turns = agent.turns();
    assert_eq!(turns[0].authorization.as_deref(), Some("Bearer s3cret"));
    assert!(agent
        .requests()
        .iter()
        .all(|r| r.authorization.as_deref() == Some("Bearer s3cret")));
    assert!(!format!("{client:?}").contains("s3cret"));

    let wrong = AgentClient::http(&agent.base_url(), Some("nope".to_owned()), CALL_TIMEOUT)
        .expect("client");
    let (out, _) = turn_collect(&wrong, "c", &request("t2", "x")).await;
    let err = out.expect_err("401");
    assert!(
        matches!(err, AgentError::Rejected { status: 401, .. }),
        "{err}"
    );
    assert_eq!(err.retry_kind(), RetryKind::Permanent);
    let anonymous = client_for(&agent);
    let err = anonymous.context("c").await.expect_err("401");
    assert_eq!(err.http_status(), Some(401));
}

#[tokio::test]
async fn agent_http_chat_id_is_one_encoded_path_segment() {
    let agent = ReferenceAgent::start("a1").await;
    let client = client_for(&agent);
    let chat = "odd/chat id?#%é";
    let (out, _) = turn_collect(&client, chat, &request("t", "x")).await;
    out.expect("turn");
    let reqs = agent.requests();
    assert_eq!(reqs[0].endpoint, Endpoint::Turn);
    assert_eq!(reqs[0].chat.as_deref(), Some(chat));
    assert!(
        !reqs[0].raw_path.contains("odd/chat"),
        "{}",
        reqs[0].raw_path
    );
    let err = client.context("..").await.expect_err("dot-dot");
    assert!(matches!(err, AgentError::InvalidChatId(_)));
}

#[tokio::test]
async fn agent_http_confirm_flow() {
    let agent = ReferenceAgent::start("a1").await;
    let client = client_for(&agent);
    agent.confirm_next("Delete 3 files?");
    let (out, _) = turn_collect(&client, "c", &request("t", "clean up")).await;
    let out = out.expect("turn");
    let confirm = out.confirm.expect("a confirm");
    assert_eq!(confirm.prompt, "Delete 3 files?");
    let mut events = Vec::new();
    let done = client
        .confirm_with_events("c", &confirm.confirm_id, true, "t", &mut |e| {
            events.push(e.clone())
        })
        .await
        .expect("confirmed");
    assert_eq!(done.reply, "ref-agent a1 did: clean up");
    assert!(events.len() >= 2);
    // Answering again replays the same answer.
    let again = client
        .confirm("c", &confirm.confirm_id, true, "t")
        .await
        .expect("replayed");
    assert_eq!(again.reply, done.reply);
    assert_eq!(agent.request_count(Endpoint::Confirm), 2);
    let body = &agent.requests()[1].body;
    assert_eq!(body["approved"], true);
    assert_eq!(body["turn_id"], "t");

    agent.confirm_next("Really?");
    let (out, _) = turn_collect(&client, "c", &request("t2", "drop db")).await;
    let c = out.expect("turn").confirm.expect("confirm");
    let declined = client
        .confirm("c", &c.confirm_id, false, "t2")
        .await
        .expect("declined");
    assert_eq!(declined.reply, "ref-agent a1 did not: drop db");
    let unknown = client
        .confirm("c", "nope", true, "t")
        .await
        .expect_err("404");
    assert!(matches!(unknown, AgentError::Rejected { status: 404, .. }));
}

#[tokio::test]
async fn agent_http_file_and_error_events() {
    let agent = ReferenceAgent::start("a1").await;
    let client = client_for(&agent);
    agent.file_next("out/chart.png", "chart.png", "image/png");
    let (out, _) = turn_collect(&client, "c", &request("t1", "plot")).await;
    let out = out.expect("turn");
    assert_eq!(out.files.len(), 1);
    assert_eq!(out.files[0].path, "out/chart.png");
    assert_eq!(out.files[0].mime, "image/png");

    agent.push_script(Script::Error {
        code: "tool_failed".to_owned(),
        message: "the tool broke".to_owned(),
    });
    let err = turn_with_retry(&client, "c", &request("t2", "x"), FAST_RETRY, &mut |_| {})
        .await
        .expect_err("error event");
    assert_eq!(
        err,
        AgentError::TurnFailed {
            code: "tool_failed".to_owned(),
            message: "the tool broke".to_owned()
        }
    );
    assert_eq!(
        agent.request_count(Endpoint::Turn),
        2,
        "a failed turn is not retried"
    );
}

#[tokio::test]
async fn agent_http_cancel_ends_the_stream_with_cancelled() {
    let agent = Arc::new(ReferenceAgent::start("a1").await);
    agent.set_delay(Duration::from_secs(5));
    let client = Arc::new(client_for(&agent));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let running = {
        let client = Arc::clone(&client);
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            client
                .turn("c", &request("slow", "x"), &mut |e| {
                    seen.lock().expect("events").push(e.clone())
                })
                .await
        })
    };
    assert!(agent.wait_for_turns(1, WAIT).await, "turn never arrived");
    let started = Instant::now();
    client.cancel("c", "slow").await.expect("cancel");
    let err = running.await.expect("join").expect_err("cancelled");
    assert!(err.is_cancelled(), "{err}");
    assert_eq!(err.retry_kind(), RetryKind::Permanent);
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(agent.request_count(Endpoint::Cancel), 1);
    // A replay of a cancelled turn says cancelled again.
    agent.set_delay(Duration::ZERO);
    let (again, _) = turn_collect(&client, "c", &request("slow", "x")).await;
    assert!(again.expect_err("still cancelled").is_cancelled());
}

#[tokio::test]
async fn agent_http_context_snapshots_restore_delete_health() {
    let agent = ReferenceAgent::start("a1").await;
    let client = client_for(&agent);
    let health = client.health().await.expect("health");
    assert!(health.is_ok());
    assert_eq!(health.agent, "a1");

    turn_collect(&client, "old", &request("t1", "one two three"))
        .await
        .0
        .expect("turn");
    let ctx = client.context("old").await.expect("context");
    assert_eq!(ctx.messages, 2);
    assert!(ctx.tokens > 0);
    assert!(ctx.summary.is_some());

    let snap = client.save_snapshot("old", "before").await.expect("save");
    assert_eq!(snap.name, "before");
    assert_eq!(snap.messages, 2);
    assert_eq!(
        client.context("old").await.expect("context").snapshots,
        vec!["before".to_owned()]
    );
    client.delete_chat("old").await.expect("delete");
    client
        .delete_chat("old")
        .await
        .expect("delete is idempotent");
    assert_eq!(client.context("old").await.expect("context").messages, 0);

    client
        .restore("new", "before", Some("old"))
        .await
        .expect("restore from another chat");
    assert_eq!(client.context("new").await.expect("context").messages, 2);
    let missing = client.restore("new", "nope", None).await.expect_err("404");
    assert!(matches!(missing, AgentError::Rejected { status: 404, .. }));
    let body = agent
        .requests()
        .into_iter()
        .find(|r| r.endpoint == Endpoint::Restore)
        .expect("restore recorded")
        .body;
    assert_eq!(body["snapshot"], "before");
    assert_eq!(body["from_chat"], "old");
}

#[tokio::test]
async fn agent_http_agent_down_then_up_on_same_port() {
    let agent = ReferenceAgent::start("a1").await;
    let client = client_for(&agent);
    let url = agent.base_url();
    client.health().await.expect("up");

    agent.go_down().await;
    assert!(!agent.is_up());
    let err = client.health().await.expect_err("down");
    assert_eq!(err.retry_kind(), RetryKind::Network, "{err}");
    let (out, _) = turn_collect(&client, "c", &request("t", "x")).await;
    assert_eq!(out.expect_err("down").retry_kind(), RetryKind::Network);

    agent.come_up().await;
    assert_eq!(agent.base_url(), url);
    let mut healthy = false;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if client.health().await.is_ok() {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(healthy, "agent did not come back");
    let (out, _) = turn_collect(&client, "c", &request("t", "x")).await;
    assert_eq!(
        out.expect("turn after coming back").reply,
        "ref-agent a1 got: x"
    );
}

#[tokio::test]
async fn agent_http_going_down_cuts_a_running_stream() {
    let agent = ReferenceAgent::start("a1").await;
    agent.set_delay(Duration::from_secs(5));
    let client = client_for(&agent);
    let req = request("t", "x");
    let mut ignore = |_: &AgentEvent| {};
    let turn = client.turn("c", &req, &mut ignore);
    let down = async {
        assert!(agent.wait_for_turns(1, WAIT).await);
        agent.go_down().await;
    };
    let (out, ()) = tokio::join!(turn, down);
    let err = out.expect_err("cut");
    assert_eq!(err.retry_kind(), RetryKind::Network, "{err}");
}

/// `timeout` bounds the agent's silences, not a turn that keeps streaming; `max_turn` bounds
/// the whole turn (and retrying it cannot help).
#[tokio::test]
async fn a_streaming_turn_may_outlast_the_timeout_but_not_the_turn_limit() {
    use crate::support::reference_agent::{streamed_reply, STREAM_COMMAND};
    let agent = ReferenceAgent::start("a1").await;
    // 12 words at 100 ms (with their status events): about 1.5 s, each gap 100 ms.
    agent.set_interval(Duration::from_millis(100));
    let ask = request("t-long", &format!("{STREAM_COMMAND}12"));
    let timeout = Duration::from_millis(600);
    let client = AgentClient::http(&agent.base_url(), None, timeout).expect("client");
    let started = Instant::now();
    let (out, _) = turn_collect(&client, "c", &ask).await;
    assert_eq!(out.expect("a lively stream").reply, streamed_reply(12));
    assert!(started.elapsed() > timeout, "{:?}", started.elapsed());

    let max_turn = Duration::from_millis(700);
    let client = AgentClient::http(&agent.base_url(), None, timeout)
        .expect("client")
        .with_max_turn(max_turn);
    let ask = request("t-longer", &format!("{STREAM_COMMAND}12"));
    let (out, _) = turn_collect(&client, "c", &ask).await;
    let err = out.expect_err("past the turn limit");
    assert_eq!(err, AgentError::TurnTooLong(max_turn));
    assert_eq!(err.retry_kind(), RetryKind::Permanent);
}
