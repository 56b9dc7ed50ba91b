//! The store over its lifetime: the disk budget (variants evicted least recently used
//! first, unpinned originals only with `evict_originals`, pinned ones never, 507 when
//! full and told to refuse), purge by URL, hash and article, `verify` and `--repair`,
//! export from a running server and import elsewhere, and the races a long-lived mirror
//! meets (concurrent pins, a purge during a revalidation, a second process on a live
//! directory, a missing object's pins).

use std::path::Path;
use std::time::Duration;

use imgmirror::config::Config;
use serde_json::Value;

use crate::support::{
    Origin, Server, client, config_for, count_files, fixture, imgmirror, open_index, sha256, text,
};

const TOKEN: &str = "lifecycle-token";

fn config(dir: &Path, origin: &Origin) -> Config {
    let mut config = config_for(dir, Some(origin));
    config.admin.token = TOKEN.into();
    config
}

/// Bytes of every file under `objects/` and `variants/`.
fn disk_bytes(dir: &Path) -> u64 {
    fn walk(dir: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
    walk(&dir.join("objects")) + walk(&dir.join("variants"))
}

/// Pins `urls` to `article` through `POST /prefetch`; returns the NDJSON lines.
async fn pin(server: &Server, article: &str, urls: &[String]) -> Vec<Value> {
    let response = client()
        .post(server.url(&format!("/prefetch?article={article}")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(urls).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn purge(server: &Server, query: &str) -> (u16, Value) {
    let response = client()
        .delete(server.url(&format!("/purge?{query}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn minting_hundreds_of_variants_stays_within_the_disk_budget_and_keeps_pinned_originals() {
    let mut origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let budget: u64 = 1_000_000;
    let mut cfg = config(dir.path(), &origin);
    cfg.cache.max_disk_bytes = budget;
    let server = Server::start(cfg.clone()).await;
    let pinned = origin.url("/img/photo-1920.jpg");
    let lines = pin(&server, "post-a", std::slice::from_ref(&pinned)).await;
    assert_eq!(lines[0]["pinned_by"][0], "post-a", "{lines:?}");
    let source = origin.url("/img/photo-1080.jpg");
    let largest_variant_allowance = 64 * 1024;
    for w in 0..200u32 {
        let url = server.url(&format!(
            "/?url={}&w={}&format=jpeg",
            crate::support::enc(&source),
            120 + w
        ));
        let response = client().get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "variant {w}");
        let on_disk = disk_bytes(dir.path());
        assert!(
            on_disk <= budget + largest_variant_allowance,
            "after variant {w}: {on_disk} bytes on disk, budget {budget}"
        );
    }
    let stats: Value = client()
        .get(server.url("/stats"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        stats["usage"]["evicted_variants"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert_eq!(stats["usage"]["evicted_objects"], 0, "{stats}");
    assert!(
        crate::support::wait_logged(&["evicted variants to stay within the disk budget"]).await
    );

    // The pinned original is still on disk: a fresh server serves it with the upstream gone.
    let mut server = server;
    server.stop().await;
    origin.stop().await;
    let server = Server::start(cfg).await;
    let response = client().get(server.proxy(&pinned)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-imgmirror-source"], "disk");
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        fixture("photo-1920.jpg").as_slice()
    );
}

#[tokio::test]
async fn originals_are_evicted_only_when_allowed_and_never_while_pinned() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &origin);
    // The pinned 566 KB photo fits; the pinned photo plus the 142 KB one does not.
    cfg.cache.max_disk_bytes = 650_000;
    cfg.cache.evict_originals = true;
    let server = Server::start(cfg).await;
    let pinned = origin.url("/img/photo-1920.jpg");
    pin(&server, "post-a", std::slice::from_ref(&pinned)).await;
    let unpinned = origin.url("/img/photo-1080.jpg");
    assert_eq!(
        crate::support::get_status(server.proxy(&unpinned)).await,
        200
    );
    // The file just written is spared (the budget holds plus one file); the next write
    // evicts it, the least recently used unpinned original.
    let small = origin.url("/img/astronaut-512.jpg");
    assert_eq!(crate::support::get_status(server.proxy(&small)).await, 200);
    let objects = dir.path().join("objects");
    let pinned_file = objects
        .join(&sha256(&fixture("photo-1920.jpg"))[..2])
        .join(sha256(&fixture("photo-1920.jpg")));
    let unpinned_file = objects
        .join(&sha256(&fixture("photo-1080.jpg"))[..2])
        .join(sha256(&fixture("photo-1080.jpg")));
    assert!(pinned_file.is_file(), "the pinned original must stay");
    assert!(
        !unpinned_file.exists(),
        "the unpinned original should have been evicted"
    );
    assert!(disk_bytes(dir.path()) <= 650_000);
    // Asked for again, it is simply fetched again (the mirror holds what fits).
    assert_eq!(
        crate::support::get_status(server.proxy(&unpinned)).await,
        200
    );
    assert_eq!(origin.hits("/img/photo-1080.jpg"), 2);
}

#[tokio::test]
async fn a_full_store_refuses_new_originals_with_507_only_when_told_to() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &origin);
    cfg.cache.max_disk_bytes = 500_000;
    cfg.cache.refuse_when_full = true;
    let server = Server::start(cfg).await;
    let big = origin.url("/img/photo-1920.jpg");
    pin(&server, "post-a", std::slice::from_ref(&big)).await;
    // Originals alone (566 KB, pinned) exceed the budget: new originals are refused...
    let response = client()
        .get(server.proxy(&origin.url("/img/photo-480.jpg")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 507);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "insufficient-storage");
    assert_eq!(origin.hits("/img/photo-480.jpg"), 0);
    // ...while what is mirrored is still served.
    assert_eq!(crate::support::get_status(server.proxy(&big)).await, 200);
}

#[tokio::test]
async fn purge_by_sha256_removes_the_original_its_variants_and_every_url() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path(), &origin)).await;
    let a = origin.url("/img/photo-480.jpg");
    let b = origin.url("/slow/1/photo-480.jpg"); // the same bytes under another URL
    for url in [&a, &b] {
        assert_eq!(crate::support::get_status(server.proxy(url)).await, 200);
    }
    let variant = server.url(&format!("/?url={}&w=100", crate::support::enc(&a)));
    assert_eq!(crate::support::get_status(&variant).await, 200);
    assert_eq!(count_files(&dir.path().join("variants")), 1);
    let hash = sha256(&fixture("photo-480.jpg"));

    let (status, body) = purge(&server, &format!("sha256={hash}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["removed"]["objects"][0], hash.as_str());
    assert_eq!(
        body["removed"]["urls"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    assert_eq!(body["removed"]["variants"], 1);
    // The CDN keys to purge alongside, spelled as image responses carry them.
    assert_eq!(
        body["removed"]["surrogate_keys"],
        serde_json::json!([format!("sha256:{hash}")])
    );
    assert_eq!(count_files(&dir.path().join("objects")), 0);
    assert_eq!(count_files(&dir.path().join("variants")), 0);
    assert_eq!(
        crate::support::get_status(server.url(&format!("/m/{hash}"))).await,
        404
    );
    // Nothing left to purge: 404. A bad hash: 400.
    assert_eq!(purge(&server, &format!("sha256={hash}")).await.0, 404);
    assert_eq!(purge(&server, "sha256=abc").await.0, 400);
    // The next request fetches again.
    assert_eq!(crate::support::get_status(server.proxy(&a)).await, 200);
    assert_eq!(origin.hits("/img/photo-480.jpg"), 2);
}

#[tokio::test]
async fn purge_by_article_keeps_images_another_article_pins() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path(), &origin)).await;
    let shared = origin.url("/img/photo-480.jpg");
    let own = origin.url("/img/astronaut-512.jpg");
    pin(&server, "post-a", &[shared.clone(), own.clone()]).await;
    pin(&server, "post-b", std::slice::from_ref(&shared)).await;

    let (status, body) = purge(&server, "article=post-a").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["removed"]["objects"],
        serde_json::json!([sha256(&fixture("astronaut-512.jpg"))])
    );
    assert_eq!(
        body["removed"]["unpinned"],
        serde_json::json!([shared.as_str()])
    );
    let mut server = server;
    server.stop().await;
    let index = open_index(&dir.path().join("index.redb")).await;
    assert_eq!(index.url(&shared).unwrap().unwrap().pinned_by, ["post-b"]);
    assert!(index.url(&own).unwrap().is_none());
}

#[tokio::test]
async fn two_articles_pinning_one_url_at_the_same_moment_both_keep_their_pin() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(config(dir.path(), &origin)).await;
    let url = origin.url("/img/photo-480.jpg");
    assert_eq!(crate::support::get_status(server.proxy(&url)).await, 200);
    let pins: Vec<_> = (0..8)
        .map(|i| {
            let urls = vec![url.clone()];
            let server = &server;
            async move { pin(server, &format!("post-{i}"), &urls).await }
        })
        .collect();
    futures_util::future::join_all(pins).await;
    server.stop().await;
    let index = open_index(&dir.path().join("index.redb")).await;
    let pinned = index.url(&url).unwrap().unwrap().pinned_by;
    assert_eq!(pinned.len(), 8, "{pinned:?}");
}

#[tokio::test]
async fn a_purge_during_a_revalidation_is_not_undone() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &origin);
    cfg.cache.fresh_secs = 0; // every hit revalidates in the background
    let mut server = Server::start(cfg).await;
    let url = origin.url("/slow/1500/photo-480.jpg");
    assert_eq!(crate::support::get_status(server.proxy(&url)).await, 200);
    // This hit starts a revalidation that takes 1.5 s; purge while it runs.
    assert_eq!(crate::support::get_status(server.proxy(&url)).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = purge(&server, &format!("url={}", crate::support::enc(&url))).await;
    assert_eq!(status, 200);
    assert!(crate::support::wait_logged(&["purged during revalidation; not recorded"]).await);
    server.stop().await;
    let index = open_index(&dir.path().join("index.redb")).await;
    assert_eq!(
        index.url(&url).unwrap(),
        None,
        "the revalidation resurrected a purged URL"
    );
}

