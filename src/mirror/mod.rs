//! The service layer: what imgmirror does, for every front end. The HTTP server, the
//! prefetcher and `POST /prefetch` all call these plain async functions and learn what
//! happened from their typed results, never from a response.
//!
//! - [`Mirror::original`]: an upstream URL → its mirrored original (fetched once, kept).
//! - [`Mirror::original_by_hash`]: a content hash → the original (`/m/<sha256>`).
//! - [`Mirror::variant`]: an original + a [`Spec`] + the client's `Accept` → a rendition
//!   (probe cached, format negotiated, rendered once on the bounded pool, kept).
//! - [`Mirror::image`]: an [`Address`] (what a URL names) → the image to serve.
//! - [`Mirror::pin`], [`Mirror::purge`], [`Mirror::forget_failure`]: keeping and dropping.
//! - `*_admitted`: the same, with the fetches and renders a request starts counted against
//!   its client's [`Admission`] ([`ClientLimits`]); hits never take a permit.
//!
//! It owns the render pool and the probe cache and delegates storage to [`crate::store`]
//! and pixels to [`crate::transform`]. It knows nothing of HTTP: statuses are
//! [`crate::error`]'s business.

mod admission;
mod background;
mod keys;
mod lookup;
mod placeholder;
mod variant;

pub use admission::{Admission, ClientLimits, client_key};
pub use background::AvifMode;
pub use keys::{purge_keys, surrogate_keys};

use std::sync::Arc;

use url::Url;

use crate::config::Config;
use crate::hash::ContentHash;
use crate::metrics::Metrics;
use crate::store::archive::ArchiveReport;
use crate::store::inventory::Inventory;
use crate::store::memory::entry_weight;
use crate::store::{
    Blob, PurgeReport, Served, Source, Stats, Store, StoreError, UrlEntry, UsageReport,
};
use crate::transform::{self, PoolError, Spec, SpecError, TransformError};
use crate::upstream::UpstreamError;
use crate::url_grammar::{Address, Options};

/// Why the service could not give what was asked. Clone, because concurrent requests for
/// one fetch or one render share its single outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Transform(#[from] TransformError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("no mirrored object {0}")]
    UnknownObject(String),
    /// A render of this original ran past the deadline recently; other options of it are
    /// refused for a while rather than tying up another worker.
    #[error("original {0} is too expensive to render (a render of it timed out recently)")]
    TooExpensive(String),
}

impl From<UpstreamError> for MirrorError {
    fn from(e: UpstreamError) -> Self {
        MirrorError::Store(StoreError::Upstream(e))
    }
}

impl MirrorError {
    /// Worth asking again later: the upstream or our own capacity failed for now (timeouts,
    /// 5xx, 429, resets, a full render queue), as opposed to a definite answer.
    pub fn is_transient(&self) -> bool {
        match self {
            MirrorError::Store(StoreError::Upstream(e)) => e.is_transient(),
            MirrorError::Store(
                StoreError::WaitTimeout(_) | StoreError::ClientBusy { .. } | StoreError::Shared(_),
            ) => true,
            MirrorError::Pool(PoolError::Overloaded) => true,
            _ => false,
        }
    }
}

/// What a purge removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// One upstream URL's record; the object stays for other URLs and permalinks.
    Url(Url),
    /// An original, all its variants, and every URL that points at it.
    Object(ContentHash),
    /// An article's pins, and the images no other article pins.
    Article(String),
}

impl std::fmt::Display for Purge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Purge::Url(url) => write!(f, "url {url}"),
            Purge::Object(hash) => write!(f, "sha256 {hash}"),
            Purge::Article(id) => write!(f, "article {id}"),
        }
    }
}

/// An image ready to serve: an original or a variant.
#[derive(Debug, Clone)]
pub struct Image {
    pub blob: Blob,
    pub source: Source,
    /// The format depended on `Accept`: a response needs `Vary: Accept`.
    pub vary_accept: bool,
    /// SHA-256 of the original this image is (or was rendered from): what a CDN purge of
    /// "everything derived from one image" names.
    pub original_sha256: String,
    /// Articles that pin the original's URL (empty when served by hash or not pinned).
    pub pinned_by: Vec<String>,
    /// Unix second until which serving this again needs no revalidation of the upstream
    /// URL (`u64::MAX` by hash): how long a front end may keep the answer it built.
    pub fresh_until: u64,
    /// Served in place of a better rendition (AVIF) that is being rendered in the
    /// background: a front end should let caches keep it only briefly.
    pub provisional: bool,
}

