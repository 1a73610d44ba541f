//! The webhook receiver: Telegram POSTs each update to the bot, answered `200` only after
//! the core journaled it.
//!
//! Why this exists: long polling needs no public endpoint, but some operators run the bot
//! behind an HTTPS reverse proxy and prefer Telegram to call it (`[telegram.webhook]`).
//! Telegram then acknowledges an update by the answer to its call, so the answer is the
//! offset: `200` once [`Intake::take`] has journaled the update (the same path the poller
//! takes), `503` while the core cannot take it (shutting down, journal failing), so Telegram
//! delivers it again later. Calls are checked for the secret Telegram sends in
//! [`SECRET_HEADER`] (in constant time; the URL path holds nothing secret), bounded in
//! size ([`MAX_UPDATE_BYTES`]), and taken one at a time in arrival order, as the poller
//! takes them. An update delivered twice (Telegram did not see the first answer) is
//! answered once: its id is among the [`RECENT_UPDATES`] last taken; after a restart the
//! journal refuses a message it already holds. The server runs in a task watched by a
//! supervised actor ([`WebhookActor`]) that fails when it cannot listen on `bind`.

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use actors::ChildCtx;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

use super::api::Polled;
use super::intake::{Intake, Persist};
use crate::config::Secret;
use crate::surface::health::SyncHealth;
use crate::surface::Shutdown;

/// The header Telegram sends `secret_token` in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
/// The largest update body read; a larger one is refused (413). Telegram's updates are a
/// few kilobytes (4,096 characters of text, captions, a quoted message).
pub const MAX_UPDATE_BYTES: usize = 512 * 1024;
/// How many update ids the receiver remembers as taken (Telegram's redeliveries come soon).
pub const RECENT_UPDATES: usize = 4096;
/// How often a listening receiver tells `/status` and `/readyz` it is up.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// How many sources of calls with a wrong secret are remembered (each is logged once).
const MAX_WARNED_SOURCES: usize = 1024;

