//! Image transforms: option parsing and canonical names ([`Spec`]), format negotiation
//! ([`negotiate`]), header probing ([`probe`]), decode → resize → encode under limits
//! ([`render`]) and the bounded pool that keeps that CPU work off the async runtime
//! ([`Pool`]).
//!
//! It knows nothing of HTTP, disk, caching or URLs: it takes bytes and options and gives
//! bytes or a typed error whose [`code`](TransformError::code) the server maps to a status.
//! Everything here except [`Pool::run`] is blocking, pure CPU work.
//!
//! Libraries, chosen by measurement (see `benches/RESULTS.md`): JPEG is decoded by mozjpeg
//! (libjpeg-turbo) with DCT scaling, so a 1920 px photo bound for 480 px is decoded at
//! 1/4 size ("shrink-on-load"), and encoded by mozjpeg's fastest (libjpeg-turbo) settings;
//! PNG, GIF and WebP are decoded by the pure-Rust decoders of `image`; resizing is
//! `fast_image_resize` (Lanczos3, AVX2); lossy WebP is libwebp through the `webp` crate;
//! PNG and GIF output are `image`'s encoders; AVIF is ravif (rav1e, pure Rust, one thread)
//! when the `avif` cargo feature is on ([`AVIF_ENABLED`]), else `format=avif` is a 400.
//! [`negotiate`] never picks AVIF: it costs tens of milliseconds per image, so whether a
//! client that accepts it gets it ([`wants_avif`]) is the service layer's decision, which
//! renders it in the background.
//!
//! Colour: an embedded ICC profile is converted to sRGB (moxcms) and the output carries no
//! profile, so browsers show it as sRGB. Metadata (EXIF including GPS, XMP, comments, ICC)
//! is never copied: every output is re-encoded from pixels.
//!
//! Peak memory per render: the header limits bound the decoded source to `max_pixels`
//! pixels × 4 bytes (RGBA8; 16-bit PNGs briefly 8 bytes), i.e. 200 MB at the default 50 MP,
//! plus the output buffers. JPEGs bound for a small size decode at 1/2 to 1/8 scale, so a
//! 4000×2500 photo for 480 px needs 500×313×3 bytes instead of 30 MB. Progressive JPEGs
//! also hold their DCT coefficients (about 3 bytes per source pixel). Animated GIFs are
//! decoded one frame at a time.
//!
//! CPU per render is bounded by what the image may ask for: source pixels, JPEG scans
//! (`max_jpeg_scans`), output frames × pixels (`max_output_pixels_total`), and a deadline
//! (`render_timeout_secs`). The deadline cancels cooperatively: the JPEG decoder (libjpeg's
//! message callback, per marker and scan, and every 32 rows), the GIF frame loop and the
//! steps of the pipeline check it and fail with `render-timeout`. Inside `image`'s PNG, GIF
//! and WebP decoders, the resizer and the encoders nothing checks it: such a step runs to
//! its end. For that, [`Pool::from_settings`] stops waiting a second after the deadline,
//! answers `PoolError::Timeout` and replaces the worker; the old thread finishes and exits.

#[cfg(feature = "avif")]
mod avif;
mod deadline;
mod geometry;
mod jpeg;
mod limits;
mod pipeline;
mod pool;
mod probe;
mod spec;
mod thumb;

pub use pool::{Pool, PoolError};
pub use probe::{Probe, SourceFormat, probe};
pub use spec::{Fit, FormatChoice, Rgba, Spec, SpecError};
pub use thumb::{Thumbnail, thumbnail_rgba, tiny_png};

/// Longest accepted `render_timeout_secs`: a day. Larger values are surely a unit mistake
/// (milliseconds), and `Instant + Duration` must not overflow.
const MAX_RENDER_TIMEOUT_SECS: u64 = 86_400;

