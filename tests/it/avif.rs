//! AVIF over HTTP, without making anyone wait: a client whose `Accept` lists `image/avif`
//! gets the WebP at once (short max-age, `Vary: Accept`) while the AVIF renders in the
//! background, then the AVIF with the normal caching headers; `format=avif` renders in the
//! foreground; other clients never get AVIF; foreground renders keep their own workers
//! while the bounded background queue is busy (and drops what does not fit); prefetch
//! renders the AVIF renditions; a purge removes them. Compiled with the `avif` feature
//! only (without it, `src/transform/avif_tests.rs` checks that AVIF is never offered).
#![cfg(feature = "avif")]

use std::time::{Duration, Instant};

use imgmirror::config::Config;
use reqwest::header::HeaderMap;

use crate::support::origin::fixture_path;
use crate::support::{
    Origin, Server, client, config_for, enc, fixture, imgmirror_with, metric, sha256,
};

const CHROME: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
const TOKEN: &str = "avif-test-token";

fn config(dir: &std::path::Path, origin: &Origin) -> Config {
    let mut config = config_for(dir, Some(origin));
    config.admin.token = TOKEN.into();
    // Debug-build AVIF encodes on a shared, loaded machine can pass the default 10 s:
    // these tests are about who waits for what, not about speed.
    config.transform.render_timeout_secs = 300;
    // Other processes' builds at nice 0 would starve a niced background thread here; the
    // foreground keeps its own workers whatever the nice value.
    config.transform.avif_background_nice = 0;
    config.article.prefetch_avif = true;
    config
}

/// Long enough for a debug-build AVIF encode on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(300);

async fn get(url: &str, accept: Option<&str>) -> (HeaderMap, bytes::Bytes) {
    let mut request = client().get(url);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{url} {accept:?}");
    let headers = response.headers().clone();
    (headers, response.bytes().await.unwrap())
}

/// Asks until the answer is AVIF (bounded: a debug-build encode on a loaded machine).
async fn wait_for_avif(url: &str) -> (HeaderMap, bytes::Bytes) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (headers, body) = get(url, Some(CHROME)).await;
        if headers["content-type"] == "image/avif" {
            return (headers, body);
        }
        assert!(Instant::now() < deadline, "no AVIF within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A valid AVIF file of `w`×`h`: the `ftyp` brand, and the size `imagesize` reads from it.
fn assert_avif(bytes: &[u8], w: usize, h: usize) {
    assert_eq!(&bytes[4..8], b"ftyp");
    assert_eq!(&bytes[8..12], b"avif");
    let size = imagesize::blob_size(bytes).unwrap();
    assert_eq!((size.width, size.height), (w, h));
}

async fn background(server: &Server, outcome: &str) -> f64 {
    let name = format!("imgmirror_avif_background_renders_total{{outcome=\"{outcome}\"}}");
    metric(server, &name).await
}

#[tokio::test]
async fn accept_avif_gets_webp_at_once_then_avif_with_normal_caching() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path(), &origin)).await;
    let normal = Config::default().response.cache_control_proxy;
    let url = server.url(&format!(
        "/?url={}&w=480",
        enc(&origin.url("/img/photo-1920.jpg"))
    ));

    // Cold: the WebP, rendered now, cached briefly, varying on Accept.
    let (first, webp) = get(&url, Some(CHROME)).await;
    assert_eq!(first["content-type"], "image/webp");
    assert_eq!(first["cache-control"], "public, max-age=60");
    assert_eq!(first["vary"], "Accept");
    assert_eq!(first["x-imgmirror-source"], "render");
    assert!(image::load_from_memory(&webp).is_ok());

    // Later: the AVIF, with the normal caching headers.
    let (later, avif) = wait_for_avif(&url).await;
    assert_eq!(later["cache-control"], normal.as_str());
    assert_eq!(later["vary"], "Accept");
    assert_ne!(later["x-imgmirror-source"], "render");
    assert_ne!(later["etag"], first["etag"]);
    assert_avif(&avif, 480, 300);
    assert!(avif.len() < webp.len(), "{} vs {}", avif.len(), webp.len());
    assert_eq!(background(&server, "rendered").await, 1.0);
    // Both renditions are ordinary variants on disk.
    assert_eq!(server.files("variants"), 2);

    // A client that takes WebP but not AVIF: the WebP, now with normal caching.
    let (webp_only, again) = get(&url, Some("image/webp,*/*")).await;
    assert_eq!(webp_only["content-type"], "image/webp");
    assert_eq!(webp_only["cache-control"], normal.as_str());
    assert!(again == webp);
}

