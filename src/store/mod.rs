//! The mirror: upstream URL → content-addressed original, kept for good.
//!
//! [`Store`] is the facade the service layer ([`crate::mirror`]) uses. It owns three layers —
//! an in-memory LRU weighted by bytes ([`moka`]), the files on disk ([`disk`]) and the
//! index that maps URLs to objects ([`index`]) — and the policy that ties them to the
//! upstream:
//!
//! - a URL not mirrored yet is fetched exactly once however many requests ask for it
//!   at the same time (moka's `try_get_with` coalesces them);
//! - a failure is remembered for `cache.negative_ttl_secs` and never stored as success;
//! - a mirrored URL is served from the mirror even when the upstream is gone; once
//!   older than `cache.fresh_secs` it is revalidated in the background, and a changed
//!   upstream image becomes a new object that the URL moves to.
//!
//! With `store.backend = "s3"` these layers are a read-through cache in front of a bucket
//! shared by every node ([`shared`]; the policy is [`tiered`]'s).
//! Ordering invariant: an object's file is committed before the index names it.
//! The store knows URLs only as index keys; fetching is [`crate::upstream`]'s job.

pub mod admission;
pub mod archive;
mod blob;
mod budget;
pub mod disk;
mod evict;
mod group_commit;
mod health;
pub mod index;
pub mod inventory;
mod lookup;
pub mod memory;
mod pin;
mod purge;
mod revalidate;
pub mod shared;
mod shared_purge;
mod tiered;
pub mod transfer;
mod variant;
pub mod verify;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use moka::future::Cache;
use url::Url;

use crate::config::Config;
pub use crate::hash::ContentHash;
use crate::metrics::Metrics;
use crate::upstream::{Fetched, Fetcher, Image, ImageInfo, UpstreamError};
pub use admission::{Admission, Admitted};
pub use blob::{Blob, Source};
pub use budget::{Budget, UsageReport};
pub use disk::{Disk, Kind};
pub use index::{Index, ObjectMeta, UrlEntry, VariantMeta};
pub use purge::PurgeReport;

/// Blocking store operations (disk, fsync, redb, hashing) in flight at once.
const BLOCKING_SLOTS: usize = 32;

/// A mirrored original, ready to serve.
#[derive(Debug, Clone)]
pub struct Served {
    pub blob: Blob,
    pub source: Source,
    /// The URL's index entry, when served by URL.
    pub entry: Option<Arc<UrlEntry>>,
}

/// Why the store could not answer. Clone, because concurrent requests for one URL share
/// one fetch and therefore one error; sources are kept (behind `Arc`) for the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A file or directory operation failed.
    #[error("cannot {action} {}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The index database failed.
    #[error("index: cannot {action}")]
    Index {
        action: &'static str,
        #[source]
        source: Arc<index::IndexError>,
    },
    /// The index names something that is not a SHA-256 (a damaged record).
    #[error("the index entry of {url} names {sha256:?}, which is not a SHA-256")]
    BadRecord { url: String, sha256: String },
    /// A stored file's bytes no longer say they are an image.
    #[error("object {hash} is not an image")]
    NotAnImage {
        hash: String,
        #[source]
        source: crate::upstream::verify::VerifyError,
    },
    #[error("cannot build the upstream HTTP client")]
    Client(#[source] Arc<reqwest::Error>),
    /// A blocking task panicked or was cancelled (a bug).
    #[error("blocking store task failed: {0}")]
    Task(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("upstream answered 304 to an unconditional request for {0}")]
    UnexpectedNotModified(String),
    #[error("timed out waiting for another request's fetch of {0}")]
    WaitTimeout(String),
    /// Originals alone fill `cache.max_disk_bytes` and `cache.refuse_when_full` is set.
    #[error("the mirror's disk budget is full; not mirroring {0}")]
    Full(String),
    /// The client already has `server.per_client_expensive` fetches and renders running.
    #[error("this client already has {limit} fetches or renders in flight; retry later")]
    ClientBusy { limit: usize },
    /// Internal signal: the index names an object whose file is gone.
    #[error("object {0} is missing")]
    Missing(String),
    /// The shared store (`store.backend = "s3"`) failed or cannot be reached.
    #[error("the shared store is unavailable")]
    Shared(#[source] Arc<shared::SharedError>),
}

/// Counters for `/metrics` and for tests that must prove work was not repeated.
#[derive(Debug, Default)]
pub struct Stats {
    pub upstream_fetches: AtomicU64,
    pub revalidations: AtomicU64,
    pub renders: AtomicU64,
    /// Bumped after every change to what a URL serves (see [`Stats::changed`]).
    pub changes: AtomicU64,
}

impl Stats {
    /// After a pin, purge, re-fetch or moved URL, once the caches are updated: answers
    /// built before it must not be served again.
    pub(crate) fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }
}

