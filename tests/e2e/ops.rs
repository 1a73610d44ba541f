//! The operator's view, end to end: the ops endpoint of a running bot on a real Synapse
//! (health, metrics parsed as Prometheus text, status as JSON, as a table and as a page
//! rendered by headless Chromium), fault drills over HTTP (a panicking room restarts, the
//! others keep answering; a room that cannot start ends failed), a Matrix room passivated
//! when idle and woken by its next message, and the packaging files.
//!
//! The fault endpoint exists only in builds with the `fault-injection` feature; `ops/test`
//! builds everything with `--all-features`. Chromium comes from Debian's `chromium`
//! package (`ops/test` installs it when missing); `SURFACES_CHROMIUM` names another binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use matrix_sdk::ruma::RoomId;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::spine::{agents_toml, answer_to, ask, onboard, Stack};
use crate::support::{free_port, try_wait_until, POLL, WAIT};

/// The fault endpoint's bearer token in these tests.
const FAULT_TOKEN: &str = "drill-token-for-tests";
/// How long a CLI command or Chromium may take.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(90);
/// Env var naming the Chromium binary (default `chromium` on the PATH).
const CHROMIUM_ENV: &str = "SURFACES_CHROMIUM";
/// Low supervision limits, so a room that cannot start is failed within a second.
const FAST_GIVE_UP: [(&str, &str); 3] = [
    ("SURFACES__SUPERVISION__MAX_RESTARTS", "2"),
    ("SURFACES__SUPERVISION__BACKOFF_MIN_MS", "10"),
    ("SURFACES__SUPERVISION__BACKOFF_MAX_MS", "50"),
];

/// Synapse, the reference agent and the bot with a fault token and `extra_env`.
async fn stack_with(extra_env: &[(&str, &str)]) -> anyhow::Result<Stack> {
    let mut env = vec![("SURFACES__OPS__FAULT_TOKEN", FAULT_TOKEN)];
    env.extend_from_slice(extra_env);
    Stack::start_configured(|agent, _| Ok(agents_toml(agent)), &env).await
}

/// An HTTP client of the bot's ops endpoint.
struct Ops {
    base: String,
    http: reqwest::Client,
}

impl Ops {
    fn of(stack: &Stack) -> anyhow::Result<Ops> {
        Ok(Ops {
            base: stack.bot.ops_url(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    async fn get_with(
        &self,
        path: &str,
        accept: Option<&str>,
    ) -> anyhow::Result<(u16, String, String)> {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok((status, content_type, response.text().await?))
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let (status, _, body) = self.get_with(path, None).await?;
        Ok((status, body))
    }

    async fn status(&self) -> anyhow::Result<Value> {
        let (code, body) = self.get("/status.json").await?;
        anyhow::ensure!(code == 200, "/status.json answered {code}: {body}");
        Ok(serde_json::from_str(&body)?)
    }

    /// Polls `/status.json` until `condition` holds; returns that document.
    async fn wait_for_status(
        &self,
        what: &str,
        condition: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        try_wait_until(WAIT, POLL, || async {
            let status = self.status().await?;
            Ok(condition(&status).then_some(status))
        })
        .await
        .map_err(|e| e.context(format!("waiting for /status: {what}")))
    }

    async fn metrics(&self) -> anyhow::Result<prometheus_parse::Scrape> {
        let (code, content_type, body) = self.get_with("/metrics", None).await?;
        anyhow::ensure!(code == 200, "/metrics answered {code}: {body}");
        anyhow::ensure!(content_type.starts_with("text/plain"), "{content_type}");
        Ok(prometheus_parse::Scrape::parse(
            body.lines().map(|l| Ok(l.to_owned())),
        )?)
    }

    /// Starts a fault drill; returns its id.
    async fn inject(&self, target: &str, fault: Value) -> anyhow::Result<u64> {
        let response = self
            .http
            .post(format!("{}/faults", self.base))
            .bearer_auth(FAULT_TOKEN)
            .json(&json!({ "target": target, "fault": fault, "duration_secs": 600 }))
            .send()
            .await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await?;
        anyhow::ensure!(status == 201, "POST /faults answered {status}: {body}");
        body["id"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("no drill id in {body}"))
    }
}

fn room_entry<'a>(status: &'a Value, room: &RoomId) -> Option<&'a Value> {
    status["rooms"]
        .as_array()?
        .iter()
        .find(|r| r["room_id"] == room.as_str())
}

/// The value of the sample `name` with `labels` (counter, gauge or untyped).
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .find_map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(*v),
            _ => None,
        })
}

/// Runs the `surfaces` binary with `args` (and `env`) in `dir`; (exit code, stdout, stderr).
async fn surfaces(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(i32, String, String)> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_surfaces"));
    command
        .args(args)
        .current_dir(dir)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SURFACES__") {
            command.env_remove(&key);
        }
    }
    command.envs(env.iter().copied());
    let output = tokio::time::timeout(PROCESS_TIMEOUT, command.output()).await??;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// Headless Chromium on `url`: its DOM after load (`--dump-dom`) and a screenshot in `dir`.