#[tokio::test]
async fn a_second_process_on_a_live_directory_touches_nothing() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path(), &origin)).await;
    let in_flight = dir.path().join("tmp").join("in-flight.1.0");
    std::fs::write(&in_flight, b"a write the server has not committed yet").unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let output = imgmirror(&[
        "prefetch",
        "--cache-dir",
        dir_arg,
        &origin.url("/img/photo-480.jpg"),
    ])
    .await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("lock"),
        "{}",
        text(&output.stderr)
    );
    let output = imgmirror(&["verify", "--cache-dir", dir_arg]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        in_flight.is_file(),
        "a second process deleted the server's temp file"
    );
    drop(server);
}

#[tokio::test]
async fn a_missing_object_is_fetched_again_and_keeps_its_pins() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &origin);
    let mut server = Server::start(cfg.clone()).await;
    let url = origin.url("/img/photo-480.jpg");
    pin(&server, "post-a", std::slice::from_ref(&url)).await;
    server.stop().await;
    let hash = sha256(&fixture("photo-480.jpg"));
    let file = dir.path().join("objects").join(&hash[..2]).join(&hash);
    // Damage it: the server must quarantine it, not serve it, and not forget the pin.
    std::fs::write(&file, b"bit rot").unwrap();
    let mut server = Server::start(cfg).await;
    let response = client().get(server.proxy(&url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-imgmirror-source"], "upstream");
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        fixture("photo-480.jpg").as_slice()
    );
    server.stop().await;
    assert_eq!(
        count_files(&dir.path().join("quarantine")),
        1,
        "the damaged file must be kept aside"
    );
    let index = open_index(&dir.path().join("index.redb")).await;
    assert_eq!(index.url(&url).unwrap().unwrap().pinned_by, ["post-a"]);
}

