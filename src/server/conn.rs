//! Per-connection client limits that hyper does not enforce on its own: the deadline
//! for the first request head, and the idle timeout between requests.
//!
//! hyper-util's auto builder reads the protocol preface (to tell HTTP/1 from HTTP/2)
//! with no timer, and hyper's HTTP/1 `header_read_timeout` only starts after that, so a
//! socket that sends nothing (or a few bytes) would be held forever. [`Activity`] wraps
//! the socket to see every read and write, and the service marks each request it is
//! handed; [`Activity::watch`] closes the connection when no request head arrived within
//! `server.header_read_timeout_secs` of the accept, or when no request is in flight and
//! nothing moved for `server.idle_timeout_secs` (HTTP/1 keep-alive and HTTP/2 alike).
//! When every connection slot is taken, the accept loop signals [`Pressure`]: then a
//! connection that has sent no request head, or sits idle, for [`PRESSURE_GRACE`] is
//! closed at once, so a flood of silent sockets cannot keep honest clients waiting for
//! the full timeouts.
//! hyper's own limits (header read timeout for later heads, head size, HTTP/2 pings)
//! are set in [`super::serve`].
//!
//! The wrapper also measures a connection's first request line: hyper reads a whole
//! head into its buffer before parsing it, so a request target longer than that buffer
//! (`server.max_request_head_bytes`) would get hyper's 431 instead of the 414 every other
//! over-long URL gets. A first line past `line_limit` bytes is answered with the
//! `refusal` bytes it is given (a ready 414) and the connection is closed, without hyper
//! buffering the rest. This module knows nothing of routes or responses.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// What a connection has been doing, shared by its socket wrapper, its service and its
/// watchdog.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    /// Milliseconds since `opened` of the last byte read or written.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// A complete request head has been seen.
    started: AtomicBool,
    /// Wakes the watchdog from its wait for the first request head.
    first_request: tokio::sync::Notify,
}

/// How long a connection may wait silently (no request head yet, or idle between
/// requests) while others wait for its slot.
pub const PRESSURE_GRACE: Duration = Duration::from_secs(1);

/// "All connection slots are taken": raised by the accept loop (again every
/// [`PRESSURE_GRACE`] / 4 while it lasts), heard by every connection's watchdog.
#[derive(Debug, Default)]
pub struct Pressure(tokio::sync::Notify);

impl Pressure {
    pub fn raise(&self) {
        self.0.notify_waiters();
    }
}

/// Why the watchdog closed a connection (for the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    NoRequestHead,
    Idle,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            first_request: tokio::sync::Notify::new(),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Marks a request as handed to the service; the guard marks it finished.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if !self.started.swap(true, Ordering::Relaxed) {
            // A stored permit if the watchdog is not waiting yet: it sees `started` anyway.
            self.first_request.notify_one();
        }
        InFlight(self.clone())
    }

    /// Resolves when the connection should be closed: no request head within
    /// `head_timeout` of the accept, or idle (no request in flight, no bytes moved) for
    /// `idle_timeout`; both shrink to [`PRESSURE_GRACE`] while `pressure` is raised.
    /// Never resolves for a connection that keeps working.
    pub async fn watch(
        &self,
        head_timeout: Duration,
        idle_timeout: Duration,
        pressure: &Pressure,
    ) -> Closed {
        // Raised within the last grace period: the accept loop raises it again and again
        // while the slots stay full, so this ends soon after the pressure does.
        let mut squeezed_until: Option<Instant> = None;
        loop {
            let squeezed = squeezed_until.is_some_and(|until| Instant::now() < until);
            let (head, idle) = if squeezed {
                (
                    head_timeout.min(PRESSURE_GRACE),
                    idle_timeout.min(PRESSURE_GRACE),
                )
            } else {
                (head_timeout, idle_timeout)
            };
            let raised = pressure.0.notified();
            let now = Instant::now();
            if !self.started.load(Ordering::Relaxed) {
                let head_deadline = self.opened + head;
                if now >= head_deadline {
                    return Closed::NoRequestHead;
                }
                // Until the deadline or the first request, whichever comes first: from
                // then on the idle clock applies.
                tokio::select! {
                    () = tokio::time::sleep_until(head_deadline) => {}
                    () = self.first_request.notified() => {}
                    () = raised => squeezed_until = Some(Instant::now() + PRESSURE_GRACE),
                }
                continue;
            }
            let last = self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let idle_deadline = last + idle;
            // A request being worked on: look again after a full idle period.
            let wake = if self.in_flight.load(Ordering::Relaxed) > 0 {
                now + idle_timeout
            } else if now >= idle_deadline {
                return Closed::Idle;
            } else {
                idle_deadline
            };
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = raised => squeezed_until = Some(Instant::now() + PRESSURE_GRACE),
            }
        }
    }
}

/// One request in flight on a connection; dropping it (the response is ready, or the
/// request was abandoned) counts as activity.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket that records in [`Activity`] every read or write that moved bytes, and
/// refuses a first request line longer than its limit (see the module comment).
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    first_line: FirstLine,
}

