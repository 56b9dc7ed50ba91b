//! The crash-safe index (redb, in `index.redb`): which upstream URL is mirrored as which
//! object, and what each object is.
//!
//! redb commits are atomic and durable (copy-on-write pages, checksummed roots), so a
//! crash leaves either the old or the new mapping, never a torn one. Records are JSON
//! so fields can be added without a migration. An object file is always committed
//! before the index names it, so the index never points at bytes that are not there
//! (see `Store::mirror`).
//!
//! All functions block; the store calls them off the async runtime.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::upstream::Validators;

/// Normalised upstream URL → [`UrlEntry`] (JSON).
const URLS: TableDefinition<&str, &[u8]> = TableDefinition::new("urls");
/// SHA-256 hex → [`ObjectMeta`] (JSON).
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");

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
}

macro_rules! db_err {
    ($e:expr) => {
        $e.map_err(|e| IndexError::Db(e.into()))
    };
}

pub struct Index {
    db: Database,
}

impl Index {
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        let db = db_err!(Database::create(path))?;
        // Create the tables up front so readers never see "table does not exist".
        let txn = db_err!(db.begin_write())?;
        db_err!(txn.open_table(URLS))?;
        db_err!(txn.open_table(OBJECTS))?;
        db_err!(txn.commit())?;
        Ok(Index { db })
    }

    pub fn url(&self, url: &str) -> Result<Option<UrlEntry>, IndexError> {
        self.get(URLS, url)
    }

    pub fn object(&self, sha256: &str) -> Result<Option<ObjectMeta>, IndexError> {
        self.get(OBJECTS, sha256)
    }

    /// Records an object and the URL that now points at it, in one transaction.
    pub fn put(&self, object: &ObjectMeta, entry: &UrlEntry) -> Result<(), IndexError> {
        let txn = db_err!(self.db.begin_write())?;
        {
            let mut objects = db_err!(txn.open_table(OBJECTS))?;
            if db_err!(objects.get(object.sha256.as_str()))?.is_none() {
                let record = to_json(object);
                db_err!(objects.insert(object.sha256.as_str(), record.as_slice()))?;
            }
            let mut urls = db_err!(txn.open_table(URLS))?;
            let record = to_json(entry);
            db_err!(urls.insert(entry.url.as_str(), record.as_slice()))?;
        }
        db_err!(txn.commit())
    }

    /// Replaces a URL's entry (revalidation bookkeeping, pins).
    pub fn put_url(&self, entry: &UrlEntry) -> Result<(), IndexError> {
        let txn = db_err!(self.db.begin_write())?;
        {
            let mut urls = db_err!(txn.open_table(URLS))?;
            let record = to_json(entry);
            db_err!(urls.insert(entry.url.as_str(), record.as_slice()))?;
        }
        db_err!(txn.commit())
    }

    /// Forgets a URL (an operator's purge). The object stays: other URLs may share it.
    pub fn remove_url(&self, url: &str) -> Result<bool, IndexError> {
        let txn = db_err!(self.db.begin_write())?;
        let removed = {
            let mut urls = db_err!(txn.open_table(URLS))?;
            db_err!(urls.remove(url))?.is_some()
        };
        db_err!(txn.commit())?;
        Ok(removed)
    }

    /// Number of mirrored URLs.
    pub fn url_count(&self) -> Result<u64, IndexError> {
        let txn = db_err!(self.db.begin_read())?;
        let urls = db_err!(txn.open_table(URLS))?;
        db_err!(urls.len())
    }

    fn get<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, IndexError> {
        let txn = db_err!(self.db.begin_read())?;
        let table = db_err!(txn.open_table(table))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str, sha: &str) -> UrlEntry {
        UrlEntry {
            url: url.into(),
            sha256: sha.into(),
            media_type: "image/jpeg".into(),
            bytes: 3,
            width: 1,
            height: 1,
            first_fetched: 1,
            last_verified: 1,
            last_checked: 1,
            validators: Validators::default(),
            last_upstream_status: 200,
            pinned_by: vec![],
        }
    }

    fn object(sha: &str) -> ObjectMeta {
        ObjectMeta {
            sha256: sha.into(),
            media_type: "image/jpeg".into(),
            extension: "jpg".into(),
            bytes: 3,
            width: 1,
            height: 1,
            created: 1,
        }
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        {
            let index = Index::open(&path).unwrap();
            index
                .put(&object("aa"), &entry("http://a/1.jpg", "aa"))
                .unwrap();
            index
                .put(&object("aa"), &entry("http://b/2.jpg", "aa"))
                .unwrap();
        }
        let index = Index::open(&path).unwrap();
        assert_eq!(index.url("http://a/1.jpg").unwrap().unwrap().sha256, "aa");
        assert_eq!(index.object("aa").unwrap().unwrap().extension, "jpg");
        assert_eq!(index.url_count().unwrap(), 2);
        assert!(index.remove_url("http://a/1.jpg").unwrap());
        assert_eq!(index.url("http://a/1.jpg").unwrap(), None);
        assert!(index.object("aa").unwrap().is_some());
        index
            .put(&object("bb"), &entry("http://c/3.jpg", "bb"))
            .unwrap();
        let wanted = std::collections::HashSet::from(["aa".to_string()]);
        let named: Vec<String> = index
            .urls_naming(&wanted)
            .unwrap()
            .into_iter()
            .map(|e| e.url)
            .collect();
        assert_eq!(named, ["http://b/2.jpg"]);
    }
}
