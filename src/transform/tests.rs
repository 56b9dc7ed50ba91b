//! End-to-end tests of the transform module on the real fixtures in `tests/fixtures/`:
//! output sizes per fit mode, dpr and no-enlarge; negotiation and `Vary`; alpha flattening
//! and preservation; EXIF orientation; metadata stripping; animated GIFs; bombs and broken
//! files; ICC conversion; and a quality threshold against an independent reference resize.

use image::{AnimationDecoder, DynamicImage, GenericImageView};

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn spec(query: &str) -> Spec {
    spec_with(query, &Settings::default())
}

fn spec_with(query: &str, settings: &Settings) -> Spec {
    let pairs: Vec<(&str, &str)> = query
        .split('&')
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    Spec::from_query(pairs, settings).unwrap().unwrap()
}

fn render_fixture(name: &str, query: &str, format: OutputFormat) -> Rendered {
    render(&fixture(name), &spec(query), format, &Settings::default())
        .unwrap_or_else(|e| panic!("{name} {query}: {e}"))
}

fn decode(r: &Rendered) -> DynamicImage {
    image::load_from_memory(&r.bytes).expect("output decodes")
}

#[test]
fn output_sizes_per_fit_mode_dpr_and_no_enlarge() {
    // (fixture, query, expected width × height)
    let cases = [
        ("photo-1920.jpg", "w=480", (480, 300)),
        ("photo-1920.jpg", "h=300", (480, 300)),
        ("photo-1920.jpg", "w=480&h=319", (480, 300)),
        ("photo-1920.jpg", "w=480&h=319&fit=cover", (480, 319)),
        ("photo-1920.jpg", "w=480&h=319&fit=contain", (480, 319)),
        ("photo-1920.jpg", "w=480&h=319&fit=fill", (480, 319)),
        ("photo-1920.jpg", "w=200&h=200&fit=cover", (200, 200)),
        ("photo-1920.jpg", "w=240&h=160&dpr=2&fit=cover", (480, 320)),
        ("photo-1920.jpg", "w=160&dpr=3", (480, 300)),
        ("photo-1920-progressive.jpg", "w=640", (640, 400)),
        ("photo-4000.jpg", "w=480", (480, 300)),
        ("photo-2560-orig.jpg", "w=1000", (1000, 625)),
        ("astronaut-512.jpg", "w=100&h=50&fit=fill", (100, 50)),
        // Never enlarged without enlarge=1 …
        ("photo-480.jpg", "w=1000", (480, 319)),
        ("photo-480.jpg", "w=1000&h=1000&fit=cover", (319, 319)),
        // … unless asked.
        ("photo-480.jpg", "w=960&enlarge=1", (960, 638)),
        ("cat-alpha.png", "w=200", (200, 133)),
        ("logo-alpha.png", "w=120&h=60&fit=contain", (120, 60)),
    ];
    for (i, (name, query, (w, h))) in cases.into_iter().enumerate() {
        // Every case as JPEG; every third also as WebP (debug-mode libwebp is slow).
        let formats: &[OutputFormat] = if i % 3 == 0 {
            &[OutputFormat::Jpeg, OutputFormat::Webp]
        } else {
            &[OutputFormat::Jpeg]
        };
        for &format in formats {
            let r = render_fixture(name, query, format);
            assert_eq!((r.width, r.height), (w, h), "{name} {query} {format:?}");
            // The header of the encoded file says the same (full decodes are elsewhere).
            let p = probe(&r.bytes).unwrap();
            assert_eq!(
                (p.width, p.height),
                (w, h),
                "{name} {query} {format:?} header"
            );
            let expected = match format {
                OutputFormat::Jpeg => SourceFormat::Jpeg,
                _ => SourceFormat::Webp,
            };
            assert_eq!(p.format, expected);
        }
    }
    // One full decode per output format.
    for format in [OutputFormat::Jpeg, OutputFormat::Webp, OutputFormat::Png] {
        let r = render_fixture("photo-1920.jpg", "w=480&h=319&fit=cover", format);
        assert_eq!(decode(&r).dimensions(), (480, 319), "{format:?}");
    }
}

