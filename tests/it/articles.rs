//! Articles end to end, on the seed article against the fixture origin (which serves its
//! 20 `static.1sapp.com` images through `upstream.resolve`):
//!
//! - `imgmirror prefetch` (the real binary, local store): 20 images mirrored with the right
//!   sha256, size and dimensions, pinned to the post; a second run fetches nothing; an
//!   upstream 404 for one image is reported, the other 19 succeed, exit status non-zero;
//!   the remote mode through a running server;
//! - `POST /prefetch`: off without a token, 401/403, 413, NDJSON lines, pins, URL lists;
//! - `imgmirror rewrite`: 22 URLs, `--diff` writes nothing, a second run changes nothing,
//!   `--pin` writes `/m/<sha256>.jpg` URLs served with the origin stopped;
//! - variants warmed by a prefetch are served without rendering (needs transforms).

use std::path::{Path, PathBuf};
use std::process::Output;

use imgmirror::article::{self, Kind, Settings};
use imgmirror::config::Config;
use imgmirror::store::Index;
use serde_json::Value;

use crate::support::origin::{fixture_path, qupost_file};
use crate::support::{Origin, Server, client, config_for, enc, fixture, get_status, sha256};

const SEED: &str = "seed-article.md";
const TOKEN: &str = "s3cret-token";

/// The seed article's distinct upstream URLs, in document order.
fn seed_upstreams() -> Vec<String> {
    let text = std::fs::read_to_string(fixture_path(SEED)).unwrap();
    let mut urls: Vec<String> = Vec::new();
    for image in article::extract(&text, Kind::Markdown, &Settings::default()).unwrap() {
        if !urls.contains(&image.upstream) {
            urls.push(image.upstream);
        }
    }
    assert_eq!(urls.len(), 20, "the seed article has 20 distinct images");
    urls
}

/// Origin path of an upstream URL (`/qupost/img/…`).
fn path_of(upstream: &str) -> String {
    url::Url::parse(upstream).unwrap().path().to_string()
}

/// The fixture photo the origin serves for an upstream URL.
fn served_file(upstream: &str) -> &'static str {
    qupost_file(path_of(upstream).rsplit('/').next().unwrap())
}

/// A config that points `static.1sapp.com:80` at the origin and allows loopback.
fn seed_config(dir: &Path, origin: &Origin, token: &str) -> Config {
    let mut config = config_for(dir, Some(origin));
    config
        .upstream
        .resolve
        .insert("static.1sapp.com:80".into(), origin.addr);
    config.admin.token = token.into();
    // Fast retries keep failure tests quick.
    config.cache.negative_ttl_secs = 0;
    config
}

