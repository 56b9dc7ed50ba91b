//! Purge: an operator removes what the mirror holds, by upstream URL, by original (its
//! SHA-256: the file, every variant of it, every URL that points at it) or by article
//! (its pins, and the images no other article pins). Each answers with what it removed,
//! so the caller can log the CDN surrogate keys to invalidate.
//!
//! Index records go in one transaction per table; files are removed after their records
//! (a crash in between leaves an orphan file for `verify`, never a record without a
//! file), and the caches in front are invalidated last. A revalidation running at the same
//! time cannot undo a purge: its write-back only updates a record that still exists.

use std::collections::HashSet;

use serde::Serialize;
use url::Url;

use super::index::{Table, UrlEntry};
use super::{Kind, Store, StoreError, index_error};
use crate::hash::ContentHash;

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// URL records removed.
    pub urls: Vec<String>,
    /// Originals removed (SHA-256 hex).
    pub objects: Vec<String>,
    /// Variants removed.
    pub variants: usize,
    /// URLs that lost the purged article's pin but stay, pinned by another article.
    pub unpinned: Vec<String>,
    /// Upstream hosts of the removed URLs.
    pub hosts: Vec<String>,
    /// The CDN surrogate keys this purge invalidates (filled in by the service layer,
    /// which names keys the way image responses carry them).
    pub surrogate_keys: Vec<String>,
}

impl PurgeReport {
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty() && self.objects.is_empty() && self.unpinned.is_empty()
    }
}

impl Store {
    /// Forgets one URL: the next request fetches it again. The object stays (other URLs
    /// and permalinks may share it).
    pub async fn purge_url(&self, url: &Url) -> Result<PurgeReport, StoreError> {
        let removed = self.forget(url).await?;
        let mut report = PurgeReport::default();
        if removed {
            report.urls.push(url.to_string());
            report.hosts.extend(url.host_str().map(str::to_owned));
        }
        Ok(report)
    }

    /// Removes an original, all its variants, and every URL that points at it.
    pub async fn purge_object(&self, hash: &ContentHash) -> Result<PurgeReport, StoreError> {
        if self.shared.is_some() {
            return self.purge_object_shared(hash).await;
        }
        self.purge_objects(&[hash.to_hex()]).await
    }

    /// Removes `article`'s pin from every URL it pins; URLs left with no pin are purged
    /// with their originals (unless another, unpinned URL still points at the original:
    /// then only the URL goes).
    pub async fn purge_article(&self, article: &str) -> Result<PurgeReport, StoreError> {
        if self.shared.is_some() {
            return self.purge_article_shared(article).await;
        }
        self.purge_article_local(article).await
    }

