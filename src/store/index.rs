//! The crash-safe index (redb, in `index.redb`): which upstream URL is mirrored as which
//! object, what each object and variant is, and when each was last used.
//!
//! redb commits are atomic and durable (copy-on-write pages, checksummed roots), so a
//! crash leaves either the old or the new mapping, never a torn one. Records are JSON
//! so fields can be added without a migration. An object file is always committed
//! before the index names it, so the index never points at bytes that are not there
//! (see `Store::mirror`). Every read-modify-write of a record happens inside one write
//! transaction, so two writers (two pins, a pin and a revalidation, a purge and a
//! revalidation) never lose each other's change.
//!
//! All functions block; the store calls them off the async runtime.

use std::path::Path;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};
use serde::{Deserialize, Serialize};

use super::group_commit::GroupCommit;
use crate::upstream::Validators;

/// Normalised upstream URL → [`UrlEntry`] (JSON).
const URLS: TableDefinition<&str, &[u8]> = TableDefinition::new("urls");
/// SHA-256 hex → [`ObjectMeta`] (JSON).
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
/// Variant name (hex) → [`VariantMeta`] (JSON).
const VARIANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("variants");

/// What is known about one mirrored upstream URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlEntry {
    pub url: String,
    pub sha256: String,
    pub media_type: String,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    /// Unix seconds when this URL was first mirrored.
    pub first_fetched: u64,
    /// Unix seconds when the upstream last confirmed (200 or 304) the mirrored bytes.
    pub last_verified: u64,
    /// Unix seconds of the last revalidation attempt, successful or not.
    pub last_checked: u64,
    pub validators: Validators,
    /// The upstream's status at the last attempt (0: no answer).
    pub last_upstream_status: u16,
    /// Articles that reference this image; a pinned image is never evicted.
    #[serde(default)]
    pub pinned_by: Vec<String>,
}

/// What is known about one stored original.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub sha256: String,
    pub media_type: String,
    pub extension: String,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    /// Unix seconds when the object was first stored; its `Last-Modified`.
    pub created: u64,
    /// Unix seconds of the last use (batched, so up to a flush interval old): the
    /// eviction order.
    #[serde(default)]
    pub last_used: u64,
}

/// What is known about one stored variant: its size, its original, its last use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantMeta {
    pub name: String,
    /// SHA-256 of the original it was rendered from (purging the original purges it).
    pub original: String,
    /// Bytes on disk, trailer included.
    pub bytes: u64,
    pub created: u64,
    #[serde(default)]
    pub last_used: u64,
}

/// The tables, for iteration and removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Urls,
    Objects,
    Variants,
}

impl Table {
    fn definition(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Table::Urls => URLS,
            Table::Objects => OBJECTS,
            Table::Variants => VARIANTS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database: {0}")]
    Db(#[from] redb::Error),
    #[error("index record for {key} is unreadable: {source}")]
    Record {
        key: String,
        source: serde_json::Error,
    },
    /// The batch holding this write panicked (a bug); nothing of it was committed.
    #[error("index write batch failed")]
    Batch,
}

macro_rules! db_err {
    ($e:expr) => {
        $e.map_err(|e| IndexError::Db(e.into()))
    };
}

pub struct Index {
    db: Database,
    /// URL commits and variant records written concurrently share one transaction.
    group: GroupCommit<Write, Result<Written, IndexError>>,
}

/// The writes the request path makes, which [`GroupCommit`] batches. (Unboxed: each is
/// moved once into the queue and out again; a box would only add an allocation.)
#[allow(clippy::large_enum_variant)]
enum Write {
    Url {
        object: ObjectMeta,
        entry: UrlEntry,
        only_if_present: bool,
    },
    Variant(VariantMeta),
}

#[allow(clippy::large_enum_variant)]
enum Written {
    Url(Option<UrlEntry>),
    Variant,
}

impl Index {
    /// Opens (or creates) the index with the default page cache (64 MiB).
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        Index::open_with_cache(path, 64 * 1024 * 1024)
    }

    /// Opens (or creates) the index with a page cache of `cache_bytes`. redb's own default
    /// is 1 GiB, which a mirror would slowly fill: the cache is part of the memory budget.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Index, IndexError> {
        let db = db_err!(Database::builder().set_cache_size(cache_bytes).create(path))?;
        // Create the tables up front so readers never see "table does not exist".
        let txn = db_err!(db.begin_write())?;
        for table in [URLS, OBJECTS, VARIANTS] {
            db_err!(txn.open_table(table))?;
        }
        db_err!(txn.commit())?;
        Ok(Index {
            db,
            group: GroupCommit::default(),
        })
    }

