//! Accepting connections and holding each to its clocks, so that no client holds a socket
//! for nothing:
//! - idle: from a connection's opening, or its last answer, to the first byte of a request;
//! - header: from that first byte to the end of the request's headers (slowloris);
//! - the body's clock runs in the handler, which knows the request timeout too.
//!
//! hyper's own header timer starts whenever it waits for a head, so one number would bound
//! both the idle time and the headers; the two phases are told apart here instead, by a
//! wrapper around the socket that sees the bytes arrive and a wrapper around the service that
//! sees a request start and its answer leave.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::metrics::Metrics;

/// How long a connection may wait in each phase before it is closed.
#[derive(Debug, Clone, Copy)]
pub struct Clocks {
    pub idle: Duration,
    pub header: Duration,
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request since `since` (the opening, or the last answer).
    Idle { since: Instant },
    /// A request's first byte came at `since`; its headers are not all in.
    Head { since: Instant },
    /// This many requests are being answered (HTTP/2 runs several): no clock.
    Busy(usize),
}

type Shared = Arc<Mutex<Phase>>;

fn lock(phase: &Shared) -> std::sync::MutexGuard<'_, Phase> {
    phase.lock().unwrap_or_else(|e| e.into_inner())
}

/// The socket: reading fails with `TimedOut` once the phase's clock has run out.
struct Timed<S> {
    inner: S,
    phase: Shared,
    clocks: Clocks,
    sleep: Pin<Box<Sleep>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                let mut phase = lock(&this.phase);
                if let Phase::Idle { .. } = *phase {
                    *phase = Phase::Head {
                        since: Instant::now(),
                    };
                }
            }
            Poll::Pending => {
                let deadline = match *lock(&this.phase) {
                    Phase::Idle { since } => Some(since + this.clocks.idle),
                    Phase::Head { since } => Some(since + this.clocks.header),
                    Phase::Busy(_) => None,
                };
                if let Some(deadline) = deadline {
                    if this.sleep.deadline() != deadline {
                        this.sleep.as_mut().reset(deadline);
                    }
                    if this.sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "idle or header timeout",
                        )));
                    }
                }
            }
            _ => {}
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request being answered; dropped (answered, or abandoned), the connection may go idle.
struct Answering(Shared);

impl Answering {
    fn start(phase: &Shared) -> Self {
        let mut now = lock(phase);
        *now = match *now {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        };
        Self(phase.clone())
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        let mut now = lock(&self.0);
        *now = match *now {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle {
                since: Instant::now(),
            },
        };
    }
}

/// The status hyper answered a connection's error with, if it answered (its `on_error`: a
/// head it could not parse, or too large).
fn answered(error: &hyper::Error) -> Option<u16> {
    if error.is_parse_version_h2() || !error.is_parse() {
        return None;
    }
    if error.is_parse_too_large() {
        let uri = error.to_string().to_ascii_lowercase().contains("uri");
        return Some(if uri { 414 } else { 431 });
    }
    Some(400)
}

/// Serves `app` on `listener`'s connections until `stop`, then answers what is in flight and
/// drops the connections still open after `drain`. A client may half-close its side after
/// its request and still read the answer. Every answer is counted in `metrics`: the router's
/// by its layer, hyper's own here.
pub async fn accept(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    clocks: Clocks,
    drain: Duration,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The header clock is ours (see the module's comment).
        .header_read_timeout(None)
        .half_close(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    // Out of descriptors, say: wait rather than spin.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Answers are small writes: no Nagle delay waiting for an ACK.
                let _ = stream.set_nodelay(true);
                let phase = Arc::new(Mutex::new(Phase::Idle { since: Instant::now() }));
                let io = Timed {
                    inner: stream,
                    phase: phase.clone(),
                    clocks,
                    sleep: Box::pin(tokio::time::sleep(clocks.idle)),
                };
                let app = app.clone();
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let answering = Answering::start(&phase);
                        let answer = app.clone().oneshot(request.map(axum::body::Body::new));
                        async move {
                            let response = answer.await;
                            drop(answering);
                            response
                        }
                    },
                );
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(io), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    // hyper answers a request it cannot parse itself: count that answer too.
                    if let Err(e) = connection.await {
                        if let Some(status) = e.downcast_ref::<hyper::Error>().and_then(answered) {
                            metrics.request(status);
                        }
                    }
                });
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    // Graceful shutdown waits for every connection to close; a client holding a request half
    // sent would hold the server forever. Past the drain timeout, what is left is dropped.
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => {}
    }
}
