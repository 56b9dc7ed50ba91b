//! Admin endpoints: purge (`DELETE /?<URL>`) and prefetch (`POST /prefetch`). All of them
//! need `Authorization: Bearer <admin.token>`; with no token configured they do not exist.
//! Purge is [`crate::mirror::Mirror::purge`]; prefetch's work is `article::prefetch`, the
//! same engine `imgmirror prefetch` runs. This file only authorises, reads the bounded body,
//! and streams the engine's results back as NDJSON.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Frame, Incoming};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;

use super::State;
use super::response::{self, Body};
use crate::article::prefetch::{self, Event, Options, Plan};
use crate::article::{self, Kind, Settings};
use crate::error::Error;
use crate::hash::ContentHash;
use crate::mirror::Purge;

/// Checks the bearer token in constant time (for a given length), so it cannot be
/// guessed byte by byte from response times.
pub fn authorize(headers: &HeaderMap, token: &str) -> Result<(), Error> {
    if token.is_empty() {
        return Err(Error::NotFound(
            "admin endpoints are off (no admin.token configured)".into(),
        ));
    }
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(Error::Unauthorized("missing bearer token"))?;
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(Error::Forbidden("wrong bearer token"))
    }
}

/// Purges a URL, an original or an article and answers with what was removed: 200, or
/// 404 when there was nothing to remove.
pub async fn purge(
    state: &State,
    headers: &HeaderMap,
    what: &Purge,
) -> Result<Response<Body>, Error> {
    authorize(headers, &state.config.admin.token)?;
    let report = state.mirror.purge(what).await?;
    let purged = !report.is_empty();
    let status = if purged {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    let mut body =
        serde_json::json!({ "purged": purged, "target": what.to_string(), "removed": report });
    if let Purge::Url(url) = what {
        body["url"] = url.as_str().into();
    }
    Ok(response::text(
        status,
        format!("{body}\n"),
        "application/json",
    ))
}

/// `GET /stats`: the store's inventory (one index snapshot) and the live budget counters
/// (usage, evictions) as JSON.
pub async fn stats(state: &State, headers: &HeaderMap) -> Result<Response<Body>, Error> {
    authorize(headers, &state.config.admin.token)?;
    let inventory = state.mirror.inventory(10).await?;
    let body = serde_json::json!({ "inventory": inventory, "usage": state.mirror.usage() });
    Ok(response::text(
        StatusCode::OK,
        format!("{body}\n"),
        "application/json",
    ))
}

/// `GET /export[?variants=1]`: streams a consistent export (one index snapshot) as a tar
/// while the server keeps serving. It is written on a blocking thread into a bounded
/// channel, so a slow reader slows the export instead of buffering it in memory.
pub fn export(
    state: &Arc<State>,
    headers: &HeaderMap,
    variants: bool,
) -> Result<Response<Body>, Error> {
    authorize(headers, &state.config.admin.token)?;
    let (sender, receiver) = mpsc::channel::<Bytes>(16);
    let mirror = state.mirror.clone();
    tokio::task::spawn_blocking(move || {
        let out = std::io::BufWriter::with_capacity(256 * 1024, ChannelWriter(sender));
        match mirror.export_blocking(out, variants) {
            Ok(report) => tracing::info!(
                objects = report.objects,
                variants = report.variants,
                urls = report.urls,
                bytes = report.bytes,
                "exported"
            ),
            // The client sees a truncated tar (no end-of-archive blocks): tar readers refuse it.
            Err(e) => tracing::error!(error = %crate::error::Chain(&e), "export failed"),
        }
    });
    let mut response = Response::new(ChannelBody::Bounded(receiver).boxed());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    headers.insert(
        http::header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"imgmirror-export.tar\""),
    );
    Ok(response)
}

/// A `Write` that hands each buffer to the response body; a gone client ends the export.
struct ChannelWriter(mpsc::Sender<Bytes>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a `POST /prefetch` body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    Urls,
    Article(Kind),
}

