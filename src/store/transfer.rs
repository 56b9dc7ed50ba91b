//! Whole-mirror work on either backend, for the offline commands: `imgmirror migrate`
//! (copy a mirror from one backend to another: disk → S3 and back), and `verify` and
//! `stats` against a bucket.
//!
//! A [`Side`] is one backend opened for bulk work: a data directory (its index and files)
//! or a bucket. Migration copies originals (skipping keys the destination already has:
//! content addressing makes the name the hash, so a rerun resumes where it stopped),
//! then variants (disk → bucket only: the bucket does not record a variant's original,
//! and a variant is re-rendered on demand anyway), then URL records (pins merged, never
//! dropped). Every byte copied is re-hashed on the way (both reads check content against
//! name); a source file that fails is reported, not copied.
//!
//! Disk work runs on the blocking pool; nothing here knows HTTP or the upstream.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::index::{Index, UrlEntry, VariantMeta};
use super::inventory::{HostShare, Inventory, Tally};
use super::shared::{Shared, Space};
use super::tiered::{open_shared, shared_error};
use super::verify::VerifyReport;
use super::{Budget, Disk, Kind, StoreError, file_error, index_error, rebuild_meta, unix_now};
use crate::config::Config;
use crate::hash::ContentHash;

/// One backend, opened for bulk work.
pub enum Side {
    Disk { index: Arc<Index>, disk: Arc<Disk> },
    Shared(Arc<Shared>),
}

/// What a migration copied.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MigrateReport {
    pub objects_copied: u64,
    /// Already at the destination (a resumed or repeated run).
    pub objects_present: u64,
    pub variants_copied: u64,
    pub variants_present: u64,
    pub urls: u64,
    pub bytes: u64,
    /// Source keys that could not be copied (missing, or content not matching the name).
    pub failed: Vec<String>,
}

impl Side {
    /// The backend `config` names: `store.backend = "s3"` is the bucket (checked for
    /// conditional writes), else `cache.dir` (its index lock taken: not next to a server).
    pub fn open(config: &Config) -> Result<Side, StoreError> {
        if let Some(shared) = open_shared(&config.store)? {
            return Ok(Side::Shared(shared));
        }
        let dir = &config.cache.dir;
        std::fs::create_dir_all(dir).map_err(|e| file_error("create", dir, e))?;
        let index = Index::open(&dir.join("index.redb")).map_err(index_error("open"))?;
        let disk = Disk::open(dir).map_err(|e| file_error("open the data directory", dir, e))?;
        Ok(Side::Disk {
            index: Arc::new(index),
            disk: Arc::new(disk),
        })
    }

    fn space(kind: Kind) -> Space {
        match kind {
            Kind::Object => Space::Objects,
            Kind::Variant => Space::Variants,
        }
    }

    /// Names (hex) of every original or variant, with the variants' originals when known.
    async fn names(&self, kind: Kind) -> Result<Vec<(String, Option<String>)>, StoreError> {
        match self {
            Side::Shared(shared) => Ok(shared
                .list(Self::space(kind))
                .await
                .map_err(shared_error)?
                .into_iter()
                .map(|l| (l.name, None))
                .collect()),
            Side::Disk { index, .. } => {
                let index = index.clone();
                blocking(move || {
                    let snapshot = index.snapshot().map_err(index_error("read a snapshot"))?;
                    let mut names = Vec::new();
                    match kind {
                        Kind::Object => snapshot.objects(|o| names.push((o.sha256, None))),
                        Kind::Variant => {
                            snapshot.variants(|v| names.push((v.name, Some(v.original))))
                        }
                    }
                    .map_err(index_error("list the records"))?;
                    Ok(names)
                })
                .await
            }
        }
    }

    /// Content of a key, checked against its name; `None` when absent or damaged.
    async fn read(&self, kind: Kind, hash: ContentHash) -> Result<Option<Bytes>, StoreError> {
        match self {
            Side::Shared(shared) => shared
                .get(Self::space(kind), &hash)
                .await
                .map_err(shared_error),
            Side::Disk { disk, .. } => {
                let disk = disk.clone();
                blocking(move || {
                    disk.read(kind, &hash)
                        .map(|b| b.map(Bytes::from))
                        .map_err(|e| file_error("read", &disk.path(kind, &hash), e))
                })
                .await
            }
        }
    }