async fn chromium(url: &str, dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    let binary = std::env::var(CHROMIUM_ENV).unwrap_or_else(|_| "chromium".to_owned());
    let run = |mode: Vec<String>| {
        let profile = dir.join(format!("profile-{}", fastrand_suffix()));
        let mut command = tokio::process::Command::new(&binary);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(mode)
            .arg(url)
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        command
    };
    let output = tokio::time::timeout(PROCESS_TIMEOUT, run(vec!["--dump-dom".into()]).output())
        .await
        .map_err(|_| anyhow::anyhow!("chromium --dump-dom took over {PROCESS_TIMEOUT:?}"))?
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run {binary} ({e}): install Debian's chromium (ops/test does) or set {CHROMIUM_ENV}"
            )
        })?;
    anyhow::ensure!(
        output.status.success(),
        "chromium --dump-dom failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    let shot = dir.join("status.png");
    let output = tokio::time::timeout(
        PROCESS_TIMEOUT,
        run(vec![
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,1500".into(),
        ])
        .output(),
    )
    .await??;
    anyhow::ensure!(
        output.status.success(),
        "chromium --screenshot failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((dom, shot))
}

/// The `<svg>` of the status page's chart `key` in `dom`.
fn chart_svg<'a>(dom: &'a str, key: &str) -> Option<&'a str> {
    let start = dom.find(&format!("<svg class=\"chart\" data-chart=\"{key}\""))?;
    let end = dom[start..].find("</svg>")?;
    Some(&dom[start..start + end])
}

/// The colours of the charts' series in the page's style sheet (`src/ops/html.rs`).
const REPLIED_RGB: [u8; 3] = [0x2e, 0x9d, 0x4a];
/// See [`REPLIED_RGB`].
const RESTARTS_RGB: [u8; 3] = [0x8a, 0x3f, 0xc0];
/// Pixels of a series' colour a drawn chart has at least: three times its legend swatch
/// alone (12×8 units, about 45 pixels in a 1400-pixel-wide window, charts three abreast);
/// a minute's bar adds a few hundred.
const MIN_CHART_PIXELS: usize = 150;
/// How far a screenshot's pixel may be from a colour and still count as it (antialiasing).
const COLOUR_TOLERANCE: u8 = 8;

/// Pixels of the PNG `png` within [`COLOUR_TOLERANCE`] of `rgb`.
fn pixels_near(png: &[u8], rgb: [u8; 3]) -> anyhow::Result<usize> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info()?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| anyhow::anyhow!("the screenshot is too large to decode"))?;
    let mut pixels = vec![0; size];
    let frame = reader.next_frame(&mut pixels)?;
    let channels = match frame.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => anyhow::bail!("a screenshot in {other:?}"),
    };
    Ok(pixels[..frame.buffer_size()]
        .chunks_exact(channels)
        .filter(|p| (0..3).all(|c| p[c].abs_diff(rgb[c]) <= COLOUR_TOLERANCE))
        .count())
}

