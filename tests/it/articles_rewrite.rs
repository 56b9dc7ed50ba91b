//! `imgmirror rewrite` (the real binary) on realistic posts in `tests/fixtures/posts/`: a
//! jQuery-lazyload theme (`class="lazy" data-original`, `data-lazy-src`, `data-srcset`, plain
//! `http://` under `--all-http`), a gallery of `<a href>`-wrapped images (HTML and Markdown),
//! `<video poster>`, CSS backgrounds in `style=` and `<style>`, block-scalar front matter
//! (`>-`, `|`), a CRLF post with a bad and a huge `data-size`.
//!
//! For each: every worker (and plain-http) image reference is rewritten and nothing else
//! (checked by extraction and by undoing: rewrite → undo is byte-exact, so no other byte
//! moved); a second run changes nothing; `--from-base` there and back is byte-exact;
//! `--undo` restores the worker form (`--to upstream`: the plain URL). Bad bases exit 2 with
//! the post untouched; read-only posts are skipped unless `--force`; `data-size` problems
//! are rows of the report.

use std::path::{Path, PathBuf};
use std::process::Output;

use imgmirror::article::{self, Kind, Settings};

use crate::support::origin::fixture_path;

const BASE: &str = "https://img.example.com";
const WORKER: &str = "https://cors.zfour.workers.dev/?";

/// (fixture, `--all-http`, image references rewritten)
const POSTS: &[(&str, bool, usize)] = &[
    ("posts/lazy-load.html", true, 8),
    ("posts/gallery.md", false, 7),
    ("posts/video.html", false, 2),
    ("posts/css-backgrounds.html", false, 4),
    ("posts/block-scalars.md", false, 3),
    ("posts/crlf-post.md", false, 6),
];

