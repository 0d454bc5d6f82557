//! Accepting and serving connections: TLS when the web config says so,
//! HTTP/1.1 (and HTTP/2 when negotiated through ALPN), each connection in its
//! own task under the deadlines of [`super::limits`].

use super::limits::{ConnWatch, Expired, Limits, Watched};
use super::reload::WebConfig;
use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// How long shutdown waits for requests in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `shutdown` resolves, then lets the
/// requests in progress finish (up to 5 s).
pub async fn run(
    listener: TcpListener,
    app: Router,
    web: Arc<WebConfig>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = u32::try_from(limits.max_connections)
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(u32::MAX >> 3);
    let connections = Arc::new(Semaphore::new(slots as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = Arc::new(limits);
    let mut refused = 0u64;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: let some close.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let accepted_at = Instant::now();
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    "{refused} connection(s) refused so far: {} open already (--web.max-connections)",
                    limits.max_connections
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            peer,
            accepted_at,
            permit,
            app.clone(),
            web.clone(),
            limits.clone(),
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connections.acquire_many(slots)).await;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    accepted_at: Instant,
    _slot: OwnedSemaphorePermit,
    app: Router,
    web: Arc<WebConfig>,
    limits: Arc<Limits>,
    stop: watch::Receiver<bool>,
) {
    // A changed certificate (or any web config file) is read before this
    // connection's handshake; the file reads happen off the async workers.
    if web.changed() {
        let web = web.clone();
        let _ = tokio::task::spawn_blocking(move || web.refresh()).await;
    }
    let settings = web.current();
    let watch = ConnWatch::new(&limits, accepted_at);
    match &settings.tls {
        None => {
            serve_http1(
                Watched::new(stream, watch.clone()),
                peer,
                app,
                &limits,
                watch,
                stop,
            )
            .await
        }
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
            let deadline = tokio::time::Instant::from_std(watch.handshake_deadline());
            let handshake = super::tls::during_handshake(peer.ip(), acceptor.accept(stream));
            let stream = match tokio::time::timeout_at(deadline, handshake).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    super::tls::handshake_failed(peer.ip(), &e);
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake not done within --web.read-header-timeout");
                    return;
                }
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = Watched::new(stream, watch.clone());
            if h2 {
                watch.http2();
                serve_http2(io, peer, app, &limits, watch, stop).await
            } else {
                serve_http1(io, peer, app, &limits, watch, stop).await
            }
        }
    }
}

/// The router as a hyper service that tells `watch` when each request is in progress.
fn service(
    app: Router,
    watch: Arc<ConnWatch>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    let app = TowerToHyperService::new(app);
    hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        use hyper::service::Service as _;
        let in_flight = watch.begin();
        let response = app.call(request);
        async move {
            let response = response.await;
            drop(in_flight);
            response
        }
    })
}

async fn serve_http1<S>(
    io: Watched<S>,
    peer: SocketAddr,
    app: Router,
    limits: &Limits,
    watch: Arc<ConnWatch>,
    stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Our own deadlines apply (ConnWatch): hyper's would also close
        // kept-alive connections between scrapes.
        .header_read_timeout(None)
        .max_header_size(limits.max_header_bytes)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service(app, watch.clone()));
    drive(conn, |c| c.graceful_shutdown(), peer, limits, &watch, stop).await
}

async fn serve_http2<S>(
    io: Watched<S>,
    peer: SocketAddr,
    app: Router,
    limits: &Limits,
    watch: Arc<ConnWatch>,
    stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(100);
    let conn = builder.serve_connection(TokioIo::new(io), service(app, watch.clone()));
    drive(conn, |c| c.graceful_shutdown(), peer, limits, &watch, stop).await
}

/// Runs a connection until it ends, a deadline passes (it is then dropped,
/// which closes it) or the server stops (it then finishes what is in progress).
async fn drive<C>(
    conn: C,
    graceful: impl Fn(Pin<&mut C>),
    peer: SocketAddr,
    limits: &Limits,
    watch: &ConnWatch,
    mut stop: watch::Receiver<bool>,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(conn);
    let mut stopping = false;
    let mut tick = tokio::time::interval(limits.tick());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    graceful(conn.as_mut());
                }
            }
            _ = tick.tick() => {
                if let Some(why) = watch.expired(Instant::now()) {
                    match why {
                        Expired::Headers => tracing::debug!(%peer, "closing: request headers not complete within --web.read-header-timeout"),
                        Expired::Idle => tracing::debug!(%peer, "closing: idle for --web.idle-timeout"),
                    }
                    return;
                }
            }
        }
    }
}
