//! The HTTP side: `/metrics` (text, OpenMetrics or protobuf, gzip when asked,
//! streamed as it is rendered),
//! a landing page at `/` that links to it, sums up, lists problems first, then
//! programs and processes, and explains a process at `/?pid=N` (with
//! `--web.enable-explain`); and
//! the health endpoints `/-/healthy` and `/-/ready` (as Prometheus names them).
//! The web config (`--web.config.file`, the exporter toolkit's format) adds
//! TLS, basic authentication, response headers and a rate limit; the limits
//! of [`limits`] bound what a client can hold.

mod auth;
mod landing;
pub mod limits;
mod reload;
mod server;
mod stream;
mod tls;
mod web_config;

pub use auth::parse_basic;
pub use limits::Limits;
pub use reload::WebConfig;
pub use tls::{client_sans, verify_client_chain};
pub use web_config::WebConfigError;

use crate::exporter::Exporter;
use crate::metrics::encode::{Encoder, Format, Sink};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::{Arc, OnceLock};

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `host:port`, or `:port` for all interfaces.
    pub listen_address: String,
    /// Path of the metrics endpoint.
    pub metrics_path: String,
    /// Serve `POST /-/reload` (`--web.enable-lifecycle`).
    pub enable_lifecycle: bool,
    /// Serve the process explainer at `/?pid=N` (`--web.enable-explain`): it
    /// describes any process of the host, so it is off unless asked for.
    pub enable_explain: bool,
    /// The web config file (TLS, basic auth, headers), if any.
    pub web_config_file: Option<std::path::PathBuf>,
    /// What bounds a client.
    pub limits: Limits,
}

/// Reads the web config of `options` (plain HTTP without one) and checks the
/// limits; every problem is an error, with `file:line:column` for the file's.
pub fn load_web_config(options: &ServerOptions) -> anyhow::Result<Arc<WebConfig>> {
    options.limits.check().map_err(anyhow::Error::msg)?;
    let web = match &options.web_config_file {
        Some(path) => WebConfig::load(path)?,
        None => WebConfig::plain(),
    };
    Ok(Arc::new(web))
}

/// The exporter, once its startup attaches are done. The server listens
/// before that, so that `/-/healthy` answers while programs compile and attach;
/// until then `/-/ready`, the metrics and the landing page answer 503.
pub type Readiness = Arc<OnceLock<Arc<Exporter>>>;

#[derive(Clone)]
struct AppState {
    exporter: Readiness,
    metrics_path: Arc<str>,
    enable_lifecycle: bool,
    enable_explain: bool,
}

impl AppState {
    /// The exporter, once it is ready.
    fn ready(&self) -> Option<Arc<Exporter>> {
        self.exporter.get().cloned()
    }
}

fn starting() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "Service Unavailable: the exporter is still loading and attaching its programs.\n",
    )
        .into_response()
}

/// Normalizes `:8080` to `0.0.0.0:8080`.
pub fn normalize_address(address: &str) -> String {
    if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_string()
    }
}

/// Binds the listener, with an error that says what to do when the port is taken.
pub async fn bind(address: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let address = normalize_address(address);
    tokio::net::TcpListener::bind(&address).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "; another process holds that port: stop it or choose another with --listen-address"
            }
            std::io::ErrorKind::PermissionDenied => "; ports below 1024 need CAP_NET_BIND_SERVICE",
            _ => "",
        };
        anyhow::anyhow!("cannot listen on {address}: {e}{hint}")
    })
}

/// Serves until `shutdown` resolves; `exporter` is filled in once startup is
/// done. `web` is the web config from [`load_web_config`], watched from here on.
pub async fn serve(
    listener: tokio::net::TcpListener,
    exporter: Readiness,
    options: &ServerOptions,
    web: Arc<WebConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState {
        exporter,
        metrics_path: options.metrics_path.clone().into(),
        enable_lifecycle: options.enable_lifecycle,
        enable_explain: options.enable_explain,
    };
    let scrapes = limits::RequestLimit::new(options.limits.max_requests);
    let limited = |route: axum::routing::MethodRouter<AppState>| {
        route.layer(axum::middleware::from_fn_with_state(
            scrapes.clone(),
            limits::limit_requests,
        ))
    };
    let mut app = Router::new()
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/-/reload", axum::routing::post(reload))
        .route(&options.metrics_path, limited(get(metrics)));
    if options.metrics_path != "/" {
        app = app.route("/", limited(get(landing_page)));
    }
    let app = app
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(web.clone(), guard));
    tracing::info!(
        "web endpoint: {}{}",
        web.current().describe(),
        web.path()
            .map(|p| format!(" (from {}, reloaded when it changes)", p.display()))
            .unwrap_or_default()
    );
    if options.enable_explain {
        let current = web.current();
        if current.auth.is_none() && current.tls.is_none() {
            tracing::warn!(
                "--web.enable-explain on plain HTTP without authentication: anyone who reaches {} can have any process of this host described at /?pid=N (executable, parent, cgroup, container, pod); set up basic auth or client certificates in --web.config.file, or use `check --pid N` on the host",
                options.listen_address
            );
        } else {
            tracing::info!(
                "/?pid=N describes any process of this host to every client the web config admits"
            );
        }
    }
    web.spawn_watcher();
    server::run(listener, app, web, options.limits.clone(), shutdown).await?;
    Ok(())
}