#[test]
fn no_size_reencodes_at_source_size() {
    let r = render_fixture("photo-480.jpg", "format=webp", OutputFormat::Webp);
    assert_eq!((r.width, r.height), (480, 319));
}

#[test]
fn negotiation_and_vary() {
    let s = Settings::default();
    let jpeg = probe(&fixture("photo-1920.jpg")).unwrap();
    let png = probe(&fixture("cat-alpha.png")).unwrap();
    let gif = probe(&fixture("pan-anim.gif")).unwrap();
    let chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
    let old = "image/png,image/*;q=0.8,*/*;q=0.5";
    let cases = [
        ("w=480", Some(chrome), &jpeg, OutputFormat::Webp, true),
        ("w=480", Some(old), &jpeg, OutputFormat::Jpeg, true),
        ("w=480", None, &jpeg, OutputFormat::Jpeg, true),
        ("w=480", Some("*/*"), &png, OutputFormat::Png, true),
        (
            "w=480",
            Some("image/webp;q=0"),
            &png,
            OutputFormat::Png,
            true,
        ),
        ("w=480", Some("image/WebP"), &png, OutputFormat::Webp, true),
        ("w=480", Some(chrome), &gif, OutputFormat::Gif, false),
        (
            "w=480&format=jpeg",
            Some(chrome),
            &png,
            OutputFormat::Jpeg,
            false,
        ),
        ("w=480&format=png", None, &jpeg, OutputFormat::Png, false),
    ];
    for (query, accept, probe, format, vary_accept) in cases {
        let n = negotiate(&spec(query), accept, probe, &s);
        assert_eq!(
            n,
            Negotiated {
                format,
                vary_accept
            },
            "{query} {accept:?} {:?}",
            probe.format
        );
    }
    // An animated GIF over the frame limit is rendered still, so it negotiates like a still.
    let few = Settings {
        max_frames: 4,
        ..Settings::default()
    };
    let n = negotiate(&spec("w=480"), Some(chrome), &gif, &few);
    assert_eq!(
        n,
        Negotiated {
            format: OutputFormat::Webp,
            vary_accept: true
        }
    );
}

#[test]
fn alpha_to_jpeg_is_flattened_onto_white() {
    // cat-alpha.png is transparent in its corners (a soft elliptical cut-out).
    let src = image::load_from_memory(&fixture("cat-alpha.png"))
        .unwrap()
        .to_rgba8();
    assert_eq!(src.get_pixel(0, 0)[3], 0, "fixture corner is transparent");
    let r = render_fixture("cat-alpha.png", "w=200", OutputFormat::Jpeg);
    let out = decode(&r).to_rgb8();
    for (x, y) in [(0, 0), (199, 0), (0, 132), (199, 132)] {
        let p = out.get_pixel(x, y).0;
        assert!(
            p.iter().all(|&c| c >= 240),
            "corner ({x},{y}) = {p:?}, expected white"
        );
    }
    // An explicit background is used instead.
    let r = render_fixture("cat-alpha.png", "w=200&bg=ff0000", OutputFormat::Jpeg);
    let p = decode(&r).to_rgb8().get_pixel(0, 0).0;
    assert!(p[0] > 230 && p[1] < 30 && p[2] < 30, "{p:?}");
    // Padding for JPEG is white by default too.
    let r = render_fixture(
        "photo-1920.jpg",
        "w=300&h=300&fit=contain",
        OutputFormat::Jpeg,
    );
    let p = decode(&r).to_rgb8().get_pixel(150, 2).0;
    assert!(p.iter().all(|&c| c >= 240), "padding {p:?}");
}

#[test]
fn alpha_is_kept_for_png_and_webp() {
    for format in [OutputFormat::Png, OutputFormat::Webp] {
        let r = render_fixture("cat-alpha.png", "w=200", format);
        let out = decode(&r);
        assert!(out.color().has_alpha(), "{format:?}");
        let out = out.to_rgba8();
        assert_eq!(
            out.get_pixel(0, 0)[3],
            0,
            "{format:?} corner stays transparent"
        );
        assert_eq!(
            out.get_pixel(100, 66)[3],
            255,
            "{format:?} centre stays opaque"
        );
    }
    // contain pads with transparency by default.
    let r = render_fixture(
        "photo-1920.jpg",
        "w=300&h=300&fit=contain",
        OutputFormat::Png,
    );
    let out = decode(&r).to_rgba8();
    assert_eq!(out.get_pixel(150, 2)[3], 0);
    assert_eq!(out.get_pixel(150, 150)[3], 255);
}