#[tokio::test]
async fn format_avif_renders_in_the_foreground() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path(), &origin)).await;
    let url = server.url(&format!(
        "/?url={}&w=240&format=avif",
        enc(&origin.url("/img/photo-1080.jpg"))
    ));
    let (headers, body) = get(&url, Some("*/*")).await;
    assert_eq!(headers["content-type"], "image/avif");
    assert_eq!(headers["x-imgmirror-source"], "render");
    assert_eq!(
        headers["cache-control"],
        Config::default().response.cache_control_proxy.as_str()
    );
    assert!(
        headers.get("vary").is_none(),
        "an explicit format does not vary"
    );
    let size = imagesize::blob_size(&fixture("photo-1080.jpg")).unwrap();
    assert_avif(&body, 240, 240 * size.height / size.width);
    assert_eq!(background(&server, "rendered").await, 0.0);
    assert_eq!(
        metric(&server, "imgmirror_renders_total{format=\"avif\"}").await,
        1.0
    );
    // It is the same variant a client accepting AVIF gets: no second render.
    let auto = url.replace("&format=avif", "");
    let (headers, again) = get(&auto, Some(CHROME)).await;
    assert_eq!(headers["content-type"], "image/avif");
    assert!(again == body);
}

#[tokio::test]
async fn clients_without_avif_in_accept_never_get_avif() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path(), &origin)).await;
    let url = server.url(&format!(
        "/?url={}&w=320",
        enc(&origin.url("/img/photo-1920.jpg"))
    ));
    wait_for_avif(&url).await;
    for accept in [
        Some("image/webp,*/*"),
        Some("image/*"),
        Some("*/*"),
        Some("image/avif;q=0,image/webp"),
        None,
    ] {
        let (headers, _) = get(&url, accept).await;
        assert_ne!(headers["content-type"], "image/avif", "{accept:?}");
        assert_ne!(headers["cache-control"], "public, max-age=60", "{accept:?}");
    }
}

