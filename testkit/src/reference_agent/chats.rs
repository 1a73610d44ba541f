//! The chat endpoints of the reference agent: a chat's context, its snapshots, restoring one
//! (into the same chat or another), deleting the chat.
//!
//! They exist together because they act on the same per-chat counters.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::records::Endpoint;
use super::routes::{error_response, json_response, parse_body, Meta, Sh};
use super::wire::{RestoreBody, SnapshotBody};

pub(super) async fn context(State(sh): Sh, Path(chat): Path<String>, meta: Meta) -> Response {
    if let Err(response) = sh.admit(Endpoint::Context, &meta, Some(&chat), b"") {
        return response;
    }
    let st = sh.state.lock();
    let c = st.chats.get(&chat).copied().unwrap_or_default();
    let mut snapshots: Vec<&String> = st
        .snapshots
        .keys()
        .filter(|(from, _)| *from == chat)
        .map(|(_, name)| name)
        .collect();
    snapshots.sort();
    json_response(
        StatusCode::OK,
        json!({
            "messages": c.messages,
            "tokens": c.tokens,
            "summary": format!("{} messages with ref-agent {}", c.messages, sh.agent_id),
            "snapshots": snapshots,
        }),
    )
}

pub(super) async fn snapshot(
    State(sh): Sh,
    Path(chat): Path<String>,
    meta: Meta,
    body: Bytes,
) -> Response {
    if let Err(response) = sh.admit(Endpoint::Snapshot, &meta, Some(&chat), &body) {
        return response;
    }
    let req = match serde_json::from_slice::<SnapshotBody>(&body) {
        Ok(r) if !r.name.is_empty() => r,
        _ => return error_response(StatusCode::BAD_REQUEST, "bad_request", "name is required"),
    };
    let mut st = sh.state.lock();
    let c = st.chats.get(&chat).copied().unwrap_or_default();
    st.snapshots.insert((chat, req.name.clone()), c);
    json_response(
        StatusCode::CREATED,
        json!({"name": req.name, "messages": c.messages}),
    )
}

pub(super) async fn restore(
    State(sh): Sh,
    Path(chat): Path<String>,
    meta: Meta,
    body: Bytes,
) -> Response {
    if let Err(response) = sh.admit(Endpoint::Restore, &meta, Some(&chat), &body) {
        return response;
    }
    let req: RestoreBody = match parse_body(&body) {
        Ok(value) => value,
        Err(response) => return response,
    };
    let mut st = sh.state.lock();
    let source = req.from_chat.clone().unwrap_or_else(|| chat.clone());
    let Some(saved) = st.snapshots.get(&(source, req.snapshot.clone())).copied() else {
        return error_response(StatusCode::NOT_FOUND, "not_found", "no such snapshot");
    };
    st.chats.insert(chat, saved);
    json_response(
        StatusCode::OK,
        json!({"restored": req.snapshot, "messages": saved.messages}),
    )
}

pub(super) async fn delete_chat(State(sh): Sh, Path(chat): Path<String>, meta: Meta) -> Response {
    if let Err(response) = sh.admit(Endpoint::Delete, &meta, Some(&chat), b"") {
        return response;
    }
    let mut st = sh.state.lock();
    st.chats.remove(&chat);
    StatusCode::NO_CONTENT.into_response()
}
