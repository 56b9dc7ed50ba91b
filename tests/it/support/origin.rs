//! A fixture origin on 127.0.0.1:0 that serves the real photos in `tests/fixtures/` and
//! misbehaves on demand. Paths:
//!
//! - `/img/<file>`: the file, with its true Content-Type, an ETag and Last-Modified
//!   (answers 304 to a matching If-None-Match)
//! - `/lie/<file>`: the file, labelled `text/html`
//! - `/html-as-jpeg/<name>`: an HTML page labelled `image/jpeg`
//! - `/status/<code>/<name>`: that status with a small HTML body
//! - `/slow/<ms>/<file>`: waits, then serves the file
//! - `/truncated/<file>`: announces the full length, sends half, closes
//! - `/cut/<file>`: a complete transfer of the first two thirds of the file (a file that
//!   was truncated at the source)
//! - `/endless/<name>`: a chunked body that never ends (a JPEG header, then zeros)
//! - `/huge-length/<name>`: announces a 1 GiB Content-Length
//! - `/redirect/<n>/<file>`: a chain of n redirects ending at `/img/<file>`
//! - `/redirect-to?<url>`: one redirect to an arbitrary URL
//! - `/mutable/<name>`: whatever file [`Origin::set_mutable`] chose last
//! - `/qupost/img/<y>/<m>/<d>/<hash>.jpeg`: the seed article's images (the test maps
//!   `static.1sapp.com` here with `upstream.resolve`); each hash is served as one of the
//!   real JPEGs, chosen by [`qupost_file`], and a path given to [`Origin::set_missing`]
//!   answers 404
//! - `/bytes/<name>`: the bytes and Content-Type given to [`Origin::set_bytes`] (hostile
//!   images built by a test), with `Content-Encoding` if one was given
//! - `/trickle/<ms>/<file>`: the headers, then the file one byte every `ms` milliseconds
//! - `/loop/<a|b>`: redirects to the other one, forever; `/self-loop`: to itself
//! - `/polyglot/<file>`: the file with an HTML page (a script) appended, labelled `text/html`
//!
//! Every request is counted per path, so tests can prove what was (not) fetched, and
//! recorded with its headers and arrival time ([`Origin::seen`]); requests being
//! answered at once are counted per `Host` name ([`Origin::peak_in_flight`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

type Body = BoxBody<Bytes, std::io::Error>;

pub fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A body, its content type and its content encoding, for `/bytes/<name>`.
type Canned = (Bytes, String, Option<String>);

#[derive(Default)]
struct Shared {
    hits: Mutex<HashMap<String, usize>>,
    seen: Mutex<Vec<Seen>>,
    /// Host name → (requests being answered now, most ever at once).
    in_flight: Mutex<HashMap<String, (usize, usize)>>,
    mutable: Mutex<String>,
    missing: Mutex<Vec<String>>,
    /// name → what `/bytes/<name>` answers.
    bytes: Mutex<HashMap<String, Canned>>,
}

/// One request as the origin received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The `Host` header without its port.
    pub host: String,
    /// Path and query.
    pub target: String,
    pub headers: http::HeaderMap,
    pub at: std::time::Instant,
}

