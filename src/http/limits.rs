//! What bounds the endpoint under abuse, whatever the web config says:
//!
//! * `--web.read-header-timeout`: a connection must complete its TLS
//!   handshake and its first request's headers this long after it is
//!   accepted; on a kept-alive HTTP/1 connection, a request's headers must be
//!   complete this long after its first byte. A client that sends its headers
//!   byte by byte is closed then.
//! * `--web.idle-timeout`: a connection with no request in progress is closed
//!   this long after its last request ended (or after it was accepted). This
//!   also bounds how long a response may take to be written to a client that
//!   does not read it.
//! * `--web.max-header-bytes`: a request whose start line and headers are
//!   larger is answered 431 and its connection closed (HTTP/2: its header
//!   list is refused).
//! * `--web.max-requests`: scrapes (the metrics path and the landing page)
//!   in progress at once; one more is answered 503 at once.
//! * `--web.max-connections`: open connections; one more is closed as soon
//!   as it is accepted.
//!
//! Every connection is served by its own task, so a slow client only ever
//! holds its own connection: never a worker, a lock or another scrape.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The limits, from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Handshake and request headers must arrive within this.
    pub read_header_timeout: Duration,
    /// A connection without a request in progress is closed after this.
    pub idle_timeout: Duration,
    /// Largest request head (start line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Scrapes in progress at once; 0: no limit.
    pub max_requests: usize,
    /// Open connections at once; 0: no limit.
    pub max_connections: usize,
}

/// `--web.read-header-timeout` default.
pub const DEFAULT_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `--web.idle-timeout` default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `--web.max-header-bytes` default.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// `--web.max-requests` default (node_exporter's).
pub const DEFAULT_MAX_REQUESTS: usize = 40;
/// `--web.max-connections` default (Prometheus').
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_requests: DEFAULT_MAX_REQUESTS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl Limits {
    /// Checks the values make sense (positive timeouts, room for a request).
    pub fn check(&self) -> Result<(), String> {
        if self.read_header_timeout.is_zero() {
            return Err("--web.read-header-timeout must be more than 0".into());
        }
        if self.idle_timeout.is_zero() {
            return Err("--web.idle-timeout must be more than 0".into());
        }
        if self.max_header_bytes < 1024 {
            return Err(format!(
                "--web.max-header-bytes {} is too small for a scrape's request: use at least 1024",
                self.max_header_bytes
            ));
        }
        Ok(())
    }

    /// How often a connection's deadlines are checked: a tenth of the
    /// shorter timeout, between 20 ms and 1 s.
    pub(crate) fn tick(&self) -> Duration {
        (self.read_header_timeout.min(self.idle_timeout) / 10)
            .clamp(Duration::from_millis(20), Duration::from_secs(1))
    }
}

/// The toolkit's `rate_limit`: a token bucket holding up to `burst` requests,
/// refilled by one every `interval`. Requests beyond it get 429.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A full bucket.
    pub fn new(interval: Duration, burst: u64) -> RateLimiter {
        RateLimiter {
            interval,
            burst: burst as f64,
            state: Mutex::new((burst as f64, Instant::now())),
        }
    }

    /// Takes a token if there is one.
    pub fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *state;
        let elapsed = now.saturating_duration_since(*last);
        *tokens = (*tokens + elapsed.as_secs_f64() / self.interval.as_secs_f64()).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The 429 answer of the rate limit.
pub fn too_many_requests() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        "Too Many Requests: rate_limit of the web config\n",
    )
        .into_response()
}

/// The scrapes in progress, bounded by `--web.max-requests`.
#[derive(Clone)]
pub struct RequestLimit(Option<Arc<tokio::sync::Semaphore>>);

impl RequestLimit {
    /// `max` at once; 0: no limit.
    pub fn new(max: usize) -> RequestLimit {
        RequestLimit((max > 0).then(|| Arc::new(tokio::sync::Semaphore::new(max))))
    }
}

/// A request's scrape slot, in its extensions: the `/metrics` handler hands a
/// clone to the render, which streams the response and keeps the slot until
/// it has rendered it all (a render waits for a slow client a few seconds at
/// most, see `http::stream`).
#[derive(Clone)]
pub struct ScrapeSlot(pub Arc<tokio::sync::OwnedSemaphorePermit>);