pub struct Mirror {
    store: Arc<Store>,
    transform: transform::Settings,
    /// Decode/resize/encode run here, never on the runtime's threads.
    pool: transform::Pool,
    /// Header facts per original (by sha256), so repeated variants don't re-probe.
    probes: moka::future::Cache<String, transform::Probe>,
    /// Originals (by sha256) a render of which timed out, for [`EXPENSIVE_FOR`].
    expensive: moka::future::Cache<String, ()>,
    /// `cache.fresh_secs`, for [`Image::fresh_until`].
    fresh_secs: u64,
    /// AVIF renditions rendered off the request path, on their own low-priority pool.
    background: background::Background,
}

/// How long an original whose render timed out is refused (422 `too-expensive`).
const EXPENSIVE_FOR: std::time::Duration = std::time::Duration::from_secs(600);

impl Mirror {
    /// Opens the store in `config.cache.dir` and starts the render pool.
    pub fn open(config: &Config) -> Result<Mirror, MirrorError> {
        let store = Arc::new(Store::open(config, Arc::new(Metrics::new()))?);
        store.start_maintenance();
        let pool = transform::Pool::from_settings(&config.transform);
        let background = background::Background::start(&store, &config.transform);
        Ok(Mirror {
            background,
            store,
            transform: config.transform.clone(),
            pool,
            // Both keyed by sha256, bounded by bytes like every cache (see store::memory).
            probes: moka::future::Cache::builder()
                .max_capacity(config.cache.probe_cache_bytes)
                .weigher(|key: &String, _: &transform::Probe| {
                    entry_weight(key.capacity() + std::mem::size_of::<transform::Probe>())
                })
                .build(),
            expensive: moka::future::Cache::builder()
                .max_capacity(config.cache.expensive_bytes)
                .weigher(|key: &String, _: &()| entry_weight(key.capacity()))
                .time_to_live(EXPENSIVE_FOR)
                .build(),
            fresh_secs: config.cache.fresh_secs,
        })
    }

    /// Counters that prove work was (not) repeated: fetches, revalidations, renders.
    pub fn stats(&self) -> &Stats {
        self.store.stats()
    }

    /// Bumped after every change to what a URL or hash serves (pin, purge, a URL moved
    /// by revalidation or re-fetched): an answer built while this stayed the same may be
    /// served again (see `server::hot`).
    pub fn generation(&self) -> u64 {
        self.store
            .stats()
            .changes
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Notes for the disk budget's recency that `image` was served again from an answer a
    /// front end kept: the file served and the original it derives from.
    pub fn note_served(&self, image_sha256: &str, original_sha256: &str) {
        use crate::store::Kind;
        if image_sha256 == original_sha256 {
            self.store.note_served(Kind::Object, original_sha256);
        } else {
            self.store.note_served(Kind::Variant, image_sha256);
            self.store.note_served(Kind::Object, original_sha256);
        }
    }

    /// The series this mirror records into (and `/metrics` shows).
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.store.metrics()
    }

    /// Whether the store can take writes and the index answers (`/readyz`).
    pub async fn ready(&self) -> Result<(), MirrorError> {
        Ok(self.store.check_ready().await?)
    }

    /// Parses transform options; `None` when there are none (the original is wanted).
    pub fn spec(&self, options: &Options) -> Result<Option<Spec>, MirrorError> {
        let pairs = options.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        Ok(Spec::from_query(pairs, &self.transform)?)
    }

    /// What `address` names, for a client that sends `accept`: the original, or with
    /// options the variant. Options are checked before anything is fetched, so a bad one
    /// costs the upstream nothing.
    pub async fn image(
        &self,
        address: &Address,
        accept: Option<&str>,
    ) -> Result<Image, MirrorError> {
        self.image_with(address, accept, AvifMode::Offer, &Admission::unlimited())
            .await
    }

    /// [`Mirror::image`] for a client: a first fetch or a render it starts is counted
    /// against `admission` (and refused, `StoreError::ClientBusy`, past its limit).
    pub async fn image_admitted(
        &self,
        address: &Address,
        accept: Option<&str>,
        admission: &Admission,
    ) -> Result<Image, MirrorError> {
        self.image_with(address, accept, AvifMode::Offer, admission)
            .await
    }

