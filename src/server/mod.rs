//! The HTTP server: accept loop, connection limits, graceful shutdown, and the
//! request flow from [`router`] through the service layer to [`response`].
//!
//! [`run`] takes a bound listener, the shared [`State`] and a shutdown future, so the
//! binary and the tests start exactly the same server. HTTP/1.1 and cleartext HTTP/2
//! are both served (hyper-util's auto builder detects the preface). With
//! `metrics.listen` set, `run` also serves `/metrics` (and the probes) on that address
//! only.
//!
//! The server owns no image logic: it parses the request ([`router`]), calls the service
//! layer ([`crate::mirror`]), and turns the answer or the error into a response
//! ([`response`]). Per request it writes one access line and records the request series
//! ([`crate::metrics`]); [`access`] makes the request id and redacts the upstream URL.

mod access;
mod admin;
mod client;
mod conn;
mod hot;
mod range;
pub mod response;
pub mod router;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
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
use crate::metrics;
use crate::mirror::{ClientLimits, Mirror, MirrorError, Purge};
use crate::signing::Signer;
use crate::store::Source;
use crate::url_grammar::Address;
use response::{Body, ImageHeaders};
use router::Route;

/// Connections the separate metrics listener serves at once (scrapers and probes).
const METRICS_CONNECTIONS: usize = 16;

