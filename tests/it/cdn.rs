//! What a CDN in front of imgmirror, and the operator watching it, rely on: `Range` and
//! `If-Range` on originals and variants (206, 416, HEAD), surrogate keys naming the
//! original, its host and its articles, `Cache-Control` per route and per error status,
//! `Vary` only when negotiated, `/readyz`, every `/metrics` series moving as requests flow
//! (and `/metrics` on its own address), `X-Request-Id` kept or made, the access line, and
//! `log.format = "json"` from the real binary. The real Varnish in front is `varnish.rs`.

use std::time::Duration;

use crate::support::{
    Origin, Server, client, config_for, enc, fixture, logged, metric, metric_in, metrics_text,
    setup, sha256,
};

#[tokio::test]
async fn range_requests_get_exactly_the_bytes_asked_for() {
    let (origin, server, _dir) = setup().await;
    let url = server.proxy(&origin.url("/img/photo-480.jpg"));
    let bytes = fixture("photo-480.jpg");
    let n = bytes.len();
    let get = |range: Option<&str>, if_range: Option<&str>| {
        let mut request = client().get(&url);
        if let Some(r) = range {
            request = request.header("range", r);
        }
        if let Some(v) = if_range {
            request = request.header("if-range", v);
        }
        request.send()
    };

    let whole = get(None, None).await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    let etag = whole.headers()["etag"].to_str().unwrap().to_string();

    let first = get(Some("bytes=0-99"), None).await.unwrap();
    assert_eq!(first.status(), 206);
    let h = first.headers().clone();
    assert_eq!(h["content-range"], format!("bytes 0-99/{n}").as_str());
    assert_eq!(h["content-length"], "100");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["etag"], etag.as_str());
    assert_eq!(h["content-type"], "image/jpeg");
    let body = first.bytes().await.unwrap();
    assert_eq!(body.len(), 100);
    assert_eq!(body.as_ref(), &bytes[..100]);

    let tail = get(Some("bytes=-10"), None).await.unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(
        tail.headers()["content-range"],
        format!("bytes {}-{}/{n}", n - 10, n - 1).as_str()
    );
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &bytes[n - 10..]);

    let open = get(Some(&format!("bytes={}-", n - 1)), None).await.unwrap();
    assert_eq!(open.status(), 206);
    assert_eq!(open.bytes().await.unwrap().as_ref(), &bytes[n - 1..]);

    let past = get(Some(&format!("bytes={n}-")), None).await.unwrap();
    assert_eq!(past.status(), 416);
    assert_eq!(
        past.headers()["content-range"],
        format!("bytes */{n}").as_str()
    );
    assert_eq!(past.headers()["cache-control"], "no-store");

    // Several ranges: the whole body, as documented.
    let multi = get(Some("bytes=0-1,10-20"), None).await.unwrap();
    assert_eq!(multi.status(), 200);
    assert_eq!(multi.bytes().await.unwrap().len(), n);

    // If-Range: the range only while the client's copy is current.
    let current = get(Some("bytes=0-99"), Some(&etag)).await.unwrap();
    assert_eq!(current.status(), 206);
    let changed = get(Some("bytes=0-99"), Some("\"an-older-version\""))
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.bytes().await.unwrap().len(), n);

    // If-None-Match is decided first.
    let cached = client()
        .get(&url)
        .header("range", "bytes=0-99")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    assert_eq!(cached.headers()["accept-ranges"], "bytes");

    let head = client()
        .head(&url)
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 206);
    assert_eq!(head.headers()["content-length"], "100");
    assert_eq!(
        head.headers()["content-range"],
        format!("bytes 0-99/{n}").as_str()
    );
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn range_requests_work_on_variants() {
    let (origin, server, _dir) = setup().await;
    let url = server.url(&format!(
        "/?url={}&w=200&format=png",
        enc(&origin.url("/img/cat-alpha.png"))
    ));
    let whole = client().get(&url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    let variant = whole.bytes().await.unwrap();
    let part = client()
        .get(&url)
        .header("range", "bytes=8-57")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 8-57/{}", variant.len()).as_str()
    );
    assert_eq!(part.headers()["content-type"], "image/png");
    assert_eq!(part.bytes().await.unwrap().as_ref(), &variant[8..58]);
}

