//! Unit tests of option parsing and canonical names (`spec.rs`).

use super::*;

fn parse(q: &str) -> Result<Option<Spec>, SpecError> {
    parse_with(q, &Settings::default())
}

fn parse_with(q: &str, s: &Settings) -> Result<Option<Spec>, SpecError> {
    let pairs: Vec<(&str, &str)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    Spec::from_query(pairs, s)
}

fn canon(q: &str) -> String {
    parse(q).unwrap().unwrap().canonical()
}

#[test]
fn no_options_means_original() {
    assert_eq!(parse(""), Ok(None));
}

#[test]
fn equivalent_spellings_share_a_canonical_string() {
    let groups: &[&[&str]] = &[
        &[
            "w=480",
            "w=0480",
            "w=240&dpr=2",
            "w=240&dpr=2.0",
            "dpr=2&w=240",
            "w=480&fit=cover",
            "w=480&format=auto",
            "w=480&enlarge=0",
        ],
        &[
            "w=480&h=319",
            "h=319&w=480",
            "fit=inside&w=480&h=319",
            "w=480&h=319&fit=INSIDE",
        ],
        &["w=480&format=jpg", "w=480&format=JPEG", "format=jpeg&w=480"],
        &[
            "w=100&bg=fff",
            "w=100&bg=%23fff",
            "w=100&bg=ffffff",
            "w=100&bg=FFFFFFFF",
            "w=100&bg=ffff",
        ],
        &["w=100&enlarge=1", "w=100&enlarge=true"],
    ];
    for group in groups {
        // "%23" stands for an already-decoded "#".
        let canons: Vec<String> = group
            .iter()
            .filter_map(|q| parse(&q.replace("%23", "#")).ok().flatten())
            .map(|s| s.canonical())
            .collect();
        assert_eq!(canons.len(), group.len(), "{group:?}");
        assert!(
            canons.windows(2).all(|w| w[0] == w[1]),
            "{group:?}: {canons:?}"
        );
    }
    assert_eq!(
        canon("w=480&h=319"),
        "bg=default&enlarge=0&fit=inside&format=auto&h=319&q=default&w=480"
    );
    assert_ne!(canon("w=480"), canon("w=481"));
    assert_ne!(canon("w=480&h=300&fit=cover"), canon("w=480&h=300"));
    assert_ne!(canon("w=480&q=80"), canon("w=480"));
}

#[test]
fn canonical_for_resolves_format_defaults() {
    let s = Settings::default();
    let auto = parse("w=480").unwrap().unwrap();
    let webp = parse("w=480&format=webp").unwrap().unwrap();
    let q_default = parse(&format!("w=480&q={}", s.webp_quality))
        .unwrap()
        .unwrap();
    let f = OutputFormat::Webp;
    assert_eq!(auto.canonical_for(f, &s), webp.canonical_for(f, &s));
    assert_eq!(auto.canonical_for(f, &s), q_default.canonical_for(f, &s));
    assert_ne!(
        auto.canonical_for(f, &s),
        auto.canonical_for(OutputFormat::Jpeg, &s)
    );
    // q means nothing for PNG.
    let q50 = parse("w=480&q=50").unwrap().unwrap();
    assert_eq!(
        q50.canonical_for(OutputFormat::Png, &s),
        auto.canonical_for(OutputFormat::Png, &s)
    );
    assert_eq!(
        auto.canonical_for(OutputFormat::Jpeg, &s),
        format!(
            "bg=ffffffff&enlarge=0&fit=inside&format=jpeg&h=-&q={}&w=480",
            s.jpeg_quality
        )
    );
}

#[test]
fn dpr_multiplies_both_sizes() {
    let s = parse("w=200&h=100&dpr=1.5").unwrap().unwrap();
    assert_eq!((s.width(), s.height()), (Some(300), Some(150)));
    let s = parse("h=100&dpr=4").unwrap().unwrap();
    assert_eq!((s.width(), s.height()), (None, Some(400)));
}

