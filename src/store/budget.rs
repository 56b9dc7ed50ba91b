//! The disk budget: how many bytes of originals and variants are on disk, when each was
//! last used, and eviction when the store grows past `cache.max_disk_bytes` or
//! `cache.max_variant_bytes`.
//!
//! Usage is counted in memory (measured from the index at start-up, then kept up to date
//! by every write and removal). Last-use times are noted per served blob at most once a
//! second and written to the index in batches ([`Store::flush_recency`]), never as file
//! atimes. Eviction runs on the blocking pool under one lock, right after a write that
//! crossed the budget (so the store stays within it plus the file being written) and on a
//! timer: variants first, least recently used first; then, only with
//! `cache.evict_originals`, unpinned originals, down to a little below the budget (the
//! pass itself, and what it may hold in memory, is [`super::evict`]'s). A file being served is never affected:
//! reads take whole files into memory, and unlinking does not disturb an open reader.
//!
//! An extra `impl Store` block; the request path only calls `note_use` (`note_served` for
//! answers a front end kept), `added` and `after_write`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::index::Index;
use super::{Blob, Kind, Store, StoreError, evict, index_error, unix_now};
use crate::config::CacheConfig;
use crate::metrics::StoreKind;

/// How often recency is flushed and the budget re-checked in the background.
const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Pending last-use notes kept before new ones are dropped (recency is best effort).
const MAX_PENDING_TOUCHES: usize = 100_000;

/// The limits, from `[cache]`.
#[derive(Debug, Clone)]
pub struct Budget {
    /// 0 = no limit.
    pub max_disk_bytes: u64,
    pub max_variant_bytes: u64,
    pub evict_originals: bool,
    pub refuse_when_full: bool,
    /// A shared store keeps every original (`store.backend = "s3"`): locally they are a
    /// cache, evictable whatever pins them.
    pub backed: bool,
}

impl Budget {
    pub fn from_config(config: &CacheConfig) -> Budget {
        Budget {
            max_disk_bytes: config.max_disk_bytes,
            max_variant_bytes: config.max_variant_bytes,
            evict_originals: config.evict_originals,
            refuse_when_full: config.refuse_when_full,
            backed: false,
        }
    }
}

/// Bytes and counts on disk, by kind, kept current by every write and removal.
#[derive(Debug, Default)]
pub struct Usage {
    pub object_bytes: AtomicU64,
    pub objects: AtomicU64,
    pub variant_bytes: AtomicU64,
    pub variants: AtomicU64,
    pub evicted_objects: AtomicU64,
    pub evicted_variants: AtomicU64,
    /// Originals alone exceed `max_disk_bytes` (eviction could not help).
    pub full: AtomicBool,
}

/// A point-in-time copy of [`Usage`] and the limits, for stats and logs.
#[derive(Debug, Clone, Serialize)]
pub struct UsageReport {
    pub object_bytes: u64,
    pub objects: u64,
    pub variant_bytes: u64,
    pub variants: u64,
    pub evicted_objects: u64,
    pub evicted_variants: u64,
    pub max_disk_bytes: u64,
    pub max_variant_bytes: u64,
    pub full: bool,
}

/// Last-use notes waiting to be written to the index.
#[derive(Debug, Default)]
pub(super) struct Touches {
    objects: HashMap<String, u64>,
    variants: HashMap<String, u64>,
}

impl Usage {
    /// Measures what the index records.
    pub(super) fn measure(index: &Index) -> Result<Usage, StoreError> {
        let usage = Usage::default();
        let snapshot = index.snapshot().map_err(index_error("read a snapshot"))?;
        snapshot
            .objects(|o| usage.add(Kind::Object, o.bytes))
            .map_err(index_error("measure the objects"))?;
        snapshot
            .variants(|v| usage.add(Kind::Variant, v.bytes))
            .map_err(index_error("measure the variants"))?;
        Ok(usage)
    }

    pub(super) fn add(&self, kind: Kind, bytes: u64) {
        let (count, total) = self.counters(kind);
        count.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn sub(&self, kind: Kind, bytes: u64) {
        let (count, total) = self.counters(kind);
        let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            Some(n.saturating_sub(1))
        });
        let _ = total.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            Some(n.saturating_sub(bytes))
        });
    }

    fn counters(&self, kind: Kind) -> (&AtomicU64, &AtomicU64) {
        match kind {
            Kind::Object => (&self.objects, &self.object_bytes),
            Kind::Variant => (&self.variants, &self.variant_bytes),
        }
    }

    pub(super) fn total(&self) -> u64 {
        self.object_bytes.load(Ordering::Relaxed) + self.variant_bytes.load(Ordering::Relaxed)
    }
}

impl Store {
    /// Usage and limits now.
    pub fn usage(&self) -> UsageReport {
        let u = &self.usage;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        UsageReport {
            object_bytes: load(&u.object_bytes),
            objects: load(&u.objects),
            variant_bytes: load(&u.variant_bytes),
            variants: load(&u.variants),
            evicted_objects: load(&u.evicted_objects),
            evicted_variants: load(&u.evicted_variants),
            max_disk_bytes: self.budget.max_disk_bytes,
            max_variant_bytes: self.budget.max_variant_bytes,
            full: u.full.load(Ordering::Relaxed),
        }
    }