#[tokio::test]
async fn surrogate_keys_name_the_original_its_host_and_its_articles() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    config.admin.token = "t0ken".into();
    let server = Server::start(config).await;
    let upstream = origin.url("/img/photo-480.jpg");
    let hash = sha256(&fixture("photo-480.jpg"));
    let keys = |r: &reqwest::Response| {
        let h = r.headers();
        let surrogate: Vec<String> = h["surrogate-key"]
            .to_str()
            .unwrap()
            .split(' ')
            .map(String::from)
            .collect();
        let tags: Vec<String> = h["cache-tag"]
            .to_str()
            .unwrap()
            .split(',')
            .map(String::from)
            .collect();
        assert_eq!(surrogate, tags, "Surrogate-Key and Cache-Tag differ");
        surrogate
    };

    let original = client().get(server.proxy(&upstream)).send().await.unwrap();
    assert_eq!(
        keys(&original),
        [format!("sha256:{hash}"), "host:127.0.0.1".to_string()]
    );

    // A variant is purged with its original: it carries the original's hash, not its own.
    let variant = client()
        .get(server.url(&format!("/?url={}&w=100", enc(&upstream))))
        .send()
        .await
        .unwrap();
    assert_eq!(variant.status(), 200);
    assert_ne!(
        variant.headers()["etag"],
        format!("\"{hash}\"").as_str(),
        "the variant has its own ETag"
    );
    assert!(keys(&variant).contains(&format!("sha256:{hash}")));

    // Pinned by an article: the article's key too.
    let prefetch = client()
        .post(server.url("/prefetch?article=posts/hello world"))
        .bearer_auth("t0ken")
        .header("content-type", "application/json")
        .body(serde_json::to_string(&[&upstream]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(prefetch.status(), 200);
    prefetch.text().await.unwrap();
    let pinned = client().get(server.proxy(&upstream)).send().await.unwrap();
    assert_eq!(
        keys(&pinned),
        [
            format!("sha256:{hash}"),
            "host:127.0.0.1".to_string(),
            "article:posts/hello%20world".to_string()
        ]
    );

    let permalink = client()
        .get(server.url(&format!("/m/{hash}.jpg")))
        .send()
        .await
        .unwrap();
    assert_eq!(keys(&permalink), [format!("sha256:{hash}")]);
}

#[tokio::test]
async fn cache_control_follows_the_route_and_the_status() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    config.response.cache_control_not_found = "public, max-age=7".into();
    config.transform.workers = 1;
    config.transform.queue = 0;
    let server = Server::start(config).await;
    let upstream = origin.url("/img/photo-1080.jpg");
    let cc = |r: &reqwest::Response| r.headers()["cache-control"].to_str().unwrap().to_string();

    let proxied = client().get(server.proxy(&upstream)).send().await.unwrap();
    assert_eq!(proxied.status(), 200);
    let proxy_cc = cc(&proxied);
    assert!(proxy_cc.contains("stale-while-revalidate="), "{proxy_cc}");
    assert!(proxy_cc.contains("stale-if-error="), "{proxy_cc}");
    assert!(!proxy_cc.contains("immutable"), "{proxy_cc}");
    assert!(proxied.headers().get("vary").is_none());

    let hash = sha256(&fixture("photo-1080.jpg"));
    let permalink = client()
        .get(server.url(&format!("/m/{hash}")))
        .send()
        .await
        .unwrap();
    assert_eq!(cc(&permalink), "public, max-age=31536000, immutable");

    // Negotiated format: Vary. Explicit format: no Vary.
    let auto = client()
        .get(server.url(&format!("/?url={}&w=64", enc(&upstream))))
        .header("accept", "image/webp")
        .send()
        .await
        .unwrap();
    assert_eq!(auto.status(), 200);
    assert_eq!(auto.headers()["vary"], "Accept");
    let explicit = client()
        .get(server.url(&format!("/?url={}&w=64&format=jpeg", enc(&upstream))))
        .send()
        .await
        .unwrap();
    assert_eq!(explicit.status(), 200);
    assert!(explicit.headers().get("vary").is_none());

    let missing = client()
        .get(server.url(&format!("/m/{}", "0".repeat(64))))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(cc(&missing), "public, max-age=7");
    let upstream_404 = client()
        .get(server.proxy(&origin.url("/status/404/gone.jpg")))
        .send()
        .await
        .unwrap();
    assert_eq!(upstream_404.status(), 404);
    assert_eq!(cc(&upstream_404), "public, max-age=7");

    let bad = client()
        .get(server.url("/?ftp://x/a.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(cc(&bad), "public, max-age=30");

    let upstream_500 = client()
        .get(server.proxy(&origin.url("/status/500/broken.jpg")))
        .send()
        .await
        .unwrap();
    assert_eq!(upstream_500.status(), 502);
    assert_eq!(cc(&upstream_500), "no-store");

    // A render pool with no queue sheds a render while another runs: 503, no-store.
    let requests = (0..6).map(|i| {
        let url = server.url(&format!(
            "/?url={}&w={}&format=png",
            enc(&upstream),
            500 + i
        ));
        tokio::spawn(async move { client().get(url).send().await.unwrap() })
    });
    let responses: Vec<_> = futures_util::future::join_all(requests).await;
    let shed: Vec<_> = responses
        .iter()
        .map(|r| r.as_ref().unwrap())
        .filter(|r| r.status() == 503)
        .collect();
    assert!(!shed.is_empty(), "nothing was shed");
    for r in shed {
        assert_eq!(cc(r), "no-store");
        assert_eq!(r.headers()["retry-after"], "1");
    }
}

#[tokio::test]
async fn readyz_is_503_with_a_reason_when_the_store_cannot_write() {
    let (_origin, server, _dir) = setup().await;
    let readyz = || async {
        let r = client().get(server.url("/readyz")).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(readyz().await, (200, "ready\n".to_string()));
    assert_eq!(
        client()
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let tmp = server.dir.join("tmp");
    let how = make_unwritable(&tmp);
    let (status, reason) = readyz().await;
    restore(&tmp, how);
    assert_eq!(status, 503, "{how:?}: {reason}");
    assert!(reason.starts_with("not ready: "), "{reason}");
    assert!(reason.contains("probe file"), "{reason}");
    // Alive all the same, and ready again once the directory is back.
    assert_eq!(
        client()
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(readyz().await.0, 200, "after restoring ({how:?})");
}

/// How a directory was made unwritable. Permission bits stop everyone but root; root
/// (CI runs as root) is stopped by the immutable attribute where the file system has it,
/// and otherwise by the directory being replaced with a plain file, which no one can
/// create entries in.
#[derive(Debug, Clone, Copy)]
enum Unwritable {
    ReadOnlyMode,
    Immutable,
    NotADirectory,
}

fn make_unwritable(dir: &std::path::Path) -> Unwritable {
    use std::os::unix::fs::PermissionsExt;
    let can_write = |dir: &std::path::Path| {
        let probe = dir.join("can-i-write");
        let ok = std::fs::write(&probe, b"x").is_ok();
        let _ = std::fs::remove_file(probe);
        ok
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    if !can_write(dir) {
        return Unwritable::ReadOnlyMode;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let chattr = std::process::Command::new("chattr")
        .arg("+i")
        .arg(dir)
        .status();
    if chattr.is_ok_and(|s| s.success()) && !can_write(dir) {
        return Unwritable::Immutable;
    }
    let _ = std::process::Command::new("chattr")
        .arg("-i")
        .arg(dir)
        .status();
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::write(dir, b"not a directory").unwrap();
    Unwritable::NotADirectory
}

fn restore(dir: &std::path::Path, how: Unwritable) {
    use std::os::unix::fs::PermissionsExt;
    match how {
        Unwritable::ReadOnlyMode => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Unwritable::Immutable => {
            std::process::Command::new("chattr")
                .arg("-i")
                .arg(dir)
                .status()
                .unwrap();
        }
        Unwritable::NotADirectory => {
            std::fs::remove_file(dir).unwrap();
            std::fs::create_dir(dir).unwrap();
        }
    }
}

#[tokio::test]
async fn every_series_moves_as_requests_flow() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config_for(dir.path(), Some(&origin))).await;
    let upstream = origin.url("/img/photo-480.jpg");
    let n = fixture("photo-480.jpg").len() as f64;
    let before = metrics_text(&server).await;
    for series in [
        "imgmirror_served_bytes_total",
        "imgmirror_upstream_fetches_total",
        "imgmirror_upstream_fetch_duration_seconds_count",
        "imgmirror_revalidations_total",
        "imgmirror_renders_total",
        "imgmirror_render_duration_seconds_count",
        "imgmirror_render_queue_depth",
        "imgmirror_overloaded_total",
        "imgmirror_store_objects",
        "imgmirror_store_bytes",
        "imgmirror_evictions_total",
        "imgmirror_memory_cache_hits_total",
        "imgmirror_memory_cache_misses_total",
    ] {
        assert_eq!(metric_in(&before, series), 0.0, "{series} at start");
    }
    // The scrape's own connection is open while the scrape is answered.
    assert!(metric_in(&before, "imgmirror_open_connections") >= 1.0);

    // First request: fetched from upstream.
    let first = client().get(server.proxy(&upstream)).send().await.unwrap();
    assert_eq!(first.status(), 200);
    first.bytes().await.unwrap();
    // Second: from memory.
    client()
        .get(server.proxy(&upstream))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // A variant: rendered.
    let variant = client()
        .get(server.url(&format!("/?url={}&w=100&format=webp", enc(&upstream))))
        .send()
        .await
        .unwrap();
    assert_eq!(variant.status(), 200);
    let variant_len = variant.bytes().await.unwrap().len() as f64;
    // An upstream 404.
    let missing = client()
        .get(server.proxy(&origin.url("/status/404/nothing.jpg")))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let text = metrics_text(&server).await;
    let m = |series: &str| metric_in(&text, series);
    assert_eq!(
        m("imgmirror_requests_total{route=\"proxy\",status=\"200\"}"),
        3.0
    );
    assert_eq!(
        m("imgmirror_requests_total{route=\"proxy\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        m("imgmirror_requests_total{route=\"metrics\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        m("imgmirror_request_duration_seconds_count{route=\"proxy\"}"),
        4.0
    );
    assert_eq!(m("imgmirror_served_bytes_total{source=\"upstream\"}"), n);
    assert_eq!(m("imgmirror_served_bytes_total{source=\"memory\"}"), n);
    assert_eq!(
        m("imgmirror_served_bytes_total{source=\"render\"}"),
        variant_len
    );
    assert_eq!(m("imgmirror_upstream_fetches_total{outcome=\"ok\"}"), 1.0);
    assert_eq!(
        m("imgmirror_upstream_fetches_total{outcome=\"not_found\"}"),
        1.0
    );
    assert_eq!(m("imgmirror_upstream_fetch_duration_seconds_count"), 2.0);
    assert!(m("imgmirror_upstream_fetch_duration_seconds_sum") > 0.0);
    assert_eq!(m("imgmirror_renders_total{format=\"webp\"}"), 1.0);
    assert_eq!(
        m("imgmirror_render_duration_seconds_count{format=\"webp\"}"),
        1.0
    );
    assert!(m("imgmirror_memory_cache_hits_total") >= 2.0);
    // The variant was looked up in memory first and was not there.
    assert!(m("imgmirror_memory_cache_misses_total") >= 1.0);
    assert_eq!(m("imgmirror_render_queue_depth"), 0.0);

    // A raw connection held open counts until it closes.
    let held = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert!(metric(&server, "imgmirror_open_connections").await >= 2.0);
    drop(held);
    let mut closed = false;
    for _ in 0..100 {
        if metric(&server, "imgmirror_open_connections").await <= 1.0 {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "open_connections did not go down");
}

#[tokio::test]
async fn store_gauges_revalidations_and_disk_reads_after_a_restart() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(config_for(dir.path(), Some(&origin))).await;
    let (a, b) = (
        origin.url("/img/photo-480.jpg"),
        origin.url("/img/cat-alpha.png"),
    );
    for url in [&a, &b] {
        assert_eq!(
            client()
                .get(server.proxy(url))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    server.stop().await;
    drop(server);

    let mut config = config_for(dir.path(), Some(&origin));
    // Everything is stale: the next request revalidates in the background.
    config.cache.fresh_secs = 0;
    let restarted = Server::start(config).await;
    let text = metrics_text(&restarted).await;
    let bytes = (fixture("photo-480.jpg").len() + fixture("cat-alpha.png").len()) as f64;
    assert_eq!(
        metric_in(&text, "imgmirror_store_objects{kind=\"original\"}"),
        2.0
    );
    assert_eq!(
        metric_in(&text, "imgmirror_store_bytes{kind=\"original\"}"),
        bytes
    );

    let again = client().get(restarted.proxy(&a)).send().await.unwrap();
    assert_eq!(again.headers()["x-imgmirror-source"], "disk");
    again.bytes().await.unwrap();
    let mut revalidated = String::new();
    for _ in 0..100 {
        revalidated = metrics_text(&restarted).await;
        if metric_in(
            &revalidated,
            "imgmirror_upstream_fetches_total{outcome=\"not_modified\"}",
        ) == 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = |series: &str| metric_in(&revalidated, series);
    assert_eq!(
        m("imgmirror_upstream_fetches_total{outcome=\"not_modified\"}"),
        1.0,
        "{revalidated}"
    );
    assert_eq!(m("imgmirror_revalidations_total"), 1.0);
    assert_eq!(
        m("imgmirror_served_bytes_total{source=\"disk\"}"),
        fixture("photo-480.jpg").len() as f64
    );
    assert!(m("imgmirror_memory_cache_misses_total") >= 1.0);
}

#[tokio::test]
async fn a_busy_render_pool_shows_its_queue_and_sheds() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    config.transform.workers = 1;
    config.transform.queue = 3;
    // About the pool's own shedding (503), not the per-client limit (429).
    config.server.per_client_expensive = 0;
    let server = Server::start(config).await;
    let upstream = origin.url("/img/photo-4000.jpg");
    assert_eq!(
        client()
            .get(server.proxy(&upstream))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let requests: Vec<_> = (0..10)
        .map(|i| {
            let url = server.url(&format!(
                "/?url={}&w={}&format=png",
                enc(&upstream),
                900 + i
            ));
            tokio::spawn(async move { client().get(url).send().await.unwrap().status() })
        })
        .collect();
    // Sample the gauge while they run.
    let mut deepest = 0.0f64;
    while !requests.iter().all(|r| r.is_finished()) {
        deepest = deepest.max(metric(&server, "imgmirror_render_queue_depth").await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let statuses: Vec<_> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(deepest >= 1.0, "queue never seen non-empty: {statuses:?}");
    let text = metrics_text(&server).await;
    assert_eq!(metric_in(&text, "imgmirror_render_queue_depth"), 0.0);
    let shed = statuses.iter().filter(|s| s.as_u16() == 503).count() as f64;
    assert!(shed >= 1.0, "{statuses:?}");
    assert_eq!(
        metric_in(&text, "imgmirror_overloaded_total{what=\"render_queue\"}"),
        shed
    );
    assert_eq!(
        metric_in(
            &text,
            "imgmirror_requests_total{route=\"proxy\",status=\"503\"}"
        ),
        shed
    );
}

#[tokio::test]
async fn metrics_can_be_served_on_their_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = config_for(dir.path(), None);
    config.metrics.listen = format!("127.0.0.1:{port}");
    let server = Server::start(config).await;
    let private = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if client()
            .get(format!("{private}/healthz"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up, "the metrics listener did not come up");
    assert_eq!(
        client()
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client()
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let scrape = client()
        .get(format!("{private}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200);
    let text = scrape.text().await.unwrap();
    // The public request above was counted, and is visible only here.
    assert_eq!(
        metric_in(
            &text,
            "imgmirror_requests_total{route=\"metrics\",status=\"404\"}"
        ),
        1.0
    );
    assert_eq!(
        client()
            .get(format!("{private}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Images are not served on the private address.
    let image = client()
        .get(format!("{private}/?http://example.com/a.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(image.status(), 404);
}

#[tokio::test]
async fn request_ids_are_kept_when_well_formed_and_made_otherwise() {
    let (origin, server, _dir) = setup().await;
    let url = server.proxy(&format!(
        "{}?token=hunter2&v=1",
        origin.url("/img/photo-480.jpg")
    ));
    let kept = client()
        .get(&url)
        .header("x-request-id", "edge-4f2a.9_c")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), 200);
    assert_eq!(kept.headers()["x-request-id"], "edge-4f2a.9_c");
    // One access line with the id, the route, the redacted upstream URL and the outcome.
    assert!(
        crate::support::wait_logged(&[
            "served",
            "id=edge-4f2a.9_c",
            "method=GET",
            "route=\"proxy\"",
            "token=REDACTED&v=1",
            "status=200",
            "source=\"upstream\"",
            "latency_ms=",
        ])
        .await,
        "no access line"
    );
    assert!(
        !logged(&["served", "hunter2"]),
        "the secret reached the access line"
    );

    let mut made = Vec::new();
    for incoming in [None, Some("bad id with spaces"), Some("x;y")] {
        let mut request = client().get(server.url("/healthz"));
        if let Some(id) = incoming {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await.unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        made.push(id);
    }
    made.sort();
    made.dedup();
    assert_eq!(made.len(), 3, "ids repeat: {made:?}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_imgmirror"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--cache-dir",
        ])
        .arg(dir.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("IMGMIRROR_LOG_FORMAT", "json")
        .env_remove("IMGMIRROR_LOG")
        .env("RUST_LOG", "info")
        .env("IMGMIRROR_UPSTREAM_ALLOW_CIDRS", r#"["127.0.0.1/32"]"#)
        .env(
            "IMGMIRROR_UPSTREAM_ALLOWED_PORTS",
            format!("[{}]", origin.addr.port()),
        )
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..200 {
        if client().get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "server did not come up");
    let upstream = format!("{}?sig=abc123", origin.url("/img/photo-480.jpg"));
    let response = client()
        .get(format!("{base}/?{upstream}"))
        .header("x-request-id", "json-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let n = response.bytes().await.unwrap().len();
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(15), async {
        let mut stderr = child.stderr.take().unwrap();
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text)
            .await
            .unwrap();
        child.wait().await.unwrap();
        text
    })
    .await
    .expect("the server did not stop");

    let lines: Vec<serde_json::Value> = output
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("not one JSON object: {line:?}: {e}"))
        })
        .collect();
    assert!(lines.iter().all(serde_json::Value::is_object));
    assert!(lines.len() >= 3, "{output}");
    let access = lines
        .iter()
        .find(|l| l["message"] == "served" && l["id"] == "json-test-1")
        .unwrap_or_else(|| panic!("no access line in {output}"));
    assert_eq!(access["method"], "GET");
    assert_eq!(access["route"], "proxy");
    assert_eq!(access["status"], 200);
    assert_eq!(access["source"], "upstream");
    assert_eq!(access["bytes"], n);
    assert!(access["latency_ms"].as_f64().unwrap() > 0.0);
    let logged_upstream = access["upstream"].as_str().unwrap();
    assert!(
        logged_upstream.ends_with("photo-480.jpg?sig=REDACTED"),
        "{logged_upstream}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l["message"] == "served" && l.to_string().contains("abc123")),
        "the secret reached an access line"
    );
}
