//! The HTTP routes of the reference agent: the router, the health endpoint, the fallback
//! for anything outside the contract, and the helpers of every handler's responses. The
//! handlers of the contract's endpoints are in [`super::turns`] and [`super::chats`].
//!
//! It exists so that the map from paths to handlers reads in one place.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::chats::{context, delete_chat, restore, snapshot};
use super::records::Endpoint;
use super::state::Shared;
use super::turns::{cancel, confirm, turn};
use super::REF_AGENT_VERSION;

pub(super) fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub(super) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
        .into_response()
}

/// What every handler records of a request besides its body.
pub(super) struct Meta {
    pub(super) method: Method,
    pub(super) uri: Uri,
    pub(super) headers: HeaderMap,
}

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Meta {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        })
    }
}

/// A request's JSON body, or the 400 to answer with.
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| error_response(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()))
}

pub(super) fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(super) type Sh = State<Arc<Shared>>;

async fn health(State(sh): Sh, meta: Meta) -> Response {
    if let Err(response) = sh.admit(Endpoint::Health, &meta, None, b"") {
        return response;
    }
    json_response(
        StatusCode::OK,
        json!({"status": "ok", "agent": sh.agent_id, "version": REF_AGENT_VERSION}),
    )
}

async fn fallback(State(sh): Sh, meta: Meta) -> Response {
    // Recorded whatever the token: an unknown path is answered 404 either way.
    let _ = sh.admit(Endpoint::Unknown, &meta, None, b"");
    error_response(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/chats/{chat}/turns", post(turn))
        .route("/v1/chats/{chat}/confirmations/{confirm_id}", post(confirm))
        .route("/v1/chats/{chat}/turns/{turn_id}/cancel", post(cancel))
        .route("/v1/chats/{chat}/context", get(context))
        .route("/v1/chats/{chat}/snapshots", post(snapshot))
        .route("/v1/chats/{chat}/restore", post(restore))
        .route("/v1/chats/{chat}", axum::routing::delete(delete_chat))
        .fallback(fallback)
        .with_state(shared)
}