async fn imgmirror(args: &[&str]) -> Output {
    crate::support::binary()
        .args(args)
        // No config file: the defaults, whatever the working directory holds.
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("run imgmirror")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn copy(dir: &Path, fixture: &str) -> PathBuf {
    let name = Path::new(fixture).file_name().unwrap();
    let path = dir.join(name);
    std::fs::copy(fixture_path(fixture), &path).unwrap();
    path
}

fn settings(all_http: bool) -> Settings {
    Settings {
        all_http,
        ..Settings::default()
    }
}

async fn rewrite(args: &[&str], post: &Path) -> Output {
    let mut all: Vec<&str> = vec!["rewrite"];
    all.extend(args);
    all.push(post.to_str().unwrap());
    let output = imgmirror(&all).await;
    assert!(
        output.status.success(),
        "{all:?}: {}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[tokio::test]
async fn every_reference_is_rewritten_and_every_rewrite_can_be_moved_and_undone_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    for &(fixture, all_http, count) in POSTS {
        let post = copy(dir.path(), fixture);
        let original = std::fs::read_to_string(&post).unwrap();
        let kind = Kind::from_path(&post).unwrap();
        let before = article::extract(&original, kind, &settings(all_http)).unwrap();
        assert_eq!(before.len(), count, "{fixture}: {before:#?}");
        let mut flags = vec!["--base", BASE];
        if all_http {
            flags.push("--all-http");
        }

        let out = rewrite(&flags, &post).await;
        assert!(
            stdout(&out).contains(&format!("{count} URLs rewritten")),
            "{fixture}: {}",
            stdout(&out)
        );
        let first = std::fs::read_to_string(&post).unwrap();
        // Nothing left for a rewrite: no worker URL in an image place, no plain-http image.
        assert!(
            article::extract(&first, kind, &settings(all_http))
                .unwrap()
                .is_empty(),
            "{fixture}"
        );
        let refs = article::references(&first, kind, &settings(all_http)).unwrap();
        // Each rewritten reference, and the `srcset` candidates added beside them.
        assert!(refs.len() >= count, "{fixture}");
        assert!(refs.iter().all(|r| !r.rewritable), "{fixture}");
        assert!(
            first.matches(&format!("{BASE}/?url=")).count() >= count,
            "{fixture}"
        );
        if original.contains("\r\n") {
            assert_eq!(
                first.matches('\n').count(),
                first.matches("\r\n").count(),
                "{fixture}: a bare LF"
            );
        }

        // Idempotent.
        rewrite(&flags, &post).await;
        assert_eq!(
            std::fs::read_to_string(&post).unwrap(),
            first,
            "{fixture}: second run"
        );

        // Moved to another base and back: byte-exact.
        let other = "http://127.0.0.1:9/mirror";
        rewrite(&["--from-base", BASE, "--base", other], &post).await;
        let moved = std::fs::read_to_string(&post).unwrap();
        assert!(!moved.contains(BASE), "{fixture}");
        assert_eq!(moved.matches(other).count(), first.matches(BASE).count());
        rewrite(&["--from-base", other, "--base", BASE], &post).await;
        assert_eq!(
            std::fs::read_to_string(&post).unwrap(),
            first,
            "{fixture}: there and back"
        );

        // Undone: the post as it was, byte for byte.
        let to = if all_http { "upstream" } else { "worker" };
        rewrite(&["--undo", "--to", to], &post).await;
        assert_eq!(
            std::fs::read_to_string(&post).unwrap(),
            original,
            "{fixture}: undo"
        );
    }
}

#[tokio::test]
async fn the_new_places_are_the_ones_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    for &(fixture, all_http, _) in POSTS {
        let post = copy(dir.path(), fixture);
        let mut flags = vec!["--base", BASE];
        if all_http {
            flags.push("--all-http");
        }
        rewrite(&flags, &post).await;
    }
    let mirror =
        format!("{BASE}/?url=http%3A%2F%2Fstatic.1sapp.com%2Fqupost%2Fimg%2F2022%2F01%2F31%2F");

    let lazy = read("lazy-load.html");
    assert!(lazy.contains(&format!(
        "class=\"lazy\" data-original=\"{mirror}f8a4283e70d403f54ac17f21b5a1cadf.jpeg"
    )));
    assert!(lazy.contains(&format!(
        "data-lazy-src=\"{mirror}0192d1512d9f06ac5e0defc948601635.jpeg\""
    )));
    assert!(lazy.contains(&format!("<source data-srcset=\"{mirror}98016915fde6b18c2c6892c2127501fd.jpeg 1x, {mirror}0dc899fab0f1b3c5e6248bc9a969d8e8.jpeg 2x\"")));
    // A page link and code are not images.
    assert!(lazy.contains("<a href=\"http://www.example.org/about.html\">"));
    assert!(lazy.contains("data-original=\"http://static.1sapp.com/code.jpeg\""));
    assert!(!lazy.contains("src=\"http://static.1sapp.com"));

    let gallery = read("gallery.md");
    // Only the code span keeps its worker URL.
    assert_eq!(
        gallery
            .matches(&format!("{WORKER}http://static.1sapp.com/qupost"))
            .count(),
        2
    );
    assert!(gallery.contains(&format!(
        "<a href=\"{mirror}a32133cf06b55318a7f4bf4069afcf5b.jpeg\" data-fancybox"
    )));
    assert!(gallery.contains(&format!(
        "<a class=\"more\" href=\"{mirror}d73f22b833b8eb795132e7925d7624d3.jpeg\">"
    )));
    assert!(gallery.contains(&format!(
        ")]({mirror}9488f0c161f39a9ccf94f8b56914374a.jpeg)"
    )));
    assert!(gallery.contains(&format!(
        "[the source]({WORKER}http://www.example.org/story.html)"
    )));
    assert!(gallery.contains(&format!(
        "`[![code]({WORKER}http://static.1sapp.com/qupost/img/2022/01/31/code.jpeg)]"
    )));

    let video = read("video.html");
    assert!(video.contains(&format!(
        "poster=\"{mirror}8b7e7e7d574bf67da4e755c176c7d1b0.jpeg\" preload"
    )));
    assert!(video.contains(&format!(
        "poster='{mirror}b33c5ba0ce24093dd449089285586436.jpeg'"
    )));
    // A video is not an image: its source stays.
    assert!(video.contains(&format!(
        "<source src=\"{WORKER}http://video.example.org/clip.mp4\""
    )));

    let css = read("css-backgrounds.html");
    assert!(css.contains(&format!(
        "#222 url({mirror}a39cbac2f8dbb6d1ca620681e193833e.jpeg) center/cover"
    )));
    assert!(css.contains(&format!(
        "url(\"{mirror}9002c8ae28527828f23940834bd2e524.jpeg\")"
    )));
    assert!(css.contains(&format!(
        "url('{mirror}b9f8dc14897fffd2b5d07a969ea7e0b7.jpeg'); height"
    )));
    assert!(css.contains(&format!(
        "url(&quot;{mirror}c80242acdcc1bfe5a846ebfed11e43c7.jpeg&quot;)"
    )));
    assert!(css.contains(&format!(
        "/* url({WORKER}http://static.1sapp.com/qupost/img/2022/01/31/commented-out.jpeg) */"
    )));

    let front = read("block-scalars.md");
    assert!(front.contains(&format!(
        "cover: >-\n  {mirror}7868da8fd5388c254cb8fd9b342486fa.jpeg\n"
    )));
    assert!(front.contains(&format!(
        "thumbnail: |\n  {mirror}63e9d120184d7ad499ca9cbcc0f54dd4.jpeg\n"
    )));
    assert!(front.contains(&format!(
        "  - >-\n    {mirror}3d2098a4dec403941eeb71f13ef4de63.jpeg\n"
    )));
}

#[tokio::test]
async fn data_size_is_validated_and_clamped_with_a_report_row_each() {
    let dir = tempfile::tempdir().unwrap();
    let post = copy(dir.path(), "posts/crlf-post.md");
    let out = rewrite(&["--base", BASE], &post).await;
    let report = stdout(&out);
    assert!(
        report.contains("line 12: data-size \"99999999,1\" clamped to 8192,1"),
        "{report}"
    );
    assert!(
        report.contains("line 13: data-size \"480x319\" ignored"),
        "{report}"
    );
    let text = std::fs::read_to_string(&post).unwrap();
    assert!(text.contains("f8a4283e70d403f54ac17f21b5a1cadf.jpeg&amp;w=8192&amp;h=1\""));
    assert!(text.contains("width=\"8192\" height=\"1\""));
    assert!(!text.contains("99999999\""));
    assert!(!text.contains("w=99999999"));
}

#[tokio::test]
async fn bad_bases_are_refused_and_the_post_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let post = copy(dir.path(), "posts/gallery.md");
    let before = std::fs::read(&post).unwrap();
    for base in [
        "img.example.com",
        "",
        "ftp://img.example.com",
        "https://img.example.com/?v=1",
        "https://img.example.com/#top",
        "/relative",
        "https://user:pw@img.example.com",
    ] {
        let out = imgmirror(&["rewrite", "--base", base, post.to_str().unwrap()]).await;
        assert_eq!(out.status.code(), Some(2), "{base:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--base") && err.contains("nothing was written"),
            "{base:?}: {err}"
        );
        let out = imgmirror(&[
            "rewrite",
            "--from-base",
            base,
            "--base",
            BASE,
            post.to_str().unwrap(),
        ])
        .await;
        assert_eq!(out.status.code(), Some(2), "--from-base {base:?}");
    }
    assert_eq!(std::fs::read(&post).unwrap(), before);
}