    /// [`Store::purge_article`] on the local index alone (with a shared store: the local
    /// cleanup after the bucket's).
    pub(super) async fn purge_article_local(
        &self,
        article: &str,
    ) -> Result<PurgeReport, StoreError> {
        let index = self.index.clone();
        let id = article.to_owned();
        let (unpinned, orphaned) = self
            .blocking(move || {
                let snapshot = index.snapshot().map_err(index_error("read a snapshot"))?;
                let mut pinned: Vec<String> = Vec::new();
                snapshot
                    .urls(|u| {
                        if u.pinned_by.contains(&id) {
                            pinned.push(u.url);
                        }
                    })
                    .map_err(index_error("list the URLs"))?;
                let (mut unpinned, mut orphaned) = (Vec::new(), Vec::new());
                for url in pinned {
                    let updated = index
                        .update_url(&url, |e| {
                            e.pinned_by.retain(|a| *a != id);
                            true
                        })
                        .map_err(index_error("remove a pin"))?;
                    match updated {
                        Some(e) if e.pinned_by.is_empty() => orphaned.push(e),
                        Some(e) => unpinned.push(e.url),
                        None => {}
                    }
                }
                Ok::<_, StoreError>((unpinned, orphaned))
            })
            .await?;
        for url in &unpinned {
            self.urls.invalidate(url).await;
        }
        self.stats.changed();
        let objects: Vec<String> = orphaned
            .iter()
            .map(|e| e.sha256.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut report = self.purge_objects_unless_pinned(&objects).await?;
        report.unpinned = unpinned;
        // URLs of this article whose original another pinned URL keeps alive still go.
        for entry in orphaned {
            if !report.urls.contains(&entry.url)
                && let Ok(url) = Url::parse(&entry.url)
            {
                let one = self.purge_url(&url).await?;
                report.urls.extend(one.urls);
                report.hosts.extend(one.hosts);
            }
        }
        report.hosts.sort();
        report.hosts.dedup();
        Ok(report)
    }

    /// Purges the given originals, skipping any that a pinned URL still points at.
    async fn purge_objects_unless_pinned(
        &self,
        objects: &[String],
    ) -> Result<PurgeReport, StoreError> {
        let index = self.index.clone();
        let wanted: HashSet<String> = objects.iter().cloned().collect();
        let keep = self
            .blocking(move || {
                let snapshot = index.snapshot().map_err(index_error("read a snapshot"))?;
                let mut keep = HashSet::new();
                snapshot
                    .urls(|u| {
                        if !u.pinned_by.is_empty() && wanted.contains(&u.sha256) {
                            keep.insert(u.sha256);
                        }
                    })
                    .map_err(index_error("list the URLs"))?;
                Ok::<_, StoreError>(keep)
            })
            .await?;
        let free: Vec<String> = objects
            .iter()
            .filter(|o| !keep.contains(*o))
            .cloned()
            .collect();
        self.purge_objects(&free).await
    }

    /// Removes originals, their variants and URLs from this node's local layers.
    pub(super) async fn purge_objects(
        &self,
        objects: &[String],
    ) -> Result<PurgeReport, StoreError> {
        if objects.is_empty() {
            return Ok(PurgeReport::default());
        }
        let (disk, index) = (self.disk.clone(), self.index.clone());
        let wanted: HashSet<String> = objects.iter().cloned().collect();
        let usage = self.usage.clone();
        let (report, memory_keys) = self
            .blocking(move || {
                let snapshot = index.snapshot().map_err(index_error("read a snapshot"))?;
                let mut urls: Vec<UrlEntry> = Vec::new();
                snapshot
                    .urls(|u| {
                        if wanted.contains(&u.sha256) {
                            urls.push(u);
                        }
                    })
                    .map_err(index_error("list the URLs"))?;
                let mut variants = Vec::new();
                snapshot
                    .variants(|v| {
                        if wanted.contains(&v.original) {
                            variants.push(v);
                        }
                    })
                    .map_err(index_error("list the variants"))?;
                let mut found = Vec::new();
                for sha in &wanted {
                    if let Some(meta) = snapshot
                        .object(sha)
                        .map_err(index_error("read an object"))?
                    {
                        found.push(meta);
                    }
                }
                let url_keys: Vec<String> = urls.iter().map(|u| u.url.clone()).collect();
                let variant_keys: Vec<String> = variants.iter().map(|v| v.name.clone()).collect();
                let object_keys: Vec<String> = found.iter().map(|o| o.sha256.clone()).collect();
                index
                    .remove(Table::Urls, &url_keys)
                    .map_err(index_error("remove URLs"))?;
                index
                    .remove(Table::Variants, &variant_keys)
                    .map_err(index_error("remove variants"))?;
                index
                    .remove(Table::Objects, &object_keys)
                    .map_err(index_error("remove objects"))?;
                let mut memory_keys = Vec::new();
                for v in &variants {
                    if let Some(hash) = ContentHash::parse(&v.name) {
                        let _ = disk.remove(Kind::Variant, &hash);
                    }
                    usage.sub(Kind::Variant, v.bytes);
                    memory_keys.push(format!("v:{}", v.name));
                }
                for o in &found {
                    if let Some(hash) = ContentHash::parse(&o.sha256) {
                        disk.remove(Kind::Object, &hash).map_err(|e| {
                            super::file_error("remove", &disk.path(Kind::Object, &hash), e)
                        })?;
                    }
                    usage.sub(Kind::Object, o.bytes);
                    memory_keys.push(format!("o:{}", o.sha256));
                }
                let mut hosts: Vec<String> = urls
                    .iter()
                    .filter_map(|u| Url::parse(&u.url).ok()?.host_str().map(str::to_owned))
                    .collect();
                hosts.sort();
                hosts.dedup();
                let report = PurgeReport {
                    urls: url_keys,
                    objects: object_keys,
                    variants: variants.len(),
                    unpinned: Vec::new(),
                    hosts,
                    surrogate_keys: Vec::new(),
                };
                Ok::<_, StoreError>((report, memory_keys))
            })
            .await?;
        for key in memory_keys {
            self.memory.invalidate(&key).await;
        }
        for url in &report.urls {
            self.urls.invalidate(url).await;
            self.negative.invalidate(url).await;
        }
        self.stats.changed();
        self.publish_usage();
        Ok(report)
    }
}