/// Why the receiver stopped.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// It cannot listen.
    #[error("cannot listen on {bind} (telegram.webhook.bind): {error}")]
    Bind {
        /// The address.
        bind: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

/// What every incarnation of the receiver is built from.
#[derive(Clone)]
pub struct WebhookDeps {
    /// What takes the updates to the core.
    pub intake: Intake,
    /// The receiver's liveness, for `/status` and `/readyz`.
    pub health: Arc<SyncHealth>,
    /// Where it listens.
    pub bind: SocketAddr,
    /// The one path it answers (the path of `telegram.webhook.url`).
    pub path: String,
    /// What Telegram must send in [`SECRET_HEADER`].
    pub secret: Secret,
    /// Becomes `true` at shutdown.
    pub shutdown: Shutdown,
}

/// Whether `given` is `expected`, compared in time that does not depend on where they
/// differ (only on their lengths).
pub fn secret_matches(expected: &str, given: Option<&[u8]>) -> bool {
    let Some(given) = given else {
        return false;
    };
    let expected = expected.as_bytes();
    if expected.is_empty() || given.len() != expected.len() {
        return false;
    }
    let difference = expected
        .iter()
        .zip(given)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}

/// What a call gets before its body is read: `Ok` to read it, else the status to answer.
pub fn admit(
    method: &Method,
    path: &str,
    own_path: &str,
    secret_ok: bool,
) -> Result<(), StatusCode> {
    if path != own_path {
        return Err(StatusCode::NOT_FOUND);
    }
    if method != Method::POST {
        return Err(StatusCode::METHOD_NOT_ALLOWED);
    }
    if !secret_ok {
        return Err(StatusCode::UNAUTHORIZED);
    }
    Ok(())
}

/// The ids of the updates taken last, at most [`RECENT_UPDATES`].
#[derive(Debug, Default)]
pub struct Recent {
    order: VecDeque<u32>,
    ids: HashSet<u32>,
}

impl Recent {
    /// Whether update `id` was taken.
    pub fn contains(&self, id: u32) -> bool {
        self.ids.contains(&id)
    }

    /// Records update `id` as taken, forgetting the oldest past [`RECENT_UPDATES`].
    pub fn record(&mut self, id: u32) {
        if !self.ids.insert(id) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > RECENT_UPDATES {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }
}

/// Sources already logged for a wrong secret: `true` the first time `source` is seen (the
/// memory is cleared when full, so a flood is logged at most once per
/// [`MAX_WARNED_SOURCES`] sources).
fn first_refusal(warned: &mut HashSet<IpAddr>, source: IpAddr) -> bool {
    if warned.len() >= MAX_WARNED_SOURCES && !warned.contains(&source) {
        warned.clear();
    }
    warned.insert(source)
}

/// The receiver's shared state.
struct Receiver {
    deps: WebhookDeps,
    /// Serializes taking (arrival order) and remembers what was taken.
    taken: Arc<tokio::sync::Mutex<Recent>>,
    warned: Mutex<HashSet<IpAddr>>,
}

/// One call from Telegram (or anyone).
async fn receive(State(receiver): State<Arc<Receiver>>, request: Request) -> Response {
    let deps = &receiver.deps;
    let secret = request
        .headers()
        .get(SECRET_HEADER)
        .map(axum::http::HeaderValue::as_bytes);
    let secret_ok = secret_matches(deps.secret.expose(), secret);
    if let Err(status) = admit(
        request.method(),
        request.uri().path(),
        &deps.path,
        secret_ok,
    ) {
        if status == StatusCode::UNAUTHORIZED {
            refused(&receiver, request.extensions(), request.headers());
        }
        return status.into_response();
    }
    if *deps.shutdown.borrow() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let body = match axum::body::to_bytes(request.into_body(), MAX_UPDATE_BYTES).await {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(%error, limit = MAX_UPDATE_BYTES,
                "refusing a Telegram webhook call: its body cannot be read or is too large");
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        }
    };
    let polled = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(value) => Polled::read(value),
        Err(error) => {
            // Answered 200: Telegram would deliver it again forever.
            tracing::error!(%error, "skipping a Telegram webhook call that is not JSON");
            return StatusCode::OK.into_response();
        }
    };
    // Taken in a task of its own: a caller hanging up does not interrupt the journal write.
    let taking = tokio::spawn(take(receiver.clone(), polled));
    match taking.await {
        Ok(status) => status.into_response(),
        Err(error) => {
            tracing::error!(%error, "taking a Telegram webhook update failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Takes one update (unless it was taken already); the status to answer Telegram with.
async fn take(receiver: Arc<Receiver>, polled: Polled) -> StatusCode {
    let mut taken = receiver.taken.clone().lock_owned().await;
    let id = polled.update_id();
    if id.is_some_and(|id| taken.contains(id)) {
        tracing::debug!(update_id = ?id, "a Telegram update delivered again; already taken");
        return StatusCode::OK;
    }
    let deps = &receiver.deps;
    match deps.intake.take(vec![polled], Persist::Once).await {
        Ok(()) => {
            if let Some(id) = id {
                taken.record(id);
            }
            deps.health.record_success();
            StatusCode::OK
        }
        Err(error) => {
            deps.health.record_failure();
            tracing::error!(%error, update_id = ?id,
                "the core did not take a Telegram update; Telegram will deliver it again");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// Logs a call with a wrong or missing secret, once per source.
fn refused(receiver: &Receiver, extensions: &axum::http::Extensions, headers: &HeaderMap) {
    let source = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let first = source.is_none_or(|ip| first_refusal(&mut receiver.warned.lock(), ip));
    if first {
        tracing::warn!(
            source = ?source,
            with_header = headers.contains_key(SECRET_HEADER),
            "refused a Telegram webhook call without the secret of \
             telegram.webhook.secret_token (401); if it came from Telegram, setWebhook \
             was called with another secret: restart the bot to set it again"
        );
    }
}

/// Listens on `bind` and takes Telegram's calls until shutdown.
pub async fn serve(deps: WebhookDeps) -> Result<(), WebhookError> {
    let listener = tokio::net::TcpListener::bind(deps.bind)
        .await
        .map_err(|error| WebhookError::Bind {
            bind: deps.bind,
            error,
        })?;
    tracing::info!(bind = %deps.bind, path = %deps.path, "receiving Telegram updates on the webhook");
    let receiver = Arc::new(Receiver {
        deps: deps.clone(),
        taken: Arc::new(tokio::sync::Mutex::new(Recent::default())),
        warned: Mutex::new(HashSet::new()),
    });
    let app = axum::Router::new().fallback(receive).with_state(receiver);
    let mut shutdown = deps.shutdown.clone();
    let heartbeat = async {
        loop {
            deps.health.record_success();
            tokio::time::sleep(HEARTBEAT).await;
        }
    };
    tokio::select! {
        () = crate::ops::server::serve(listener, app) => {}
        () = heartbeat => {}
        _ = shutdown.wait_for(|stopping| *stopping) => {}
    }
    Ok(())
}

/// The supervised actor watching the receiver.
pub struct WebhookActor {
    deps: WebhookDeps,
    ctx: ChildCtx,
    task: Option<tokio::task::AbortHandle>,
}

impl WebhookActor {
    /// A fresh incarnation (it remembers no update ids of the previous one: the journal
    /// refuses messages it holds).
    pub fn new(deps: WebhookDeps, ctx: ChildCtx) -> Self {
        Self {
            deps,
            ctx,
            task: None,
        }
    }
}

impl Actor for WebhookActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let task = tokio::spawn(serve(self.deps.clone()));
        self.task = Some(task.abort_handle());
        ctx.spawn(task.into_actor(self).map(|result, act, ctx| {
            match result {
                Ok(Ok(())) => actix::ActorContext::stop(ctx),
                Ok(Err(error)) => act
                    .ctx
                    .fail(ctx, format!("the Telegram webhook stopped: {error}")),
                Err(join) => act
                    .ctx
                    .fail(ctx, format!("the Telegram webhook task ended: {join}")),
            }
        }));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
actors::supervised_actor!(WebhookActor);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_compared_whole() {
        for (given, ok) in [
            (Some(&b"s3cret"[..]), true),
            (Some(&b"s3creT"[..]), false),
            (Some(&b"s3cre"[..]), false),
            (Some(&b"s3cret!"[..]), false),
            (Some(&b""[..]), false),
            (None, false),
        ] {
            assert_eq!(secret_matches("s3cret", given), ok, "{given:?}");
        }
        assert!(
            !secret_matches("", Some(b"")),
            "an empty secret admits nobody"
        );
    }

    #[test]
    fn what_a_call_gets_before_its_body() {
        let path = "/telegram";
        for (method, at, secret_ok, expected) in [
            (Method::POST, "/telegram", true, Ok(())),
            (
                Method::POST,
                "/telegram",
                false,
                Err(StatusCode::UNAUTHORIZED),
            ),
            (
                Method::GET,
                "/telegram",
                true,
                Err(StatusCode::METHOD_NOT_ALLOWED),
            ),
            (Method::POST, "/", true, Err(StatusCode::NOT_FOUND)),
            (
                Method::POST,
                "/telegram/x",
                false,
                Err(StatusCode::NOT_FOUND),
            ),
        ] {
            assert_eq!(
                admit(&method, at, path, secret_ok),
                expected,
                "{method} {at}"
            );
        }
    }

    #[test]
    fn recent_updates_are_bounded_and_forget_the_oldest() {
        let mut recent = Recent::default();
        for id in 0..u32::try_from(RECENT_UPDATES).unwrap_or(u32::MAX) {
            recent.record(id);
        }
        recent.record(7);
        assert!(recent.contains(0) && recent.contains(7));
        recent.record(u32::MAX);
        assert!(!recent.contains(0), "the oldest is forgotten");
        assert!(recent.contains(1) && recent.contains(u32::MAX));
        assert_eq!(recent.order.len(), RECENT_UPDATES);
        assert_eq!(recent.ids.len(), RECENT_UPDATES);
    }

    #[test]
    fn a_source_is_logged_once_and_the_memory_stays_bounded() {
        let mut warned = HashSet::new();
        let one = IpAddr::from([10, 0, 0, 1]);
        assert!(first_refusal(&mut warned, one));
        assert!(!first_refusal(&mut warned, one));
        for n in 0..MAX_WARNED_SOURCES {
            let ip = IpAddr::from(u32::try_from(n).unwrap_or(0).to_be_bytes());
            first_refusal(&mut warned, ip);
        }
        assert!(warned.len() <= MAX_WARNED_SOURCES);
    }
}