pub struct Store {
    disk: Arc<Disk>,
    index: Arc<Index>,
    fetcher: Fetcher,
    /// Hot objects and variants, weighted by their size ([`memory`]: every cache here is
    /// bounded by a byte budget the config names).
    memory: Cache<String, Blob>,
    /// URL → index entry; also the single-flight point for first fetches.
    urls: Cache<String, Arc<UrlEntry>>,
    /// URL → the failure to repeat until it expires.
    negative: Cache<String, StoreError>,
    revalidating: Mutex<HashSet<String>>,
    blocking_slots: tokio::sync::Semaphore,
    fresh: Duration,
    wait_timeout: Duration,
    stats: Stats,
    budget: Budget,
    usage: Arc<budget::Usage>,
    touches: Mutex<budget::Touches>,
    evicting: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
    /// The bucket every node shares (`store.backend = "s3"`); the layers above are then
    /// this node's read-through cache in front of it (see [`tiered`]).
    shared: Option<Arc<shared::Shared>>,
    /// Originals seen in the bucket within `store.shared_recheck_secs` (permalinks).
    confirmed: Cache<String, ()>,
    /// With a shared store, `store.shared_recheck_secs`: how long this node may trust what
    /// it read before another node's purge must be seen.
    trust_secs: Option<u64>,
}

