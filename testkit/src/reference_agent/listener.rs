//! The reference agent's listener: accepted connections it can cut when the agent "goes
//! down", and the server task on top of it.
//!
//! It exists because stopping an axum server does not end the connections it already
//! serves (each runs in its own task): a test that takes the agent down must see them cut.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::routes::router;
use super::state::Shared;

/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Kill switch of one accepted connection.
#[derive(Default)]
pub(super) struct ConnFlag {
    killed: AtomicBool,
    read: AtomicWaker,
    write: AtomicWaker,
}

impl ConnFlag {
    pub(super) fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.read.wake();
        self.write.wake();
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

fn killed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "reference agent went down",
    )
}

/// A TCP connection the agent can cut when it "goes down" (axum serves each connection in its
/// own task, which stopping the server does not end).
struct KillableStream {
    inner: TcpStream,
    flag: Arc<ConnFlag>,
}

impl AsyncRead for KillableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.flag.read.register(cx.waker());
        if this.flag.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.flag.write.register(cx.waker());
        if this.flag.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.flag.write.register(cx.waker());
        if this.flag.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

struct KillableListener {
    inner: TcpListener,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for KillableListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    // A turn's events are small writes: without this, Nagle's algorithm
                    // holds each one until the last is acknowledged (~40 ms on loopback).
                    if let Err(error) = stream.set_nodelay(true) {
                        eprintln!("reference agent: cannot set TCP_NODELAY: {error}");
                    }
                    let flag = Arc::new(ConnFlag::default());
                    {
                        let mut conns = self.shared.conns.lock();
                        conns.retain(|c| c.strong_count() > 0);
                        conns.push(Arc::downgrade(&flag));
                    }
                    return (
                        KillableStream {
                            inner: stream,
                            flag,
                        },
                        addr,
                    );
                }
                Err(_) => tokio::time::sleep(ACCEPT_ERROR_PAUSE).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

pub(super) fn spawn_server(shared: &Arc<Shared>, listener: TcpListener) -> JoinHandle<()> {
    let app = router(Arc::clone(shared));
    let listener = KillableListener {
        inner: listener,
        shared: Arc::clone(shared),
    };
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}
