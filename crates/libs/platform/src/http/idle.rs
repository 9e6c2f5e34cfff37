//! The idle timeout: a connection that has neither read nor written a byte for that long is
//! closed.
//!
//! One deadline per connection, for reads and writes alike, counted from the last byte either
//! way. An answer still being written keeps its connection for as long as it makes progress,
//! though the client sends nothing meanwhile (hyper keeps a read pending throughout, to notice a
//! client that goes away).
//!
//! The timer is armed once, when the connection first waits, and moved only when it fires
//! early (the connection was active since it was armed): not on every wait. A per-wait timer
//! (`tokio-io-timeout`, used before) was moved in tokio's timer wheel after every answer, and
//! tokio wakes its driver (a write to an eventfd, then one more turn of `epoll_wait`) whenever a
//! timer moves ahead of the one it last slept for: about one extra system call per connection
//! in a rush's burst (BENCHMARKS.md, issue 16 part 14). It also cut an answer streamed for
//! longer than the timeout, since it counted the pending read alone.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A connection's stream that fails a read or a write with `TimedOut` once it has been idle
/// (no byte read or written) for its limit.
pub(crate) struct IdleBound<S> {
    inner: S,
    limit: Duration,
    /// When a byte was last read or written (at first: when the stream was made).
    last: Instant,
    /// Made at the first wait; fires at `last + limit` as `last` was when it was last moved.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> IdleBound<S> {
    /// `inner`, closed after `limit` without a byte read or written.
    pub(crate) fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            last: Instant::now(),
            timer: None,
        }
    }

    /// An operation on the stream as polled: one done counts as activity when it moves bytes
    /// (`moves_bytes`); one that has to wait is bound by the idle limit.
    fn bound<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
        moves_bytes: bool,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                if moves_bytes {
                    self.last = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }

    /// A read or a write has to wait: `Ready` with the error once the connection has been idle
    /// for its limit, `Pending` (the timer armed for the task) before.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            let due = self.last + self.limit;
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            ready!(timer.as_mut().poll(cx));
            if Instant::now() >= due {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was idle for longer than its limit",
                ));
            }
            // Fired for an earlier deadline: the connection was active since.
            timer.as_mut().reset(due);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleBound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.bound(cx, polled, true)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleBound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.bound(cx, polled, true)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.bound(cx, polled, true)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.bound(cx, polled, false)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.bound(cx, polled, false)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Reads and writes that make progress keep the stream; a read that then waits past the
    /// limit from the last byte fails, at that limit and not before.
    #[tokio::test(start_paused = true)]
    async fn the_limit_counts_from_the_last_byte_either_way() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut stream = IdleBound::new(near, Duration::from_secs(60));
        let start = Instant::now();
        // Every 40 s a byte, in turn read and written: 200 s without ever 60 s idle.
        for n in 0..5u8 {
            tokio::time::sleep(Duration::from_secs(40)).await;
            if n % 2 == 0 {
                far.write_all(&[n]).await.unwrap();
                assert_eq!(stream.read_u8().await.unwrap(), n);
            } else {
                stream.write_all(&[n]).await.unwrap();
                assert_eq!(far.read_u8().await.unwrap(), n);
            }
        }
        let last = Instant::now();
        let err = stream.read_u8().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(last - start, Duration::from_secs(200));
        assert_eq!(Instant::now() - last, Duration::from_secs(60));
    }

    /// A write the peer does not take (its buffer full) fails after the limit too.
    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_fails_after_the_limit() {
        let (near, _far) = tokio::io::duplex(4);
        let mut stream = IdleBound::new(near, Duration::from_secs(60));
        stream.write_all(b"full").await.unwrap();
        let waited = Instant::now();
        let err = stream.write_all(b"more").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(Instant::now() - waited, Duration::from_secs(60));
    }
}
