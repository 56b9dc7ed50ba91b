//! Placeholders: a mirrored original → its ThumbHash and a tiny PNG preview of it, for
//! `rewrite --placeholders` (an inline CSS background, so a page never shows a blank box)
//! and `GET /m/<sha256>?placeholder`.
//!
//! The original is decoded to at most [`THUMB_SIDE`] px on the render pool (ThumbHash wants
//! no more than 100 px), hashed, and the hash decoded back and encoded as a PNG of at most
//! [`PNG_BUDGET`] bytes, so the data URI stays around 400 bytes.

use base64::Engine as _;

use bytes::Bytes;

use super::{Image, Mirror, MirrorError};
use crate::hash::ContentHash;
use crate::store::{Admission, Blob, ObjectMeta, Source};
use crate::transform::{self, Thumbnail, TransformError};

/// The longest side of the thumbnail a ThumbHash is computed from (its documented maximum).
pub const THUMB_SIDE: u32 = 100;

/// The largest preview PNG: base64 makes 280 bytes about 374, so the whole `data:` URI
/// stays under 400 bytes.
pub const PNG_BUDGET: usize = 280;

/// An image's placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// The ThumbHash (about 25 bytes).
    pub thumbhash: Vec<u8>,
    /// The preview: the ThumbHash decoded and encoded as PNG.
    pub png: Vec<u8>,
    /// `data:image/png;base64,…` of [`Placeholder::png`].
    pub data_uri: String,
    /// The original's intrinsic size.
    pub width: u32,
    pub height: u32,
}

impl Mirror {
    /// The preview PNG of the original `hash` as an image to serve
    /// (`GET /m/<sha256>?placeholder`), named by its own content hash.
    pub async fn placeholder_image(&self, hash: &ContentHash) -> Result<Image, MirrorError> {
        self.placeholder_image_admitted(hash, &Admission::unlimited())
            .await
    }

    /// [`Mirror::placeholder_image`], whose render (it is not kept) counts against
    /// `admission`.
    pub async fn placeholder_image_admitted(
        &self,
        hash: &ContentHash,
        admission: &Admission,
    ) -> Result<Image, MirrorError> {
        let original = self.original_by_hash(hash).await?;
        let _admitted = admission.try_admit()?;
        let placeholder = self.placeholder(&original.blob).await?;
        let probe = transform::probe(&placeholder.png)?;
        let meta = ObjectMeta {
            sha256: ContentHash::of(&placeholder.png).to_hex(),
            media_type: "image/png".into(),
            extension: "png".into(),
            bytes: placeholder.png.len() as u64,
            width: probe.width,
            height: probe.height,
            created: original.blob.meta.created,
            last_used: 0,
        };
        Ok(Image {
            blob: Blob::new(Bytes::from(placeholder.png), meta),
            source: Source::Render,
            vary_accept: false,
            original_sha256: hash.to_hex(),
            pinned_by: Vec::new(),
            fresh_until: u64::MAX,
            provisional: false,
        })
    }

    /// The placeholder of a mirrored original, computed on the render pool.
    pub async fn placeholder(&self, original: &Blob) -> Result<Placeholder, MirrorError> {
        let (src, settings) = (original.bytes.clone(), self.transform.clone());
        let (thumbhash, png, upright) = self
            .pool
            .run(move || {
                let thumb = transform::thumbnail_rgba(&src, THUMB_SIDE, &settings)?;
                let upright = (thumb.width, thumb.height);
                let hash = thumbhash::rgba_to_thumb_hash(
                    thumb.width as usize,
                    thumb.height as usize,
                    &thumb.rgba,
                );
                let (w, h, rgba) = thumbhash::thumb_hash_to_rgba(&hash).map_err(|()| {
                    TransformError::Internal("a fresh thumbhash does not decode".into())
                })?;
                let preview = Thumbnail {
                    width: w as u32,
                    height: h as u32,
                    rgba,
                };
                let png = transform::tiny_png(&preview, PNG_BUDGET)?.ok_or_else(|| {
                    TransformError::Internal("no preview fits the placeholder budget".into())
                })?;
                Ok::<_, TransformError>((hash, png, upright))
            })
            .await??;
        let data_uri = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&png)
        );
        // The header's size is before EXIF orientation; browsers show the image upright, as
        // the thumbnail is: a quarter turn swaps the sides.
        let (mut width, mut height) = (original.meta.width, original.meta.height);
        if (upright.0 > upright.1) != (width > height) && upright.0 != upright.1 && width != height
        {
            std::mem::swap(&mut width, &mut height);
        }
        Ok(Placeholder {
            thumbhash,
            png,
            data_uri,
            width,
            height,
        })
    }
}