#[tokio::test]
async fn foreground_renders_keep_their_workers_while_the_bounded_background_queue_is_busy() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &origin);
    // One foreground worker: a foreground render queued behind an AVIF encode would wait
    // for all of it.
    cfg.transform.workers = 1;
    cfg.transform.avif_background_queue = 2;
    // The flood below is twelve cold renders from one client, over the per-client limit.
    cfg.server.per_client_expensive = 0;
    let server = Server::start(cfg).await;
    let small = enc(&origin.url("/img/photo-480.jpg"));
    let cold = |w: u32| server.url(&format!("/?url={small}&w={w}"));

    // Uncontended reference: a cold foreground render.
    get(&cold(40), Some("image/webp")).await; // fetches the original
    let started = Instant::now();
    get(&cold(41), Some("image/webp")).await;
    let alone = started.elapsed();

    // Flood, all at once: a dozen distinct AVIF renditions wanted. Each answer is a
    // WebP, cached briefly.
    let big = enc(&origin.url("/img/photo-1920.jpg"));
    get(&server.url(&format!("/?url={big}")), None).await; // the original, fetched once
    let flood = (0..12u32).map(|i| {
        let url = server.url(&format!("/?url={big}&w={}", 600 + i));
        async move { get(&url, Some(CHROME)).await.0 }
    });
    for headers in futures_util::future::join_all(flood).await {
        assert_eq!(headers["content-type"], "image/webp");
        assert_eq!(headers["cache-control"], "public, max-age=60");
    }
    // The queue holds 2 (plus the one being encoded): the rest were dropped, not queued.
    let dropped = background(&server, "dropped").await;
    assert!(dropped >= 8.0, "dropped {dropped}");

    // Foreground renders meanwhile: on their own worker, never behind an AVIF encode.
    let mut worst = Duration::ZERO;
    for w in 42..46 {
        let started = Instant::now();
        let (headers, _) = get(&cold(w), Some("image/webp")).await;
        worst = worst.max(started.elapsed());
        assert_eq!(headers["x-imgmirror-source"], "render");
    }
    assert!(
        worst < alone * 10 + Duration::from_secs(1),
        "foreground render took {worst:?} under background load, {alone:?} alone"
    );

    // The background drains what it accepted, and nothing more.
    let deadline = Instant::now() + PATIENCE * 2;
    let accepted = 12.0 - dropped;
    loop {
        let done = background(&server, "rendered").await + background(&server, "failed").await;
        if done >= accepted {
            assert_eq!(done, accepted);
            break;
        }
        assert!(Instant::now() < deadline, "background queue did not drain");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn purge_removes_the_avif_renditions_too() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path(), &origin)).await;
    let upstream = origin.url("/img/photo-480.jpg");
    let url = server.url(&format!("/?url={}&w=100", enc(&upstream)));
    wait_for_avif(&url).await;
    assert_eq!(server.files("variants"), 2);
    let hash = sha256(&fixture("photo-480.jpg"));
    let response = client()
        .delete(server.url(&format!("/purge?sha256={hash}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["removed"]["variants"], 2, "{body}");
    assert_eq!(server.files("variants"), 0);
    assert_eq!(server.files("objects"), 0);
}

#[tokio::test]
async fn prefetch_renders_the_avif_renditions_ahead_of_time() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // Two of the seed article's images, as the post writes them.
    let seed = std::fs::read_to_string(fixture_path("seed-article.md")).unwrap();
    let imgs: Vec<String> = seed
        .split("<img")
        .skip(1)
        .take(2)
        .map(|rest| format!("<img{}>", rest.split('>').next().unwrap()))
        .collect();
    assert_eq!(imgs.len(), 2);
    let post = dir.path().join("post.md");
    std::fs::write(&post, format!("# Two\n\n{}\n", imgs.join("\n\n"))).unwrap();
    let config_path = dir.path().join("imgmirror.toml");
    std::fs::write(
        &config_path,
        format!(
            "[cache]\ndir = {cache:?}\n[transform]\nrender_timeout_secs = 300\navif_background_nice = 0\n[upstream]\ntimeout_secs = 5\nallowed_ports = [80, 443, {port}]\n\
             allow_cidrs = [\"127.0.0.1/32\"]\nresolve = {{ \"static.1sapp.com:80\" = \"{addr}\" }}\n",
            cache = cache.display().to_string(),
            port = origin.addr.port(),
            addr = origin.addr,
        ),
    )
    .unwrap();
    let output = imgmirror_with(
        &[
            "prefetch",
            "--json",
            "--config",
            config_path.to_str().unwrap(),
            post.to_str().unwrap(),
        ],
        // The test helpers turn AVIF at prefetch off; this test is about it.
        &[("IMGMIRROR_ARTICLE_PREFETCH_AVIF", "true")],
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let mut avif_rows = 0;
    for image in report["images"].as_array().unwrap() {
        let variants = image["variants"].as_array().unwrap();
        // 1x and 2x, each for the AVIF, WebP-only and plain Accepts.
        assert_eq!(variants.len(), 6, "{image}");
        for v in variants {
            assert_eq!(v["status"], "ok", "{v}");
            let avif = v["accept"].as_str().unwrap().contains("image/avif");
            assert_eq!(v["content_type"] == "image/avif", avif, "{v}");
            avif_rows += usize::from(avif);
        }
    }
    assert_eq!(avif_rows, 4);

    // A server on the same data answers the first AVIF-capable request with the AVIF,
    // from disk, with the normal caching headers.
    let mut cfg = config(&cache, &origin);
    cfg.upstream
        .resolve
        .insert("static.1sapp.com:80".into(), origin.addr);
    let mut server = Server::start(cfg).await;
    let src = imgs[0].split('"').nth(1).unwrap();
    let upstream = src.split_once("/?").unwrap().1;
    let size = imgs[0].split("data-size=\"").nth(1).unwrap();
    let (w, h) = size.split('"').next().unwrap().split_once(',').unwrap();
    let url = server.url(&format!("/?url={}&w={w}&h={h}", enc(upstream)));
    let (headers, body) = get(&url, Some(CHROME)).await;
    assert_eq!(headers["content-type"], "image/avif");
    assert_eq!(headers["x-imgmirror-source"], "disk");
    assert_eq!(
        headers["cache-control"],
        Config::default().response.cache_control_proxy.as_str()
    );
    assert_eq!(&body[8..12], b"avif");
    server.stop().await;
}
