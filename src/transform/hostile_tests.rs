//! Regression tests for the decoder-level hardening (pentest findings): each hostile input
//! is built here, from the real fixtures where that helps, and each test asserts the typed
//! error code that only its defence produces (without it the render succeeds, or fails
//! differently, later and at a cost):
//!
//! - a JPEG whose RST/TEM markers make a naive header walk read a fake frame header;
//! - libjpeg's own header, and `image`'s decoders' own sizes, checked before allocation
//!   even when the probe says otherwise;
//! - a progressive JPEG with hundreds of scans (`max_jpeg_scans`);
//! - an animation resized far beyond its size (`max_output_pixels_total`);
//! - GIF frames much larger than their logical screen;
//! - WebP bitstreams that disagree with their VP8X canvas or ANMF frame;
//! - the render deadline (`render_timeout_secs`) inside libjpeg and between steps, and
//!   the new settings' validation. `attack_cost` (feature `attack-cost`) measures each attack's cost.

use std::ops::Range;
use std::time::Duration;

use super::deadline::Deadline;
use super::pipeline::{decode, render_until};
use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn spec(query: &str) -> Spec {
    let pairs: Vec<(&str, &str)> = query
        .split('&')
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    Spec::from_query(pairs, &Settings::default())
        .unwrap()
        .unwrap()
}

fn error_code(r: Result<Rendered, TransformError>) -> &'static str {
    match r {
        Ok(r) => panic!("rendered {}x{} x{}", r.width, r.height, r.frames),
        Err(e) => e.code(),
    }
}

fn later() -> Deadline {
    Deadline::after(Duration::from_secs(600))
}

/// A baseline 8-bit, 3-component SOF0 segment declaring `w`×`h`.
fn sof(w: u16, h: u16) -> Vec<u8> {
    let mut v = vec![0xFF, 0xC0, 0x00, 0x11, 0x08];
    v.extend(h.to_be_bytes());
    v.extend(w.to_be_bytes());
    v.extend([0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]);
    v
}

/// `jpeg` with `bytes` inserted right after SOI.
fn after_soi(jpeg: &[u8], bytes: &[u8]) -> Vec<u8> {
    [&jpeg[..2], bytes, &jpeg[2..]].concat()
}

/// A fake frame header only a walk that gives `marker` a length finds: the marker (RST0 or
/// TEM, parameterless), two bytes such a walk takes for a length of 16 and libjpeg skips as
/// extraneous data, then a COM segment whose payload holds a fake SOF exactly where that
/// walk lands (2 + 2 + 16 = offset 20). libjpeg reads the real SOF that follows.
fn hidden_fake_sof(marker: u8, w: u16, h: u16) -> Vec<u8> {
    let fake = sof(w, h);
    let mut v = vec![0xFF, marker, 0x00, 0x10];
    v.extend([0xFF, 0xFE]);
    v.extend(u16::try_from(2 + 10 + fake.len()).unwrap().to_be_bytes());
    v.extend([0u8; 10]);
    v.extend(fake);
    v
}

#[test]
fn jpeg_probe_reads_the_frame_header_libjpeg_reads() {
    let photo = fixture("photo-480.jpg");
    let honest = render(
        &photo,
        &spec("w=100"),
        OutputFormat::Jpeg,
        &Settings::default(),
    )
    .unwrap();
    for marker in [0xD0, 0xD7, 0x01] {
        let src = after_soi(&photo, &hidden_fake_sof(marker, 100, 100));
        assert_eq!(&src[20..22], &[0xFF, 0xC0], "fake SOF at offset 20");
        let p = probe(&src).unwrap();
        assert_eq!((p.width, p.height), (480, 319), "marker {marker:#04x}");
        // libjpeg reads this file as the real 480×319 picture …
        let r = render(
            &src,
            &spec("w=100"),
            OutputFormat::Jpeg,
            &Settings::default(),
        )
        .unwrap();
        assert_eq!((r.width, r.height), (honest.width, honest.height));
        // … so a limit the fake 100×100 would pass refuses it.
        let small = Settings {
            max_pixels: 100_000,
            ..Settings::default()
        };
        let r = render(&src, &spec("w=100"), OutputFormat::Jpeg, &small);
        assert_eq!(error_code(r), "too-many-pixels", "marker {marker:#04x}");
    }
    // 0xFF fill bytes before a marker are fine; what libjpeg refuses, the probe refuses.
    let filled = after_soi(&photo, &[0xFF, 0xFF, 0xFF, 0xD0]);
    assert_eq!(probe(&filled).unwrap().width, 480);
    for (bytes, why) in [
        (&[0xFF, 0xD8][..], "second SOI"),
        (&[0xFF, 0xD9], "EOI before the frame header"),
        (&[0xFF, 0x02, 0x00, 0x04, 0, 0], "unknown marker"),
    ] {
        let src = after_soi(&photo, bytes);
        let err = probe(&src).unwrap_err();
        assert_eq!(err.code(), "corrupt-image", "{why}: {err}");
    }
}

