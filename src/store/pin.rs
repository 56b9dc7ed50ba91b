//! Pins: marking mirrored URLs as referenced by an article (`UrlEntry::pinned_by`), so that
//! no disk budget evicts what a published post depends on, and letting a prefetch retry a
//! URL whose last failure the negative cache still remembers.
//!
//! An extra `impl Store` block, kept apart from the request path in `store/mod.rs`: it only
//! touches the index entry of an already mirrored URL and the two caches in front of it.

use std::sync::Arc;

use url::Url;

use super::{Store, StoreError, UrlEntry, index_error};

impl Store {
    /// Records that `article` references the mirrored `url`. Returns the updated entry, or
    /// `None` when the URL is not mirrored (there is nothing to pin). Pinning twice is a
    /// no-op, so re-running a prefetch never grows the list.
    pub async fn pin(&self, url: &Url, article: &str) -> Result<Option<Arc<UrlEntry>>, StoreError> {
        let key = url.to_string();
        if let Some(pinned) = self.pin_shared(&key, article).await? {
            let Some(entry) = pinned else {
                return Ok(None);
            };
            let entry = Arc::new(entry);
            self.urls.insert(key, entry.clone()).await;
            return Ok(Some(entry));
        }
        let (index, k, article_id) = (self.index.clone(), key.clone(), article.to_owned());
        // Read-modify-write of one record in one write transaction (redb serialises them),
        // so two articles pinning one URL at once both keep their pin.
        let updated = self
            .blocking(move || {
                index
                    .update_url(&k, |entry| {
                        if entry.pinned_by.contains(&article_id) {
                            return false;
                        }
                        entry.pinned_by.push(article_id);
                        entry.pinned_by.sort();
                        true
                    })
                    .map_err(index_error("record a pin"))
            })
            .await?;
        let Some(entry) = updated else {
            return Ok(None);
        };
        let entry = Arc::new(entry);
        // The `urls` cache must not keep serving the unpinned record. (A revalidation that
        // writes back an older record re-reads the pins from the index first.)
        self.urls.insert(key, entry.clone()).await;
        self.stats.changed();
        Ok(Some(entry))
    }

    /// Forgets a remembered failure of `url`, so the next `get_by_url` asks the upstream
    /// again. A prefetch retrying a transient failure needs this: otherwise the negative
    /// cache would answer every retry with the first failure.
    pub async fn clear_failure(&self, url: &Url) {
        self.negative.invalidate(&url.to_string()).await;
    }
}
