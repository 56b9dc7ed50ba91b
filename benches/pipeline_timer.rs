//! A plain timing binary for `scripts/compare.py`: runs imgmirror's render pipeline on one
//! image, in process, the way the script runs Pillow and pyvips, and prints one JSON line.
//!
//! `cargo bench --bench pipeline_timer -- FILE QUERY FORMAT ITERATIONS`
//! e.g. `… -- tests/fixtures/photo-1920.jpg 'w=480&q=80' jpeg 200`. Reports the median
//! wall time per image and the process CPU time per image (from /proc/self/stat), after
//! 3 warm-up renders.

use std::time::Instant;

use imgmirror::transform::{OutputFormat, Settings, Spec, render};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.len() < 4 {
        // `cargo bench` with no arguments runs every bench target: do nothing, quietly.
        return;
    }
    let src = std::fs::read(&args[0]).unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    let settings = Settings::default();
    let pairs: Vec<(&str, &str)> = args[1]
        .split('&')
        .filter_map(|p| p.split_once('='))
        .collect();
    let spec = Spec::from_query(pairs, &settings)
        .expect("valid query")
        .expect("a transform");
    let format = match args[2].as_str() {
        "jpeg" => OutputFormat::Jpeg,
        "webp" => OutputFormat::Webp,
        "png" => OutputFormat::Png,
        "gif" => OutputFormat::Gif,
        other => panic!("unknown format {other}"),
    };
    let iterations: usize = args[3].parse().expect("iterations");
    let mut out = None;
    for _ in 0..3 {
        out = Some(render(&src, &spec, format, &settings).expect("render"));
    }
    let cpu_start = process_cpu_seconds();
    let mut walls = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        out = Some(std::hint::black_box(
            render(&src, &spec, format, &settings).expect("render"),
        ));
        walls.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let cpu_ms = (process_cpu_seconds() - cpu_start) * 1000.0 / iterations as f64;
    walls.sort_by(f64::total_cmp);
    let out = out.expect("at least one render");
    println!(
        "{{\"tool\":\"imgmirror\",\"median_ms\":{:.3},\"best_ms\":{:.3},\"cpu_ms\":{:.3},\"bytes\":{},\"width\":{},\"height\":{}}}",
        walls[walls.len() / 2],
        walls[0],
        cpu_ms,
        out.bytes.len(),
        out.width,
        out.height
    );
}

/// utime + stime of this process, from /proc/self/stat (clock ticks, 100 per second).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the ")" that closes the command name; utime and stime are fields 14, 15.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}