#[test]
fn jpeg_decoder_checks_the_size_libjpeg_read() {
    // The decoder refuses on libjpeg's header alone: before the scale is picked, before
    // any buffer, whatever the caller's probe said.
    let photo = fixture("photo-480.jpg");
    let budget = |max_pixels, max_dim| jpeg::Budget {
        max_pixels,
        max_dim,
        max_scans: 100,
        deadline: later(),
    };
    let refuse = |_: &jpeg::Header| -> u8 { panic!("scale picked before the limits") };
    let err = jpeg::decode(&photo, &budget(100_000, 20_000), refuse).err();
    assert_eq!(err.map(|e| e.code()), Some("too-many-pixels"));
    let err = jpeg::decode(&photo, &budget(1_000_000, 400), refuse).err();
    assert_eq!(err.map(|e| e.code()), Some("image-too-large"));
    let decoded = jpeg::decode(&photo, &budget(153_120, 480), |_| 8).unwrap();
    let d = decoded.expect("RGB JPEG");
    assert_eq!((d.width, d.height), (480, 319));
    // With shrink-on-load the output is libjpeg's scaled size, rounded up.
    let d = jpeg::decode(&photo, &budget(153_120, 480), |_| 1)
        .unwrap()
        .unwrap();
    assert_eq!((d.width, d.height), (60, 40));
}

#[test]
fn image_decoders_check_the_size_they_read() {
    // A probe that understates the size (as a fooled one would): the decoder's own
    // dimensions are checked before `from_decoder` allocates.
    let small = Settings {
        max_pixels: 100_000,
        ..Settings::default()
    };
    for (name, format) in [
        ("cat-alpha.png", SourceFormat::Png),
        ("pan-anim.gif", SourceFormat::Gif),
    ] {
        let lying = Probe {
            format,
            width: 10,
            height: 10,
            has_alpha: true,
            frames: 1,
        };
        let r = decode(&fixture(name), &lying, &spec("w=100"), &small, later());
        assert_eq!(r.err().map(|e| e.code()), Some("too-many-pixels"), "{name}");
    }
}

/// Byte ranges of a JPEG's scans: each SOS segment with its entropy-coded data.
fn scan_ranges(jpeg: &[u8]) -> Vec<Range<usize>> {
    let mut scans = Vec::new();
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF && jpeg[at + 1] != 0xD9 {
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        let mut end = at + 2 + len;
        if jpeg[at + 1] == 0xDA {
            // Entropy-coded data ends at the first marker other than stuffing or RSTn.
            while jpeg[end] != 0xFF || matches!(jpeg[end + 1], 0x00 | 0xD0..=0xD7) {
                end += 1;
            }
            scans.push(at..end);
        }
        at = end;
    }
    scans
}

/// A small progressive JPEG made here (mozjpeg's progressive script).
fn progressive_jpeg(size: usize) -> Vec<u8> {
    let rgb: Vec<u8> = (0..size * size * 3).map(|i| (i * 7 % 251) as u8).collect();
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    c.set_size(size, size);
    c.set_progressive_mode();
    let mut started = c.start_compress(Vec::new()).unwrap();
    started.write_scanlines(&rgb).unwrap();
    started.finish().unwrap()
}

/// `jpeg` with its first scan (the DC scan) repeated `copies` more times. libjpeg decodes
/// each copy again (warning only about the odd progression), which is the CPU bomb.
fn with_repeated_first_scan(jpeg: &[u8], copies: usize) -> Vec<u8> {
    let first = scan_ranges(jpeg)[0].clone();
    let mut out = jpeg[..first.end].to_vec();
    for _ in 0..copies {
        out.extend_from_slice(&jpeg[first.clone()]);
    }
    out.extend_from_slice(&jpeg[first.end..]);
    out
}

#[test]
fn progressive_jpeg_scans_are_capped() {
    let q = spec("w=64");
    // The real progressive photo has a handful of scans: the default lets it through.
    let photo = fixture("photo-1920-progressive.jpg");
    let n = u32::try_from(scan_ranges(&photo).len()).unwrap();
    assert!((2..=20).contains(&n), "{n} scans");
    let at = |max_jpeg_scans| Settings {
        max_jpeg_scans,
        ..Settings::default()
    };
    render(&photo, &q, OutputFormat::Jpeg, &at(n)).expect("exactly at the limit");
    let r = render(&photo, &q, OutputFormat::Jpeg, &at(n - 1));
    assert_eq!(error_code(r), "too-many-scans", "one over");

    // The bomb: one scan repeated 300 times, still a small file.
    let small = progressive_jpeg(128);
    render(&small, &q, OutputFormat::Jpeg, &Settings::default()).expect("valid base");
    let bomb = with_repeated_first_scan(&small, 300);
    assert_eq!(scan_ranges(&bomb).len(), scan_ranges(&small).len() + 300);
    let err = render(&bomb, &q, OutputFormat::Jpeg, &Settings::default()).unwrap_err();
    assert_eq!(err.code(), "too-many-scans", "{err}");
    assert!(err.is_client_error());
}

