//! The bound on how long a request's head may take, which leaves idle keep-alive connections
//! to the idle timeout.
//!
//! hyper's own `header_read_timeout` starts when hyper begins to wait for a request. On a
//! keep-alive connection that is as soon as the previous answer is written, so it closed every
//! connection idle for longer than the head's bound (10 s), not the idle timeout (60 s). An
//! ingress keeps its idle connections to a service for less than the idle timeout (the local
//! cluster's nginx 50 s, deploy/k8s/README.md) and sends a request on one of them as the
//! service closes it: nginx answered those requests 502 (BENCHMARKS.md, issue 16 part 12).
//!
//! Here the bound starts with the first byte of a head (or when the connection was accepted,
//! for its first request) and ends when hyper has parsed the head and calls the service. From
//! then until the service's answer is ready the connection is bound only by the request's
//! timeout and the idle timeout (a body may take longer than a head); after it, it waits for the
//! next head's first byte, bound only by the idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Between requests: no bound but the idle timeout.
const WAITING: u8 = 0;
/// A head has begun and is not parsed yet.
const HEAD: u8 = 1;
/// The head was parsed; its request is being handled.
const HANDLING: u8 = 2;

/// Where a connection is in its current request, shared by its I/O and its service (both run in
/// the connection's task).
#[derive(Debug)]
pub(crate) struct Heads(AtomicU8);

impl Heads {
    /// A connection whose first head has begun (its request line was read when it was
    /// accepted).
    pub(crate) fn first() -> Arc<Self> {
        Arc::new(Self(AtomicU8::new(HEAD)))
    }

    /// hyper parsed a head and calls the service with it.
    pub(crate) fn handling(&self) {
        self.0.store(HANDLING, Ordering::Relaxed);
    }

    /// The service's answer is ready: the connection waits for the next head.
    pub(crate) fn answered(&self) {
        self.0.store(WAITING, Ordering::Relaxed);
    }
}

/// A connection's stream that fails a read with `TimedOut` once a head has taken longer than
/// its bound.
pub(crate) struct HeadBound<S> {
    inner: S,
    heads: Arc<Heads>,
    /// `None`: no bound (HTTP/2, whose streams share the connection).
    limit: Option<Duration>,
    /// When the current head began.
    started: Instant,
    /// The head's deadline, set when a read of it first has to wait (a head that arrives in
    /// one read, the usual case, never touches the timer).
    deadline: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<S> HeadBound<S> {
    /// `inner`, whose current head began at `started`, bound to `limit` per head.
    pub(crate) fn new(
        inner: S,
        heads: Arc<Heads>,
        limit: Option<Duration>,
        started: Instant,
    ) -> Self {
        Self {
            inner,
            heads,
            limit,
            started,
            deadline: None,
            armed: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadBound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.heads.0.load(Ordering::Relaxed) == WAITING {
                    this.heads.0.store(HEAD, Ordering::Relaxed);
                    this.started = Instant::now();
                    this.armed = false;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                let Some(limit) = this.limit else {
                    return Poll::Pending;
                };
                if this.heads.0.load(Ordering::Relaxed) != HEAD {
                    return Poll::Pending;
                }
                let at = this.started + limit;
                if !this.armed {
                    this.armed = true;
                    match &mut this.deadline {
                        Some(deadline) => deadline.as_mut().reset(at),
                        None => this.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
                    }
                }
                if let Some(deadline) = &mut this.deadline {
                    ready!(deadline.as_mut().poll(cx));
                }
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request's head took longer than its bound",
                )))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadBound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
