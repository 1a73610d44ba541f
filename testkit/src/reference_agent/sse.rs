//! The event streams of the reference agent (`text/event-stream`): the events of a turn,
//! sent after the configured delay and intervals, cut short by a cancellation, or spoilt by
//! an ordered [`Fault`].
//!
//! It exists so that the timing and the faults of a stream live in one place, whichever
//! endpoint (turn or confirmation) answers with it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::orders::Fault;
use super::state::{Shared, TurnKey};
use super::CANCELLED;

/// Events buffered between the task producing a stream and the connection.
const STREAM_BUFFER: usize = 16;

/// One event of a stream.
#[derive(Debug, Clone)]
pub(super) struct Ev {
    pub(super) name: &'static str,
    pub(super) data: Value,
}

impl Ev {
    pub(super) fn new(name: &'static str, data: Value) -> Self {
        Ev { name, data }
    }

    pub(super) fn is_terminal(&self) -> bool {
        matches!(self.name, "done" | "confirm" | "error")
    }

    pub(super) fn to_sse(&self) -> Bytes {
        Bytes::from(format!("event: {}\ndata: {}\n\n", self.name, self.data))
    }
}

pub(super) fn cancelled_event() -> Ev {
    Ev::new(
        "error",
        json!({"code": CANCELLED, "message": "the turn was cancelled"}),
    )
}

/// Waits `d` unless the turn is cancelled first; false when cancelled.
async fn wait_or_cancel(d: Duration, cancel: &mut Option<watch::Receiver<bool>>) -> bool {
    let Some(rx) = cancel else {
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
        return true;
    };
    if *rx.borrow() {
        return false;
    }
    if d.is_zero() {
        return true;
    }
    let sleep = tokio::time::sleep(d);
    tokio::pin!(sleep);
    let cancelled = tokio::select! {
        _ = &mut sleep => None,
        changed = rx.wait_for(|c| *c) => Some(changed.is_ok()),
    };
    match cancelled {
        None => !*rx.borrow(),
        Some(true) => false,
        // The turn was forgotten (its chat deleted): nobody can cancel it any more.
        Some(false) => {
            sleep.await;
            true
        }
    }
}

/// How to send a stream.
pub(super) struct StreamPlan {
    pub(super) events: Vec<Ev>,
    pub(super) fault: Option<Fault>,
    pub(super) cancel: Option<watch::Receiver<bool>>,
    /// The stored turn to mark finished at the end.
    pub(super) turn: Option<TurnKey>,
}

pub(super) fn stream_response(shared: &Arc<Shared>, plan: StreamPlan) -> Response {
    let StreamPlan {
        mut events,
        fault,
        mut cancel,
        turn,
    } = plan;
    let prefix: Option<Bytes> = match fault {
        Some(Fault::NotSse) => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<html><body><h1>502 Bad Gateway</h1>(a proxy, not an agent)</body></html>",
            )
                .into_response();
        }
        Some(Fault::InvalidJson) => Some(Bytes::from_static(
            b"event: delta\ndata: {\"text\": this is not json\n\n",
        )),
        Some(Fault::InvalidUtf8) => Some(Bytes::from_static(
            b"event: delta\ndata: {\"text\":\"\xff\xfe\xfd\"}\n\n",
        )),
        Some(Fault::NoDone) => {
            events.retain(|e| !e.is_terminal());
            None
        }
        Some(Fault::Status { .. }) | None => None,
    };
    let (delay, interval) = {
        let st = shared.state.lock();
        let chat_delay = turn
            .as_ref()
            .and_then(|(chat, _)| st.chat_delays.get(chat))
            .copied();
        (chat_delay.unwrap_or(st.delay), st.interval)
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(STREAM_BUFFER);
    let task_shared = Arc::clone(shared);
    let task = tokio::spawn(async move {
        if let Some(bytes) = prefix {
            // Garbage ends the stream: the client must give up on it.
            let _ = tx.send(bytes).await;
            return;
        }
        let mut cancelled = !wait_or_cancel(delay, &mut cancel).await;
        for (i, ev) in events.iter().enumerate() {
            if cancelled {
                break;
            }
            if i > 0 && !wait_or_cancel(interval, &mut cancel).await {
                cancelled = true;
                break;
            }
            if tx.send(ev.to_sse()).await.is_err() {
                return;
            }
        }
        if cancelled {
            let _ = tx.send(cancelled_event().to_sse()).await;
        }
        if let Some(key) = turn {
            if let Some(t) = task_shared.state.lock().turns.get_mut(&key) {
                t.finished = true;
            }
        }
    });
    {
        let mut tasks = shared.tasks.lock();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task.abort_handle());
    }
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|b| b.map(Ok::<Bytes, io::Error>))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