/// Middleware: runs the request if a scrape slot is free, else answers 503
/// at once. The slot is held until the handler has produced its response, and
/// for `/metrics` until the response is rendered ([`ScrapeSlot`]): a client
/// that is slow to read it holds one only while the render waits for it.
pub async fn limit_requests(
    axum::extract::State(limit): axum::extract::State<RequestLimit>,
    request: Request,
    next: Next,
) -> Response {
    let Some(semaphore) = &limit.0 else {
        return next.run(request).await;
    };
    match semaphore.clone().try_acquire_owned() {
        Ok(permit) => {
            let slot = ScrapeSlot(Arc::new(permit));
            let mut request = request;
            request.extensions_mut().insert(slot.clone());
            let response = next.run(request).await;
            drop(slot);
            response
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
            "Service Unavailable: too many scrapes in progress (--web.max-requests)\n",
        )
            .into_response(),
    }
}

/// What one connection is doing, for its deadlines. Times are milliseconds
/// since the connection was accepted.
pub(crate) struct ConnWatch {
    accepted: Instant,
    read_header_timeout: Duration,
    idle_timeout: Duration,
    /// Requests being handled.
    in_flight: AtomicU32,
    /// When the request headers being read must be complete; 0: none expected.
    header_deadline: AtomicU64,
    /// When the last request started or ended (or the connection was accepted).
    last_event: AtomicU64,
    /// Whether a new request's first byte starts a header deadline (HTTP/1;
    /// over HTTP/2 frames flow between requests).
    rearm_on_read: std::sync::atomic::AtomicBool,
}

/// Why a connection was closed by its deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// The handshake or a request's headers took longer than allowed.
    Headers,
    /// No request for longer than the idle timeout.
    Idle,
}

impl ConnWatch {
    /// A connection accepted now: its handshake and first request's headers
    /// are due within the header timeout.
    pub(crate) fn new(limits: &Limits, accepted: Instant) -> Arc<ConnWatch> {
        let watch = ConnWatch {
            accepted,
            read_header_timeout: limits.read_header_timeout,
            idle_timeout: limits.idle_timeout,
            in_flight: AtomicU32::new(0),
            header_deadline: AtomicU64::new(0),
            last_event: AtomicU64::new(0),
            rearm_on_read: std::sync::atomic::AtomicBool::new(true),
        };
        watch.header_deadline.store(
            watch.millis(accepted + limits.read_header_timeout).max(1),
            Ordering::Release,
        );
        Arc::new(watch)
    }

