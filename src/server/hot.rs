//! The hot-response cache: for the image URLs served from memory over and over, the whole
//! answer (status, every header value, the body's [`Bytes`]) kept as it was built once, so
//! a repeat request costs a hash-map read and a header-map clone instead of URL parsing,
//! option canonicalisation, four cache look-ups, a SHA-256 to name the variant and a dozen
//! header values formatted from strings.
//!
//! What it owns: the map, its bounds (entries, and `cache.hot_bytes` of answers, at most
//! `memory_bytes / 8`, each weighed as its body, target, headers and [`ENTRY_OVERHEAD`];
//! off when either is 0, so a memory-less mirror is measured as one) and the rules for
//! when an entry may answer. It does not own the images: the body is the memory layer's own `Bytes`
//! (refcounted, not copied), and what a URL names is still the service layer's answer.
//!
//! An entry answers only a request with the same method class (GET/HEAD), the same request
//! target byte for byte and the same `Accept` value, with no conditional or range headers
//! (those take the full path, which answers 304/206/416), while
//!
//! - the mirror's change generation ([`crate::mirror::Mirror::generation`], bumped after
//!   every pin, purge, revalidation that moved a URL and re-fetch) is the one read before
//!   the entry was built, so nothing a purge removed or a pin re-keyed is ever served;
//! - the URL is still fresh (`fresh_until`): past it the full path runs, which starts the
//!   background revalidation exactly as before. With a shared store it is at most
//!   `store.shared_recheck_secs` away ([`crate::store::Store::trusted_until`]), so a purge
//!   through another node is seen here as soon as by the full path.
//!
//! Only answers that came from the memory layer are kept (a second request at least), so
//! one-off cold URLs never churn it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, Response, StatusCode};

use super::response::{self, Body};
use crate::store::{Source, unix_now};

/// Entries kept at most, whatever their size.
const MAX_ENTRIES: usize = 4096;
/// A body larger than this is not worth a slot (it is a fraction of the cost of sending it).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Bytes an entry holds beyond its strings and header bytes: the entry itself, its
/// map slot, the header map's tables and per-header bookkeeping (an estimate, rounded up,
/// so a URL near the 8 KiB cap or a long header list is paid for, not free).
const ENTRY_OVERHEAD: usize = 512;

/// One ready answer.
struct Entry {
    target: Box<str>,
    accept: Option<Box<str>>,
    generation: u64,
    fresh_until: u64,
    headers: HeaderMap,
    body: Bytes,
    route: &'static str,
    upstream: Option<String>,
    /// The file served and its original, for the disk budget's recency.
    sha256: Box<str>,
    original_sha256: Box<str>,
    /// Unix second of the last recency note (at most one a second).
    noted: AtomicU64,
    /// What it counts against `max_bytes` ([`weight`]).
    weight: usize,
}

/// What a kept answer is and derives from (see [`Hot::insert`]).
pub struct Origin<'a> {
    pub source: Source,
    pub generation: u64,
    pub fresh_until: u64,
    pub route: &'static str,
    pub upstream: Option<&'a str>,
    pub sha256: &'a str,
    pub original_sha256: &'a str,
}

/// What a hot answer tells the access line.
pub struct Served {
    pub response: Response<Body>,
    pub route: &'static str,
    pub upstream: Option<String>,
}

pub struct Hot {
    map: RwLock<HashMap<u64, Entry>>,
    keys: RandomState,
    bytes: AtomicUsize,
    max_bytes: usize,
}

impl Hot {
    /// A cache of `hot_bytes` of bodies, at most `memory_bytes / 8` (a body the memory
    /// layer evicted stays alive here until its entry goes); none when either is 0.
    pub fn new(memory_bytes: u64, hot_bytes: u64) -> Hot {
        let max_bytes = (memory_bytes / 8).min(hot_bytes);
        Hot {
            map: RwLock::new(HashMap::new()),
            keys: RandomState::new(),
            bytes: AtomicUsize::new(0),
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        }
    }

    fn key(&self, target: &str, accept: Option<&str>) -> u64 {
        self.keys.hash_one((target, accept))
    }