    /// Whether new originals are refused (507) because originals alone fill the budget.
    pub(super) fn refuses_new_originals(&self) -> bool {
        self.budget.refuse_when_full && self.usage.full.load(Ordering::Relaxed)
    }

    /// Notes that `blob` was just used. Costs an atomic swap; the note itself is taken at
    /// most once a second per blob.
    pub(super) fn note_use(&self, kind: Kind, blob: &Blob) {
        let now = unix_now();
        if blob.used.swap(now, Ordering::Relaxed) == now {
            return;
        }
        let Ok(mut touches) = self.touches.lock() else {
            return;
        };
        let map = match kind {
            Kind::Object => &mut touches.objects,
            Kind::Variant => &mut touches.variants,
        };
        if map.len() < MAX_PENDING_TOUCHES || map.contains_key(&blob.meta.sha256) {
            map.insert(blob.meta.sha256.clone(), now);
        }
    }

    /// Notes a use of the file `sha256` now, for a front end that served a kept answer
    /// without asking the store (it calls this at most once a second per answer).
    pub fn note_served(&self, kind: Kind, sha256: &str) {
        let now = unix_now();
        let Ok(mut touches) = self.touches.lock() else {
            return;
        };
        let map = match kind {
            Kind::Object => &mut touches.objects,
            Kind::Variant => &mut touches.variants,
        };
        if map.len() < MAX_PENDING_TOUCHES || map.contains_key(sha256) {
            map.insert(sha256.to_owned(), now);
        }
    }

    /// Accounts for the file `name` just written (`wrote`: it was new), then evicts if that
    /// crossed the budget. The file just written is spared: the request that wrote it is
    /// about to serve it, and evicting it would only make the next one fetch or render it
    /// again. So the store stays within its budget plus that one file.
    pub(super) async fn after_write(&self, kind: Kind, name: &str, bytes: u64, wrote: bool) {
        if wrote {
            self.usage.add(kind, bytes);
        }
        if self.over_budget() {
            self.evict_sparing(Some(name)).await;
        }
        self.publish_usage();
    }

    fn over_budget(&self) -> bool {
        let b = &self.budget;
        self.usage.variant_bytes.load(Ordering::Relaxed) > b.max_variant_bytes
            || (b.max_disk_bytes > 0 && self.usage.total() > b.max_disk_bytes)
    }

    /// Starts the background task that flushes recency and re-checks the budget. It holds
    /// only a weak reference, so it ends when the store is dropped. Outside a runtime (an
    /// offline command) there is nothing to start.
    pub fn start_maintenance(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else { return };
                if let Err(e) = store.flush_recency().await {
                    tracing::warn!(error = %crate::error::Chain(&e), "could not record last-use times");
                }
                if store.over_budget() {
                    store.enforce_budget().await;
                }
            }
        });
    }

    /// Writes the pending last-use notes to the index in one transaction.
    pub async fn flush_recency(&self) -> Result<(), StoreError> {
        let pending = match self.touches.lock() {
            Ok(mut touches) => std::mem::take(&mut *touches),
            Err(_) => return Ok(()),
        };
        if pending.objects.is_empty() && pending.variants.is_empty() {
            return Ok(());
        }
        let index = self.index.clone();
        self.blocking(move || {
            let objects: Vec<_> = pending.objects.into_iter().collect();
            let variants: Vec<_> = pending.variants.into_iter().collect();
            index
                .touch(&objects, &variants)
                .map_err(index_error("record last-use times"))
        })
        .await
    }

    /// Evicts until the store is within its budget (or nothing evictable is left). One
    /// eviction at a time; callers that queue behind it find the work done.
    pub async fn enforce_budget(&self) {
        self.evict_sparing(None).await;
    }

    async fn evict_sparing(&self, spare: Option<&str>) {
        let _one = self.evicting.lock().await;
        if !self.over_budget() {
            return;
        }
        if let Err(e) = self.flush_recency().await {
            tracing::warn!(error = %crate::error::Chain(&e), "could not record last-use times before evicting");
        }
        let (disk, index, budget) = (self.disk.clone(), self.index.clone(), self.budget.clone());
        let usage = self.usage_handle();
        let before = self.usage();
        let spare = spare.map(str::to_owned);
        let evicted = self
            .blocking(move || evict::pass(&disk, &index, &budget, &usage, spare.as_deref()))
            .await;
        let after = self.usage();
        self.metrics.evicted(
            StoreKind::Original,
            after.evicted_objects - before.evicted_objects,
        );
        self.metrics.evicted(
            StoreKind::Variant,
            after.evicted_variants - before.evicted_variants,
        );
        self.publish_usage();
        match evicted {
            Ok(evicted) => {
                for key in evicted.memory_keys {
                    self.memory.invalidate(&key).await;
                }
                for url in evicted.urls {
                    self.urls.invalidate(&url).await;
                }
            }
            Err(e) => tracing::error!(error = %crate::error::Chain(&e), "eviction failed"),
        }
    }

    fn usage_handle(&self) -> Arc<Usage> {
        self.usage.clone()
    }
}

/// The pending-notes type, for the store's constructor.
pub(super) fn touches() -> Mutex<Touches> {
    Mutex::new(Touches::default())
}
