//! Tests of the article module as a whole: the seed article (22 worker URLs, 2 in front
//! matter and 20 `<img>`), byte-for-byte preservation, idempotence, `--pin`, and one table of
//! edge cases (quoting, upper case, srcset, `&amp;`, lists, CRLF, no front matter, broken
//! HTML). The file-walking engine is tested at the end against a temp folder.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::PathBuf;

use super::*;

const SEED: &str = include_str!("../../tests/fixtures/seed-article.md");
const WORKER: &str = "https://cors.zfour.workers.dev/?";
const BASE: &str = "https://img.example.com";

fn target() -> Target {
    Target {
        base: BASE.to_owned(),
        pins: HashMap::new(),
        ..Target::default()
    }
}

/// Test inputs write `§` for the worker prefix.
fn w(s: &str) -> String {
    s.replace('§', WORKER)
}

fn rw(input: &str, kind: Kind, settings: &Settings) -> Rewritten {
    rewrite(input, kind, settings, &target()).expect("rewrites")
}

#[test]
fn seed_extracts_22_urls_of_20_images() {
    let refs = extract(SEED, Kind::Markdown, &Settings::default()).expect("extracts");
    assert_eq!(refs.len(), 22);
    let front: Vec<&Place> = refs[..2].iter().map(|r| &r.place).collect();
    assert_eq!(
        front,
        [
            &Place::FrontMatter {
                key: "headimg".into()
            },
            &Place::FrontMatter {
                key: "thumbnail".into()
            }
        ]
    );
    assert!(
        refs[2..]
            .iter()
            .all(|r| r.place == Place::ImgSrc && r.size.is_some())
    );
    assert!(refs[..2].iter().all(|r| r.size.is_none() && !r.also_2x));
    assert!(refs[2..].iter().all(|r| r.also_2x));
    let distinct: HashSet<&str> = refs.iter().map(|r| r.upstream.as_str()).collect();
    assert_eq!(distinct.len(), 20);
    assert!(refs.iter().all(|r| {
        r.upstream
            .starts_with("http://static.1sapp.com/qupost/img/")
    }));
    assert_eq!(refs[0].line, 8);
    assert_eq!(refs[2].size, Some((480, 319)));
}

