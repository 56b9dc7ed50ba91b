//! The tiering policy when the mirror lives in a shared store (`store.backend = "s3"`):
//! this node's memory layer, local disk and index become a read-through cache in front of
//! the bucket every node shares ([`super::shared`]).
//!
//! - Reads: memory → local disk → the bucket (then kept locally) → one upstream fetch.
//! - Writes go to the bucket first: an original is stored there (and the URL record
//!   committed with a conditional put) before anything is served or acknowledged; the
//!   local copy follows. Variants are written back best effort (they can be rendered
//!   again).
//! - A URL record is trusted locally for `store.shared_recheck_secs` (the `urls` cache's
//!   TTL), then re-read from the bucket, so a purge or a pin made through another node is
//!   seen within that time. Unreachable bucket: what the local layers hold is served, the
//!   rest is `StoreError::Shared` (503 + Retry-After).
//!
//! An extra `impl Store` block; with the disk backend every function here is a no-op or
//! the plain local path. It knows nothing of HTTP or the upstream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moka::future::Cache;

use super::memory;
use super::shared::{Shared, SharedError, Space};
use super::{Blob, Kind, Store, StoreError, UrlEntry, file_error, index_error, rebuild_meta};
use crate::config::StoreConfig;
use crate::hash::ContentHash;

pub(super) fn shared_error(e: SharedError) -> StoreError {
    StoreError::Shared(Arc::new(e))
}

/// The shared store of `[store]`, checked for conditional writes, or `None` for the disk
/// backend. The check runs on a thread of its own with its own runtime, so opening a
/// store works the same inside an async runtime (the server) and outside it (a command).
pub(super) fn open_shared(config: &StoreConfig) -> Result<Option<Arc<Shared>>, StoreError> {
    if !config.is_shared() {
        return Ok(None);
    }
    let mut shared = Shared::open(config).map_err(shared_error)?;
    let allow = config.unsafe_unconditional_writes;
    let conditional = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StoreError::Task(e.to_string()))?;
                // A client of its own: connections pooled here die with this runtime.
                let mut probe = Shared::open(config).map_err(shared_error)?;
                runtime.block_on(probe.probe(allow)).map_err(shared_error)?;
                Ok::<_, StoreError>(probe.is_conditional())
            })
            .join()
            .unwrap_or_else(|_| Err(StoreError::Task("the store probe panicked".into())))
    })?;
    shared.set_conditional(conditional);
    tracing::info!(store = %shared.name(), conditional, "using the shared store");
    Ok(Some(Arc::new(shared)))
}

/// URL → record: the single-flight point for first fetches and, with a shared store, the
/// local trust window of a record (its TTL); and the originals confirmed in the bucket
/// within that window (permalinks), empty without a shared store.
/// `url_map_bytes` is the URL map's budget; the confirmed list gets a quarter more.
pub(super) fn caches(
    config: &StoreConfig,
    url_map_bytes: u64,
) -> (Cache<String, Arc<UrlEntry>>, Cache<String, ()>) {
    if config.is_shared() {
        let ttl = Duration::from_secs(config.shared_recheck_secs).max(Duration::from_millis(100));
        (
            memory::url_map(url_map_bytes, Some(ttl)),
            memory::keys(url_map_bytes / 4, ttl),
        )
    } else {
        (memory::url_map(url_map_bytes, None), Cache::new(0))
    }
}

impl Store {
    /// The record of `key` (a normalised URL) if it is mirrored: the local index's, or with
    /// a shared store the bucket's (copied into the local index; a local record the bucket
    /// no longer has was purged through another node and goes). Unreachable bucket: the
    /// local record if there is one, else the error.
    pub(super) async fn known_entry(&self, key: &str) -> Result<Option<UrlEntry>, StoreError> {
        let index = self.index.clone();
        let k = key.to_owned();
        let local = self
            .blocking(move || index.url(&k).map_err(index_error("read a URL")))
            .await?;
        let Some(shared) = &self.shared else {
            return Ok(local);
        };
        match shared.url(key).await {
            Ok(Some(record)) => {
                if local.as_ref() != Some(&record) {
                    let (index, copy) = (self.index.clone(), record.clone());
                    self.blocking(move || {
                        index
                            .put_url(None, &copy)
                            .map_err(index_error("copy a URL record"))
                    })
                    .await?;
                }
                Ok(Some(record))
            }
            Ok(None) => {
                if local.is_some() {
                    tracing::info!(url = %key, "purged through another node; forgetting the local record");
                    let (index, k) = (self.index.clone(), key.to_owned());
                    self.blocking(move || {
                        index.remove_url(&k).map_err(index_error("remove a URL"))
                    })
                    .await?;
                }
                Ok(None)
            }
            Err(e) => match local {
                Some(local) => {
                    tracing::warn!(url = %key, error = %crate::error::Chain(&e), "shared store unreachable; serving the local copy");
                    Ok(Some(local))
                }
                None => Err(shared_error(e)),
            },
        }
    }