/// The same as a TOML file, for the binary.
fn write_config(dir: &Path, cache: &Path, origin: &Origin) -> PathBuf {
    let path = dir.join("imgmirror.toml");
    let text = format!(
        r#"
[cache]
dir = {cache:?}
negative_ttl_secs = 0
[upstream]
timeout_secs = 5
allowed_ports = [80, 443, {port}]
allow_cidrs = ["127.0.0.1/32"]
resolve = {{ "static.1sapp.com:80" = "{addr}" }}
"#,
        cache = cache.display().to_string(),
        addr = origin.addr,
        port = origin.addr.port()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A copy of the seed article in `dir`.
fn copy_seed(dir: &Path) -> PathBuf {
    let post = dir.join("post.md");
    std::fs::copy(fixture_path(SEED), &post).unwrap();
    post
}

/// Runs the real binary without blocking the runtime the origin runs on.
async fn imgmirror(args: &[&str]) -> Output {
    crate::support::imgmirror(args).await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Opens the index once the process or server that held it has let go of its lock (a
/// server's background prefetch task may drop its store a moment after the last line).
async fn open_index(path: &Path) -> Index {
    for _ in 0..50 {
        if let Ok(index) = Index::open(path) {
            return index;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Index::open(path).unwrap()
}

/// Checks one report entry against the file the origin served.
fn assert_image(image: &Value, status: &str) {
    // AVIF at prefetch is off here (see `support::config_for`); tests/it/avif.rs counts
    // its third Accept.
    let per_size = imgmirror::article::prefetch::warm_accepts(false).len();
    assert_image_with(image, status, 2 * per_size);
}

/// [`assert_image`] with `variants` variant requests (0 for a bare URL).
fn assert_image_with(image: &Value, status: &str, variants: usize) {
    let url = image["url"].as_str().unwrap();
    let bytes = fixture(served_file(url));
    let size = imagesize::blob_size(&bytes).unwrap();
    assert_eq!(image["status"], status, "{image}");
    assert_eq!(image["http_status"], 200, "{image}");
    assert_eq!(image["sha256"], sha256(&bytes).as_str(), "{image}");
    assert_eq!(image["ext"], "jpg", "{image}");
    assert_eq!(image["bytes"], bytes.len() as u64, "{image}");
    assert_eq!(image["width"], size.width as u64, "{image}");
    assert_eq!(image["height"], size.height as u64, "{image}");
    // Every seed <img> has data-size: its 1x and 2x variants, each for every warmed Accept.
    let list = image["variants"].as_array().unwrap();
    assert_eq!(list.len(), variants, "{image}");
    for variant in list {
        assert_ne!(variant["status"], "failed", "{variant}");
    }
}

#[tokio::test]
async fn prefetch_mirrors_the_seed_article_pins_it_and_a_second_run_fetches_nothing() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let config = write_config(dir.path(), &cache, &origin);
    let post = copy_seed(dir.path());
    let args = [
        "prefetch",
        "--json",
        "--config",
        config.to_str().unwrap(),
        post.to_str().unwrap(),
    ];

    let output = imgmirror(&args).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let images = report["images"].as_array().unwrap();
    let upstreams = seed_upstreams();
    assert_eq!(images.len(), 20);
    for (image, upstream) in images.iter().zip(&upstreams) {
        assert_eq!(image["url"], upstream.as_str(), "document order");
        assert_image(image, "mirrored");
        assert_eq!(origin.hits(&path_of(upstream)), 1, "{upstream}");
    }
    // Without a terminal, progress is one plain line per image.
    assert_eq!(stderr(&output).matches("prefetch: [").count(), 20);

    let hits = origin.total_hits();
    let again = imgmirror(&args).await;
    assert!(again.status.success(), "{}", stderr(&again));
    let report: Value = serde_json::from_str(&stdout(&again)).unwrap();
    for image in report["images"].as_array().unwrap() {
        assert_image(image, "cached");
    }
    assert_eq!(
        origin.total_hits(),
        hits,
        "the second prefetch asked the upstream"
    );

    // Pinned to the post, by its canonical path, once however often it is prefetched.
    let id = std::fs::canonicalize(&post).unwrap().display().to_string();
    let index = open_index(&cache.join("index.redb")).await;
    for upstream in &upstreams {
        let entry = index.url(upstream).unwrap().expect("mirrored");
        assert_eq!(entry.pinned_by, std::slice::from_ref(&id), "{upstream}");
    }
}

#[tokio::test]
async fn prefetch_reports_an_upstream_404_while_the_others_succeed_and_exits_non_zero() {
    let origin = Origin::start().await;
    let upstreams = seed_upstreams();
    let missing = path_of(&upstreams[7]);
    origin.set_missing(&missing);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dir.path().join("cache"), &origin);
    let post = copy_seed(dir.path());

    let output = imgmirror(&[
        "prefetch",
        "--json",
        "--config",
        config.to_str().unwrap(),
        post.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 20);
    for image in images {
        if image["url"] == upstreams[7].as_str() {
            assert_eq!(image["status"], "failed");
            assert_eq!(image["http_status"], 404);
            assert_eq!(image["code"], "upstream-not-found");
            // A 404 is a definite answer: asked once, never retried.
            assert_eq!(image["attempts"], 1);
            assert!(image["sha256"].is_null());
        } else {
            assert_image(image, "mirrored");
        }
    }
    assert_eq!(origin.hits(&missing), 1);

    // The table names the failure and counts it.
    let table = imgmirror(&[
        "prefetch",
        "--config",
        config.to_str().unwrap(),
        post.to_str().unwrap(),
    ])
    .await;
    assert_eq!(table.status.code(), Some(1));
    let text = stdout(&table);
    assert!(text.contains("404 upstream-not-found"), "{text}");
    assert!(
        text.contains("20 images: 0 mirrored, 19 cached, 1 failed"),
        "{text}"
    );
}

#[tokio::test]
async fn prefetch_retries_transient_failures_but_not_4xx() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dir.path().join("cache"), &origin);
    let output = imgmirror(&[
        "prefetch",
        "--json",
        "--config",
        config.to_str().unwrap(),
        &origin.url("/status/503/a.jpg"),
        &origin.url("/status/403/b.jpg"),
        &format!(
            "https://cors.zfour.workers.dev/?{}",
            origin.url("/img/photo-480.jpg")
        ),
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let images = report["images"].as_array().unwrap();
    assert_eq!(images[0]["code"], "upstream-error");
    assert_eq!(images[0]["attempts"], 3);
    assert_eq!(origin.hits("/status/503/a.jpg"), 3);
    assert_eq!(images[1]["attempts"], 1);
    assert_eq!(origin.hits("/status/403/b.jpg"), 1);
    // A worker URL on the command line is prefetched as its upstream.
    assert_eq!(images[2]["url"], origin.url("/img/photo-480.jpg").as_str());
    assert_eq!(images[2]["status"], "mirrored");
}

/// POSTs `body` to `/prefetch` and returns the status and the NDJSON lines.
async fn post_prefetch(
    server: &Server,
    query: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Vec<Value>) {
    let mut request = client()
        .post(server.url(&format!("/prefetch{query}")))
        .header("content-type", content_type)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status == 200 {
        assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    }
    let text = response.text().await.unwrap();
    let lines = if status == 200 {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    } else {
        vec![serde_json::from_str(&text).unwrap()]
    };
    (status, lines)
}

#[tokio::test]
async fn post_prefetch_is_off_without_a_token_and_refuses_missing_or_wrong_ones() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let seed = std::fs::read(fixture_path(SEED)).unwrap();

    let mut off = Server::start(seed_config(dir.path(), &origin, "")).await;
    let (status, _) = post_prefetch(&off, "", Some(TOKEN), "text/markdown", seed.clone()).await;
    assert_eq!(status, 404);
    off.stop().await;

    let mut server = Server::start(seed_config(dir.path(), &origin, TOKEN)).await;
    let (status, body) = post_prefetch(&server, "", None, "text/markdown", seed.clone()).await;
    assert_eq!(
        (status, body[0]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, body) = post_prefetch(&server, "", Some("nope"), "text/markdown", seed).await;
    assert_eq!((status, body[0]["code"].as_str()), (403, Some("forbidden")));
    let big = vec![b'a'; 5 * 1024 * 1024 + 1];
    let (status, body) = post_prefetch(&server, "", Some(TOKEN), "text/markdown", big).await;
    assert_eq!(
        (status, body[0]["code"].as_str()),
        (413, Some("request-too-large"))
    );
    let (status, body) =
        post_prefetch(&server, "", Some(TOKEN), "application/json", b"{".to_vec()).await;
    assert_eq!(
        (status, body[0]["code"].as_str()),
        (400, Some("bad-request"))
    );
    assert_eq!(
        origin.total_hits(),
        0,
        "nothing refused reached the upstream"
    );
    server.stop().await;
}

#[tokio::test]
async fn post_prefetch_streams_one_ndjson_line_per_image_and_pins_them() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(seed_config(dir.path(), &origin, TOKEN)).await;
    let seed = std::fs::read(fixture_path(SEED)).unwrap();
    let upstreams = seed_upstreams();

    let (status, lines) = post_prefetch(
        &server,
        "?article=posts%2Fseed.md",
        Some(TOKEN),
        "text/markdown; charset=utf-8",
        seed.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(lines.len(), 21, "20 images and the done line");
    let (done, images) = lines.split_last().unwrap();
    assert_eq!(done["event"], "done");
    assert_eq!(
        (done["images"].as_u64(), done["failed"].as_u64()),
        (Some(20), Some(0))
    );
    let mut seen: Vec<&str> = images.iter().map(|l| l["url"].as_str().unwrap()).collect();
    seen.sort();
    let mut want: Vec<&str> = upstreams.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(seen, want);
    for line in images {
        assert_eq!(line["event"], "image");
        assert_image(line, "mirrored");
        assert_eq!(line["pinned_by"], serde_json::json!(["posts/seed.md"]));
    }

    // Unnamed, sniffed as Markdown; a JSON list takes upstream and worker URLs.
    let (status, lines) = post_prefetch(&server, "", Some(TOKEN), "", seed).await;
    assert_eq!((status, lines.len()), (200, 21));
    let list = serde_json::json!([
        upstreams[0],
        format!("https://cors.zfour.workers.dev/?{}", upstreams[1]),
    ]);
    let (status, lines) = post_prefetch(
        &server,
        "?article=list",
        Some(TOKEN),
        "application/json",
        list.to_string().into_bytes(),
    )
    .await;
    assert_eq!((status, lines.len()), (200, 3));
    for line in &lines[..2] {
        // No sizes in a URL list: no variants to warm.
        assert_image_with(line, "cached", 0);
    }
    for upstream in &upstreams {
        assert_eq!(origin.hits(&path_of(upstream)), 1, "{upstream}");
    }
    server.stop().await;

    let index = open_index(&dir.path().join("index.redb")).await;
    let pins = index.url(&upstreams[0]).unwrap().unwrap().pinned_by;
    assert_eq!(pins.len(), 3, "{pins:?}");
    assert!(pins.contains(&"posts/seed.md".to_string()));
    assert!(pins.contains(&"list".to_string()));
    assert!(pins.iter().any(|p| p.starts_with("sha256:")), "{pins:?}");
    assert_eq!(
        index.url(&upstreams[2]).unwrap().unwrap().pinned_by.len(),
        2,
        "not in the list"
    );
}

#[tokio::test]
async fn prefetch_through_a_running_server() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(seed_config(dir.path(), &origin, TOKEN)).await;
    let work = tempfile::tempdir().unwrap();
    let post = copy_seed(work.path());
    let base = server.url("");

    // Local mode cannot open a store a server holds; the error says what to do.
    let locked = imgmirror(&[
        "prefetch",
        "--cache-dir",
        dir.path().to_str().unwrap(),
        post.to_str().unwrap(),
    ])
    .await;
    assert!(!locked.status.success());
    assert!(stderr(&locked).contains("--server"), "{}", stderr(&locked));

    let wrong = imgmirror(&[
        "prefetch",
        "--server",
        &base,
        "--token",
        "nope",
        post.to_str().unwrap(),
    ])
    .await;
    assert!(!wrong.status.success());
    assert!(stdout(&wrong).contains("403"), "{}", stdout(&wrong));

    let output = imgmirror(&[
        "prefetch",
        "--json",
        "--server",
        &base,
        "--token",
        TOKEN,
        post.to_str().unwrap(),
    ])
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 20);
    let id = std::fs::canonicalize(&post).unwrap().display().to_string();
    for image in images {
        assert_image(image, "mirrored");
        assert_eq!(image["pinned_by"], serde_json::json!([id]));
    }
    server.stop().await;
}

#[tokio::test]
async fn rewrite_changes_22_urls_diff_writes_nothing_and_a_second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let post = copy_seed(dir.path());
    let original = std::fs::read(&post).unwrap();
    let base = "https://img.example.com";
    let path = post.to_str().unwrap();

    let diff = imgmirror(&["rewrite", "--base", base, "--diff", path]).await;
    assert!(diff.status.success(), "{}", stderr(&diff));
    let text = stdout(&diff);
    assert!(
        text.starts_with(&format!("--- a/{path}\n+++ b/{path}\n")),
        "{text}"
    );
    // The diff touches the image URLs and nothing else.
    for line in text
        .lines()
        .filter(|l| !l.starts_with("---") && !l.starts_with("+++"))
    {
        if line.starts_with('-') {
            assert!(line.contains("cors.zfour.workers.dev"), "{line}");
        } else if line.starts_with('+') {
            assert!(line.contains("https://img.example.com/?url="), "{line}");
            assert!(!line.contains("cors.zfour.workers.dev"), "{line}");
        }
    }
    assert!(
        text.contains("\n+headimg: 'https://img.example.com/?url=http%3A%2F%2Fstatic.1sapp.com%2F")
    );
    assert!(
        stderr(&diff).contains(": 22 URLs rewritten"),
        "{}",
        stderr(&diff)
    );
    assert_eq!(
        std::fs::read(&post).unwrap(),
        original,
        "--diff wrote the post"
    );

    let dry = imgmirror(&["rewrite", "--base", base, "--dry-run", path]).await;
    assert!(stdout(&dry).contains(": 22 URLs rewritten"));
    assert_eq!(
        std::fs::read(&post).unwrap(),
        original,
        "--dry-run wrote the post"
    );

    let write = imgmirror(&["rewrite", "--base", base, path]).await;
    assert!(write.status.success(), "{}", stderr(&write));
    assert!(
        stdout(&write).contains(": 22 URLs rewritten"),
        "{}",
        stdout(&write)
    );
    let rewritten = std::fs::read_to_string(&post).unwrap();
    assert!(!rewritten.contains("cors.zfour.workers.dev"));
    assert_eq!(
        rewritten
            .matches("src=\"https://img.example.com/?url=")
            .count(),
        20
    );

    let again = imgmirror(&["rewrite", "--base", base, path]).await;
    assert!(again.status.success());
    assert!(
        stdout(&again).contains(": 0 URLs rewritten"),
        "{}",
        stdout(&again)
    );
    assert_eq!(std::fs::read_to_string(&post).unwrap(), rewritten);

    // A post that is not a post fails the run, and the others still go through.
    let bad = dir.path().join("notes.txt");
    std::fs::write(&bad, "x").unwrap();
    let failed = imgmirror(&["rewrite", "--base", base, bad.to_str().unwrap(), path]).await;
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        stdout(&failed).contains("notes.txt: failed"),
        "{}",
        stdout(&failed)
    );
}

#[tokio::test]
async fn rewrite_pin_writes_permalinks_that_are_served_with_the_origin_stopped() {
    let mut origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let config = write_config(dir.path(), &cache, &origin);
    let post = copy_seed(dir.path());

    let output = imgmirror(&[
        "rewrite",
        "--base",
        "https://img.example.com",
        "--pin",
        "--config",
        config.to_str().unwrap(),
        post.to_str().unwrap(),
    ])
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(": 22 URLs rewritten"),
        "{}",
        stdout(&output)
    );
    let rewritten = std::fs::read_to_string(&post).unwrap();
    assert!(!rewritten.contains("?url="), "every image is pinned");

    // Every original URL became the permalink of the bytes the origin served for it.
    let original = std::fs::read_to_string(fixture_path(SEED)).unwrap();
    let before = article::extract(&original, Kind::Markdown, &Settings::default()).unwrap();
    let want: Vec<String> = before
        .iter()
        .map(|image| {
            let hash = sha256(&fixture(served_file(&image.upstream)));
            format!("https://img.example.com/m/{hash}.jpg")
        })
        .collect();
    let written: Vec<&str> = rewritten
        .match_indices("https://img.example.com/m/")
        .map(|(i, _)| {
            let rest = &rewritten[i..];
            &rest[..rest.find(['\'', '"', '?', ' ']).unwrap()]
        })
        .collect();
    // Front matter (2) and src (20) in order; then each <img>'s srcset repeats its image.
    let mut srcs: Vec<&str> = written[..2].to_vec();
    for pair in written[2..].chunks(3) {
        srcs.push(pair[0]);
        assert!(pair.iter().all(|u| *u == pair[0]), "{pair:?}");
    }
    assert_eq!(srcs, want);

    origin.stop().await;
    let mut server = Server::start(seed_config(&cache, &origin, "")).await;
    for (url, image) in want.iter().zip(&before) {
        let path = url.trim_start_matches("https://img.example.com");
        let response = client().get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.bytes().await.unwrap().as_ref(),
            fixture(served_file(&image.upstream)).as_slice(),
            "{path}"
        );
    }
    // The front matter's exact URL (no resize options) is served as written.
    let head = &written[0]["https://img.example.com".len()..];
    assert_eq!(get_status(server.url(head)).await, 200);
    server.stop().await;
}

