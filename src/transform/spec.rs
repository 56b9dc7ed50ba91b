//! Transform options: parsing, validation and canonicalisation of the query options
//! (`w`, `h`, `dpr`, `fit`, `enlarge`, `q`, `format`, `bg`) into a [`Spec`].
//!
//! Owns the option grammar, the error messages that name the offending option, the
//! `allowed_widths` restriction, and the canonical strings that name variants. It does
//! not know the source image (see `probe`) nor the client's `Accept` (see `negotiate`),
//! so anything that depends on them is resolved later, in [`Spec::canonical_for`].

use std::fmt::Write as _;

use super::{OutputFormat, Settings};

/// How the picture is fitted into a box given by both `w` and `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fit {
    /// Keep the aspect ratio; the result fits within w×h (default).
    #[default]
    Inside,
    /// Keep the aspect ratio; fill w×h exactly, cropping the overflow around the centre.
    Cover,
    /// Keep the aspect ratio; fit inside and pad to w×h with the background colour.
    Contain,
    /// Stretch to w×h exactly, ignoring the aspect ratio.
    Fill,
}

impl Fit {
    pub fn as_str(self) -> &'static str {
        match self {
            Fit::Inside => "inside",
            Fit::Cover => "cover",
            Fit::Contain => "contain",
            Fit::Fill => "fill",
        }
    }
}

/// The requested output format: a fixed one, or `auto` (negotiated from `Accept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FormatChoice {
    #[default]
    Auto,
    Fixed(OutputFormat),
}

/// A straight (not premultiplied) sRGB colour with alpha.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rgba(pub [u8; 4]);

impl Rgba {
    pub const WHITE: Rgba = Rgba([255, 255, 255, 255]);
    pub const TRANSPARENT: Rgba = Rgba([0, 0, 0, 0]);

    /// Lowercase `rrggbbaa`.
    pub fn to_hex(self) -> String {
        let [r, g, b, a] = self.0;
        format!("{r:02x}{g:02x}{b:02x}{a:02x}")
    }
}

/// Parsed, validated transform options. Sizes are device pixels: `dpr` is already folded in,
/// so `w=240&dpr=2` and `w=480` are the same `Spec`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Spec {
    pub(crate) width: Option<u32>,
    pub(crate) height: Option<u32>,
    pub(crate) fit: Fit,
    pub(crate) enlarge: bool,
    pub(crate) quality: Option<u8>,
    pub(crate) format: FormatChoice,
    pub(crate) background: Option<Rgba>,
}

/// A query option that can't be turned into a [`Spec`]. Every variant is the client's fault
/// (HTTP 400); the message names the option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("unknown option {0:?}")]
    UnknownOption(String),
    #[error("{option}: {reason}")]
    BadValue {
        option: &'static str,
        reason: String,
    },
    #[error("w: {width} is not an allowed width (allowed: {allowed})")]
    WidthNotAllowed { width: u32, allowed: String },
    #[error("format: {0} output not enabled")]
    FormatNotEnabled(&'static str),
}

impl SpecError {
    /// Stable kebab-case code for responses, logs and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            SpecError::UnknownOption(_) => "unknown-option",
            SpecError::BadValue { .. } => "bad-option",
            SpecError::WidthNotAllowed { .. } => "width-not-allowed",
            SpecError::FormatNotEnabled(_) => "format-not-enabled",
        }
    }

    fn bad(option: &'static str, reason: impl Into<String>) -> SpecError {
        SpecError::BadValue {
            option,
            reason: reason.into(),
        }
    }
}

fn check_allowed_width(width: u32, settings: &Settings) -> Result<(), SpecError> {
    if settings.allowed_widths.is_empty() || settings.allowed_widths.contains(&width) {
        return Ok(());
    }
    let mut allowed = String::new();
    for (i, a) in settings.allowed_widths.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(allowed, "{sep}{a}");
    }
    Err(SpecError::WidthNotAllowed { width, allowed })
}

fn parse_fit(v: &str) -> Result<Fit, SpecError> {
    match v.to_ascii_lowercase().as_str() {
        "inside" => Ok(Fit::Inside),
        "cover" => Ok(Fit::Cover),
        "contain" => Ok(Fit::Contain),
        "fill" => Ok(Fit::Fill),
        _ => Err(SpecError::bad(
            "fit",
            "must be one of inside, cover, contain, fill",
        )),
    }
}