#[test]
fn exif_orientation_6_comes_out_upright_and_metadata_is_stripped() {
    let src = fixture("exif-orientation-6-gps.jpg");
    let p = probe(&src).unwrap();
    assert_eq!((p.width, p.height), (319, 480), "stored sideways");
    for (query, (w, h)) in [
        ("w=480", (480, 319)),
        ("w=240", (240, 160)),
        ("h=100&w=1000", (150, 100)),
    ] {
        for format in [OutputFormat::Jpeg, OutputFormat::Png, OutputFormat::Webp] {
            let r = render(&src, &spec(query), format, &Settings::default()).unwrap();
            assert_eq!((r.width, r.height), (w, h), "{query} {format:?}");
            let img = decode(&r).to_rgb8();
            // The red block marks the upright picture's top-left corner.
            let tl = img.get_pixel(2, 2).0;
            let tr = img.get_pixel(w - 3, 2).0;
            let bl = img.get_pixel(2, h - 3).0;
            assert!(
                tl[0] > 200 && tl[1] < 70 && tl[2] < 70,
                "{query} {format:?} top-left {tl:?}"
            );
            assert!(
                !(tr[0] > 200 && tr[1] < 70),
                "{query} {format:?} top-right {tr:?}"
            );
            assert!(
                !(bl[0] > 200 && bl[1] < 70),
                "{query} {format:?} bottom-left {bl:?}"
            );
            // No EXIF (incl. GPS), no comment, no XMP: re-encoded from pixels only.
            let bytes = &r.bytes;
            for needle in [
                &b"Exif"[..],
                b"imgmirror-test-camera",
                b"secret comment",
                b"http://ns.adobe.com/xap",
            ] {
                assert!(
                    !contains(bytes, needle),
                    "{query} {format:?} leaks {:?}",
                    String::from_utf8_lossy(needle)
                );
            }
            if format == OutputFormat::Jpeg {
                assert!(!has_jpeg_marker(bytes, 0xE1), "APP1 present");
                assert!(!has_jpeg_marker(bytes, 0xFE), "COM present");
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Walks a JPEG's header segments looking for `marker`.
fn has_jpeg_marker(jpeg: &[u8], marker: u8) -> bool {
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF {
        let m = jpeg[at + 1];
        if m == marker {
            return true;
        }
        if m == 0xDA {
            return false;
        }
        at += 2 + usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
    }
    false
}

#[test]
fn animated_gif_stays_animated() {
    let src = fixture("pan-anim.gif");
    let r = render(
        &src,
        &spec("w=240"),
        OutputFormat::Gif,
        &Settings::default(),
    )
    .unwrap();
    assert_eq!((r.width, r.height, r.frames), (240, 150, 8));
    let p = probe(&r.bytes).unwrap();
    assert_eq!(
        (p.format, p.width, p.height, p.frames),
        (SourceFormat::Gif, 240, 150, 8)
    );
    let delays = |bytes: &[u8]| -> Vec<image::Delay> {
        let dec = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes)).unwrap();
        dec.into_frames().map(|f| f.unwrap().delay()).collect()
    };
    assert_eq!(delays(&r.bytes), delays(&src));
    let loops =
        |bytes: &[u8]| match image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes))
            .unwrap()
            .loop_count()
        {
            image::metadata::LoopCount::Infinite => 0,
            image::metadata::LoopCount::Finite(n) => n.get(),
        };
    assert_eq!(loops(&r.bytes), loops(&src));
    // Frames really moved: a panning animation's first and last frames differ.
    let dec = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(&r.bytes)).unwrap();
    let frames: Vec<_> = dec
        .into_frames()
        .map(|f| f.unwrap().into_buffer())
        .collect();
    assert_ne!(frames[0], frames[7]);
    assert_eq!(frames[0].dimensions(), (240, 150));

    // A real-world edge case: tiny frames with offsets and transparency.
    let tiny = render_fixture("tiny-anim.gif", "w=28&enlarge=1", OutputFormat::Gif);
    assert_eq!((tiny.width, tiny.height, tiny.frames), (28, 50, 24));
    assert_eq!(probe(&tiny.bytes).unwrap().frames, 24);
}