/// The paths that answer without authentication or rate limit, so that
/// liveness and readiness probes need no credentials.
fn is_health(path: &str) -> bool {
    path == "/-/healthy" || path == "/-/ready"
}

/// Applies the web config in force to every request: the rate limit (429)
/// and basic authentication (401) except on the health paths, and the
/// configured headers on every response.
async fn guard(
    State(web): State<Arc<WebConfig>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let settings = web.current();
    let mut response = if is_health(request.uri().path()) {
        next.run(request).await
    } else if settings.rate_limit.as_ref().is_some_and(|r| !r.allow()) {
        limits::too_many_requests()
    } else {
        match &settings.auth {
            None => next.run(request).await,
            Some(users) => match users.check(request.headers()).await {
                auth::Verdict::Allowed => next.run(request).await,
                auth::Verdict::Denied => auth::unauthorized(),
                auth::Verdict::Busy => auth::busy(),
            },
        }
    };
    let headers = response.headers_mut();
    for (name, value) in &settings.headers {
        headers.insert(name.clone(), value.clone());
    }
    response
}

/// 200 while the process serves.
async fn healthy() -> &'static str {
    "ebpf-userspace-exporter is Healthy.\n"
}

/// 200 once the startup attaches are done, 503 before.
async fn ready(State(state): State<AppState>) -> Response {
    match state.ready() {
        Some(_) => "ebpf-userspace-exporter is Ready.\n".into_response(),
        None => starting(),
    }
}

/// `POST /-/reload`: reloads the config as SIGHUP does; 200 when the new
/// config is in force, 500 with the errors when nothing changed, 403 without
/// `--web.enable-lifecycle`. Other methods get 405.
async fn reload(State(state): State<AppState>) -> Response {
    if !state.enable_lifecycle {
        return (
            StatusCode::FORBIDDEN,
            "Lifecycle API is not enabled (--web.enable-lifecycle).\n",
        )
            .into_response();
    }
    let Some(exporter) = state.ready() else {
        return starting();
    };
    match tokio::task::spawn_blocking(move || exporter.reload_config()).await {
        Ok(Ok(())) => "config reloaded\n".into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("config reload failed, nothing changed:\n{e}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed: {e}\n"),
        )
            .into_response(),
    }
}

