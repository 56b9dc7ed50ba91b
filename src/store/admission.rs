//! Admission to expensive work: an [`Admission`] is one client's share of upstream
//! fetches and renders (`server.per_client_expensive`), handed down with a request and
//! consulted only at the point where the work would start, on a miss. A hit never asks.
//!
//! It is defined here, at the lowest layer that takes permits (the store starts fetches;
//! the service layer starts renders), so nothing below has to call up to learn a limit.
//! Who the client is and how admissions are kept per client is the service layer's
//! business (`mirror::ClientLimits`); the store only tries to take a permit.
//!
//! Also the store's admitted read path, an extra `impl Store` block:
//! [`Store::get_by_url_admitted`] and the single-flight rule for permits (only the
//! request that leads a first fetch takes one; followers wait for free).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

use super::{Blob, ContentHash, Served, Source, Store, StoreError, UrlEntry};

/// One client's permits for expensive work, or none to count (the prefetcher, an admin).
#[derive(Debug, Clone, Default)]
pub struct Admission {
    permits: Option<Arc<Semaphore>>,
    limit: usize,
}

/// Held while the work runs; dropping it gives the permit back.
#[derive(Debug)]
pub struct Admitted(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Admission {
    /// Work that is never refused: the prefetcher's, the background revalidation's.
    pub fn unlimited() -> Admission {
        Admission::default()
    }

    /// At most `limit` at once from `permits` (shared by every request of one client).
    pub fn limited(permits: Arc<Semaphore>, limit: usize) -> Admission {
        Admission {
            permits: Some(permits),
            limit,
        }
    }

    /// A permit now, or [`StoreError::ClientBusy`]: the client waits in its own queue
    /// (retrying after `Retry-After`), not in ours.
    pub fn try_admit(&self) -> Result<Admitted, StoreError> {
        match &self.permits {
            None => Ok(Admitted(None)),
            Some(permits) => permits
                .clone()
                .try_acquire_owned()
                .map(|permit| Admitted(Some(permit)))
                .map_err(|_| StoreError::ClientBusy { limit: self.limit }),
        }
    }
}

impl Store {
    /// [`Store::get_by_url`], with a first fetch counted against `admission` (a hit, or
    /// waiting for another request's fetch, takes nothing).
    pub async fn get_by_url_admitted(
        self: &Arc<Self>,
        url: &Url,
        admission: &Admission,
    ) -> Result<Served, StoreError> {
        let fetched_here = Mutex::new(None);
        let entry = self.entry(url, &fetched_here, admission).await?;
        // This request fetched it: serve the bytes just committed, not a re-read (the
        // memory layer may have declined to keep them).
        let committed = fetched_here.lock().ok().and_then(|mut f| f.take());
        if let Some(Some(blob)) = committed {
            return Ok(Served {
                blob,
                source: Source::Upstream,
                entry: Some(entry),
            });
        }
        let hash = ContentHash::parse(&entry.sha256).ok_or_else(|| StoreError::BadRecord {
            url: url.to_string(),
            sha256: entry.sha256.clone(),
        })?;
        match self.object(&hash).await {
            Ok((blob, source)) => {
                let fetched = fetched_here.lock().is_ok_and(|f| f.is_some());
                if !fetched {
                    self.maybe_revalidate(url, &entry);
                }
                let source = if fetched { Source::Upstream } else { source };
                Ok(Served {
                    blob,
                    source,
                    entry: Some(entry),
                })
            }
            Err(StoreError::Missing(_)) => {
                let _admitted = admission.try_admit()?;
                self.refetch_missing(url, &entry).await
            }
            Err(e) => Err(e),
        }
    }

    /// The index entry for `url`: from memory, the index, or a first fetch, coalescing
    /// concurrent first fetches into one. Only the request that leads a first fetch takes
    /// a permit of its `admission`; when the leader was refused, the followers that shared
    /// its refusal try again (once each) rather than answer 429 for another client.
    async fn entry(
        &self,
        url: &Url,
        fetched_here: &Mutex<Option<Option<Blob>>>,
        admission: &Admission,
    ) -> Result<Arc<UrlEntry>, StoreError> {
        let refused_here = AtomicBool::new(false);
        match self
            .entry_once(url, fetched_here, admission, &refused_here)
            .await
        {
            Err(StoreError::ClientBusy { .. }) if !refused_here.load(Ordering::Relaxed) => {
                self.entry_once(url, fetched_here, admission, &refused_here)
                    .await
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_shared_counted_and_returned() {
        let shared = Arc::new(Semaphore::new(2));
        let (a, b) = (
            Admission::limited(shared.clone(), 2),
            Admission::limited(shared, 2),
        );
        let first = a.try_admit().unwrap();
        let _second = b.try_admit().unwrap();
        assert!(matches!(
            a.try_admit(),
            Err(StoreError::ClientBusy { limit: 2 })
        ));
        drop(first);
        assert!(b.try_admit().is_ok());
        let open = Admission::unlimited();
        let held: Vec<_> = (0..100).map(|_| open.try_admit().unwrap()).collect();
        assert_eq!(held.len(), 100);
    }
}