#[tokio::test]
async fn read_only_posts_are_skipped_unless_forced() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let post = copy(dir.path(), "posts/video.html");
    std::fs::set_permissions(&post, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = std::fs::read(&post).unwrap();
    let out = rewrite(&["--base", BASE], &post).await;
    let report = stdout(&out);
    assert!(report.contains("skipped: read-only"), "{report}");
    assert!(report.contains("1 skipped"), "{report}");
    assert_eq!(std::fs::read(&post).unwrap(), before);
    let out = rewrite(&["--base", BASE, "--force"], &post).await;
    assert!(
        stdout(&out).contains("2 URLs rewritten"),
        "{}",
        stdout(&out)
    );
    assert_ne!(std::fs::read(&post).unwrap(), before);
    // The mode is the owner's and stays.
    let mode = std::fs::metadata(&post).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o444);
}

#[tokio::test]
async fn links_flag_rewrites_page_links_too() {
    let dir = tempfile::tempdir().unwrap();
    let post = copy(dir.path(), "posts/gallery.md");
    rewrite(&["--base", BASE, "--links"], &post).await;
    let text = std::fs::read_to_string(&post).unwrap();
    assert!(text.contains(&format!(
        "[the source]({BASE}/?url=http%3A%2F%2Fwww.example.org%2Fstory.html)"
    )));
}

