//! The image entry point as the mirror drives it: `verify` (what the fetcher checks before
//! storing), `probe` (header facts), `negotiate`, then `render` under the limits, and the
//! placeholder's `thumbnail_rgba`. Limits are the defaults scaled down so one input costs
//! milliseconds, not seconds; a render past the limits must be refused, never allocate
//! beyond them (libFuzzer's `-rss_limit_mb` catches that) and never panic.
//!
//! Input: byte 0 picks the options and the output format; the rest is the image.
#![no_main]

use imgmirror::transform::{self, OutputFormat, Settings, Spec};
use imgmirror::upstream::verify::verify;
use libfuzzer_sys::fuzz_target;

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

fn settings() -> Settings {
    Settings {
        max_pixels: 4_000_000,
        max_input_dim: 4096,
        max_width: 1024,
        max_height: 1024,
        max_frames: 20,
        max_jpeg_scans: 50,
        max_output_pixels_total: 4_000_000,
        render_timeout_secs: 5,
        ..Settings::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, src)) = data.split_first() else {
        return;
    };
    let _ = verify(src);
    let settings = settings();
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
});
