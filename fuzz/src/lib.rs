//! The checks of the fuzz targets, one function per target, so `cargo fuzz` and the
//! regression test of the main crate (`tests/it/fuzz_regressions.rs`, which includes this
//! file by path and replays `tests/fixtures/fuzz/<target>/*`) run exactly the same code.
//! Each function takes the raw fuzzer input; a panic is a finding.
//!
//! Depends on nothing but `imgmirror` (and std), so the test can include it.

use imgmirror::article::{self, Kind, Target, UndoTo};
use imgmirror::transform::{self, OutputFormat, Spec};
use imgmirror::upstream::verify::verify;
use imgmirror::url_grammar::{self, Address};

/// The request-URL grammar as the router meets it: any path-and-query → `Address` →
/// transform options (`Spec`), plus `recognise` (the rewriter's reading of URLs in posts)
/// and `check_base`. Beyond "never panics", it checks the round trip the rewriter and the
/// prefetcher rely on: what `proxy_url` writes for a parsed upstream parses back to it.
pub fn url_grammar(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let settings = transform::Settings::default();
    if let Ok(address) = url_grammar::parse_path_and_query(input) {
        let pairs = address
            .options()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        if let Ok(Some(spec)) = Spec::from_query(pairs, &settings) {
            let _ = spec.canonical();
            for format in [
                OutputFormat::Jpeg,
                OutputFormat::Png,
                OutputFormat::Webp,
                OutputFormat::Gif,
            ] {
                let _ = spec.canonical_for(format, &settings);
            }
        }
        if let Address::Proxy { upstream, options } = &address {
            let written: Vec<(&str, String)> = options
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            let again = url_grammar::proxy_url("", upstream.as_str(), &written);
            match url_grammar::parse_path_and_query(&again) {
                Ok(Address::Proxy {
                    upstream: u2,
                    options: o2,
                }) => {
                    assert_eq!(&u2, upstream, "{again}");
                    assert_eq!(&o2, options, "{again}");
                }
                other => panic!("{again:?} did not parse back: {other:?}"),
            }
        }
    }
    let (path, query) = match input.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (input, None),
    };
    let _ = url_grammar::parse(path, query);
    let _ = url_grammar::recognise(input);
    let _ = url_grammar::recognise(&format!("https://img.example.com{input}"));
    let _ = url_grammar::check_base(input);
}

const BASE: &str = "https://img.example.com";

/// The article front end on arbitrary posts: front matter, HTML and Markdown scanning
/// (`extract`, `references`) and the rewrite (forward, `--from-base`, `--undo`). Besides
/// "never panics" it checks two promises of the rewrite: a post with nothing rewritten is
/// returned byte for byte, and rewriting a rewritten post changes nothing more.
///
/// Input: byte 0 picks Markdown or HTML and the settings; the rest is the post (UTF-8).
pub fn article(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let kind = if flags & 1 == 0 {
        Kind::Markdown
    } else {
        Kind::Html
    };
    let settings = article::Settings {
        all_http: flags & 2 != 0,
        links: flags & 4 != 0,
        front_matter_size: (flags & 8 != 0).then_some((480, 320)),
        ..article::Settings::default()
    };
    let Ok(refs) = article::extract(text, kind, &settings) else {
        return;
    };
    let _ = article::references(text, kind, &settings);
    let target = Target {
        base: BASE.into(),
        ..Target::default()
    };
    let Ok(rewritten) = article::rewrite(text, kind, &settings, &target) else {
        return;
    };
    if rewritten.changed == 0 {
        assert_eq!(
            rewritten.text, text,
            "nothing rewritten, yet the text changed"
        );
    }
    let _ = refs;
    // Rewriting the output again finds nothing left to do.
    if let Ok(again) = article::rewrite(&rewritten.text, kind, &settings, &target) {
        assert_eq!(
            again.changed, 0,
            "second rewrite changed more:\n{}",
            rewritten.text
        );
    }
    let moved = Target {
        base: "https://other.example.org/img".into(),
        from_base: Some(BASE.into()),
        ..Target::default()
    };
    let _ = article::rewrite(&rewritten.text, kind, &settings, &moved);
    let undo = Target {
        base: BASE.into(),
        undo: Some(if flags & 16 == 0 {
            UndoTo::Worker
        } else {
            UndoTo::Upstream
        }),
        ..Target::default()
    };
    let _ = article::rewrite(&rewritten.text, kind, &settings, &undo);
}

const QUERIES: [&str; 8] = [
    "w=64",
    "w=100&h=100&fit=cover",
    "w=50&h=80&fit=contain&bg=ff000080",
    "h=40&dpr=2",
    "w=300&enlarge=1",
    "w=33&h=17&fit=fill&q=30",
    "w=1&h=1&fit=cover",
    "w=128&h=128&fit=inside&format=auto",
];

fn image_settings() -> transform::Settings {
    transform::Settings {
        max_pixels: 4_000_000,
        max_input_dim: 4096,
        max_width: 1024,
        max_height: 1024,
        max_frames: 20,
        max_jpeg_scans: 50,
        max_output_pixels_total: 4_000_000,
        render_timeout_secs: 5,
        ..transform::Settings::default()
    }
}

/// The image entry point as the mirror drives it: `verify` (what the fetcher checks before
/// storing), `probe` (header facts), `negotiate`, then `render` under the limits, and the
/// placeholder's `thumbnail_rgba`. Limits are the defaults scaled down so one input costs
/// milliseconds, not seconds; a render past the limits must be refused, never allocate
/// beyond them (libFuzzer's `-rss_limit_mb` catches that) and never panic.
///
/// Input: byte 0 picks the options and the output format; the rest is the image.
pub fn image(data: &[u8]) {
    let Some((&choice, src)) = data.split_first() else {
        return;
    };
    let _ = verify(src);
    let settings = image_settings();
    let Ok(probe) = transform::probe(src) else {
        return;
    };
    let query = QUERIES[usize::from(choice & 7)];
    let pairs: Vec<(&str, &str)> = query
        .split('&')
        .map(|p| p.split_once('=').unwrap())
        .collect();
    let spec = Spec::from_query(pairs, &settings).unwrap().unwrap();
    let format = match (choice >> 3) & 7 {
        0 => OutputFormat::Jpeg,
        1 => OutputFormat::Png,
        2 => OutputFormat::Webp,
        3 => OutputFormat::Gif,
        _ => transform::negotiate(&spec, Some("image/webp,*/*"), &probe, &settings).format,
    };
    if let Ok(rendered) = transform::render(src, &spec, format, &settings) {
        assert!(rendered.width <= 1024 && rendered.height <= 1024);
        assert!(!rendered.bytes.is_empty());
    }
    if choice & 0x40 != 0 {
        let _ = transform::thumbnail_rgba(src, 32, &settings);
    }
}