    /// Runs `write` in the next group commit: one transaction for every write queued
    /// while the previous one committed. If that transaction fails, each of its writes is
    /// retried alone, so one bad write fails only itself.
    fn grouped(&self, write: Write) -> Result<Written, IndexError> {
        self.group.run(
            write,
            |writes| {
                if writes.len() > 1 {
                    let batch = (|| {
                        let txn = db_err!(self.db.begin_write())?;
                        let outs = writes
                            .iter()
                            .map(|w| apply(&txn, w))
                            .collect::<Result<Vec<_>, _>>()?;
                        db_err!(txn.commit())?;
                        Ok::<_, IndexError>(outs)
                    })();
                    if let Ok(outs) = batch {
                        return outs.into_iter().map(Ok).collect();
                    }
                }
                writes
                    .iter()
                    .map(|w| {
                        let txn = db_err!(self.db.begin_write())?;
                        let out = apply(&txn, w)?;
                        db_err!(txn.commit())?;
                        Ok(out)
                    })
                    .collect()
            },
            || Err(IndexError::Batch),
        )
    }

    pub fn url(&self, url: &str) -> Result<Option<UrlEntry>, IndexError> {
        self.get(URLS, url)
    }

    pub fn object(&self, sha256: &str) -> Result<Option<ObjectMeta>, IndexError> {
        self.get(OBJECTS, sha256)
    }

    pub fn variant(&self, name: &str) -> Result<Option<VariantMeta>, IndexError> {
        self.get(VARIANTS, name)
    }

    /// Records an object (unless known) and the URL that now points at it, in one
    /// transaction. The URL's pins are the union of `entry`'s and those the index holds,
    /// so a pin made while a fetch ran survives it. With `only_if_present`, a URL that is
    /// no longer in the index (purged meanwhile) is not written back: `None`.
    pub fn commit_url(
        &self,
        object: &ObjectMeta,
        entry: &UrlEntry,
        only_if_present: bool,
    ) -> Result<Option<UrlEntry>, IndexError> {
        let write = Write::Url {
            object: object.clone(),
            entry: entry.clone(),
            only_if_present,
        };
        match self.grouped(write)? {
            Written::Url(entry) => Ok(entry),
            Written::Variant => Err(IndexError::Batch),
        }
    }

    /// Writes a URL's record as given (a copy of the shared store's, which is
    /// authoritative: its pins are not merged with the local ones), and `object` unless
    /// known.
    pub fn put_url(
        &self,
        object: Option<&ObjectMeta>,
        entry: &UrlEntry,
    ) -> Result<UrlEntry, IndexError> {
        let txn = db_err!(self.db.begin_write())?;
        {
            if let Some(object) = object {
                let mut objects = db_err!(txn.open_table(OBJECTS))?;
                if db_err!(objects.get(object.sha256.as_str()))?.is_none() {
                    db_err!(objects.insert(object.sha256.as_str(), to_json(object).as_slice()))?;
                }
            }
            let mut urls = db_err!(txn.open_table(URLS))?;
            db_err!(urls.insert(entry.url.as_str(), to_json(entry).as_slice()))?;
        }
        db_err!(txn.commit())?;
        Ok(entry.clone())
    }

