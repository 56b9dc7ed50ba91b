//! Header-only inspection of a source image: format, dimensions, alpha, frame count.
//!
//! Owns the small parsers that read these facts straight from the container (JPEG
//! segments, PNG chunks, GIF blocks, RIFF chunks) without a pixel buffer, so limits can be
//! enforced before any decoder allocates: a 200-byte file declaring 50000×50000 costs a few
//! microseconds here. It does not decode pixels and does not decide anything; `render`
//! applies the limits. The parsers follow the decoders' reading of the file (libjpeg's
//! marker walk, the WebP bitstream inside its container) so the probe and the decoder
//! agree on the size; the decoders check the size they see again, whatever was probed.

use super::TransformError;

/// Source formats imgmirror can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    Jpeg,
    Png,
    Gif,
    Webp,
}

impl SourceFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "jpeg",
            SourceFormat::Png => "png",
            SourceFormat::Gif => "gif",
            SourceFormat::Webp => "webp",
        }
    }
}

/// Facts about a source image read from its header (no pixel buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub format: SourceFormat,
    /// Width as stored (before EXIF orientation); for GIF/WebP animations, the canvas.
    pub width: u32,
    pub height: u32,
    /// The format can carry transparency and this file declares it (alpha channel, PNG
    /// `tRNS`, a transparent GIF colour, WebP alpha flag).
    pub has_alpha: bool,
    /// Number of frames: counted for GIF and animated WebP, 1 for everything else
    /// (animated PNG is treated as its default image).
    pub frames: u32,
}

impl Probe {
    pub fn is_animated(&self) -> bool {
        self.frames > 1
    }

    /// Pixel area of one frame (the canvas), as u64 so it can't overflow.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// Reads format, size, alpha and frame count from the header. Fails with `Unsupported` for
/// formats imgmirror does not decode and `Corrupt` for headers that end early or lie.
pub fn probe(src: &[u8]) -> Result<Probe, TransformError> {
    let probe = if src.starts_with(&[0xFF, 0xD8, 0xFF]) {
        jpeg(src)
    } else if src.starts_with(b"\x89PNG\r\n\x1a\n") {
        png(src)
    } else if src.starts_with(b"GIF87a") || src.starts_with(b"GIF89a") {
        gif(src)
    } else if src.len() >= 12 && &src[0..4] == b"RIFF" && &src[8..12] == b"WEBP" {
        webp(src)
    } else {
        return Err(TransformError::Unsupported(sniff_name(src).to_owned()));
    }?;
    if probe.width == 0 || probe.height == 0 {
        return Err(TransformError::Corrupt(format!(
            "{} header declares a zero dimension",
            probe.format.as_str()
        )));
    }
    Ok(probe)
}

/// A name for formats we recognise but do not decode, for the error message.
fn sniff_name(src: &[u8]) -> &'static str {
    if src.len() >= 12 && &src[4..8] == b"ftyp" {
        "heif/avif"
    } else if src.starts_with(b"BM") {
        "bmp"
    } else if src.starts_with(b"II*\0") || src.starts_with(b"MM\0*") {
        "tiff"
    } else if src.starts_with(b"<") || src.starts_with(b"\xEF\xBB\xBF<") {
        "svg/xml"
    } else {
        "unknown"
    }
}

fn truncated(what: &str) -> TransformError {
    TransformError::Corrupt(format!("{what} header is truncated"))
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 2)
        .map(|s| u32::from(u16::from_be_bytes([s[0], s[1]])))
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 2)
        .map(|s| u32::from(u16::from_le_bytes([s[0], s[1]])))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 3)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], 0]))
}

/// Reads the first SOFn frame header, found the way libjpeg finds it.
fn jpeg(src: &[u8]) -> Result<Probe, TransformError> {
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
    let is_sof = |m: u8| matches!(m, 0xC0..=0xCF) && !matches!(m, 0xC4 | 0xC8 | 0xCC);
    let (_, at) = jpeg_walk_to(src, is_sof)?;
    // `at` is the length field: length (2), precision (1), height (2), width (2).
    let height = be16(src, at + 3).ok_or_else(|| truncated("jpeg"))?;
    let width = be16(src, at + 5).ok_or_else(|| truncated("jpeg"))?;
    Ok(Probe {
        format: SourceFormat::Jpeg,
        width,
        height,
        has_alpha: false,
        frames: 1,
    })
}