/// Limits and defaults for transforms: plain data, and the `[transform]` section of the
/// config file as it is (each field is a key there).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Largest output width in device pixels (`w × dpr`). Default 8192.
    pub max_width: u32,
    /// Largest output height in device pixels (`h × dpr`). Default 8192.
    pub max_height: u32,
    /// Largest source pixel area (width × height of one frame) that will be decoded.
    /// Checked from the header before any pixel buffer exists. Default 50_000_000.
    pub max_pixels: u64,
    /// Largest source width or height. Default 20_000.
    pub max_input_dim: u32,
    /// Most frames an animated GIF may have and still be rendered animated; above it the
    /// output is the first frame, as a still image. Default 100.
    pub max_frames: u32,
    /// If not empty, the only output widths (device pixels, after `dpr`) accepted, like
    /// Next.js's `imageSizes`, so strangers can't mint unbounded variants. Heights are not
    /// restricted. Default: empty (any width up to `max_width`).
    pub allowed_widths: Vec<u32>,
    /// JPEG quality when `q` is not given. Default 80.
    pub jpeg_quality: u8,
    /// WebP quality when `q` is not given. Default 80.
    pub webp_quality: u8,
    /// JPEG shrink-on-load policy. true: decode at the smallest DCT scale (1/4, 1/2) that
    /// is at least the output size, as Pillow's `draft` does; false: keep a 2× margin for
    /// the Lanczos step, as libvips does. false scores SSIM 0.970 against a Lanczos
    /// reference where true scores 0.955 (1920→480), and costs ~1.5 ms more per image.
    /// Default true.
    pub fast_jpeg_shrink: bool,
    /// Render workers: threads in the [`Pool`]. 0 = number of cores. Default 0.
    pub workers: usize,
    /// Renders that may wait for a worker; beyond that the pool answers `Overloaded`.
    /// Default 64.
    pub queue: usize,
    /// Most scans a JPEG may have (like libjpeg-turbo's `djpeg -maxscans`): each scan of a
    /// progressive JPEG is a pass over every block of its component, so a small file with
    /// thousands of scans costs seconds of CPU under every size limit. Encoders write 1 scan
    /// (baseline) or about 10 (progressive; mozjpeg's optimised scripts up to ~20); counted
    /// by the decoder, refused as `too-many-scans`. Default 100.
    pub max_jpeg_scans: u32,
    /// Largest output work of one render: frames × output pixels (the canvas). Bounds
    /// animated GIF output, where `w=7000&h=7000&enlarge=1` on a small animation would be
    /// dozens of 49 MP frames; checked before decoding, refused as `too-expensive`.
    /// Default 100_000_000 (e.g. 100 frames of 1000×1000).
    pub max_output_pixels_total: u64,
    /// Deadline of one render, in seconds. Decoding checks it as it goes (between JPEG
    /// markers and scans, rows and GIF frames, and between the pipeline's steps) and fails
    /// with `render-timeout`; a pool built by [`Pool::from_settings`] also stops waiting for
    /// a job a second past it and replaces that worker. Default 10.
    pub render_timeout_secs: u64,
    /// AVIF quality when `q` is not given (ravif's 1–100 scale; 60 is about WebP 80 to
    /// the eye, see README "AVIF"). Default 60.
    pub avif_quality: u8,
    /// rav1e speed preset, 1 (slowest, smallest) to 10 (fastest). 10 ≈ 60 ms for a
    /// 480×320 image on one core, 9 ≈ 2.7× that for ~8 % fewer bytes. Default 10.
    pub avif_speed: u8,
    /// Offer AVIF to clients whose `Accept` lists `image/avif` (with `format=auto`): they
    /// get the AVIF rendition once it exists, and until then the WebP/JPEG one with a short
    /// max-age while the AVIF is rendered in the background. false: only `format=avif`
    /// gives AVIF. No effect without the `avif` cargo feature. Default true.
    pub avif_background: bool,
    /// Background AVIF renders that may wait (deduplicated by variant); when full, further
    /// ones are dropped (the next request asks again). Default 64.
    pub avif_background_queue: usize,
    /// Nice value (0–19) of the background AVIF thread: higher yields more CPU to the
    /// foreground, but on a machine saturated by other processes a high value can starve
    /// the background for as long as the load lasts. Default 10 (about a tenth of a
    /// core's share against one normal thread).
    pub avif_background_nice: u8,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_width: 8192,
            max_height: 8192,
            max_pixels: 50_000_000,
            max_input_dim: 20_000,
            max_frames: 100,
            allowed_widths: Vec::new(),
            jpeg_quality: 80,
            webp_quality: 80,
            fast_jpeg_shrink: true,
            workers: 0,
            queue: 64,
            max_jpeg_scans: 100,
            max_output_pixels_total: 100_000_000,
            render_timeout_secs: 10,
            avif_quality: 60,
            avif_speed: 10,
            avif_background: true,
            avif_background_queue: 64,
            avif_background_nice: 10,
        }
    }
}

