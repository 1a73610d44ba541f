//! The operator's view of a running bot: an HTTP endpoint (config `ops.bind`) with health,
//! metrics and status, and the `surfaces status` / `surfaces health-check` commands.
//!
//! Why this module exists: the bot runs unattended in a container; orchestrators need
//! liveness and readiness, monitoring needs metrics, and a person on call needs one page
//! that says which room is broken and why. Everything here only reads the
//! [`RuntimeView`]; the fault drills (feature `fault-injection`) are the one exception.
//!
//! | path | answers |
//! |---|---|
//! | `/livez` | 200 `ok` while the root supervisor runs (the process answers), else 503 |
//! | `/readyz` | 200 `ready` / 503 `not ready: <checks>`; `?verbose` lists every check |
//! | `/metrics` | Prometheus text (OpenMetrics when asked for), see [`crate::metrics`] |
//! | `/status` | JSON ([`status::Status`]); HTML for browsers (`Accept: text/html`) |
//! | `/status.json`, `/status.html` | the same, without negotiation |
//! | `/faults` | fault drills, bearer token, `fault-injection` builds only (see `fault`) |
//!
//! The endpoint has no authentication of its own (the drills aside): it binds to loopback
//! by default; expose it only on a private network.

pub mod cli;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod html;
pub mod status;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use actors::SupervisorHandle;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::config::OpsConfig;
use crate::runtime::RuntimeView;

/// `Cache-Control` of every answer: health and status are never cached.
const NO_STORE: &str = "no-store";
/// Content type of the plain-text answers.
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// Content type of the status page.
const TEXT_HTML: &str = "text/html; charset=utf-8";
/// Paths of the endpoint (shared with the CLI).
pub const LIVEZ_PATH: &str = "/livez";
/// See [`LIVEZ_PATH`].
pub const READYZ_PATH: &str = "/readyz";
/// See [`LIVEZ_PATH`].
pub const METRICS_PATH: &str = "/metrics";
/// See [`LIVEZ_PATH`].
pub const STATUS_PATH: &str = "/status";
/// See [`LIVEZ_PATH`].
pub const STATUS_JSON_PATH: &str = "/status.json";
/// See [`LIVEZ_PATH`].
pub const STATUS_HTML_PATH: &str = "/status.html";

/// The ops endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The listen address is taken or not allowed.
    #[error("cannot listen on {addr} (config ops.bind, SURFACES__OPS__BIND): {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What the handlers read.
#[derive(Clone)]
struct Ops {
    view: RuntimeView,
    root: SupervisorHandle,
}

/// Binds `config.bind` and serves the endpoint in a spawned task; returns the bound
/// address (a port of 0 picks a free one). The address is logged as
/// `ops endpoint listening on <addr>`.
pub async fn spawn(
    config: &OpsConfig,
    view: RuntimeView,
    root: SupervisorHandle,
) -> Result<SocketAddr, OpsError> {
    let bind_error = |source| OpsError::Bind {
        addr: config.bind,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let app = router(config, view, root);
    tracing::info!(%addr, "ops endpoint listening on {addr}");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the ops endpoint stopped");
        }
    });
    Ok(addr)
}

/// The endpoint's routes.
fn router(config: &OpsConfig, view: RuntimeView, root: SupervisorHandle) -> Router {
    #[cfg(feature = "fault-injection")]
    let drills = fault::Drills::new(config.fault_token.clone(), view.registry.clone());
    #[cfg(not(feature = "fault-injection"))]
    if config.fault_token.is_some() {
        tracing::warn!(
            "ops.fault_token is set but this build has no fault injection \
             (cargo feature fault-injection): ignored"
        );
    }
    let app = Router::new()
        .route("/", get(|| async { Redirect::temporary(STATUS_PATH) }))
        .route(LIVEZ_PATH, get(livez))
        .route(READYZ_PATH, get(readyz))
        .route(METRICS_PATH, get(metrics_handler))
        .route(STATUS_PATH, get(status_negotiated))
        .route(STATUS_JSON_PATH, get(status_json))
        .route(STATUS_HTML_PATH, get(status_html))
        .with_state(Ops { view, root });
    #[cfg(feature = "fault-injection")]
    let app = app.merge(fault::routes(drills));
    app
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, TEXT_PLAIN),
            (header::CACHE_CONTROL, NO_STORE),
        ],
        body,
    )
        .into_response()
}

async fn livez(State(ops): State<Ops>) -> Response {
    if status::live(&ops.root) {
        text(StatusCode::OK, "ok\n".to_owned())
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the root supervisor has stopped\n".to_owned(),
        )
    }
}

/// Whether a raw query string has a `verbose` flag (`?verbose`, `?verbose=1`).
fn wants_verbose(query: Option<&str>) -> bool {
    query.unwrap_or_default().split('&').any(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        key == "verbose" && !matches!(value, "0" | "false" | "no")
    })
}

async fn readyz(State(ops): State<Ops>, RawQuery(query): RawQuery) -> Response {
    let readiness = status::readiness(&ops.view, &ops.root);
    let code = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(code, readiness.render(wants_verbose(query.as_deref())))
}

async fn metrics_handler(State(ops): State<Ops>, headers: HeaderMap) -> Response {
    let format = crate::metrics::Exposition::from_accept(
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
    );
    let view = &ops.view;
    let observed = crate::metrics::Observed {
        actors: view.registry.snapshot(),
        turns_in_flight: view
            .agents
            .iter()
            .map(|a| (a.id.clone(), a.stats.in_flight.load(Ordering::Relaxed)))
            .collect(),
        since_last_sync: view.sync.since_last_success(),
        sync_failures: view.sync.consecutive_failures(),
        ready: status::readiness(view, &ops.root).ready,
        journal_pending: view.journal.pending_count(),
        catch_up: view.sync.catch_up().snapshot(),
    };
    match view.metrics.encode(&observed, format) {
        Ok(body) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, format.content_type()),
                (header::CACHE_CONTROL, NO_STORE),
            ],
            body,
        )
            .into_response(),
        Err(error) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {error}\n"),
        ),
    }
}

fn json_response(ops: &Ops) -> Response {
    let mut response = Json(status::status(&ops.view, &ops.root)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
    response
}

fn html_response(ops: &Ops) -> Response {
    let page = html::render(&status::status(&ops.view, &ops.root));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, TEXT_HTML),
            (header::CACHE_CONTROL, NO_STORE),
            (
                header::CONTENT_SECURITY_POLICY,
                html::CONTENT_SECURITY_POLICY,
            ),
        ],
        page,
    )
        .into_response()
}

async fn status_json(State(ops): State<Ops>) -> Response {
    json_response(&ops)
}

async fn status_html(State(ops): State<Ops>) -> Response {
    html_response(&ops)
}

async fn status_negotiated(State(ops): State<Ops>, headers: HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html {
        html_response(&ops)
    } else {
        json_response(&ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_flag() {
        assert!(wants_verbose(Some("verbose")));
        assert!(wants_verbose(Some("a=1&verbose=1")));
        assert!(!wants_verbose(Some("verbose=0")));
        assert!(!wants_verbose(Some("verbosely")));
        assert!(!wants_verbose(None));
    }
}
