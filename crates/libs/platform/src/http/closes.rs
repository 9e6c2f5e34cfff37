//! Closing a connection's socket when its thread has nothing else to do.
//!
//! In a rush's burst every client closes its connection as soon as it has its answer, while
//! the others still wait for theirs. Closing the socket of a finished connection is two system
//! calls on the thread that answers them (the I/O driver's `epoll_ctl` to forget the socket,
//! and `close`, which sends the FIN), and the kernel's work for that FIN. In the profile of a
//! burst (BENCHMARKS.md, issue 16 part 14) the closes were 23% of the connection threads'
//! samples, and 40–60% in the burst's last 30–40 ms, where its p99 is decided.
//!
//! So on a connection thread, the socket of a finished connection ([`Closing`] dropped) waits
//! to be closed until the thread is about to sleep, its queue empty (tokio's `on_thread_park`),
//! rather than being closed between two answers. Then they are closed [`CLOSE_BATCH`] at a
//! time, the thread looking for new requests between two batches. Nobody waits for these
//! closes: the client has closed its side already, or has its whole answer (hyper shuts the
//! write side down when the server ends a connection). The wait is bounded: at most
//! [`MAX_WAITING`] sockets per thread (the oldest is closed when one more arrives), and one that
//! has waited [`MAX_WAIT`] on a thread that stays busy is closed when the next one arrives.
//! A socket that waits still holds its place under the listener's connection cap, which keeps
//! the process within its open-file limit. Sockets wait only on a thread whose runtime closes
//! them when it parks ([`close_waiting`] is its `on_thread_park`); elsewhere (a listener
//! without connection threads) a socket is closed at once.
//!
//! Measured (BENCHMARKS.md, issue 16 part 15): the same CPU, the closes done later; the burst's
//! p99 at the bare stack about 10% lower, in `up` within the rush's spread.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// The most sockets that wait to be closed on one thread.
pub(crate) const MAX_WAITING: usize = 4096;

/// The most sockets closed in one idle moment of their thread: a request that arrives
/// meanwhile waits for no more closes than that (a thread that ran out of work in the middle
/// of a burst had a thousand to close: milliseconds of work).
pub(crate) const CLOSE_BATCH: usize = 32;

/// The longest a socket waits to be closed (when the thread is busy for that long).
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(200);

thread_local! {
    /// Sockets of finished connections, oldest first, with when they finished. `None` until
    /// the thread's runtime first calls [`close_waiting`] as it parks: on any other thread,
    /// nothing would close them.
    static WAITING: RefCell<Option<VecDeque<(Instant, Finished)>>> = const { RefCell::new(None) };
}

/// The runtime's `on_thread_park` (`http/threads.rs`), called before the thread parks: from the
/// first call on, sockets of connections that finish on this thread wait for it. Closes the
/// oldest [`CLOSE_BATCH`] sockets waiting. When more wait, the thread is kept awake (an empty
/// task spawned): it looks for I/O without sleeping, answers what arrived meanwhile, and comes
/// back here when it has nothing else to do.
pub(crate) fn close_waiting() {
    let (closing, more) = WAITING.with(|waiting| {
        let mut waiting = waiting.borrow_mut();
        let waiting = waiting.get_or_insert_with(VecDeque::new);
        let batch = waiting.len().min(CLOSE_BATCH);
        let closing: VecDeque<_> = waiting.drain(..batch).collect();
        (closing, !waiting.is_empty())
    });
    // Closed outside the borrow.
    drop(closing);
    if more && let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async {});
    }
}

/// Whether sockets of connections that finish on this thread wait to be closed.
#[cfg(test)]
pub(crate) fn waits_here() -> bool {
    WAITING.with(|waiting| waiting.borrow().is_some())
}

/// How many sockets wait to be closed on this thread.
#[cfg(test)]
pub(crate) fn waiting() -> usize {
    WAITING.with(|waiting| waiting.borrow().as_ref().map_or(0, VecDeque::len))
}

/// A connection's socket, and its place under the listener's connection cap: a socket that
/// waits to be closed is still open, so it still counts (the cap keeps the process within its
/// open-file limit).
struct Finished {
    stream: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
}

/// `socket`'s connection is over: it is closed now, or when the thread is next idle.
fn finished(socket: Finished) {
    // `Err`: at the thread's exit. `Some(socket)`: to close now.
    let (socket, overdue) = WAITING
        .try_with(|waiting| {
            let mut waiting = waiting.borrow_mut();
            let Some(waiting) = waiting.as_mut() else {
                return (Some(socket), VecDeque::new());
            };
            let now = Instant::now();
            waiting.push_back((now, socket));
            let overdue = overdue(waiting, now);
            (None, waiting.drain(..overdue).collect())
        })
        // At the thread's exit: `socket` went with the closure, closed.
        .unwrap_or_else(|_| (None, VecDeque::new()));
    drop((socket, overdue));
}

/// How many of the oldest in `waiting` (oldest first) are to be closed `now`: those that
/// waited for [`MAX_WAIT`], and as many more as are over [`MAX_WAITING`].
fn overdue<T>(waiting: &VecDeque<(Instant, T)>, now: Instant) -> usize {
    let expired = waiting
        .iter()
        .position(|(since, _)| now.duration_since(*since) < MAX_WAIT)
        .unwrap_or(waiting.len());
    expired.max(waiting.len().saturating_sub(MAX_WAITING))
}

/// A connection's socket, closed as this module says when dropped.
pub(crate) struct Closing {
    /// `None` only once dropped.
    socket: Option<Finished>,
}

