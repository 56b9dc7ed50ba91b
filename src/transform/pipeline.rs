//! The render pipeline: limits → decode (shrink-on-load for JPEG) → orient → resize/crop →
//! sRGB → pad → flatten → encode, plus the animated-GIF variant of it.
//!
//! Owns the pixel plumbing between codecs (RGB8/RGBA8 buffers), the order of the steps and
//! why (orientation before geometry, colour conversion on the small image, flattening only
//! for JPEG). It does not parse options (`spec`), compute sizes (`geometry`) or talk to
//! libjpeg directly (`jpeg`).
//!
//! Limits are checked three times, each where it is cheapest and trustworthy: from the
//! probe (before anything is decoded), on the size each decoder itself read (before it
//! allocates: the probe and a decoder can disagree), and on the output (one frame against
//! `max_pixels`, all frames against `max_output_pixels_total`) before the work starts. The
//! deadline is checked between steps and GIF frames, and inside the JPEG decoder.

use std::io::Cursor;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::metadata::{LoopCount, Orientation};
use image::{
    AnimationDecoder, DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageError,
    ImageFormat, ImageReader, RgbaImage,
};

use super::deadline::Deadline;
use super::geometry::{self, Plan};
use super::limits::{check_dimensions, check_output, check_source, gif_limits, limits};
use super::probe::{SourceFormat, jpeg_is_complete};
use super::spec::{Fit, Rgba};
use super::{
    OutputFormat, Probe, Rendered, Settings, Spec, TransformError, jpeg, probe, renders_animated,
};

/// 8-bit sRGB pixels, 3 (RGB) or 4 (RGBA, straight alpha) channels.
#[derive(Debug, Clone)]
pub(crate) struct Pixels {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
    pub alpha: bool,
}

impl Pixels {
    fn channels(&self) -> usize {
        if self.alpha { 4 } else { 3 }
    }

    fn from_dynamic(img: DynamicImage) -> Pixels {
        let (width, height) = (img.width(), img.height());
        if img.color().has_alpha() {
            Pixels {
                width,
                height,
                data: img.into_rgba8().into_raw(),
                alpha: true,
            }
        } else {
            Pixels {
                width,
                height,
                data: img.into_rgb8().into_raw(),
                alpha: false,
            }
        }
    }
}

/// A decoded source, oriented upright, with the plan computed from its full-size dimensions.
pub(super) struct Source {
    pixels: Pixels,
    plan: Plan,
    icc: Option<Vec<u8>>,
}

/// GIF quantiser speed (1 = best, 30 = fastest). 10 is NeuQuant's usual trade-off; speed 1
/// (image's default) takes ~10× longer per frame for little visible gain.
const GIF_SPEED: i32 = 10;

/// libwebp effort (0–6). 4 is libwebp's and libvips's default.
const WEBP_METHOD: i32 = 4;

pub(crate) fn render(
    src: &[u8],
    spec: &Spec,
    format: OutputFormat,
    settings: &Settings,
) -> Result<Rendered, TransformError> {
    render_until(
        src,
        spec,
        format,
        settings,
        Deadline::after(settings.render_timeout()),
    )
}

/// [`render`] with an explicit deadline (tests use short ones).
pub(super) fn render_until(
    src: &[u8],
    spec: &Spec,
    format: OutputFormat,
    settings: &Settings,
    deadline: Deadline,
) -> Result<Rendered, TransformError> {
    let probe = probe(src)?;
    check_source(&probe, settings)?;
    if format == OutputFormat::Gif && renders_animated(&probe, settings) {
        return render_animated_gif(src, &probe, spec, settings, deadline);
    }
    let Source { pixels, plan, icc } = decode(src, &probe, spec, settings, deadline)?;
    check_output(plan.canvas, 1, settings)?;
    deadline.check()?;
    let mut pixels = resize(pixels, &plan)?;
    if let Some(icc) = icc {
        to_srgb(&mut pixels, &icc);
    }
    let bg = match format {
        // JPEG has no alpha: whatever bg was asked for is seen over white.
        OutputFormat::Jpeg => over(spec.background_for(format), Rgba::WHITE),
        _ => spec.background_for(format),
    };
    if spec.fit == Fit::Contain {
        pixels = pad(pixels, plan.canvas, bg);
    }
    if format == OutputFormat::Jpeg {
        pixels = flatten(pixels, bg);
    }
    let pixels = drop_opaque_alpha(pixels);
    let quality = settings.quality_for(format, spec.quality).unwrap_or(100);
    deadline.check()?;
    let bytes = encode(&pixels, format, quality, settings)?;
    Ok(Rendered {
        bytes,
        format,
        width: pixels.width,
        height: pixels.height,
        frames: 1,
    })
}

