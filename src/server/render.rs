//! Variants: the glue between a mirrored original, the transform module and the store.
//!
//! Given an original and a parsed [`Spec`], this picks the output format for the
//! client's `Accept`, names the variant (SHA-256 of the original's hash, the canonical
//! options for that format, and the format), and asks the store for it; the store
//! renders it at most once, on the bounded render pool, and keeps it like an original.

use std::sync::Arc;

use bytes::Bytes;

use super::State;
use crate::store::{Blob, ContentHash, ObjectMeta, Source, StoreError, unix_now};
use crate::transform::{self, Negotiated, PoolError, Probe, Spec, TransformError};

/// Why a variant could not be produced. Clone, because concurrent requests for the same
/// variant share one render and therefore one error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transform(#[from] TransformError),
    #[error(transparent)]
    Pool(#[from] PoolError),
}

/// A variant ready to serve.
pub struct Variant {
    pub blob: Blob,
    pub source: Source,
    /// The format depended on `Accept`: the response needs `Vary: Accept`.
    pub vary_accept: bool,
}

pub async fn variant(
    state: &State,
    original: &Blob,
    spec: &Spec,
    accept: Option<&str>,
) -> Result<Variant, RenderError> {
    let probe = probe(state, original).await?;
    let settings = &state.config.transform;
    let Negotiated {
        format,
        vary_accept,
    } = transform::negotiate(spec, accept, &probe, settings);
    let canonical = spec.canonical_for(format, settings);
    let name = ContentHash::of_parts(&[
        original.meta.sha256.as_bytes(),
        canonical.as_bytes(),
        format.as_str().as_bytes(),
    ]);
    let render = || async {
        let (src, spec, settings) = (original.bytes.clone(), spec.clone(), settings.clone());
        let rendered = state
            .pool
            .run(move || transform::render(&src, &spec, format, &settings))
            .await??;
        tracing::debug!(variant = %name, %canonical, width = rendered.width, height = rendered.height, "rendered");
        Ok::<_, RenderError>(Blob {
            meta: Arc::new(ObjectMeta {
                sha256: name.to_hex(),
                media_type: format.media_type().to_string(),
                extension: format.extension().to_string(),
                bytes: rendered.bytes.len() as u64,
                width: rendered.width,
                height: rendered.height,
                created: unix_now(),
            }),
            bytes: Bytes::from(rendered.bytes),
        })
    };
    let (blob, source) = state
        .store
        .get_variant(&name, render)
        .await
        .map_err(|e| (*e).clone())?;
    Ok(Variant {
        blob,
        source,
        vary_accept,
    })
}

/// Header facts about an original, cached by its hash. Probing walks a GIF's blocks to
/// count frames, so it runs off the async runtime.
async fn probe(state: &State, original: &Blob) -> Result<Probe, RenderError> {
    let bytes = original.bytes.clone();
    state
        .probes
        .try_get_with(original.meta.sha256.clone(), async move {
            tokio::task::spawn_blocking(move || transform::probe(&bytes))
                .await
                .unwrap_or_else(|e| Err(TransformError::Internal(e.to_string())))
        })
        .await
        .map_err(|e| RenderError::Transform((*e).clone()))
}
