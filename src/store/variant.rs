//! Variants in the store: a rendition named by its recipe, served from memory or disk, or
//! rendered by the caller's closure at most once however many requests ask for it at the
//! same time, then kept like an original (and recorded for the disk budget).
//!
//! An extra `impl Store` block; what a variant is and how it is rendered is the service
//! layer's business (`mirror::variant`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{
    Blob, Kind, Source, Store, StoreError, VariantMeta, file_error, index_error, rebuild_meta,
    unix_now,
};
use crate::hash::ContentHash;

impl Store {
    /// A derived file (a resized rendition), rendered by `render` at most once however
    /// many requests ask for it concurrently, then kept in memory and on disk.
    pub async fn get_variant<F, Fut, E>(
        &self,
        name: &ContentHash,
        original: &str,
        render: F,
    ) -> Result<(Blob, Source), Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Blob, E>>,
        E: From<StoreError> + Send + Sync + 'static,
    {
        let key = format!("v:{name}");
        let cached = self.memory.get(&key).await;
        self.metrics.memory_cache(cached.is_some());
        if let Some(blob) = cached {
            self.note_use(Kind::Variant, &blob);
            return Ok((blob, Source::Memory));
        }
        let source = Mutex::new(Source::Disk);
        let blob = self
            .memory
            .try_get_with(key, async {
                let (disk, hash) = (self.disk.clone(), *name);
                let on_disk = self
                    .blocking(move || {
                        let Some(bytes) = disk
                            .read(Kind::Variant, &hash)
                            .map_err(|e| file_error("read", &disk.path(Kind::Variant, &hash), e))?
                        else {
                            return Ok(None);
                        };
                        let meta = rebuild_meta(&hash, &bytes)?;
                        Ok::<_, StoreError>(Some(Blob::new(Bytes::from(bytes), meta)))
                    })
                    .await
                    .map_err(E::from)?;
                if let Some(blob) = on_disk {
                    return Ok(blob);
                }
                if let Some(blob) = self
                    .variant_from_shared(name, original)
                    .await
                    .map_err(E::from)?
                {
                    if let Ok(mut s) = source.lock() {
                        *s = Source::Shared;
                    }
                    return Ok(blob);
                }
                let mut rendered = render().await?;
                self.variant_to_shared(name, &rendered.bytes).await;
                self.stats.renders.fetch_add(1, Ordering::Relaxed);
                // An encoder's buffer may have grown past its length; the memory layer
                // keeps an exact copy, so what it holds is what it weighs.
                rendered.bytes = Bytes::copy_from_slice(&rendered.bytes);
                let (disk, index, hash) = (self.disk.clone(), self.index.clone(), *name);
                let bytes = rendered.bytes.clone();
                let record = VariantMeta {
                    name: name.to_hex(),
                    original: original.to_owned(),
                    // The file carries a 32-byte checksum trailer.
                    bytes: bytes.len() as u64 + 32,
                    created: unix_now(),
                    last_used: unix_now(),
                };
                let size = record.bytes;
                let wrote = self
                    .blocking(move || {
                        let wrote = disk.write(Kind::Variant, &hash, &bytes).map_err(|e| {
                            file_error("write", &disk.path(Kind::Variant, &hash), e)
                        })?;
                        if wrote {
                            index
                                .put_variant(&record)
                                .map_err(index_error("record a variant"))?;
                        }
                        Ok::<_, StoreError>(wrote)
                    })
                    .await
                    .map_err(E::from)?;
                self.after_write(Kind::Variant, &name.to_hex(), size, wrote)
                    .await;
                if let Ok(mut s) = source.lock() {
                    *s = Source::Render;
                }
                Ok(rendered)
            })
            .await?;
        let source = source.into_inner().unwrap_or(Source::Disk);
        self.note_use(Kind::Variant, &blob);
        Ok((blob, source))
    }
}

/// Reads that never render: what a caller needs to decide whether a rendition it would
/// rather serve (AVIF) exists yet, without waiting for it to be made.
impl Store {
    /// The variant `name` from memory or disk, or `None` if it has not been rendered
    /// (nothing is rendered here). A disk hit is put in memory, as [`Store::get_variant`]
    /// does.
    pub async fn peek_variant(
        &self,
        name: &ContentHash,
    ) -> Result<Option<(Blob, Source)>, StoreError> {
        let key = format!("v:{name}");
        if let Some(blob) = self.memory.get(&key).await {
            self.metrics.memory_cache(true);
            self.note_use(Kind::Variant, &blob);
            return Ok(Some((blob, Source::Memory)));
        }
        let (disk, hash) = (self.disk.clone(), *name);
        let on_disk = self
            .blocking(move || {
                let Some(bytes) = disk
                    .read(Kind::Variant, &hash)
                    .map_err(|e| file_error("read", &disk.path(Kind::Variant, &hash), e))?
                else {
                    return Ok(None);
                };
                let meta = rebuild_meta(&hash, &bytes)?;
                Ok::<_, StoreError>(Some(Blob::new(Bytes::from(bytes), meta)))
            })
            .await?;
        let Some(blob) = on_disk else {
            return Ok(None);
        };
        self.memory.insert(key, blob.clone()).await;
        self.note_use(Kind::Variant, &blob);
        Ok(Some((blob, Source::Disk)))
    }

    /// Whether the original `sha256` is still recorded (not purged): a background render
    /// queued before a purge must not bring its variant back.
    pub async fn has_object(&self, sha256: &str) -> Result<bool, StoreError> {
        let (index, sha) = (self.index.clone(), sha256.to_owned());
        self.blocking(move || {
            index
                .object(&sha)
                .map(|o| o.is_some())
                .map_err(index_error("read an object record"))
        })
        .await
    }
}