impl Closing {
    /// `stream`, holding `permit` (its place under the listener's connection cap) until closed.
    pub(crate) fn new(stream: TcpStream, permit: Option<OwnedSemaphorePermit>) -> Self {
        Self {
            socket: Some(Finished {
                stream,
                _permit: permit,
            }),
        }
    }

    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        self.socket
            .as_mut()
            .map(|socket| Pin::new(&mut socket.stream))
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        if let Some(socket) = self.socket.take() {
            finished(socket);
        }
    }
}

impl AsyncRead for Closing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.stream()?.poll_read(cx, buf)
    }
}

impl AsyncWrite for Closing {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream()?.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket
            .as_ref()
            .is_some_and(|socket| socket.stream.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream()?.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream()?.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair over loopback: (the server's end, the client's end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    /// Runs `test` as on a connection thread: its runtime, sockets waiting to be closed.
    fn on_a_connection_thread(test: impl Future<Output = ()>) {
        let runtime = super::super::threads::connection_runtime().unwrap();
        runtime.block_on(async {
            // As the runtime does when it first parks (a connection thread parks as soon as
            // it has nothing to do, normally before its first connection).
            close_waiting();
            test.await;
        });
    }

    /// The client's end sees the server's close (end of file); a failure after 10 s.
    async fn closed_by_server(client: &mut TcpStream) {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), client.read(&mut byte))
            .await
            .expect("the server closes the connection");
        assert_eq!(read.unwrap(), 0);
    }

    /// Nothing from the server yet: neither a byte nor its close.
    fn nothing_from_server(client: &TcpStream) {
        let mut byte = [0u8; 1];
        let err = client.try_read(&mut byte).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    /// On a connection thread, a finished connection's socket is closed when the thread has
    /// nothing else to do, not when it is dropped.
    #[test]
    fn a_finished_connection_is_closed_when_its_thread_has_nothing_else_to_do() {
        on_a_connection_thread(async {
            let (server, mut client) = pair().await;
            drop(Closing::new(server, None));
            assert_eq!(waiting(), 1);
            nothing_from_server(&client);
            // Waiting on the client parks the thread: the socket is closed then.
            closed_by_server(&mut client).await;
            assert_eq!(waiting(), 0);
        });
    }

    /// Many sockets waiting are closed a batch at a time, each batch in an idle moment of the
    /// thread, until none waits.
    #[test]
    fn many_waiting_sockets_are_closed_a_batch_at_a_time() {
        on_a_connection_thread(async {
            let (mut servers, mut clients) = (Vec::new(), Vec::new());
            for _ in 0..2 * CLOSE_BATCH + 1 {
                let (server, client) = pair().await;
                servers.push(Closing::new(server, None));
                clients.push(client);
            }
            // All at once, as in a burst: the thread does not park in between.
            drop(servers);
            assert_eq!(waiting(), 2 * CLOSE_BATCH + 1);
            close_waiting();
            assert_eq!(waiting(), CLOSE_BATCH + 1);
            for client in &mut clients {
                closed_by_server(client).await;
            }
            assert_eq!(waiting(), 0);
        });
    }

    /// A socket that waits to be closed keeps its place under the connection cap until it is.
    #[test]
    fn a_waiting_socket_counts_against_the_connection_cap() {
        on_a_connection_thread(async {
            let cap = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
            let (server, mut client) = pair().await;
            let permit = cap.clone().try_acquire_owned().unwrap();
            drop(Closing::new(server, Some(permit)));
            assert_eq!(waiting(), 1);
            assert_eq!(cap.available_permits(), 0);
            closed_by_server(&mut client).await;
            assert_eq!(cap.available_permits(), 1);
        });
    }

    /// A thread that is never idle closes a socket that has waited for `MAX_WAIT` when the
    /// next one finishes.
    #[test]
    fn a_busy_thread_closes_a_socket_that_waited_too_long() {
        on_a_connection_thread(async {
            let (first, mut first_client) = pair().await;
            let (second, second_client) = pair().await;
            drop(Closing::new(first, None));
            // Busy: the thread does not park meanwhile.
            std::thread::sleep(MAX_WAIT);
            drop(Closing::new(second, None));
            assert_eq!(waiting(), 1, "the first one closed, the second waiting");
            nothing_from_server(&second_client);
            closed_by_server(&mut first_client).await;
        });
    }

    /// Elsewhere than on a connection thread a socket is closed when dropped.
    #[tokio::test]
    async fn elsewhere_a_socket_is_closed_when_dropped() {
        let (server, mut client) = pair().await;
        drop(Closing::new(server, None));
        assert_eq!(waiting(), 0);
        closed_by_server(&mut client).await;
    }

    /// Closed now: those that waited `MAX_WAIT`, and the oldest beyond `MAX_WAITING`.
    #[test]
    fn the_overdue_are_the_oldest_over_either_bound() {
        let now = Instant::now();
        let at = |ago_ms: u64| (now - Duration::from_millis(ago_ms), ());
        let fresh: VecDeque<_> = [at(50), at(10), at(0)].into();
        assert_eq!(overdue(&fresh, now), 0);
        let max_wait = MAX_WAIT.as_millis() as u64;
        let some_old: VecDeque<_> =
            [at(max_wait + 5), at(max_wait), at(max_wait - 1), at(0)].into();
        assert_eq!(overdue(&some_old, now), 2);
        let too_many: VecDeque<_> = (0..MAX_WAITING + 3).map(|_| at(0)).collect();
        assert_eq!(overdue(&too_many, now), 3);
        assert_eq!(overdue(&VecDeque::<(Instant, ())>::new(), now), 0);
    }
}
