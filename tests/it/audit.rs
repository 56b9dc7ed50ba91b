//! `imgmirror audit` (the real binary) on the seed article against the fixture origin:
//!
//! - the "done when": prefetched, then the upstream stopped → 20 of 20 images
//!   mirror-only, the post listed as depending on the mirror alone, exit status 0;
//! - with the upstream up: 20 ok and unchanged (304 to the stored validators), one bodiless
//!   request per image and no image downloaded again;
//! - the pinned rewrite (`/m/` permalinks) is audited through the store's URL entries;
//! - an image neither mirrored nor reachable is "lost" and makes the exit status 1;
//! - a changed upstream image is reported as changed;
//! - `--json` and a self-contained `--html` page with embedded thumbnails.

use std::path::Path;

use serde_json::Value;

use crate::articles_rewrite::origin_config;
use crate::support::origin::fixture_path;
use crate::support::{Origin, imgmirror, text};

fn seed(dir: &Path) -> String {
    let post = dir.join("post.md");
    std::fs::copy(fixture_path("seed-article.md"), &post).unwrap();
    post.display().to_string()
}

async fn prefetch(config: &str, post: &str) {
    let out = imgmirror(&["prefetch", "--config", config, post]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test]
async fn with_the_upstream_stopped_all_20_seed_images_are_mirror_only() {
    let mut origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = origin_config(dir.path(), &origin);
    let config = config.to_str().unwrap();
    let post = seed(dir.path());
    prefetch(config, &post).await;
    origin.stop().await;

    let html = dir.path().join("audit.html");
    let out = imgmirror(&[
        "audit",
        "--config",
        config,
        "--html",
        html.to_str().unwrap(),
        &post,
    ])
    .await;
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}{}", text(&out.stderr));
    assert!(
        table.contains(
            "20 images in 1 post: 0 ok, 20 mirror-only, 0 upstream-only, 0 lost; 1 post depends on the mirror alone"
        ),
        "{table}"
    );
    assert_eq!(table.matches(" pinned ").count(), 20, "{table}");
    assert!(
        table.contains("; 22 references not rewritten yet; depends on the mirror alone"),
        "{table}"
    );

    // The page embeds a thumbnail per image and needs nothing else.
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(
        page.matches("<img src=\"data:image/jpeg;base64,").count(),
        20,
        "thumbnails"
    );
    assert_eq!(
        page.matches("class=\"mirror-only\">mirror-only<").count(),
        20
    );
    assert!(
        !page.contains("src=\"http"),
        "nothing fetched from elsewhere"
    );

    let out = imgmirror(&["audit", "--json", "--config", config, &post]).await;
    let report: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 20);
    for image in images {
        assert_eq!(image["verdict"], "mirror-only", "{image}");
        assert_eq!(image["mirrored"], true);
        assert_eq!(image["upstream_state"], "failing");
        assert_eq!(image["pinned_by"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn with_the_upstream_up_images_are_ok_unchanged_and_not_downloaded_again() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = origin_config(dir.path(), &origin);
    let config = config.to_str().unwrap();
    let post = seed(dir.path());
    prefetch(config, &post).await;
    let hits = origin.total_hits();

    let out = imgmirror(&["audit", "--json", "--config", config, &post]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    for image in report["images"].as_array().unwrap() {
        assert_eq!(image["verdict"], "ok", "{image}");
        assert_eq!(image["upstream_state"], "unchanged", "{image}");
        assert_eq!(image["upstream_status"], 304, "{image}");
    }
    // One conditional request per image, answered 304: nothing was downloaded.
    assert_eq!(origin.total_hits(), hits + 20);

    // The pinned rewrite names its images by hash; the audit finds their URLs in the store.
    let out = imgmirror(&[
        "rewrite",
        "--config",
        config,
        "--pin",
        "--base",
        "https://img.example.com",
        &post,
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        std::fs::read_to_string(&post)
            .unwrap()
            .contains("https://img.example.com/m/")
    );
    let out = imgmirror(&["audit", "--config", config, &post]).await;
    let table = text(&out.stdout);
    assert!(out.status.success(), "{table}");
    // The fixture origin serves 3 photos for the 20 URLs: 3 distinct objects.
    assert!(
        table.contains("3 images in 1 post: 3 ok, 0 mirror-only, 0 upstream-only, 0 lost"),
        "{table}"
    );
    assert!(!table.contains("not rewritten yet"), "{table}");
}

#[tokio::test]
async fn lost_and_changed_images_are_reported_and_lost_fails_the_run() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = origin_config(dir.path(), &origin);
    let config = config.to_str().unwrap();
    let post = dir.path().join("post.md");
    let worker = "https://cors.zfour.workers.dev/?";
    std::fs::write(
        &post,
        format!(
            "![changes]({worker}{})\n\n![gone]({worker}{})\n\n![never]({worker}{})\n",
            origin.url("/mutable/x.jpg"),
            origin.url("/img/photo-480.jpg"),
            origin.url("/status/404/never.jpg"),
        ),
    )
    .unwrap();
    let post = post.display().to_string();
    // The first two are mirrored; the third is a 404 and is not.
    let out = imgmirror(&["prefetch", "--config", config, &post]).await;
    assert!(!out.status.success());
    origin.set_mutable("astronaut-512.jpg");
    origin.set_missing("/img/photo-480.jpg");

    let out = imgmirror(&["audit", "--json", "--config", config, &post]).await;
    assert_eq!(out.status.code(), Some(1), "a lost image fails the audit");
    let report: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let images = report["images"].as_array().unwrap();
    let by = |needle: &str| {
        images
            .iter()
            .find(|i| i["upstream"].as_str().unwrap().contains(needle))
            .unwrap()
    };
    assert_eq!(by("/mutable/")["upstream_state"], "changed");
    assert_eq!(by("/mutable/")["verdict"], "ok");
    assert_eq!(by("/img/photo-480")["upstream_state"], "gone");
    assert_eq!(by("/img/photo-480")["upstream_status"], 404);
    assert_eq!(by("/img/photo-480")["verdict"], "mirror-only");
    assert_eq!(by("/status/404")["mirrored"], false);
    assert_eq!(by("/status/404")["verdict"], "lost");
}