fn image_error(format: &str, e: ImageError) -> TransformError {
    match e {
        ImageError::Limits(l) => TransformError::MemoryLimit(l.to_string()),
        ImageError::Unsupported(u) => TransformError::Unsupported(format!("{format}: {u}")),
        ImageError::Encoding(e) => TransformError::Encode {
            format: "image",
            reason: e.to_string(),
        },
        ImageError::Parameter(e) => TransformError::Internal(e.to_string()),
        other => TransformError::Corrupt(format!("{format}: {other}")),
    }
}

pub(super) fn decode(
    src: &[u8],
    probe: &Probe,
    spec: &Spec,
    settings: &Settings,
    deadline: Deadline,
) -> Result<Source, TransformError> {
    // CMYK/YCCK give None: libjpeg can't make RGB of them; image's decoder (zune-jpeg) can.
    if probe.format == SourceFormat::Jpeg
        && let Some(source) = decode_jpeg(src, spec, settings, deadline)?
    {
        return Ok(source);
    }
    let format = match probe.format {
        SourceFormat::Jpeg => ImageFormat::Jpeg,
        SourceFormat::Png => ImageFormat::Png,
        SourceFormat::Gif => ImageFormat::Gif,
        SourceFormat::Webp => ImageFormat::WebP,
    };
    let name = probe.format.as_str();
    let mut reader = ImageReader::with_format(Cursor::new(src), format);
    reader.limits(match probe.format {
        SourceFormat::Gif => gif_limits(settings, (probe.width, probe.height)),
        _ => limits(settings),
    });
    let mut decoder = reader.into_decoder().map_err(|e| image_error(name, e))?;
    // The decoder's own idea of the size, before `from_decoder` allocates for it: `Limits`
    // bound the sides and the bytes, this also bounds the area, as for JPEG.
    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, settings)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    // A profile we can't read is ignored, as browsers do: the pixels are taken as sRGB.
    let icc = decoder.icc_profile().ok().flatten();
    // For GIF and animated WebP this is the first frame.
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| image_error(name, e))?;
    img.apply_orientation(orientation);
    let plan = geometry::plan(img.width(), img.height(), spec);
    Ok(Source {
        pixels: Pixels::from_dynamic(img),
        plan,
        icc,
    })
}

/// JPEG through libjpeg with shrink-on-load; `None` for CMYK/YCCK. The plan is computed
/// from the size libjpeg read (after it passed the limits in `jpeg::decode`).
fn decode_jpeg(
    src: &[u8],
    spec: &Spec,
    settings: &Settings,
    deadline: Deadline,
) -> Result<Option<Source>, TransformError> {
    if !jpeg_is_complete(src) {
        return Err(TransformError::Corrupt(
            "jpeg: truncated (no end-of-image marker after the scan)".into(),
        ));
    }
    let budget = jpeg::Budget {
        max_pixels: settings.max_pixels,
        max_dim: settings.max_input_dim,
        max_scans: settings.max_jpeg_scans,
        deadline,
    };
    let mut plan = None;
    let decoded = jpeg::decode(src, &budget, |h| {
        let swaps = swaps_axes(h.orientation);
        let (ow, oh) = if swaps {
            (h.height, h.width)
        } else {
            (h.width, h.height)
        };
        let p = geometry::plan(ow, oh, spec);
        let need = if swaps {
            (p.min_decode.1, p.min_decode.0)
        } else {
            p.min_decode
        };
        plan = Some(p);
        let margin = if settings.fast_jpeg_shrink { 1 } else { 2 };
        geometry::jpeg_scale((h.width, h.height), need, margin)
    })?;
    let (Some(d), Some(plan)) = (decoded, plan) else {
        return Ok(None);
    };
    let buf = image::RgbImage::from_raw(d.width, d.height, d.rgb)
        .ok_or_else(|| TransformError::Internal("jpeg decoder returned a short buffer".into()))?;
    let mut img = DynamicImage::ImageRgb8(buf);
    img.apply_orientation(d.orientation);
    Ok(Some(Source {
        pixels: Pixels::from_dynamic(img),
        plan,
        icc: d.icc,
    }))
}

fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// Lanczos3 resize (with the `cover` crop) to `plan.out`. fast_image_resize premultiplies
/// alpha internally, so transparent pixels don't bleed their (arbitrary) colour into edges.
fn resize(px: Pixels, plan: &Plan) -> Result<Pixels, TransformError> {
    let (ow, oh) = plan.out;
    if plan.crop.is_none() && (px.width, px.height) == (ow, oh) {
        return Ok(px);
    }
    let pixel_type = if px.alpha {
        PixelType::U8x4
    } else {
        PixelType::U8x3
    };
    let internal = |e: &dyn std::fmt::Display| TransformError::Internal(format!("resize: {e}"));
    let src = ImageRef::new(px.width, px.height, &px.data, pixel_type).map_err(|e| internal(&e))?;
    let mut dst = Image::new(ow, oh, pixel_type);
    let mut options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    if let Some([x, y, w, h]) = plan.crop {
        let (sw, sh) = (f64::from(px.width), f64::from(px.height));
        options = options.crop(x * sw, y * sh, w * sw, h * sh);
    }
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| internal(&e))?;
    Ok(Pixels {
        width: ow,
        height: oh,
        data: dst.into_vec(),
        alpha: px.alpha,
    })
}

/// Converts pixels tagged with an ICC profile to sRGB. Done after resizing, on the small
/// image, to keep it cheap; resizing in the source's (also gamma-encoded) space differs
/// from resizing in sRGB by far less than the resize itself changes.
fn to_srgb(px: &mut Pixels, icc: &[u8]) {
    use moxcms::{ColorProfile, DataColorSpace, Layout, TransformOptions};
    let Ok(profile) = ColorProfile::new_from_slice(icc) else {
        return;
    };
    if profile.color_space != DataColorSpace::Rgb {
        return; // a grey or CMYK profile on RGB pixels: nothing sensible to do
    }
    let layout = if px.alpha { Layout::Rgba } else { Layout::Rgb };
    let srgb = ColorProfile::new_srgb();
    let Ok(transform) =
        profile.create_transform_8bit(layout, &srgb, layout, TransformOptions::default())
    else {
        return;
    };
    let mut out = vec![0u8; px.data.len()];
    if transform.transform(&px.data, &mut out).is_ok() {
        px.data = out;
    }
}

/// `top` composited over `bottom` (straight alpha, sRGB values: what browsers do).
fn over(top: Rgba, bottom: Rgba) -> Rgba {
    let [tr, tg, tb, ta] = top.0.map(u32::from);
    let [br, bg, bb, ba] = bottom.0.map(u32::from);
    let a = ta * 255 + ba * (255 - ta); // scaled by 255
    if a == 0 {
        return Rgba::TRANSPARENT;
    }
    let mix = |t: u32, b: u32| ((t * ta * 255 + b * ba * (255 - ta) + a / 2) / a) as u8;
    Rgba([
        mix(tr, br),
        mix(tg, bg),
        mix(tb, bb),
        ((a + 127) / 255) as u8,
    ])
}

/// Centres the picture on a `canvas` filled with `bg` (`fit=contain`).
fn pad(px: Pixels, (cw, ch): (u32, u32), bg: Rgba) -> Pixels {
    if (px.width, px.height) == (cw, ch) {
        return px;
    }
    let alpha = px.alpha || bg.0[3] < 255;
    let channels = if alpha { 4 } else { 3 };
    let mut data = Vec::with_capacity(cw as usize * ch as usize * channels);
    for _ in 0..cw as usize * ch as usize {
        data.extend_from_slice(&bg.0[..channels]);
    }
    let x0 = ((cw - px.width.min(cw)) / 2) as usize;
    let y0 = ((ch - px.height.min(ch)) / 2) as usize;
    let pc = px.channels();
    for (y, row) in px.data.chunks_exact(px.width as usize * pc).enumerate() {
        let start = ((y0 + y) * cw as usize + x0) * channels;
        let dst = &mut data[start..start + px.width as usize * channels];
        for (d, s) in dst.chunks_exact_mut(channels).zip(row.chunks_exact(pc)) {
            let top = Rgba([s[0], s[1], s[2], if pc == 4 { s[3] } else { 255 }]);
            let under = Rgba([d[0], d[1], d[2], if channels == 4 { d[3] } else { 255 }]);
            d.copy_from_slice(&over(top, under).0[..channels]);
        }
    }
    Pixels {
        width: cw,
        height: ch,
        data,
        alpha,
    }
}