#[tokio::test]
async fn verify_finds_damage_and_repair_fixes_it() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &origin);
    let mut server = Server::start(cfg.clone()).await;
    for file in ["photo-480.jpg", "astronaut-512.jpg"] {
        assert_eq!(
            crate::support::get_status(server.proxy(&origin.url(&format!("/img/{file}")))).await,
            200
        );
    }
    let variant = server.url(&format!(
        "/?url={}&w=64",
        crate::support::enc(&origin.url("/img/photo-480.jpg"))
    ));
    assert_eq!(crate::support::get_status(&variant).await, 200);
    server.stop().await;
    let dir_arg = dir.path().to_str().unwrap();
    let clean = imgmirror(&["verify", "--cache-dir", dir_arg, "--json"]).await;
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}{}",
        text(&clean.stdout),
        text(&clean.stderr)
    );

    let damaged = sha256(&fixture("astronaut-512.jpg"));
    std::fs::write(
        dir.path()
            .join("objects")
            .join(&damaged[..2])
            .join(&damaged),
        b"flipped",
    )
    .unwrap();
    std::fs::write(dir.path().join("tmp").join("stray.1.0"), b"half").unwrap();
    let found = imgmirror(&["verify", "--cache-dir", dir_arg, "--json"]).await;
    assert_eq!(found.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(report["objects"], 2);
    assert_eq!(report["variants"], 1);
    assert!(
        report["mismatched"][0]
            .as_str()
            .unwrap()
            .ends_with(&damaged),
        "{report}"
    );
    assert_eq!(report["temp_files"].as_array().unwrap().len(), 1);

    let repaired = imgmirror(&["verify", "--cache-dir", dir_arg, "--repair"]).await;
    assert_eq!(
        repaired.status.code(),
        Some(1),
        "{}",
        text(&repaired.stdout)
    );
    assert_eq!(count_files(&dir.path().join("quarantine")), 1);
    assert_eq!(count_files(&dir.path().join("tmp")), 0);
    // The URL record survives the repair; its next request fetches the image again.
    let mut server = Server::start(cfg).await;
    assert_eq!(
        crate::support::get_status(server.proxy(&origin.url("/img/astronaut-512.jpg"))).await,
        200
    );
    server.stop().await;
    let after = imgmirror(&["verify", "--cache-dir", dir_arg]).await;
    assert_eq!(after.status.code(), Some(0), "{}", text(&after.stdout));
}

