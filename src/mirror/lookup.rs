//! Read-only service functions for the link-rot audit and `rewrite --undo`: what the mirror
//! holds for a URL or an object, and whether the upstream still answers. None of them
//! fetches an image or changes the store.

use std::collections::HashSet;
use std::sync::Arc;

use url::Url;

use super::{Mirror, MirrorError};
use crate::store::UrlEntry;
use crate::upstream::{Checked, UpstreamError, Validators};

impl Mirror {
    /// The mirrored entry of `url` (its object, pins, validators), or `None`; never fetches.
    pub async fn lookup(&self, url: &Url) -> Result<Option<Arc<UrlEntry>>, MirrorError> {
        Ok(self.store.lookup(url).await?)
    }

    /// The URLs mirrored as the objects `sha256s` (hex): what `/m/` permalinks stand for.
    pub async fn urls_naming(
        &self,
        sha256s: HashSet<String>,
    ) -> Result<Vec<UrlEntry>, MirrorError> {
        Ok(self.store.urls_naming(sha256s).await?)
    }

    /// Whether the upstream of `url` still answers, by a conditional request on
    /// `validators` that reads no body.
    pub async fn check_upstream(
        &self,
        url: &Url,
        validators: Option<&Validators>,
    ) -> Result<Checked, UpstreamError> {
        self.store.check_upstream(url, validators).await
    }
}