#[test]
fn animation_output_is_budgeted_before_the_work() {
    let gif = fixture("pan-anim.gif"); // 480×300, 8 frames
    let tight = Settings {
        max_output_pixels_total: 1_000_000,
        ..Settings::default()
    };
    // 8 × 480×300 = 1.15 MP: over a 1 MP budget, though every frame is small.
    let r = render(&gif, &spec("w=480"), OutputFormat::Gif, &tight);
    assert_eq!(error_code(r), "too-expensive");
    let r = render(&gif, &spec("w=240"), OutputFormat::Gif, &tight).unwrap();
    assert_eq!(r.frames, 8, "8 × 240×150 fits");
    // The pentest request: each frame is under max_pixels, all 8 are 392 MP.
    let q = spec("w=7000&h=7000&fit=fill&enlarge=1&format=gif");
    let err = render(&gif, &q, OutputFormat::Gif, &Settings::default()).unwrap_err();
    assert_eq!(err.code(), "too-expensive", "{err}");
    assert!(err.is_client_error());
}

/// A GIF89a with a `screen`-sized logical screen and one 1-pixel-of-data frame per entry
/// of `frames` (left, top, width, height); the rest of each frame is missing data.
fn gif(screen: (u16, u16), frames: &[(u16, u16, u16, u16)]) -> Vec<u8> {
    let mut v = b"GIF89a".to_vec();
    v.extend(screen.0.to_le_bytes());
    v.extend(screen.1.to_le_bytes());
    v.extend([0x80, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF]); // 2-colour global table
    for &(left, top, w, h) in frames {
        v.push(0x2C);
        for n in [left, top, w, h] {
            v.extend(n.to_le_bytes());
        }
        // No local table; LZW min code size 2; codes CLEAR, 0, EOI in 3 bits each.
        v.extend([0x00, 0x02, 0x02, 0x44, 0x01, 0x00]);
    }
    v.push(0x3B);
    v
}

#[test]
fn gif_frames_larger_than_their_screen_are_refused() {
    let s = Settings::default();
    let ok = gif((64, 64), &[(0, 0, 64, 64), (0, 0, 64, 64)]);
    assert_eq!(probe(&ok).unwrap().frames, 2);
    // 2000×2000 frames (16 MB each) on a 10×10 screen: refused before the allocation.
    let huge = gif((10, 10), &[(0, 0, 2000, 2000), (0, 0, 2000, 2000)]);
    for format in [OutputFormat::Gif, OutputFormat::Png] {
        let r = render(&huge, &spec("w=10"), format, &s);
        assert_eq!(error_code(r), "decode-memory-limit", "{format:?}");
    }
}

/// A lossy WebP of `w`×`h` made by libwebp: RIFF header, then one `VP8 ` chunk.
fn simple_webp(w: u32, h: u32) -> Vec<u8> {
    let rgb = vec![120u8; (w * h * 3) as usize];
    webp::Encoder::from_rgb(&rgb, w, h).encode(80.0).to_vec()
}

/// A RIFF WebP with a VP8X header (`flags`, canvas `w`×`h`) followed by `chunks`.
fn vp8x(flags: u8, (w, h): (u32, u32), chunks: &[u8]) -> Vec<u8> {
    let mut body = b"WEBPVP8X".to_vec();
    body.extend(10u32.to_le_bytes());
    body.extend([flags, 0, 0, 0]);
    body.extend(&(w - 1).to_le_bytes()[..3]);
    body.extend(&(h - 1).to_le_bytes()[..3]);
    body.extend(chunks);
    let mut out = b"RIFF".to_vec();
    out.extend(u32::try_from(body.len()).unwrap().to_le_bytes());
    out.extend(body);
    out
}

/// An ANMF chunk at (`x`, `y`) declaring `w`×`h` around a bitstream chunk.
fn anmf((x, y): (u32, u32), (w, h): (u32, u32), bitstream: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    for n in [x / 2, y / 2, w - 1, h - 1, 100] {
        payload.extend(&n.to_le_bytes()[..3]);
    }
    payload.push(0);
    payload.extend(bitstream);
    let mut chunk = b"ANMF".to_vec();
    chunk.extend(u32::try_from(payload.len()).unwrap().to_le_bytes());
    chunk.extend(payload);
    chunk
}

