//! Criterion benchmarks of the transform pipeline on the real fixtures: the three cases of
//! the speed goal (1920 and 4000 px JPEG → 480 px JPEG q80, PNG with alpha → 480 px WebP)
//! plus the cheap parts (probe, option parsing) and an animated GIF.
//!
//! Run: `cargo bench --bench transform` (pin to one core with `taskset -c 1` for numbers
//! comparable with benches/RESULTS.md).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use imgmirror::transform::{OutputFormat, Settings, Spec, probe, render};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn spec(query: &str, settings: &Settings) -> Spec {
    let pairs: Vec<(&str, &str)> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    Spec::from_query(pairs, settings)
        .expect("valid query")
        .expect("a transform")
}

fn pipeline(c: &mut Criterion) {
    let settings = Settings::default();
    let cases = [
        (
            "jpeg_1920_to_480_jpeg_q80",
            "photo-1920.jpg",
            "w=480&q=80",
            OutputFormat::Jpeg,
        ),
        (
            "jpeg_4000_to_480_jpeg_q80",
            "photo-4000.jpg",
            "w=480&q=80",
            OutputFormat::Jpeg,
        ),
        (
            "png_alpha_to_480_webp_q80",
            "cat-alpha.png",
            "w=480&q=80&enlarge=1",
            OutputFormat::Webp,
        ),
        (
            "jpeg_1920_to_480_webp_q80",
            "photo-1920.jpg",
            "w=480&q=80",
            OutputFormat::Webp,
        ),
        (
            "gif_anim_480_to_240",
            "pan-anim.gif",
            "w=240",
            OutputFormat::Gif,
        ),
    ];
    let mut group = c.benchmark_group("render");
    group.sample_size(30);
    for (name, file, query, format) in cases {
        let src = fixture(file);
        let spec = spec(query, &settings);
        group.bench_function(name, |b| {
            b.iter(|| render(black_box(&src), &spec, format, &settings).expect("render"))
        });
    }
    // The libvips-like quality setting, for the trade-off table.
    let precise = Settings {
        fast_jpeg_shrink: false,
        ..Settings::default()
    };
    let src = fixture("photo-1920.jpg");
    let s = spec("w=480&q=80", &precise);
    group.bench_function("jpeg_1920_to_480_jpeg_q80_precise_shrink", |b| {
        b.iter(|| render(black_box(&src), &s, OutputFormat::Jpeg, &precise).expect("render"))
    });
    group.finish();
}

fn cheap(c: &mut Criterion) {
    let settings = Settings::default();
    let jpeg = fixture("photo-4000.jpg");
    let gif = fixture("pan-anim.gif");
    let bomb = fixture("bomb-50000.png");
    c.bench_function("probe_jpeg_4000", |b| b.iter(|| probe(black_box(&jpeg))));
    c.bench_function("probe_gif_8_frames", |b| b.iter(|| probe(black_box(&gif))));
    let s = spec("w=100", &settings);
    c.bench_function("refuse_pixel_bomb", |b| {
        b.iter(|| render(black_box(&bomb), &s, OutputFormat::Jpeg, &settings).unwrap_err())
    });
    c.bench_function("parse_spec", |b| {
        b.iter(|| {
            spec(
                black_box("w=240&h=160&dpr=2&fit=cover&q=75&format=auto"),
                &settings,
            )
        })
    });
}

criterion_group!(benches, pipeline, cheap);
criterion_main!(benches);
