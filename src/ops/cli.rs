//! `surfaces status` and `surfaces health-check`: clients of a running bot's ops endpoint.
//!
//! Why this file exists: an operator on the host (or a container health check) asks the
//! running process rather than reading its files. Both commands find the endpoint at the
//! configured `ops.bind` (an unspecified address such as `0.0.0.0` is reached through
//! loopback) or at `--url`. `status` prints `/status.json` as tables, sending the
//! bearer token `ops.token` (from the config, or with `--url` and no `--config` from the
//! env var [`TOKEN_ENV`]); `health-check` exits 0 when `/readyz` (open, no token) answers
//! 200 and 1 otherwise, printing why.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::html::{ago, unix_ms_text};
use super::status::Status;
use super::{READYZ_PATH, STATUS_JSON_PATH};
use crate::config::{Config, Secret};

/// The env var that sets `ops.token` (read by `status --url` when no `--config` is given).
pub const TOKEN_ENV: &str = "SURFACES__OPS__TOKEN";

/// How long either command waits for the bot (below Docker's default health-check timeout).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest cell printed in a table; longer text (errors) is cut with an ellipsis.
pub const MAX_CELL_CHARS: usize = 60;
/// Exit code of `status` when the bot cannot be asked.
pub(super) const EXIT_UNREACHABLE: u8 = 1;
/// Exit code of `status` on a configuration error (as the bot itself).
pub(super) const EXIT_CONFIG: u8 = 2;
/// Shown for a missing value.
pub(super) const NONE: &str = "-";

/// Why the running bot could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `ops.bind` has port 0: the real port is only in the bot's log.
    #[error("ops.bind is {0}: its port is picked at start-up (see the bot's log); pass --url")]
    UnknownPort(SocketAddr),
    /// No answer.
    #[error("cannot reach {url}: {source}")]
    Request {
        /// The URL asked.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// An answer other than 200.
    #[error("{url} answered {status}: {body}")]
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The answer's text.
        body: String,
    },
    /// A 200 answer that is not a status document.
    #[error("{url} answered something that is not a status document: {message}")]
    Decode {
        /// The URL asked.
        url: String,
        /// The parser's message.
        message: String,
    },
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The base URL of the endpoint bound at `bind` (`http://127.0.0.1:9797`).
pub fn base_url(bind: SocketAddr) -> Result<String, CliError> {
    if bind.port() == 0 {
        return Err(CliError::UnknownPort(bind));
    }
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(format!("http://{}", SocketAddr::new(ip, bind.port())))
}

fn http() -> Result<reqwest::Client, CliError> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|source| CliError::Request {
            url: String::new(),
            source,
        })
}

pub(super) async fn get(
    base: &str,
    path: &str,
    token: Option<&Secret>,
) -> Result<(String, u16, String), CliError> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let request_error = |source| CliError::Request {
        url: url.clone(),
        source,
    };
    let mut request = http()?.get(&url);
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        request = request.bearer_auth(token.expose());
    }
    let response = request.send().await.map_err(request_error)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(request_error)?;
    Ok((url, status, body))
}

/// `GET /status.json` (with the bearer `token`, if any), decoded.
pub async fn fetch_status(base: &str, token: Option<&Secret>) -> Result<Status, CliError> {
    let (url, status, body) = get(base, STATUS_JSON_PATH, token).await?;
    if status != 200 {
        return Err(CliError::Status {
            url,
            status,
            body: body.trim().to_owned(),
        });
    }
    serde_json::from_str(&body).map_err(|e| CliError::Decode {
        url,
        message: e.to_string(),
    })
}

/// `GET /readyz?verbose`: the text when 200, else [`CliError::Status`].
pub async fn check_ready(base: &str) -> Result<String, CliError> {
    let (url, status, body) = get(base, &format!("{READYZ_PATH}?verbose"), None).await?;
    if status == 200 {
        Ok(body)
    } else {
        Err(CliError::Status {
            url,
            status,
            body: body.trim().to_owned(),
        })
    }
}

pub(super) fn block_on<T>(
    work: impl std::future::Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?
        .block_on(work)
}