    /// When the handshake (and then the first headers) must be done.
    pub(crate) fn handshake_deadline(&self) -> Instant {
        self.accepted + self.read_header_timeout
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.accepted).as_millis()).unwrap_or(u64::MAX)
    }

    /// HTTP/2: only the first request's headers have a deadline.
    pub(crate) fn http2(&self) {
        self.rearm_on_read.store(false, Ordering::Release);
    }

    /// Bytes arrived: if no request is in progress, they start one whose
    /// headers must be complete in time.
    fn on_read(&self) {
        if self.rearm_on_read.load(Ordering::Acquire)
            && self.in_flight.load(Ordering::Acquire) == 0
            && self.header_deadline.load(Ordering::Acquire) == 0
        {
            let deadline = self
                .millis(Instant::now() + self.read_header_timeout)
                .max(1);
            let _ = self.header_deadline.compare_exchange(
                0,
                deadline,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// A request's headers are complete and it is being handled, until the
    /// returned guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.header_deadline.store(0, Ordering::Release);
        self.last_event
            .store(self.millis(Instant::now()), Ordering::Release);
        InFlight(self.clone())
    }

    /// Whether a deadline has passed at `now`.
    pub(crate) fn expired(&self, now: Instant) -> Option<Expired> {
        let now_ms = self.millis(now);
        let header = self.header_deadline.load(Ordering::Acquire);
        if header != 0 && now_ms >= header {
            return Some(Expired::Headers);
        }
        let idle_ms = u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        if self.in_flight.load(Ordering::Acquire) == 0
            && now_ms.saturating_sub(self.last_event.load(Ordering::Acquire)) >= idle_ms
        {
            return Some(Expired::Idle);
        }
        None
    }
}

/// A request in progress on a connection.
pub(crate) struct InFlight(Arc<ConnWatch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let watch = &self.0;
        watch
            .last_event
            .store(watch.millis(Instant::now()), Ordering::Release);
        watch.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's stream, telling its [`ConnWatch`] when bytes arrive.
pub(crate) struct Watched<S> {
    inner: S,
    watch: Arc<ConnWatch>,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, watch: Arc<ConnWatch>) -> Watched<S> {
        Watched { inner, watch }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.on_read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(header_ms: u64, idle_ms: u64) -> Limits {
        Limits {
            read_header_timeout: Duration::from_millis(header_ms),
            idle_timeout: Duration::from_millis(idle_ms),
            ..Limits::default()
        }
    }

    #[test]
    fn token_bucket() {
        let limiter = RateLimiter::new(Duration::from_secs(1), 2);
        let t0 = Instant::now();
        assert!(limiter.allow_at(t0));
        assert!(limiter.allow_at(t0));
        assert!(!limiter.allow_at(t0));
        assert!(!limiter.allow_at(t0 + Duration::from_millis(900)));
        assert!(limiter.allow_at(t0 + Duration::from_millis(1000)));
        // Refills no further than the burst.
        let later = t0 + Duration::from_secs(100);
        assert!(limiter.allow_at(later));
        assert!(limiter.allow_at(later));
        assert!(!limiter.allow_at(later));
    }

    #[test]
    fn the_first_headers_are_due_from_the_accept() {
        let t0 = Instant::now();
        let watch = ConnWatch::new(&limits(1000, 60_000), t0);
        assert_eq!(watch.expired(t0 + Duration::from_millis(999)), None);
        assert_eq!(
            watch.expired(t0 + Duration::from_millis(1000)),
            Some(Expired::Headers)
        );
    }

    #[test]
    fn a_request_in_progress_is_never_idle() {
        let t0 = Instant::now();
        let watch = ConnWatch::new(&limits(1000, 2000), t0);
        let request = watch.begin();
        // Headers are complete: no header deadline; in progress: not idle.
        assert_eq!(watch.expired(t0 + Duration::from_secs(30)), None);
        drop(request);
        let ended = Instant::now();
        assert_eq!(watch.expired(ended + Duration::from_millis(1900)), None);
        assert_eq!(
            watch.expired(ended + Duration::from_millis(2100)),
            Some(Expired::Idle)
        );
    }

    #[test]
    fn the_next_request_is_due_from_its_first_byte() {
        let t0 = Instant::now();
        let watch = ConnWatch::new(&limits(1000, 60_000), t0);
        drop(watch.begin());
        assert_eq!(watch.expired(t0 + Duration::from_secs(5)), None);
        watch.on_read();
        let first_byte = Instant::now();
        assert_eq!(watch.expired(first_byte + Duration::from_millis(900)), None);
        assert_eq!(
            watch.expired(first_byte + Duration::from_millis(1100)),
            Some(Expired::Headers)
        );
        // Over HTTP/2 bytes between requests start nothing.
        let h2 = ConnWatch::new(&limits(1000, 60_000), t0);
        h2.http2();
        drop(h2.begin());
        h2.on_read();
        assert_eq!(h2.expired(Instant::now() + Duration::from_secs(5)), None);
    }

    #[test]
    fn limits_are_checked() {
        assert!(Limits::default().check().is_ok());
        assert!(limits(0, 1).check().is_err());
        assert!(limits(1, 0).check().is_err());
        let small = Limits {
            max_header_bytes: 100,
            ..Limits::default()
        };
        assert!(small.check().is_err());
        assert_eq!(Limits::default().tick(), Duration::from_secs(1));
        assert_eq!(limits(100, 100).tick(), Duration::from_millis(20));
    }

    #[tokio::test]
    async fn one_scrape_too_many_gets_503_at_once() {
        use axum::routing::get;
        use axum::Router;
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let app = Router::new()
            .route(
                "/metrics",
                get(move || {
                    let mut release = release_rx.clone();
                    async move {
                        let _ = release.wait_for(|r| *r).await;
                        "scraped"
                    }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                RequestLimit::new(2),
                limit_requests,
            ));
        let call = |app: Router| async move {
            use tower_service_call::call;
            call(app, "/metrics").await
        };
        let first = tokio::spawn(call(app.clone()));
        let second = tokio::spawn(call(app.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let third = call(app.clone()).await;
        assert_eq!(third, StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_millis(100));
        release_tx.send(true).unwrap();
        assert_eq!(first.await.unwrap(), StatusCode::OK);
        assert_eq!(second.await.unwrap(), StatusCode::OK);
        assert_eq!(call(app).await, StatusCode::OK);
    }

    /// Calls a router in process.
    mod tower_service_call {
        use axum::body::Body;
        use axum::http::{Request, StatusCode};
        use axum::Router;
        use hyper_util::service::TowerToHyperService;

        pub async fn call(app: Router, path: &str) -> StatusCode {
            use hyper::service::Service as _;
            let service = TowerToHyperService::new(app);
            let request = Request::get(path).body(Body::empty()).unwrap();
            service.call(request).await.unwrap().status()
        }
    }
}
