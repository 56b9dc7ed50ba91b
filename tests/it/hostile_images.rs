//! Hostile images over HTTP (the decoder-level hardening): an animation asked for at
//! 7000×7000 is refused before any work with 422 `too-expensive`, and a progressive JPEG
//! over `transform.max_jpeg_scans` with 422 `too-many-scans`; neither leaves a variant.
//! The crafted inputs themselves (fake frame headers, scan bombs, WebP bitstreams that
//! disagree with their container) are unit-tested in `src/transform/hostile_tests.rs`.

use std::time::{Duration, Instant};

use crate::support::{Origin, Server, client, config_for, enc, setup};

async fn refused_with(server: &Server, url: String, code: &str) {
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 422, "{code}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], code);
    assert_eq!(server.files("variants"), 0);
}

#[tokio::test]
async fn an_animation_resized_to_7000_square_is_too_expensive() {
    let (origin, server, _dir) = setup().await;
    let url = server.url(&format!(
        "/?url={}&w=7000&h=7000&fit=fill&enlarge=1&format=gif",
        enc(&origin.url("/img/pan-anim.gif"))
    ));
    let start = Instant::now();
    refused_with(&server, url, "too-expensive").await;
    // Refused from the header, not after rendering 8 frames of 49 MP (tens of seconds).
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_jpeg_over_the_scan_limit_is_refused() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    // photo-1920-progressive.jpg has more than 2 scans (mozjpeg's progressive script).
    config.transform.max_jpeg_scans = 2;
    let server = Server::start(config).await;
    let url = server.url(&format!(
        "/?url={}&w=100",
        enc(&origin.url("/img/photo-1920-progressive.jpg"))
    ));
    refused_with(&server, url, "too-many-scans").await;
}
