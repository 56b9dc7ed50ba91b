//! The article front end on arbitrary posts: front matter, HTML and Markdown scanning
//! (`extract`, `references`) and the rewrite (forward, `--from-base`, `--undo`). Besides
//! "never panics" it checks two promises of the rewrite: a post with nothing rewritten is
//! returned byte for byte, and rewriting a rewritten post changes nothing more.
//!
//! Input: byte 0 picks Markdown or HTML and the settings; the rest is the post (UTF-8).
#![no_main]

use imgmirror::article::{self, Kind, Settings, Target, UndoTo};
use libfuzzer_sys::fuzz_target;

const BASE: &str = "https://img.example.com";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let kind = if flags & 1 == 0 { Kind::Markdown } else { Kind::Html };
    let settings = Settings {
        all_http: flags & 2 != 0,
        links: flags & 4 != 0,
        front_matter_size: (flags & 8 != 0).then_some((480, 320)),
        ..Settings::default()
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
        assert_eq!(rewritten.text, text, "nothing rewritten, yet the text changed");
    }
    let _ = refs;
    // Rewriting the output again finds nothing left to do.
    if let Ok(again) = article::rewrite(&rewritten.text, kind, &settings, &target) {
        assert_eq!(again.changed, 0, "second rewrite changed more:\n{}", rewritten.text);
    }
    let moved = Target {
        base: "https://other.example.org/img".into(),
        from_base: Some(BASE.into()),
        ..Target::default()
    };
    let _ = article::rewrite(&rewritten.text, kind, &settings, &moved);
    let undo = Target {
        base: BASE.into(),
        undo: Some(if flags & 16 == 0 { UndoTo::Worker } else { UndoTo::Upstream }),
        ..Target::default()
    };
    let _ = article::rewrite(&rewritten.text, kind, &settings, &undo);
});