fn parse_format(v: &str) -> Result<FormatChoice, SpecError> {
    match v.to_ascii_lowercase().as_str() {
        "auto" => Ok(FormatChoice::Auto),
        "jpeg" | "jpg" => Ok(FormatChoice::Fixed(OutputFormat::Jpeg)),
        "png" => Ok(FormatChoice::Fixed(OutputFormat::Png)),
        "webp" => Ok(FormatChoice::Fixed(OutputFormat::Webp)),
        "gif" => Ok(FormatChoice::Fixed(OutputFormat::Gif)),
        "avif" if super::AVIF_ENABLED => Ok(FormatChoice::Fixed(OutputFormat::Avif)),
        // Named apart so a client learns it is a known format this build does not write.
        "avif" => Err(SpecError::FormatNotEnabled("avif")),
        _ => Err(SpecError::bad(
            "format",
            "must be one of jpeg, png, webp, avif, gif, auto",
        )),
    }
}

/// The option names this module understands, in canonical (sorted) order.
pub const OPTIONS: [&str; 8] = ["bg", "dpr", "enlarge", "fit", "format", "h", "q", "w"];

impl Spec {
    /// `pairs` = the query's options other than `url` (already percent-decoded).
    /// `Ok(None)` when no transform option is present: serve the original.
    pub fn from_query<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        settings: &Settings,
    ) -> Result<Option<Spec>, SpecError> {
        let mut raw: [Option<&str>; OPTIONS.len()] = [None; OPTIONS.len()];
        for (name, value) in pairs {
            let Some(i) = OPTIONS.iter().position(|o| *o == name) else {
                // Cap the echoed name: it ends up in a response body and in logs.
                let shown: String = name.chars().take(40).collect();
                return Err(SpecError::UnknownOption(shown));
            };
            if raw[i].is_some() {
                return Err(SpecError::bad(OPTIONS[i], "given more than once"));
            }
            raw[i] = Some(value);
        }
        if raw.iter().all(Option::is_none) {
            return Ok(None);
        }
        let [bg, dpr, enlarge, fit, format, h, q, w] = raw;

        let dpr = match dpr {
            None => 1.0,
            Some(v) => parse_dpr(v)?,
        };
        let width = w
            .map(|v| parse_dim("w", v, settings.max_width, dpr))
            .transpose()?;
        let height = h
            .map(|v| parse_dim("h", v, settings.max_height, dpr))
            .transpose()?;
        if let Some(width) = width {
            check_allowed_width(width, settings)?;
        }
        let mut fit = fit.map_or(Ok(Fit::Inside), parse_fit)?;
        // With fewer than two sizes every fit mode means "keep the aspect ratio", so they
        // collapse to one variant.
        if width.is_none() || height.is_none() {
            fit = Fit::Inside;
        }
        let enlarge = match enlarge {
            None => false,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => return Err(SpecError::bad("enlarge", "must be 0 or 1")),
            },
        };
        let quality = q
            .map(|v| match parse_uint(v) {
                Some(n @ 1..=100) => Ok(n as u8),
                _ => Err(SpecError::bad("q", "must be an integer between 1 and 100")),
            })
            .transpose()?;
        let format = format.map_or(Ok(FormatChoice::Auto), parse_format)?;
        let background = bg.map(parse_colour).transpose()?;
        Ok(Some(Spec {
            width,
            height,
            fit,
            enlarge,
            quality,
            format,
            background,
        }))
    }

    /// Canonical string of the request as parsed: sorted keys, every key present, defaults
    /// filled, `dpr` folded into `w`/`h`, equivalent spellings collapsed. Equal specs ⇒
    /// equal strings. It keeps `format=auto`; to name a rendered variant prefer
    /// [`Spec::canonical_for`], which also resolves the format-dependent defaults.
    pub fn canonical(&self) -> String {
        let bg = match self.background {
            Some(c) => c.to_hex(),
            None => "default".to_owned(),
        };
        let format = match self.format {
            FormatChoice::Auto => "auto",
            FormatChoice::Fixed(f) => f.as_str(),
        };
        let q = match self.quality {
            Some(q) => q.to_string(),
            None => "default".to_owned(),
        };
        self.join(&bg, format, &q)
    }

    /// Canonical string of what [`render`](super::render) will produce for `format`: like
    /// [`Spec::canonical`], but with the output format written in and the quality and
    /// background resolved for it (so `format=auto` that chose WebP and `format=webp` give
    /// the same string, as do an explicit `q` equal to the default and no `q`). Options that
    /// do not affect the output for that format are dropped (`q` for PNG/GIF; `bg` unless
    /// padding or flattening onto it can happen).
    pub fn canonical_for(&self, format: OutputFormat, settings: &Settings) -> String {
        let q = match settings.quality_for(format, self.quality) {
            Some(q) => q.to_string(),
            None => "-".to_owned(),
        };
        let bg = if self.fit == Fit::Contain || format == OutputFormat::Jpeg {
            self.background_for(format).to_hex()
        } else {
            "-".to_owned()
        };
        self.join(&bg, format.as_str(), &q)
    }

    fn join(&self, bg: &str, format: &str, q: &str) -> String {
        let dim = |d: Option<u32>| d.map_or_else(|| "-".to_owned(), |d| d.to_string());
        format!(
            "bg={bg}&enlarge={}&fit={}&format={format}&h={}&q={q}&w={}",
            u8::from(self.enlarge),
            self.fit.as_str(),
            dim(self.height),
            dim(self.width)
        )
    }

    /// Target width in device pixels (`w × dpr`), if given.
    pub fn width(&self) -> Option<u32> {
        self.width
    }

    /// Target height in device pixels (`h × dpr`), if given.
    pub fn height(&self) -> Option<u32> {
        self.height
    }

    pub fn fit(&self) -> Fit {
        self.fit
    }

    pub fn enlarge(&self) -> bool {
        self.enlarge
    }

    pub fn format(&self) -> FormatChoice {
        self.format
    }

    /// This spec with the output format fixed to `format` (its canonical name for that
    /// format is the same as for `auto` choosing it, so both name one variant).
    pub fn with_format(&self, format: OutputFormat) -> Spec {
        Spec {
            format: FormatChoice::Fixed(format),
            ..self.clone()
        }
    }

    /// The explicit `q`, if any; see [`Settings::quality_for`] for the effective one.
    pub fn quality(&self) -> Option<u8> {
        self.quality
    }

    /// The colour to pad (`fit=contain`) and to flatten alpha onto: the explicit `bg`, else
    /// white for JPEG (flattening onto black is the classic bug) and transparent otherwise.
    pub fn background_for(&self, format: OutputFormat) -> Rgba {
        match (self.background, format) {
            (Some(c), _) => c,
            (None, OutputFormat::Jpeg) => Rgba::WHITE,
            (None, _) => Rgba::TRANSPARENT,
        }
    }

    /// True when the spec changes the geometry (a size was given).
    pub fn has_size(&self) -> bool {
        self.width.is_some() || self.height.is_some()
    }
}