/// HTTP/2 keep-alive: a ping after this much silence, and the connection is closed when
/// the peer does not answer it within [`H2_PING_TIMEOUT`] (a peer that vanished).
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest request target (path and query, plus the authority of an absolute-form
/// target) accepted; longer ones get 414 before any parsing. Image URLs are far shorter,
/// and a cap keeps hostile URLs out of the URL map, the logs and the index.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Longest first request line of a connection read before it is refused with 414 at the
/// socket ([`conn::Watched`]): the target's limit plus room for the method and version,
/// so every target under [`MAX_URI_BYTES`] reaches the router, which refuses the rest.
const MAX_REQUEST_LINE_BYTES: usize = MAX_URI_BYTES + 64;

/// Everything a request handler needs, shared by all connections.
pub struct State {
    pub config: Config,
    pub mirror: Arc<Mirror>,
    request_ids: access::RequestIds,
    /// Each client's share of fetches and renders (`server.per_client_expensive`).
    limits: ClientLimits,
    /// `Some` when `security.signing_keys` is set: image URLs must be signed.
    signer: Option<Signer>,
    /// Ready answers for the image URLs served from memory again and again.
    hot: hot::Hot,
}

impl State {
    /// Opens the mirror in `config.cache.dir` (see [`Mirror::open`]).
    pub fn new(config: Config) -> Result<Arc<State>, MirrorError> {
        let mirror = Arc::new(Mirror::open(&config)?);
        let signer = Signer::new(&config.security.signing_keys, &config.transform);
        if let Some(signer) = &signer {
            tracing::info!(?signer, "signed URLs required");
        }
        Ok(Arc::new(State {
            limits: ClientLimits::new(config.server.per_client_expensive),
            signer,
            hot: hot::Hot::new(config.cache.memory_bytes, config.cache.hot_bytes),
            config,
            mirror,
            request_ids: access::RequestIds::default(),
        }))
    }
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listener {
    /// `server.listen`: everything (but `/metrics` when it has its own address).
    Main,
    /// `metrics.listen`: `/metrics`, `/healthz`, `/readyz` only.
    Metrics,
}

/// Serves until `shutdown` resolves, then stops accepting and gives in-flight requests
/// `server.shutdown_grace_secs` to finish. Binds `metrics.listen` first when it is set.
pub async fn run(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let metrics_task = match state.config.metrics.listen_addr() {
        Some(addr) => {
            let metrics_listener = TcpListener::bind(addr).await?;
            let state = state.clone();
            Some(tokio::spawn(async move {
                serve(
                    metrics_listener,
                    state,
                    Listener::Metrics,
                    std::future::pending(),
                )
                .await
            }))
        }
        None => None,
    };
    let served = serve(listener, state, Listener::Main, shutdown).await;
    // Scrapes need no draining: the metrics listener just stops with the server.
    if let Some(task) = metrics_task {
        task.abort();
    }
    served
}

/// One listener's accept loop, until `shutdown`.
async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    which: Listener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let server = &state.config.server;
    let slots = Arc::new(Semaphore::new(match which {
        Listener::Main => server.max_connections,
        Listener::Metrics => METRICS_CONNECTIONS,
    }));
    let graceful = GracefulShutdown::new();
    let head_timeout = Duration::from_secs(server.header_read_timeout_secs);
    let idle_timeout = Duration::from_secs(server.idle_timeout_secs);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_buf_size(server.max_request_head_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .max_header_list_size(u32::try_from(server.max_request_head_bytes).unwrap_or(u32::MAX));
    tracing::info!(addr = %listener.local_addr()?, listener = ?which, "listening");
    let too_long = Error::UriTooLong {
        limit: MAX_URI_BYTES,
    };
    let first_line_refusal = response::raw_error(&too_long, &state.config.response);
    let pressure = Arc::new(conn::Pressure::default());

    tokio::pin!(shutdown);
    loop {
        // The connection slot is taken before accepting, so a flood waits in the
        // kernel's backlog instead of costing us a task and a buffer each; while none is
        // free, silent and idle connections are told to make room (`conn::Pressure`).
        let permit = loop {
            if let Ok(permit) = slots.clone().try_acquire_owned() {
                break Some(permit);
            }
            pressure.raise();
            tokio::select! {
                permit = slots.clone().acquire_owned() => break permit.ok(),
                () = tokio::time::sleep(conn::PRESSURE_GRACE / 4) => {}
                () = &mut shutdown => break None,
            }
        };
        let Some(permit) = permit else { break };
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
        let activity = conn::Activity::new();
        let seen = activity.clone();
        let service = service_fn(move |request| {
            let in_flight = seen.request();
            let state = handler_state.clone();
            async move {
                let response = handle(state, request, peer, which).await;
                drop(in_flight);
                response
            }
        });
        let io = TokioIo::new(conn::Watched::new(
            stream,
            activity.clone(),
            MAX_REQUEST_LINE_BYTES,
            first_line_refusal.clone(),
        ));
        let connection = builder.serve_connection(io, service).into_owned();
        let connection = graceful.watch(connection);
        let state = state.clone();
        let pressure = pressure.clone();
        tokio::spawn(async move {
            let _open = state.mirror.metrics().connection();
            // Dropping the connection closes the socket: the watchdog wins only when the
            // client sent no request head in time, or left the connection idle.
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                },
                why = activity.watch(head_timeout, idle_timeout, &pressure) => {
                    tracing::debug!(%peer, ?why, "connection closed by the server");
                }
            }
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
    /// The upstream URL, redacted, for proxied images and purges.
    upstream: Option<String>,
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
    peer: SocketAddr,
    which: Listener,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let id = state
        .request_ids
        .for_request(request.headers().get("x-request-id"));
    let method = request.method().clone();
    let span = tracing::info_span!("request", %id);
    let mut outcome = Outcome {
        route: "unrouted",
        source: None,
        upstream: None,
    };
    let (parts, body) = request.into_parts();
    let client = client::client_ip(
        peer.ip(),
        &parts.headers,
        &state.config.server.trusted_proxies,
    );
    let result = dispatch(&state, &parts, body, which, client, &mut outcome)
        .instrument(span.clone())
        .await;
    let metrics = state.mirror.metrics();
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            let (status, code) = error.status_and_code();
            if let Some(what) = access::overload(&error) {
                metrics.overloaded(what);
            }
            if status.is_server_error() {
                tracing::warn!(parent: &span, %code, error = %Chain(&error), "request failed");
            } else {
                tracing::debug!(parent: &span, %code, error = %Chain(&error), "request refused");
            }
            response::error(&error, &state.config.response)
        }
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    let status = response.status();
    let bytes = if method == http::Method::HEAD {
        0
    } else {
        hyper::body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(0)
    };
    let latency = started.elapsed().as_secs_f64();
    metrics.request(outcome.route, status.as_u16(), latency);
    if let Some(source) = outcome.source
        && status.is_success()
    {
        metrics.served(source.as_str(), bytes);
    }
    // The access line stands alone (no span prefix), so every field is on it.
    tracing::info!(
        parent: None,
        id = %id,
        %peer,
        %client,
        method = %method,
        route = outcome.route,
        upstream = outcome.upstream.as_deref().unwrap_or("-"),
        status = status.as_u16(),
        source = outcome.source.map_or("-", Source::as_str),
        bytes,
        latency_ms = latency * 1000.0,
        "served"
    );
    Ok(response)
}

async fn dispatch(
    state: &Arc<State>,
    request: &http::request::Parts,
    body: Incoming,
    which: Listener,
    client: IpAddr,
    outcome: &mut Outcome,
) -> Result<Response<Body>, Error> {
    let uri = &request.uri;
    let target_len = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if target_len > MAX_URI_BYTES {
        return Err(Error::UriTooLong {
            limit: MAX_URI_BYTES,
        });
    }
    // A repeat of an answer built from memory: no routing, parsing or look-ups (the
    // generation check keeps purges and pins exact; see `hot`).
    if which == Listener::Main
        && let Some(target) = uri.path_and_query()
        && let Some(hot) = state.hot.get(
            &request.method,
            target.as_str(),
            &request.headers,
            state.mirror.generation(),
            |sha256, original| state.mirror.note_served(sha256, original),
        )
    {
        outcome.route = hot.route;
        outcome.source = Some(Source::Memory);
        outcome.upstream = hot.upstream;
        state.mirror.metrics().memory_cache(true);
        return Ok(hot.response);
    }
    let route = router::route(&request.method, uri.path(), uri.query())?;
    outcome.route = route.name();
    let separate_metrics = state.config.metrics.listen_addr().is_some();
    match (&route, which) {
        (Route::Health | Route::Ready | Route::Metrics, Listener::Metrics) => {}
        (_, Listener::Metrics) => return Err(Error::NotFound(uri.path().to_string())),
        (Route::Metrics, Listener::Main) if separate_metrics => {
            return Err(Error::NotFound(
                "/metrics is served on metrics.listen".to_string(),
            ));
        }
        _ => {}
    }
    match route {
        // The only route with a request body.
        Route::Prefetch => admin::prefetch(state, request, body).await,
        route => answer(state, request, route, client, outcome).await,
    }
}

/// Answers every bodiless route.
async fn answer(
    state: &Arc<State>,
    request: &http::request::Parts,
    route: Route,
    client: IpAddr,
    outcome: &mut Outcome,
) -> Result<Response<Body>, Error> {
    match route {
        Route::Health => Ok(response::text(StatusCode::OK, "ok\n".into(), "text/plain")),
        Route::Ready => Ok(match state.mirror.ready().await {
            Ok(()) => response::text(StatusCode::OK, "ready\n".into(), "text/plain"),
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "not ready");
                response::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {}\n", Chain(&e)),
                    "text/plain",
                )
            }
        }),
        Route::Metrics => Ok(response::text(
            StatusCode::OK,
            state.mirror.metrics().encode(),
            metrics::CONTENT_TYPE,
        )),
        Route::Preflight => Ok(response::preflight(&request.headers)),
        Route::Prefetch => Err(Error::MethodNotAllowed(http::Method::GET)),
        Route::Purge(what) => {
            if let Purge::Url(upstream) = &what {
                outcome.upstream = Some(access::redacted(upstream));
            }
            admin::purge(state, &request.headers, &what).await
        }
        Route::Stats => admin::stats(state, &request.headers).await,
        Route::Export { variants } => admin::export(state, &request.headers, variants),
        Route::Image(address) => image(state, request, &address, client, outcome).await,
    }
}