#[tokio::test]
async fn an_export_from_a_running_server_imports_elsewhere_and_serves_with_the_upstream_gone() {
    let mut origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path(), &origin)).await;
    let files = ["photo-480.jpg", "astronaut-512.jpg", "logo-alpha.png"];
    let urls: Vec<String> = files
        .iter()
        .map(|f| origin.url(&format!("/img/{f}")))
        .collect();
    pin(&server, "post-a", &urls[..1]).await;
    for url in &urls {
        assert_eq!(crate::support::get_status(server.proxy(url)).await, 200);
    }
    let archive = dir.path().join("mirror.tar");
    let output = imgmirror(&[
        "export",
        "--server",
        &server.url(""),
        "--token",
        TOKEN,
        "--out",
        archive.to_str().unwrap(),
    ])
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));

    let other = tempfile::tempdir().unwrap();
    let other_arg = other.path().to_str().unwrap();
    for round in 0..2 {
        // Twice: importing is idempotent.
        let output = imgmirror(&[
            "import",
            "--cache-dir",
            other_arg,
            archive.to_str().unwrap(),
        ])
        .await;
        assert!(
            output.status.success(),
            "round {round}: {}",
            text(&output.stderr)
        );
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            (report["objects"].as_u64(), report["urls"].as_u64()),
            (Some(3), Some(3)),
            "{report}"
        );
    }
    origin.stop().await;
    let mut moved = Server::start(config_for(other.path(), None)).await;
    for (file, url) in files.iter().zip(&urls) {
        let response = client().get(moved.proxy(url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(
            response.bytes().await.unwrap().as_ref(),
            fixture(file).as_slice()
        );
    }
    moved.stop().await;
    let index = open_index(&other.path().join("index.redb")).await;
    assert_eq!(index.url(&urls[0]).unwrap().unwrap().pinned_by, ["post-a"]);
    drop(server);
}

#[tokio::test]
async fn import_refuses_members_that_do_not_match_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("forged.tar");
    {
        let mut tar = tar::Builder::new(std::fs::File::create(&archive).unwrap());
        let bytes = fixture("photo-480.jpg");
        let wrong_name = sha256(b"something else");
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_cksum();
        tar.append_data(
            &mut header,
            format!("imgmirror/objects/{wrong_name}"),
            bytes.as_slice(),
        )
        .unwrap();
        tar.finish().unwrap();
    }
    let store = dir.path().join("store");
    let output = imgmirror(&[
        "import",
        "--cache-dir",
        store.to_str().unwrap(),
        archive.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (report["objects"].as_u64(), report["skipped"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(count_files(&store.join("objects")), 0);
}

#[tokio::test]
async fn stats_and_offline_purge_from_the_command_line() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(config(dir.path(), &origin)).await;
    let url = origin.url("/img/photo-480.jpg");
    pin(&server, "post-a", std::slice::from_ref(&url)).await;
    let other = origin.url("/img/astronaut-512.jpg");
    assert_eq!(crate::support::get_status(server.proxy(&other)).await, 200);
    // Through the running server...
    let live = imgmirror(&[
        "stats",
        "--json",
        "--server",
        &server.url(""),
        "--token",
        TOKEN,
    ])
    .await;
    assert!(live.status.success(), "{}", text(&live.stderr));
    let live: Value = serde_json::from_slice(&live.stdout).unwrap();
    assert_eq!(live["inventory"]["originals"]["count"], 2, "{live}");
    server.stop().await;
    drop(server);

    // ...and offline, on the directory.
    let dir_arg = dir.path().to_str().unwrap();
    let _ = open_index(&dir.path().join("index.redb")).await;
    let stats = imgmirror(&["stats", "--json", "--cache-dir", dir_arg]).await;
    assert!(stats.status.success(), "{}", text(&stats.stderr));
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    let bytes = (fixture("photo-480.jpg").len() + fixture("astronaut-512.jpg").len()) as u64;
    assert_eq!(stats["originals"]["count"], 2);
    assert_eq!(stats["originals"]["bytes"], bytes);
    assert_eq!(stats["pinned"]["count"], 1);
    assert_eq!(stats["urls"], 2);
    assert_eq!(stats["top_hosts"][0]["host"], "127.0.0.1");
    let table = imgmirror(&["stats", "--cache-dir", dir_arg]).await;
    assert!(
        text(&table.stdout).contains("originals"),
        "{}",
        text(&table.stdout)
    );

    let hash = sha256(&fixture("astronaut-512.jpg"));
    let purged = imgmirror(&["purge", "--cache-dir", dir_arg, "--sha256", &hash]).await;
    assert!(purged.status.success(), "{}", text(&purged.stderr));
    let report: Value = serde_json::from_slice(&purged.stdout).unwrap();
    assert_eq!(report["objects"][0], hash.as_str());
    let again = imgmirror(&["purge", "--cache-dir", dir_arg, "--sha256", &hash]).await;
    assert_eq!(again.status.code(), Some(1), "nothing left to purge");
    let stats = imgmirror(&["stats", "--json", "--cache-dir", dir_arg]).await;
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["originals"]["count"], 1);
}

#[tokio::test]
async fn a_render_past_its_deadline_is_503_and_its_original_is_then_refused_quickly() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &origin);
    cfg.transform.render_timeout_secs = 1;
    let server = Server::start(cfg).await;
    let source = crate::support::enc(&origin.url("/img/pan-anim.gif"));
    // Dozens of frames, each enlarged to 1.5 MP and quantised: seconds of work.
    let slow = server.url(&format!(
        "/?url={source}&w=1500&h=1000&fit=fill&enlarge=1&format=gif"
    ));
    let started = std::time::Instant::now();
    let response = client().get(slow).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "render-timeout");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // The same original with other options is refused at once, without a render.
    let other = server.url(&format!(
        "/?url={source}&w=1400&h=900&fit=fill&enlarge=1&format=gif"
    ));
    let started = std::time::Instant::now();
    let response = client().get(other).send().await.unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "too-expensive");
    assert!(started.elapsed() < Duration::from_millis(500));
    // Other originals still render.
    let honest = server.url(&format!(
        "/?url={}&w=100",
        crate::support::enc(&origin.url("/img/photo-480.jpg"))
    ));
    assert_eq!(crate::support::get_status(honest).await, 200);
}
