//! What each attack costs with and without its defence (see the comment in
//! `hostile_tests.rs` for how to run it).

use super::*;

/// Every limit off, and a deadline far away.
fn lifted() -> Settings {
    Settings {
        max_pixels: u64::MAX,
        max_input_dim: u32::MAX,
        max_jpeg_scans: u32::MAX,
        max_output_pixels_total: u64::MAX,
        render_timeout_secs: 86_400,
        ..Settings::default()
    }
}

/// Prints the wall time and outcome of one render.
fn time(what: &str, f: impl FnOnce() -> Result<Rendered, TransformError>) {
    let start = std::time::Instant::now();
    let outcome = match f() {
        Ok(r) => format!(
            "ok {}x{} x{}, {} B",
            r.width,
            r.height,
            r.frames,
            r.bytes.len()
        ),
        Err(e) => e.code().to_owned(),
    };
    let secs = start.elapsed().as_secs_f64();
    println!("{what:<48} {secs:>8.3} s  {outcome}");
}

/// An RGB image encoded by mozjpeg, progressive or baseline (fastest settings).
fn encode_jpeg(rgb: &[u8], (w, h): (usize, usize), progressive: bool) -> Vec<u8> {
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    if !progressive {
        c.set_fastest_defaults();
    }
    c.set_size(w, h);
    if progressive {
        c.set_progressive_mode();
    }
    let mut started = c.start_compress(Vec::new()).unwrap();
    started.write_scanlines(rgb).unwrap();
    started.finish().unwrap()
}

#[test]
#[ignore = "a measurement, not a test: slow, and only meaningful in release"]
fn attack_cost_fake_sof() {
    let open = &lifted();
    let flat = encode_jpeg(&vec![128u8; 8000 * 8000 * 3], (8000, 8000), false);
    let big = after_soi(&flat, &hidden_fake_sof(0xD0, 100, 100));
    println!(
        "8000x8000 behind a fake 100x100 SOF: {} KB",
        big.len() / 1024
    );
    let q = spec("w=100");
    time("fake SOF, limits lifted", || {
        render(&big, &q, OutputFormat::Jpeg, open)
    });
    // Without a size, no shrink-on-load: the full 8000×8000 decode and re-encode.
    time("fake SOF, limits lifted, format=jpeg", || {
        render(&big, &spec("format=jpeg"), OutputFormat::Jpeg, open)
    });
    time("fake SOF, defended", || {
        render(&big, &q, OutputFormat::Jpeg, &Settings::default())
    });
}

#[test]
#[ignore = "a measurement, not a test: slow, and only meaningful in release"]
fn attack_cost_scans() {
    let open = &lifted();
    let rgb: Vec<u8> = (0..4000 * 2500 * 3)
        .map(|i| (i / 3 % 4000 / 16) as u8)
        .collect();
    let base = encode_jpeg(&rgb, (4000, 2500), true);
    // The smallest AC first scan (Ss > 0, Ah = 0): decoding it again just rewrites.
    let is_ac_first = |r: &Range<usize>| {
        let ns = usize::from(base[r.start + 4]);
        base[r.start + 5 + 2 * ns] > 0 && base[r.start + 7 + 2 * ns] >> 4 == 0
    };
    let scan = scan_ranges(&base)
        .into_iter()
        .filter(is_ac_first)
        .min_by_key(|r| r.len())
        .unwrap();
    let mut bomb = base[..scan.end].to_vec();
    for _ in 0..5000 {
        bomb.extend_from_slice(&base[scan.clone()]);
    }
    bomb.extend_from_slice(&base[scan.end..]);
    println!(
        "progressive 4000x2500: {} KB; bomb {} KB, {} scans (one of {} B repeated)",
        base.len() / 1024,
        bomb.len() / 1024,
        scan_ranges(&bomb).len(),
        scan.len()
    );
    let (q, d) = (spec("w=100"), Settings::default());
    time("progressive base", || {
        render(&base, &q, OutputFormat::Jpeg, &d)
    });
    time("5000 scans, limits lifted", || {
        render(&bomb, &q, OutputFormat::Jpeg, open)
    });
    time("5000 scans, defended", || {
        render(&bomb, &q, OutputFormat::Jpeg, &d)
    });
    let deadline_only = Settings {
        render_timeout_secs: 1,
        ..open.clone()
    };
    time("5000 scans, no scan cap, 1 s deadline", || {
        render(&bomb, &q, OutputFormat::Jpeg, &deadline_only)
    });
}

#[test]
#[ignore = "a measurement, not a test: slow, and only meaningful in release"]
fn attack_cost_animation() {
    let open = &lifted();
    let gif = fixture("pan-anim.gif");
    let q = spec("w=7000&h=7000&fit=fill&enlarge=1&format=gif");
    time("pan-anim.gif at 7000x7000, defended", || {
        render(&gif, &q, OutputFormat::Gif, &Settings::default())
    });
    time("pan-anim.gif at 7000x7000, limits lifted", || {
        render(&gif, &q, OutputFormat::Gif, open)
    });
}

#[test]
#[ignore = "a measurement, not a test: slow, and only meaningful in release"]
fn attack_cost_webp_bitstream() {
    // A 16383×16383 VP8 bitstream in a 64×64 VP8X canvas (the old probe saw 64×64).
    let mut vp8 = simple_webp(64, 64)[12..].to_vec();
    vp8[8 + 6..8 + 10].copy_from_slice(&[0xFF, 0x3F, 0xFF, 0x3F]);
    let webp = vp8x(0, (64, 64), &vp8);
    let start = std::time::Instant::now();
    let r = image::load_from_memory(&webp).map(|i| i.width());
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{:<48} {secs:>8.3} s  {r:?}",
        "webp big bitstream, image's decoder alone"
    );
    time("webp big bitstream, defended", || {
        render(
            &webp,
            &spec("w=100"),
            OutputFormat::Png,
            &Settings::default(),
        )
    });
}