/// Digits only: no sign, no spaces, no exponent, at most 9 digits so it fits a u32.
fn parse_uint(v: &str) -> Option<u32> {
    if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn parse_dpr(v: &str) -> Result<f64, SpecError> {
    let bad = || SpecError::bad("dpr", "must be a number between 1 and 4");
    // Plain decimal only ("2", "1.5"): refuses "nan", "inf", "1e0" and friends.
    let (int, frac) = v.split_once('.').unwrap_or((v, "0"));
    let digits = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) {
        return Err(bad());
    }
    let dpr: f64 = v.parse().map_err(|_| bad())?;
    if !(1.0..=4.0).contains(&dpr) {
        return Err(bad());
    }
    Ok(dpr)
}

fn parse_dim(option: &'static str, v: &str, max: u32, dpr: f64) -> Result<u32, SpecError> {
    let css = match parse_uint(v) {
        Some(n) if n >= 1 && n <= max => n,
        _ => {
            return Err(SpecError::bad(
                option,
                format!("must be an integer between 1 and {max}"),
            ));
        }
    };
    let px = (f64::from(css) * dpr).round();
    if px > f64::from(max) {
        return Err(SpecError::bad(
            option,
            format!("{css} × dpr is {px}, above the limit of {max}"),
        ));
    }
    // In range 1..=max by the checks above, so the cast is exact.
    Ok(px as u32)
}

/// `rgb`, `rgba`, `rrggbb` or `rrggbbaa`, optionally prefixed with `#`, or `transparent`.
fn parse_colour(v: &str) -> Result<Rgba, SpecError> {
    let bad = || SpecError::bad("bg", "must be a hex colour (rgb, rgba, rrggbb or rrggbbaa)");
    let lower = v.to_ascii_lowercase();
    if lower == "transparent" {
        return Ok(Rgba::TRANSPARENT);
    }
    let hex = lower.strip_prefix('#').unwrap_or(&lower);
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let nibble = |i: usize| u8::from_str_radix(&hex[i..=i], 16).map_err(|_| bad());
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
    match hex.len() {
        3 | 4 => {
            let mut c = [255u8; 4];
            for (i, slot) in c.iter_mut().enumerate().take(hex.len()) {
                *slot = nibble(i)? * 17;
            }
            Ok(Rgba(c))
        }
        6 | 8 => {
            let mut c = [255u8; 4];
            for (i, slot) in c.iter_mut().enumerate().take(hex.len() / 2) {
                *slot = byte(i * 2)?;
            }
            Ok(Rgba(c))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
