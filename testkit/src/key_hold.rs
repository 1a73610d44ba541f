//! A proxy in front of Synapse that can hold back a person's encrypted to-device messages,
//! which is how room keys travel: the late-key and lost-key cases of end-to-end
//! encryption, made on demand.
//!
//! A person's client talks to the homeserver through [`KeyHold::url`]. Everything is passed
//! through, except that while holding, a `PUT .../sendToDevice/m.room.encrypted/<txn>` is
//! kept and answered `200 {}` at once (the client believes the key was sent and goes on to
//! send its message). [`KeyHold::release`] then sends what was kept to Synapse (the key
//! arrives late); [`KeyHold::discard`] forgets it (the key never arrives). A login's
//! `well_known` is left out, so the client stays behind the proxy.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

/// The path of a client's encrypted to-device messages (room keys among them).
const ENCRYPTED_TO_DEVICE: &str = "/_matrix/client/v3/sendToDevice/m.room.encrypted/";

/// One request kept back.
struct Kept {
    path: String,
    authorization: Option<String>,
    body: Bytes,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    holding: Mutex<bool>,
    kept: Mutex<Vec<Kept>>,
}

/// The proxy; stops when dropped.
pub struct KeyHold {
    url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl KeyHold {
    /// A proxy to `upstream` (Synapse's base URL) on a free loopback port.
    pub async fn start(upstream: &str) -> anyhow::Result<KeyHold> {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder().build()?,
            holding: Mutex::new(false),
            kept: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("key-hold proxy stopped: {error}");
            }
        });
        Ok(KeyHold { url, shared, task })
    }

    /// The homeserver URL to give a client.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Starts or stops holding encrypted to-device messages.
    pub fn hold(&self, on: bool) {
        *self.shared.holding.lock() = on;
    }

    /// How many requests are kept back now.
    pub fn kept(&self) -> usize {
        self.shared.kept.lock().len()
    }

    /// Stops holding and sends what was kept to Synapse, in order; returns how many.
    pub async fn release(&self) -> anyhow::Result<usize> {
        self.hold(false);
        let kept = std::mem::take(&mut *self.shared.kept.lock());
        for request in &kept {
            let mut put = self
                .shared
                .http
                .put(format!("{}{}", self.shared.upstream, request.path))
                .header("content-type", "application/json")
                .body(request.body.clone());
            if let Some(authorization) = &request.authorization {
                put = put.header("authorization", authorization);
            }
            let response = put.send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "Synapse refused a released to-device message: {}",
                response.status()
            );
        }
        Ok(kept.len())
    }

    /// Stops holding and forgets what was kept (those keys never arrive); returns how many.
    pub fn discard(&self) -> usize {
        self.hold(false);
        std::mem::take(&mut *self.shared.kept.lock()).len()
    }
}

impl Drop for KeyHold {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| uri.path().to_owned());
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if method == Method::PUT
        && uri.path().starts_with(ENCRYPTED_TO_DEVICE)
        && *shared.holding.lock()
    {
        shared.kept.lock().push(Kept {
            path,
            authorization,
            body,
        });
        return (StatusCode::OK, [("content-type", "application/json")], "{}").into_response();
    }
    let login = uri.path().ends_with("/login");
    let Ok(method) = reqwest::Method::from_bytes(method.as_str().as_bytes()) else {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    let mut request = shared
        .http
        .request(method, format!("{}{}", shared.upstream, path))
        .body(body);
    for name in ["authorization", "content-type"] {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(response) => {
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_owned();
            match response.bytes().await {
                Ok(bytes) if login => (
                    status,
                    [("content-type", content_type)],
                    without_well_known(bytes),
                )
                    .into_response(),
                Ok(bytes) => (status, [("content-type", content_type)], bytes).into_response(),
                Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
            }
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

/// A login response without its `well_known`: matrix-sdk would otherwise move the client
/// to the homeserver URL it names (Synapse's own), past the proxy.
fn without_well_known(body: Bytes) -> Bytes {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut login)) => {
            login.remove("well_known");
            serde_json::to_vec(&login).map(Bytes::from).unwrap_or(body)
        }
        _ => body,
    }
}
