//! The turn endpoints of the reference agent: a turn (run, or replayed by its `turn_id`), the
//! answer to a confirmation, the cancellation of a turn.
//!
//! They exist together because they act on the same stored turns.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::orders::Fault;
use super::records::Endpoint;
use super::routes::{error_response, parse_body, Meta, Sh};
use super::sse::{cancelled_event, stream_response, Ev, StreamPlan};
use super::wire::{ConfirmBody, TurnBody};

fn fault_status_response(status: u16, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = error_response(status, "injected", "fault injected by the test");
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    resp
}

pub(super) async fn turn(
    State(sh): Sh,
    Path(chat): Path<String>,
    meta: Meta,
    body: Bytes,
) -> Response {
    if let Err(response) = sh.admit(Endpoint::Turn, &meta, Some(&chat), &body) {
        return response;
    }
    let req: TurnBody = match parse_body(&body) {
        Ok(value) => value,
        Err(response) => return response,
    };
    if req.turn_id.is_empty() || req.sender.id.is_empty() {
        return error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "turn_id and sender.id are required",
        );
    }
    let fault = sh.state.lock().faults.pop_front();
    if let Some(Fault::Status {
        status,
        retry_after,
    }) = fault
    {
        return fault_status_response(status, retry_after);
    }
    let (events, cancel) = sh.execute_or_replay(&chat, &req);
    stream_response(
        &sh,
        StreamPlan {
            events,
            fault,
            cancel: Some(cancel),
            turn: Some((chat, req.turn_id)),
        },
    )
}

pub(super) async fn confirm(
    State(sh): Sh,
    Path((chat, confirm_id)): Path<(String, String)>,
    meta: Meta,
    body: Bytes,
) -> Response {
    if let Err(response) = sh.admit(Endpoint::Confirm, &meta, Some(&chat), &body) {
        return response;
    }
    let answer: ConfirmBody = match parse_body(&body) {
        Ok(value) => value,
        Err(response) => return response,
    };
    let events = {
        let mut st = sh.state.lock();
        let Some(pending) = st.confirms.get_mut(&confirm_id).filter(|p| p.chat == chat) else {
            return error_response(StatusCode::NOT_FOUND, "not_found", "no such confirmation");
        };
        match &pending.answer {
            Some(events) => events.clone(),
            None => {
                let events = if answer.approved {
                    sh.reply_events(&format!("ref-agent {} did: {}", sh.agent_id, pending.text))
                } else {
                    vec![Ev::new(
                        "done",
                        json!({"text": format!("ref-agent {} did not: {}", sh.agent_id, pending.text)}),
                    )]
                };
                pending.answer = Some(events.clone());
                events
            }
        }
    };
    stream_response(
        &sh,
        StreamPlan {
            events,
            fault: None,
            cancel: None,
            turn: None,
        },
    )
}

pub(super) async fn cancel(
    State(sh): Sh,
    Path((chat, turn_id)): Path<(String, String)>,
    meta: Meta,
    body: Bytes,
) -> Response {
    if let Err(response) = sh.admit(Endpoint::Cancel, &meta, Some(&chat), &body) {
        return response;
    }
    let key = (chat, turn_id);
    let mut st = sh.state.lock();
    match st.turns.get_mut(&key) {
        Some(t) if !t.finished => {
            t.events = vec![cancelled_event()];
            t.cancel.send_replace(true);
        }
        Some(_) => {}
        None => {
            st.precancelled.insert(key);
        }
    }
    StatusCode::ACCEPTED.into_response()
}
