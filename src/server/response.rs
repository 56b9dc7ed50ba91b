//! Building responses: the headers every image carries (validators, per-route
//! `Cache-Control`, surrogate keys for CDN purges, `Accept-Ranges`), conditional and range
//! requests, and the JSON error body with its status-dependent `Cache-Control`.
//!
//! Statuses come from [`Error::status_and_code`] (in [`crate::error`], the one mapping);
//! the error body carries its stable kebab-case `code` and a lowercase human `message`.

use std::convert::Infallible;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

use super::range::{self, Ranged};
use crate::config::ResponseConfig;
use crate::error::Error;
use crate::store::{Blob, Source};

/// Every response body: boxed, so a streamed answer (`POST /prefetch`'s NDJSON) and a
/// buffered image share one type. A boxed `Full` still reports its exact size.
pub type Body = BoxBody<Bytes, Infallible>;

/// A buffered body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// Headers that make an image usable cross-origin and safe to serve from our origin.
pub fn common_headers(headers: &mut HeaderMap) {
    let set = |headers: &mut HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    set(headers, HeaderName::from_static("timing-allow-origin"), "*");
    set(
        headers,
        HeaderName::from_static("cross-origin-resource-policy"),
        "cross-origin",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // An image needs no script, style or frame; `sandbox` also neuters anything a
    // browser might still try to render as a document.
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; sandbox",
    );
}

/// What an image response needs beyond the bytes.
pub struct ImageHeaders<'a> {
    pub cache_control: &'a str,
    /// The opaque part of the strong ETag (a SHA-256 hex).
    pub etag: &'a str,
    /// `Link: <…>; rel="canonical"` for proxied images.
    pub canonical: Option<&'a str>,
    pub vary_accept: bool,
    pub source: Source,
    /// `Surrogate-Key` (space-separated) and `Cache-Tag` (comma-separated); see
    /// [`crate::mirror::surrogate_keys`].
    pub surrogate_keys: &'a [String],
}

/// The answer for `blob`: 304 when the request's validators match, else 206 for one
/// satisfiable range, 416 for an unsatisfiable one, else 200. For HEAD, hyper sends the
/// same headers and no body.
pub fn image(request: &HeaderMap, blob: &Blob, h: ImageHeaders<'_>) -> Response<Body> {
    let etag = format!("\"{}\"", h.etag);
    let last_modified =
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(blob.meta.created));
    let total = blob.bytes.len() as u64;
    let mut response = if is_not_modified(request, &etag, blob.meta.created) {
        status_only(StatusCode::NOT_MODIFIED)
    } else {
        match range::choose(request, &etag, &last_modified, total) {
            Ranged::Full => body(StatusCode::OK, blob.bytes.clone(), &blob.meta.media_type),
            Ranged::Partial { start, end } => {
                // Both bounds are below `total`, which came from a usize.
                let part = blob.bytes.slice(start as usize..=end as usize);
                let mut r = body(StatusCode::PARTIAL_CONTENT, part, &blob.meta.media_type);
                insert(
                    r.headers_mut(),
                    header::CONTENT_RANGE,
                    &format!("bytes {start}-{end}/{total}"),
                );
                r
            }
            Ranged::Unsatisfiable => {
                let mut r = status_only(StatusCode::RANGE_NOT_SATISFIABLE);
                insert(
                    r.headers_mut(),
                    header::CONTENT_RANGE,
                    &format!("bytes */{total}"),
                );
                r
            }
        }
    };
    let cache_control = if response.status() == StatusCode::RANGE_NOT_SATISFIABLE {
        "no-store"
    } else {
        h.cache_control
    };
    let headers = response.headers_mut();
    common_headers(headers);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    insert(headers, header::ETAG, &etag);
    insert(headers, header::LAST_MODIFIED, &last_modified);
    insert(headers, header::CACHE_CONTROL, cache_control);
    if !h.surrogate_keys.is_empty() {
        insert(
            headers,
            HeaderName::from_static("surrogate-key"),
            &h.surrogate_keys.join(" "),
        );
        insert(
            headers,
            HeaderName::from_static("cache-tag"),
            &h.surrogate_keys.join(","),
        );
    }
    if h.vary_accept {
        headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    }
    if let Some(url) = h.canonical {
        insert(
            headers,
            header::LINK,
            &format!("<{url}>; rel=\"canonical\""),
        );
    }
    headers.insert(
        HeaderName::from_static("x-imgmirror-source"),
        HeaderValue::from_static(h.source.as_str()),
    );
    response
}

