//! Start-up reconciliation on a real homeserver: how long the bot takes to rebuild its store
//! from N rooms' state, from nothing (fresh data dir: new login, full first sync) and with
//! an intact store (the fast path: nothing known is walked again). Prints figures.
//!
//! `cargo run --release --example bench_reconcile -- HOMESERVER BOT_USER BOT_PASSWORD N SURFACES_BIN WORK_DIR`

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// Rooms created at once.
const CREATE_CONCURRENCY: usize = 8;
/// How long to wait for the bot to start.
const START_TIMEOUT: Duration = Duration::from_secs(600);
/// How often to look at the bot's log.
const POLL: Duration = Duration::from_millis(20);

async fn login(
    http: &reqwest::Client,
    hs: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<String> {
    let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password});
    post_for(
        http,
        &format!("{hs}/_matrix/client/v3/login"),
        None,
        &body,
        "access_token",
    )
    .await
}

async fn create_room(
    http: &reqwest::Client,
    hs: &str,
    token: &str,
    body: Value,
) -> anyhow::Result<String> {
    post_for(
        http,
        &format!("{hs}/_matrix/client/v3/createRoom"),
        Some(token),
        &body,
        "room_id",
    )
    .await
}

/// POSTs `body` (with `token`, if any) and returns the string `field` of the JSON answer.
async fn post_for(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
    field: &str,
) -> anyhow::Result<String> {
    let mut request = http.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let v: Value = request.send().await?.error_for_status()?.json().await?;
    v[field]
        .as_str()
        .map(ToOwned::to_owned)
        .with_context(|| format!("no {field} in the answer of {url}"))
}

fn start_bot(
    bin: &Path,
    data: &Path,
    log: &Path,
    hs: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<Child> {
    let out = std::fs::File::create(log)?;
    Ok(Command::new(bin)
        .env("SURFACES__MATRIX__HOMESERVER_URL", hs)
        .env("SURFACES__MATRIX__USER_ID", user)
        .env("SURFACES__MATRIX__PASSWORD", password)
        .env("SURFACES__DATA_DIR", data)
        .env("SURFACES__OPS__BIND", "127.0.0.1:0")
        .env("SURFACES__LOG__FILTER", "info")
        .stdout(out.try_clone()?)
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()?)
}

/// Waits for "surfaces is running"; returns (seconds to running, the reconciliation line).
async fn wait_running(
    child: &mut Child,
    log: &Path,
    started: Instant,
) -> anyhow::Result<(f64, String)> {
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("surfaces is running") {
            let line = text
                .lines()
                .find(|l| l.contains("reconciliation done"))
                .unwrap_or("")
                .to_owned();
            return Ok((started.elapsed().as_secs_f64(), line));
        }
        if let Some(status) = child.try_wait()? {
            bail!("the bot exited ({status}):\n{text}");
        }
        if started.elapsed() > START_TIMEOUT {
            bail!("the bot did not start in time");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Removes terminal colour codes (the pretty log format has them).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn field(line: &str, key: &str) -> String {
    plain(line)
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or("?")
        .trim_matches('"')
        .to_owned()
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [hs, user, password, n, bin, work] = args.as_slice() else {
        bail!("usage: bench_reconcile HOMESERVER BOT_USER BOT_PASSWORD N SURFACES_BIN WORK_DIR");
    };
    let n: usize = n.parse().context("N")?;
    let bin = PathBuf::from(bin);
    let work = PathBuf::from(work);
    let http = reqwest::Client::new();
    let token = login(&http, hs, user, password).await?;
    let owner = "@bench-owner:localhost";

    let t = Instant::now();
    let space = create_room(&http, hs, &token, json!({
        "preset": "private_chat", "name": "bench space",
        "creation_content": {"type": "m.space"},
        "initial_state": [{"type": "org.surfaces.space", "state_key": "", "content": {"owner": owner}}]
    })).await?;
    let mut created = 0usize;
    let mut next = 0usize;
    let mut tasks = tokio::task::JoinSet::new();
    while created < n {
        while tasks.len() < CREATE_CONCURRENCY && next < n {
            next += 1;
            let (http, hs, token, space) = (http.clone(), hs.clone(), token.clone(), space.clone());
            let index = next;
            tasks.spawn(async move {
                create_room(&http, &hs, &token, json!({
                    "preset": "private_chat", "name": format!("room {index}"),
                    "initial_state": [
                        {"type": "org.surfaces.room", "state_key": "", "content": {
                            "agent_id": "echo", "platform_chat_id": format!("sfc-{index}"),
                            "owner": owner, "chat_index": index, "archived": false}},
                        {"type": "m.space.parent", "state_key": space, "content": {"via": ["localhost"], "canonical": true}}
                    ]
                })).await
            });
        }
        if let Some(done) = tasks.join_next().await {
            done??;
            created += 1;
        }
    }
    println!(
        "created {n} bound rooms in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let data = work.join("bot-data");
    let _ = std::fs::remove_dir_all(&data);
    let log1 = work.join("reconcile-fresh.log");
    let started = Instant::now();
    let mut bot = start_bot(&bin, &data, &log1, hs, user, password)?;
    let (secs, line) = wait_running(&mut bot, &log1, started).await?;
    stop(&mut bot);
    println!(
        "fresh data dir: running after {secs:.2} s (login + first sync + reconciliation); reconciliation {} ms, joined {}, walked {}, rooms written {}",
        field(&line, "elapsed_ms"), field(&line, "joined"), field(&line, "walked"), field(&line, "rooms_written")
    );

    let log2 = work.join("reconcile-intact.log");
    let started = Instant::now();
    let mut bot = start_bot(&bin, &data, &log2, hs, user, password)?;
    let (secs, line) = wait_running(&mut bot, &log2, started).await?;
    stop(&mut bot);
    println!(
        "intact store: running after {secs:.2} s; reconciliation {} ms, joined {}, walked {}, rooms written {}",
        field(&line, "elapsed_ms"), field(&line, "joined"), field(&line, "walked"), field(&line, "rooms_written")
    );

    let _ = std::fs::remove_dir_all(data.join("store"));
    let log3 = work.join("reconcile-no-store.log");
    let started = Instant::now();
    let mut bot = start_bot(&bin, &data, &log3, hs, user, password)?;
    let (secs, line) = wait_running(&mut bot, &log3, started).await?;
    stop(&mut bot);
    println!(
        "store deleted, Matrix session kept: running after {secs:.2} s; reconciliation {} ms, walked {}, rooms written {}",
        field(&line, "elapsed_ms"), field(&line, "walked"), field(&line, "rooms_written")
    );
    Ok(())
}