/// A config file pointing `static.1sapp.com:80` at the fixture origin, with a local store.
pub fn origin_config(dir: &Path, origin: &crate::support::Origin) -> PathBuf {
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
        cache = dir.join("cache").display().to_string(),
        addr = origin.addr,
        port = origin.addr.port()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The data URIs of the placeholders written into a post.
fn placeholders_in(text: &str) -> Vec<&str> {
    text.match_indices("style=\"background:url(data:image/png;base64,")
        .map(|(at, _)| {
            let start = at + "style=\"background:url(".len();
            let end = start + text[start..].find(')').unwrap();
            &text[start..end]
        })
        .collect()
}

#[tokio::test]
async fn placeholders_come_from_a_pinned_prefetch_or_the_store_and_undo_takes_them_out() {
    let origin = crate::support::Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = origin_config(dir.path(), &origin);
    let config = config.to_str().unwrap();
    let post = copy(dir.path(), "seed-article.md");
    let original = std::fs::read_to_string(&post).unwrap();

    rewrite(
        &[
            "--config",
            config,
            "--pin",
            "--placeholders",
            "--base",
            BASE,
        ],
        &post,
    )
    .await;
    let pinned = std::fs::read_to_string(&post).unwrap();
    let previews = placeholders_in(&pinned);
    assert_eq!(previews.len(), 20, "one per <img>");
    for uri in &previews {
        assert!(uri.len() <= 400, "{} bytes: {uri}", uri.len());
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(&uri["data:image/png;base64,".len()..])
            .unwrap();
        let image = image::load_from_memory(&png).unwrap();
        assert!(image.width() >= 2 && image.height() >= 2);
    }
    assert!(
        pinned.contains("center/cover\" loading=\"lazy\" decoding=\"async\" data-imgmirror=\"6\">")
    );
    // The measurement the README states.
    let plain = article::rewrite(
        &original,
        Kind::Markdown,
        &Settings::default(),
        &article::Target {
            base: BASE.into(),
            pins: pins_of(&pinned),
            ..article::Target::default()
        },
    )
    .unwrap()
    .text;
    eprintln!(
        "placeholders add {} bytes to the seed article ({} previews, {} to {} bytes each)",
        pinned.len() - plain.len(),
        previews.len(),
        previews.iter().map(|p| p.len()).min().unwrap(),
        previews.iter().map(|p| p.len()).max().unwrap()
    );

    // Undo finds the upstreams of the /m/ permalinks in the store. The fixture origin
    // serves 3 photos for the 20 URLs, so a permalink stands for several URLs: each is
    // undone to one of them (same bytes), and the report says so.
    let out = rewrite(&["--config", config, "--undo"], &post).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("was mirrored from") && err.contains("URLs; it is undone to"),
        "{err}"
    );
    let undone = std::fs::read_to_string(&post).unwrap();
    assert!(placeholders_in(&undone).is_empty());
    assert!(!undone.contains("data-imgmirror") && !undone.contains(BASE));
    assert_eq!(
        article::extract(&undone, Kind::Markdown, &Settings::default())
            .unwrap()
            .len(),
        22
    );
    std::fs::write(&post, &original).unwrap();

    // Without --pin, from the store that holds the images; and on a post rewritten before.
    rewrite(&["--config", config, "--base", BASE], &post).await;
    let plain = std::fs::read_to_string(&post).unwrap();
    assert!(placeholders_in(&plain).is_empty());
    rewrite(
        &["--config", config, "--placeholders", "--base", BASE],
        &post,
    )
    .await;
    let late = std::fs::read_to_string(&post).unwrap();
    assert_eq!(placeholders_in(&late).len(), 20);
    assert!(
        late.contains("data-imgmirror=\"6\""),
        "the run and its count grew"
    );
    rewrite(&["--config", config, "--undo"], &post).await;
    assert_eq!(std::fs::read_to_string(&post).unwrap(), original);

    // Without data-size, the intrinsic size is written.
    let bare = dir.path().join("bare.html");
    let upstream =
        "http://static.1sapp.com/qupost/img/2022/01/31/f8a4283e70d403f54ac17f21b5a1cadf.jpeg";
    std::fs::write(
        &bare,
        format!("<p><img src=\"{WORKER}{upstream}\" alt=\"x\"></p>\n"),
    )
    .unwrap();
    rewrite(
        &["--config", config, "--placeholders", "--base", BASE],
        &bare,
    )
    .await;
    let text = std::fs::read_to_string(&bare).unwrap();
    let served = crate::support::fixture(crate::support::origin::qupost_file(
        "f8a4283e70d403f54ac17f21b5a1cadf.jpeg",
    ));
    let size = imagesize::blob_size(&served).unwrap();
    assert!(
        text.contains(&format!(
            "width=\"{}\" height=\"{}\" style=\"background:url(data:image/png;base64,",
            size.width, size.height
        )),
        "{text}"
    );
}

