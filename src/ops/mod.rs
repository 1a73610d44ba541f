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
//! | `/status/rooms/<room id>` | one room's story ([`room_story::RoomStory`]), negotiated like `/status`; 404 for an unknown room |
//! | `/status.js`, `/status.css` | the page's script and style (no inline code: strict CSP) |
//! | `/faults` | fault drills, bearer token, `fault-injection` builds only (see `fault`) |
//!
//! Who may ask (see `guard`): with `ops.token` set, `/status*` and `/metrics` need
//! `Authorization: Bearer <token>` (401 with `WWW-Authenticate: Bearer` otherwise);
//! `/livez` and `/readyz` stay open for probes. Every path but the probes answers only
//! requests whose `Host` is loopback, the bind address or in `ops.allowed_hosts` (421
//! otherwise: DNS rebinding). Requests and connections are bounded in time and number
//! (see `server`). Every answer carries `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer` and a CSP with `frame-ancestors 'none'`. The endpoint
//! binds to loopback by default; expose it only on a private network, with a token.

pub mod chart;
pub mod cli;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod guard;
pub mod history;
pub mod html;
pub mod room_cli;
pub mod room_page;
pub mod room_story;
pub mod server;
pub mod status;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actors::SupervisorHandle;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::config::{OpsConfig, Secret};
use crate::runtime::RuntimeView;
use guard::{Auth, HostAllowlist};

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
/// One room's story: `/status/rooms/<room id>` (the id percent-encoded).
pub const ROOM_PATH_PREFIX: &str = "/status/rooms/";
/// The status page's script (served, not inline: the CSP allows no inline script).
pub const STATUS_JS_PATH: &str = "/status.js";
/// The status page's style sheet (served, not inline, like its script).
pub const STATUS_CSS_PATH: &str = "/status.css";
/// Content type of the page's script.
const TEXT_JAVASCRIPT: &str = "text/javascript; charset=utf-8";
/// Content type of the page's style sheet.
const TEXT_CSS: &str = "text/css; charset=utf-8";
/// Longest time one request may take, from its head read to its answer (the body read
/// included); then it is answered 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Content-Security-Policy of every answer but the status page (which has its own,
/// [`html::CONTENT_SECURITY_POLICY`]): nothing may load, nothing may frame it.
pub const DEFAULT_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/// The challenge of a 401 (RFC 6750).
const BEARER_CHALLENGE: &str = "Bearer realm=\"surfaces ops\"";
/// `Referrer-Policy` of every answer.
const NO_REFERRER: &str = "no-referrer";
/// `X-Content-Type-Options` of every answer.
const NOSNIFF: &str = "nosniff";

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
    let token = config.token.as_ref().is_some_and(|t| !t.is_empty());
    tracing::info!(%addr, token, "ops endpoint listening on {addr}");
    if config.token.as_ref().is_some_and(Secret::is_empty) {
        tracing::warn!("ops.token is set but empty: /status and /metrics need no token");
    }
    if !token && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "the ops endpoint listens beyond loopback without ops.token: anyone who reaches \
             {addr} reads /status and /metrics; set ops.token"
        );
    }
    tokio::spawn(server::serve(listener, app));
    Ok(addr)
}

/// What the access middleware needs.
#[derive(Clone)]
struct Gate {
    token: Option<Secret>,
    hosts: Arc<HostAllowlist>,
}

/// The endpoint's routes: the probes (open), the guarded paths (token), the page's
/// assets, all but the probes behind the `Host` allowlist; every answer with the
/// security headers and within [`REQUEST_TIMEOUT`].
fn router(config: &OpsConfig, view: RuntimeView, root: SupervisorHandle) -> Router {
    #[cfg(feature = "fault-injection")]
    let drills = fault::Drills::with_rooms(
        config.fault_token.clone(),
        view.registry.clone(),
        view.rooms.clone(),
    );
    #[cfg(not(feature = "fault-injection"))]
    if config.fault_token.is_some() {
        tracing::warn!(
            "ops.fault_token is set but this build has no fault injection \
             (cargo feature fault-injection): ignored"
        );
    }
    let gate = Gate {
        token: config.token.clone(),
        hosts: Arc::new(HostAllowlist::new(config.bind, &config.allowed_hosts)),
    };
    tracing::debug!(hosts = ?gate.hosts.hosts(), "ops endpoint Host allowlist");
    let state = Ops { view, root };
    let probes = Router::new()
        .route(LIVEZ_PATH, get(livez))
        .route(READYZ_PATH, get(readyz))
        .with_state(state.clone());
    let guarded = Router::new()
        .route(METRICS_PATH, get(metrics_handler))
        .route(STATUS_PATH, get(status_negotiated))
        .route(STATUS_JSON_PATH, get(status_json))
        .route(STATUS_HTML_PATH, get(status_html))
        .route("/status/rooms/{room_id}", get(room_negotiated))
        .route_layer(middleware::from_fn_with_state(gate.clone(), require_token))
        .with_state(state);
    let others = Router::new()
        .route("/", get(|| async { Redirect::temporary(STATUS_PATH) }))
        .route(STATUS_JS_PATH, get(status_js))
        .route(STATUS_CSS_PATH, get(status_css));
    #[cfg(feature = "fault-injection")]
    let others = others.merge(fault::routes(drills));
    let hosted = guarded
        .merge(others)
        .layer(middleware::from_fn_with_state(gate, require_host));
    probes
        .merge(hosted)
        .layer(middleware::from_fn(bounded_in_time))
        .layer(middleware::map_response(security_headers))
}

