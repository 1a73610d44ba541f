//! The HTTP routes of the reference agent: the router, the health endpoint, the fallback
//! for anything outside the contract, and the helpers of every handler's responses. The
//! handlers of the contract's endpoints are in [`super::turns`] and [`super::chats`].
//!
//! It exists so that the map from paths to handlers reads in one place.

use std::sync::Arc;

use axum::extract::State;
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

pub(super) fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(super) type Sh = State<Arc<Shared>>;

async fn health(State(sh): Sh, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let auth = sh.record(Endpoint::Health, &method, &uri, None, &headers, b"");
    if let Some(resp) = sh.check_auth(&auth) {
        return resp;
    }
    json_response(
        StatusCode::OK,
        json!({"status": "ok", "agent": sh.agent_id, "version": REF_AGENT_VERSION}),
    )
}

async fn fallback(State(sh): Sh, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    sh.record(Endpoint::Unknown, &method, &uri, None, &headers, b"");
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