/// How far the first request line has got.
enum FirstLine {
    /// This many bytes read and no line feed yet.
    Reading {
        seen: usize,
        limit: usize,
        refusal: Bytes,
    },
    /// Over the limit: the refusal is being written (from this offset), then EOF.
    Refusing { refusal: Bytes, written: usize },
    /// Seen whole (or refused and written): nothing more to check.
    Done,
}

impl<S> Watched<S> {
    /// `refusal` is written, whole, in place of serving a first request line over
    /// `line_limit` bytes.
    pub fn new(inner: S, activity: Arc<Activity>, line_limit: usize, refusal: Bytes) -> Self {
        let first_line = FirstLine::Reading {
            seen: 0,
            limit: line_limit,
            refusal,
        };
        Watched {
            inner,
            activity,
            first_line,
        }
    }
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    /// Writes what is left of the refusal; `Ready` once it is all out (or the peer left).
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let FirstLine::Refusing { refusal, written } = &mut self.first_line {
            match Pin::new(&mut self.inner).poll_write(cx, &refusal[*written..]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(n)) if n > 0 && *written + n < refusal.len() => *written += n,
                // Written, or the peer is gone: either way the connection ends here.
                Poll::Ready(_) => self.first_line = FirstLine::Done,
            }
        }
        Poll::Ready(())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if matches!(self.first_line, FirstLine::Refusing { .. }) {
            // EOF to hyper once the 414 is out: it closes the connection.
            return self.poll_refusal(cx).map(Ok);
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if read.is_empty() {
            return polled;
        }
        self.activity.touch();
        if let FirstLine::Reading {
            seen,
            limit,
            refusal,
        } = &mut self.first_line
        {
            let end = read.iter().position(|&b| b == b'\n');
            if *seen + end.unwrap_or(read.len()) > *limit {
                self.first_line = FirstLine::Refusing {
                    refusal: refusal.clone(),
                    written: 0,
                };
                // hyper never sees the line.
                buf.set_filled(before);
                return self.poll_refusal(cx).map(Ok);
            }
            match end {
                Some(_) => self.first_line = FirstLine::Done,
                None => *seen += read.len(),
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_request_head_closes_at_the_head_deadline() {
        let activity = Activity::new();
        let closed = activity
            .watch(
                Duration::from_millis(200),
                Duration::from_secs(60),
                &Pressure::default(),
            )
            .await;
        assert_eq!(closed, Closed::NoRequestHead);
        assert!(activity.opened.elapsed() >= Duration::from_millis(200));
        assert!(activity.opened.elapsed() < Duration::from_secs(2));
    }

    /// A `Watched` end of a pipe (as hyper would read it) and the peer's end.
    fn pipe(limit: usize) -> (Watched<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (ours, peer) = tokio::io::duplex(1 << 20);
        let refusal = Bytes::from_static(b"HTTP/1.1 414 URI Too Long\r\n\r\n");
        (Watched::new(ours, Activity::new(), limit, refusal), peer)
    }

    #[tokio::test]
    async fn a_first_line_over_the_limit_is_answered_with_the_refusal_and_eof() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for sent in [
            format!("GET /?{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200)),
            // No line feed at all: refused as soon as the limit is passed.
            "a".repeat(300),
        ] {
            let (mut ours, mut peer) = pipe(100);
            peer.write_all(sent.as_bytes()).await.unwrap();
            let mut seen = Vec::new();
            ours.read_to_end(&mut seen).await.unwrap();
            assert!(
                seen.len() <= 100,
                "{} bytes of the line reached hyper",
                seen.len()
            );
            let mut answer = vec![0; 64];
            let n = peer.read(&mut answer).await.unwrap();
            assert_eq!(&answer[..n], b"HTTP/1.1 414 URI Too Long\r\n\r\n");
        }
    }

    #[tokio::test]
    async fn lines_within_the_limit_and_everything_after_the_first_pass_untouched() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut ours, mut peer) = pipe(100);
        let head = format!("GET /x HTTP/1.1\r\nX-Long: {}\r\n\r\n", "b".repeat(500));
        peer.write_all(head.as_bytes()).await.unwrap();
        drop(peer);
        let mut seen = Vec::new();
        ours.read_to_end(&mut seen).await.unwrap();
        assert_eq!(seen, head.as_bytes());
    }

    #[tokio::test]
    async fn idle_after_a_request_closes_but_a_long_request_does_not() {
        let activity = Activity::new();
        let request = activity.request();
        let pressure = Pressure::default();
        let watching = activity.watch(
            Duration::from_millis(50),
            Duration::from_millis(200),
            &pressure,
        );
        tokio::pin!(watching);
        // Five idle periods of work with no bytes moving: not idle.
        tokio::select! {
            _ = &mut watching => panic!("closed during a request"),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        drop(request);
        let finished = Instant::now();
        assert_eq!(watching.await, Closed::Idle);
        assert!(finished.elapsed() >= Duration::from_millis(200));
    }
}
