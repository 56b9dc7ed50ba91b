//! AVIF output: valid files (the `ftyp` brand and the dimensions, read by `imagesize`),
//! alpha kept, smaller than WebP for photos; when a client gets AVIF ([`wants_avif`]);
//! option parsing and variant naming; the background pool's low priority. Without the
//! `avif` feature: never offered, `format=avif` refused, rendering it unsupported.

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

const CHROME: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";

/// The brand in an ISO-BMFF `ftyp` box (bytes 8..12).
#[cfg(feature = "avif")]
fn major_brand(bytes: &[u8]) -> &[u8] {
    assert_eq!(&bytes[4..8], b"ftyp", "not an ISO-BMFF file");
    &bytes[8..12]
}

#[cfg(feature = "avif")]
#[test]
fn photos_become_valid_avif_of_the_asked_size_and_smaller_than_webp() {
    let settings = Settings::default();
    let src = fixture("photo-1920.jpg");
    let s = spec("w=480");
    let avif = render(&src, &s, OutputFormat::Avif, &settings).unwrap();
    assert_eq!(avif.format, OutputFormat::Avif);
    assert_eq!(major_brand(&avif.bytes), b"avif");
    let size = imagesize::blob_size(&avif.bytes).unwrap();
    assert_eq!((size.width, size.height), (480, 300));
    assert_eq!((avif.width, avif.height), (480, 300));
    assert!(matches!(
        imagesize::image_type(&avif.bytes).unwrap(),
        imagesize::ImageType::Heif(imagesize::Compression::Av1)
    ));
    let webp = render(&src, &s, OutputFormat::Webp, &settings).unwrap();
    assert!(
        avif.bytes.len() < webp.bytes.len(),
        "avif {} bytes, webp {}",
        avif.bytes.len(),
        webp.bytes.len()
    );
    // The upstream verifier (which also names files read back from disk) knows it.
    let info = crate::upstream::verify::verify(&avif.bytes).unwrap();
    assert_eq!(
        (info.media_type, info.width, info.height),
        ("image/avif", 480, 300)
    );
}

#[cfg(feature = "avif")]
#[test]
fn alpha_is_kept_and_quality_changes_the_bytes() {
    let settings = Settings::default();
    let src = fixture("cat-alpha.png");
    let a = render(&src, &spec("w=200"), OutputFormat::Avif, &settings).unwrap();
    assert_eq!(major_brand(&a.bytes), b"avif");
    let size = imagesize::blob_size(&a.bytes).unwrap();
    assert_eq!((size.width, size.height), (200, 133));
    // An alpha plane is an auxiliary image: its URN is in the file.
    let urn = b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha";
    assert!(
        a.bytes.windows(urn.len()).any(|w| w == urn),
        "no alpha plane"
    );
    let low = render(&src, &spec("w=200&q=20"), OutputFormat::Avif, &settings).unwrap();
    assert!(low.bytes.len() < a.bytes.len());
}

#[cfg(feature = "avif")]
#[test]
fn format_avif_parses_and_names_the_same_variant_as_auto_choosing_it() {
    let settings = Settings::default();
    assert_eq!(
        spec("w=480&format=avif").format(),
        FormatChoice::Fixed(OutputFormat::Avif)
    );
    let auto = spec("w=480");
    assert_eq!(
        auto.canonical_for(OutputFormat::Avif, &settings),
        spec("w=480&format=avif").canonical_for(OutputFormat::Avif, &settings)
    );
    assert_eq!(
        auto.with_format(OutputFormat::Avif),
        spec("w=480&format=avif")
    );
    assert_eq!(settings.quality_for(OutputFormat::Avif, None), Some(60));
    assert_eq!(settings.quality_for(OutputFormat::Avif, Some(40)), Some(40));
    assert!(
        auto.canonical_for(OutputFormat::Avif, &settings)
            .contains("format=avif&h=-&q=60")
    );
}

#[cfg(feature = "avif")]
#[test]
fn avif_is_wanted_only_by_clients_that_list_it_for_format_auto() {
    let on = Settings::default();
    let off = Settings {
        avif_background: false,
        ..Settings::default()
    };
    let jpeg = probe(&fixture("photo-1920.jpg")).unwrap();
    let gif = probe(&fixture("pan-anim.gif")).unwrap();
    let png = probe(&fixture("cat-alpha.png")).unwrap();
    let cases = [
        ("w=480", Some(CHROME), &jpeg, &on, true),
        ("w=480", Some("image/avif"), &png, &on, true),
        ("w=480", Some("IMAGE/AVIF;q=0.9"), &jpeg, &on, true),
        ("w=480", Some("image/avif;q=0"), &jpeg, &on, false),
        ("w=480", Some("image/webp,*/*"), &jpeg, &on, false),
        ("w=480", Some("image/*,*/*"), &jpeg, &on, false),
        ("w=480", None, &jpeg, &on, false),
        // Explicit formats are never swapped.
        ("w=480&format=webp", Some(CHROME), &jpeg, &on, false),
        ("w=480&format=avif", Some(CHROME), &jpeg, &on, false),
        // Animations stay GIF.
        ("w=480", Some(CHROME), &gif, &on, false),
        ("w=480", Some(CHROME), &jpeg, &off, false),
    ];
    for (query, accept, probe, settings, want) in cases {
        assert_eq!(
            wants_avif(&spec(query), accept, probe, settings),
            want,
            "{query} {accept:?}"
        );
    }
    // negotiate itself never picks AVIF: that is the background's decision.
    let n = negotiate(&spec("w=480"), Some("image/avif"), &jpeg, &on);
    assert_eq!(n.format, OutputFormat::Jpeg);
}

#[cfg(not(feature = "avif"))]
#[test]
fn without_the_feature_avif_is_never_offered_nor_rendered() {
    let settings = Settings::default();
    let jpeg = probe(&fixture("photo-1920.jpg")).unwrap();
    const { assert!(!AVIF_ENABLED) };
    assert!(!wants_avif(&spec("w=480"), Some(CHROME), &jpeg, &settings));
    let pairs = [("w", "480"), ("format", "avif")];
    let err = Spec::from_query(pairs, &settings).unwrap_err();
    assert_eq!(err.code(), "format-not-enabled");
    let err = render(
        &fixture("photo-1920.jpg"),
        &spec("w=480"),
        OutputFormat::Avif,
        &settings,
    )
    .unwrap_err();
    assert_eq!(err.code(), "unsupported-format");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_background_pool_runs_at_nice_19_and_the_foreground_pool_does_not() {
    let settings = Settings {
        avif_background_nice: 19,
        ..Settings::default()
    };
    // SAFETY: reads the calling thread's nice value.
    let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
    let background = Pool::background(1, 4, &settings);
    assert_eq!(background.workers(), 1);
    let bg = background.run(nice).await.unwrap();
    let fg = Pool::from_settings(&settings).run(nice).await.unwrap();
    assert_eq!(bg, 19);
    assert!(fg < 19, "foreground nice {fg}");
}