/// A setting that can't be used; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SettingsError {
    pub field: &'static str,
    pub reason: String,
}

impl Settings {
    /// Rejects unusable values by field name (never clamps silently).
    pub fn validate(&self) -> Result<(), SettingsError> {
        let err = |field, reason: &str| {
            Err(SettingsError {
                field,
                reason: reason.to_owned(),
            })
        };
        for (field, q) in [
            ("jpeg_quality", self.jpeg_quality),
            ("webp_quality", self.webp_quality),
            ("avif_quality", self.avif_quality),
        ] {
            if !(1..=100).contains(&q) {
                return err(field, "must be between 1 and 100");
            }
        }
        if self.max_width == 0 || self.max_height == 0 || self.max_input_dim == 0 {
            return err("max_width", "sizes must be at least 1");
        }
        if self.max_pixels == 0 {
            return err("max_pixels", "must be at least 1");
        }
        if !(1..=10).contains(&self.avif_speed) {
            return err("avif_speed", "must be between 1 and 10");
        }
        if self.avif_background_nice > 19 {
            return err("avif_background_nice", "must be between 0 and 19");
        }
        if self.avif_background_queue == 0 {
            return err("avif_background_queue", "must be at least 1");
        }
        if self.max_frames == 0 {
            return err("max_frames", "must be at least 1");
        }
        if self.max_jpeg_scans == 0 {
            return err("max_jpeg_scans", "must be at least 1");
        }
        if self.max_output_pixels_total == 0 {
            return err("max_output_pixels_total", "must be at least 1");
        }
        if !(1..=MAX_RENDER_TIMEOUT_SECS).contains(&self.render_timeout_secs) {
            return Err(SettingsError {
                field: "render_timeout_secs",
                reason: format!("must be between 1 and {MAX_RENDER_TIMEOUT_SECS}"),
            });
        }
        if let Some(w) = self
            .allowed_widths
            .iter()
            .find(|w| **w == 0 || **w > self.max_width)
        {
            return Err(SettingsError {
                field: "allowed_widths",
                reason: format!("{w} is outside 1..={}", self.max_width),
            });
        }
        Ok(())
    }

    /// Effective quality for `format`: the explicit `q`, else the per-format default;
    /// `None` for lossless formats (PNG, GIF), where `q` has no effect.
    pub fn quality_for(&self, format: OutputFormat, explicit: Option<u8>) -> Option<u8> {
        match format {
            OutputFormat::Jpeg => Some(explicit.unwrap_or(self.jpeg_quality)),
            OutputFormat::Webp => Some(explicit.unwrap_or(self.webp_quality)),
            OutputFormat::Avif => Some(explicit.unwrap_or(self.avif_quality)),
            OutputFormat::Png | OutputFormat::Gif => None,
        }
    }