/// `POST /prefetch[?article=<id>]`: mirrors, pins and warms the images of the article (or
/// JSON list of image URLs) in the body, answering with one NDJSON line per image as it
/// finishes and a last `done` line. The work goes on if the client disconnects: it is
/// bounded, and a half-prefetched post is worth finishing.
pub async fn prefetch(
    state: &Arc<State>,
    request: &Parts,
    body: Incoming,
) -> Result<Response<Body>, Error> {
    // Authorised before a byte of the body is read: strangers cannot make us buffer 5 MiB.
    authorize(&request.headers, &state.config.admin.token)?;
    let limit = state.config.article.prefetch_max_body_bytes;
    let announced = request
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(Error::RequestTooLarge { limit });
    }
    let bytes = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                Error::RequestTooLarge { limit }
            } else {
                Error::BadRequest(format!("cannot read the request body: {e}"))
            }
        })?
        .to_bytes();
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::BadRequest("request body is not utf-8".into()))?;

    let article = request
        .uri
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "article"))
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
        // Without a name, the body's hash names the article: posting the same post again
        // pins under the same id instead of adding a new one.
        .unwrap_or_else(|| format!("sha256:{}", &ContentHash::of(&bytes).to_hex()[..16]));
    let settings = Settings::from_full_config(&state.config);
    let mut plan = Plan::default();
    match payload(&request.headers, text) {
        Payload::Urls => {
            let urls: Vec<String> = serde_json::from_str(text)
                .map_err(|e| Error::BadRequest(format!("body is not a JSON list of URLs: {e}")))?;
            for url in &urls {
                plan.add_url(url, &settings, Some(&article));
            }
        }
        Payload::Article(kind) => {
            // Parsing a post of up to 5 MiB is CPU work: off the runtime.
            let (body, parse_settings) = (text.to_owned(), settings.clone());
            let refs =
                tokio::task::spawn_blocking(move || article::extract(&body, kind, &parse_settings))
                    .await
                    .map_err(|e| Error::Internal(format!("the post parser failed: {e}")))?
                    .map_err(|e| Error::BadArticle(crate::error::Chain(&e).to_string()))?;
            plan.add_refs(&refs, Some(&article));
        }
    }
    tracing::info!(%article, images = plan.len(), "prefetch requested");

    let (lines, receiver) = mpsc::unbounded_channel::<Bytes>();
    let options = Options::from_config(&state.config.article);
    let state = state.clone();
    tokio::spawn(async move {
        let report = prefetch::run(&state.mirror, plan.into_jobs(), &options, |image| {
            // A gone client is not an error: the prefetch itself is what matters.
            let _ = lines.send(Bytes::from(Event::Image(Box::new(image.clone())).to_line()));
        })
        .await;
        let done = Event::Done {
            images: report.images.len(),
            failed: report.failed(),
            ms: report.ms,
        };
        tracing::info!(%article, images = report.images.len(), failed = report.failed(), ms = report.ms, "prefetch finished");
        let _ = lines.send(Bytes::from(done.to_line()));
    });

    let mut response = Response::new(ChannelBody::Unbounded(receiver).boxed());
    let headers = response.headers_mut();
    response::common_headers(headers);
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// JSON for `application/json`, else the post kind its Content-Type names, else a sniff: a
/// body starting with `[` is a URL list, with `<` HTML, anything else Markdown (which also
/// reads embedded HTML, so it is the safe guess).
fn payload(headers: &HeaderMap, text: &str) -> Payload {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match content_type.as_str() {
        "application/json" => Payload::Urls,
        "text/markdown" | "text/x-markdown" => Payload::Article(Kind::Markdown),
        "text/html" => Payload::Article(Kind::Html),
        _ => match text.trim_start().chars().next() {
            Some('[') => Payload::Urls,
            Some('<') => Payload::Article(Kind::Html),
            _ => Payload::Article(Kind::Markdown),
        },
    }
}

/// A streamed response body, fed through a channel; it ends when the sender is dropped.
/// The export writes into a bounded one (a slow reader slows the writer); the prefetch
/// engine reports through an unbounded one from a synchronous callback (its lines are few
/// and small).
enum ChannelBody {
    Bounded(mpsc::Receiver<Bytes>),
    Unbounded(mpsc::UnboundedReceiver<Bytes>),
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = match &mut *self {
            ChannelBody::Bounded(receiver) => receiver.poll_recv(cx),
            ChannelBody::Unbounded(receiver) => receiver.poll_recv(cx),
        };
        next.map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_table() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_str(ct).unwrap(),
            );
            h
        };
        let none = HeaderMap::new();
        let cases = [
            (with("application/json"), "x", Payload::Urls),
            (
                with("text/markdown; charset=utf-8"),
                "[",
                Payload::Article(Kind::Markdown),
            ),
            (with("Text/HTML"), "---", Payload::Article(Kind::Html)),
            (none.clone(), "  [\"http://a/b.jpg\"]", Payload::Urls),
            (
                none.clone(),
                "<div><img src=x></div>",
                Payload::Article(Kind::Html),
            ),
            (
                none.clone(),
                "---\ntitle: x\n---\n",
                Payload::Article(Kind::Markdown),
            ),
            (
                with("application/octet-stream"),
                "![a](b)",
                Payload::Article(Kind::Markdown),
            ),
        ];
        for (headers, body, want) in cases {
            assert_eq!(payload(&headers, body), want, "{headers:?} {body}");
        }
    }
}