/// Replaces every URL that starts with `prefix` (up to its closing quote) with `<URL>`.
fn mask_urls(text: &str, prefix: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        out.push_str(&rest[..i]);
        out.push_str("<URL>");
        rest = &rest[i..];
        let end = rest.find(['"', '\'']).unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Removes every ` name="…"` attribute.
fn remove_attr(text: &str, name: &str) -> String {
    let needle = format!(" {name}=\"");
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(&needle) {
        out.push_str(&rest[..i]);
        rest = &rest[i + needle.len()..];
        let end = rest.find('"').map_or(rest.len(), |e| e + 1);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn seed_rewrite_changes_only_the_urls_and_is_idempotent() {
    let settings = Settings::default();
    let first = rw(SEED, Kind::Markdown, &settings);
    assert_eq!(first.changed, 22);
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);
    assert!(!first.text.contains("cors.zfour.workers.dev"));
    assert_eq!(
        first
            .text
            .matches("https://img.example.com/?url=http%3A%2F%2Fstatic.1sapp.com")
            .count(),
        22 + 20 * 2
    );

    // Outside the replaced URLs and the added attributes, every byte is the same.
    let mut after = mask_urls(&first.text, BASE);
    for name in ["width", "height", "loading", "decoding", "data-imgmirror"] {
        after = remove_attr(&after, name);
    }
    // `mask_urls` runs to the closing quote, so the added srcset is masked whole.
    after = after.replace(" srcset=\"<URL>\"", "");
    let before = mask_urls(SEED, WORKER);
    let first_difference = after.bytes().zip(before.bytes()).position(|(a, b)| a != b);
    assert!(
        after == before,
        "non-URL bytes differ at byte {first_difference:?} (lengths {} and {})",
        after.len(),
        before.len()
    );
    assert_eq!(before.matches("<URL>").count(), 22);

    // The first image stays eager; the other 19 are lazy, once each.
    assert_eq!(
        first
            .text
            .matches(" loading=\"lazy\" decoding=\"async\"")
            .count(),
        19
    );
    let up = "http%3A%2F%2Fstatic.1sapp.com%2Fqupost%2Fimg%2F2022%2F01%2F31%2F";
    assert!(first.text.contains(&format!(
        "headimg: '{BASE}/?url={up}f8a4283e70d403f54ac17f21b5a1cadf.jpeg'\n"
    )));
    let second_img = format!(
        "<img src=\"{BASE}/?url={up}f10e2cf9e7d101c3e864c2e328f5df8b.jpeg&amp;w=480&amp;h=319\" data-size=\"480,319\" referrerpolicy=\"no-referrer\" srcset=\"{BASE}/?url={up}f10e2cf9e7d101c3e864c2e328f5df8b.jpeg&amp;w=480&amp;h=319 1x, {BASE}/?url={up}f10e2cf9e7d101c3e864c2e328f5df8b.jpeg&amp;w=480&amp;h=319&amp;dpr=2 2x\" width=\"480\" height=\"319\" loading=\"lazy\" decoding=\"async\" data-imgmirror=\"5\">"
    );
    assert!(
        first.text.contains(&second_img),
        "second image not as expected"
    );
    let first_img = format!(
        "<img src=\"{BASE}/?url={up}f8a4283e70d403f54ac17f21b5a1cadf.jpeg&amp;w=480&amp;h=319\" data-size=\"480,319\" referrerpolicy=\"no-referrer\" srcset=\"{BASE}/?url={up}f8a4283e70d403f54ac17f21b5a1cadf.jpeg&amp;w=480&amp;h=319 1x, {BASE}/?url={up}f8a4283e70d403f54ac17f21b5a1cadf.jpeg&amp;w=480&amp;h=319&amp;dpr=2 2x\" width=\"480\" height=\"319\" data-imgmirror=\"3\">"
    );
    assert!(
        first.text.contains(&first_img),
        "first image not as expected"
    );

    let second = rw(&first.text, Kind::Markdown, &settings);
    assert_eq!(second.changed, 0);
    assert_eq!(second.text, first.text);
    // Nothing of ours is offered for prefetching from a rewritten post either.
    assert!(
        extract(&first.text, Kind::Markdown, &settings)
            .expect("extracts")
            .is_empty()
    );
}

#[test]
fn seed_pinned_urls_are_content_addressed() {
    let refs = extract(SEED, Kind::Markdown, &Settings::default()).expect("extracts");
    let mut target = target();
    for (i, r) in refs.iter().enumerate() {
        target
            .pins
            .insert(r.upstream.clone(), (format!("{i:064x}"), "jpg".to_owned()));
    }
    let out = rewrite(SEED, Kind::Markdown, &Settings::default(), &target).expect("rewrites");
    assert_eq!(out.changed, 22);
    assert!(!out.text.contains("?url="));
    let pin = |upstream: &str| target.pins[upstream].0.clone();
    let head = pin(&refs[0].upstream);
    assert!(
        out.text
            .contains(&format!("headimg: '{BASE}/m/{head}.jpg'"))
    );
    let sha = pin(&refs[3].upstream);
    assert!(out.text.contains(&format!(
        "src=\"{BASE}/m/{sha}.jpg?w=480&amp;h=319\" data-size=\"480,319\" referrerpolicy=\"no-referrer\" srcset=\"{BASE}/m/{sha}.jpg?w=480&amp;h=319 1x, {BASE}/m/{sha}.jpg?w=480&amp;h=319&amp;dpr=2 2x\""
    )));
    assert_eq!(out.text.matches(&format!("{BASE}/m/")).count(), 22 + 20 * 2);
    let again =
        rewrite(&out.text, Kind::Markdown, &Settings::default(), &target).expect("rewrites");
    assert_eq!(again.text, out.text);
}

/// (name, kind, input, expected output, URLs changed); `§` is the worker prefix, `@` the
/// mirror's `/?url=` prefix for `http://a.test/`.
#[test]
fn edge_cases_table() {
    let cases: &[(&str, Kind, &str, &str, usize)] = &[
        (
            "single quotes keep their quotes, and added attributes follow them",
            Kind::Html,
            "<p><img alt=x src='§http://a.test/1.jpg' data-size='4,3'></p>",
            "<p><img alt=x src='@1.jpg&amp;w=4&amp;h=3' data-size='4,3' srcset='@1.jpg&amp;w=4&amp;h=3 1x, @1.jpg&amp;w=4&amp;h=3&amp;dpr=2 2x' width='4' height='3' data-imgmirror='3'></p>",
            1,
        ),
        (
            "upper-case tags and attributes",
            Kind::Html,
            "<IMG SRC=\"§http://a.test/0.jpg\"><P><IMG SRC=\"§http://a.test/1.jpg\" ALT=\"\"></P>",
            "<IMG SRC=\"@0.jpg\"><P><IMG SRC=\"@1.jpg\" ALT=\"\" loading=\"lazy\" decoding=\"async\" data-imgmirror=\"2\"></P>",
            2,
        ),
        (
            "an unquoted value is quoted once it holds `=`",
            Kind::Html,
            "<img src=§http://a.test/1.jpg alt=x/>",
            "<img src=\"@1.jpg\" alt=x/>",
            1,
        ),
        (
            "self-closing tag: attributes go before ` />`",
            Kind::Html,
            "<img src=\"x.png\"><img src=\"§http://a.test/1.jpg\" />",
            "<img src=\"x.png\"><img src=\"@1.jpg\" loading=\"lazy\" decoding=\"async\" data-imgmirror=\"2\" />",
            1,
        ),
        (
            "srcset with descriptors; an existing srcset is not replaced",
            Kind::Html,
            "<img src=\"§http://a.test/1.jpg\" data-size=\"4,3\" srcset=\"§http://a.test/1.jpg 1x,\n  §http://a.test/2.jpg  2x\">",
            "<img src=\"@1.jpg&amp;w=4&amp;h=3\" data-size=\"4,3\" srcset=\"@1.jpg 1x,\n  @2.jpg  2x\" width=\"4\" height=\"3\" data-imgmirror=\"2\">",
            3,
        ),
        (
            "a query string with &amp; is decoded, then encoded once",
            Kind::Html,
            "<img src=\"§http://a.test/1.jpg?a=1&amp;b=%20\">",
            "<img src=\"@1.jpg%3Fa%3D1%26b%3D%2520\">",
            1,
        ),
        (
            "data-src and <picture><source srcset>",
            Kind::Html,
            "<picture><source srcset=\"§http://a.test/1.webp 1x\" type=\"image/webp\"><img data-src=\"§http://a.test/1.jpg\" src=\"data:,\"></picture>",
            "<picture><source srcset=\"@1.webp 1x\" type=\"image/webp\"><img data-src=\"@1.jpg\" src=\"data:,\"></picture>",
            2,
        ),
        (
            "<noscript> fallbacks are markup too",
            Kind::Html,
            "<img data-src=\"§http://a.test/1.jpg\"><noscript><img src=\"§http://a.test/1.jpg\"></noscript>",
            "<img data-src=\"@1.jpg\"><noscript><img src=\"@1.jpg\" loading=\"lazy\" decoding=\"async\" data-imgmirror=\"2\"></noscript>",
            2,
        ),
        (
            "existing width/height/loading are kept, not duplicated",
            Kind::Html,
            "<img src=\"a.png\"><img src=\"§http://a.test/1.jpg\" data-size=\"4,3\" width=\"2\" loading=\"eager\">",
            "<img src=\"a.png\"><img src=\"@1.jpg&amp;w=4&amp;h=3\" data-size=\"4,3\" width=\"2\" loading=\"eager\" srcset=\"@1.jpg&amp;w=4&amp;h=3 1x, @1.jpg&amp;w=4&amp;h=3&amp;dpr=2 2x\" decoding=\"async\" data-imgmirror=\"2\">",
            1,
        ),
        (
            "other URLs and code are left alone",
            Kind::Markdown,
            "<img src=\"https://a.test/x.jpg\">\n\n`<img src=\"§http://a.test/1.jpg\">`\n\n```\n![a](§http://a.test/2.jpg)\n```\n",
            "<img src=\"https://a.test/x.jpg\">\n\n`<img src=\"§http://a.test/1.jpg\">`\n\n```\n![a](§http://a.test/2.jpg)\n```\n",
            0,
        ),
        (
            "Markdown images, inline and by reference",
            Kind::Markdown,
            "# T\n\n![a](§http://a.test/1.jpg \"t\") and ![b][r]\n\n[r]: <§http://a.test/2.jpg>\n",
            "# T\n\n![a](@1.jpg \"t\") and ![b][r]\n\n[r]: <@2.jpg>\n",
            2,
        ),
        (
            "front matter list, quoted or not, nested, and no other values",
            Kind::Markdown,
            "---\ntitle: \"§http://a.test/t.jpg is a title\"\nphotos:\n  - §http://a.test/1.jpg\n  - \"§http://a.test/2.jpg\" # c\nlink: https://a.test/\n---\nbody\n",
            "---\ntitle: \"§http://a.test/t.jpg is a title\"\nphotos:\n  - @1.jpg\n  - \"@2.jpg\" # c\nlink: https://a.test/\n---\nbody\n",
            2,
        ),
        (
            "CRLF line endings stay CRLF",
            Kind::Markdown,
            "---\r\nheadimg: '§http://a.test/h.jpg'\r\n---\r\n\r\n<p>\r\n<img src=\"§http://a.test/1.jpg\">\r\n</p>\r\n\r\n![x](§http://a.test/2.jpg)\r\n",
            "---\r\nheadimg: '@h.jpg'\r\n---\r\n\r\n<p>\r\n<img src=\"@1.jpg\">\r\n</p>\r\n\r\n![x](@2.jpg)\r\n",
            3,
        ),
        (
            "a post without front matter",
            Kind::Markdown,
            "Hello <img src=\"§http://a.test/1.jpg\"> world\n",
            "Hello <img src=\"@1.jpg\"> world\n",
            1,
        ),
        (
            "a thematic break is not front matter",
            Kind::Markdown,
            "---\n\n![a](§http://a.test/1.jpg)\n",
            "---\n\n![a](@1.jpg)\n",
            1,
        ),
        (
            "broken HTML: an unterminated tag is left, the rest rewritten",
            Kind::Markdown,
            "<div>\n<img src=\"§http://a.test/1.jpg\">\n<img src=\"§http://a.test/2.jpg\"",
            "<div>\n<img src=\"@1.jpg\">\n<img src=\"§http://a.test/2.jpg\"",
            1,
        ),
        (
            "an escaped front-matter value is rewritten with its quotes",
            Kind::Markdown,
            "---\nheadimg: \"§http://a.test/\\x31.jpg\"\n---\n",
            "---\nheadimg: \"@1.jpg\"\n---\n",
            1,
        ),
    ];
    let mirror = format!("{BASE}/?url=http%3A%2F%2Fa.test%2F");
    for (name, kind, input, want, changed) in cases {
        let input = w(input);
        let want = w(want).replace('@', &mirror);
        let out = rw(&input, *kind, &Settings::default());
        assert_eq!(out.text, want, "{name}");
        assert_eq!(out.changed, *changed, "{name}");
        let again = rw(&out.text, *kind, &Settings::default());
        assert_eq!(
            (again.changed, &again.text),
            (0, &out.text),
            "{name}: second run"
        );
        let refs = extract(&input, *kind, &Settings::default()).expect("extracts");
        assert_eq!(refs.len(), *changed, "{name}: extract agrees with rewrite");
    }
}

#[test]
fn places_and_sizes_are_reported() {
    let input = w(
        "---\ncover:\n  image: §http://a.test/c.jpg\n---\n<img src=\"§http://a.test/1.jpg?x=1&amp;y=2\" data-size=\"4,3\" data-src=\"§http://a.test/2.jpg\" srcset=\"§http://a.test/3.jpg 2x\">\n<picture><source srcset=\"§http://a.test/4.jpg\"></picture>\n\n![m](§http://a.test/5.jpg)\n",
    );
    let settings = Settings {
        front_matter_size: Some((10, 20)),
        ..Settings::default()
    };
    let refs = extract(&input, Kind::Markdown, &settings).expect("extracts");
    let got: Vec<_> = refs
        .iter()
        .map(|r| (r.upstream.as_str(), r.size, r.place.clone(), r.line))
        .collect();
    // Only the sized `src` of an `<img>` without a srcset gets a 2x variant.
    let also_2x: Vec<bool> = refs.iter().map(|r| r.also_2x).collect();
    assert_eq!(also_2x, [false, false, false, false, false, false]);
    assert_eq!(
        got,
        [
            (
                "http://a.test/c.jpg",
                Some((10, 20)),
                Place::FrontMatter {
                    key: "cover.image".into()
                },
                3
            ),
            (
                "http://a.test/1.jpg?x=1&y=2",
                Some((4, 3)),
                Place::ImgSrc,
                5
            ),
            ("http://a.test/2.jpg", Some((4, 3)), Place::DataSrc, 5),
            ("http://a.test/3.jpg", None, Place::Srcset, 5),
            ("http://a.test/4.jpg", None, Place::SourceSrcset, 6),
            ("http://a.test/5.jpg", None, Place::MarkdownImage, 8),
        ]
    );
    let out = rewrite(&input, Kind::Markdown, &settings, &target()).expect("rewrites");
    assert!(
        out.text.contains(
            "image: https://img.example.com/?url=http%3A%2F%2Fa.test%2Fc.jpg&w=10&h=20\n"
        )
    );
}

#[test]
fn all_http_skips_https_links_and_our_own_base() {
    let settings = Settings {
        all_http: true,
        ..Settings::default()
    };
    let local = Target {
        base: "http://127.0.0.1:8080".into(),
        pins: HashMap::new(),
        ..Target::default()
    };
    let input = "---\nheadimg: http://a.test/h\nlink: http://a.test/page\n---\n<img src=\"https://a.test/s.jpg\"><img src=\"http://a.test/1.jpg\">\n![x](http://a.test/2.png)\n";
    let out = rewrite(input, Kind::Markdown, &settings, &local).expect("rewrites");
    assert_eq!(out.changed, 3);
    assert!(
        out.text
            .contains("headimg: http://127.0.0.1:8080/?url=http%3A%2F%2Fa.test%2Fh\n")
    );
    assert!(out.text.contains("link: http://a.test/page\n"));
    assert!(out.text.contains("<img src=\"https://a.test/s.jpg\">"));
    let again = rewrite(&out.text, Kind::Markdown, &settings, &local).expect("rewrites");
    assert_eq!((again.changed, again.text), (0, out.text.clone()));
    // extract needs to be told about the server to skip it too.
    let told = Settings {
        own_bases: vec!["http://127.0.0.1:8080".into()],
        ..settings
    };
    assert!(
        extract(&out.text, Kind::Markdown, &told)
            .expect("extracts")
            .is_empty()
    );
}

#[test]
fn extra_worker_prefixes_and_bad_upstreams() {
    let settings = Settings {
        worker_prefixes: vec![WORKER.into(), "https://proxy.test/fetch?u=".into()],
        ..Settings::default()
    };
    let input =
        w("<img src=\"https://proxy.test/fetch?u=http://a.test/1.jpg\"><img src=\"§not a url\">");
    let out = rw(&input, Kind::Html, &settings);
    assert_eq!(out.changed, 1);
    assert!(
        out.text
            .contains("src=\"https://img.example.com/?url=http%3A%2F%2Fa.test%2F1.jpg\"")
    );
    assert!(out.text.contains(&w("src=\"§not a url\"")));
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(
        out.warnings[0].starts_with("line 1:"),
        "{}",
        out.warnings[0]
    );
}

#[test]
fn invalid_front_matter_is_an_error_naming_the_line() {
    let input = w("---\ntitle: x\nheadimg: [§http://a.test/1.jpg\n---\nbody\n");
    let err = rewrite(&input, Kind::Markdown, &Settings::default(), &target()).expect_err("fails");
    assert!(matches!(err, ArticleError::FrontMatter { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("front matter is not valid yaml at line"),
        "{err}"
    );
}

#[test]
fn hostile_inputs_never_panic() {
    let inputs = [
        "",
        "---",
        "---\n",
        "---\n---",
        "\u{feff}",
        "<",
        "<img",
        "<img src=",
        "<img src=\"",
        "![",
        "![](",
        "![a](<",
        "---\n: : :\n---\n",
        "---\n\t- x\n---\n",
        "<img srcset=\",,, ,\">",
        "<img src=\"&#xFFFFFFFF;&#0;&\" data-size=\"99999999999,1\">",
        "<script><img src=\"x\"></script><textarea><img src=y></textarea>",
        "<svg><image href=\"x\"/><img src=z></svg>",
    ];
    for input in inputs {
        for kind in [Kind::Markdown, Kind::Html] {
            let input = w(input);
            let _ = extract(&input, kind, &Settings::default());
            if let Ok(out) = rewrite(&input, kind, &Settings::default(), &target()) {
                assert_eq!(out.changed, 0, "{input:?}");
                assert_eq!(out.text, input);
            }
        }
    }
}

#[test]
fn kind_from_path() {
    let cases = [
        ("a.md", Some(Kind::Markdown)),
        ("a.MARKDOWN", Some(Kind::Markdown)),
        ("a/b.html", Some(Kind::Html)),
        ("a.htm", Some(Kind::Html)),
        ("a.txt", None),
        ("md", None),
    ];
    for (path, want) in cases {
        assert_eq!(Kind::from_path(std::path::Path::new(path)), want, "{path}");
    }
}

fn posts_dir() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let seed = dir.path().join("seed.md");
    fs::write(&seed, SEED).expect("write");
    fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let html = dir.path().join("sub/page.html");
    fs::write(&html, w("<img src='§http://a.test/1.jpg'>")).expect("write");
    let bad = dir.path().join("sub/bad.md");
    fs::write(
        &bad,
        w("---\nheadimg: [§http://a.test/1.jpg\n---\n<img src=\"§http://a.test/2.jpg\">\n"),
    )
    .expect("write");
    let ignored = dir.path().join("sub/notes.txt");
    fs::write(&ignored, w("§http://a.test/1.jpg")).expect("write");
    fs::create_dir(dir.path().join(".git")).expect("mkdir");
    fs::write(
        dir.path().join(".git/x.md"),
        w("![a](§http://a.test/1.jpg)"),
    )
    .expect("write");
    (dir, seed, html, bad, ignored)
}

#[test]
fn rewrite_paths_writes_good_posts_and_leaves_the_bad_one() {
    let (dir, seed, html, bad, ignored) = posts_dir();
    let bad_before = fs::read(&bad).expect("read");
    let report = rewrite_paths(
        &[dir.path().to_owned()],
        &Settings::default(),
        &target(),
        Mode::Write,
        false,
    );
    let got: Vec<(PathBuf, usize, bool, bool)> = report
        .files
        .iter()
        .map(|f| (f.path.clone(), f.changed, f.written, f.error.is_some()))
        .collect();
    assert_eq!(
        got,
        [
            (seed.clone(), 22, true, false),
            (bad.clone(), 0, false, true),
            (html.clone(), 1, true, false),
        ]
    );
    assert!(report.any_failed());
    assert_eq!(report.changed(), 23);
    assert_eq!(fs::read(&bad).expect("read"), bad_before);
    assert_eq!(
        fs::read_to_string(&ignored).expect("read"),
        w("§http://a.test/1.jpg")
    );
    let seed_after = fs::read_to_string(&seed).expect("read");
    assert_eq!(
        seed_after,
        rw(SEED, Kind::Markdown, &Settings::default()).text
    );
    let summary = report.summary();
    assert!(
        summary.contains("bad.md: failed: cannot parse"),
        "{summary}"
    );
    assert!(
        summary.contains("front matter is not valid yaml at line"),
        "{summary}"
    );
    assert!(summary.contains("seed.md: 22 URLs rewritten"), "{summary}");
    assert!(
        summary.ends_with("3 posts, 23 URLs rewritten, 1 failed\n"),
        "{summary}"
    );
    // No temp files are left behind.
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());

    let again = rewrite_paths(
        &[dir.path().to_owned()],
        &Settings::default(),
        &target(),
        Mode::Write,
        false,
    );
    assert_eq!(again.changed(), 0);
    assert!(again.files.iter().all(|f| !f.written));
}

#[test]
fn dry_run_and_diff_write_nothing() {
    let (dir, seed, html, _bad, _) = posts_dir();
    let dry = rewrite_paths(
        std::slice::from_ref(&seed),
        &Settings::default(),
        &target(),
        Mode::DryRun,
        false,
    );
    assert_eq!(dry.changed(), 22);
    assert!(dry.diff.is_empty());
    assert_eq!(fs::read_to_string(&seed).expect("read"), SEED);

    let diff = rewrite_paths(
        &[seed.clone(), html.clone()],
        &Settings::default(),
        &target(),
        Mode::Diff,
        false,
    );
    assert!(!diff.any_failed());
    assert_eq!(fs::read_to_string(&seed).expect("read"), SEED);
    let text = &diff.diff;
    assert!(
        text.contains(&format!("--- a/{}", seed.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("+++ b/{}", html.display())),
        "{text}"
    );
    assert!(
        text.contains(&w("-headimg: '§http://static.1sapp.com")),
        "{text}"
    );
    assert!(text.contains("+headimg: 'https://img.example.com/?url=http%3A%2F%2Fstatic.1sapp.com"));
    // Only lines with URLs change: front matter (2) and the three body lines with images.
    let changed_lines = text
        .lines()
        .filter(|l| l.starts_with('-') && !l.starts_with("---"))
        .count();
    let seed_lines_with_worker = SEED.lines().filter(|l| l.contains(WORKER)).count();
    assert_eq!(changed_lines, seed_lines_with_worker + 1);
    drop(dir);
}

#[test]
fn explicit_non_post_and_missing_paths_fail_alone() {
    let (dir, seed, _, _, ignored) = posts_dir();
    let missing = dir.path().join("missing.md");
    let report = rewrite_paths(
        &[ignored, missing, seed],
        &Settings::default(),
        &target(),
        Mode::DryRun,
        false,
    );
    assert_eq!(report.files.len(), 3);
    assert!(matches!(
        report.files[0].error,
        Some(ArticleError::UnsupportedFile { .. })
    ));
    assert!(matches!(
        report.files[1].error,
        Some(ArticleError::Read { .. })
    ));
    assert_eq!(report.files[2].changed, 22);
    assert!(report.any_failed());
}

#[test]
fn a_post_named_twice_is_rewritten_once_and_non_utf8_fails_alone() {
    let (dir, seed, _, _, _) = posts_dir();
    let latin1 = dir.path().join("latin1.md");
    fs::write(&latin1, b"caf\xe9 <img src=\"x\">").expect("write");
    let report = rewrite_paths(
        &[seed.clone(), dir.path().to_owned()],
        &Settings::default(),
        &target(),
        Mode::Write,
        false,
    );
    let seeds: Vec<&FileReport> = report
        .files
        .iter()
        .filter(|f| f.path.ends_with("seed.md"))
        .collect();
    assert_eq!(seeds.len(), 1);
    assert_eq!(seeds[0].changed, 22);
    let bad: Vec<&FileReport> = report.files.iter().filter(|f| f.path == latin1).collect();
    assert!(matches!(bad[0].error, Some(ArticleError::NotUtf8 { .. })));
    assert_eq!(fs::read(&latin1).expect("read"), b"caf\xe9 <img src=\"x\">");
}

#[cfg(unix)]
#[test]
fn write_atomic_through_a_symlink_keeps_the_link() {
    let dir = tempfile::tempdir().expect("temp dir");
    let real = dir.path().join("real.md");
    let link = dir.path().join("link.md");
    fs::write(&real, "old").expect("write");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    write_atomic(&link, b"new").expect("writes");
    assert!(
        fs::symlink_metadata(&link)
            .expect("meta")
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(&real).expect("read"), b"new");
}

#[test]
fn write_atomic_replaces_whole_file_and_keeps_permissions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("post.md");
    fs::write(&path, "old").expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
    }
    write_atomic(&path, b"new contents").expect("writes");
    assert_eq!(fs::read(&path).expect("read"), b"new contents");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }
    let names: Vec<String> = fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["post.md"]);

    // A folder that does not exist: an error, and nothing created anywhere.
    let nowhere = dir.path().join("no/such/post.md");
    assert!(write_atomic(&nowhere, b"x").is_err());
    assert!(!dir.path().join("no").exists());
}