#[test]
fn webp_bitstreams_must_match_their_container() {
    let s = Settings::default();
    let vp8 = simple_webp(64, 64)[12..].to_vec(); // the `VP8 ` chunk
    let honest = vp8x(0, (64, 64), &vp8);
    assert_eq!(probe(&honest).unwrap().width, 64);
    let r = render(&honest, &spec("w=32"), OutputFormat::Png, &s).unwrap();
    assert_eq!((r.width, r.height), (32, 32), "a valid VP8X file");

    // A 16383×16383 bitstream in a 64×64 canvas: decoders allocate ~400 MB for the
    // bitstream's size before comparing it with the canvas.
    let mut big = vp8.clone();
    big[8 + 6..8 + 10].copy_from_slice(&[0xFF, 0x3F, 0xFF, 0x3F]);
    for src in [vp8x(0, (64, 64), &big), vp8x(0, (32, 32), &vp8)] {
        let err = probe(&src).unwrap_err();
        assert_eq!(err.code(), "corrupt-image", "{err}");
        assert!(err.to_string().contains("bitstream"), "{err}");
        assert_eq!(
            error_code(render(&src, &spec("w=32"), OutputFormat::Png, &s)),
            "corrupt-image"
        );
    }

    // Animations: each frame on the canvas, holding a bitstream of its declared size.
    let small = simple_webp(32, 32)[12..].to_vec();
    let animated = |frames: &[Vec<u8>]| vp8x(0x02, (64, 64), &frames.concat());
    let good = animated(&[
        anmf((0, 0), (64, 64), &vp8),
        anmf((32, 32), (32, 32), &small),
    ]);
    assert_eq!(probe(&good).unwrap().frames, 2);
    for (src, why) in [
        (animated(&[anmf((0, 0), (32, 32), &vp8)]), "bitstream"),
        (animated(&[anmf((0, 0), (64, 64), &big)]), "bitstream"),
        (animated(&[anmf((32, 0), (64, 64), &vp8)]), "canvas"),
    ] {
        let err = probe(&src).unwrap_err();
        assert_eq!(err.code(), "corrupt-image", "{err}");
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
}

#[test]
fn the_deadline_stops_renders() {
    let expired = Deadline::after(Duration::ZERO);
    let s = Settings::default();
    let q = spec("w=100");
    // Inside libjpeg: its message callback checks at the first marker it reads, so the
    // decode stops in `jpeg_read_header`, before the scale is even picked.
    let budget = jpeg::Budget {
        max_pixels: s.max_pixels,
        max_dim: s.max_input_dim,
        max_scans: s.max_jpeg_scans,
        deadline: expired,
    };
    let late = |_: &jpeg::Header| -> u8 { panic!("decoding went on past the deadline") };
    let err = jpeg::decode(&fixture("photo-1920-progressive.jpg"), &budget, late).err();
    assert_eq!(err.map(|e| e.code()), Some("render-timeout"));
    // Between the steps of the other decoders, and between GIF frames.
    for (name, format) in [
        ("photo-1920.jpg", OutputFormat::Jpeg),
        ("cat-alpha.png", OutputFormat::Png),
        ("pan-anim.gif", OutputFormat::Gif),
    ] {
        let err = render_until(&fixture(name), &q, format, &s, expired).unwrap_err();
        assert_eq!(err.code(), "render-timeout", "{name}");
        // A slow render is not proof of a hostile image: not a client error.
        assert!(!err.is_client_error());
        render_until(&fixture(name), &q, format, &s, later()).expect("in time");
    }
}

#[test]
fn new_settings_are_validated_by_name() {
    let cases = [
        (
            Settings {
                max_jpeg_scans: 0,
                ..Settings::default()
            },
            "max_jpeg_scans",
        ),
        (
            Settings {
                max_output_pixels_total: 0,
                ..Settings::default()
            },
            "max_output_pixels_total",
        ),
        (
            Settings {
                render_timeout_secs: 0,
                ..Settings::default()
            },
            "render_timeout_secs",
        ),
        (
            Settings {
                render_timeout_secs: 100_000,
                ..Settings::default()
            },
            "render_timeout_secs",
        ),
    ];
    for (settings, field) in cases {
        assert_eq!(settings.validate().unwrap_err().field, field);
    }
    let d = Settings::default();
    assert_eq!(
        (
            d.max_jpeg_scans,
            d.max_output_pixels_total,
            d.render_timeout_secs
        ),
        (100, 100_000_000, 10)
    );
    assert!(d.validate().is_ok());
}

// What each attack costs with and without its defence: one render each, wall time. A
// measurement, not a test (slow, and only meaningful in release), so it is compiled only
// with the `attack-cost` feature:
// `cargo test --release --features attack-cost --lib attack_cost -- --ignored --nocapture`.
// "Limits lifted" runs the same input with that limit off (what the old code did).
#[cfg(feature = "attack-cost")]
mod attack_cost;
