//! Writes the small image seeds of `fuzz/seeds/image/` from the real fixtures, re-encoded
//! by imgmirror's own pipeline at 48 px (JPEG baseline, PNG with alpha, GIF still and
//! animated, lossy WebP with and without alpha), so every decoder starts from a valid
//! file of its format that costs microseconds. Run once: `cargo run --bin make_seeds`
//! from `fuzz/`; the outputs are committed.
use imgmirror::transform::{self, OutputFormat, Settings, Spec};

fn main() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");
    let out = concat!(env!("CARGO_MANIFEST_DIR"), "/seeds/image");
    std::fs::create_dir_all(out).unwrap();
    let settings = Settings::default();
    let jobs = [
        ("photo-480.jpg", OutputFormat::Jpeg, "photo.jpg"),
        ("photo-480.jpg", OutputFormat::Webp, "photo.webp"),
        ("logo-alpha.png", OutputFormat::Png, "alpha.png"),
        ("logo-alpha.png", OutputFormat::Webp, "alpha.webp"),
        ("photo-480.jpg", OutputFormat::Gif, "still.gif"),
        ("tiny-anim.gif", OutputFormat::Gif, "anim.gif"),
        ("exif-orientation-6-gps.jpg", OutputFormat::Png, "rotated.png"),
    ];
    for (src, format, name) in jobs {
        let bytes = std::fs::read(format!("{fixtures}/{src}")).unwrap();
        let spec = Spec::from_query([("w", "48")], &settings).unwrap().unwrap();
        let rendered = transform::render(&bytes, &spec, format, &settings).unwrap();
        std::fs::write(format!("{out}/{name}"), &rendered.bytes).unwrap();
        println!("{name}: {} bytes", rendered.bytes.len());
    }
    // A progressive JPEG (imgmirror itself writes baseline): scans are where the scan cap
    // and libjpeg's coefficient buffers live.
    let gradient: Vec<u8> = (0..40u32 * 24)
        .flat_map(|i| [(i % 40 * 6) as u8, (i / 40 * 10) as u8, 128])
        .collect();
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    c.set_size(40, 24);
    c.set_progressive_mode();
    let mut started = c.start_compress(Vec::new()).unwrap();
    started.write_scanlines(&gradient).unwrap();
    let progressive = started.finish().unwrap();
    std::fs::write(format!("{out}/progressive.jpg"), &progressive).unwrap();
    println!("progressive.jpg: {} bytes", progressive.len());
}
