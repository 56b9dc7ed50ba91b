//! A real browser reads the rewritten seed article: headless Chromium (Debian's
//! `chromium`; `.ci/run` installs it) opens the post, rewritten with `--base` = a test
//! server and served as an HTML page from another origin, and the page's own script
//! checks that
//!
//! - every image loaded (`naturalWidth > 0`) at the size the post asks for (`data-size`),
//! - no request went to the worker's host (`cors.zfour.workers.dev`),
//! - an image drawn on a canvas with `crossOrigin = "anonymous"` can be read back
//!   (`getImageData` does not throw: CORS works),
//!
//! then writes its findings as JSON into `<pre id=result>`, which the test reads from
//! `chromium --dump-dom`. A screenshot is left in `target/browser-artifacts/seed.png`.
//!
//! Chromium is found through `IMGMIRROR_CHROMIUM`, else as `chromium`, `chromium-browser`
//! or `google-chrome` on `PATH`. The tests are `#[ignore = "needs Chromium"]`, so a plain
//! `cargo test` passes on a machine without it; `.ci/run` installs Chromium and runs them
//! with `--include-ignored`, and there a missing Chromium fails them: CI must never pass
//! them by skipping.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use imgmirror::article::{self, Kind, Settings, Target};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::origin::fixture_path;
use crate::support::{Origin, Server, config_for};

/// Names tried on `PATH` when `IMGMIRROR_CHROMIUM` is not set.
const CHROMIUM_NAMES: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];
const WORKER_HOST: &str = "cors.zfour.workers.dev";

/// The page's script: runs when the body is parsed, reports into `<pre id=result>`.
const SCRIPT: &str = r#"
(async () => {
  const result = document.getElementById('result');
  try {
    const imgs = [...document.querySelectorAll('img')];
    // The rewrite makes every image but the first lazy; a headless window never scrolls,
    // and this test is about whether the images load, not when.
    imgs.forEach(img => { img.loading = 'eager'; });
    await Promise.all(imgs.map(img => img.complete && img.naturalWidth > 0 ? null
      : new Promise(done => {
          img.addEventListener('load', done);
          img.addEventListener('error', done);
        })));
    const images = imgs.map(img => ({
      src: img.currentSrc || img.src,
      width: img.naturalWidth,
      height: img.naturalHeight,
      size: img.dataset.size || null,
    }));
    const requests = performance.getEntriesByType('resource').map(e => e.name);
    let cors;
    try {
      const probe = new Image();
      probe.crossOrigin = 'anonymous';
      await new Promise((ok, fail) => {
        probe.onload = ok;
        probe.onerror = () => fail(new Error('cross-origin load failed'));
        probe.src = (imgs.find(img => img.naturalWidth > 0) || imgs[0]).currentSrc;
      });
      const canvas = document.createElement('canvas');
      canvas.width = probe.naturalWidth;
      canvas.height = probe.naturalHeight;
      const context = canvas.getContext('2d');
      context.drawImage(probe, 0, 0);
      const pixel = context.getImageData(probe.naturalWidth >> 1, probe.naturalHeight >> 1, 1, 1).data;
      cors = { readable: true, pixel: [...pixel] };
    } catch (e) {
      cors = { readable: false, error: String(e) };
    }
    result.textContent = JSON.stringify({ images, requests, cors });
  } catch (e) {
    result.textContent = JSON.stringify({ error: String(e) });
  }
})();
"#;

/// The rewritten post as a page: the front matter's `headimg` as a header image, then the
/// post's HTML body, then the checking script.
fn page(rewritten: &str) -> String {
    let rest = rewritten
        .trim_start()
        .strip_prefix("---\n")
        .expect("front matter");
    let (front, body) = rest.split_once("\n---\n").expect("end of front matter");
    let headimg = front
        .lines()
        .find_map(|l| l.strip_prefix("headimg: "))
        .expect("headimg")
        .trim_matches('\'');
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>seed</title></head><body>\n\
         <img id=\"headimg\" src=\"{headimg}\" alt=\"\">\n{body}\n\
         <pre id=\"result\">pending</pre>\n<script>{SCRIPT}</script>\n</body></html>\n"
    )
}

/// A one-page HTTP server on 127.0.0.1:0: every request gets `html`.
async fn serve_page(html: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    html.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(html.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// The Chromium binary: `IMGMIRROR_CHROMIUM`, else the first of [`CHROMIUM_NAMES`] on `PATH`.
/// Panics when there is none: these tests run only when asked for, and then must not pass.
fn find_chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("IMGMIRROR_CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "IMGMIRROR_CHROMIUM={} is not a file",
            path.display()
        );
        return path;
    }
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    CHROMIUM_NAMES
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no Chromium found: set IMGMIRROR_CHROMIUM or put one of {CHROMIUM_NAMES:?} on PATH \
                 (Debian: apt-get install -y chromium; .ci/run does)"
            )
        })
}