#[test]
fn animated_gif_over_frame_limit_gives_the_first_frame() {
    let s = Settings {
        max_frames: 4,
        ..Settings::default()
    };
    let r = render(
        &fixture("pan-anim.gif"),
        &spec("w=240"),
        OutputFormat::Gif,
        &s,
    )
    .unwrap();
    assert_eq!((r.width, r.height, r.frames), (240, 150, 1));
    assert_eq!(probe(&r.bytes).unwrap().frames, 1);
    // Non-GIF output of an animation is its first frame.
    let r = render_fixture("pan-anim.gif", "w=240", OutputFormat::Webp);
    assert_eq!((r.width, r.height, r.frames), (240, 150, 1));
}

#[test]
fn pixel_bombs_are_refused_from_the_header() {
    for name in ["bomb-50000.png", "bomb-50000.jpg"] {
        let src = fixture(name);
        assert!(src.len() < 1000, "{name} is tiny");
        let p = probe(&src).unwrap();
        assert_eq!((p.width, p.height), (50000, 50000), "{name}");
        for format in [OutputFormat::Jpeg, OutputFormat::Png] {
            let err = render(&src, &spec("w=100"), format, &Settings::default()).unwrap_err();
            assert_eq!(err.code(), "too-many-pixels", "{name}: {err}");
            assert!(err.is_client_error());
        }
    }
    // A lower pixel limit applies to real photos too, and a side limit on its own.
    let s = Settings {
        max_pixels: 1_000_000,
        ..Settings::default()
    };
    let err = render(
        &fixture("photo-1920.jpg"),
        &spec("w=100"),
        OutputFormat::Jpeg,
        &s,
    )
    .unwrap_err();
    assert_eq!(err.code(), "too-many-pixels");
    let s = Settings {
        max_input_dim: 1000,
        ..Settings::default()
    };
    let err = render(
        &fixture("photo-1080.jpg"),
        &spec("w=100"),
        OutputFormat::Jpeg,
        &s,
    )
    .unwrap_err();
    assert_eq!(err.code(), "image-too-large");
    // Output bombs: enlarge + contain can't ask for more than max_pixels either.
    let err = render(
        &fixture("photo-480.jpg"),
        &spec("w=8192&h=8192&fit=contain"),
        OutputFormat::Png,
        &Settings::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "too-many-pixels");
}

#[test]
fn broken_files_are_corrupt_not_panics() {
    let s = Settings::default();
    let q = spec("w=100");
    let truncated = fixture("truncated-1080.jpg");
    let err = render(&truncated, &q, OutputFormat::Jpeg, &s).unwrap_err();
    assert_eq!(err.code(), "corrupt-image", "{err}");
    assert!(err.is_client_error());

    // Damage inside the entropy-coded data, EOI intact.
    let mut damaged = fixture("photo-1080.jpg");
    let mid = damaged.len() / 2;
    for b in &mut damaged[mid..mid + 2000] {
        *b = 0xA5;
    }
    let err = render(&damaged, &q, OutputFormat::Jpeg, &s).unwrap_err();
    assert_eq!(err.code(), "corrupt-image", "{err}");

    // Every prefix of the other formats: an error (or, for GIF, fewer frames), never a panic.
    for name in [
        "cat-alpha.png",
        "pan-anim.gif",
        "photo-480.jpg",
        "photo-1920-progressive.jpg",
    ] {
        let src = fixture(name);
        for cut in [10, 30, 100, 1000, src.len() / 3, src.len() - 1] {
            if let Err(e) = render(&src[..cut], &q, OutputFormat::Png, &s) {
                assert!(e.is_client_error(), "{name}[..{cut}]: {e}");
            }
        }
    }
    let png = fixture("cat-alpha.png");
    let err = render(&png[..png.len() / 2], &q, OutputFormat::Png, &s).unwrap_err();
    assert_eq!(err.code(), "corrupt-image", "{err}");

    let err = render(b"GIF89a garbage", &q, OutputFormat::Png, &s).unwrap_err();
    assert!(err.is_client_error(), "{err}");
    let err = render(
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        &q,
        OutputFormat::Png,
        &s,
    )
    .unwrap_err();
    assert_eq!(err.code(), "unsupported-format");
}