impl Store {
    /// Opens (creating if needed) the data directory: opens the index (which takes the
    /// directory's lock), then clears stray temp files, builds the upstream client. The
    /// order matters: a second process started on a live directory must fail on the lock
    /// before it can delete the running server's temp files. Records into `metrics`.
    pub fn open(config: &Config, metrics: Arc<Metrics>) -> Result<Store, StoreError> {
        let dir = &config.cache.dir;
        std::fs::create_dir_all(dir).map_err(|e| file_error("create", dir, e))?;
        let cache_bytes = usize::try_from(config.cache.index_cache_bytes).unwrap_or(usize::MAX);
        let index = Index::open_with_cache(&dir.join("index.redb"), cache_bytes)
            .map_err(index_error("open"))?;
        let disk = Disk::open(dir).map_err(|e| file_error("open the data directory", dir, e))?;
        let usage = budget::Usage::measure(&index)?;
        let fetcher =
            Fetcher::new(&config.upstream).map_err(|e| StoreError::Client(Arc::new(e)))?;
        let cache = &config.cache;
        let shared = tiered::open_shared(&config.store)?;
        let mut budget = Budget::from_config(cache);
        if shared.is_some() {
            // The bucket keeps every original: locally they are only a cache.
            budget.evict_originals = true;
            budget.backed = true;
        }
        let (urls, confirmed) = tiered::caches(&config.store, cache.url_map_bytes);
        let memory = memory::blobs(cache.memory_bytes);
        let negative = memory::negative(cache.negative_bytes, cache.negative_ttl_secs);
        let store = Store {
            disk: Arc::new(disk),
            index: Arc::new(index),
            fetcher,
            memory,
            urls,
            negative,
            revalidating: Mutex::new(HashSet::new()),
            blocking_slots: tokio::sync::Semaphore::new(BLOCKING_SLOTS),
            fresh: Duration::from_secs(config.cache.fresh_secs),
            wait_timeout: Duration::from_secs(config.upstream.timeout_secs + 15),
            stats: Stats::default(),
            budget,
            usage: Arc::new(usage),
            touches: budget::touches(),
            evicting: tokio::sync::Mutex::new(()),
            metrics,
            shared,
            confirmed,
            trust_secs: config
                .store
                .is_shared()
                .then_some(config.store.shared_recheck_secs),
        };
        store.publish_usage();
        Ok(store)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Unix second until which an answer built now may be served again without asking
    /// this store: `u64::MAX` for a local store (changes here bump
    /// [`Stats::changes`]), `store.shared_recheck_secs` from now for a shared one, whose
    /// changes through other nodes this node only learns by asking.
    pub fn trusted_until(&self) -> u64 {
        self.trust_secs
            .map_or(u64::MAX, |secs| unix_now().saturating_add(secs))
    }

    /// The mirrored original for an upstream URL, fetching it on first use.
    pub async fn get_by_url(self: &Arc<Self>, url: &Url) -> Result<Served, StoreError> {
        self.get_by_url_admitted(url, &Admission::unlimited()).await
    }

    /// The index names an object whose file is gone (evicted, deleted, or damaged and
    /// quarantined): fetch it again. The URL's record and pins stay as they are until that
    /// succeeds, so a failed fetch loses nothing and a later one can still restore it.
    async fn refetch_missing(&self, url: &Url, entry: &UrlEntry) -> Result<Served, StoreError> {
        tracing::warn!(%url, sha256 = %entry.sha256, "mirrored object is missing; fetching it again");
        self.urls.invalidate(&url.to_string()).await;
        self.stats.upstream_fetches.fetch_add(1, Ordering::Relaxed);
        let image = match self.fetcher.fetch(url, None).await? {
            Fetched::Image(image) => image,
            Fetched::NotModified(_) => {
                return Err(StoreError::UnexpectedNotModified(url.to_string()));
            }
        };
        let (entry, blob) = self
            .commit(url, image, Some(entry), false)
            .await?
            .ok_or_else(|| StoreError::Missing(url.to_string()))?;
        Ok(Served {
            blob,
            source: Source::Upstream,
            entry: Some(Arc::new(entry)),
        })
    }

    /// A mirrored original by its content hash (the `/m/<sha256>` permalink).
    pub async fn get_by_hash(&self, hash: &ContentHash) -> Result<Option<Served>, StoreError> {
        match self.object(hash).await {
            Ok(_) if !self.still_shared(hash).await? => Ok(None),
            Ok((blob, source)) => Ok(Some(Served {
                blob,
                source,
                entry: None,
            })),
            Err(StoreError::Missing(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Forgets a URL: the next request fetches it again. Objects stay.
    pub async fn forget(&self, url: &Url) -> Result<bool, StoreError> {
        let key = url.to_string();
        let shared_had = self.forget_shared(&key).await?;
        let index = self.index.clone();
        let k = key.clone();
        let removed = self
            .blocking(move || index.remove_url(&k).map_err(index_error("remove a URL")))
            .await?;
        self.urls.invalidate(&key).await;
        self.negative.invalidate(&key).await;
        self.stats.changed();
        Ok(removed || shared_had)
    }

    /// One try of [`Store::entry`] (see there): the index entry for `url`, from memory,
    /// the index, or a first fetch; concurrent first fetches coalesce into one.
    async fn entry_once(
        &self,
        url: &Url,
        fetched_here: &Mutex<Option<Option<Blob>>>,
        admission: &Admission,
        refused_here: &AtomicBool,
    ) -> Result<Arc<UrlEntry>, StoreError> {
        let key = url.to_string();
        let load = async {
            if let Some(entry) = self.known_entry(&key).await? {
                return Ok(Arc::new(entry));
            }
            if let Some(failure) = self.negative.get(&key).await {
                return Err(failure);
            }
            let _admitted = admission
                .try_admit()
                .inspect_err(|_| refused_here.store(true, Ordering::Relaxed))?;
            if let Ok(mut f) = fetched_here.lock() {
                *f = Some(None);
            }
            match self.mirror(url).await {
                Ok((entry, blob)) => {
                    if let Ok(mut f) = fetched_here.lock() {
                        *f = Some(Some(blob));
                    }
                    Ok(Arc::new(entry))
                }
                Err(e) => {
                    // Only what the upstream said is remembered; our own overload (no
                    // fetch slot in time, over a host's rate) must not outlive it.
                    if matches!(&e, StoreError::Upstream(u) if !u.is_own_overload()) {
                        self.negative.insert(key.clone(), e.clone()).await;
                    }
                    Err(e)
                }
            }
        };
        let waited =
            tokio::time::timeout(self.wait_timeout, self.urls.try_get_with(key.clone(), load));
        match waited.await {
            Ok(Ok(entry)) => Ok(entry),
            Ok(Err(e)) => Err((*e).clone()),
            Err(_) => Err(StoreError::WaitTimeout(key)),
        }
    }

    /// First fetch of a URL: fetch, verify, hash, commit the file, then the index.
    async fn mirror(&self, url: &Url) -> Result<(UrlEntry, Blob), StoreError> {
        if self.refuses_new_originals() {
            return Err(StoreError::Full(url.to_string()));
        }
        self.stats.upstream_fetches.fetch_add(1, Ordering::Relaxed);
        let image = match self.fetch(url, None).await? {
            Fetched::Image(image) => image,
            // Only a conditional request can be answered "not modified".
            Fetched::NotModified(_) => {
                return Err(StoreError::UnexpectedNotModified(url.to_string()));
            }
        };
        let (entry, blob) = self
            .commit(url, image, None, false)
            .await?
            .ok_or_else(|| StoreError::Missing(url.to_string()))?;
        tracing::info!(%url, sha256 = %entry.sha256, bytes = entry.bytes, "mirrored");
        Ok((entry, blob))
    }

    /// Stores a fetched image and points `url` at it; `previous` carries over the URL's
    /// history (first fetch time, pins) when the upstream image changed or the object was
    /// fetched again. With `only_if_present` (a background revalidation), a URL purged
    /// meanwhile is not written back: `None`.
    async fn commit(
        &self,
        url: &Url,
        image: Image,
        previous: Option<&UrlEntry>,
        only_if_present: bool,
    ) -> Result<Option<(UrlEntry, Blob)>, StoreError> {
        let (disk, index) = (self.disk.clone(), self.index.clone());
        let bytes = image.bytes.clone();
        let now = unix_now();
        let mut entry = UrlEntry {
            url: url.to_string(),
            sha256: String::new(),
            media_type: image.info.media_type.to_string(),
            bytes: bytes.len() as u64,
            width: image.info.width,
            height: image.info.height,
            first_fetched: previous.map_or(now, |p| p.first_fetched),
            last_verified: now,
            last_checked: now,
            validators: image.validators.clone(),
            last_upstream_status: image.status,
            pinned_by: previous.map(|p| p.pinned_by.clone()).unwrap_or_default(),
        };
        let info = image.info;
        // Shared store first: nothing is acknowledged that is not there.
        let shared = self.shared.is_some();
        if shared {
            match self
                .commit_shared(&image.bytes, entry, only_if_present)
                .await?
            {
                Some(committed) => entry = committed,
                None => return Ok(None),
            }
        }
        let (entry, meta, wrote) = self
            .blocking(move || {
                let hash = ContentHash::of(&bytes);
                let wrote = disk
                    .write(Kind::Object, &hash, &bytes)
                    .map_err(|e| file_error("write", &disk.path(Kind::Object, &hash), e))?;
                let meta = match index
                    .object(&hash.to_hex())
                    .map_err(index_error("read an object"))?
                {
                    Some(existing) => existing,
                    None => object_meta(&hash, &info, bytes.len(), now),
                };
                entry.sha256 = hash.to_hex();
                // One transaction: pins made while this fetch ran are merged in. With a
                // shared store its record (pins merged there) is copied as it is.
                let entry = if shared {
                    index.put_url(Some(&meta), &entry).map(Some)
                } else {
                    index.commit_url(&meta, &entry, only_if_present)
                }
                .map_err(index_error("record an object"))?;
                Ok::<_, StoreError>((entry, meta, wrote))
            })
            .await?;
        let (size, sha256) = (meta.bytes, meta.sha256.clone());
        let committed = entry.map(|entry| (entry, Blob::new(image.bytes, meta)));
        if let Some((_, blob)) = &committed {
            self.memory
                .insert(format!("o:{}", blob.meta.sha256), blob.clone())
                .await;
        }
        // After the memory insert, so an eviction this write causes also clears it there.
        self.after_write(Kind::Object, &sha256, size, wrote).await;
        self.stats.changed();
        Ok(committed)
    }

    /// An object's bytes from memory, else from disk (then kept in memory).
    async fn object(&self, hash: &ContentHash) -> Result<(Blob, Source), StoreError> {
        let key = format!("o:{hash}");
        let cached = self.memory.get(&key).await;
        self.metrics.memory_cache(cached.is_some());
        if let Some(blob) = cached {
            self.note_use(Kind::Object, &blob);
            return Ok((blob, Source::Memory));
        }
        let (disk, index, hash) = (self.disk.clone(), self.index.clone(), *hash);
        let from_shared = AtomicBool::new(false);
        let blob = self
            .memory
            .try_get_with(key, async {
                let local = self.blocking(move || {
                    let bytes = disk
                        .read(Kind::Object, &hash)
                        .map_err(|e| file_error("read", &disk.path(Kind::Object, &hash), e))?
                        .ok_or_else(|| StoreError::Missing(hash.to_hex()))?;
                    let meta = match index
                        .object(&hash.to_hex())
                        .map_err(index_error("read an object"))?
                    {
                        Some(meta) => meta,
                        None => rebuild_meta(&hash, &bytes)?,
                    };
                    Ok(Blob::new(Bytes::from(bytes), meta))
                });
                match local.await {
                    Err(StoreError::Missing(_)) if self.shared.is_some() => {
                        from_shared.store(true, Ordering::Relaxed);
                        self.object_from_shared(&hash).await
                    }
                    other => other,
                }
            })
            .await
            .map_err(|e: Arc<StoreError>| (*e).clone())?;
        self.note_use(Kind::Object, &blob);
        let source = if from_shared.load(Ordering::Relaxed) {
            Source::Shared
        } else {
            Source::Disk
        };
        Ok((blob, source))
    }
}

/// Metadata for a file whose index record is gone: the bytes still say what they are.
fn rebuild_meta(hash: &ContentHash, bytes: &[u8]) -> Result<ObjectMeta, StoreError> {
    let info = crate::upstream::verify::verify(bytes).map_err(|source| StoreError::NotAnImage {
        hash: hash.to_hex(),
        source,
    })?;
    Ok(object_meta(hash, &info, bytes.len(), unix_now()))
}

fn object_meta(hash: &ContentHash, info: &ImageInfo, len: usize, created: u64) -> ObjectMeta {
    ObjectMeta {
        sha256: hash.to_hex(),
        media_type: info.media_type.to_string(),
        extension: info.extension.to_string(),
        bytes: len as u64,
        width: info.width,
        height: info.height,
        created,
        last_used: created,
    }
}

impl Store {
    /// Runs blocking file and database work off the async runtime, at most
    /// [`BLOCKING_SLOTS`] at a time so a burst of cold reads cannot fan out into
    /// hundreds of blocking threads.
    async fn blocking<T, E>(
        &self,
        f: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let _slot = self
            .blocking_slots
            .acquire()
            .await
            .map_err(|_| E::from(StoreError::Closed))?;
        run_blocking(f).await
    }
}

async fn run_blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(E::from(StoreError::Task(e.to_string()))))
}

fn file_error(action: &'static str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::File {
        action,
        path: path.to_path_buf(),
        source: Arc::new(e),
    }
}

/// `map_err(index_error("read a URL"))`: names what the index was asked to do.
fn index_error(action: &'static str) -> impl Fn(index::IndexError) -> StoreError {
    move |e| StoreError::Index {
        action,
        source: Arc::new(e),
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