/// Runs headless Chromium with a fresh profile and the given extra arguments.
async fn chromium(profile: &Path, args: &[String]) -> std::process::Output {
    let mut command = tokio::process::Command::new(find_chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--force-device-scale-factor=1",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("chromium did not finish within 120 s")
        .expect("run chromium")
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
#[ignore = "needs Chromium"]
async fn chromium_shows_every_image_of_the_rewritten_seed_article() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(seed_config(dir.path(), &origin)).await;
    let target = Target {
        base: server.url(""),
        ..Target::default()
    };
    check_in_chromium(&server, &target, "seed").await;
    server.stop().await;
}

/// The issue's "done when": the post rewritten with `--pin` (content-addressed `/m/`
/// URLs) shows every image with the upstream gone.
#[tokio::test]
#[ignore = "needs Chromium"]
async fn chromium_shows_the_pinned_seed_article_with_the_upstream_stopped() {
    let mut origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(seed_config(dir.path(), &origin)).await;
    let seed = std::fs::read_to_string(fixture_path("seed-article.md")).unwrap();
    let images = article::extract(&seed, Kind::Markdown, &Settings::default()).unwrap();
    let client = crate::support::client();
    let mut pins = std::collections::HashMap::new();
    for image in &images {
        let response = client
            .get(server.proxy(&image.upstream))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", image.upstream);
        let sha = response.headers()["etag"]
            .to_str()
            .unwrap()
            .trim_matches('"')
            .to_string();
        pins.insert(image.upstream.clone(), (sha, "jpg".to_string()));
    }
    origin.stop().await;
    let target = Target {
        base: server.url(""),
        pins,
        ..Target::default()
    };
    check_in_chromium(&server, &target, "seed-pinned").await;
    server.stop().await;
}

fn seed_config(dir: &Path, origin: &Origin) -> imgmirror::config::Config {
    let mut config = config_for(dir, Some(origin));
    config
        .upstream
        .resolve
        .insert("static.1sapp.com:80".into(), origin.addr);
    config
}

/// Rewrites the seed article for `target`, opens it in Chromium, and checks what the
/// page's script reported; leaves `<name>.png`, `<name>.html` and `<name>-result.json`
/// in `target/browser-artifacts/`.
async fn check_in_chromium(server: &Server, target: &Target, name: &str) {
    let seed = std::fs::read_to_string(fixture_path("seed-article.md")).unwrap();
    let rewritten = article::rewrite(&seed, Kind::Markdown, &Settings::default(), target).unwrap();
    assert_eq!(rewritten.changed, 22);
    let html = page(&rewritten.text);
    assert!(!html.contains(WORKER_HOST));
    if !target.pins.is_empty() {
        assert!(
            !html.contains("static.1sapp.com"),
            "a pinned post still names the upstream"
        );
    }
    let page_addr = serve_page(html.clone()).await;
    let url = format!("http://{page_addr}/seed.html");
    let out = artifacts();
    std::fs::write(out.join(format!("{name}.html")), &html).unwrap();

    let profile = tempfile::tempdir().unwrap();
    let dumped = chromium(
        profile.path(),
        &[
            "--virtual-time-budget=30000".into(),
            "--window-size=1280,2000".into(),
            "--dump-dom".into(),
            url.clone(),
        ],
    )
    .await;
    let dom = String::from_utf8_lossy(&dumped.stdout);
    let json = dom
        .split_once("<pre id=\"result\">")
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(json, _)| json.replace("&quot;", "\"").replace("&amp;", "&"))
        .unwrap_or_else(|| {
            panic!(
                "no result in the page; chromium said: {}",
                String::from_utf8_lossy(&dumped.stderr)
            )
        });
    let result: Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("result {json:?} is not JSON ({e}); the script did not finish"));
    std::fs::write(
        out.join(format!("{name}-result.json")),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .unwrap();

    // The screenshot comes first: it is most useful when an assertion below fails.
    let profile = tempfile::tempdir().unwrap();
    let screenshot = out.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&screenshot);
    chromium(
        profile.path(),
        &[
            "--virtual-time-budget=30000".into(),
            "--window-size=1280,4000".into(),
            format!("--screenshot={}", screenshot.display()),
            url.clone(),
        ],
    )
    .await;
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
    let images = result["images"].as_array().expect("images");
    assert_eq!(images.len(), 21, "headimg and the 20 <img>s");
    for image in images {
        let src = image["src"].as_str().unwrap();
        assert!(src.starts_with(&server.url("/")), "{image}");
        assert!(
            image["width"].as_u64().unwrap() > 0,
            "did not load: {image}"
        );
        if let Some((w, h)) = image["size"].as_str().and_then(|s| s.split_once(',')) {
            let (w, h): (u64, u64) = (w.parse().unwrap(), h.parse().unwrap());
            let (nw, nh) = (
                image["width"].as_u64().unwrap(),
                image["height"].as_u64().unwrap(),
            );
            // fit=inside: within the data-size box and touching one of its sides (every
            // fixture photo is at least as large as the box in one dimension).
            assert!(nw <= w && nh <= h, "larger than requested: {image}");
            assert!(nw == w || nh == h, "not at the requested size: {image}");
        }
    }
    let requests = result["requests"].as_array().unwrap();
    let distinct: std::collections::HashSet<&str> =
        images.iter().map(|i| i["src"].as_str().unwrap()).collect();
    // Every distinct image URL was requested (identical URLs share one request).
    for src in &distinct {
        assert!(
            requests.iter().any(|r| r == src),
            "{src} was never requested"
        );
    }
    assert!(
        requests
            .iter()
            .all(|r| !r.as_str().unwrap().contains(WORKER_HOST)),
        "a request went to the worker: {requests:?}"
    );
    assert_eq!(result["cors"]["readable"], true, "{}", result["cors"]);
}
