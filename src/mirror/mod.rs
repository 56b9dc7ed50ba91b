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
//!
//! It owns the render pool and the probe cache and delegates storage to [`crate::store`]
//! and pixels to [`crate::transform`]. It knows nothing of HTTP: statuses are
//! [`crate::error`]'s business.

mod lookup;
mod placeholder;
mod variant;

use std::sync::Arc;

use url::Url;

use crate::config::Config;
use crate::hash::ContentHash;
use crate::store::{Blob, Served, Source, Stats, Store, StoreError, UrlEntry};
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
            MirrorError::Store(StoreError::WaitTimeout(_)) => true,
            MirrorError::Pool(PoolError::Overloaded) => true,
            _ => false,
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
}

pub struct Mirror {
    store: Arc<Store>,
    transform: transform::Settings,
    /// Decode/resize/encode run here, never on the runtime's threads.
    pool: transform::Pool,
    /// Header facts per original (by sha256), so repeated variants don't re-probe.
    probes: moka::future::Cache<String, transform::Probe>,
}

impl Mirror {
    /// Opens the store in `config.cache.dir` and starts the render pool.
    pub fn open(config: &Config) -> Result<Mirror, MirrorError> {
        let store = Arc::new(Store::open(config)?);
        let pool = transform::Pool::new(config.transform.workers, config.transform.queue);
        Ok(Mirror {
            store,
            transform: config.transform.clone(),
            pool,
            probes: moka::future::Cache::new(10_000),
        })
    }

    /// Counters that prove work was (not) repeated: fetches, revalidations, renders.
    pub fn stats(&self) -> &Stats {
        self.store.stats()
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
        let spec = self.spec(address.options())?;
        let original = match address {
            Address::Proxy { upstream, .. } => self.original(upstream).await?,
            Address::Permalink { hash, .. } => self.original_by_hash(hash).await?,
        };
        match spec {
            None => Ok(Image {
                blob: original.blob,
                source: original.source,
                vary_accept: false,
            }),
            Some(spec) => self.variant(&original.blob, &spec, accept).await,
        }
    }

    /// The mirrored original for an upstream URL, fetching it on first use.
    pub async fn original(&self, url: &Url) -> Result<Served, MirrorError> {
        Ok(self.store.get_by_url(url).await?)
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

    /// Forgets a mirrored URL: the next request fetches it again. The object stays, since
    /// other URLs and permalinks may share it. Whether the URL was mirrored.
    pub async fn purge(&self, url: &Url) -> Result<bool, MirrorError> {
        Ok(self.store.forget(url).await?)
    }

    /// Forgets a remembered failure of `url`, so the next [`Mirror::original`] asks the
    /// upstream again (a retry would otherwise get the first failure back).
    pub async fn forget_failure(&self, url: &Url) {
        self.store.clear_failure(url).await;
    }
}
