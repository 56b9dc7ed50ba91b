//! AVIF encoding with ravif (rav1e, pure Rust), compiled only with the `avif` cargo
//! feature.
//!
//! Owns the hand-over of 8-bit sRGB pixels to ravif and the encoder settings that are not
//! configuration: 8-bit output (10-bit costs more time for nothing an 8-bit sRGB source
//! can show), YCbCr, and exactly one thread, so one encode is one worker's worth of CPU
//! like every other render. It does not decide when AVIF is worth encoding (the service
//! layer renders it in the background) nor bound it: rav1e has no cancellation hook, so
//! the deadline is checked before the encode and the [`Pool`](super::Pool) stops waiting
//! for an encode that overruns it.

use ravif::{BitDepth, Encoder, Img, RGB8, RGBA8};

use super::TransformError;
use super::pipeline::Pixels;

/// Encodes `px` at `quality` (1–100) and rav1e `speed` (1–10).
pub(super) fn encode(px: &Pixels, quality: u8, speed: u8) -> Result<Vec<u8>, TransformError> {
    let encoder = Encoder::new()
        .with_quality(f32::from(quality.clamp(1, 100)))
        .with_alpha_quality(f32::from(quality.clamp(1, 100)))
        .with_speed(speed.clamp(1, 10))
        .with_bit_depth(BitDepth::Eight)
        .with_num_threads(Some(1));
    let (w, h) = (px.width as usize, px.height as usize);
    // ravif takes pixel structs; a copy of the small output image costs far less than
    // the encode, and needs no unsafe cast.
    let encoded = if px.alpha {
        let pixels: Vec<RGBA8> = px
            .data
            .chunks_exact(4)
            .map(|p| RGBA8::new(p[0], p[1], p[2], p[3]))
            .collect();
        encoder.encode_rgba(Img::new(&pixels[..], w, h))
    } else {
        let pixels: Vec<RGB8> = px
            .data
            .chunks_exact(3)
            .map(|p| RGB8::new(p[0], p[1], p[2]))
            .collect();
        encoder.encode_rgb(Img::new(&pixels[..], w, h))
    };
    encoded
        .map(|e| e.avif_file)
        .map_err(|e| TransformError::Encode {
            format: "avif",
            reason: e.to_string(),
        })
}
