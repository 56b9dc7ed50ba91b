//! The HTTP server: accept loop, connection limits, graceful shutdown, and the
//! request flow from [`router`] through the store to [`response`].
//!
//! [`run`] takes a bound listener, the shared [`State`] and a shutdown future, so the
//! binary and the tests start exactly the same server. HTTP/1.1 and cleartext HTTP/2
//! are both served (hyper-util's auto builder detects the preface).
//!
//! The server owns no image logic: it parses the request, asks the store (and the
//! transform pool) for bytes, and turns the answer or the error into a response.

mod admin;
mod render;
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
use crate::store::{Served, Source, Store, StoreError};
use crate::transform::{self, Spec};
use response::{AppError, Body, ImageHeaders};
use router::Route;

/// Everything a request handler needs, shared by all connections.
pub struct State {
    pub config: Config,
    pub store: Arc<Store>,
    /// Decode/resize/encode run here, never on the runtime's threads.
    pool: transform::Pool,
    /// Header facts per original (by sha256), so repeated variants don't re-probe.
    probes: moka::future::Cache<String, transform::Probe>,
    next_request_id: AtomicU64,
    open_connections: AtomicUsize,
}

impl State {
    pub fn new(config: Config) -> Result<Arc<State>, StoreError> {
        let store = Arc::new(Store::open(&config)?);
        let pool = transform::Pool::new(config.transform.workers, config.transform.queue);
        Ok(Arc::new(State {
            config,
            store,
            pool,
            probes: moka::future::Cache::new(10_000),
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
                tracing::warn!(parent: &span, %code, error = %error, "request failed");
            } else {
                tracing::debug!(parent: &span, %code, error = %error, "request refused");
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

/// Serves one GET for `path_and_query` exactly as over HTTP, without a connection:
/// prefetch uses it to warm originals and the variants a rewritten post will ask for.
pub async fn get(
    state: &Arc<State>,
    path_and_query: &str,
    headers: http::HeaderMap,
) -> Result<Response<Body>, AppError> {
    let mut request = Request::get(path_and_query)
        .body(())
        .map_err(|e| AppError::BadRequest(format!("bad path {path_and_query:?}: {e}")))?;
    *request.headers_mut() = headers;
    let (parts, ()) = request.into_parts();
    let route = router::route(&parts.method, parts.uri.path(), parts.uri.query())?;
    let mut outcome = Outcome {
        route: "internal",
        source: None,
    };
    serve(state, &parts, route, &mut outcome).await
}

async fn dispatch(
    state: &Arc<State>,
    request: &http::request::Parts,
    body: Incoming,
    outcome: &mut Outcome,
) -> Result<Response<Body>, AppError> {
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
) -> Result<Response<Body>, AppError> {
    let config = &state.config.response;
    match route {
        Route::Health => Ok(response::text(StatusCode::OK, "ok\n".into(), "text/plain")),
        Route::Metrics => Ok(response::text(
            StatusCode::OK,
            metrics(state),
            "text/plain; version=0.0.4",
        )),
        Route::Preflight => Ok(response::preflight(&request.headers)),
        Route::Prefetch => Err(AppError::Route(router::RouteError::MethodNotAllowed(
            http::Method::GET,
        ))),
        Route::Purge { upstream } => admin::purge(state, &request.headers, &upstream).await,
        Route::Proxy { upstream, options } => {
            let spec = parse_spec(state, &options)?;
            let served = state.store.get_by_url(&upstream).await?;
            let cache_control = &config.cache_control_proxy;
            respond(
                state,
                request,
                served,
                spec,
                cache_control,
                Some(upstream.as_str()),
                outcome,
            )
            .await
        }
        Route::Permalink { hash, options, .. } => {
            let spec = parse_spec(state, &options)?;
            let served = state
                .store
                .get_by_hash(&hash)
                .await?
                .ok_or_else(|| AppError::UnknownObject(hash.to_hex()))?;
            let cache_control = &config.cache_control_permalink;
            respond(state, request, served, spec, cache_control, None, outcome).await
        }
    }
}

/// The original, or with transform options the variant for this client.
async fn respond(
    state: &Arc<State>,
    request: &http::request::Parts,
    served: Served,
    spec: Option<Spec>,
    cache_control: &str,
    canonical: Option<&str>,
    outcome: &mut Outcome,
) -> Result<Response<Body>, AppError> {
    let Some(spec) = spec else {
        outcome.source = Some(served.source);
        let headers = ImageHeaders {
            cache_control,
            etag: &served.blob.meta.sha256,
            canonical,
            vary_accept: false,
            source: served.source,
        };
        return Ok(response::image(&request.headers, &served.blob, headers));
    };
    let accept = request
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let variant = render::variant(state, &served.blob, &spec, accept).await?;
    outcome.source = Some(variant.source);
    let headers = ImageHeaders {
        cache_control,
        etag: &variant.blob.meta.sha256,
        canonical,
        vary_accept: variant.vary_accept,
        source: variant.source,
    };
    Ok(response::image(&request.headers, &variant.blob, headers))
}

fn parse_spec(state: &State, options: &router::Options) -> Result<Option<Spec>, AppError> {
    let pairs = options.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    Ok(Spec::from_query(pairs, &state.config.transform)?)
}

/// Prometheus text exposition of the counters that matter for operations.
fn metrics(state: &State) -> String {
    let stats = state.store.stats();
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
