//! Purge with a shared store (`store.backend = "s3"`): the bucket is cleaned first (its
//! URL records, the original, the variants this node knows of), then this node's local
//! layers. Other nodes see a purge when their local trust in the URL record runs out
//! (`store.shared_recheck_secs`): the record is gone from the bucket, so they forget
//! theirs and the next request fetches the URL again.
//!
//! Variants another node rendered and this one never saw stay in the bucket: their names
//! are recipes of the purged original, so nothing can ask for them again (the original is
//! looked up first). A record deleted while another node pins it is gone: a purge wins.
//!
//! An extra `impl Store` block, beside `purge.rs` (the local purge it ends with).

use std::collections::HashSet;

use url::Url;

use super::shared::Space;
use super::tiered::shared_error;
use super::{PurgeReport, Store, StoreError, index_error};
use crate::hash::ContentHash;

impl Store {
    pub(super) async fn purge_object_shared(
        &self,
        hash: &ContentHash,
    ) -> Result<PurgeReport, StoreError> {
        let Some(shared) = self.shared.clone() else {
            return self.purge_objects(&[hash.to_hex()]).await;
        };
        let hex = hash.to_hex();
        let records = shared.urls().await.map_err(shared_error)?;
        let mut urls = Vec::new();
        for record in records.into_iter().filter(|r| r.sha256 == hex) {
            shared.delete_url(&record.url).await.map_err(shared_error)?;
            urls.push(record.url);
        }
        let index = self.index.clone();
        let original = hex.clone();
        let variants = self
            .blocking(move || {
                let snapshot = index.snapshot().map_err(index_error("read a snapshot"))?;
                let mut names = Vec::new();
                snapshot
                    .variants(|v| {
                        if v.original == original {
                            names.push(v.name);
                        }
                    })
                    .map_err(index_error("list the variants"))?;
                Ok::<_, StoreError>(names)
            })
            .await?;
        for name in &variants {
            shared
                .delete(Space::Variants, name)
                .await
                .map_err(shared_error)?;
        }
        let had_object = shared
            .exists(Space::Objects, hash)
            .await
            .map_err(shared_error)?;
        shared
            .delete(Space::Objects, &hex)
            .await
            .map_err(shared_error)?;
        let mut report = self.purge_objects(std::slice::from_ref(&hex)).await?;
        for url in urls {
            self.urls.invalidate(&url).await;
            self.negative.invalidate(&url).await;
            if !report.urls.contains(&url) {
                report.hosts.extend(
                    Url::parse(&url)
                        .ok()
                        .and_then(|u| u.host_str().map(str::to_owned)),
                );
                report.urls.push(url);
            }
        }
        if had_object && !report.objects.contains(&hex) {
            report.objects.push(hex);
        }
        report.variants = report.variants.max(variants.len());
        report.urls.sort();
        report.hosts.sort();
        report.hosts.dedup();
        Ok(report)
    }

    pub(super) async fn purge_article_shared(
        &self,
        article: &str,
    ) -> Result<PurgeReport, StoreError> {
        let Some(shared) = self.shared.clone() else {
            return self.purge_article_local(article).await;
        };
        let records = shared.urls().await.map_err(shared_error)?;
        let mut report = PurgeReport::default();
        let mut orphaned = Vec::new();
        for record in records
            .iter()
            .filter(|r| r.pinned_by.iter().any(|a| a == article))
        {
            let updated = shared
                .update_url(&record.url, |current| {
                    let current = current?;
                    let mut new = current.clone();
                    new.pinned_by.retain(|a| a != article);
                    (new.pinned_by.len() != current.pinned_by.len()).then_some(new)
                })
                .await
                .map_err(shared_error)?;
            match updated {
                Some(e) if e.pinned_by.is_empty() => orphaned.push(e),
                Some(e) => report.unpinned.push(e.url),
                None => {}
            }
        }
        // Originals another URL still pins stay; only the orphaned URL goes.
        let kept: HashSet<&str> = records
            .iter()
            .filter(|r| {
                r.pinned_by.iter().any(|a| a != article) && !orphaned.iter().any(|o| o.url == r.url)
            })
            .map(|r| r.sha256.as_str())
            .collect();
        let mut purged_objects = HashSet::new();
        for entry in &orphaned {
            if kept.contains(entry.sha256.as_str()) {
                shared.delete_url(&entry.url).await.map_err(shared_error)?;
                report.urls.push(entry.url.clone());
                report.hosts.extend(
                    Url::parse(&entry.url)
                        .ok()
                        .and_then(|u| u.host_str().map(str::to_owned)),
                );
            } else if purged_objects.insert(entry.sha256.clone())
                && let Some(hash) = ContentHash::parse(&entry.sha256)
            {
                let one = self.purge_object_shared(&hash).await?;
                report.urls.extend(one.urls);
                report.objects.extend(one.objects);
                report.variants += one.variants;
                report.hosts.extend(one.hosts);
            }
        }
        // The local copies of the records follow the bucket's.
        self.purge_article_local(article).await?;
        for url in report.unpinned.iter().chain(&report.urls) {
            self.urls.invalidate(url).await;
        }
        report.urls.sort();
        report.urls.dedup();
        report.hosts.sort();
        report.hosts.dedup();
        Ok(report)
    }
}