/// A fresh suffix for Chromium profile directories.
fn fastrand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_endpoints_answer_on_a_running_bot() -> anyhow::Result<()> {
    let stack = stack_with(&[]).await?;
    let ops = Ops::of(&stack)?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;
    ask(&stack, &alice, &ob.chat, "hello ops").await?;
    assert!(
        stack
            .bot
            .log_contains(&format!("ops endpoint listening on {}", stack.bot.ops_addr)),
        "{}",
        stack.bot.log_tail(40)
    );

    // Health.
    assert_eq!(ops.get("/livez").await?, (200, "ok\n".to_owned()));
    let (code, text) = ops.get("/readyz").await?;
    assert_eq!((code, text.as_str()), (200, "ready\n"));
    let (code, verbose) = ops.get("/readyz?verbose").await?;
    assert_eq!(code, 200);
    for check in [
        "supervisor",
        "store",
        "shutdown",
        "startup",
        "sync",
        "agent:ref",
    ] {
        assert!(
            verbose.contains(&format!("[+] {check}: ")),
            "{check}:\n{verbose}"
        );
    }

    // Metrics, parsed as Prometheus text.
    let scrape = ops.metrics().await?;
    let typed = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| s.value.clone())
    };
    assert!(
        matches!(
            typed("surfaces_messages_total"),
            Some(prometheus_parse::Value::Counter(_))
        ),
        "{:?}",
        typed("surfaces_messages_total")
    );
    assert!(
        sample(
            &scrape,
            "surfaces_messages_total",
            &[("outcome", "replied")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(
        sample(
            &scrape,
            "surfaces_messages_total",
            &[("outcome", "internal_error")]
        ),
        Some(0.0)
    );
    match typed("surfaces_agent_turn_duration_seconds") {
        Some(prometheus_parse::Value::Histogram(buckets)) => {
            let all = buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map(|b| b.count);
            assert!(all.unwrap_or(0.0) >= 1.0, "{buckets:?}");
        }
        other => panic!("turn durations: {other:?}"),
    }
    for kind in ["room", "agent", "router", "provisioner", "sync"] {
        assert!(
            sample(
                &scrape,
                "surfaces_actors",
                &[("kind", kind), ("state", "running")]
            )
            .unwrap_or(0.0)
                >= 1.0,
            "{kind}"
        );
        assert!(
            sample(&scrape, "surfaces_mailbox_depth", &[("kind", kind)]).is_some(),
            "{kind}"
        );
    }
    let lag = sample(&scrape, "surfaces_sync_lag_seconds", &[]).expect("sync lag");
    assert!((0.0..90.0).contains(&lag), "{lag}");
    assert_eq!(sample(&scrape, "surfaces_ready", &[]), Some(1.0));
    assert!(sample(&scrape, "surfaces_journal_pending", &[]).is_some());
    assert!(sample(
        &scrape,
        "surfaces_agent_turns_in_flight",
        &[("agent", "ref")]
    )
    .is_some());
    for s in &scrape.samples {
        assert!(s.metric.starts_with("surfaces_"), "{}", s.metric);
        let labels = format!("{}", s.labels);
        assert!(
            !labels.contains('!') && !labels.contains("alice"),
            "no per-room or per-user labels: {} {labels}",
            s.metric
        );
    }
    let (code, content_type, open) = ops
        .get_with(
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0"),
        )
        .await?;
    assert_eq!(code, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(open.ends_with("# EOF\n"));

    // Status as JSON.
    let status = ops.status().await?;
    let room = room_entry(&status, &ob.chat).expect("alice's room in /status");
    assert_eq!(room["actor_id"], format!("room:{}", ob.chat));
    assert_eq!(room["owner"], alice.user_id().as_str());
    assert_eq!(room["agent"], "ref");
    assert_eq!(room["name"], surfaces::texts::chat_room_name(1));
    assert_eq!(room["state"], "running");
    assert_eq!(room["restarts"], 0);
    assert_eq!(room["mailbox_depth"], 0);
    assert!(room["handled"].as_u64().unwrap_or(0) >= 1, "{room}");
    assert!(room["last_error"].is_null());
    assert!(room["last_activity_ms"].as_u64().is_some());
    let agent = &status["agents"][0];
    assert_eq!(agent["id"], "ref");
    assert_eq!(agent["state"], "running");
    assert_eq!(agent["in_flight"], 0);
    assert!(agent["last_error"].is_null());
    assert_eq!(status["sync"]["state"], "running");
    assert_eq!(status["sync"]["recent"], true);
    assert_eq!(status["readiness"]["ready"], true);
    assert_eq!(status["reconciliation"]["done"], true);
    assert_eq!(status["reconciliation"]["conflicts"], json!([]));
    let others: Vec<&str> = status["actors"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["id"].as_str()).collect())
        .unwrap_or_default();
    for id in ["router", "provisioner", "sync"] {
        assert!(others.contains(&id), "{others:?}");
    }
    // Negotiated: browsers get the page, other clients JSON.
    let (_, html_type, page) = ops.get_with("/status", Some("text/html,*/*;q=0.8")).await?;
    assert!(html_type.starts_with("text/html"), "{html_type}");
    assert!(page.contains(ob.chat.as_str()));
    let (_, json_type, _) = ops.get_with("/status", None).await?;
    assert!(json_type.starts_with("application/json"), "{json_type}");

    // The commands: `status` (a table) and `health-check`, by URL and from the config.
    let dir = stack.data.path();
    let url = ops.base.as_str();
    let (code, table, err) = surfaces(dir, &["status", "--url", url], &[]).await?;
    assert_eq!(code, 0, "{err}");
    // The chat is active (it was just used; rooms idle 300 s before passivation).
    assert!(
        table.contains("ROOMS (1 active, 0 idle, 0 failed; 0 idle listed)"),
        "{table}"
    );
    assert!(table.contains(ob.chat.as_str()), "{table}");
    assert!(table.contains("AGENTS (1)"), "{table}");
    let (code, out, err) = surfaces(dir, &["health-check", "--url", url], &[]).await?;
    assert_eq!(code, 0, "{out}{err}");
    let config = stack.bot.config_path().to_string_lossy().into_owned();
    let as_the_bot = bot_env(&stack);
    let as_the_bot: Vec<(&str, &str)> = as_the_bot
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (code, out, err) =
        surfaces(dir, &["--config", &config, "health-check"], &as_the_bot).await?;
    assert_eq!(code, 0, "{out}{err}");
    let (code, table, err) = surfaces(dir, &["status", "--config", &config], &as_the_bot).await?;
    assert_eq!(code, 0, "{err}");
    assert!(table.contains(ob.chat.as_str()), "{table}");
    let closed = format!("http://127.0.0.1:{}", free_port()?);
    let (code, _, err) = surfaces(dir, &["health-check", "--url", &closed], &[]).await?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot reach"), "{err}");

    // Fault drills need the token.
    let denied = ops
        .http
        .post(format!("{}/faults", ops.base))
        .json(&json!({"target": "router", "fault": {"type": "stop"}}))
        .send()
        .await?;
    assert_eq!(denied.status().as_u16(), 401);
    let wrong = ops
        .http
        .get(format!("{}/faults", ops.base))
        .bearer_auth("not-the-token")
        .send()
        .await?;
    assert_eq!(wrong.status().as_u16(), 401);
    Ok(())
}

/// Virtual room actors on the real adapter (issue 17 item 3): with a one-second idle period,
/// a Matrix room's actor is passivated and `/status` shows the room idle; the person's next
/// message wakes it, and each message is answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_matrix_room_is_passivated_and_its_next_message_wakes_it() -> anyhow::Result<()> {
    let stack = stack_with(&[("SURFACES__SUPERVISION__ROOM_IDLE_SECS", "1")]).await?;
    let ops = Ops::of(&stack)?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;

    let before = alice.send_text(&ob.chat, "before the nap").await?;
    let reply = answer_to(&stack, &alice, &ob.chat, &before, None).await?;
    assert!(reply.body.contains("before the nap"), "{}", reply.body);
    ops.wait_for_status("alice's room passivated", |s| {
        room_entry(s, &ob.chat).is_some_and(|r| r["state"] == "idle")
    })
    .await?;

    let after = alice.send_text(&ob.chat, "after the nap").await?;
    let reply = answer_to(&stack, &alice, &ob.chat, &after, None).await?;
    assert!(reply.body.contains("after the nap"), "{}", reply.body);

    let bot = stack.bot_id();
    let replies_to = |event: &matrix_sdk::ruma::EventId,
                      messages: &[crate::support::ReceivedMessage]| {
        messages
            .iter()
            .filter(|m| {
                m.sender == bot && m.replaces.is_none() && m.in_reply_to.as_deref() == Some(event)
            })
            .count()
    };
    let messages = alice.messages(&ob.chat).await;
    assert_eq!(replies_to(&before, &messages), 1, "{messages:#?}");
    assert_eq!(replies_to(&after, &messages), 1, "{messages:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_room_restarts_and_the_other_rooms_keep_answering() -> anyhow::Result<()> {
    let stack = stack_with(&[]).await?;
    let ops = Ops::of(&stack)?;
    let alice = stack.person("alice").await?;
    let bob = stack.person("bob").await?;
    let a = onboard(&stack, &alice).await?;
    let b = onboard(&stack, &bob).await?;

    let target = format!("room:{}", a.chat);
    let drill = ops
        .inject(
            &target,
            json!({"type": "panic", "nth": 1, "message_type": "UserMessage"}),
        )
        .await?;
    let listed: Value = ops
        .http
        .get(format!("{}/faults", ops.base))
        .bearer_auth(FAULT_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(listed[0]["target"], target.as_str(), "{listed}");

    alice.send_text(&a.chat, "this one breaks the room").await?;
    let status = ops
        .wait_for_status("alice's room restarted and runs again", |s| {
            room_entry(s, &a.chat).is_some_and(|r| {
                r["restarts"].as_u64().unwrap_or(0) >= 1 && r["state"] == "running"
            })
        })
        .await?;
    let broken = room_entry(&status, &a.chat).expect("alice's room");
    let error = broken["last_error"].as_str().unwrap_or_default();
    assert!(error.starts_with("panic: injected fault"), "{broken}");
    assert!(broken["last_error_at_ms"].as_u64().is_some());
    let other = room_entry(&status, &b.chat).expect("bob's room");
    assert_eq!(other["restarts"], 0);
    assert_eq!(other["state"], "running");

    // The other room answers; the broken one answers again after its restart.
    let reply = ask(&stack, &bob, &b.chat, "still answering?").await?;
    assert!(reply.body.contains("still answering?"), "{}", reply.body);
    let reply = ask(&stack, &alice, &a.chat, "back?").await?;
    assert!(reply.body.contains("back?"), "{}", reply.body);

    let scrape = ops.metrics().await?;
    assert!(
        sample(
            &scrape,
            "surfaces_actor_restarts_total",
            &[("kind", "room"), ("reason", "panic")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(
        ops.get("/readyz").await?.0,
        200,
        "one room's panic leaves the bot ready"
    );

    let delete = |id: u64| {
        ops.http
            .delete(format!("{}/faults/{id}", ops.base))
            .bearer_auth(FAULT_TOKEN)
            .send()
    };
    assert_eq!(delete(drill).await?.status().as_u16(), 204);
    assert_eq!(delete(drill).await?.status().as_u16(), 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_a_headless_browser_shows_rooms_and_a_failed_room() -> anyhow::Result<()> {
    let stack = stack_with(&FAST_GIVE_UP).await?;
    let ops = Ops::of(&stack)?;
    let alice = stack.person("alice").await?;
    let bob = stack.person("bob").await?;
    let a = onboard(&stack, &alice).await?;
    let b = onboard(&stack, &bob).await?;

    // Alice's room panics, then cannot start again: past its restart intensity, failed.
    let target = format!("room:{}", a.chat);
    ops.inject(&target, json!({"type": "fail_start", "times": 1000}))
        .await?;
    ops.inject(
        &target,
        json!({"type": "panic", "message_type": "UserMessage"}),
    )
    .await?;
    alice
        .send_text(&a.chat, "this one breaks the room for good")
        .await?;
    let status = ops
        .wait_for_status("alice's room failed", |s| {
            room_entry(s, &a.chat).is_some_and(|r| r["state"] == "failed")
        })
        .await?;
    assert_eq!(
        status["rooms"][0]["room_id"],
        a.chat.as_str(),
        "failing first"
    );
    assert_eq!(
        room_entry(&status, &b.chat).map(|r| r["state"].clone()),
        Some(json!("running"))
    );
    assert_eq!(
        ops.get("/readyz").await?.0,
        200,
        "a failed room leaves the bot ready"
    );
    let scrape = ops.metrics().await?;
    assert_eq!(
        sample(
            &scrape,
            "surfaces_actors",
            &[("kind", "room"), ("state", "failed")]
        ),
        Some(1.0)
    );
    assert!(
        sample(&scrape, "surfaces_actor_gave_up_total", &[("kind", "room")]).unwrap_or(0.0) >= 1.0
    );
    let (code, table, err) =
        surfaces(stack.data.path(), &["status", "--url", &ops.base], &[]).await?;
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("ROOMS (2 active, 0 idle, 1 failed; 0 idle listed)"),
        "{table}"
    );
    // Bob's room answers: the trends have replies, their latency and the agent's turns.
    for n in 0..3 {
        ask(&stack, &bob, &b.chat, &format!("trend point {n}")).await?;
    }
    ops.wait_for_status("the trends have bob's replies", |s| {
        s["trends"]["replied"]
            .as_array()
            .is_some_and(|points| points.iter().filter_map(Value::as_u64).sum::<u64>() >= 3)
    })
    .await?;

    // The page, as a browser renders it.
    let shots = TempDir::new()?;
    let (dom, screenshot) = chromium(&format!("{}/status.html", ops.base), shots.path()).await?;
    let failed_row = format!("data-state=\"failed\" data-actor-id=\"room:{}\"", a.chat);
    let running_row = format!("data-state=\"running\" data-actor-id=\"room:{}\"", b.chat);
    let failed_at = dom.find(&failed_row);
    let running_at = dom.find(&running_row);
    assert!(
        failed_at.is_some(),
        "no failed row for alice's room in:\n{dom}"
    );
    assert!(running_at.is_some(), "no row for bob's room in:\n{dom}");
    assert!(failed_at < running_at, "failing rooms come first");
    assert!(dom.contains("injected fault"), "the last error is shown");
    assert!(dom.contains("Surfaces status"));
    // The page's own script ran under its CSP (no 'unsafe-inline'): it marks the page, and
    // the refresh it schedules is in place; a CSP that blocked it fails here.
    let (_, _, page) = ops.get_with("/status.html", None).await?;
    assert!(
        !page.contains("data-script="),
        "the mark comes from the script alone"
    );
    assert!(
        dom.contains("data-script=\"ran\""),
        "the status page's script did not run (blocked by the CSP?):\n{dom}"
    );
    let csp = ops
        .http
        .get(format!("{}/status.html", ops.base))
        .send()
        .await?
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    // The trends: four charts, each drawn with what happened.
    // (chart, what it must draw)
    let drawn = [
        ("messages", "<rect class=\"bar series-replied\""),
        ("latency", "series-p50"),
        ("turns", "series-agent-0"),
        ("restarts", "<rect class=\"bar series-restarts\""),
    ];
    for (key, mark) in drawn {
        let svg = chart_svg(&dom, key);
        assert!(
            svg.is_some_and(|svg| svg.contains(mark) && !svg.contains("no data yet")),
            "the {key} chart does not draw {mark}: {svg:?}"
        );
    }
    let png = std::fs::read(&screenshot)?;
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if let Ok(keep) = std::env::var("SURFACES_KEEP_SCREENSHOT") {
        std::fs::copy(&screenshot, keep)?;
    }
    // The screenshot shows them: the replied bars' and the restart bars' colours are there.
    for (what, rgb) in [("replied", REPLIED_RGB), ("restarts", RESTARTS_RGB)] {
        let seen = pixels_near(&png, rgb)?;
        assert!(
            seen >= MIN_CHART_PIXELS,
            "{seen} pixels of the {what} colour in the screenshot"
        );
    }
    Ok(())
}

/// The ops endpoint's bearer token in the access tests.
const OPS_TOKEN: &str = "ops-token-for-the-access-tests";
/// The paths `ops.token` guards.
const GUARDED: [&str; 4] = ["/status", "/status.json", "/status.html", "/metrics"];
/// How much later than the server's own limit a closed connection may be noticed.
const CLOSE_MARGIN: Duration = Duration::from_secs(10);

/// One HTTP/1.1 request written by hand (any `Host`, any header) on a fresh connection;
/// (status code, the whole answer).
async fn raw_request(
    addr: std::net::SocketAddr,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP answer: {answer:?}"))?;
    Ok((code, answer))
}

/// Waits until the server closes `stream` (EOF or reset); how long that took. Fails after
/// `limit`.
async fn closed_within(
    stream: &mut tokio::net::TcpStream,
    limit: Duration,
) -> anyhow::Result<Duration> {
    use tokio::io::AsyncReadExt;
    let start = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), stream.read(&mut buf))
            .await
        {
            Err(_) => anyhow::bail!("the connection is still open after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(start.elapsed()),
            // An error answer (408) before the close is fine; keep reading to the close.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_endpoint_token_host_allowlist_timeouts_and_csp() -> anyhow::Result<()> {
    use surfaces::ops::server::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS};
    use tokio::io::AsyncWriteExt;

    let stack = stack_with(&[("SURFACES__OPS__TOKEN", OPS_TOKEN)]).await?;
    let ops = Ops::of(&stack)?;
    let addr = stack.bot.ops_addr;
    let bearer = format!("Bearer {OPS_TOKEN}");
    let local = addr.to_string();

    // The token: none or a wrong one → 401 with a Bearer challenge; the right one → 200.
    for path in GUARDED {
        for auth in [None, Some("Bearer not-the-token"), Some(OPS_TOKEN)] {
            let mut request = ops.http.get(format!("{}{path}", ops.base));
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let response = request.send().await?;
            assert_eq!(response.status().as_u16(), 401, "{path} with {auth:?}");
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert!(challenge.starts_with("Bearer"), "{path}: {challenge:?}");
            let body = response.text().await?;
            assert!(!body.contains(OPS_TOKEN), "{path}: {body}");
        }
        let response = ops
            .http
            .get(format!("{}{path}", ops.base))
            .bearer_auth(OPS_TOKEN)
            .send()
            .await?;
        assert_eq!(response.status().as_u16(), 200, "{path} with the token");
    }
    // Probes stay open.
    assert_eq!(ops.get("/livez").await?, (200, "ok\n".to_owned()));
    try_wait_until(WAIT, POLL, || async {
        let (code, body) = ops.get("/readyz").await?;
        anyhow::ensure!(code == 200 || code == 503, "/readyz: {code} {body}");
        Ok((code == 200).then_some(()))
    })
    .await?;
    assert!(
        !stack.bot.log_contains(OPS_TOKEN),
        "the token is never logged:\n{}",
        stack.bot.log_tail(40)
    );

    // The Host allowlist: a foreign name (DNS rebinding) is refused, even with the token;
    // loopback names are answered; the probes answer any Host.
    let auth = [("Authorization", bearer.as_str())];
    for path in ["/status.json", "/metrics", "/status.js", "/"] {
        let (code, answer) = raw_request(addr, path, "rebind.evil.example:9797", &auth).await?;
        assert_eq!(code, 421, "{path}: {answer}");
    }
    let (code, answer) = raw_request(addr, "/status.json", "", &auth).await?;
    assert!(code == 421 || code == 400, "no Host: {answer}");
    for host in [local.as_str(), "localhost", "[::1]:9797"] {
        let (code, answer) = raw_request(addr, "/status.json", host, &auth).await?;
        assert_eq!(code, 200, "{host}: {answer}");
    }
    let (code, answer) = raw_request(addr, "/livez", "rebind.evil.example", &[]).await?;
    assert_eq!(code, 200, "probes answer any Host: {answer}");
    assert!(
        stack.bot.log_contains("rebind.evil.example"),
        "refusals are logged"
    );

    // The page under a strict CSP, and the headers every answer carries.
    let page = ops
        .http
        .get(format!("{}/status.html", ops.base))
        .bearer_auth(OPS_TOKEN)
        .send()
        .await?;
    let header = |name: &str| {
        page.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let csp = header("content-security-policy");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    for needed in [
        "script-src 'self'",
        "frame-ancestors 'none'",
        "default-src 'none'",
    ] {
        assert!(csp.contains(needed), "{needed} in {csp}");
    }
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "no-referrer");
    let html = page.text().await?;
    assert!(html.contains("<script src=\"status.js\">"), "{html}");
    assert!(!html.contains("<script>"), "no inline script");
    for (path, kind) in [
        ("/status.js", "text/javascript"),
        ("/status.css", "text/css"),
    ] {
        let (code, content_type, body) = ops.get_with(path, None).await?;
        assert_eq!(code, 200, "{path}");
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert!(!body.is_empty());
    }
    let denied = ops.http.get(format!("{}/metrics", ops.base)).send().await?;
    assert_eq!(
        denied
            .headers()
            .get("x-content-type-options")
            .map(|v| v.as_bytes()),
        Some(&b"nosniff"[..]),
        "on refusals too"
    );

    // Slowloris: a connection that sends nothing, and one that stops mid-head, are closed
    // after the header timeout; other requests are answered meanwhile.
    let mut silent = tokio::net::TcpStream::connect(addr).await?;
    let mut partial = tokio::net::TcpStream::connect(addr).await?;
    partial
        .write_all(b"GET /status.json HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await?;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let (code, _) = raw_request(addr, "/status.json", &local, &auth).await?;
        assert_eq!(code, 200);
        assert!(started.elapsed() < HEADER_READ_TIMEOUT, "served meanwhile");
    }
    let limit = HEADER_READ_TIMEOUT + CLOSE_MARGIN;
    let took = closed_within(&mut silent, limit).await?;
    assert!(
        took >= HEADER_READ_TIMEOUT / 2,
        "closed after the timeout, not at once: {took:?}"
    );
    closed_within(&mut partial, limit).await?;

    // A bounded number of connections: with every slot held by an idle client, the next
    // request waits for a slot (freed by the header timeout) instead of being served at once.
    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        idle.push(tokio::net::TcpStream::connect(addr).await?);
    }
    let started = std::time::Instant::now();
    let (code, _) = raw_request(addr, "/livez", &local, &[]).await?;
    assert_eq!(code, 200, "answered once a slot is free");
    let waited = started.elapsed();
    assert!(
        waited >= HEADER_READ_TIMEOUT / 2,
        "the {}th connection waited for a slot: {waited:?}",
        MAX_CONNECTIONS + 1
    );
    drop(idle);

    // `surfaces status` sends the token: from the env with --url, from the config.
    let dir = stack.data.path();
    let url = ops.base.as_str();
    let (code, _, err) = surfaces(dir, &["status", "--url", url], &[]).await?;
    assert_eq!(code, 1, "no token: {err}");
    assert!(err.contains("401"), "{err}");
    assert!(!err.contains(OPS_TOKEN), "{err}");
    let (code, table, err) = surfaces(
        dir,
        &["status", "--url", url],
        &[("SURFACES__OPS__TOKEN", OPS_TOKEN)],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("AGENTS (1)"), "{table}");
    let config = stack.bot.config_path().to_string_lossy().into_owned();
    let mut as_the_bot = bot_env(&stack);
    as_the_bot.push(("SURFACES__OPS__TOKEN".into(), OPS_TOKEN.into()));
    let as_the_bot: Vec<(&str, &str)> = as_the_bot
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (code, table, err) = surfaces(dir, &["--config", &config, "status"], &as_the_bot).await?;
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("AGENTS (1)"), "{table}");
    let (code, out, err) = surfaces(dir, &["health-check", "--url", url], &[]).await?;
    assert_eq!(code, 0, "/readyz needs no token: {out}{err}");
    Ok(())
}

/// The environment `surfaces` needs to run as the stack's bot (its account and ops address).
fn bot_env(stack: &Stack) -> Vec<(String, String)> {
    [
        (
            "SURFACES__MATRIX__HOMESERVER_URL",
            stack.synapse.base_url.clone(),
        ),
        (
            "SURFACES__MATRIX__USER_ID",
            stack.bot_creds.user_id.to_string(),
        ),
        (
            "SURFACES__MATRIX__PASSWORD",
            stack.bot_creds.password.clone(),
        ),
        ("SURFACES__OPS__BIND", stack.bot.ops_addr.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Parses a systemd unit into (section, key, value) triples.
fn unit_entries(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, value)) = line.split_once('=') {
            out.push((
                section.clone(),
                key.trim().to_owned(),
                value.trim().to_owned(),
            ));
        } else {
            panic!("not a unit line: {line:?}");
        }
    }
    out
}

/// No Docker engine runs here: the compose files are checked as YAML (structure, health
/// checks, start order), the Dockerfile and the systemd unit as text.
#[test]
fn packaging_files_are_well_formed() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let yaml = |name: &str| -> anyhow::Result<serde_yaml::Value> {
        let text = std::fs::read_to_string(root.join("ops").join(name))?;
        Ok(serde_yaml::from_str(&text)?)
    };
    let healthcheck_runs = |service: &serde_yaml::Value, needle: &str| {
        let test = &service["healthcheck"]["test"];
        let text = match test {
            serde_yaml::Value::Sequence(items) => items
                .iter()
                .filter_map(|i| i.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            other => other.as_str().unwrap_or_default().to_owned(),
        };
        text.contains(needle)
    };
    // Every named volume a service mounts is declared; every dependency exists, and one
    // waited for as healthy has a health check.
    let consistent = |file: &str, doc: &serde_yaml::Value| {
        let services = doc["services"].as_mapping().expect("services");
        let volumes = doc["volumes"].as_mapping().cloned().unwrap_or_default();
        for (name, service) in services {
            let name = name.as_str().unwrap_or_default();
            for mount in service["volumes"].as_sequence().into_iter().flatten() {
                let source = mount
                    .as_str()
                    .unwrap_or_default()
                    .split(':')
                    .next()
                    .unwrap_or_default();
                if !source.starts_with('.') && !source.starts_with('/') && !source.starts_with('$')
                {
                    assert!(
                        volumes.contains_key(source),
                        "{file}: {name} mounts undeclared volume {source}"
                    );
                }
            }
            for (dep, how) in service["depends_on"].as_mapping().into_iter().flatten() {
                let target = &doc["services"][dep.as_str().unwrap_or_default()];
                assert!(
                    !target.is_null(),
                    "{file}: {name} depends on unknown {dep:?}"
                );
                if how["condition"] == "service_healthy" {
                    assert!(
                        !target["healthcheck"].is_null(),
                        "{file}: {dep:?} has no healthcheck"
                    );
                }
            }
        }
    };

    let prod = yaml("docker-compose.prod.yml")?;
    consistent("prod", &prod);
    let services = prod["services"].as_mapping().expect("services");
    assert_eq!(services.len(), 1, "the bot alone");
    let bot = &prod["services"]["surfaces"];
    assert!(healthcheck_runs(bot, "health-check"));
    let mounts: Vec<&str> = bot["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(mounts.iter().any(|m| m.ends_with(":/agents")), "{mounts:?}");
    assert!(
        mounts
            .iter()
            .any(|m| m.contains(":/etc/surfaces/surfaces.toml")),
        "{mounts:?}"
    );
    assert_eq!(prod["volumes"]["agents"]["external"], true);

    let full = yaml("docker-compose.fullstack.yml")?;
    consistent("fullstack", &full);
    for name in ["synapse", "agent", "surfaces"] {
        let service = &full["services"][name];
        assert!(!service.is_null(), "fullstack has {name}");
        assert!(
            !service["healthcheck"]["test"].is_null(),
            "{name} has a healthcheck"
        );
    }
    assert!(healthcheck_runs(
        &full["services"]["surfaces"],
        "health-check"
    ));
    let waits = &full["services"]["surfaces"]["depends_on"];
    assert_eq!(waits["synapse"]["condition"], "service_healthy");
    assert_eq!(waits["agent"]["condition"], "service_healthy");
    assert_eq!(
        waits["register-bot"]["condition"],
        "service_completed_successfully"
    );
    assert_eq!(
        full["services"]["register-bot"]["depends_on"]["synapse"]["condition"],
        "service_healthy"
    );
    for name in ["agent", "surfaces"] {
        let mounts = full["services"][name]["volumes"]
            .as_sequence()
            .expect("volumes");
        assert!(
            mounts.iter().any(|m| m.as_str() == Some("agents:/agents")),
            "{name}"
        );
    }

    // The ops port is published on the host's loopback only; production requires a token.
    for (file, doc) in [("prod", &prod), ("fullstack", &full)] {
        let ports = doc["services"]["surfaces"]["ports"]
            .as_sequence()
            .expect("surfaces publishes the ops port");
        for port in ports {
            let port = port.as_str().unwrap_or_default();
            assert!(port.starts_with("127.0.0.1:"), "{file}: {port}");
        }
        assert!(
            !doc["services"]["surfaces"]["environment"]["SURFACES__OPS__TOKEN"].is_null(),
            "{file} passes ops.token"
        );
    }
    let token = prod["services"]["surfaces"]["environment"]["SURFACES__OPS__TOKEN"]
        .as_str()
        .unwrap_or_default();
    assert!(
        token.contains(":?"),
        "prod refuses to start without a token: {token}"
    );

    // Instructions, with their continuation lines joined.
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile"))?.replace("\\\n", " ");
    let healthcheck = dockerfile
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK"))
        .expect("the Dockerfile has a HEALTHCHECK");
    assert!(healthcheck.contains("health-check"), "{healthcheck}");
    assert!(
        dockerfile.contains("ops.token") && dockerfile.contains("127.0.0.1"),
        "the Dockerfile says where to publish the ops port and to set a token"
    );

    let unit = unit_entries(&std::fs::read_to_string(root.join("ops/surfaces.service"))?);
    let get = |section: &str, key: &str| {
        unit.iter()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
    };
    let exec = get("Service", "ExecStart").expect("ExecStart");
    assert!(
        exec.starts_with("/usr/local/bin/surfaces ") && exec.ends_with(" run"),
        "{exec}"
    );
    let stop = get("Service", "TimeoutStopSec").expect("TimeoutStopSec");
    let stop: u64 = stop.trim_end_matches('s').parse()?;
    assert!(
        stop > surfaces::config::DEFAULT_SHUTDOWN_GRACE_SECS,
        "the unit waits longer than the bot's grace period"
    );
    assert_eq!(get("Service", "KillSignal"), Some("SIGTERM"));
    assert_eq!(get("Install", "WantedBy"), Some("multi-user.target"));
    assert!(get("Unit", "Description").is_some());
    Ok(())
}