    /// Read-modify-write of one URL's entry in one transaction: `change` edits it and says
    /// whether to write. `None` when the URL is not in the index (nothing is written).
    pub fn update_url(
        &self,
        url: &str,
        change: impl FnOnce(&mut UrlEntry) -> bool,
    ) -> Result<Option<UrlEntry>, IndexError> {
        let txn = db_err!(self.db.begin_write())?;
        let updated = {
            let mut urls = db_err!(txn.open_table(URLS))?;
            match read::<UrlEntry>(&urls, url)? {
                None => None,
                Some(mut entry) => {
                    if change(&mut entry) {
                        db_err!(urls.insert(url, to_json(&entry).as_slice()))?;
                    }
                    Some(entry)
                }
            }
        };
        db_err!(txn.commit())?;
        Ok(updated)
    }

    /// Records a variant (or replaces its record).
    pub fn put_variant(&self, meta: &VariantMeta) -> Result<(), IndexError> {
        self.grouped(Write::Variant(meta.clone())).map(|_| ())
    }

    /// Records an object that arrived without a URL (an import, a repair).
    pub fn put_object(&self, meta: &ObjectMeta) -> Result<(), IndexError> {
        let txn = db_err!(self.db.begin_write())?;
        {
            let mut objects = db_err!(txn.open_table(OBJECTS))?;
            db_err!(objects.insert(meta.sha256.as_str(), to_json(meta).as_slice()))?;
        }
        db_err!(txn.commit())
    }

    /// Stores a batch of last-use times in one transaction (one fsync for many uses).
    /// Keys no longer in the index are skipped.
    pub fn touch(
        &self,
        objects: &[(String, u64)],
        variants: &[(String, u64)],
    ) -> Result<(), IndexError> {
        let txn = db_err!(self.db.begin_write())?;
        {
            let mut table = db_err!(txn.open_table(OBJECTS))?;
            for (key, at) in objects {
                if let Some(mut meta) = read::<ObjectMeta>(&table, key)? {
                    meta.last_used = meta.last_used.max(*at);
                    db_err!(table.insert(key.as_str(), to_json(&meta).as_slice()))?;
                }
            }
            let mut table = db_err!(txn.open_table(VARIANTS))?;
            for (key, at) in variants {
                if let Some(mut meta) = read::<VariantMeta>(&table, key)? {
                    meta.last_used = meta.last_used.max(*at);
                    db_err!(table.insert(key.as_str(), to_json(&meta).as_slice()))?;
                }
            }
        }
        db_err!(txn.commit())
    }

    /// Removes records by key from one table, in one transaction; how many were there.
    pub fn remove(&self, table: Table, keys: &[String]) -> Result<usize, IndexError> {
        let txn = db_err!(self.db.begin_write())?;
        let mut removed = 0;
        {
            let mut t = db_err!(txn.open_table(table.definition()))?;
            for key in keys {
                if db_err!(t.remove(key.as_str()))?.is_some() {
                    removed += 1;
                }
            }
        }
        db_err!(txn.commit())?;
        Ok(removed)
    }

    /// Forgets a URL (an operator's purge). The object stays: other URLs may share it.
    pub fn remove_url(&self, url: &str) -> Result<bool, IndexError> {
        Ok(self.remove(Table::Urls, &[url.to_owned()])? == 1)
    }

    /// Number of mirrored URLs.
    pub fn url_count(&self) -> Result<u64, IndexError> {
        let txn = db_err!(self.db.begin_read())?;
        let urls = db_err!(txn.open_table(URLS))?;
        db_err!(urls.len())
    }

    /// A consistent, read-only view of the whole index as of now: what export, verify,
    /// stats and eviction iterate over while writers go on.
    pub fn snapshot(&self) -> Result<Snapshot, IndexError> {
        Ok(Snapshot {
            txn: db_err!(self.db.begin_read())?,
        })
    }

    fn get<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, IndexError> {
        let txn = db_err!(self.db.begin_read())?;
        let table = db_err!(txn.open_table(table))?;
        read(&table, key)
    }
}

/// A read transaction: every iteration sees the same state.
pub struct Snapshot {
    txn: ReadTransaction,
}

impl Snapshot {
    pub fn urls(&self, each: impl FnMut(UrlEntry)) -> Result<(), IndexError> {
        self.scan(URLS, each)
    }

    pub fn objects(&self, each: impl FnMut(ObjectMeta)) -> Result<(), IndexError> {
        self.scan(OBJECTS, each)
    }