/// The posts in `tests/fixtures/articles/` against their reviewed `<name>.expected` output
/// (regenerate with `IMGMIRROR_BLESS=1`, then review the diff). A post that must fail has no
/// expected file but an expected error.
#[test]
fn fixture_posts_match_their_expected_output() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/articles");
    let bless = std::env::var_os("IMGMIRROR_BLESS").is_some();
    /// URLs changed and warnings, or the start of the expected error.
    type Outcome = Result<(usize, usize), &'static str>;
    let cases: &[(&str, Outcome)] = &[
        ("crlf.md", Ok((5, 0))),
        ("no-front-matter.html", Ok((10, 0))),
        ("broken.md", Ok((2, 2))),
        (
            "bad-front-matter.md",
            Err("front matter is not valid yaml at line 3"),
        ),
        (
            "ambiguous.html",
            Err("html starting at line 1 could not be tokenized"),
        ),
    ];
    for (name, want) in cases {
        let path = dir.join(name);
        let input = fs::read_to_string(&path).expect("fixture");
        let kind = Kind::from_path(&path).expect("a post");
        let result = rewrite(&input, kind, &Settings::default(), &target());
        match (want, result) {
            (Ok((changed, warnings)), Ok(out)) => {
                assert_eq!(out.changed, *changed, "{name}");
                assert_eq!(out.warnings.len(), *warnings, "{name}: {:?}", out.warnings);
                let expected_path = dir.join(format!("{name}.expected"));
                if bless {
                    fs::write(&expected_path, &out.text).expect("bless");
                }
                let expected = fs::read_to_string(&expected_path).expect("expected output");
                assert!(
                    out.text == expected,
                    "{name}: output differs from {name}.expected"
                );
                let again =
                    rewrite(&out.text, kind, &Settings::default(), &target()).expect("again");
                assert_eq!(
                    (again.changed, &again.text),
                    (0, &out.text),
                    "{name}: second run"
                );
                // Line endings are kept: a CRLF post has no bare LF afterwards.
                if input.contains("\r\n") {
                    assert_eq!(
                        out.text.matches('\n').count(),
                        out.text.matches("\r\n").count()
                    );
                }
            }
            (Err(message), Err(err)) => {
                assert!(err.to_string().starts_with(message), "{name}: {err}");
            }
            (want, got) => panic!("{name}: wanted {want:?}, got {got:?}"),
        }
    }
}
