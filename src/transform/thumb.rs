//! Tiny pictures for placeholders: an original decoded small ([`thumbnail_rgba`], through
//! the render pipeline, so limits, shrink-on-load, orientation and colour handling are the
//! same as for any variant) and a preview encoded as a PNG of a few hundred bytes
//! ([`tiny_png`]). Blocking, pure CPU work like the rest of `transform`.

use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::imageops::FilterType;
use image::{ExtendedColorType, ImageEncoder, RgbaImage};

use super::spec::{Fit, FormatChoice};
use super::{OutputFormat, Settings, Spec, TransformError};

/// Straight-alpha RGBA8 pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

/// `src` decoded to fit `max_side`×`max_side` (aspect ratio kept, never enlarged), as RGBA.
pub fn thumbnail_rgba(
    src: &[u8],
    max_side: u32,
    settings: &Settings,
) -> Result<Thumbnail, TransformError> {
    // Built here rather than parsed: `allowed_widths` restricts what strangers may ask for,
    // not what imgmirror computes for itself.
    let spec = Spec {
        width: Some(max_side.max(1)),
        height: Some(max_side.max(1)),
        fit: Fit::Inside,
        enlarge: false,
        quality: None,
        format: FormatChoice::Fixed(OutputFormat::Png),
        background: None,
    };
    let rendered = super::render(src, &spec, OutputFormat::Png, settings)?;
    let decoded = image::load_from_memory_with_format(&rendered.bytes, image::ImageFormat::Png)
        .map_err(|e| TransformError::Internal(format!("re-reading a thumbnail: {e}")))?;
    let rgba = decoded.into_rgba8();
    Ok(Thumbnail {
        width: rgba.width(),
        height: rgba.height(),
        rgba: rgba.into_raw(),
    })
}

/// `pixels` as a PNG of at most `max_bytes`, scaled down step by step until it fits (a
/// blurred preview loses nothing by being tiny: the browser scales it up smoothly). RGB when
/// every pixel is opaque. `None` when even 2 px do not fit.
pub fn tiny_png(pixels: &Thumbnail, max_bytes: usize) -> Result<Option<Vec<u8>>, TransformError> {
    let Some(image) = RgbaImage::from_raw(pixels.width, pixels.height, pixels.rgba.clone()) else {
        return Err(TransformError::Internal(
            "thumbnail buffer has the wrong size".into(),
        ));
    };
    let longest = pixels.width.max(pixels.height).max(1);
    let mut side = longest;
    while side >= 2 {
        let (w, h) = (
            (pixels.width * side / longest).max(1),
            (pixels.height * side / longest).max(1),
        );
        let scaled = if side == longest {
            image.clone()
        } else {
            image::imageops::resize(&image, w, h, FilterType::Triangle)
        };
        let png = encode(&scaled)?;
        if png.len() <= max_bytes {
            return Ok(Some(png));
        }
        side = side * 3 / 4;
    }
    Ok(None)
}

fn encode(image: &RgbaImage) -> Result<Vec<u8>, TransformError> {
    let opaque = image.pixels().all(|p| p.0[3] == 255);
    let mut out = Vec::new();
    let encoder =
        PngEncoder::new_with_quality(&mut out, CompressionType::Best, PngFilter::Adaptive);
    let result = if opaque {
        let rgb: Vec<u8> = image
            .pixels()
            .flat_map(|p| [p.0[0], p.0[1], p.0[2]])
            .collect();
        encoder.write_image(&rgb, image.width(), image.height(), ExtendedColorType::Rgb8)
    } else {
        encoder.write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            ExtendedColorType::Rgba8,
        )
    };
    result.map_err(|e| TransformError::Encode {
        format: "png",
        reason: e.to_string(),
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn thumbnails_fit_the_box_and_keep_the_aspect_ratio() {
        let settings = Settings::default();
        let thumb = thumbnail_rgba(&fixture("photo-1920.jpg"), 100, &settings).unwrap();
        assert_eq!(thumb.width.max(thumb.height), 100);
        assert_eq!(thumb.rgba.len(), (thumb.width * thumb.height * 4) as usize);
        let bomb = thumbnail_rgba(&fixture("bomb-50000.png"), 100, &settings);
        assert!(
            matches!(bomb, Err(TransformError::TooManyPixels { .. })),
            "{bomb:?}"
        );
    }

    #[test]
    fn tiny_png_respects_the_budget() {
        let thumb = thumbnail_rgba(&fixture("photo-1080.jpg"), 32, &Settings::default()).unwrap();
        let png = tiny_png(&thumb, 280).unwrap().expect("fits");
        assert!(png.len() <= 280, "{}", png.len());
        let decoded = image::load_from_memory(&png).unwrap();
        assert!(decoded.width() >= 2);
    }
}
