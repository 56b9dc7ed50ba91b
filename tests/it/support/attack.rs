//! The frame of every hostile-input case: the attack and an honest request sent at the same
//! time (the honest one must be served, as an image, within seconds), and afterwards proof
//! that the attack left nothing behind (no URL entry in the index, no object, variant or
//! temp file beyond the honest request's own).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{Origin, Server, client, enc, fixture, open_index, sha256};

/// What came back for the attack.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Answer {
    /// The JSON error body's `code` ("" when the body is not one).
    pub fn code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    pub fn assert_refused(&self, status: u16, code: &str, attack: &str) {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "{attack}: {}",
            String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
        );
        // An error is never labelled as an image or as a page a browser would run.
        assert_eq!(self.headers["content-type"], "application/json", "{attack}");
    }
}

/// Widths for the honest renders, so each one is a new variant (real work), not a hit.
static HONEST_WIDTH: AtomicU32 = AtomicU32::new(200);

/// GETs `attack_url` and, at the same time, an honest resize of a real photo from `origin`
/// through the same server; asserts the honest one is a 200 image within 10 s.
pub async fn during_honest(server: &Server, origin: &Origin, attack_url: &str) -> Answer {
    let attack = async {
        let response = client().get(attack_url).send().await.unwrap();
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap_or_default(),
        }
    };
    during_honest_with(server, origin, attack_url, attack).await
}

/// [`during_honest`] for an attack that is not a plain GET (`attack` is its future).
pub async fn during_honest_with<T>(
    server: &Server,
    origin: &Origin,
    what: &str,
    attack: impl std::future::Future<Output = T>,
) -> T {
    let width = HONEST_WIDTH.fetch_add(1, Ordering::Relaxed);
    let honest_url = server.url(&format!(
        "/?url={}&w={width}",
        enc(&origin.url(&format!("/img/{HONEST_FILE}")))
    ));
    let honest = async {
        let started = Instant::now();
        let response = client().get(&honest_url).send().await.unwrap();
        let status = response.status();
        let content_type = response.headers()["content-type"].clone();
        let body = response.bytes().await.unwrap();
        (status, content_type, body, started.elapsed())
    };
    let ((status, content_type, body, took), answer) = tokio::join!(honest, attack);
    let what = &what[..what.len().min(200)];
    assert_eq!(status, 200, "honest request during {what}");
    assert!(
        content_type.to_str().unwrap().starts_with("image/"),
        "{content_type:?}"
    );
    assert!(!body.is_empty());
    assert!(
        took < Duration::from_secs(10),
        "honest request took {took:?} during {what}"
    );
    answer
}

/// Sends `request` as raw bytes (what reqwest refuses to build) and returns the status
/// line's code and the whole answer, read until the server closes (at most 10 s).
pub async fn raw_request(server: &Server, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // The server may answer and close before it has read everything: that is fine.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// The honest request's photo: the only original a hostile case may leave in the store.
pub const HONEST_FILE: &str = "photo-1080.jpg";

/// Stops `server` and proves the attacks left nothing: every URL entry, object and
/// variant in the index belongs to the honest photo (plus `allowed`: upstreams that were
/// rightly served), each `refused` upstream has no entry, and no temp file is left.
pub async fn assert_nothing_stored(server: &mut Server, refused: &[String], allowed: &[String]) {
    assert_eq!(server.files("tmp"), 0, "temp files left");
    let files = server.files("objects");
    server.stop().await;
    let index = open_index(&server.dir.join("index.redb")).await;
    let key = |u: &String| {
        url::Url::parse(u)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| u.clone())
    };
    for upstream in refused {
        assert!(
            index.url(&key(upstream)).unwrap().is_none(),
            "{upstream} was stored in the index"
        );
    }
    let allowed: Vec<String> = allowed.iter().map(key).collect();
    let honest = sha256(&fixture(HONEST_FILE));
    let mut originals = vec![honest.clone()];
    let snapshot = index.snapshot().unwrap();
    snapshot
        .urls(|entry| {
            if allowed.contains(&entry.url) {
                originals.push(entry.sha256.clone());
            } else {
                assert!(entry.url.ends_with(HONEST_FILE), "stored: {entry:?}");
                assert_eq!(entry.sha256, honest);
            }
        })
        .unwrap();
    let mut objects = 0;
    snapshot
        .objects(|meta| {
            objects += 1;
            assert!(originals.contains(&meta.sha256), "stored object {meta:?}");
        })
        .unwrap();
    assert_eq!(
        files, objects,
        "object files on disk without an index entry"
    );
    snapshot
        .variants(|meta| {
            assert!(
                originals.contains(&meta.original),
                "stored variant {meta:?}"
            );
        })
        .unwrap();
}