    /// The kept answer for this request, when one may answer it. `note(sha256, original)`
    /// is called at most once a second per answer, for the disk budget's recency.
    pub fn get(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        generation: u64,
        note: impl FnOnce(&str, &str),
    ) -> Option<Served> {
        if self.max_bytes == 0 || !cacheable_request(method, headers) {
            return None;
        }
        let accept = accept(headers);
        let key = self.key(target, accept);
        let map = self.map.read().ok()?;
        let entry = map.get(&key)?;
        if &*entry.target != target
            || entry.accept.as_deref() != accept
            || entry.generation != generation
            || entry.fresh_until <= unix_now()
        {
            return None;
        }
        let now = unix_now();
        if entry.noted.swap(now, Ordering::Relaxed) != now {
            note(&entry.sha256, &entry.original_sha256);
        }
        let mut response = Response::new(response::full(entry.body.clone()));
        *response.headers_mut() = entry.headers.clone();
        Some(Served {
            response,
            route: entry.route,
            upstream: entry.upstream.clone(),
        })
    }

    /// Keeps `response` (a full 200 from the memory layer, whose body is `body`) for
    /// requests like this one. `origin.generation` is the one read before the answer was
    /// looked up.
    pub fn insert(
        &self,
        request: &http::request::Parts,
        response: &Response<Body>,
        body: &Bytes,
        origin: Origin<'_>,
    ) {
        let generation = origin.generation;
        if self.max_bytes == 0
            || origin.source != Source::Memory
            || response.status() != StatusCode::OK
            || body.len() > MAX_BODY
            || origin.fresh_until <= unix_now()
            || !cacheable_request(&request.method, &request.headers)
        {
            return;
        }
        let Some(target) = request.uri.path_and_query().map(|p| p.as_str()) else {
            return;
        };
        let accept = accept(&request.headers);
        let key = self.key(target, accept);
        let weight = weight(body, target, accept, response.headers(), &origin);
        let Ok(mut map) = self.map.write() else {
            return;
        };
        // Make room: drop stale entries first, then arbitrary ones (a hot URL comes back
        // on its next request).
        while !map.is_empty()
            && (map.len() >= MAX_ENTRIES
                || self.bytes.load(Ordering::Relaxed) + weight > self.max_bytes)
        {
            let victim = map
                .iter()
                .find(|(_, e)| e.generation != generation)
                .or_else(|| map.iter().next())
                .map(|(k, _)| *k);
            if let Some(e) = victim.and_then(|k| map.remove(&k)) {
                self.bytes.fetch_sub(e.weight, Ordering::Relaxed);
            }
        }
        if weight > self.max_bytes {
            return;
        }
        let entry = Entry {
            target: target.into(),
            accept: accept.map(Into::into),
            generation,
            fresh_until: origin.fresh_until,
            headers: response.headers().clone(),
            body: body.clone(),
            route: origin.route,
            upstream: origin.upstream.map(str::to_owned),
            sha256: origin.sha256.into(),
            original_sha256: origin.original_sha256.into(),
            noted: AtomicU64::new(0),
            weight,
        };
        self.bytes.fetch_add(weight, Ordering::Relaxed);
        if let Some(old) = map.insert(key, entry) {
            self.bytes.fetch_sub(old.weight, Ordering::Relaxed);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.read().map_or(0, |m| m.len())
    }
}

/// What an entry holds: the body (shared with the memory layer, but kept alive here after
/// it evicts), the strings copied in and the header bytes.
fn weight(
    body: &Bytes,
    target: &str,
    accept: Option<&str>,
    headers: &HeaderMap,
    origin: &Origin<'_>,
) -> usize {
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    body.len()
        + target.len()
        + accept.map_or(0, str::len)
        + origin.upstream.map_or(0, str::len)
        + origin.sha256.len()
        + origin.original_sha256.len()
        + header_bytes
        + ENTRY_OVERHEAD
}

fn accept(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}

/// GET or HEAD with nothing that makes the answer depend on more than the URL and
/// `Accept`: validators and ranges take the full path (304, 206, 416).
fn cacheable_request(method: &Method, headers: &HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && !headers.contains_key(header::IF_NONE_MATCH)
        && !headers.contains_key(header::IF_MODIFIED_SINCE)
        && !headers.contains_key(header::RANGE)
        && !headers.contains_key(header::IF_RANGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(target: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::get(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn ok(body: &Bytes) -> Response<Body> {
        let mut r = Response::new(response::full(body.clone()));
        r.headers_mut()
            .insert(header::ETAG, http::HeaderValue::from_static("\"e\""));
        r
    }

    fn origin(source: Source, generation: u64, fresh_until: u64) -> Origin<'static> {
        Origin {
            source,
            generation,
            fresh_until,
            route: "proxy",
            upstream: Some("http://h/a.jpg"),
            sha256: "v",
            original_sha256: "o",
        }
    }

    #[test]
    fn answers_only_the_same_target_accept_and_generation() {
        let hot = Hot::new(1 << 30, 1 << 30);
        let body = Bytes::from_static(b"jpeg");
        let later = unix_now() + 100;
        let req = parts("/?url=x&w=1", &[("accept", "image/webp")]);
        hot.insert(&req, &ok(&body), &body, origin(Source::Memory, 7, later));
        let notes = std::cell::Cell::new(0);
        let get = |target: &str, h: &[(&str, &str)], generation| {
            let p = parts(target, h);
            hot.get(&p.method, target, &p.headers, generation, |v, o| {
                assert_eq!((v, o), ("v", "o"));
                notes.set(notes.get() + 1);
            })
        };
        let served = get("/?url=x&w=1", &[("accept", "image/webp")], 7).unwrap();
        assert_eq!(served.route, "proxy");
        assert_eq!(served.upstream.as_deref(), Some("http://h/a.jpg"));
        assert_eq!(served.response.headers()[header::ETAG], "\"e\"");
        assert!(get("/?url=x&w=1", &[("accept", "image/webp")], 7).is_some());
        assert!(
            notes.get() >= 1 && notes.get() <= 2,
            "noted at most once a second"
        );
        assert!(get("/?url=x&w=1", &[("accept", "image/webp")], 8).is_none());
        assert!(get("/?url=x&w=1", &[], 7).is_none());
        assert!(get("/?url=x&w=2", &[("accept", "image/webp")], 7).is_none());
        let conditional = [("accept", "image/webp"), ("if-none-match", "\"e\"")];
        assert!(get("/?url=x&w=1", &conditional, 7).is_none());
        let ranged = [("accept", "image/webp"), ("range", "bytes=0-1")];
        assert!(get("/?url=x&w=1", &ranged, 7).is_none());
    }

    #[test]
    fn keeps_only_fresh_memory_answers_and_stays_bounded() {
        let body = Bytes::from(vec![0u8; 400]);
        let one = weight(
            &body,
            "/?url=x&w=0",
            None,
            ok(&body).headers(),
            &origin(Source::Memory, 1, 0),
        );
        assert!(
            one > 400 + ENTRY_OVERHEAD,
            "headers and strings count: {one}"
        );
        // Room for two entries and a half: what they hold beyond the body counts too.
        let hot = Hot::new(8 * (one * 5 / 2) as u64, 1 << 30);
        let later = unix_now() + 100;
        let req = |n: usize| parts(&format!("/?url=x&w={n}"), &[]);
        hot.insert(&req(0), &ok(&body), &body, origin(Source::Render, 1, later));
        hot.insert(&req(0), &ok(&body), &body, origin(Source::Memory, 1, 0));
        assert_eq!(hot.len(), 0, "renders and stale URLs are not kept");
        for n in 0..10 {
            hot.insert(&req(n), &ok(&body), &body, origin(Source::Memory, 1, later));
        }
        assert_eq!(hot.len(), 2, "room for two and a half entries");
        assert!(hot.bytes.load(Ordering::Relaxed) <= hot.max_bytes);
        let none = Hot::new(0, 1 << 30).get(&Method::GET, "/", &HeaderMap::new(), 1, |_, _| {});
        assert!(none.is_none());
    }
}