#[test]
fn embedded_icc_profile_is_converted_to_srgb() {
    use moxcms::{ColorProfile, Layout, TransformOptions};
    // A flat 64×64 JPEG in Adobe RGB, made here: mozjpeg writes the profile as APP2.
    let colour = [60u8, 160, 90];
    let rgb: Vec<u8> = colour.iter().copied().cycle().take(64 * 64 * 3).collect();
    let adobe = ColorProfile::new_adobe_rgb();
    let icc = adobe.encode().unwrap();
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    c.set_size(64, 64);
    c.set_quality(100.0);
    let mut started = c.start_compress(Vec::new()).unwrap();
    started.write_icc_profile(&icc);
    started.write_scanlines(&rgb).unwrap();
    let jpeg = started.finish().unwrap();

    // What a colour-managed viewer shows for that pixel, in sRGB.
    let transform = adobe
        .create_transform_8bit(
            Layout::Rgb,
            &ColorProfile::new_srgb(),
            Layout::Rgb,
            TransformOptions::default(),
        )
        .unwrap();
    let mut expected = [0u8; 3];
    transform.transform(&colour, &mut expected).unwrap();
    assert!(
        expected[0].abs_diff(colour[0]) > 10,
        "the test colour must change: {expected:?}"
    );

    let r = render(
        &jpeg,
        &spec("w=32"),
        OutputFormat::Png,
        &Settings::default(),
    )
    .unwrap();
    let px = decode(&r).to_rgb8().get_pixel(16, 16).0;
    for i in 0..3 {
        assert!(
            px[i].abs_diff(expected[i]) <= 4,
            "got {px:?}, expected ≈ {expected:?}"
        );
    }
    assert!(
        !contains(&r.bytes, b"iCCP"),
        "no profile in the output: it is sRGB"
    );
}

/// Mean SSIM over 8×8 windows of the luma (BT.601), plus PSNR of the luma.
fn ssim_psnr(a: &image::RgbImage, b: &image::RgbImage) -> (f64, f64) {
    assert_eq!(a.dimensions(), b.dimensions());
    let luma = |img: &image::RgbImage| -> Vec<f64> {
        img.pixels()
            .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
            .collect()
    };
    let (ya, yb) = (luma(a), luma(b));
    let (w, h) = (a.width() as usize, a.height() as usize);
    let mse = ya
        .iter()
        .zip(&yb)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        / ya.len() as f64;
    let psnr = 10.0 * (255.0f64.powi(2) / mse.max(1e-9)).log10();
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let mut total = 0.0;
    let mut n = 0.0;
    for by in (0..h - 7).step_by(4) {
        for bx in (0..w - 7).step_by(4) {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for y in by..by + 8 {
                for x in bx..bx + 8 {
                    let (p, q) = (ya[y * w + x], yb[y * w + x]);
                    sa += p;
                    sb += q;
                    saa += p * p;
                    sbb += q * q;
                    sab += p * q;
                }
            }
            let (ma, mb) = (sa / 64.0, sb / 64.0);
            let (va, vb, cov) = (
                saa / 64.0 - ma * ma,
                sbb / 64.0 - mb * mb,
                sab / 64.0 - ma * mb,
            );
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            n += 1.0;
        }
    }
    (total / n, psnr)
}

