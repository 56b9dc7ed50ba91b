//! Variants: a mirrored original, a parsed [`Spec`] and the client's `Accept` → the
//! rendition to serve.
//!
//! The output format is negotiated from `Accept` and the original's header facts (probed
//! once per original, off the runtime, and cached); the variant is named by the SHA-256 of
//! the original's hash, the canonical options for that format, and the format; the store
//! renders it at most once however many requests ask at the same time, on the bounded
//! render pool, and keeps it like an original. For clients that accept AVIF,
//! [`super::background`] decides first (serve the AVIF, or this rendition provisionally).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;

use super::background::{AvifMode, AvifStep};
use super::{Image, Mirror, MirrorError};
use crate::hash::ContentHash;
use crate::metrics::Metrics;
use crate::store::{Admission, Blob, ObjectMeta, StoreError, unix_now};
use crate::transform::{
    self, Negotiated, OutputFormat, Pool, PoolError, Probe, Settings, Spec, TransformError,
};

impl Mirror {
    /// The variant of `original` for `spec`, in the format `accept` allows (AVIF once it
    /// has been rendered in the background, see [`AvifMode::Offer`]).
    pub async fn variant(
        &self,
        original: &Blob,
        spec: &Spec,
        accept: Option<&str>,
    ) -> Result<Image, MirrorError> {
        self.variant_with(
            original,
            spec,
            accept,
            AvifMode::Offer,
            &Admission::unlimited(),
        )
        .await
    }

    /// [`Mirror::variant`], with what to do about AVIF spelled out and a render counted
    /// against `admission`. Only the request that leads a render takes a permit (waiting
    /// on someone else's render is free); one that shared a refusal meant for another
    /// client's limit tries once more on its own.
    pub async fn variant_with(
        &self,
        original: &Blob,
        spec: &Spec,
        accept: Option<&str>,
        avif: AvifMode,
        admission: &Admission,
    ) -> Result<Image, MirrorError> {
        let sha = &original.meta.sha256;
        if self.expensive.contains_key(sha) {
            return Err(MirrorError::TooExpensive(sha.clone()));
        }
        let probe = self.probe(original).await?;
        let provisional = match self.avif_step(original, spec, accept, &probe, avif).await? {
            AvifStep::Serve(image) => return Ok(image),
            AvifStep::Provisional => true,
            AvifStep::Skip => false,
        };
        let settings = &self.transform;
        let Negotiated {
            format,
            vary_accept,
        } = transform::negotiate(spec, accept, &probe, settings);
        let (name, _) = variant_name(sha, spec, format, settings);
        let refused_here = AtomicBool::new(false);
        let render = || async {
            let _admitted = admission
                .try_admit()
                .inspect_err(|_| refused_here.store(true, Ordering::Relaxed))?;
            render_blob(
                &self.pool,
                self.metrics(),
                original,
                spec,
                format,
                settings,
                name,
            )
            .await
        };
        let mut found = self.store.get_variant(&name, sha, &render).await;
        if matches!(&found, Err(e) if matches!(**e, MirrorError::Store(StoreError::ClientBusy { .. })))
            && !refused_here.load(Ordering::Relaxed)
        {
            found = self.store.get_variant(&name, sha, &render).await;
        }
        let (blob, source) = match found {
            Ok(found) => found,
            Err(e) => {
                if matches!(
                    *e,
                    MirrorError::Transform(TransformError::Timeout { .. })
                        | MirrorError::Pool(PoolError::Timeout(_))
                ) {
                    tracing::warn!(sha256 = %sha, "render timed out; refusing other renders of this original for a while");
                    self.expensive.insert(sha.clone(), ()).await;
                }
                return Err((*e).clone());
            }
        };
        Ok(Image {
            blob,
            source,
            vary_accept,
            original_sha256: original.meta.sha256.clone(),
            pinned_by: Vec::new(),
            fresh_until: u64::MAX,
            provisional,
        })
    }

    /// Header facts about an original, cached by its hash. Probing walks a GIF's blocks to
    /// count frames, so it runs off the async runtime.
    async fn probe(&self, original: &Blob) -> Result<Probe, MirrorError> {
        let bytes = original.bytes.clone();
        self.probes
            .try_get_with(original.meta.sha256.clone(), async move {
                tokio::task::spawn_blocking(move || transform::probe(&bytes))
                    .await
                    .unwrap_or_else(|e| {
                        Err(TransformError::Internal(format!("probe task failed: {e}")))
                    })
            })
            .await
            .map_err(|e| MirrorError::Transform((*e).clone()))
    }
}

/// The name of the rendition of original `sha256` for `spec` in `format`, and the canonical
/// options it is named by: SHA-256 of the original's hash, the canonical options for that
/// format, and the format. `format=auto` choosing a format and that format asked for
/// explicitly name the same variant.
pub(super) fn variant_name(
    sha256: &str,
    spec: &Spec,
    format: OutputFormat,
    settings: &Settings,
) -> (ContentHash, String) {
    let canonical = spec.canonical_for(format, settings);
    let name = ContentHash::of_parts(&[
        sha256.as_bytes(),
        canonical.as_bytes(),
        format.as_str().as_bytes(),
    ]);
    (name, canonical)
}

/// Renders `original` per `spec` into `format` on `pool` and wraps it as the variant
/// `name`: the render step of [`crate::store::Store::get_variant`], for the foreground
/// pool and the background one alike.
pub(super) async fn render_blob(
    pool: &Pool,
    metrics: &Metrics,
    original: &Blob,
    spec: &Spec,
    format: OutputFormat,
    settings: &Settings,
    name: ContentHash,
) -> Result<Blob, MirrorError> {
    let (src, spec, settings) = (original.bytes.clone(), spec.clone(), settings.clone());
    let started = Instant::now();
    // Counted as queued until a worker picks the job up (or it is refused).
    let queued = metrics.render_queued();
    let rendered = pool
        .run(move || {
            drop(queued);
            transform::render(&src, &spec, format, &settings)
        })
        .await??;
    metrics.render(format.as_str(), started.elapsed().as_secs_f64());
    tracing::debug!(variant = %name, format = format.as_str(), width = rendered.width, height = rendered.height, "rendered");
    let meta = ObjectMeta {
        sha256: name.to_hex(),
        media_type: format.media_type().to_string(),
        extension: format.extension().to_string(),
        bytes: rendered.bytes.len() as u64,
        width: rendered.width,
        height: rendered.height,
        created: unix_now(),
        last_used: 0,
    };
    Ok(Blob::new(Bytes::from(rendered.bytes), meta))
}