/// The endpoint's base URL and token: `url` when given, else from the config's
/// `ops.bind`; the token from the config (`ops.token`), or, with `url` and no config
/// path, from [`TOKEN_ENV`].
pub(super) fn resolve_base(
    config: Option<&Path>,
    url: Option<&str>,
) -> Result<(String, Option<Secret>), String> {
    let load = |path| Config::load(path).map_err(|e| format!("configuration error:\n{e}"));
    match (url, config) {
        (Some(url), None) => Ok((
            url.to_owned(),
            std::env::var(TOKEN_ENV).ok().map(Secret::new),
        )),
        (Some(url), Some(path)) => Ok((url.to_owned(), load(Some(path))?.ops.token)),
        (None, path) => {
            let config = load(path)?;
            let base = base_url(config.ops.bind).map_err(|e| e.to_string())?;
            Ok((base, config.ops.token))
        }
    }
}

/// `surfaces status [--url URL]`: exit 0 with the tables; 1 when the bot cannot be
/// asked; 2 on a configuration error.
pub fn status_command(config: Option<&Path>, url: Option<&str>) -> ExitCode {
    match resolve_base(config, url) {
        Ok((base, token)) => run_status(&base, token.as_ref()),
        Err(error) => {
            eprintln!("surfaces status: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `surfaces health-check [--url URL]`: exit 0 when ready, 1 otherwise (a configuration
/// error included: a health check knows only healthy or not).
pub fn health_check_command(config: Option<&Path>, url: Option<&str>) -> ExitCode {
    // `/readyz` needs no token: with --url, the config is not read at all.
    let base = match url {
        Some(url) => Ok(url.to_owned()),
        None => resolve_base(config, None).map(|(base, _)| base),
    };
    match base {
        Ok(base) => run_health_check(&base),
        Err(error) => {
            eprintln!("surfaces health-check: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `surfaces status`: prints the tables; exit 0, or 1 when the bot cannot be asked.
pub fn run_status(base: &str, token: Option<&Secret>) -> ExitCode {
    match block_on(fetch_status(base, token)) {
        Ok(status) => {
            print!("{}", render_table(&status));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("surfaces status: {error}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

/// `surfaces health-check`: exit 0 when ready, 1 otherwise (with the reason).
pub fn run_health_check(base: &str) -> ExitCode {
    match block_on(check_ready(base)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("surfaces health-check: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Text safe for a terminal (no control characters: room names are user input), cut
/// to [`MAX_CELL_CHARS`].
pub(super) fn cell(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() > MAX_CELL_CHARS {
        let cut: String = clean.chars().take(MAX_CELL_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        clean
    }
}

pub(super) fn opt(value: Option<&str>) -> String {
    value.map(cell).unwrap_or_else(|| NONE.to_owned())
}

pub(super) fn when(now_ms: u64, at_ms: Option<u64>) -> String {
    at_ms
        .map(|at| ago(now_ms, at))
        .unwrap_or_else(|| "never".to_owned())
}

/// Aligned columns, a header line first.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, value) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(value.chars().count());
            }
        }
    }
    let line = |values: Vec<&str>| {
        let mut out = String::new();
        for (i, value) in values.iter().enumerate() {
            let pad = widths[i].saturating_sub(value.chars().count());
            if i + 1 == values.len() {
                out.push_str(value);
            } else {
                out.push_str(value);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The status document as text tables (failing first, as the document orders them).
pub fn render_table(status: &Status) -> String {
    let now = status.generated_at_ms;
    let mut out = format!(
        "surfaces {} — {} — {}\n",
        cell(&status.version),
        if status.readiness.ready {
            "ready"
        } else {
            "NOT READY"
        },
        unix_ms_text(now)
    );
    for check in &status.readiness.checks {
        let mark = if check.ok { '+' } else { '-' };
        out.push_str(&format!(
            "  [{mark}] {}: {}\n",
            cell(&check.name),
            cell(&check.detail)
        ));
    }

    let failed = status.rooms.iter().filter(|r| r.state == "failed").count();
    let counts = &status.room_counts;
    out.push_str(&format!(
        "\nROOMS ({} active, {} idle, {failed} failed; {} idle listed)\n",
        counts.active,
        counts
            .idle
            .map_or_else(|| "(unknown)".to_owned(), |n| n.to_string()),
        counts.idle_listed
    ));
    let rows: Vec<Vec<String>> = status
        .rooms
        .iter()
        .map(|r| {
            vec![
                cell(&r.state),
                r.restarts.to_string(),
                r.mailbox_depth.to_string(),
                cell(&r.room_id),
                opt(r.name.as_deref()),
                opt(r.owner.as_deref()),
                opt(r.agent.as_deref()),
                when(now, r.last_activity_ms),
                opt(r.last_error.as_deref()),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "STATE",
            "RESTARTS",
            "MAILBOX",
            "ROOM ID",
            "NAME",
            "OWNER",
            "AGENT",
            "ACTIVE",
            "LAST ERROR",
        ],
        &rows,
    ));

    out.push_str(&format!("\nAGENTS ({})\n", status.agents.len()));
    let rows: Vec<Vec<String>> = status
        .agents
        .iter()
        .map(|a| {
            vec![
                cell(&a.state),
                cell(&a.id),
                cell(&a.name),
                a.in_flight.to_string(),
                a.restarts.to_string(),
                opt(a.last_error.as_deref()),
                opt(a.last_failure.as_deref()),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "STATE",
            "ID",
            "NAME",
            "IN FLIGHT",
            "RESTARTS",
            "LAST TURN ERROR",
            "LAST FAILURE",
        ],
        &rows,
    ));

    let sync = &status.sync;
    out.push_str(&format!(
        "\nSYNC: {}, last success {}, {} failures in a row, {} syncs, {} restarts; \
         catch-up: {} gaps, {} back-filled, {} left out (too old), {} left out (too many), \
         {} unreadable gaps{}\n",
        cell(&sync.state),
        sync.last_success_secs_ago
            .map(|s| format!("{s:.1} s ago"))
            .unwrap_or_else(|| "never".to_owned()),
        sync.consecutive_failures,
        sync.successes,
        sync.restarts,
        sync.catch_up.gaps,
        sync.catch_up.backfilled,
        sync.catch_up.skipped_too_old,
        sync.catch_up.skipped_too_many,
        sync.catch_up.unreadable_gaps,
        sync.last_error
            .as_deref()
            .map(|e| format!(", last error: {}", cell(e)))
            .unwrap_or_default(),
    ));

    out.push_str(&format!("\nOTHER ACTORS ({})\n", status.actors.len()));
    let rows: Vec<Vec<String>> = status
        .actors
        .iter()
        .map(|a| {
            vec![
                cell(&a.state),
                cell(&a.id),
                a.restarts.to_string(),
                a.mailbox_depth.to_string(),
                opt(a.last_error.as_deref()),
            ]
        })
        .collect();
    out.push_str(&table(
        &["STATE", "ID", "RESTARTS", "MAILBOX", "LAST ERROR"],
        &rows,
    ));

    out.push_str(&format!(
        "\nRECONCILIATION: {}, {} conflicts\n",
        if status.reconciliation.done {
            "done"
        } else {
            "in progress"
        },
        status.reconciliation.conflicts.len()
    ));
    for conflict in &status.reconciliation.conflicts {
        out.push_str(&format!(
            "  {} {}: store had {}, Matrix has {} (kept)\n",
            cell(&conflict.subject),
            cell(&conflict.field),
            cell(&conflict.store),
            cell(&conflict.matrix)
        ));
    }
    for (label, rooms) in [
        ("REJECTED (not adopted)", &status.reconciliation.rejected),
        (
            "FAILED (could not be read or written back)",
            &status.reconciliation.failed,
        ),
    ] {
        if rooms.is_empty() {
            continue;
        }
        out.push_str(&format!("{label}: {}\n", rooms.len()));
        for room in rooms {
            out.push_str(&format!(
                "  {} {}\n",
                cell(&room.room_id),
                cell(&room.reason)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let url = |s: &str| base_url(s.parse().unwrap());
        assert_eq!(url("127.0.0.1:9797").unwrap(), "http://127.0.0.1:9797");
        assert_eq!(url("0.0.0.0:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(url("[::]:8080").unwrap(), "http://[::1]:8080");
        assert_eq!(url("10.1.2.3:80").unwrap(), "http://10.1.2.3:80");
        assert!(matches!(url("127.0.0.1:0"), Err(CliError::UnknownPort(_))));
    }

    #[test]
    fn cells_are_terminal_safe() {
        assert_eq!(cell("a\x1b[31mred\nb"), "a [31mred b");
        let long = "x".repeat(100);
        assert_eq!(cell(&long).chars().count(), MAX_CELL_CHARS);
        assert_eq!(
            table(&["A", "BB"], &[vec!["long".into(), "1".into()]]),
            "A     BB\nlong  1\n"
        );
    }
}