    /// Stores a fetched original in the bucket and commits its URL record there (pins
    /// already in the bucket merged in); the record as committed, or `None` when
    /// `only_if_present` and the record is gone (purged meanwhile).
    pub(super) async fn commit_shared(
        &self,
        bytes: &Bytes,
        mut entry: UrlEntry,
        only_if_present: bool,
    ) -> Result<Option<UrlEntry>, StoreError> {
        let Some(shared) = &self.shared else {
            return Ok(Some(entry));
        };
        let body = bytes.clone();
        let hash = self
            .blocking(move || Ok::<_, StoreError>(ContentHash::of(&body)))
            .await?;
        shared
            .put(Space::Objects, &hash, bytes.clone())
            .await
            .map_err(shared_error)?;
        entry.sha256 = hash.to_hex();
        let url = entry.url.clone();
        shared
            .update_url(&url, |current| {
                if only_if_present && current.is_none() {
                    return None;
                }
                let mut new = entry.clone();
                if let Some(current) = current {
                    new.first_fetched = new.first_fetched.min(current.first_fetched);
                    for pin in &current.pinned_by {
                        if !new.pinned_by.contains(pin) {
                            new.pinned_by.push(pin.clone());
                        }
                    }
                }
                new.pinned_by.sort();
                Some(new)
            })
            .await
            .map_err(shared_error)
    }

    /// With a shared store, whether the original `hash` (held locally) is still in the
    /// bucket, asked at most once per `store.shared_recheck_secs`: a local copy of an
    /// original purged through another node goes, and is not served. Unreachable bucket:
    /// the local copy is trusted.
    pub(super) async fn still_shared(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        let Some(shared) = &self.shared else {
            return Ok(true);
        };
        let key = hash.to_hex();
        if self.confirmed.get(&key).await.is_some() {
            return Ok(true);
        }
        match shared.exists(Space::Objects, hash).await {
            Ok(true) => {
                self.confirmed.insert(key, ()).await;
                Ok(true)
            }
            Ok(false) => {
                tracing::info!(sha256 = %key, "purged through another node; removing the local copy");
                self.purge_objects(&[key]).await?;
                Ok(false)
            }
            Err(e) => {
                tracing::warn!(sha256 = %key, error = %crate::error::Chain(&e), "shared store unreachable; serving the local copy");
                Ok(true)
            }
        }
    }

    /// An original this node does not hold, from the bucket; kept on the local disk.
    /// `Missing` when the bucket does not have it either.
    pub(super) async fn object_from_shared(&self, hash: &ContentHash) -> Result<Blob, StoreError> {
        let Some(shared) = &self.shared else {
            return Err(StoreError::Missing(hash.to_hex()));
        };
        let bytes = shared
            .get(Space::Objects, hash)
            .await
            .map_err(shared_error)?
            .ok_or_else(|| StoreError::Missing(hash.to_hex()))?;
        let (disk, index, hash) = (self.disk.clone(), self.index.clone(), *hash);
        let body = bytes.clone();
        let (meta, wrote) = self
            .blocking(move || {
                let wrote = disk
                    .write(Kind::Object, &hash, &body)
                    .map_err(|e| file_error("write", &disk.path(Kind::Object, &hash), e))?;
                let meta = match index
                    .object(&hash.to_hex())
                    .map_err(index_error("read an object"))?
                {
                    Some(meta) => meta,
                    None => {
                        let meta = rebuild_meta(&hash, &body)?;
                        index
                            .put_object(&meta)
                            .map_err(index_error("record an object"))?;
                        meta
                    }
                };
                Ok::<_, StoreError>((meta, wrote))
            })
            .await?;
        let size = meta.bytes;
        self.after_write(Kind::Object, &hash.to_hex(), size, wrote)
            .await;
        self.confirmed.insert(hash.to_hex(), ()).await;
        Ok(Blob::new(bytes, meta))
    }