/// 421 for a request whose `Host` is not in the allowlist (see [`guard::HostAllowlist`]).
async fn require_host(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    if gate.hosts.allows(host) {
        next.run(request).await
    } else {
        tracing::warn!(
            host = host.unwrap_or("(none)"),
            path = request.uri().path(),
            "ops endpoint: request for another host refused (DNS rebinding?); \
             add the name to ops.allowed_hosts if it is yours"
        );
        text(
            StatusCode::MISDIRECTED_REQUEST,
            "this endpoint does not answer for that host name (ops.allowed_hosts)\n".to_owned(),
        )
    }
}

/// 401 for a guarded path without the right bearer token (see [`guard::authorize`]).
async fn require_token(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match guard::authorize(gate.token.as_ref(), authorization) {
        Auth::Allowed => next.run(request).await,
        Auth::Denied => {
            tracing::debug!(path = request.uri().path(), "ops endpoint: no valid token");
            let mut response = text(
                StatusCode::UNAUTHORIZED,
                "a bearer token is needed (ops.token)\n".to_owned(),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(BEARER_CHALLENGE),
            );
            response
        }
    }
}

/// 503 for a request not answered within [`REQUEST_TIMEOUT`].
async fn bounded_in_time(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(%path, "ops endpoint: request took over {REQUEST_TIMEOUT:?}");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no answer within {} s\n", REQUEST_TIMEOUT.as_secs()),
            )
        }
    }
}

/// The headers every answer carries (the status page keeps its own CSP).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed: [(HeaderName, &'static str); 2] = [
        (header::X_CONTENT_TYPE_OPTIONS, NOSNIFF),
        (header::REFERRER_POLICY, NO_REFERRER),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DEFAULT_CSP),
        );
    }
    response
}

fn asset(content_type: &'static str, body: String) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, NO_STORE),
        ],
        body,
    )
        .into_response()
}

async fn status_js() -> Response {
    asset(TEXT_JAVASCRIPT, html::script())
}

async fn status_css() -> Response {
    asset(TEXT_CSS, html::STYLE.to_owned())
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
    let sync = view.sync();
    let observed = crate::metrics::Observed {
        actors: view.registry.snapshot(),
        turns_in_flight: view
            .agents
            .iter()
            .map(|a| (a.id.clone(), a.stats.in_flight.load(Ordering::Relaxed)))
            .collect(),
        since_last_sync: sync.since_last_success(),
        sync_failures: sync.consecutive_failures(),
        inbound: view
            .inbound
            .iter()
            .map(|i| {
                (
                    i.surface.clone(),
                    i.health.since_last_success(),
                    i.health.consecutive_failures(),
                )
            })
            .collect(),
        ready: status::readiness(view, &ops.root).ready,
        journal_pending: view.journal.pending_count(),
        catch_up: sync.catch_up().snapshot(),
        undecryptable: crate::metrics::UndecryptableSnapshot::of(&view.journal),
        rooms_active: view.rooms.active_len(),
        rooms_managed: view.rooms.managed_len(),
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

/// Whether the request asks for the page rather than the JSON.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// `/status/rooms/<room id>`: the room's story, as the page or as JSON; 404 for a room the
/// bot knows nothing of, 500 when the store cannot be read.
async fn room_negotiated(
    State(ops): State<Ops>,
    Path(room_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let story = match room_story::room_story(&ops.view, &room_id) {
        Ok(Some(story)) => story,
        Ok(None) => {
            return text(
                StatusCode::NOT_FOUND,
                "no such room: the bot neither manages it nor remembers it (see /status)\n"
                    .to_owned(),
            )
        }
        Err(error) => {
            tracing::error!(%error, "ops endpoint: cannot read a room's story");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the room's story: {error}\n"),
            );
        }
    };
    if wants_html(&headers) {
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
            room_page::render(&story),
        )
            .into_response()
    } else {
        let mut response = Json(story).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
        response
    }
}

async fn status_negotiated(State(ops): State<Ops>, headers: HeaderMap) -> Response {
    if wants_html(&headers) {
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
