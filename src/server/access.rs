//! What the access log and `X-Request-Id` say about a request: the id (the client's or
//! a fresh random one), the upstream URL with its secrets redacted, and which bound an
//! overloaded request hit. Pure functions and a counter; the log line itself is written
//! in [`super::handle`].

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;
use url::Url;

use crate::error::Error;
use crate::metrics::Overload;
use crate::mirror::MirrorError;
use crate::store::StoreError;
use crate::transform::PoolError;
use crate::upstream::UpstreamError;

/// Longest incoming `X-Request-Id` kept.
const MAX_ID_LEN: usize = 128;

/// Makes request ids: 128 random-looking bits per request, as 32 hex digits.
///
/// SipHash keyed with std's per-process random keys ([`RandomState`]) over a counter: no
/// RNG crate, no syscall per request, unique within the process (distinct inputs) and
/// unguessable from outside it (the keys never leave the process).
pub struct RequestIds {
    keys: RandomState,
    next: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds {
            keys: RandomState::new(),
            next: AtomicU64::new(0),
        }
    }
}

impl RequestIds {
    /// The id of a request: the client's (or the CDN's) `X-Request-Id` when it is
    /// well-formed, so one id follows the request through every hop; else a new one.
    pub fn for_request(&self, incoming: Option<&HeaderValue>) -> String {
        if let Some(id) = incoming.and_then(|v| v.to_str().ok())
            && is_well_formed(id)
        {
            return id.to_owned();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (a, b) = (self.keys.hash_one((n, 0u8)), self.keys.hash_one((n, 1u8)));
        format!("{a:016x}{b:016x}")
    }
}

/// 1 to 128 characters of `[A-Za-z0-9._-]`: safe to echo in a header and a log line.
pub fn is_well_formed(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `url` for the log: userinfo dropped and the values of query parameters whose names look
/// secret (tokens, signatures, keys, passwords, sessions) replaced by `REDACTED`, keeping
/// every other byte of the query as it was.
pub fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let Some(query) = url.query() else {
        return url.to_string();
    };
    let query = query
        .split('&')
        .map(|pair| {
            let (key, _) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_encoding::percent_decode_str(key)
                .decode_utf8_lossy()
                .to_ascii_lowercase();
            if is_secret_name(&name) {
                format!("{key}=REDACTED")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&");
    url.set_query(Some(&query));
    url.to_string()
}

fn is_secret_name(name: &str) -> bool {
    const SECRET: [&str; 10] = [
        "token",
        "secret",
        "sig",
        "key",
        "pass",
        "auth",
        "credential",
        "session",
        "jwt",
        "code",
    ];
    SECRET.iter().any(|s| name.contains(s))
}

/// Which bound a 503 came from, for `imgmirror_overloaded_total{what}`.
pub fn overload(error: &Error) -> Option<Overload> {
    match error {
        Error::Mirror(MirrorError::Pool(PoolError::Overloaded)) => Some(Overload::RenderQueue),
        Error::Mirror(MirrorError::Store(StoreError::Upstream(
            UpstreamError::Overloaded | UpstreamError::RateLimited { .. },
        ))) => Some(Overload::UpstreamSlots),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_ids_are_kept_only_when_well_formed() {
        let ids = RequestIds::default();
        let keep = HeaderValue::from_static("cdn-7f3a.2_b");
        assert_eq!(ids.for_request(Some(&keep)), "cdn-7f3a.2_b");
        for bad in ["", "has space", "semi;colon", "quote\"", &"x".repeat(129)] {
            let value = HeaderValue::from_str(bad).unwrap();
            let id = ids.for_request(Some(&value));
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32, "{id}");
            assert!(is_well_formed(&id));
        }
        let (a, b) = (ids.for_request(None), ids.for_request(None));
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        // Another process (another RandomState) does not repeat this one's ids.
        assert_ne!(RequestIds::default().for_request(None), a);
    }

    #[test]
    fn secrets_in_upstream_urls_are_redacted() {
        let cases = [
            (
                "http://a.example/x.jpg?w=1&token=abc&X-Amz-Signature=f00&v=2",
                "http://a.example/x.jpg?w=1&token=REDACTED&X-Amz-Signature=REDACTED&v=2",
            ),
            (
                "http://a.example/x.jpg?api%5Fkey=s3&size=big",
                "http://a.example/x.jpg?api%5Fkey=REDACTED&size=big",
            ),
            ("http://user:pw@a.example/x.jpg", "http://a.example/x.jpg"),
            ("http://a.example/x.jpg", "http://a.example/x.jpg"),
        ];
        for (url, want) in cases {
            assert_eq!(redacted(&Url::parse(url).unwrap()), want, "{url}");
        }
    }
}
