//! The store's in-memory caches and what they weigh: every one is a moka cache bounded
//! by a byte budget the config names (`cache.memory_bytes`, `cache.url_map_bytes`,
//! `cache.negative_bytes`), never by an entry count, because one entry's size is the
//! client's or the upstream's choice (a URL up to 8 KiB, its records and errors).
//!
//! Weights are conservative estimates of the heap an entry holds: key and value
//! allocations (capacities, not lengths) plus [`ENTRY_OVERHEAD`] for moka's own
//! bookkeeping. The caches themselves are used by the rest of `store`; this module only
//! builds them and weighs.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use super::{Blob, StoreError, UrlEntry};

/// Bytes moka and the allocator spend per entry beyond key and value: the `Arc`ed key
/// and value entry, access/write-order deque nodes, timestamps, the hash-table slot.
/// Measured at 330–370 bytes on moka 0.12 (200 000 entries with 64-byte keys and
/// 8-byte values, with and without a TTL); rounded up.
pub const ENTRY_OVERHEAD: usize = 384;

/// A moka weight from an entry's heap estimate (saturating: a weight is a u32).
pub fn entry_weight(heap_bytes: usize) -> u32 {
    u32::try_from(heap_bytes.saturating_add(ENTRY_OVERHEAD)).unwrap_or(u32::MAX)
}

fn key_bytes(key: &String) -> usize {
    key.capacity()
}

/// Heap bytes of a URL's index record (behind its `Arc`).
pub(super) fn url_entry_bytes(entry: &UrlEntry) -> usize {
    let v = &entry.validators;
    let optional = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
    std::mem::size_of::<UrlEntry>()
        + 16 // Arc counts
        + entry.url.capacity()
        + entry.sha256.capacity()
        + entry.media_type.capacity()
        + optional(&v.etag)
        + optional(&v.last_modified)
        + optional(&v.cache_control)
        + entry.pinned_by.capacity() * std::mem::size_of::<String>()
        + entry.pinned_by.iter().map(String::capacity).sum::<usize>()
}

/// Heap bytes of a remembered failure: its size plus the text it carries (URLs, upstream
/// messages), which its `Debug` form spells out in full (and then some).
pub(super) fn error_bytes(error: &StoreError) -> usize {
    std::mem::size_of::<StoreError>() + format!("{error:?}").len()
}

/// Heap bytes of an object or variant in memory: the body and its metadata.
fn blob_bytes(blob: &Blob) -> usize {
    let meta = &blob.meta;
    blob.bytes.len()
        + 64 // the shared Bytes header, the Arcs of meta and last-use
        + std::mem::size_of::<super::ObjectMeta>()
        + meta.sha256.capacity()
        + meta.media_type.capacity()
        + meta.extension.capacity()
}

/// Hot objects and variants (`o:<sha256>`, `v:<name>`), within `bytes`.
pub(super) fn blobs(bytes: u64) -> Cache<String, Blob> {
    Cache::builder()
        .max_capacity(bytes)
        .weigher(|key: &String, blob: &Blob| entry_weight(key_bytes(key) + blob_bytes(blob)))
        .build()
}

/// URL → index record (also the single-flight point of first fetches), within `bytes`.
pub(super) fn url_map(bytes: u64, ttl: Option<Duration>) -> Cache<String, Arc<UrlEntry>> {
    let builder =
        Cache::builder()
            .max_capacity(bytes)
            .weigher(|key: &String, entry: &Arc<UrlEntry>| {
                entry_weight(key_bytes(key) + url_entry_bytes(entry))
            });
    match ttl {
        Some(ttl) => builder.time_to_live(ttl).build(),
        None => builder.build(),
    }
}

/// Keys alone (hashes confirmed in a shared store), for `ttl`, within `bytes`.
pub(super) fn keys(bytes: u64, ttl: Duration) -> Cache<String, ()> {
    Cache::builder()
        .max_capacity(bytes)
        .time_to_live(ttl)
        .weigher(|key: &String, _: &()| entry_weight(key_bytes(key)))
        .build()
}

/// URL → failure, for `ttl_secs` (0: off), within `bytes`.
pub(super) fn negative(bytes: u64, ttl_secs: u64) -> Cache<String, StoreError> {
    Cache::builder()
        .max_capacity(if ttl_secs == 0 { 0 } else { bytes })
        .time_to_live(Duration::from_secs(ttl_secs.max(1)))
        .weigher(|key: &String, error: &StoreError| {
            entry_weight(key_bytes(key) + error_bytes(error))
        })
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{UpstreamError, Validators};

    fn entry(url: &str, etag: Option<String>) -> UrlEntry {
        UrlEntry {
            url: url.into(),
            sha256: "0".repeat(64),
            media_type: "image/jpeg".into(),
            bytes: 1,
            width: 1,
            height: 1,
            first_fetched: 0,
            last_verified: 0,
            last_checked: 0,
            validators: Validators {
                etag,
                ..Validators::default()
            },
            last_upstream_status: 200,
            pinned_by: vec!["post-1".into()],
        }
    }

    #[test]
    fn weights_grow_with_what_the_client_and_upstream_chose() {
        let short = url_entry_bytes(&entry("http://a.test/x.jpg", None));
        let long_url = "http://a.test/".to_string() + &"x".repeat(8000);
        let long = url_entry_bytes(&entry(&long_url, Some("\"e\"".repeat(80))));
        assert!(long >= short + 7990 + 240, "{short} {long}");
        let failure = StoreError::Upstream(UpstreamError::Status {
            status: 500,
            url: long_url.clone(),
        });
        assert!(error_bytes(&failure) > 8000);
        assert_eq!(entry_weight(0) as usize, ENTRY_OVERHEAD);
        assert_eq!(entry_weight(usize::MAX), u32::MAX);
    }

    #[tokio::test]
    async fn the_url_map_holds_its_byte_budget_whatever_the_url_lengths() {
        let budget = 1024 * 1024;
        let map = url_map(budget, None);
        for i in 0..2000 {
            let url = format!("http://a.test/{i}/{}", "y".repeat(4000));
            map.insert(url.clone(), Arc::new(entry(&url, None))).await;
        }
        map.run_pending_tasks().await;
        assert!(map.weighted_size() <= budget, "{}", map.weighted_size());
        // Each entry weighs more than its 4 KB URL, twice (key and record): about 120
        // fit, not the 2000 an entry count would have kept.
        assert!(map.entry_count() < 130, "{}", map.entry_count());
        assert!(map.entry_count() > 60, "{}", map.entry_count());
    }

    #[tokio::test]
    async fn the_negative_cache_holds_its_byte_budget_and_can_be_off() {
        let budget = 256 * 1024;
        let failures = negative(budget, 30);
        for i in 0..1000 {
            let url = format!("http://a.test/{i}/{}", "z".repeat(2000));
            let failure = StoreError::Upstream(UpstreamError::Status {
                status: 500,
                url: url.clone(),
            });
            failures.insert(url, failure).await;
        }
        failures.run_pending_tasks().await;
        assert!(
            failures.weighted_size() <= budget,
            "{}",
            failures.weighted_size()
        );
        assert!(failures.entry_count() < 100, "{}", failures.entry_count());
        let off = negative(budget, 0);
        off.insert("u".into(), StoreError::Closed).await;
        off.run_pending_tasks().await;
        assert_eq!(off.entry_count(), 0);
    }
}
