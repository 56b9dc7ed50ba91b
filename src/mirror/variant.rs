//! Variants: a mirrored original, a parsed [`Spec`] and the client's `Accept` → the
//! rendition to serve.
//!
//! The output format is negotiated from `Accept` and the original's header facts (probed
//! once per original, off the runtime, and cached); the variant is named by the SHA-256 of
//! the original's hash, the canonical options for that format, and the format; the store
//! renders it at most once however many requests ask at the same time, on the bounded
//! render pool, and keeps it like an original.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;

use super::{Image, Mirror, MirrorError};
use crate::hash::ContentHash;
use crate::store::{Admission, Blob, ObjectMeta, StoreError, unix_now};
use crate::transform::{self, Negotiated, PoolError, Probe, Spec, TransformError};

impl Mirror {
    /// The variant of `original` for `spec`, in the format `accept` allows.
    pub async fn variant(
        &self,
        original: &Blob,
        spec: &Spec,
        accept: Option<&str>,
    ) -> Result<Image, MirrorError> {
        self.variant_admitted(original, spec, accept, &Admission::unlimited())
            .await
    }

    /// [`Mirror::variant`], with a render counted against `admission`. Only the request
    /// that leads a render takes a permit (waiting on someone else's render is free); one
    /// that shared a refusal meant for another client's limit tries once more on its own.
    pub async fn variant_admitted(
        &self,
        original: &Blob,
        spec: &Spec,
        accept: Option<&str>,
        admission: &Admission,
    ) -> Result<Image, MirrorError> {
        let sha = &original.meta.sha256;
        if self.expensive.contains_key(sha) {
            return Err(MirrorError::TooExpensive(sha.clone()));
        }
        let probe = self.probe(original).await?;
        let settings = &self.transform;
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
        let refused_here = AtomicBool::new(false);
        let render = || async {
            let _admitted = admission
                .try_admit()
                .inspect_err(|_| refused_here.store(true, Ordering::Relaxed))?;
            let (src, spec, settings) = (original.bytes.clone(), spec.clone(), settings.clone());
            let (metrics, started) = (self.metrics(), Instant::now());
            // Counted as queued until a worker picks the job up (or it is refused).
            let queued = metrics.render_queued();
            let rendered = self
                .pool
                .run(move || {
                    drop(queued);
                    transform::render(&src, &spec, format, &settings)
                })
                .await??;
            metrics.render(format.as_str(), started.elapsed().as_secs_f64());
            tracing::debug!(variant = %name, %canonical, width = rendered.width, height = rendered.height, "rendered");
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
            Ok::<_, MirrorError>(Blob::new(Bytes::from(rendered.bytes), meta))
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