/// Drops alpha by compositing onto an opaque `bg` (for JPEG): transparent areas become the
/// background colour, white by default, never black.
fn flatten(px: Pixels, bg: Rgba) -> Pixels {
    if !px.alpha {
        return px;
    }
    let [br, bgg, bb, _] = bg.0.map(u32::from);
    let mut data = Vec::with_capacity(px.width as usize * px.height as usize * 3);
    for p in px.data.chunks_exact(4) {
        let a = u32::from(p[3]);
        let mix = |c: u8, b: u32| ((u32::from(c) * a + b * (255 - a) + 127) / 255) as u8;
        data.extend_from_slice(&[mix(p[0], br), mix(p[1], bgg), mix(p[2], bb)]);
    }
    Pixels {
        width: px.width,
        height: px.height,
        data,
        alpha: false,
    }
}

/// An alpha channel that is opaque everywhere only costs bytes (and makes WebP pick its
/// slower alpha path): drop it.
fn drop_opaque_alpha(px: Pixels) -> Pixels {
    if !px.alpha || px.data.chunks_exact(4).any(|p| p[3] != 255) {
        return px;
    }
    let data = px
        .data
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    Pixels {
        data,
        alpha: false,
        ..px
    }
}

fn encode(
    px: &Pixels,
    format: OutputFormat,
    quality: u8,
    settings: &Settings,
) -> Result<Vec<u8>, TransformError> {
    let colour = if px.alpha {
        ExtendedColorType::Rgba8
    } else {
        ExtendedColorType::Rgb8
    };
    match format {
        OutputFormat::Jpeg => jpeg::encode(&px.data, px.width, px.height, quality),
        OutputFormat::Png => {
            let mut out = Vec::new();
            PngEncoder::new_with_quality(&mut out, CompressionType::Default, PngFilter::Adaptive)
                .write_image(&px.data, px.width, px.height, colour)
                .map_err(|e| image_error("png", e))?;
            Ok(out)
        }
        OutputFormat::Webp => {
            let encoder = if px.alpha {
                webp::Encoder::from_rgba(&px.data, px.width, px.height)
            } else {
                webp::Encoder::from_rgb(&px.data, px.width, px.height)
            };
            let mut config = webp::WebPConfig::new().map_err(|()| TransformError::Encode {
                format: "webp",
                reason: "libwebp config version mismatch".into(),
            })?;
            config.quality = f32::from(quality);
            config.method = WEBP_METHOD;
            let out = encoder
                .encode_advanced(&config)
                .map_err(|e| TransformError::Encode {
                    format: "webp",
                    reason: format!("{e:?}"),
                })?;
            Ok(out.to_vec())
        }
        OutputFormat::Gif => {
            let mut out = Vec::new();
            GifEncoder::new_with_speed(&mut out, GIF_SPEED)
                .encode(&px.data, px.width, px.height, colour)
                .map_err(|e| image_error("gif", e))?;
            Ok(out)
        }
        #[cfg(feature = "avif")]
        OutputFormat::Avif => super::avif::encode(px, quality, settings.avif_speed),
        #[cfg(not(feature = "avif"))]
        OutputFormat::Avif => {
            let _ = settings;
            Err(TransformError::Unsupported(
                "avif output is not built in (cargo feature `avif`)".into(),
            ))
        }
    }
}