/// Walks a JPEG's header markers as libjpeg's `read_markers` does and stops at the first
/// marker `stop` accepts, returning its code and the offset of its length field.
///
/// Agreeing with libjpeg is the point: a probe that reads a different frame header than the
/// decoder lets a file pass the limits as 100×100 and decode as 8000×8000. So, like libjpeg:
/// RST0–7 and TEM have no length; a second SOI is an error; EOI before the stop is an error;
/// markers libjpeg does not know are errors; bytes between segments are skipped (see
/// [`next_jpeg_marker`]). The decoder checks its own header anyway; this keeps the cheap,
/// cached probe honest.
fn jpeg_walk_to(src: &[u8], stop: impl Fn(u8) -> bool) -> Result<(u8, usize), TransformError> {
    let mut at = 2;
    loop {
        let (code, after) = next_jpeg_marker(src, at).ok_or_else(|| truncated("jpeg"))?;
        match code {
            c if stop(c) => return Ok((c, after)),
            // Parameterless: RST0..RST7, TEM.
            0xD0..=0xD7 | 0x01 => {
                at = after;
                continue;
            }
            0xD8 => {
                return Err(TransformError::Corrupt(
                    "jpeg: second start-of-image marker".into(),
                ));
            }
            0xD9 | 0xDA => {
                return Err(TransformError::Corrupt(
                    "jpeg: no frame header before the scan".into(),
                ));
            }
            // SOFn/DHT/DAC, DQT/DNL/DRI, APPn, COM: a length follows.
            0xC0..=0xCF | 0xDB..=0xDD | 0xE0..=0xEF | 0xFE => {}
            _ => {
                return Err(TransformError::Corrupt(format!(
                    "jpeg: unknown marker 0x{code:02X}"
                )));
            }
        }
        let len = be16(src, after).ok_or_else(|| truncated("jpeg"))? as usize;
        if len < 2 {
            return Err(TransformError::Corrupt("jpeg: bad segment length".into()));
        }
        at = after + len;
    }
}

/// Finds the next marker at or after `at` as libjpeg's `next_marker` does: bytes other than
/// 0xFF are skipped (libjpeg only warns about such extraneous data), and so are 0xFF fill
/// bytes and `FF 00` pairs. Returns the marker code and the offset just after it.
fn next_jpeg_marker(src: &[u8], mut at: usize) -> Option<(u8, usize)> {
    loop {
        at += src.get(at..)?.iter().position(|&b| b == 0xFF)?;
        while src.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let code = *src.get(at + 1)?;
        at += 2;
        if code != 0 {
            return Some((code, at));
        }
    }
}

/// Reads IHDR, then walks the chunks before the image data for `tRNS` (palette or colour-key
/// transparency, which makes an RGB/palette PNG one with alpha).
fn png(src: &[u8]) -> Result<Probe, TransformError> {
    if src.get(12..16) != Some(b"IHDR") {
        return Err(TransformError::Corrupt(
            "png: first chunk is not IHDR".into(),
        ));
    }
    let width = be32(src, 16).ok_or_else(|| truncated("png"))?;
    let height = be32(src, 20).ok_or_else(|| truncated("png"))?;
    let colour_type = *src.get(25).ok_or_else(|| truncated("png"))?;
    let mut has_alpha = matches!(colour_type, 4 | 6);
    let mut at = 8usize;
    while !has_alpha {
        let (Some(len), Some(kind)) = (be32(src, at), src.get(at + 4..at + 8)) else {
            break;
        };
        match kind {
            b"tRNS" => has_alpha = true,
            b"IDAT" | b"IEND" => break,
            _ => {}
        }
        at = at.saturating_add(12).saturating_add(len as usize);
    }
    Ok(Probe {
        format: SourceFormat::Png,
        width,
        height,
        has_alpha,
        frames: 1,
    })
}

/// Reads the logical screen, then walks every block, skipping the LZW data sub-block by
/// sub-block, to count frames and spot a transparent colour. A file that ends early stops
/// the walk: the frames seen so far count, and the decoder reports the damage later.
fn gif(src: &[u8]) -> Result<Probe, TransformError> {
    let width = le16(src, 6).ok_or_else(|| truncated("gif"))?;
    let height = le16(src, 8).ok_or_else(|| truncated("gif"))?;
    let flags = *src.get(10).ok_or_else(|| truncated("gif"))?;
    let mut at = 13usize;
    if flags & 0x80 != 0 {
        at += 3 << ((flags & 0x07) + 1);
    }
    let skip_sub_blocks = |mut at: usize| -> Option<usize> {
        loop {
            let n = *src.get(at)? as usize;
            at += 1;
            if n == 0 {
                return Some(at);
            }
            at += n;
        }
    };
    let mut frames = 0u32;
    let mut has_alpha = false;
    while let Some(&block) = src.get(at) {
        match block {
            0x21 => {
                let label = src.get(at + 1).copied();
                // Graphic Control Extension: bit 0 of its packed byte = transparent colour.
                if label == Some(0xF9) && src.get(at + 3).is_some_and(|p| p & 1 == 1) {
                    has_alpha = true;
                }
                let Some(next) = skip_sub_blocks(at + 2) else {
                    break;
                };
                at = next;
            }
            0x2C => {
                frames = frames.saturating_add(1);
                let Some(&packed) = src.get(at + 9) else {
                    break;
                };
                at += 10;
                if packed & 0x80 != 0 {
                    at += 3 << ((packed & 0x07) + 1);
                }
                // LZW minimum code size, then the data sub-blocks.
                let Some(next) = skip_sub_blocks(at + 1) else {
                    break;
                };
                at = next;
            }
            _ => break, // 0x3B trailer, or junk: stop counting either way
        }
    }
    Ok(Probe {
        format: SourceFormat::Gif,
        width,
        height,
        has_alpha,
        frames: frames.max(1),
    })
}