    /// The render deadline as a duration.
    pub fn render_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.render_timeout_secs)
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
    /// Only produced with the `avif` cargo feature; without it, rendering it is an
    /// `Unsupported` error and nothing offers it.
    Avif,
}

/// Whether this build writes AVIF (the `avif` cargo feature).
pub const AVIF_ENABLED: bool = cfg!(feature = "avif");

impl OutputFormat {
    pub fn media_type(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Png => "image/png",
            OutputFormat::Webp => "image/webp",
            OutputFormat::Gif => "image/gif",
            OutputFormat::Avif => "image/avif",
        }
    }

    /// File extension without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Png => "png",
            OutputFormat::Webp => "webp",
            OutputFormat::Gif => "gif",
            OutputFormat::Avif => "avif",
        }
    }

    /// The name used in the `format` option and in canonical strings.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpeg",
            OutputFormat::Png => "png",
            OutputFormat::Webp => "webp",
            OutputFormat::Gif => "gif",
            OutputFormat::Avif => "avif",
        }
    }

    pub fn supports_alpha(self) -> bool {
        !matches!(self, OutputFormat::Jpeg)
    }
}

/// The outcome of [`negotiate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub format: OutputFormat,
    /// True iff the choice depended on `Accept`: the response must carry `Vary: Accept`.
    pub vary_accept: bool,
}

/// Picks the output format. An explicit `format` wins and does not vary. For `auto`: WebP if
/// accepted, else the source's family: GIF stays GIF
/// when it will be rendered animated; images with alpha get PNG; PNG stays PNG; other
/// photos get JPEG. An animated GIF under `auto` is GIF whatever the `Accept`, so it does not
/// vary; every other `auto` choice does.
pub fn negotiate(
    spec: &Spec,
    accept: Option<&str>,
    probe: &Probe,
    settings: &Settings,
) -> Negotiated {
    if let FormatChoice::Fixed(format) = spec.format() {
        return Negotiated {
            format,
            vary_accept: false,
        };
    }
    if probe.format == SourceFormat::Gif && renders_animated(probe, settings) {
        return Negotiated {
            format: OutputFormat::Gif,
            vary_accept: false,
        };
    }
    let accepts = |media: &str| accept.is_some_and(|a| accepts_media_type(a, media));
    let format = if accepts("image/webp") {
        OutputFormat::Webp
    } else if probe.has_alpha || matches!(probe.format, SourceFormat::Png | SourceFormat::Gif) {
        OutputFormat::Png
    } else {
        OutputFormat::Jpeg
    };
    Negotiated {
        format,
        vary_accept: true,
    }
}

/// Whether a client sending `accept` should get the AVIF rendition of `spec` (once it
/// exists): only with `format=auto`, the `avif` feature and `avif_background` on, an
/// `Accept` that lists `image/avif` explicitly, and a source that is not kept animated.
pub fn wants_avif(spec: &Spec, accept: Option<&str>, probe: &Probe, settings: &Settings) -> bool {
    AVIF_ENABLED
        && settings.avif_background
        && spec.format() == FormatChoice::Auto
        && !(probe.format == SourceFormat::Gif && renders_animated(probe, settings))
        && accept.is_some_and(|a| accepts_media_type(a, "image/avif"))
}

/// Whether a source will be rendered as an animation (if the output format is GIF).
pub(crate) fn renders_animated(probe: &Probe, settings: &Settings) -> bool {
    probe.format == SourceFormat::Gif && probe.frames > 1 && probe.frames <= settings.max_frames
}

/// True if the `Accept` header lists `media` explicitly with a non-zero q. Wildcards
/// (`image/*`, `*/*`) don't count: clients send them without supporting newer formats.
fn accepts_media_type(accept: &str, media: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let ty = parts.next().unwrap_or("").trim();
        if !ty.eq_ignore_ascii_case(media) {
            return false;
        }
        // q=0 means "not acceptable" (RFC 9110 §12.4.2).
        !parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .or_else(|| p.strip_prefix("Q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        })
    })
}

