//! AVIF against WebP on the seed article's images, in process, one thread: for every
//! `<img>` of `tests/fixtures/seed-article.md` (the fixture photo the test origin serves
//! for it, at its `data-size`, 1x and 2x), renders WebP at the default quality and AVIF
//! at each given quality/speed, and prints a Markdown table of bytes and encode times.
//!
//! `taskset -c 1 cargo bench --bench avif_seed -- [ITERATIONS] [OUT_DIR] [Q:SPEED ...]`
//! e.g. `… -- 3 /tmp/avif 60:10 50:10 60:8`. With OUT_DIR, every output (and a lossless
//! PNG of the same render, the reference for `scripts/avif_quality.py`) is written there.
//! Times are the median wall time of one render (decode + resize + encode) per image.

use std::time::Instant;

use imgmirror::transform::{OutputFormat, Settings, Spec, render};

/// The photo `tests/it/support/origin.rs` (`qupost_file`) serves for a seed image name.
fn served_file(name: &str) -> &'static str {
    const FILES: [&str; 3] = ["photo-480.jpg", "astronaut-512.jpg", "photo-1080.jpg"];
    let sum: usize = name.bytes().map(usize::from).sum();
    FILES[sum % FILES.len()]
}

/// (fixture file, query) for every seed `<img>`, 1x and 2x.
fn seed_renders(root: &str) -> Vec<(&'static str, String)> {
    let text = std::fs::read_to_string(format!("{root}/tests/fixtures/seed-article.md"))
        .expect("seed article");
    let mut out = Vec::new();
    for tag in text.split("<img").skip(1) {
        let attr = |name: &str| {
            tag.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|v| v.split('"').next())
                .map(str::to_owned)
        };
        let (Some(src), Some(size)) = (attr("src"), attr("data-size")) else {
            continue;
        };
        let Some((w, h)) = size.split_once(',') else {
            continue;
        };
        let file = served_file(src.rsplit('/').next().unwrap_or(""));
        for dpr in [1, 2] {
            out.push((file, format!("w={w}&h={h}&dpr={dpr}")));
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median ms of `iterations` renders, and the last output.
fn time(src: &[u8], spec: &Spec, format: OutputFormat, s: &Settings, n: usize) -> (f64, Vec<u8>) {
    let mut walls = Vec::with_capacity(n);
    let mut bytes = Vec::new();
    for _ in 0..n.max(1) {
        let t = Instant::now();
        bytes = render(src, spec, format, s).expect("render").bytes;
        walls.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (median(walls), bytes)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() {
        // `cargo bench` with no arguments runs every bench target: do nothing, quietly.
        return;
    }
    let iterations: usize = args[0].parse().expect("iterations");
    let out_dir = args.get(1).filter(|d| !d.contains(':')).cloned();
    let configs: Vec<(u8, u8)> = args
        .iter()
        .skip(1)
        .filter_map(|a| a.split_once(':'))
        .map(|(q, s)| (q.parse().expect("q"), s.parse().expect("speed")))
        .collect();
    let configs = if configs.is_empty() {
        vec![(60, 10)]
    } else {
        configs
    };
    let root = env!("CARGO_MANIFEST_DIR");
    let renders = seed_renders(root);
    let base = Settings::default();
    // Warm-up (page cache, lazy statics).
    let first = std::fs::read(format!("{root}/tests/fixtures/{}", renders[0].0)).unwrap();
    let spec0 = spec(&renders[0].1, &base);
    let _ = time(&first, &spec0, OutputFormat::Webp, &base, 2);

    let mut webp_total = (0usize, 0.0f64);
    let mut avif_totals = vec![(0usize, 0.0f64); configs.len()];
    println!(
        "| image | query | WebP q{} bytes / ms | {} |",
        base.webp_quality,
        configs
            .iter()
            .map(|(q, s)| format!("AVIF q{q} s{s} bytes / ms"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|---|{}", "---|".repeat(configs.len()));
    for (i, (file, query)) in renders.iter().enumerate() {
        let src = std::fs::read(format!("{root}/tests/fixtures/{file}")).unwrap();
        let spec = spec(query, &base);
        let (webp_ms, webp) = time(&src, &spec, OutputFormat::Webp, &base, iterations);
        webp_total.0 += webp.len();
        webp_total.1 += webp_ms;
        let mut row = format!("| {file} | {query} | {} / {webp_ms:.1} |", webp.len());
        if let Some(dir) = &out_dir {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(format!("{dir}/{i:02}.webp"), &webp).unwrap();
            let png = render(&src, &spec, OutputFormat::Png, &base).unwrap();
            std::fs::write(format!("{dir}/{i:02}.png"), png.bytes).unwrap();
        }
        for (c, (q, speed)) in configs.iter().enumerate() {
            let s = Settings {
                avif_quality: *q,
                avif_speed: *speed,
                ..base.clone()
            };
            let (ms, avif) = time(&src, &spec, OutputFormat::Avif, &s, iterations);
            avif_totals[c].0 += avif.len();
            avif_totals[c].1 += ms;
            row.push_str(&format!(" {} / {ms:.1} |", avif.len()));
            if let Some(dir) = &out_dir {
                std::fs::write(format!("{dir}/{i:02}.q{q}s{speed}.avif"), &avif).unwrap();
            }
        }
        println!("{row}");
    }
    let n = renders.len() as f64;
    let mut total = format!(
        "| **total ({} renders)** | | {} / {:.1} per image |",
        renders.len(),
        webp_total.0,
        webp_total.1 / n
    );
    for (bytes, ms) in &avif_totals {
        let saved = 100.0 * (1.0 - *bytes as f64 / webp_total.0 as f64);
        total.push_str(&format!(
            " {bytes} ({saved:.0} % smaller) / {:.1} per image |",
            ms / n
        ));
    }
    println!("{total}");
}

fn spec(query: &str, settings: &Settings) -> Spec {
    let pairs: Vec<(&str, &str)> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    Spec::from_query(pairs, settings)
        .expect("valid query")
        .expect("a transform")
}
