//! What the store tells operators: readiness (`/readyz`, the shared store's reachability
//! included), the store gauges known at start-up, upstream fetches counted and timed where
//! they happen, and the local store's inventory and export.
//!
//! An extra `impl Store` block, apart from the request path in `store/mod.rs`. It records
//! into the mirror's [`Metrics`]; it decides nothing about what is stored.

use std::sync::Arc;
use std::time::Instant;

use url::Url;

use super::{Store, StoreError, file_error, index_error};
use crate::metrics::{FetchOutcome, Metrics, StoreKind};
use crate::upstream::{Fetched, UpstreamError, Validators};

impl Store {
    /// What the store holds (see [`super::inventory`]). Blocks: call it off the runtime.
    pub fn inventory(&self, top_hosts: usize) -> Result<super::inventory::Inventory, StoreError> {
        super::inventory::Inventory::take(&self.index, self.disk.root(), &self.budget, top_hosts)
    }

    /// Streams a consistent export of this store (see [`super::archive`]) to `out`, while the
    /// server keeps serving. Blocks: call it off the runtime.
    pub fn export_to(
        &self,
        out: impl std::io::Write,
        with_variants: bool,
    ) -> Result<super::archive::ArchiveReport, StoreError> {
        super::archive::export(&self.index, &self.disk, out, with_variants)
    }

    /// The series this store records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Ready to serve: a probe file can be created in `tmp/` (so commits can start), the
    /// index answers a read transaction, and a shared store (s3) answers a read. The error
    /// names what failed.
    pub async fn check_ready(&self) -> Result<(), StoreError> {
        self.check_shared_ready().await?;
        let (disk, index) = (self.disk.clone(), self.index.clone());
        self.blocking(move || {
            disk.check_writable()
                .map_err(|e| file_error("write a probe file in", &disk.tmp_dir(), e))?;
            index.url_count().map_err(index_error("read"))?;
            Ok(())
        })
        .await
    }

    /// [`crate::upstream::Fetcher::fetch`], counted by outcome and timed; a conditional
    /// fetch is a revalidation.
    pub(super) async fn fetch(
        &self,
        url: &Url,
        conditional: Option<&Validators>,
    ) -> Result<Fetched, UpstreamError> {
        if conditional.is_some() {
            self.metrics.revalidation();
        }
        let started = Instant::now();
        let result = self.fetcher.fetch(url, conditional).await;
        let outcome = match &result {
            Ok(Fetched::Image(_)) => FetchOutcome::Ok,
            Ok(Fetched::NotModified(_)) => FetchOutcome::NotModified,
            Err(e) => fetch_outcome(e),
        };
        self.metrics
            .upstream_fetch(outcome, started.elapsed().as_secs_f64());
        result
    }
}

impl Store {
    /// Sets the store gauges from the usage counters (after every write, eviction and
    /// purge; they are atomics, so this is cheap).
    pub(super) fn publish_usage(&self) {
        let u = self.usage();
        self.metrics
            .store_usage(StoreKind::Original, u.objects, u.object_bytes);
        self.metrics
            .store_usage(StoreKind::Variant, u.variants, u.variant_bytes);
    }
}

fn fetch_outcome(e: &UpstreamError) -> FetchOutcome {
    match e {
        UpstreamError::NotFound { .. } => FetchOutcome::NotFound,
        UpstreamError::Timeout { .. } => FetchOutcome::Timeout,
        UpstreamError::Forbidden(_) => FetchOutcome::Forbidden,
        UpstreamError::Overloaded | UpstreamError::RateLimited { .. } => FetchOutcome::Overloaded,
        UpstreamError::TooLarge { .. }
        | UpstreamError::NotAnImage { .. }
        | UpstreamError::Corrupt { .. } => FetchOutcome::Rejected,
        UpstreamError::Status { .. }
        | UpstreamError::Transport { .. }
        | UpstreamError::TooManyRedirects { .. } => FetchOutcome::Error,
    }
}