    pub fn variants(&self, each: impl FnMut(VariantMeta)) -> Result<(), IndexError> {
        self.scan(VARIANTS, each)
    }

    pub fn url(&self, url: &str) -> Result<Option<UrlEntry>, IndexError> {
        let table = db_err!(self.txn.open_table(URLS))?;
        read(&table, url)
    }

    pub fn object(&self, sha256: &str) -> Result<Option<ObjectMeta>, IndexError> {
        let table = db_err!(self.txn.open_table(OBJECTS))?;
        read(&table, sha256)
    }

    pub fn variant(&self, name: &str) -> Result<Option<VariantMeta>, IndexError> {
        let table = db_err!(self.txn.open_table(VARIANTS))?;
        read(&table, name)
    }

    fn scan<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        mut each: impl FnMut(T),
    ) -> Result<(), IndexError> {
        let table = db_err!(self.txn.open_table(table))?;
        for row in db_err!(table.iter())? {
            let (key, value) = db_err!(row)?;
            let record =
                serde_json::from_slice(value.value()).map_err(|source| IndexError::Record {
                    key: key.value().to_string(),
                    source,
                })?;
            each(record);
        }
        Ok(())
    }
}

fn read<T: for<'de> Deserialize<'de>>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, IndexError> {
    let Some(record) = db_err!(table.get(key))? else {
        return Ok(None);
    };
    serde_json::from_slice(record.value())
        .map(Some)
        .map_err(|source| IndexError::Record {
            key: key.to_string(),
            source,
        })
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Reverse lookups, for `imgmirror rewrite --undo` and `imgmirror audit` (which meet
/// `/m/<sha256>` permalinks and need the URLs mirrored as those objects).
impl Index {
    /// Every URL entry whose object is one of `sha256s`: one pass over the `urls` table.
    pub fn urls_naming(
        &self,
        sha256s: &std::collections::HashSet<String>,
    ) -> Result<Vec<UrlEntry>, IndexError> {
        let txn = db_err!(self.db.begin_read())?;
        let urls = db_err!(txn.open_table(URLS))?;
        let mut out = Vec::new();
        for row in db_err!(urls.iter())? {
            let (key, record) = db_err!(row)?;
            let entry: UrlEntry =
                serde_json::from_slice(record.value()).map_err(|source| IndexError::Record {
                    key: key.value().to_string(),
                    source,
                })?;
            if sha256s.contains(&entry.sha256) {
                out.push(entry);
            }
        }
        Ok(out)
    }
}

/// One write of a group commit, inside its transaction. A URL commit records the object
/// (unless known) and the URL; the URL's pins are the union of the entry's and those the
/// index holds, so a pin made while a fetch ran survives it.
fn apply(txn: &redb::WriteTransaction, write: &Write) -> Result<Written, IndexError> {
    match write {
        Write::Url {
            object,
            entry,
            only_if_present,
        } => {
            let mut urls = db_err!(txn.open_table(URLS))?;
            let current: Option<UrlEntry> = read(&urls, &entry.url)?;
            if *only_if_present && current.is_none() {
                return Ok(Written::Url(None));
            }
            let mut objects = db_err!(txn.open_table(OBJECTS))?;
            if db_err!(objects.get(object.sha256.as_str()))?.is_none() {
                db_err!(objects.insert(object.sha256.as_str(), to_json(object).as_slice()))?;
            }
            let mut entry = entry.clone();
            for pin in current.into_iter().flat_map(|c| c.pinned_by) {
                if !entry.pinned_by.contains(&pin) {
                    entry.pinned_by.push(pin);
                }
            }
            entry.pinned_by.sort();
            db_err!(urls.insert(entry.url.as_str(), to_json(&entry).as_slice()))?;
            Ok(Written::Url(Some(entry)))
        }
        Write::Variant(meta) => {
            let mut variants = db_err!(txn.open_table(VARIANTS))?;
            db_err!(variants.insert(meta.name.as_str(), to_json(meta).as_slice()))?;
            Ok(Written::Variant)
        }
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