#[test]
fn bad_values_name_the_option() {
    let cases = [
        ("foo=1", "unknown-option", "unknown option \"foo\""),
        (
            "w=0",
            "bad-option",
            "w: must be an integer between 1 and 8192",
        ),
        (
            "w=8193",
            "bad-option",
            "w: must be an integer between 1 and 8192",
        ),
        (
            "w=-5",
            "bad-option",
            "w: must be an integer between 1 and 8192",
        ),
        (
            "w=12.5",
            "bad-option",
            "w: must be an integer between 1 and 8192",
        ),
        (
            "w=",
            "bad-option",
            "w: must be an integer between 1 and 8192",
        ),
        (
            "h=abc",
            "bad-option",
            "h: must be an integer between 1 and 8192",
        ),
        (
            "w=5000&dpr=2",
            "bad-option",
            "w: 5000 × dpr is 10000, above the limit of 8192",
        ),
        (
            "w=1&dpr=5",
            "bad-option",
            "dpr: must be a number between 1 and 4",
        ),
        (
            "w=1&dpr=0.5",
            "bad-option",
            "dpr: must be a number between 1 and 4",
        ),
        (
            "w=1&dpr=nan",
            "bad-option",
            "dpr: must be a number between 1 and 4",
        ),
        (
            "w=1&dpr=1e0",
            "bad-option",
            "dpr: must be a number between 1 and 4",
        ),
        (
            "q=0",
            "bad-option",
            "q: must be an integer between 1 and 100",
        ),
        (
            "q=101",
            "bad-option",
            "q: must be an integer between 1 and 100",
        ),
        (
            "fit=crop",
            "bad-option",
            "fit: must be one of inside, cover, contain, fill",
        ),
        ("enlarge=yes", "bad-option", "enlarge: must be 0 or 1"),
        (
            "format=bmp",
            "bad-option",
            "format: must be one of jpeg, png, webp, avif, gif, auto",
        ),
        (
            "bg=12345",
            "bad-option",
            "bg: must be a hex colour (rgb, rgba, rrggbb or rrggbbaa)",
        ),
        (
            "bg=ggg",
            "bad-option",
            "bg: must be a hex colour (rgb, rgba, rrggbb or rrggbbaa)",
        ),
        ("w=1&w=2", "bad-option", "w: given more than once"),
    ];
    // Without the `avif` feature AVIF is a known format this build does not write.
    #[cfg(not(feature = "avif"))]
    let cases = {
        let mut cases = cases.to_vec();
        cases.push((
            "format=avif",
            "format-not-enabled",
            "format: avif output not enabled",
        ));
        cases
    };
    for (q, code, msg) in cases {
        let err = parse(q).expect_err(q);
        assert_eq!((err.code(), err.to_string().as_str()), (code, msg), "{q}");
    }
}

#[test]
fn allowed_widths_restrict_device_width() {
    let s = Settings {
        allowed_widths: vec![320, 480, 960],
        ..Settings::default()
    };
    assert!(parse_with("w=480", &s).is_ok());
    assert!(parse_with("w=480&dpr=2", &s).is_ok());
    assert!(parse_with("h=100", &s).is_ok());
    let err = parse_with("w=500", &s).unwrap_err();
    assert_eq!(err.code(), "width-not-allowed");
    assert_eq!(
        err.to_string(),
        "w: 500 is not an allowed width (allowed: 320, 480, 960)"
    );
}

#[test]
fn colours() {
    assert_eq!(parse_colour("fff"), Ok(Rgba([255, 255, 255, 255])));
    assert_eq!(parse_colour("#0008"), Ok(Rgba([0, 0, 0, 0x88])));
    assert_eq!(parse_colour("ff000080"), Ok(Rgba([255, 0, 0, 0x80])));
    assert_eq!(parse_colour("transparent"), Ok(Rgba::TRANSPARENT));
    assert!(parse_colour("#ff00").is_ok());
    assert!(parse_colour("é").is_err());
}

#[test]
fn single_dimension_collapses_fit() {
    assert_eq!(parse("w=100&fit=fill").unwrap().unwrap().fit(), Fit::Inside);
    assert_eq!(
        parse("w=100&h=50&fit=fill").unwrap().unwrap().fit(),
        Fit::Fill
    );
}