    /// [`Mirror::image_admitted`], with what to do about AVIF spelled out (the prefetcher
    /// waits for it, or leaves it out).
    pub async fn image_with(
        &self,
        address: &Address,
        accept: Option<&str>,
        avif: AvifMode,
        admission: &Admission,
    ) -> Result<Image, MirrorError> {
        let spec = self.spec(address.options())?;
        let original = match address {
            Address::Proxy { upstream, .. } => self.original_admitted(upstream, admission).await?,
            Address::Permalink { hash, .. } => self.original_by_hash(hash).await?,
        };
        let pinned_by = original
            .entry
            .as_ref()
            .map(|e| e.pinned_by.clone())
            .unwrap_or_default();
        let fresh_until = original
            .entry
            .as_ref()
            .map_or(u64::MAX, |e| e.last_checked.saturating_add(self.fresh_secs))
            .min(self.store.trusted_until());
        let mut image = match spec {
            None => Image {
                original_sha256: original.blob.meta.sha256.clone(),
                blob: original.blob,
                source: original.source,
                vary_accept: false,
                pinned_by: Vec::new(),
                fresh_until,
                provisional: false,
            },
            Some(spec) => {
                self.variant_with(&original.blob, &spec, accept, avif, admission)
                    .await?
            }
        };
        image.pinned_by = pinned_by;
        image.fresh_until = fresh_until;
        Ok(image)
    }

    /// The mirrored original for an upstream URL, fetching it on first use.
    pub async fn original(&self, url: &Url) -> Result<Served, MirrorError> {
        Ok(self.store.get_by_url(url).await?)
    }

    /// [`Mirror::original`], with a first fetch counted against `admission`.
    pub async fn original_admitted(
        &self,
        url: &Url,
        admission: &Admission,
    ) -> Result<Served, MirrorError> {
        Ok(self.store.get_by_url_admitted(url, admission).await?)
    }

    /// A mirrored original by its content hash.
    pub async fn original_by_hash(&self, hash: &ContentHash) -> Result<Served, MirrorError> {
        self.store
            .get_by_hash(hash)
            .await?
            .ok_or_else(|| MirrorError::UnknownObject(hash.to_hex()))
    }

    /// Records that `article` references the mirrored `url`; `None` when it is not
    /// mirrored (nothing to pin).
    pub async fn pin(
        &self,
        url: &Url,
        article: &str,
    ) -> Result<Option<Arc<UrlEntry>>, MirrorError> {
        Ok(self.store.pin(url, article).await?)
    }

    /// Removes what `what` names and says what went (see [`Purge`]).
    pub async fn purge(&self, what: &Purge) -> Result<PurgeReport, MirrorError> {
        let mut report = match what {
            Purge::Url(url) => self.store.purge_url(url).await?,
            Purge::Object(hash) => self.store.purge_object(hash).await?,
            Purge::Article(id) => self.store.purge_article(id).await?,
        };
        let article = match what {
            Purge::Article(id) => Some(id.as_str()),
            _ => None,
        };
        report.surrogate_keys = purge_keys(&report.objects, article);
        tracing::info!(
            purge = %what,
            urls = report.urls.len(),
            objects = report.objects.len(),
            variants = report.variants,
            // The CDN surrogate keys this purge invalidates.
            surrogate_keys = %report.surrogate_keys.join(" "),
            "purged"
        );
        Ok(report)
    }

    /// Bytes and counts on disk, and the budget.
    pub fn usage(&self) -> UsageReport {
        self.store.usage()
    }

    /// What the store holds, counted from one consistent snapshot (off the runtime).
    pub async fn inventory(&self, top_hosts: usize) -> Result<Inventory, MirrorError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.inventory(top_hosts))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
            .map_err(MirrorError::from)
    }

    /// Writes a consistent export of the mirror to `out` while it keeps serving. Blocks:
    /// run it on a blocking thread.
    pub fn export_blocking(
        &self,
        out: impl std::io::Write,
        with_variants: bool,
    ) -> Result<ArchiveReport, MirrorError> {
        Ok(self.store.export_to(out, with_variants)?)
    }

    /// Forgets a remembered failure of `url`, so the next [`Mirror::original`] asks the
    /// upstream again (a retry would otherwise get the first failure back).
    pub async fn forget_failure(&self, url: &Url) {
        self.store.clear_failure(url).await;
    }
}