    /// A variant this node does not hold, from the bucket (kept locally); `None` when the
    /// bucket lacks it or cannot be reached (then it is rendered here: it is derived).
    pub(super) async fn variant_from_shared(
        &self,
        name: &ContentHash,
        original: &str,
    ) -> Result<Option<Blob>, StoreError> {
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        let bytes = match shared.get(Space::Variants, name).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!(variant = %name, error = %crate::error::Chain(&e), "shared store unreachable; rendering the variant here");
                return Ok(None);
            }
        };
        let record = super::VariantMeta {
            name: name.to_hex(),
            original: original.to_owned(),
            bytes: bytes.len() as u64 + 32,
            created: super::unix_now(),
            last_used: super::unix_now(),
        };
        let (disk, index, hash, body) =
            (self.disk.clone(), self.index.clone(), *name, bytes.clone());
        let size = record.bytes;
        let (meta, wrote) = self
            .blocking(move || {
                let wrote = disk
                    .write(Kind::Variant, &hash, &body)
                    .map_err(|e| file_error("write", &disk.path(Kind::Variant, &hash), e))?;
                if wrote {
                    index
                        .put_variant(&record)
                        .map_err(index_error("record a variant"))?;
                }
                Ok::<_, StoreError>((rebuild_meta(&hash, &body)?, wrote))
            })
            .await?;
        self.after_write(Kind::Variant, &name.to_hex(), size, wrote)
            .await;
        Ok(Some(Blob::new(bytes, meta)))
    }

    /// Writes a freshly rendered variant to the bucket for the other nodes, best effort.
    pub(super) async fn variant_to_shared(&self, name: &ContentHash, bytes: &Bytes) {
        if let Some(shared) = &self.shared
            && let Err(e) = shared.put(Space::Variants, name, bytes.clone()).await
        {
            tracing::warn!(variant = %name, error = %crate::error::Chain(&e), "could not store the variant in the shared store; other nodes render it themselves");
        }
    }

    /// Removes the bucket's record of `key`; whether it had one (`false` without a shared
    /// store).
    pub(super) async fn forget_shared(&self, key: &str) -> Result<bool, StoreError> {
        let Some(shared) = &self.shared else {
            return Ok(false);
        };
        let had = shared.url(key).await.map_err(shared_error)?.is_some();
        shared.delete_url(key).await.map_err(shared_error)?;
        Ok(had)
    }

    /// With a shared store: adds `article` to the bucket's record of `key` (a conditional
    /// read-modify-write, so concurrent pins from other nodes are kept), then copies the
    /// record locally. `Ok(None)` without a shared store, `Some(None)` when the bucket has
    /// no record of `key`.
    pub(super) async fn pin_shared(
        &self,
        key: &str,
        article: &str,
    ) -> Result<Option<Option<UrlEntry>>, StoreError> {
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        let record = shared
            .update_url(key, |current| {
                let current = current?;
                if current.pinned_by.iter().any(|a| a == article) {
                    return None;
                }
                let mut new = current.clone();
                new.pinned_by.push(article.to_owned());
                new.pinned_by.sort();
                Some(new)
            })
            .await
            .map_err(shared_error)?;
        if let Some(record) = &record {
            let (index, copy) = (self.index.clone(), record.clone());
            self.blocking(move || {
                index
                    .put_url(None, &copy)
                    .map_err(index_error("record a pin"))
            })
            .await?;
        }
        Ok(Some(record))
    }

    /// Readiness of the shared store (nothing to check without one).
    pub(super) async fn check_shared_ready(&self) -> Result<(), StoreError> {
        match &self.shared {
            Some(shared) => shared.check_ready().await.map_err(shared_error),
            None => Ok(()),
        }
    }

    /// The shared store, for the offline commands (`verify`, `stats`, `migrate`).
    pub fn shared(&self) -> Option<&Arc<Shared>> {
        self.shared.as_ref()
    }
}