/// Stated quality thresholds against a reference made by a different path: `image`'s own
/// JPEG decoder (zune-jpeg, full size) and `image::imageops` Lanczos3, lossless in memory.
/// Our output goes through shrink-on-load, fast_image_resize and a q85 JPEG encode.
/// Default settings (`fast_jpeg_shrink`, Pillow-like): measured 0.955 / 33.4 dB for
/// 1920→480, 0.970 / 36.0 dB for 4000→480.
const MIN_SSIM: f64 = 0.95;
const MIN_PSNR_DB: f64 = 32.0;
/// `fast_jpeg_shrink = false` (libvips-like 2× margin): measured 0.970 / 36.0 dB for both.
const MIN_SSIM_PRECISE: f64 = 0.965;
const MIN_PSNR_DB_PRECISE: f64 = 35.0;

#[test]
fn quality_against_a_reference_resize() {
    for (name, query, (w, h)) in [
        ("photo-1920.jpg", "w=480&q=85", (480, 300)),
        ("photo-4000.jpg", "w=480&q=85", (480, 300)),
        (
            "photo-2560-orig.jpg",
            "w=800&h=800&fit=cover&q=85",
            (800, 800),
        ),
    ] {
        let src = fixture(name);
        let full = image::load_from_memory(&src).unwrap();
        let reference = match query.contains("cover") {
            true => {
                let s = full.height().min(full.width());
                let x = (full.width() - s) / 2;
                full.crop_imm(x, 0, s, s)
                    .resize_exact(w, h, image::imageops::FilterType::Lanczos3)
            }
            false => full.resize_exact(w, h, image::imageops::FilterType::Lanczos3),
        }
        .to_rgb8();
        let precise = Settings {
            fast_jpeg_shrink: false,
            ..Settings::default()
        };
        let r = render(&src, &spec(query), OutputFormat::Jpeg, &precise).unwrap();
        let (ssim, psnr) = ssim_psnr(&decode(&r).to_rgb8(), &reference);
        assert!(
            ssim >= MIN_SSIM_PRECISE && psnr >= MIN_PSNR_DB_PRECISE,
            "{name} {query} precise: SSIM {ssim:.4}, PSNR {psnr:.2} dB"
        );
        let r = render(&src, &spec(query), OutputFormat::Jpeg, &Settings::default()).unwrap();
        let ours = decode(&r).to_rgb8();
        let (ssim, psnr) = ssim_psnr(&ours, &reference);
        assert!(
            ssim >= MIN_SSIM && psnr >= MIN_PSNR_DB,
            "{name} {query}: SSIM {ssim:.4}, PSNR {psnr:.2} dB"
        );
        // And the comparison is not vacuous: a misaligned image scores far lower.
        let shifted = image::imageops::crop_imm(&reference, 3, 0, w - 3, h).to_image();
        let ours_cut = image::imageops::crop_imm(&ours, 0, 0, w - 3, h).to_image();
        let (bad_ssim, _) = ssim_psnr(&ours_cut, &shifted);
        assert!(
            bad_ssim < ssim - 0.05,
            "{name}: shifted {bad_ssim:.4} vs {ssim:.4}"
        );
    }
}

#[test]
fn webp_output_is_lossy_and_small() {
    let r = render_fixture("photo-1920.jpg", "w=480", OutputFormat::Webp);
    assert_eq!(&r.bytes[12..16], b"VP8 ", "lossy VP8, not VP8L");
    let jpeg = render_fixture("photo-1920.jpg", "w=480", OutputFormat::Jpeg);
    assert!(
        r.bytes.len() < jpeg.bytes.len() * 2,
        "webp {} vs jpeg {}",
        r.bytes.len(),
        jpeg.bytes.len()
    );
    // Quality changes the output.
    let low = render_fixture("photo-1920.jpg", "w=480&q=20", OutputFormat::Webp);
    assert!(low.bytes.len() < r.bytes.len());
}

#[test]
fn canonical_strings_name_variants() {
    let s = Settings::default();
    let a = spec("w=240&dpr=2&format=auto");
    let b = spec("format=webp&w=480&q=80");
    assert_eq!(
        a.canonical_for(OutputFormat::Webp, &s),
        b.canonical_for(OutputFormat::Webp, &s)
    );
    assert_ne!(a.canonical(), b.canonical());
    assert_eq!(OutputFormat::Webp.media_type(), "image/webp");
    assert_eq!(OutputFormat::Jpeg.extension(), "jpg");
}