/// Reads the first chunk (VP8, VP8L or VP8X). For VP8X, also walks the chunks: the
/// bitstream of a still image must be the canvas size, and every animation frame (ANMF)
/// must lie on the canvas and hold a bitstream of its declared size. Decoders allocate for
/// the bitstream's own size (up to 16383×16383) before comparing it with the canvas, so a
/// 100×100 canvas must not carry a 16383×16383 frame past the limits.
fn webp(src: &[u8]) -> Result<Probe, TransformError> {
    let kind = src.get(12..16).ok_or_else(|| truncated("webp"))?;
    let body = src.get(20..).unwrap_or_default();
    let (width, height, has_alpha, frames) = match kind {
        b"VP8 " | b"VP8L" => {
            let (w, h, alpha) = webp_bitstream_size(kind, body)?;
            (w, h, alpha, 1)
        }
        b"VP8X" => {
            let flags = *body.first().ok_or_else(|| truncated("webp"))?;
            let w = le24(body, 4).ok_or_else(|| truncated("webp"))? + 1;
            let h = le24(body, 7).ok_or_else(|| truncated("webp"))? + 1;
            let frames = webp_frames(src, (w, h), flags & 0x02 != 0)?;
            (w, h, flags & 0x10 != 0, frames)
        }
        _ => return Err(TransformError::Corrupt("webp: unknown first chunk".into())),
    };
    Ok(Probe {
        format: SourceFormat::Webp,
        width,
        height,
        has_alpha,
        frames,
    })
}

/// Width, height and alpha flag from a VP8 (lossy) or VP8L (lossless) bitstream header.
fn webp_bitstream_size(kind: &[u8], data: &[u8]) -> Result<(u32, u32, bool), TransformError> {
    if kind == b"VP8 " {
        // Frame tag (3 bytes), start code 9d 01 2a, then 14-bit width and height.
        if data.get(3..6) != Some(&[0x9d, 0x01, 0x2a]) {
            return Err(TransformError::Corrupt("webp: bad VP8 start code".into()));
        }
        let w = le16(data, 6).ok_or_else(|| truncated("webp"))? & 0x3FFF;
        let h = le16(data, 8).ok_or_else(|| truncated("webp"))? & 0x3FFF;
        return Ok((w, h, false));
    }
    if data.first() != Some(&0x2f) {
        return Err(TransformError::Corrupt("webp: bad VP8L signature".into()));
    }
    let bits = le32(data, 1).ok_or_else(|| truncated("webp"))?;
    let w = (bits & 0x3FFF) + 1;
    let h = ((bits >> 14) & 0x3FFF) + 1;
    Ok((w, h, (bits >> 28) & 1 == 1))
}

/// The RIFF chunks from `at` on, as (tag, payload). Chunks are
/// padded to an even length; a payload cut short by the end of the file is truncated.
fn riff_chunks(src: &[u8], mut at: usize) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        let (tag, len) = (src.get(at..at + 4)?, le32(src, at + 4)? as usize);
        let body = src.get(at + 8..).unwrap_or_default();
        let body = &body[..len.min(body.len())];
        at = at.saturating_add(8).saturating_add(len + (len & 1));
        Some((tag, body))
    })
}

