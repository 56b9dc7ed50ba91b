//! Placeholders in a real browser: the seed article rewritten with `--pin --placeholders`
//! (the real binary, against the fixture origin) is opened in headless Chromium with every
//! image blocked — the post's base is a loopback port that refuses connections, so no image
//! ever loads — and
//!
//! - the page's script reports, for every `<img>`, that it did not load, has a box of the
//!   size the post gives it, and a computed `background-image` that is a `data:` PNG;
//! - a screenshot (left in `target/browser-artifacts/placeholders.png`) is decoded and
//!   sampled inside each image box in view: the placeholders are painted (not white, not one
//!   flat colour), while the page around them stays white.
//!
//! Chromium is found as `browser.rs` finds it (`IMGMIRROR_CHROMIUM`, else on `PATH`); the
//! test is `#[ignore = "needs Chromium"]` and fails, never skips, when asked to run without.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::articles_rewrite::origin_config;
use crate::support::Origin;
use crate::support::origin::fixture_path;

/// A base nothing answers on: every image request fails at once.
const BLOCKED_BASE: &str = "http://127.0.0.1:1";

const SCRIPT: &str = r#"
window.addEventListener('load', () => {
  const imgs = [...document.querySelectorAll('img')];
  const boxes = imgs.map(img => {
    const r = img.getBoundingClientRect();
    return {
      x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height,
      loaded: img.naturalWidth > 0,
      background: getComputedStyle(img).backgroundImage.slice(0, 30),
    };
  });
  document.getElementById('result').textContent = JSON.stringify(boxes);
});
"#;

fn find_chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("IMGMIRROR_CHROMIUM") {
        return PathBuf::from(path);
    }
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .expect("no Chromium found: set IMGMIRROR_CHROMIUM or put chromium on PATH")
}

async fn chromium(profile: &Path, args: &[String]) -> std::process::Output {
    let mut command = tokio::process::Command::new(find_chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--force-device-scale-factor=1",
            "--hide-scrollbars",
            "--window-size=800,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("chromium did not finish within 120 s")
        .expect("run chromium")
}

/// The rewritten post's body as a page, the images at the size the post gives them.
fn page(rewritten: &str) -> String {
    let rest = rewritten
        .trim_start()
        .strip_prefix("---\n")
        .expect("front matter");
    let (_, body) = rest.split_once("\n---\n").expect("end of front matter");
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><style>body{{margin:0;background:#fff;font-size:1px;color:#fff}}img{{display:block}}</style></head><body>\n\
         {body}\n<pre id=\"result\">pending</pre>\n<script>{SCRIPT}</script>\n</body></html>\n"
    )
}

#[tokio::test]
#[ignore = "needs Chromium"]
async fn placeholders_are_painted_while_the_images_are_blocked() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = origin_config(dir.path(), &origin);
    let post = dir.path().join("post.md");
    std::fs::copy(fixture_path("seed-article.md"), &post).unwrap();
    let out = crate::support::binary()
        .args([
            "rewrite",
            "--config",
            config.to_str().unwrap(),
            "--pin",
            "--placeholders",
        ])
        .args(["--base", BLOCKED_BASE, post.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = dir.path().join("page.html");
    std::fs::write(&html, page(&std::fs::read_to_string(&post).unwrap())).unwrap();
    let url = format!("file://{}", html.display());

    let dom = chromium(&dir.path().join("p1"), &["--dump-dom".into(), url.clone()]).await;
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    let json = dom
        .split("<pre id=\"result\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("no result in the page: {dom}"));
    let boxes: Vec<Value> = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(boxes.len(), 20);
    for b in &boxes {
        assert_eq!(
            b["loaded"], false,
            "an image loaded: the test blocks nothing: {b}"
        );
        assert_eq!(b["width"], 480.0, "{b}");
        assert!(b["height"].as_f64().unwrap() > 200.0, "{b}");
        assert!(
            b["background"]
                .as_str()
                .unwrap()
                .starts_with("url(\"data:image/png;base64,"),
            "{b}"
        );
    }

    let shot = crate::browser_placeholders::artifacts().join("placeholders.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &dir.path().join("p2"),
        &[format!("--screenshot={}", shot.display()), url],
    )
    .await;
    let image = image::open(&shot).expect("a screenshot").into_rgb8();
    let mut painted = 0;
    for b in &boxes {
        let (x, y, w, h) = (
            b["x"].as_f64().unwrap() as u32,
            b["y"].as_f64().unwrap() as u32,
            b["width"].as_f64().unwrap() as u32,
            b["height"].as_f64().unwrap() as u32,
        );
        if y + h > image.height() || x + w > image.width() {
            continue;
        }
        // A 6×6 grid inside the box, clear of the broken-image icon in its corner.
        let mut samples = Vec::new();
        for i in 1..=6 {
            for j in 1..=6 {
                let px = image.get_pixel(x + w * i / 7, y + 24 + (h - 24) * j / 7);
                samples.push(px.0);
            }
        }
        let white = samples
            .iter()
            .filter(|p| p.iter().all(|&c| c > 245))
            .count();
        assert!(
            white < samples.len() / 4,
            "box at {x},{y} is blank: {samples:?}"
        );
        let first = samples[0];
        assert!(
            samples
                .iter()
                .any(|p| p.iter().zip(first).any(|(a, b)| a.abs_diff(b) > 3)),
            "box at {x},{y} is one flat colour, not a preview"
        );
        painted += 1;
    }
    assert!(
        painted >= 3,
        "only {painted} image boxes were in the screenshot"
    );
    // Between two boxes the page is white: the colour comes from the placeholders.
    let gap = image.get_pixel(700, 5);
    assert!(gap.0.iter().all(|&c| c > 245), "{gap:?}");
}

pub fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
