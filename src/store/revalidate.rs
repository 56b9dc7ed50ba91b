//! Revalidation: a mirrored URL older than `cache.fresh_secs` is checked with its upstream in
//! the background (a conditional request with the stored validators) while the mirrored copy
//! is served. A 304 or the same bytes refresh the record; different bytes become a new object
//! that the URL moves to; a failure leaves the mirrored copy in place.
//!
//! An extra `impl Store` block, apart from the request path in `store/mod.rs`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use url::Url;

use super::{Store, StoreError, UrlEntry, index_error, unix_now};
use crate::error::Chain;
use crate::hash::ContentHash;
use crate::upstream::{Fetched, UpstreamError, Validators};

impl Store {
    /// Starts a background revalidation when the entry is older than `fresh_secs`,
    /// unless one is already running for this URL.
    pub(super) fn maybe_revalidate(self: &Arc<Self>, url: &Url, entry: &Arc<UrlEntry>) {
        let age = unix_now().saturating_sub(entry.last_checked);
        if age < self.fresh.as_secs() {
            return;
        }
        let key = url.to_string();
        let started = match self.revalidating.lock() {
            Ok(mut running) => running.insert(key.clone()),
            Err(_) => false,
        };
        if !started {
            return;
        }
        let (store, url, entry) = (self.clone(), url.clone(), entry.clone());
        tokio::spawn(async move {
            store.revalidate(&url, &entry).await;
            if let Ok(mut running) = store.revalidating.lock() {
                running.remove(&key);
            }
        });
    }

    async fn revalidate(&self, url: &Url, old: &UrlEntry) {
        self.stats.revalidations.fetch_add(1, Ordering::Relaxed);
        let now = unix_now();
        let mut entry = old.clone();
        entry.last_checked = now;
        match self.fetch(url, Some(&old.validators)).await {
            Ok(Fetched::NotModified(validators)) => {
                entry.last_verified = now;
                entry.last_upstream_status = 304;
                merge_validators(&mut entry.validators, validators);
                tracing::debug!(%url, "upstream confirmed the mirrored copy (304)");
            }
            Ok(Fetched::Image(image)) => {
                let same = {
                    let bytes = image.bytes.clone();
                    self.blocking(move || Ok::<_, StoreError>(ContentHash::of(&bytes)))
                        .await
                }
                .map(|h| h.to_hex() == old.sha256)
                .unwrap_or(false);
                if same {
                    entry.last_verified = now;
                    entry.last_upstream_status = image.status;
                    entry.validators = image.validators;
                } else {
                    match self.commit(url, image, Some(old), true).await {
                        Ok(Some((moved, _))) => {
                            tracing::info!(%url, from = %old.sha256, to = %moved.sha256, "upstream image changed; the URL now points at the new object");
                            self.urls.insert(url.to_string(), Arc::new(moved)).await;
                            self.stats.changed();
                        }
                        Ok(None) => {
                            tracing::info!(%url, "purged during revalidation; not recorded");
                        }
                        Err(e) => {
                            tracing::error!(%url, error = %e, "could not store the changed upstream image; still serving the mirrored copy");
                        }
                    }
                    return;
                }
            }
            Err(e) => {
                entry.last_upstream_status = match &e {
                    UpstreamError::NotFound { status, .. }
                    | UpstreamError::Status { status, .. } => *status,
                    _ => 0,
                };
                tracing::warn!(%url, error = %e, "upstream failed on revalidation; serving the mirrored copy");
            }
        }
        let index = self.index.clone();
        let recorded = self
            .blocking(move || {
                // Only the revalidation's own fields are written, onto the record as it is
                // now: a pin added meanwhile stays, and a URL purged meanwhile (or moved to
                // another object) is left as it is rather than resurrected.
                index
                    .update_url(&entry.url.clone(), |current| {
                        if current.sha256 != entry.sha256 {
                            return false;
                        }
                        current.last_checked = entry.last_checked;
                        current.last_verified = entry.last_verified;
                        current.last_upstream_status = entry.last_upstream_status;
                        current.validators = entry.validators;
                        true
                    })
                    .map_err(index_error("record a revalidation"))
            })
            .await;
        match recorded {
            Ok(Some(entry)) => self.urls.insert(url.to_string(), Arc::new(entry)).await,
            Ok(None) => tracing::info!(%url, "purged during revalidation; not recorded"),
            Err(e) => {
                tracing::error!(%url, error = %Chain(&e), "could not record the revalidation")
            }
        }
    }
}

fn merge_validators(into: &mut Validators, from: Validators) {
    if from.etag.is_some() {
        into.etag = from.etag;
    }
    if from.last_modified.is_some() {
        into.last_modified = from.last_modified;
    }
    if from.cache_control.is_some() {
        into.cache_control = from.cache_control;
    }
}