/// Upstream → (sha256, ext) of the `/m/` URLs a pinned rewrite wrote, read back from the
/// post itself (document order matches `extract`).
fn pins_of(pinned: &str) -> std::collections::HashMap<String, (String, String)> {
    let seed = std::fs::read_to_string(fixture_path("seed-article.md")).unwrap();
    let upstreams = article::extract(&seed, Kind::Markdown, &Settings::default()).unwrap();
    let refs = article::references(pinned, Kind::Markdown, &Settings::default()).unwrap();
    let hashes: Vec<String> = refs
        .into_iter()
        .filter(|r| {
            matches!(
                r.place,
                article::Place::ImgSrc | article::Place::FrontMatter { .. }
            )
        })
        .filter_map(|r| match r.named {
            article::Named::Hash(h) => Some(h),
            article::Named::Upstream(_) => None,
        })
        .collect();
    upstreams
        .into_iter()
        .zip(hashes)
        .map(|(u, h)| (u.upstream, (h, "jpg".to_string())))
        .collect()
}

#[tokio::test]
async fn the_server_answers_a_permalink_placeholder_with_the_preview() {
    let (origin, server, _dir) = crate::support::setup().await;
    let client = crate::support::client();
    let original = client
        .get(server.proxy(&origin.url("/img/photo-1080.jpg")))
        .send()
        .await
        .unwrap();
    assert_eq!(original.status(), 200);
    let sha = original.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_string();
    let response = client
        .get(server.url(&format!("/m/{sha}?placeholder")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let png = response.bytes().await.unwrap();
    assert!(png.len() <= 280, "{} bytes", png.len());
    let preview = image::load_from_memory(&png).unwrap();
    assert!(preview.width() >= 2 && preview.height() >= 2);
    // Not an option of a variant: combined with one it is refused, and an unknown hash is a 404.
    let mixed = client
        .get(server.url(&format!("/m/{sha}?placeholder&w=10")))
        .send()
        .await
        .unwrap();
    assert_eq!(mixed.status(), 400);
    let unknown = client
        .get(server.url(&format!("/m/{}?placeholder", "0".repeat(64))))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}
