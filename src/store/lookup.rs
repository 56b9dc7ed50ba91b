//! Read-only questions about the mirror that never fetch: is this URL mirrored (and as
//! what), which URLs were mirrored as these objects, and does the upstream still answer
//! (a bodiless conditional request through the fetcher). `imgmirror audit` and `rewrite
//! --undo` ask them.
//!
//! An extra `impl Store` block, apart from the request path in `store/mod.rs`.

use std::collections::HashSet;
use std::sync::Arc;

use url::Url;

use super::{Store, StoreError, UrlEntry, index_error};
use crate::upstream::{Checked, UpstreamError, Validators};

impl Store {
    /// The index entry of a mirrored URL, or `None`; never fetches, never revalidates.
    pub async fn lookup(&self, url: &Url) -> Result<Option<Arc<UrlEntry>>, StoreError> {
        let key = url.to_string();
        if let Some(entry) = self.urls.get(&key).await {
            return Ok(Some(entry));
        }
        let index = self.index.clone();
        let entry = self
            .blocking(move || index.url(&key).map_err(index_error("read a URL")))
            .await?;
        Ok(entry.map(Arc::new))
    }

    /// Every URL entry mirrored as one of the objects `sha256s` (hex).
    pub async fn urls_naming(&self, sha256s: HashSet<String>) -> Result<Vec<UrlEntry>, StoreError> {
        let index = self.index.clone();
        self.blocking(move || {
            index
                .urls_naming(&sha256s)
                .map_err(index_error("list the URLs of objects"))
        })
        .await
    }

    /// Asks the upstream of `url` whether it still answers, conditionally on `validators`,
    /// without downloading it (see [`crate::upstream::Fetcher::check`]).
    pub async fn check_upstream(
        &self,
        url: &Url,
        validators: Option<&Validators>,
    ) -> Result<Checked, UpstreamError> {
        self.fetcher.check(url, validators).await
    }
}
