//! Bounded waiting, for tests that watch other processes: polling a condition until it holds
//! or a deadline passes ([`wait_until`], [`try_wait_until`]), and stopping a child process by
//! its pid within a grace period ([`terminate_child`], [`terminate_child_blocking`]). Also the
//! two small helpers every harness piece needs around those: a free loopback port and the
//! tail of a log file for error messages.
//!
//! It exists so that every wait of the harness has a deadline and says what it waited for,
//! and so that every child is stopped by its own pid (never by name).

use std::future::Future;
use std::time::Duration;

use anyhow::anyhow;

/// Default timeout for waits on Matrix round trips (sync, E2EE, joins).
pub const WAIT: Duration = Duration::from_secs(30);
/// Default polling interval.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `condition` every `interval` until it yields `Some(value)`, or fails
/// once `timeout` has elapsed. The condition is always evaluated at least
/// once, and once more at the deadline. Add context to the error with
/// `anyhow::Context` to say what was awaited.
pub async fn wait_until<T, F, Fut>(
    timeout: Duration,
    interval: Duration,
    condition: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let mut condition = condition;
    try_wait_until(timeout, interval, move || {
        let fut = condition();
        async move { Ok(fut.await) }
    })
    .await
}

/// Like [`wait_until`], for fallible conditions: an `Err` counts as "not yet"
/// (the condition is polled again) and the last one is reported on timeout.
pub async fn try_wait_until<T, F, Fut>(
    timeout: Duration,
    interval: Duration,
    mut condition: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let mut polls: u64 = 0;
    let mut last_error: Option<anyhow::Error> = None;
    loop {
        polls += 1;
        match condition().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            let mut message = format!(
                "condition not met within {timeout:?} ({polls} polls every {interval:?}, waited {:?})",
                now - started
            );
            if let Some(error) = last_error {
                message.push_str(&format!("; last error: {error:#}"));
            }
            return Err(anyhow!(message));
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
    }
}

/// A free TCP port on 127.0.0.1 (bound, read, released). Another process can
/// take it before it is used: callers that can detect a bind failure retry.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The last `max_lines` lines of a file, for error messages ("" if unreadable).
pub fn file_tail(path: &std::path::Path, max_lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(max_lines);
            lines[start..].join("\n")
        }
        Err(error) => format!("<cannot read {}: {error}>", path.display()),
    }
}

/// Sends SIGTERM to `pid`, through kill(1) (the crate has no libc binding).
pub fn sigterm(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-s", "TERM", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Stops a child we own, by its pid: SIGTERM, then poll for its exit up to
/// `grace`, then SIGKILL. Blocking (for `Drop`); reaps the child.
pub fn terminate_child_blocking(
    child: &mut std::process::Child,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    sigterm(child.id());
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().ok()
}

/// Async flavour of [`terminate_child_blocking`], for use inside tests.
pub async fn terminate_child(
    child: &mut std::process::Child,
    grace: Duration,
) -> anyhow::Result<std::process::ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    sigterm(child.id());
    let waited = try_wait_until(grace, Duration::from_millis(20), || {
        let status = child.try_wait();
        async move { Ok(status?) }
    })
    .await;
    match waited {
        Ok(status) => Ok(status),
        Err(_) => {
            child.kill()?;
            Ok(child.wait()?)
        }
    }
}

/// Waits until `url` answers 2xx, failing early when `child` (the server behind it, named
/// `what`, logging to `log`) exits, or after `timeout`; the error carries the log's end.
pub async fn until_http_ok(
    child: &mut std::process::Child,
    url: &str,
    timeout: std::time::Duration,
    what: &str,
    log: &std::path::Path,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "{what} exited before it was ready ({status}): {}",
                file_tail(log, 30)
            );
        }
        let ready = http
            .get(url)
            .timeout(std::time::Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(());
        }
        if started.elapsed() > timeout {
            anyhow::bail!(
                "{what} did not answer within {timeout:?}: {}",
                file_tail(log, 30)
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