/// Animated GIF → animated GIF: every frame is composited by the decoder onto the full
/// canvas, resized, padded and re-quantised; delays and the loop count are kept. Frames are
/// streamed one at a time, so memory is one canvas plus one output frame.
fn render_animated_gif(
    src: &[u8],
    probe: &Probe,
    spec: &Spec,
    settings: &Settings,
    deadline: Deadline,
) -> Result<Rendered, TransformError> {
    let plan = geometry::plan(probe.width, probe.height, spec);
    // Every frame costs a resize and a quantisation of the whole output canvas.
    check_output(plan.canvas, probe.frames, settings)?;
    let bg = spec.background_for(OutputFormat::Gif);
    let gif_err = |e| image_error("gif", e);
    let mut decoder = GifDecoder::new(Cursor::new(src)).map_err(gif_err)?;
    decoder
        .set_limits(gif_limits(settings, decoder.dimensions()))
        .map_err(gif_err)?;
    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, settings)?;
    let repeat = match decoder.loop_count() {
        LoopCount::Infinite => Repeat::Infinite,
        LoopCount::Finite(n) => Repeat::Finite(u16::try_from(n.get()).unwrap_or(u16::MAX)),
    };
    let mut out = Vec::new();
    let mut frames = 0u32;
    {
        let mut encoder = GifEncoder::new_with_speed(&mut out, GIF_SPEED);
        encoder.set_repeat(repeat).map_err(gif_err)?;
        for frame in decoder.into_frames() {
            deadline.check()?;
            let frame = frame.map_err(gif_err)?;
            frames += 1;
            if frames > settings.max_frames {
                // The probe counted fewer frames than the decoder found: stop at the limit.
                frames -= 1;
                break;
            }
            // Same reason: the budget holds for the frames the decoder really finds.
            check_output(plan.canvas, frames, settings)?;
            let delay = frame.delay();
            let canvas = frame.into_buffer();
            let px = Pixels {
                width: canvas.width(),
                height: canvas.height(),
                data: canvas.into_raw(),
                alpha: true,
            };
            let mut px = resize(px, &plan)?;
            if spec.fit == Fit::Contain {
                px = pad(px, plan.canvas, bg);
            }
            let buffer = RgbaImage::from_raw(px.width, px.height, px.data)
                .ok_or_else(|| TransformError::Internal("gif frame buffer size".into()))?;
            encoder
                .encode_frame(image::Frame::from_parts(buffer, 0, 0, delay))
                .map_err(gif_err)?;
        }
    }
    if frames == 0 {
        return Err(TransformError::Corrupt("gif: no frames".into()));
    }
    Ok(Rendered {
        bytes: out,
        format: OutputFormat::Gif,
        width: plan.canvas.0,
        height: plan.canvas.1,
        frames,
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn compositing() {
        assert_eq!(over(Rgba::TRANSPARENT, Rgba::WHITE), Rgba::WHITE);
        assert_eq!(
            over(Rgba([0, 0, 0, 255]), Rgba::WHITE),
            Rgba([0, 0, 0, 255])
        );
        assert_eq!(
            over(Rgba([0, 0, 0, 128]), Rgba::WHITE),
            Rgba([127, 127, 127, 255])
        );
        assert_eq!(
            over(Rgba([255, 0, 0, 128]), Rgba::TRANSPARENT),
            Rgba([255, 0, 0, 128])
        );
        let px = Pixels {
            width: 2,
            height: 1,
            data: vec![10, 20, 30, 0, 10, 20, 30, 255],
            alpha: true,
        };
        let flat = flatten(px, Rgba::WHITE);
        assert_eq!(flat.data, vec![255, 255, 255, 10, 20, 30]);
    }

    #[test]
    fn pad_centres() {
        let px = Pixels {
            width: 1,
            height: 1,
            data: vec![1, 2, 3],
            alpha: false,
        };
        let out = pad(px, (3, 1), Rgba([9, 9, 9, 255]));
        assert_eq!(out.data, vec![9, 9, 9, 1, 2, 3, 9, 9, 9]);
        assert!(!out.alpha);
        let px = Pixels {
            width: 1,
            height: 1,
            data: vec![1, 2, 3],
            alpha: false,
        };
        let out = pad(px, (1, 2), Rgba::TRANSPARENT);
        assert_eq!(out.data, vec![1, 2, 3, 255, 0, 0, 0, 0]);
    }
}
