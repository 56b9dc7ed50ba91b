//! The mirror core end to end: URL forms, byte identity, single-flight, mirror
//! semantics when the upstream goes away or changes, persistence across restarts, and
//! the failures (413, 415, 404, 502, 504) with nothing stored.

use std::time::{Duration, Instant};

use crate::support::{
    Origin, Server, client, config_for, enc, fixture, get_status, setup, sha256, wait_logged,
};

#[tokio::test]
async fn worker_form_serves_the_exact_upstream_bytes() {
    let (origin, server, _dir) = setup().await;
    let upstream = origin.url("/img/photo-1080.jpg");

    let response = client().get(server.proxy(&upstream)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert_eq!(response.headers()["x-imgmirror-source"], "upstream");
    let body = response.bytes().await.unwrap();
    assert_eq!(body.as_ref(), fixture("photo-1080.jpg").as_slice());

    // Second time: from memory, same bytes, no new upstream request.
    let again = client().get(server.proxy(&upstream)).send().await.unwrap();
    assert_eq!(again.headers()["x-imgmirror-source"], "memory");
    assert_eq!(again.bytes().await.unwrap(), body);
    assert_eq!(origin.hits("/img/photo-1080.jpg"), 1);
    assert_eq!(server.files("objects"), 1);
}

#[tokio::test]
async fn worker_form_keeps_the_upstream_query_string_and_accepts_percent_encoding() {
    let (origin, server, _dir) = setup().await;
    let upstream = origin.url("/img/photo-480.jpg?v=2&size=big");

    let response = client().get(server.proxy(&upstream)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(origin.hits("/img/photo-480.jpg?v=2&size=big"), 1);
    assert_eq!(
        response.headers()["link"],
        format!("<{upstream}>; rel=\"canonical\"").as_str()
    );

    // The same URL percent-encoded as a whole is the same mirror entry.
    let encoded = client()
        .get(server.proxy(&enc(&upstream)))
        .send()
        .await
        .unwrap();
    assert_eq!(encoded.status(), 200);
    assert_eq!(encoded.headers()["x-imgmirror-source"], "memory");
    assert_eq!(origin.hits("/img/photo-480.jpg?v=2&size=big"), 1);
}

#[tokio::test]
async fn explicit_form_and_permalink_serve_the_same_bytes() {
    let (origin, server, _dir) = setup().await;
    let upstream = origin.url("/img/astronaut-512.jpg");
    let original = fixture("astronaut-512.jpg");
    let hash = sha256(&original);

    let response = client()
        .get(server.url(&format!("/?url={}", enc(&upstream))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], format!("\"{hash}\"").as_str());
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        original.as_slice()
    );

    for path in [format!("/m/{hash}"), format!("/m/{hash}.jpg")] {
        let response = client().get(server.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(response.headers()["etag"], format!("\"{hash}\"").as_str());
        assert!(response.headers().get("link").is_none());
        assert_eq!(
            response.bytes().await.unwrap().as_ref(),
            original.as_slice()
        );
    }

    // Unknown hash, and unknown options before the transform work lands.
    let missing = client()
        .get(server.url(&format!("/m/{}", "0".repeat(64))))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let bad = client()
        .get(server.url(&format!("/?url={}&frobnicate=1", enc(&upstream))))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("frobnicate"),
        "{body}"
    );
}

#[tokio::test]
async fn identical_bytes_from_two_urls_are_stored_once() {
    let (origin, server, _dir) = setup().await;
    for path in [
        "/img/photo-480.jpg",
        "/redirect/2/photo-480.jpg",
        "/lie/photo-480.jpg",
    ] {
        let response = client()
            .get(server.proxy(&origin.url(path)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        // A lying Content-Type does not matter: the type comes from the bytes.
        assert_eq!(response.headers()["content-type"], "image/jpeg", "{path}");
    }
    assert_eq!(server.files("objects"), 1);
}

#[tokio::test]
async fn a_hundred_concurrent_requests_for_a_cold_url_make_one_upstream_request() {
    let (origin, server, _dir) = setup().await;
    // Slow enough that all requests arrive while the first fetch is in flight.
    let upstream = origin.url("/slow/300/photo-1920.jpg");
    let client = client();
    let requests = (0..100).map(|_| {
        let (client, url) = (client.clone(), server.proxy(&upstream));
        tokio::spawn(async move {
            let response = client.get(url).send().await.unwrap();
            (response.status(), response.bytes().await.unwrap().len())
        })
    });
    let results = futures_util::future::join_all(requests).await;
    let expected = fixture("photo-1920.jpg").len();
    for result in results {
        assert_eq!(result.unwrap(), (reqwest::StatusCode::OK, expected));
    }
    assert_eq!(origin.hits("/slow/300/photo-1920.jpg"), 1);
}

#[tokio::test]
async fn mirrored_copy_outlives_a_stopped_upstream_with_a_log_line() {
    let mut origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    // Revalidate on every request so the dead upstream is noticed.
    config.cache.fresh_secs = 0;
    let server = Server::start(config).await;
    let upstream = origin.url("/img/photo-480.jpg");
    assert_eq!(get_status(server.proxy(&upstream)).await, 200);

    origin.stop().await;
    let response = client().get(server.proxy(&upstream)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        fixture("photo-480.jpg").as_slice()
    );
    assert!(
        wait_logged(&["serving the mirrored copy", &upstream]).await,
        "no log line about the failed upstream"
    );
}

#[tokio::test]
async fn mirrored_copy_outlives_an_upstream_404() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    config.cache.fresh_secs = 0;
    let server = Server::start(config).await;
    let upstream = origin.url("/mutable/x.jpg");
    assert_eq!(get_status(server.proxy(&upstream)).await, 200);

    origin.set_mutable("does-not-exist.jpg");
    for _ in 0..3 {
        let response = client().get(server.proxy(&upstream)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.bytes().await.unwrap().as_ref(),
            fixture("photo-480.jpg").as_slice()
        );
    }
    assert!(wait_logged(&["serving the mirrored copy", "404", &upstream]).await);
}

#[tokio::test]
async fn a_changed_upstream_image_moves_the_url_to_a_new_object() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    config.cache.fresh_secs = 0;
    let server = Server::start(config).await;
    let upstream = origin.url("/mutable/y.jpg");
    let first = client().get(server.proxy(&upstream)).send().await.unwrap();
    assert_eq!(
        first.headers()["etag"],
        format!("\"{}\"", sha256(&fixture("photo-480.jpg"))).as_str()
    );

    origin.set_mutable("astronaut-512.jpg");
    // This request still gets the mirrored copy and triggers the revalidation.
    let stale = client().get(server.proxy(&upstream)).send().await.unwrap();
    assert_eq!(stale.status(), 200);
    assert!(wait_logged(&["upstream image changed", &upstream]).await);

    let moved = client().get(server.proxy(&upstream)).send().await.unwrap();
    assert_eq!(
        moved.bytes().await.unwrap().as_ref(),
        fixture("astronaut-512.jpg").as_slice()
    );
    assert_eq!(server.files("objects"), 2);
}

#[tokio::test]
async fn a_restart_serves_everything_mirrored_before_it_and_cleans_temp_files() {
    let mut origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let names = ["photo-480.jpg", "cat-alpha.png", "tiny-anim.gif"];
    let mut server = Server::start(config_for(dir.path(), Some(&origin))).await;
    for name in names {
        let url = server.proxy(&origin.url(&format!("/img/{name}")));
        assert_eq!(get_status(url).await, 200);
    }
    server.stop().await;
    drop(server); // releases the index's file lock, as a process exit would
    let config = config_for(dir.path(), Some(&origin));
    origin.stop().await;

    // A crash mid-write leaves a temp file; it must never be served and is removed.
    let leftover = dir
        .path()
        .join("tmp")
        .join(format!("{}.1.0", "ab".repeat(32)));
    std::fs::write(&leftover, b"partial bytes").unwrap();

    let restarted = Server::start(config).await;
    assert!(!leftover.exists(), "temp file survived the restart");
    for name in names {
        let url = restarted.proxy(&origin.url(&format!("/img/{name}")));
        let response = client().get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(response.headers()["x-imgmirror-source"], "disk");
        assert_eq!(
            response.bytes().await.unwrap().as_ref(),
            fixture(name).as_slice()
        );
    }
    let partial = restarted.url(&format!("/m/{}", "ab".repeat(32)));
    assert_eq!(get_status(partial).await, 404);
}

#[tokio::test]
async fn non_image_bodies_are_415_and_not_stored() {
    let (origin, server, _dir) = setup().await;
    let response = client()
        .get(server.proxy(&origin.url("/html-as-jpeg/a.jpg")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not-an-image");
    assert!(
        body["message"].as_str().unwrap().contains("image/jpeg"),
        "{body}"
    );
    assert_eq!(server.files("objects"), 0);
    assert_eq!(server.files("tmp"), 0);
}

#[tokio::test]
async fn images_truncated_at_the_source_are_422_and_not_stored() {
    let (origin, server, _dir) = setup().await;
    for file in ["photo-1080.jpg", "cat-alpha.png", "pan-anim.gif"] {
        let response = client()
            .get(server.proxy(&origin.url(&format!("/cut/{file}"))))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{file}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "corrupt-image", "{file}");
    }
    assert_eq!(server.files("objects"), 0);
}

#[tokio::test]
async fn bodies_over_the_cap_are_413_without_reading_them_all() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    config.upstream.max_bytes = 256 * 1024;
    let server = Server::start(config).await;

    // Announced too large: refused before the body.
    let response = client()
        .get(server.proxy(&origin.url("/huge-length/a.jpg")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // Chunked and endless (6 GiB if read to the end): refused as the cap is crossed.
    let started = Instant::now();
    let response = client()
        .get(server.proxy(&origin.url("/endless/a.jpg")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "too-large");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(server.files("objects"), 0);

    // A body just under the cap is fine.
    let response = client()
        .get(server.proxy(&origin.url("/img/photo-480.jpg")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn upstream_failures_map_to_clear_statuses_and_are_not_stored() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    config.upstream.timeout_secs = 1;
    let server = Server::start(config).await;
    let cases = [
        ("/status/404/a.jpg", 404, "upstream-not-found"),
        ("/status/500/a.jpg", 502, "upstream-error"),
        ("/status/403/a.jpg", 502, "upstream-error"),
        ("/slow/3000/photo-480.jpg", 504, "upstream-timeout"),
        ("/truncated/photo-1920.jpg", 502, "upstream-error"),
        ("/redirect/6/photo-480.jpg", 502, "upstream-error"),
    ];
    for (path, status, code) in cases {
        let response = client()
            .get(server.proxy(&origin.url(path)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{path}: {body}");
    }
    // Five redirects are within the limit.
    let response = client()
        .get(server.proxy(&origin.url("/redirect/5/photo-480.jpg")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.files("objects"), 1);
}

#[tokio::test]
async fn failures_are_remembered_briefly_so_the_upstream_is_not_hammered() {
    let (origin, server, _dir) = setup().await;
    let upstream = origin.url("/status/503/a.jpg");
    for _ in 0..5 {
        let response = client().get(server.proxy(&upstream)).send().await.unwrap();
        assert_eq!(response.status(), 502);
    }
    assert_eq!(origin.hits("/status/503/a.jpg"), 1);
}