    async fn has(&self, kind: Kind, hash: ContentHash) -> Result<bool, StoreError> {
        match self {
            Side::Shared(shared) => shared
                .exists(Self::space(kind), &hash)
                .await
                .map_err(shared_error),
            Side::Disk { disk, index } => {
                let (disk, index) = (disk.clone(), index.clone());
                blocking(move || {
                    let recorded = match kind {
                        Kind::Object => index.object(&hash.to_hex()).map(|o| o.is_some()),
                        Kind::Variant => index.variant(&hash.to_hex()).map(|v| v.is_some()),
                    }
                    .map_err(index_error("read a record"))?;
                    Ok(recorded && disk.path(kind, &hash).exists())
                })
                .await
            }
        }
    }

    async fn write(
        &self,
        kind: Kind,
        hash: ContentHash,
        bytes: Bytes,
        original: Option<String>,
    ) -> Result<(), StoreError> {
        match self {
            Side::Shared(shared) => shared
                .put(Self::space(kind), &hash, bytes)
                .await
                .map(|_| ())
                .map_err(shared_error),
            Side::Disk { disk, index } => {
                let (disk, index) = (disk.clone(), index.clone());
                blocking(move || {
                    disk.write(kind, &hash, &bytes)
                        .map_err(|e| file_error("write", &disk.path(kind, &hash), e))?;
                    match kind {
                        Kind::Object => {
                            let meta = rebuild_meta(&hash, &bytes)?;
                            index.put_object(&meta)
                        }
                        Kind::Variant => index.put_variant(&VariantMeta {
                            name: hash.to_hex(),
                            original: original.unwrap_or_default(),
                            bytes: bytes.len() as u64 + 32,
                            created: unix_now(),
                            last_used: unix_now(),
                        }),
                    }
                    .map_err(index_error("record a copy"))
                })
                .await
            }
        }
    }

    /// Every URL record.
    pub async fn urls(&self) -> Result<Vec<UrlEntry>, StoreError> {
        match self {
            Side::Shared(shared) => shared.urls().await.map_err(shared_error),
            Side::Disk { index, .. } => {
                let index = index.clone();
                blocking(move || {
                    let snapshot = index.snapshot().map_err(index_error("read a snapshot"))?;
                    let mut urls = Vec::new();
                    snapshot
                        .urls(|u| urls.push(u))
                        .map_err(index_error("list the URLs"))?;
                    Ok(urls)
                })
                .await
            }
        }
    }

    /// Writes a URL record, keeping the pins the destination already has.
    async fn merge_url(&self, entry: UrlEntry) -> Result<(), StoreError> {
        let merge = |current: Option<&UrlEntry>, mut new: UrlEntry| {
            for pin in current.iter().flat_map(|c| c.pinned_by.iter()) {
                if !new.pinned_by.contains(pin) {
                    new.pinned_by.push(pin.clone());
                }
            }
            new.pinned_by.sort();
            new
        };
        match self {
            Side::Shared(shared) => shared
                .update_url(&entry.url.clone(), |current| {
                    Some(merge(current, entry.clone())).filter(|new| current != Some(new))
                })
                .await
                .map(|_| ())
                .map_err(shared_error),
            Side::Disk { index, .. } => {
                let index = index.clone();
                blocking(move || {
                    let current = index.url(&entry.url).map_err(index_error("read a URL"))?;
                    let new = merge(current.as_ref(), entry);
                    index
                        .put_url(None, &new)
                        .map(|_| ())
                        .map_err(index_error("record a URL"))
                })
                .await
            }
        }
    }
}

/// Copies the mirror in `from` to `to`: originals, variants (disk → bucket), then URL
/// records, skipping what `to` already has. `progress` is called once per key.
pub async fn migrate(
    from: &Side,
    to: &Side,
    progress: &(dyn Fn() + Sync),
) -> Result<MigrateReport, StoreError> {
    let mut report = MigrateReport::default();
    let mut copied_objects = HashSet::new();
    let kinds: &[Kind] = match (from, to) {
        (Side::Disk { .. }, Side::Shared(_)) | (Side::Disk { .. }, Side::Disk { .. }) => {
            &[Kind::Object, Kind::Variant]
        }
        _ => &[Kind::Object],
    };
    for &kind in kinds {
        for (name, original) in from.names(kind).await? {
            progress();
            let Some(hash) = ContentHash::parse(&name) else {
                report.failed.push(format!("{}/{name}", kind.dir()));
                continue;
            };
            let (copied, present) = match kind {
                Kind::Object => (&mut report.objects_copied, &mut report.objects_present),
                Kind::Variant => (&mut report.variants_copied, &mut report.variants_present),
            };
            if to.has(kind, hash).await? {
                *present += 1;
                copied_objects.insert(name);
                continue;
            }
            match from.read(kind, hash).await? {
                Some(bytes) => {
                    report.bytes += bytes.len() as u64;
                    to.write(kind, hash, bytes, original).await?;
                    *copied += 1;
                    copied_objects.insert(name);
                }
                None => report.failed.push(format!("{}/{name}", kind.dir())),
            }
        }
    }
    for entry in from.urls().await? {
        progress();
        // A URL whose original did not make it would point at nothing.
        if !copied_objects.contains(&entry.sha256) {
            report.failed.push(entry.url);
            continue;
        }
        to.merge_url(entry).await?;
        report.urls += 1;
    }
    Ok(report)
}

