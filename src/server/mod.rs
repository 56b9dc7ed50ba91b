//! The HTTP server: accept loop, connection limits, graceful shutdown, and the
//! request flow from [`router`] through the service layer to [`response`].
//!
//! [`run`] takes a bound listener, the shared [`State`] and a shutdown future, so the
//! binary and the tests start exactly the same server. HTTP/1.1 and cleartext HTTP/2
//! are both served (hyper-util's auto builder detects the preface).
//!
//! The server owns no image logic: it parses the request ([`router`]), calls the service
//! layer ([`crate::mirror`]), and turns the answer or the error into a response
//! ([`response`]).

mod admin;
pub mod response;
pub mod router;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::config::Config;
use crate::error::{Chain, Error};
use crate::mirror::{Mirror, MirrorError};
use crate::store::Source;
use crate::url_grammar::Address;
use response::{Body, ImageHeaders};
use router::Route;

/// Everything a request handler needs, shared by all connections.
pub struct State {
    pub config: Config,
    pub mirror: Arc<Mirror>,
    next_request_id: AtomicU64,
    open_connections: AtomicUsize,
}

impl State {
    /// Opens the mirror in `config.cache.dir` (see [`Mirror::open`]).
    pub fn new(config: Config) -> Result<Arc<State>, MirrorError> {
        let mirror = Arc::new(Mirror::open(&config)?);
        Ok(Arc::new(State {
            config,
            mirror,
            next_request_id: AtomicU64::new(1),
            open_connections: AtomicUsize::new(0),
        }))
    }
}

/// Serves until `shutdown` resolves, then stops accepting and gives in-flight requests
/// `server.shutdown_grace_secs` to finish.
pub async fn run(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let server = &state.config.server;
    let slots = Arc::new(Semaphore::new(server.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(server.header_read_timeout_secs));
    builder.http2().timer(TokioTimer::new());
    tracing::info!(addr = %listener.local_addr()?, "listening");

    tokio::pin!(shutdown);
    loop {
        // The connection slot is taken before accepting, so a flood waits in the
        // kernel's backlog instead of costing us a task and a buffer each.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handler_state = state.clone();
        let service = service_fn(move |request| handle(handler_state.clone(), request, peer));
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let state = state.clone();
        tokio::spawn(async move {
            state.open_connections.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            state.open_connections.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    let grace = Duration::from_secs(state.config.server.shutdown_grace_secs);
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: finishing in-flight requests"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown deadline passed; dropping remaining connections");
    }
    Ok(())
}

/// What the access log line reports besides status and timing.
struct Outcome {
    route: &'static str,
    source: Option<Source>,
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let id = state.next_request_id.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let span = tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path());
    let mut outcome = Outcome {
        route: "unrouted",
        source: None,
    };
    let (parts, body) = request.into_parts();
    let result = dispatch(&state, &parts, body, &mut outcome)
        .instrument(span.clone())
        .await;
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            let (status, code) = error.status_and_code();
            if status.is_server_error() {
                tracing::warn!(parent: &span, %code, error = %Chain(&error), "request failed");
            } else {
                tracing::debug!(parent: &span, %code, error = %Chain(&error), "request refused");
            }
            response::error(&error, &state.config.response)
        }
    };
    response.headers_mut().insert(
        HeaderName::from_static("x-request-id"),
        HeaderValue::from(id),
    );
    let bytes = hyper::body::Body::size_hint(response.body())
        .exact()
        .unwrap_or(0);
    tracing::info!(
        parent: &span,
        %peer,
        route = outcome.route,
        status = response.status().as_u16(),
        source = outcome.source.map_or("-", Source::as_str),
        bytes,
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "served"
    );
    Ok(response)
}

async fn dispatch(
    state: &Arc<State>,
    request: &http::request::Parts,
    body: Incoming,
    outcome: &mut Outcome,
) -> Result<Response<Body>, Error> {
    let uri = &request.uri;
    let route = router::route(&request.method, uri.path(), uri.query())?;
    outcome.route = route.name();
    match route {
        // The only route with a request body.
        Route::Prefetch => admin::prefetch(state, request, body).await,
        route => serve(state, request, route, outcome).await,
    }
}

/// Answers every bodiless route.
async fn serve(
    state: &Arc<State>,
    request: &http::request::Parts,
    route: Route,
    outcome: &mut Outcome,
) -> Result<Response<Body>, Error> {
    let config = &state.config.response;
    match route {
        Route::Health => Ok(response::text(StatusCode::OK, "ok\n".into(), "text/plain")),
        Route::Metrics => Ok(response::text(
            StatusCode::OK,
            metrics(state),
            "text/plain; version=0.0.4",
        )),
        Route::Preflight => Ok(response::preflight(&request.headers)),
        Route::Prefetch => Err(Error::MethodNotAllowed(http::Method::GET)),
        Route::Purge { upstream } => admin::purge(state, &request.headers, &upstream).await,
        Route::Image(address) => {
            let accept = request
                .headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let image = match address.placeholder_of() {
                Some(hash) => state.mirror.placeholder_image(hash).await?,
                None => state.mirror.image(&address, accept).await?,
            };
            outcome.source = Some(image.source);
            let (cache_control, canonical) = match &address {
                Address::Proxy { upstream, .. } => {
                    (&config.cache_control_proxy, Some(upstream.as_str()))
                }
                Address::Permalink { .. } => (&config.cache_control_permalink, None),
            };
            let headers = ImageHeaders {
                cache_control,
                etag: &image.blob.meta.sha256,
                canonical,
                vary_accept: image.vary_accept,
                source: image.source,
            };
            Ok(response::image(&request.headers, &image.blob, headers))
        }
    }
}

/// Prometheus text exposition of the counters that matter for operations.
fn metrics(state: &State) -> String {
    let stats = state.mirror.stats();
    let counters = [
        (
            "imgmirror_upstream_fetches_total",
            "First fetches of upstream URLs.",
            stats.upstream_fetches.load(Ordering::Relaxed),
        ),
        (
            "imgmirror_revalidations_total",
            "Background revalidations of mirrored URLs.",
            stats.revalidations.load(Ordering::Relaxed),
        ),
        (
            "imgmirror_renders_total",
            "Variants rendered (resized / re-encoded).",
            stats.renders.load(Ordering::Relaxed),
        ),
    ];
    let mut out = String::new();
    for (name, help, value) in counters {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
        ));
    }
    let open = state.open_connections.load(Ordering::Relaxed);
    out.push_str(&format!(
        "# HELP imgmirror_open_connections Client connections open.\n# TYPE imgmirror_open_connections gauge\nimgmirror_open_connections {open}\n"
    ));
    out
}
