//! The ops endpoint's HTTP server: accepts connections, at most [`MAX_CONNECTIONS`] at a
//! time, each bounded in time.
//!
//! Why this file exists: `axum::serve` waits forever for a client that opens a connection
//! and sends nothing (slowloris) and accepts any number of them, so a few idle sockets
//! could take the operator's view (and the orchestrator's probes) away. Here hyper reads
//! the request head within [`HEADER_READ_TIMEOUT`] (also between requests on a kept-alive
//! connection), the endpoint's middleware bounds each whole request by
//! [`super::REQUEST_TIMEOUT`], and a connection lives at most [`MAX_CONNECTION_AGE`]
//! (then it is closed gracefully, its request in progress finishing first). HTTP/1.1
//! only: probes, Prometheus, browsers and the CLI all speak it. The Telegram webhook
//! receiver (`telegram::webhook`) is served by the same loop.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Most connections served at once; further ones wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// A client has this long to send a request's head (from the connection's start, or from
/// the end of its previous response); then the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection; then it is closed once its current request is answered.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(120);
/// How long a connection closing at [`MAX_CONNECTION_AGE`] may take to finish its request.
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (out of file descriptors, ...), so the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, app: Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // A slot first: while all are taken, new connections wait in the kernel's backlog.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return; // the semaphore is never closed
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "an HTTP endpoint (ops, Telegram webhook) cannot accept a connection");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        // The peer, for handlers that log who called (`ConnectInfo<SocketAddr>`).
        let app = app
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let service = TowerToHyperService::new(app);
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "ops connection closed");
                    }
                }
                () = tokio::time::sleep(MAX_CONNECTION_AGE) => {
                    connection.as_mut().graceful_shutdown();
                    if tokio::time::timeout(CLOSE_GRACE, connection).await.is_err() {
                        tracing::debug!(%peer, "ops connection dropped at its maximum age");
                    }
                }
            }
        });
    }
}