/// `/metrics`: the exposition in the negotiated format, gzipped when the
/// client allows it, streamed as it is rendered ([`stream`]). The render
/// holds the request's scrape slot until it ends.
async fn metrics(
    State(state): State<AppState>,
    slot: Option<axum::Extension<limits::ScrapeSlot>>,
    headers: HeaderMap,
) -> Response {
    let Some(exporter) = state.ready() else {
        return starting();
    };
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    let (sender, body) = stream::channel(stream::QUEUE_BYTES, stream::STALL_BUDGET);
    let sink: Box<dyn Sink> = if gzip {
        Box::new(stream::Gzip::new(sender))
    } else {
        Box::new(sender)
    };
    let enc = Encoder::streaming(format, sink, stream::CHUNK_BYTES);
    // Map reads are syscalls: keep them off the async workers. A panic there
    // drops the sender unfinished, which cuts the response short.
    let slot = slot.map(|s| s.0);
    tokio::task::spawn_blocking(move || {
        exporter.scrape(enc);
        drop(slot);
    });
    let mut builder = Response::builder().header(header::CONTENT_TYPE, format.content_type());
    if gzip {
        builder = builder.header(header::CONTENT_ENCODING, "gzip");
    }
    builder
        .header(header::VARY, "Accept, Accept-Encoding")
        .body(Body::new(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Whether an Accept-Encoding header allows gzip: gzip's own entries decide
/// when there are any, else `*`'s; q=0 (`q` in any case) refuses (RFC 9110
/// §12.5.3: `*` stands for the codings not listed).
pub fn accepts_gzip(header: &str) -> bool {
    let (mut gzip, mut any) = (None, None);
    for part in header.split(',') {
        let mut pieces = part.split(';');
        let coding = pieces.next().unwrap_or("").trim();
        let refused = pieces.any(|p| {
            p.split_once('=').is_some_and(|(key, q)| {
                key.trim().eq_ignore_ascii_case("q") && q.trim().parse::<f64>().ok() == Some(0.0)
            })
        });
        let entry = if coding.eq_ignore_ascii_case("gzip") {
            &mut gzip
        } else if coding == "*" {
            &mut any
        } else {
            continue;
        };
        *entry = Some(entry.unwrap_or(false) || !refused);
    }
    gzip.or(any).unwrap_or(false)
}

/// `/`, and `/?pid=N` with process N explained against the running programs:
/// 400 for a pid that is not one, 404 for no such process (the page either
/// way); 403 without `--web.enable-explain`.
async fn landing_page(
    State(state): State<AppState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let Some(exporter) = state.ready() else {
        return starting();
    };
    let path = state.metrics_path.clone();
    let asked = query
        .as_deref()
        .and_then(|q| landing::query_param(q, "pid"))
        .filter(|pid| !pid.trim().is_empty());
    if asked.is_some() && !state.enable_explain {
        return (StatusCode::FORBIDDEN, EXPLAIN_OFF).into_response();
    }
    let enabled = state.enable_explain;
    let page = tokio::task::spawn_blocking(move || {
        let published = exporter.published();
        let explain = match asked {
            None if !enabled => landing::ExplainView::Off,
            None => landing::ExplainView::None,
            Some(text) => {
                let programs: Vec<crate::exporter::ExplainProgram<'_>> = published
                    .programs
                    .iter()
                    .map(|p| crate::exporter::ExplainProgram {
                        config: &p.prepared.config,
                        selector: &p.prepared.selector,
                        probes: &p.prepared.probes,
                    })
                    .collect();
                match crate::exporter::parse_pid(&text).and_then(|pid| {
                    // This page may be open to the network: command lines may hold secrets.
                    crate::exporter::explain_pid(
                        pid,
                        &programs,
                        crate::discovery::CommandLines::Hidden,
                    )
                }) {
                    Ok(explained) => landing::ExplainView::Explained(Box::new(explained)),
                    Err(e) => landing::ExplainView::Failed(text, e),
                }
            }
        };
        let status = match &explain {
            landing::ExplainView::Failed(_, crate::exporter::ExplainError::BadPid(_)) => {
                StatusCode::BAD_REQUEST
            }
            landing::ExplainView::Failed(..) => StatusCode::NOT_FOUND,
            _ => StatusCode::OK,
        };
        let page = landing::render(
            &published,
            &exporter.broken(),
            &exporter.reload_status(),
            &path,
            &explain,
        );
        (status, page)
    })
    .await
    .unwrap_or_else(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("landing page failed: {e}"),
        )
    });
    (page.0, Html(page.1)).into_response()
}

/// The answer to `/?pid=N` without `--web.enable-explain`.
const EXPLAIN_OFF: &str = "Forbidden: process explanations are off. /?pid=N would describe any process of this host (its executable, parent, cgroup, container and pod) to whoever reaches this port: start the exporter with --web.enable-explain to serve it (behind the web config's authentication, if any), or run `ebpf-userspace-exporter check --pid N` on the host.\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, gzip;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
        // Found by fuzzing: `Q` is `q`, and gzip refused is refused whatever `*` says.
        assert!(!accepts_gzip("gzip; Q=0"));
        assert!(!accepts_gzip("*;q=0.5, gzip;q=0"));
        assert!(!accepts_gzip("gzip;q=0, *"));
        assert!(!accepts_gzip("br, *;Q=0.0"));
        assert!(accepts_gzip("*;q=0, gzip"));
        assert!(accepts_gzip("deflate, *;q=0.1"));
    }

    #[test]
    fn prometheus_style_address() {
        assert_eq!(normalize_address(":9435"), "0.0.0.0:9435");
        assert_eq!(normalize_address("127.0.0.1:1"), "127.0.0.1:1");
    }
}