fn status_only(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::default());
    *r.status_mut() = status;
    r
}

fn body(status: StatusCode, bytes: Bytes, media_type: &str) -> Response<Body> {
    let len = bytes.len();
    let mut r = Response::new(full(bytes));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    insert(headers, header::CONTENT_TYPE, media_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// RFC 9110 §13.1: If-None-Match (weak comparison) wins; If-Modified-Since is only
/// consulted without it.
fn is_not_modified(request: &HeaderMap, etag: &str, modified: u64) -> bool {
    if let Some(inm) = request.get(header::IF_NONE_MATCH) {
        let Ok(inm) = inm.to_str() else { return false };
        return inm
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag);
    }
    let Some(ims) = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    else {
        return false;
    };
    UNIX_EPOCH + Duration::from_secs(modified) <= ims
}

/// The CORS preflight answer: any origin may GET or HEAD any image.
pub fn preflight(request: &HeaderMap) -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    common_headers(headers);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    let allow_headers = request
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(86_400));
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Access-Control-Request-Headers"),
    );
    response
}

/// The JSON error body, with the same cross-origin headers as images so a page's
/// script can read why an image failed.
pub fn error(error: &Error, config: &ResponseConfig) -> Response<Body> {
    let (status, headers, text) = error_parts(error, config);
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// [`error`] as the bytes of a whole HTTP/1.1 response that closes the connection, for
/// refusals made at the socket, before hyper has a request to answer.
pub fn raw_error(error: &Error, config: &ResponseConfig) -> Bytes {
    let (status, headers, body) = error_parts(error, config);
    let mut text = format!(
        "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in &headers {
        text.push_str(&format!(
            "{name}: {}\r\n",
            value.to_str().unwrap_or_default()
        ));
    }
    text.push_str("\r\n");
    text.push_str(&body);
    Bytes::from(text)
}

/// The status, headers and JSON body every error answer is made of.
fn error_parts(error: &Error, config: &ResponseConfig) -> (StatusCode, HeaderMap, String) {
    let (status, code) = error.status_and_code();
    let message = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        // Don't leak paths and internals; the log has the detail.
        match status {
            StatusCode::INTERNAL_SERVER_ERROR => "internal error".to_string(),
            _ => error.to_string(),
        }
    } else {
        error.to_string()
    };
    let body = serde_json::json!({ "code": code, "message": message, "status": status.as_u16() });
    let mut headers = HeaderMap::new();
    common_headers(&mut headers);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    insert(
        &mut headers,
        header::CACHE_CONTROL,
        error_cache_control(status, config),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(1));
    }
    if let Error::Unauthorized(_) = error {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    (status, headers, format!("{body}\n"))
}

/// A CDN must not keep a failure of ours (5xx) or a "slow down" (429): the next request
/// may well succeed. A 404 is kept briefly (the image may appear), other 4xx a little.
fn error_cache_control(status: StatusCode, config: &ResponseConfig) -> &str {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        "no-store"
    } else if status == StatusCode::NOT_FOUND {
        &config.cache_control_not_found
    } else {
        &config.cache_control_error
    }
}

/// A small plain-text response (health, metrics).
pub fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    common_headers(headers);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    // Values come from our own config and formatting; one that is not a valid header
    // (a control character in a config string) is dropped rather than panicking.
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_cached_by_status() {
        let config = ResponseConfig::default();
        let cc = |status: u16| error_cache_control(StatusCode::from_u16(status).unwrap(), &config);
        assert_eq!(cc(404), "public, max-age=60");
        assert_eq!(cc(400), "public, max-age=30");
        assert_eq!(cc(415), "public, max-age=30");
        for status in [429, 500, 502, 503, 504] {
            assert_eq!(cc(status), "no-store", "{status}");
        }
    }

    #[test]
    fn conditional_requests() {
        let etag = "\"abc\"";
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(is_not_modified(&h, etag, 1000));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x\""));
        h.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("Sat, 01 Jan 2050 00:00:00 GMT"),
        );
        // If-None-Match present and not matching: If-Modified-Since is ignored.
        assert!(!is_not_modified(&h, etag, 1000));
        h.remove(header::IF_NONE_MATCH);
        assert!(is_not_modified(&h, etag, 1000));
        h.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:01 GMT"),
        );
        assert!(!is_not_modified(&h, etag, 1000));
    }
}