/// Checks the bitstream(s) of a VP8X file against the canvas; returns the frame count.
fn webp_frames(src: &[u8], canvas: (u32, u32), animated: bool) -> Result<u32, TransformError> {
    let mismatch = |what: &str, (w, h): (u32, u32), (fw, fh): (u32, u32)| {
        TransformError::Corrupt(format!("webp: {what} is {w}x{h}, not {fw}x{fh}"))
    };
    let mut frames = 0u32;
    for (tag, body) in riff_chunks(src, 12) {
        match tag {
            b"VP8 " | b"VP8L" if !animated => {
                let (w, h, _) = webp_bitstream_size(tag, body)?;
                if (w, h) != canvas {
                    return Err(mismatch("the bitstream", (w, h), canvas));
                }
                frames = 1;
            }
            b"ANMF" if animated => {
                frames = frames.saturating_add(1);
                // X/2, Y/2, width-1, height-1 (24 bits each), duration (24), flags (8).
                let field = |at| le24(body, at).ok_or_else(|| truncated("webp"));
                let (x, y) = (field(0)? * 2, field(3)? * 2);
                let size = (field(6)? + 1, field(9)? + 1);
                if x + size.0 > canvas.0 || y + size.1 > canvas.1 {
                    return Err(TransformError::Corrupt(format!(
                        "webp: an animation frame reaches {}x{}, past the {}x{} canvas",
                        x + size.0,
                        y + size.1,
                        canvas.0,
                        canvas.1
                    )));
                }
                for (sub, data) in riff_chunks(body, 16) {
                    if matches!(sub, b"VP8 " | b"VP8L") {
                        let (w, h, _) = webp_bitstream_size(sub, data)?;
                        if (w, h) != size {
                            return Err(mismatch("an animation frame's bitstream", (w, h), size));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(frames.max(1))
}

/// True when a JPEG's entropy-coded data is complete: an EOI marker follows the first scan.
/// libjpeg pads a truncated file with a fake EOI and decodes grey, without an error; this
/// catches that. Trailing bytes after EOI are allowed (some cameras append data).
pub(crate) fn jpeg_is_complete(src: &[u8]) -> bool {
    // Walk the segments to the first SOS; APPn payloads may contain FFD9 (EXIF thumbnails),
    // so searching from the start would be fooled.
    let Ok((_, at)) = jpeg_walk_to(src, |m| m == 0xDA) else {
        return false;
    };
    let Some(len) = be16(src, at) else {
        return false;
    };
    // In entropy-coded data 0xFF is always followed by 0x00 (stuffing) or a marker, so the
    // byte pair FF D9 after the first scan header is the real EOI. Search from the end,
    // where it almost always is: scanning 1.7 MB forwards cost ~0.5 ms per render.
    src.get(at + len as usize..)
        .is_some_and(|rest| rest.windows(2).rev().any(|w| w == [0xFF, 0xD9]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn real_fixtures() {
        let cases = [
            ("photo-1920.jpg", SourceFormat::Jpeg, 1920, 1200, false, 1),
            (
                "photo-1920-progressive.jpg",
                SourceFormat::Jpeg,
                1920,
                1200,
                false,
                1,
            ),
            ("photo-4000.jpg", SourceFormat::Jpeg, 4000, 2500, false, 1),
            (
                "photo-2560-orig.jpg",
                SourceFormat::Jpeg,
                2560,
                1600,
                false,
                1,
            ),
            ("cat-alpha.png", SourceFormat::Png, 451, 300, true, 1),
            ("logo-alpha.png", SourceFormat::Png, 500, 500, true, 1),
            ("pan-anim.gif", SourceFormat::Gif, 480, 300, true, 8),
            ("tiny-anim.gif", SourceFormat::Gif, 14, 25, true, 24),
        ];
        for (name, format, width, height, has_alpha, frames) in cases {
            let p = probe(&fixture(name)).unwrap();
            assert_eq!(
                p,
                Probe {
                    format,
                    width,
                    height,
                    has_alpha,
                    frames
                },
                "{name}"
            );
        }
    }

    #[test]
    fn unsupported_and_truncated_headers() {
        assert_eq!(probe(b"BM....").unwrap_err().code(), "unsupported-format");
        assert_eq!(probe(b"").unwrap_err().code(), "unsupported-format");
        assert_eq!(probe(b"<svg/>").unwrap_err().code(), "unsupported-format");
        let jpg = fixture("photo-480.jpg");
        assert_eq!(probe(&jpg[..40]).unwrap_err().code(), "corrupt-image");
        assert_eq!(
            probe(&fixture("cat-alpha.png")[..20]).unwrap_err().code(),
            "corrupt-image"
        );
        assert_eq!(probe(b"GIF89a\x01").unwrap_err().code(), "corrupt-image");
    }

    #[test]
    fn jpeg_completeness() {
        let jpg = fixture("photo-1080.jpg");
        assert!(jpeg_is_complete(&jpg));
        assert!(!jpeg_is_complete(&jpg[..jpg.len() / 2]));
        assert!(!jpeg_is_complete(&jpg[..jpg.len() - 2]));
        let mut trailing = jpg.clone();
        trailing.extend_from_slice(b"trailing junk");
        assert!(jpeg_is_complete(&trailing));
        let progressive = fixture("photo-1920-progressive.jpg");
        assert!(jpeg_is_complete(&progressive));
        assert!(!jpeg_is_complete(&progressive[..progressive.len() * 3 / 4]));
    }
}
