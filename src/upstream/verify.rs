//! Is this body really an image? The answer comes from the bytes (magic numbers and the
//! format's own header), never from the upstream's `Content-Type`, which is routinely
//! wrong in both directions: JPEGs served as `text/html`, error pages served as
//! `image/jpeg`.
//!
//! Only the formats browsers display as images are accepted; SVG is deliberately not
//! (it is a document that can carry script), nor are HEIC, PSD and texture formats.

use imagesize::ImageType;

/// What the bytes say about themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub media_type: &'static str,
    pub extension: &'static str,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("body is not an image ({0})")]
    NotAnImage(String),
    #[error("{0} images are not served")]
    UnsupportedFormat(&'static str),
    #[error("{0} header is corrupt: {1}")]
    BadHeader(&'static str, String),
    #[error("{0} is truncated: {1}")]
    Truncated(&'static str, &'static str),
}

/// Checks the format from the magic number and reads the dimensions from the header.
pub fn verify(bytes: &[u8]) -> Result<ImageInfo, VerifyError> {
    let kind =
        imagesize::image_type(bytes).map_err(|_| VerifyError::NotAnImage(describe(bytes)))?;
    let (media_type, extension) = match kind {
        ImageType::Jpeg => ("image/jpeg", "jpg"),
        ImageType::Png => ("image/png", "png"),
        ImageType::Gif => ("image/gif", "gif"),
        ImageType::Webp => ("image/webp", "webp"),
        ImageType::Heif(imagesize::Compression::Av1) => ("image/avif", "avif"),
        ImageType::Bmp => ("image/bmp", "bmp"),
        ImageType::Ico => ("image/x-icon", "ico"),
        ImageType::Tiff => ("image/tiff", "tiff"),
        ImageType::Heif(_) => return Err(VerifyError::UnsupportedFormat("HEIF")),
        // imagesize also recognises texture and editor formats by weak signatures
        // (TGA has none at all); none of them is an image a browser shows.
        _ => return Err(VerifyError::NotAnImage(describe(bytes))),
    };
    let size = imagesize::blob_size(bytes)
        .map_err(|e| VerifyError::BadHeader(media_type, e.to_string()))?;
    let (Ok(width), Ok(height)) = (u32::try_from(size.width), u32::try_from(size.height)) else {
        return Err(VerifyError::BadHeader(
            media_type,
            "dimensions overflow".into(),
        ));
    };
    if width == 0 || height == 0 {
        return Err(VerifyError::BadHeader(
            media_type,
            "zero width or height".into(),
        ));
    }
    check_complete(media_type, bytes)?;
    Ok(ImageInfo {
        media_type,
        extension,
        width,
        height,
    })
}

/// Cheap structural checks that the file was not cut short, so a truncated image is
/// refused before it is stored under a good name. Each looks only at markers the format
/// guarantees: the main image's end-of-image marker, the final PNG chunk, the GIF
/// trailer, the RIFF length.
fn check_complete(media_type: &'static str, bytes: &[u8]) -> Result<(), VerifyError> {
    let truncated = |why| Err(VerifyError::Truncated(media_type, why));
    match media_type {
        "image/jpeg" => {
            // In entropy-coded data 0xFF is always followed by 0x00 or a restart marker,
            // so FF D9 after the last start-of-scan can only be the real end of image.
            let last_sos = find_last(bytes, &[0xFF, 0xDA]).unwrap_or(0);
            if find_last(&bytes[last_sos..], &[0xFF, 0xD9]).is_none() {
                return truncated("no end-of-image marker after the last scan");
            }
        }
        "image/png" => {
            let tail = &bytes[bytes.len().saturating_sub(64)..];
            if find_last(tail, b"IEND").is_none() {
                return truncated("no IEND chunk");
            }
        }
        "image/gif" => {
            let tail = &bytes[bytes.len().saturating_sub(16)..];
            if !tail.contains(&0x3B) {
                return truncated("no trailer");
            }
        }
        "image/webp" => {
            let declared = bytes
                .get(4..8)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize + 8);
            if declared.is_none_or(|n| n > bytes.len()) {
                return truncated("shorter than its RIFF header says");
            }
        }
        _ => {}
    }
    Ok(())
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// A short, safe description of a non-image body for error messages.
fn describe(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(64)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let text = text.trim_start();
    if text.starts_with("<!doctype html") || text.starts_with("<html") {
        "looks like HTML".into()
    } else if text.starts_with("<?xml") || text.starts_with("<svg") {
        "looks like XML or SVG".into()
    } else if text.starts_with('{') || text.starts_with('[') {
        "looks like JSON".into()
    } else if bytes.is_empty() {
        "empty body".into()
    } else {
        format!("{} bytes of unknown type", bytes.len())
    }
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
    fn real_photos_are_recognised_with_their_size() {
        let cases = [
            ("photo-480.jpg", "image/jpeg", 480, 319),
            ("photo-1920-progressive.jpg", "image/jpeg", 1920, 1200),
            ("cat-alpha.png", "image/png", 451, 300),
            ("pan-anim.gif", "image/gif", 480, 300),
        ];
        for (name, media_type, w, h) in cases {
            let info = verify(&fixture(name)).unwrap();
            assert_eq!(
                (info.media_type, info.width, info.height),
                (media_type, w, h),
                "{name}"
            );
        }
    }

    #[test]
    fn non_images_are_refused_whatever_they_claim() {
        let html = b"<!DOCTYPE html><html><body>hotlinking not allowed</body></html>";
        assert_eq!(
            verify(html),
            Err(VerifyError::NotAnImage("looks like HTML".into()))
        );
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
        assert!(matches!(verify(svg), Err(VerifyError::NotAnImage(_))));
        assert!(matches!(verify(b""), Err(VerifyError::NotAnImage(_))));
        assert!(matches!(
            verify(b"{\"error\":1}"),
            Err(VerifyError::NotAnImage(_))
        ));
    }

    #[test]
    fn truncated_images_are_refused() {
        for name in [
            "photo-480.jpg",
            "photo-1920-progressive.jpg",
            "cat-alpha.png",
            "pan-anim.gif",
        ] {
            let bytes = fixture(name);
            assert!(verify(&bytes).is_ok(), "{name} whole");
            let cut = &bytes[..bytes.len() * 2 / 3];
            assert!(
                matches!(verify(cut), Err(VerifyError::Truncated(..))),
                "{name} cut: {:?}",
                verify(cut)
            );
        }
    }

    #[test]
    fn a_jpeg_magic_without_a_header_is_corrupt() {
        let mut bytes = fixture("photo-480.jpg");
        bytes.truncate(4);
        assert!(verify(&bytes).is_err());
    }
}