pub struct Origin {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Origin {
    pub async fn start() -> Origin {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Binds a given address (to restart an origin on the port it had).
    pub async fn start_on(addr: SocketAddr) -> Origin {
        let listener = TcpListener::bind(addr).await.expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        *shared.mutable.lock().unwrap() = "photo-480.jpg".into();
        let (stop, mut stopped) = oneshot::channel();
        let state = shared.clone();
        let task = tokio::spawn(async move {
            // Dropping the set when the loop ends aborts open connections too, so a
            // stopped origin is really gone (no keep-alive connection lingers).
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = &mut stopped => break,
                };
                let state = state.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| serve(state.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Origin {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Requests seen for `path` (query included when there was one).
    pub fn hits(&self, path: &str) -> usize {
        self.shared
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.shared.hits.lock().unwrap().values().sum()
    }

    /// Every request received so far whose `Host` (without port) is `host`, in arrival
    /// order.
    pub fn seen(&self, host: &str) -> Vec<Seen> {
        let seen = self.shared.seen.lock().unwrap();
        seen.iter().filter(|s| s.host == host).cloned().collect()
    }

    /// The most requests for `host` the origin was answering at the same time.
    pub fn peak_in_flight(&self, host: &str) -> usize {
        let in_flight = self.shared.in_flight.lock().unwrap();
        in_flight.get(host).map_or(0, |(_, peak)| *peak)
    }

    pub fn set_mutable(&self, file: &str) {
        *self.shared.mutable.lock().unwrap() = file.to_string();
    }

    /// Makes `path` (e.g. `/qupost/img/…/<hash>.jpeg`) answer 404.
    pub fn set_missing(&self, path: &str) {
        self.shared.missing.lock().unwrap().push(path.to_string());
    }

    /// Serves `body` at `/bytes/<name>` with `content_type` (and `Content-Encoding:
    /// encoding` when given).
    pub fn set_bytes(&self, name: &str, body: Vec<u8>, content_type: &str, encoding: Option<&str>) {
        self.shared.bytes.lock().unwrap().insert(
            name.to_string(),
            (
                Bytes::from(body),
                content_type.to_string(),
                encoding.map(str::to_string),
            ),
        );
    }

    /// The target (path and query) and headers of every request seen so far.
    pub fn heads(&self) -> Vec<(String, http::HeaderMap)> {
        let seen = self.shared.seen.lock().unwrap();
        seen.iter()
            .map(|s| (s.target.clone(), s.headers.clone()))
            .collect()
    }

    /// Stops accepting; the port is closed when this returns.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Counts a request as being answered until dropped (when its response head is ready).
struct InFlight<'a> {
    state: &'a Shared,
    host: String,
}

impl<'a> InFlight<'a> {
    fn enter(state: &'a Shared, host: String) -> InFlight<'a> {
        let mut map = state.in_flight.lock().unwrap();
        let (now, peak) = map.entry(host.clone()).or_default();
        *now += 1;
        *peak = (*peak).max(*now);
        InFlight { state, host }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some((now, _)) = self.state.in_flight.lock().unwrap().get_mut(&self.host) {
            *now -= 1;
        }
    }
}

/// The real photo served for the seed article's image `<hash>.jpeg`: a deterministic pick
/// among three small JPEGs of different sizes, so the 20 images are not all one object yet
/// tests stay fast.
pub fn qupost_file(name: &str) -> &'static str {
    const FILES: [&str; 3] = ["photo-480.jpg", "astronaut-512.jpg", "photo-1080.jpg"];
    let sum: usize = name.bytes().map(usize::from).sum();
    FILES[sum % FILES.len()]
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let body: Bytes = body.into();
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(Full::new(body).map_err(|never| match never {}).boxed())
        .unwrap()
}

fn media_type(file: &str) -> &'static str {
    match file.rsplit('.').next() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        _ => "application/octet-stream",
    }
}

fn file_response(file: &str, request: &Request<Incoming>, content_type: &str) -> Response<Body> {
    let Ok(bytes) = std::fs::read(fixture_path(file)) else {
        return full(StatusCode::NOT_FOUND, "text/html", "<h1>not found</h1>");
    };
    let etag = format!("\"{}-{}\"", file, bytes.len());
    if request
        .headers()
        .get("if-none-match")
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header("etag", &etag)
            .body(
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .unwrap();
    }
    let mut response = full(StatusCode::OK, content_type, bytes);
    response.headers_mut().insert("etag", etag.parse().unwrap());
    response.headers_mut().insert(
        "last-modified",
        "Mon, 31 Jan 2022 15:10:03 GMT".parse().unwrap(),
    );
    response
}

async fn serve(
    state: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    let key = match request.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    *state.hits.lock().unwrap().entry(key.clone()).or_default() += 1;
    let host = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name).to_string())
        .unwrap_or_default();
    state.seen.lock().unwrap().push(Seen {
        host: host.clone(),
        target: key,
        headers: request.headers().clone(),
        at: std::time::Instant::now(),
    });
    let _answering = InFlight::enter(&state, host);
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(3, '/').collect();
    if state.missing.lock().unwrap().contains(&path) {
        return Ok(full(
            StatusCode::NOT_FOUND,
            "text/html",
            "<h1>not found</h1>",
        ));
    }
    let response = match parts.as_slice() {
        ["qupost", "img", rest] => match rest.rsplit('/').next() {
            Some(name) => file_response(qupost_file(name), &request, "image/jpeg"),
            None => full(StatusCode::NOT_FOUND, "text/html", "<h1>not found</h1>"),
        },
        ["img", file] => file_response(file, &request, media_type(file)),
        ["lie", file] => file_response(file, &request, "text/html; charset=utf-8"),
        ["html-as-jpeg", _] => full(
            StatusCode::OK,
            "image/jpeg",
            "<!DOCTYPE html><html><body>Hotlinking is not allowed</body></html>",
        ),
        ["status", code, _] => {
            let code = code.parse().ok().and_then(|c| StatusCode::from_u16(c).ok());
            full(
                code.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "text/html",
                "<h1>error</h1>",
            )
        }
        ["slow", ms, file] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            file_response(file, &request, media_type(file))
        }
        ["truncated", file] => {
            let bytes = fixture(file);
            let half = Bytes::from(bytes[..bytes.len() / 2].to_vec());
            let stream = futures_stream(vec![half], true);
            Response::builder()
                .header("content-type", "image/jpeg")
                .header("content-length", bytes.len())
                .body(stream)
                .unwrap()
        }
        ["cut", file] => {
            let bytes = fixture(file);
            full(
                StatusCode::OK,
                media_type(file),
                bytes[..bytes.len() * 2 / 3].to_vec(),
            )
        }
        ["endless", _] => {
            let mut chunks = vec![Bytes::from(fixture("photo-480.jpg")[..1024].to_vec())];
            chunks.extend(std::iter::repeat_n(
                Bytes::from(vec![0u8; 64 * 1024]),
                100_000,
            ));
            Response::builder()
                .header("content-type", "image/jpeg")
                .body(futures_stream(chunks, false))
                .unwrap()
        }
        ["huge-length", _] => Response::builder()
            .header("content-type", "image/jpeg")
            .header("content-length", 1u64 << 30)
            .body(futures_stream(
                vec![Bytes::from(fixture("photo-480.jpg"))],
                true,
            ))
            .unwrap(),
        ["redirect", n, file] => {
            let n: u32 = n.parse().unwrap_or(0);
            let location = if n <= 1 {
                format!("/img/{file}")
            } else {
                format!("/redirect/{}/{file}", n - 1)
            };
            Response::builder()
                .status(StatusCode::FOUND)
                .header("location", location)
                .body(
                    Full::new(Bytes::new())
                        .map_err(|never| match never {})
                        .boxed(),
                )
                .unwrap()
        }
        ["redirect-to"] => Response::builder()
            .status(StatusCode::MOVED_PERMANENTLY)
            .header("location", request.uri().query().unwrap_or("/"))
            .body(
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .unwrap(),
        ["bytes", name] => match state.bytes.lock().unwrap().get(*name).cloned() {
            Some((body, content_type, encoding)) => {
                let mut response = full(StatusCode::OK, &content_type, body);
                if let Some(encoding) = encoding {
                    response
                        .headers_mut()
                        .insert("content-encoding", encoding.parse().unwrap());
                }
                response
            }
            None => full(StatusCode::NOT_FOUND, "text/html", "<h1>not found</h1>"),
        },
        ["trickle", ms, file] => {
            let bytes = fixture(file);
            let pause = Duration::from_millis(ms.parse().unwrap_or(1000));
            Response::builder()
                .header("content-type", media_type(file))
                .header("content-length", bytes.len())
                .body(trickle(bytes, pause))
                .unwrap()
        }
        ["loop", which] => redirect(if *which == "a" { "/loop/b" } else { "/loop/a" }),
        ["self-loop"] => redirect("/self-loop"),
        ["polyglot", file] => {
            let mut bytes = fixture(file);
            bytes.extend_from_slice(POLYGLOT_HTML.as_bytes());
            full(StatusCode::OK, "text/html; charset=utf-8", bytes)
        }
        ["mutable", _] => {
            let file = state.mutable.lock().unwrap().clone();
            file_response(&file, &request, media_type(&file))
        }
        _ => full(StatusCode::NOT_FOUND, "text/html", "<h1>not found</h1>"),
    };
    Ok(response)
}

/// A body made of `chunks`, sent with a pause between them; `fail_at_end` ends it with
/// an error, which aborts the connection mid-body (a truncated transfer).
fn futures_stream(chunks: Vec<Bytes>, fail_at_end: bool) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(2);
    tokio::spawn(async move {
        for chunk in chunks {
            if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                return; // the client went away
            }
        }
        if fail_at_end {
            let _ = tx
                .send(Err(std::io::Error::other("origin cut the body short")))
                .await;
        }
    });
    let stream = tokio_stream_from(rx);
    BodyExt::boxed(StreamBody::new(stream))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + Sync + 'static
{
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// What `/polyglot/<file>` appends to a real image: a page that runs script if a browser
/// ever renders the response as HTML.
pub const POLYGLOT_HTML: &str =
    "<html><body><script>document.title='polyglot-ran'</script></body></html>";

fn redirect(location: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::FOUND)
        .header("location", location)
        .body(
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap()
}

/// `bytes` sent one byte per `pause`: a tarpit that never stalls completely.
fn trickle(bytes: Vec<u8>, pause: Duration) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    tokio::spawn(async move {
        for byte in bytes {
            if tx
                .send(Ok(Frame::data(Bytes::from(vec![byte]))))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(pause).await;
        }
    });
    BodyExt::boxed(StreamBody::new(tokio_stream_from(rx)))
}