/// `imgmirror verify` against a bucket: every original and variant re-hashed against its
/// name, every URL record checked against its original. With `repair`, damaged keys are
/// moved under `quarantine/` (never deleted); URL records of missing originals are kept
/// (the URL is fetched again on its next request, with its pins).
pub async fn verify_shared(
    shared: &Shared,
    repair: bool,
    progress: &(dyn Fn() + Sync),
) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport {
        repaired: repair,
        ..VerifyReport::default()
    };
    let mut present = HashSet::new();
    for (space, kind) in [
        (Space::Objects, Kind::Object),
        (Space::Variants, Kind::Variant),
    ] {
        for listed in shared.list(space).await.map_err(shared_error)? {
            progress();
            match kind {
                Kind::Object => report.objects += 1,
                Kind::Variant => report.variants += 1,
            }
            let key = format!("{}/{}", kind.dir(), listed.name);
            let Some(hash) = ContentHash::parse(&listed.name) else {
                report.orphans.push(key);
                continue;
            };
            if shared
                .get(space, &hash)
                .await
                .map_err(shared_error)?
                .is_some()
            {
                present.insert(listed.name);
                continue;
            }
            report.mismatched.push(key);
            if repair {
                shared
                    .quarantine(space, &listed.name)
                    .await
                    .map_err(shared_error)?;
            }
        }
    }
    for entry in shared.urls().await.map_err(shared_error)? {
        if !present.contains(&entry.sha256) {
            report.missing.push(entry.url);
        }
    }
    Ok(report)
}

/// `imgmirror stats` of a bucket, in the shape of the local [`Inventory`].
pub async fn inventory_shared(
    shared: &Shared,
    budget: &Budget,
    top: usize,
) -> Result<Inventory, StoreError> {
    let mut inventory = Inventory {
        max_disk_bytes: budget.max_disk_bytes,
        max_variant_bytes: budget.max_variant_bytes,
        ..Inventory::default()
    };
    let mut sizes = HashMap::new();
    for listed in shared.list(Space::Objects).await.map_err(shared_error)? {
        inventory.originals = add(inventory.originals, listed.bytes);
        sizes.insert(listed.name, listed.bytes);
    }
    for listed in shared.list(Space::Variants).await.map_err(shared_error)? {
        inventory.variants = add(inventory.variants, listed.bytes);
    }
    let mut pinned = HashSet::new();
    let mut hosts: HashMap<String, HostShare> = HashMap::new();
    for entry in shared.urls().await.map_err(shared_error)? {
        inventory.urls += 1;
        let bytes = sizes.get(&entry.sha256).copied().unwrap_or(0);
        if !entry.pinned_by.is_empty() && pinned.insert(entry.sha256.clone()) {
            inventory.pinned = add(inventory.pinned, bytes);
        }
        let host = url::Url::parse(&entry.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let share = hosts.entry(host.clone()).or_insert(HostShare {
            host,
            urls: 0,
            bytes: 0,
        });
        share.urls += 1;
        share.bytes += bytes;
    }
    let mut top_hosts: Vec<HostShare> = hosts.into_values().collect();
    top_hosts.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.host.cmp(&b.host)));
    top_hosts.truncate(top);
    inventory.top_hosts = top_hosts;
    inventory.disk_bytes = inventory.originals.bytes + inventory.variants.bytes;
    Ok(inventory)
}

fn add(mut tally: Tally, bytes: u64) -> Tally {
    tally.count += 1;
    tally.bytes += bytes;
    tally
}

/// A directory to spool a bucket through (export from and import into a bucket go by
/// way of a local copy, so the tar format and its checks stay one implementation).
pub fn spool_dir(base: &Path) -> std::path::PathBuf {
    base.join(format!(
        "imgmirror-spool-{}-{}",
        std::process::id(),
        unix_now()
    ))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StoreError::Task(e.to_string())))
}