/// An encoded output image.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub format: OutputFormat,
    pub width: u32,
    pub height: u32,
    /// Frames in the output (1 unless an animation was kept).
    pub frames: u32,
}

/// Decodes, orients, resizes and re-encodes `src` per `spec` into `format`.
///
/// Blocking, pure CPU work: never call it on the async runtime (use [`Pool::run`]). Limits
/// are checked from the header before any pixel buffer is allocated, and the decoders run
/// with `image`'s memory limits.
pub fn render(
    src: &[u8],
    spec: &Spec,
    format: OutputFormat,
    settings: &Settings,
) -> Result<Rendered, TransformError> {
    pipeline::render(src, spec, format, settings)
}

/// Why a render failed. [`code`](TransformError::code) is stable and kebab-case;
/// [`is_client_error`](TransformError::is_client_error) says whose fault it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// The header declares more pixels than `max_pixels` (decompression-bomb guard).
    #[error("image is {width}x{height}, more than the limit of {max} pixels")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    /// A side is longer than `max_input_dim`.
    #[error("image is {width}x{height}, a side is longer than the limit of {max} pixels")]
    TooLarge { width: u32, height: u32, max: u32 },
    /// A JPEG has more scans than `max_jpeg_scans` (a CPU bomb: each scan is a full pass).
    #[error("jpeg has more than {max} scans")]
    TooManyScans { max: u32 },
    /// The output would cost more than `max_output_pixels_total` (frames × pixels).
    #[error(
        "output would be {frames} frame(s) of {width}x{height}, more than the limit of {max} pixels in total"
    )]
    TooExpensive {
        frames: u32,
        width: u32,
        height: u32,
        max: u64,
    },
    /// The render ran past `render_timeout_secs` and was abandoned. Not the requester's
    /// fault alone (a loaded machine renders slower), so not a client error.
    #[error("render took longer than {secs} s and was abandoned")]
    Timeout { secs: u64 },
    /// A decoder needed more memory than its limit allows (the header understated it).
    #[error("decoding needs more memory than allowed: {0}")]
    MemoryLimit(String),
    /// Truncated or malformed data.
    #[error("corrupt image: {0}")]
    Corrupt(String),
    /// Not a format imgmirror decodes (or a variant of one it doesn't, like 12-bit JPEG).
    #[error("unsupported image format: {0}")]
    Unsupported(String),
    /// An encoder failed on valid pixels: our fault.
    #[error("encoding {format} failed: {reason}")]
    Encode {
        format: &'static str,
        reason: String,
    },
    /// Any other internal failure (a bug).
    #[error("internal transform error: {0}")]
    Internal(String),
}

impl TransformError {
    /// Stable kebab-case code for responses, logs and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            TransformError::TooManyPixels { .. } => "too-many-pixels",
            TransformError::TooLarge { .. } => "image-too-large",
            TransformError::TooManyScans { .. } => "too-many-scans",
            TransformError::TooExpensive { .. } => "too-expensive",
            TransformError::Timeout { .. } => "render-timeout",
            TransformError::MemoryLimit(_) => "decode-memory-limit",
            TransformError::Corrupt(_) => "corrupt-image",
            TransformError::Unsupported(_) => "unsupported-format",
            TransformError::Encode { .. } => "encode-failed",
            TransformError::Internal(_) => "internal",
        }
    }

    /// True when the image (i.e. the requester's choice of it) is at fault: a 4xx.
    /// `Corrupt` and `Unsupported` are 422-like; the size limits are 4xx too.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            TransformError::TooManyPixels { .. }
                | TransformError::TooLarge { .. }
                | TransformError::TooManyScans { .. }
                | TransformError::TooExpensive { .. }
                | TransformError::MemoryLimit(_)
                | TransformError::Corrupt(_)
                | TransformError::Unsupported(_)
        )
    }
}

#[cfg(test)]
mod avif_tests;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
