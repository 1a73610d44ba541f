//! A room's story (issue 18, item 3): `/status/rooms/<room id>` of a room with a failed turn
//! shows the failed message's id and outcome (and, with fault injection, the room actor's
//! restart after a panic), as JSON, as the page and as `surfaces status --room` prints it;
//! an unknown or hostile room id is answered, never a panic.

use serde_json::Value;
use surfaces::config::{OpsConfig, Secret};
use surfaces::ops::room_cli::{fetch_room_story, render_room_table};
use surfaces::ops::room_page::path_segment;
use surfaces::ops::ROOM_PATH_PREFIX;
use surfaces_testkit::inproc::{AgentSetup, Bot, Setup, WAIT};
use surfaces_testkit::reference_agent::Script;
use surfaces_testkit::wait::{wait_until, POLL};

/// The ops token of the test's endpoint.
const TOKEN: &str = "room-story-token";

async fn get(url: &str, accept: &str, token: Option<&str>) -> anyhow::Result<(u16, String)> {
    let mut request = reqwest::Client::new()
        .get(url)
        .header(reqwest::header::ACCEPT, accept);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

#[actix_rt::test]
async fn the_story_of_a_room_with_a_failed_turn() -> anyhow::Result<()> {
    let setup = Setup {
        agent: AgentSetup::Reference,
        ..Setup::default()
    };
    let (bot, alice, chat) = Bot::with_person(setup, "alice").await?;
    let config = OpsConfig {
        bind: "127.0.0.1:0".parse()?,
        token: Some(Secret::new(TOKEN.to_owned())),
        ..OpsConfig::default()
    };
    let addr = surfaces::ops::spawn(&config, bot.view()?, bot.supervisor()?).await?;
    let base = format!("http://{addr}");
    let room_url = format!("{base}{ROOM_PATH_PREFIX}{}", path_segment(chat.as_str()));

    let replied = bot.world.say(&alice, &chat, "hello");
    bot.answer(&chat, &replied).await?;
    bot.reference()?.push_script(Script::Error {
        code: "boom".into(),
        message: "it broke".into(),
    });
    let failed = bot.world.say(&alice, &chat, "this one fails");
    assert!(bot.answer(&chat, &failed).await?.is_notice());

    // With fault injection: the room actor panics on the next message, restarts, and the
    // message is answered by the next incarnation.
    #[cfg(feature = "fault-injection")]
    let _panic = {
        let registry = bot.view()?.registry;
        let guard = registry.faults().inject(
            actors::FaultTarget::Id(surfaces::runtime::ids::room(chat.as_str())),
            actors::Fault::Panic {
                nth: 1,
                message_type: Some("UserMessage".to_owned()),
            },
        );
        let survived = bot.world.say(&alice, &chat, "after a panic");
        bot.answer(&chat, &survived).await?;
        guard
    };

    // JSON (what the CLI reads).
    let story: Value = wait_until(WAIT, POLL, || {
        let (url, id) = (room_url.clone(), failed.as_str().to_owned());
        async move {
            let (status, body) = get(&url, "application/json", Some(TOKEN)).await.ok()?;
            let story: Value = serde_json::from_str(&body).ok()?;
            let ended = story["messages"]
                .as_array()?
                .iter()
                .any(|m| m["message_id"] == id.as_str() && m["outcome"] == "failed");
            (status == 200 && ended).then_some(story)
        }
    })
    .await?;
    let messages = story["messages"].as_array().cloned().unwrap_or_default();
    let failed_record = messages
        .iter()
        .find(|m| m["message_id"] == failed.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        failed_record["failure"], "agent_error: turn_failed boom",
        "{story:#}"
    );
    assert!(failed_record["queue_wait_ms"].is_u64(), "{story:#}");
    let replied_record = messages
        .iter()
        .find(|m| m["message_id"] == replied.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(replied_record["outcome"], "replied", "{story:#}");
    assert!(replied_record["final_reply_ms"].is_u64(), "{story:#}");
    assert_eq!(story["binding"]["agent"], "ref", "{story:#}");
    assert_eq!(story["actor"]["state"], "running", "{story:#}");
    for text in ["this one fails", "it broke", "hello"] {
        assert!(
            !story.to_string().contains(text),
            "{text} leaked: {story:#}"
        );
    }
    #[cfg(feature = "fault-injection")]
    {
        assert_eq!(story["actor"]["restarts"], 1, "{story:#}");
        let history = story["history"].as_array().cloned().unwrap_or_default();
        assert!(
            history.iter().any(|e| e["kind"] == "exited"
                && e["detail"].as_str().is_some_and(|d| d.starts_with("panic"))),
            "{story:#}"
        );
        assert!(
            history.iter().any(|e| e["kind"] == "restarted"),
            "{story:#}"
        );
    }

    // The page, linked from the status page's rooms table.
    let (status, page) = get(&room_url, "text/html", Some(TOKEN)).await?;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("<code>{}</code>", failed.as_str())),
        "{page}"
    );
    assert!(page.contains("data-outcome=\"failed\""), "{page}");
    let (_, status_page) = get(&format!("{base}/status"), "text/html", Some(TOKEN)).await?;
    let link = format!("href=\"status/rooms/{}\"", path_segment(chat.as_str()));
    assert!(status_page.contains(&link), "{link} not in:\n{status_page}");

    // The CLI.
    let secret = Secret::new(TOKEN.to_owned());
    let fetched = fetch_room_story(&base, chat.as_str(), Some(&secret)).await?;
    let text = render_room_table(&fetched);
    let row = text
        .lines()
        .find(|l| l.starts_with(failed.as_str()))
        .unwrap_or_default();
    assert!(
        row.contains("failed") && row.contains("agent_error: turn_failed boom"),
        "{text}"
    );

    // Unknown, hostile, unauthorised.
    for (path, token, want) in [
        (format!("{ROOM_PATH_PREFIX}%21nope%3Ax"), Some(TOKEN), 404),
        (format!("{ROOM_PATH_PREFIX}%FF%FE"), Some(TOKEN), 400),
        (
            format!("{ROOM_PATH_PREFIX}{}", "x".repeat(4096)),
            Some(TOKEN),
            404,
        ),
        (
            format!("{ROOM_PATH_PREFIX}..%2F..%2Fstatus"),
            Some(TOKEN),
            404,
        ),
        (
            format!("{ROOM_PATH_PREFIX}{}", path_segment(chat.as_str())),
            None,
            401,
        ),
    ] {
        let (status, body) = get(&format!("{base}{path}"), "application/json", token).await?;
        assert_eq!(status, want, "{path}: {body}");
    }
    let (_, body) = get(
        &format!("{base}{ROOM_PATH_PREFIX}%21nope%3Ax"),
        "application/json",
        Some(TOKEN),
    )
    .await?;
    assert!(body.contains("no such room"), "{body}");
    Ok(())
}