#[tokio::test]
async fn variants_warmed_by_a_prefetch_are_served_without_rendering() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let config = write_config(dir.path(), &cache, &origin);
    let post = copy_seed(dir.path());
    let output = imgmirror(&[
        "prefetch",
        "--json",
        "--config",
        config.to_str().unwrap(),
        post.to_str().unwrap(),
    ])
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    for image in report["images"].as_array().unwrap() {
        for variant in image["variants"].as_array().unwrap() {
            assert_eq!(variant["status"], "ok", "{variant}");
            assert_eq!(variant["http_status"], 200, "{variant}");
        }
    }

    // A fresh server on the same data: the rewritten post's requests find renditions on
    // disk, in the formats browsers and plain clients negotiate.
    let mut server = Server::start(seed_config(&cache, &origin, "")).await;
    let upstream = &seed_upstreams()[0];
    let original = client().get(server.proxy(upstream)).send().await.unwrap();
    let source = imagesize::blob_size(&original.bytes().await.unwrap()).unwrap();
    for query in ["&w=480&h=319", "&w=480&h=319&dpr=2"] {
        for accept in ["image/avif,image/webp,*/*", "image/*"] {
            let response = client()
                .get(server.url(&format!("/?url={}{query}", enc(upstream))))
                .header("accept", accept)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{query} {accept}");
            assert_ne!(
                response.headers()["x-imgmirror-source"],
                "render",
                "{query} {accept} was not warmed"
            );
            let bytes = response.bytes().await.unwrap();
            let size = imagesize::blob_size(&bytes).unwrap();
            let scale = if query.contains("dpr=2") { 2 } else { 1 };
            let (bw, bh) = (480 * scale, 319 * scale);
            // fit=inside without enlarging: within the box, and either touching a side
            // of it or at the source's own size.
            assert!(
                size.width <= bw && size.height <= bh,
                "{query} {accept}: {size:?}"
            );
            assert!(
                size.width == bw
                    || size.height == bh
                    || (size.width, size.height) == (source.width, source.height),
                "{query} {accept}: {size:?} from {source:?}"
            );
        }
    }
    server.stop().await;
}
