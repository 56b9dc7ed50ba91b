//! The size and cost limits of a render, as plain checks: source dimensions (whoever read
//! them: the probe or a decoder's own header), output frames and total output pixels, and
//! the `image` crate's decoder `Limits` (per format: GIF frames are held to a few screens).
//!
//! Owns the arithmetic and the error each limit gives; `pipeline` decides when to call
//! them (before the work they bound), `jpeg` applies the source ones to libjpeg's header.

use image::Limits;

use super::{Probe, Settings, TransformError};

/// Header limits, before any pixel buffer exists.
pub(crate) fn check_source(p: &Probe, settings: &Settings) -> Result<(), TransformError> {
    check_dimensions(p.width, p.height, settings)
}

/// The source limits on a size, whoever read it (the probe, or a decoder's own header).
pub(crate) fn check_dimensions(
    width: u32,
    height: u32,
    settings: &Settings,
) -> Result<(), TransformError> {
    check_size(width, height, settings.max_pixels, settings.max_input_dim)
}

/// Area first: a 50000×50000 bomb is reported as too many pixels, which is what it is.
pub(crate) fn check_size(
    width: u32,
    height: u32,
    max_pixels: u64,
    max_dim: u32,
) -> Result<(), TransformError> {
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(TransformError::TooManyPixels {
            width,
            height,
            max: max_pixels,
        });
    }
    if width > max_dim || height > max_dim {
        return Err(TransformError::TooLarge {
            width,
            height,
            max: max_dim,
        });
    }
    Ok(())
}

/// Output limits, checked before the work: `enlarge=1` and `fit=contain` can ask for
/// outputs bigger than the source, so one frame is bounded by `max_pixels`, and all frames
/// together (an animation resized to 7000×7000) by `max_output_pixels_total`.
pub(crate) fn check_output(
    (w, h): (u32, u32),
    frames: u32,
    settings: &Settings,
) -> Result<(), TransformError> {
    let pixels = u64::from(w) * u64::from(h);
    if pixels > settings.max_pixels {
        return Err(TransformError::TooManyPixels {
            width: w,
            height: h,
            max: settings.max_pixels,
        });
    }
    if pixels.saturating_mul(u64::from(frames)) > settings.max_output_pixels_total {
        return Err(TransformError::TooExpensive {
            frames,
            width: w,
            height: h,
            max: settings.max_output_pixels_total,
        });
    }
    Ok(())
}

pub(crate) fn limits(settings: &Settings) -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(settings.max_input_dim);
    limits.max_image_height = Some(settings.max_input_dim);
    // One RGBA8 frame of the largest allowed size, plus slack for decoder state.
    limits.max_alloc = Some(
        settings
            .max_pixels
            .saturating_mul(4)
            .saturating_add(16 << 20),
    );
    limits
}

/// GIF frames carry their own sizes (up to 65535×65535), independent of the screen the
/// probe read, and `image` allocates a buffer per frame of the frame's size. Holding the
/// allocations to a few screens (the persistent canvas, a frame, a composited copy) keeps
/// a 100×100 GIF from decoding 7000×7000 frames.
pub(crate) fn gif_limits(settings: &Settings, (width, height): (u32, u32)) -> Limits {
    let mut limits = limits(settings);
    let screens = (u64::from(width) * u64::from(height))
        .saturating_mul(4 * 4)
        .saturating_add(1 << 20);
    limits.max_alloc = limits.max_alloc.map(|max| max.min(screens));
    limits
}