/// An image. With signing on, the signature is checked before anything else; the fetch
/// or render a miss starts counts against the client's share (a hit takes none). HEAD and
/// conditional requests take the same path: a cold URL is fetched (the fetch is the
/// product) and counted like a GET.
async fn image(
    state: &Arc<State>,
    request: &http::request::Parts,
    address: &Address,
    client: IpAddr,
    outcome: &mut Outcome,
) -> Result<Response<Body>, Error> {
    let config = &state.config.response;
    if let Address::Proxy { upstream, .. } = address {
        outcome.upstream = Some(access::redacted(upstream));
    }
    if let Some(signer) = &state.signer {
        let query = request.uri.query().unwrap_or("");
        signer.check(address, query, &state.config.upstream.allow_hosts)?;
    }
    let accept = request
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let admission = state.limits.admission(client).await;
    let mirror = &state.mirror;
    // Read before the look-up, so a change made meanwhile outdates what is kept below.
    let generation = state.mirror.generation();
    let image = match address.placeholder_of() {
        Some(hash) => mirror.placeholder_image_admitted(hash, &admission).await?,
        None => mirror.image_admitted(address, accept, &admission).await?,
    };
    outcome.source = Some(image.source);
    let (cache_control, canonical, host) = match address {
        Address::Proxy { upstream, .. } => (
            &config.cache_control_proxy,
            Some(upstream.as_str()),
            upstream.host_str(),
        ),
        Address::Permalink { .. } => (&config.cache_control_permalink, None, None),
    };
    let keys = crate::mirror::surrogate_keys(&image.original_sha256, host, &image.pinned_by);
    // A stand-in for an AVIF being rendered: cached briefly, so the AVIF replaces it soon.
    let provisional;
    let cache_control = if image.provisional {
        provisional = format!("public, max-age={}", config.avif_pending_max_age_secs);
        &provisional
    } else {
        cache_control
    };
    let headers = ImageHeaders {
        cache_control,
        etag: &image.blob.meta.sha256,
        canonical,
        vary_accept: image.vary_accept,
        source: image.source,
        surrogate_keys: &keys,
    };
    let response = response::image(&request.headers, &image.blob, headers);
    let kept = hot::Origin {
        source: image.source,
        generation,
        fresh_until: image.fresh_until,
        route: outcome.route,
        upstream: outcome.upstream.as_deref(),
        sha256: &image.blob.meta.sha256,
        original_sha256: &image.original_sha256,
    };
    // A provisional answer is replaced once its AVIF is rendered, and no generation change
    // says when: never keep it.
    if !image.provisional {
        state
            .hot
            .insert(request, &response, &image.blob.bytes, kept);
    }
    Ok(response)
}
