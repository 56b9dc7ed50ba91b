//! `imgmirror verify`: checks a data directory against itself, offline, and optionally
//! repairs it.
//!
//! Every object and variant file is re-hashed against its name (variants against their
//! trailer); every index record is checked against its file; files no record names are
//! orphans; anything in `tmp/` is a stray temp file. With `repair`: damaged files go to
//! `quarantine/` (never deleted), records of missing files are dropped (URL records are
//! kept: the URL is fetched again on its next request, with its pins), orphans get records
//! rebuilt from their own headers, temp files are removed, and an index that cannot be
//! opened is set aside in `quarantine/` and rebuilt from the files.
//!
//! Memory stays bounded whatever the store's size: one file is held at a time, the index
//! is read record by record, and only the problems found are kept.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::index::{Index, IndexError, ObjectMeta, Table, VariantMeta};
use super::{Disk, Kind, StoreError, file_error, index_error, rebuild_meta, unix_now};
use crate::hash::ContentHash;

/// What `verify` found (and, with `repair`, fixed).
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub objects: u64,
    pub variants: u64,
    /// Files whose content does not match their name.
    pub mismatched: Vec<String>,
    /// Records whose file is gone: `objects/<sha>`, `variants/<name>`, or a URL.
    pub missing: Vec<String>,
    /// Files no record names (or with names that are not SHA-256s).
    pub orphans: Vec<String>,
    pub temp_files: Vec<String>,
    /// The index could not be opened (and, with `repair`, was rebuilt).
    pub index_unreadable: Option<String>,
    pub repaired: bool,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.mismatched.is_empty()
            && self.missing.is_empty()
            && self.orphans.is_empty()
            && self.temp_files.is_empty()
            && self.index_unreadable.is_none()
    }

    /// A few lines for people; `--json` prints the struct.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "checked {} objects and {} variants\n",
            self.objects, self.variants
        );
        let lists = [
            ("mismatched", &self.mismatched),
            ("missing", &self.missing),
            ("orphan", &self.orphans),
            ("temp file", &self.temp_files),
        ];
        for (what, list) in lists {
            for item in list {
                out.push_str(&format!("{what}: {item}\n"));
            }
        }
        if let Some(why) = &self.index_unreadable {
            out.push_str(&format!("index unreadable: {why}\n"));
        }
        out.push_str(match (self.is_clean(), self.repaired) {
            (true, _) => "clean\n",
            (false, true) => "problems found and repaired\n",
            (false, false) => "problems found (run with --repair to fix them)\n",
        });
        out
    }
}

/// Checks (and with `repair` fixes) the store in `dir`. `progress` is called once per
/// file checked. Errors only when the check itself cannot run (the index is locked by a
/// running server, the directory is unreadable).
pub fn verify(dir: &Path, repair: bool, progress: &dyn Fn()) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport {
        repaired: repair,
        ..VerifyReport::default()
    };
    let index = open_index(dir, repair, &mut report)?;
    let disk = Disk::attach(dir);
    check_temp(dir, repair, &mut report)?;
    check_files(
        &disk,
        dir,
        Kind::Object,
        index.as_ref(),
        repair,
        progress,
        &mut report,
    )?;
    check_files(
        &disk,
        dir,
        Kind::Variant,
        index.as_ref(),
        repair,
        progress,
        &mut report,
    )?;
    if let Some(index) = &index {
        check_records(&disk, index, repair, &mut report)?;
    }
    Ok(report)
}

/// The index, or `None` when it is unreadable and not being repaired.
fn open_index(
    dir: &Path,
    repair: bool,
    report: &mut VerifyReport,
) -> Result<Option<Index>, StoreError> {
    let path = dir.join("index.redb");
    match Index::open(&path) {
        Ok(index) => Ok(Some(index)),
        Err(e) if e.is_locked() => {
            Err(index_error("open (is a server running on this directory?)")(e))
        }
        Err(e) => {
            report.index_unreadable = Some(crate::error::Chain(&e).to_string());
            if !repair {
                return Ok(None);
            }
            let aside = dir
                .join("quarantine")
                .join(format!("index.redb.{}", unix_now()));
            fs::create_dir_all(dir.join("quarantine")).map_err(|e| file_error("create", dir, e))?;
            fs::rename(&path, &aside).map_err(|e| file_error("move aside", &path, e))?;
            tracing::warn!(aside = %aside.display(), "index unreadable: set aside, rebuilding from the files");
            Index::open(&path)
                .map(Some)
                .map_err(index_error("create a new index"))
        }
    }
}

fn check_temp(dir: &Path, repair: bool, report: &mut VerifyReport) -> Result<(), StoreError> {
    let tmp = dir.join("tmp");
    let Ok(entries) = fs::read_dir(&tmp) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        report.temp_files.push(path.display().to_string());
        if repair {
            fs::remove_file(&path).map_err(|e| file_error("remove", &path, e))?;
        }
    }
    Ok(())
}

/// Every file of one kind: its content against its name, its record in the index.
fn check_files(
    disk: &Disk,
    dir: &Path,
    kind: Kind,
    index: Option<&Index>,
    repair: bool,
    progress: &dyn Fn(),
    report: &mut VerifyReport,
) -> Result<(), StoreError> {
    for path in files_under(&dir.join(kind.dir()))? {
        progress();
        match kind {
            Kind::Object => report.objects += 1,
            Kind::Variant => report.variants += 1,
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(hash) = ContentHash::parse(name) else {
            report.orphans.push(path.display().to_string());
            if repair {
                quarantine(
                    &path,
                    &dir.join("quarantine")
                        .join(format!("{}-{name}", kind.dir())),
                )?;
            }
            continue;
        };
        let bytes = fs::read(&path).map_err(|e| file_error("read", &path, e))?;
        let Some(content) = content_if_intact(kind, &hash, &bytes) else {
            report.mismatched.push(path.display().to_string());
            if repair {
                quarantine(&path, &disk.quarantine(kind, &hash))?;
                if let Some(index) = index {
                    let table = match kind {
                        Kind::Object => Table::Objects,
                        Kind::Variant => Table::Variants,
                    };
                    index
                        .remove(table, &[hash.to_hex()])
                        .map_err(index_error("drop a damaged file's record"))?;
                }
            }
            continue;
        };
        let Some(index) = index else { continue };
        add_record_if_missing(index, kind, &hash, content, &path, repair, report)?;
    }
    Ok(())
}

/// The content of an intact file (a variant without its trailer), `None` if damaged.
fn content_if_intact<'a>(kind: Kind, hash: &ContentHash, bytes: &'a [u8]) -> Option<&'a [u8]> {
    match kind {
        Kind::Object => (ContentHash::of(bytes) == *hash).then_some(bytes),
        Kind::Variant => {
            let split = bytes.len().checked_sub(32)?;
            let (content, trailer) = bytes.split_at(split);
            (ContentHash::of(content).as_bytes() == trailer).then_some(content)
        }
    }
}

fn add_record_if_missing(
    index: &Index,
    kind: Kind,
    hash: &ContentHash,
    content: &[u8],
    path: &Path,
    repair: bool,
    report: &mut VerifyReport,
) -> Result<(), StoreError> {
    let hex = hash.to_hex();
    let known = match kind {
        Kind::Object => index
            .object(&hex)
            .map_err(index_error("read an object"))?
            .is_some(),
        Kind::Variant => index
            .variant(&hex)
            .map_err(index_error("read a variant"))?
            .is_some(),
    };
    if known {
        return Ok(());
    }
    report.orphans.push(path.display().to_string());
    if !repair {
        return Ok(());
    }
    match kind {
        Kind::Object => match rebuild_meta(hash, content) {
            Ok(meta) => index
                .put_object(&meta)
                .map_err(index_error("record an object"))?,
            // Intact but not an image: it never should have been stored; set it aside.
            Err(_) => quarantine(path, &path.with_extension("not-an-image"))?,
        },
        Kind::Variant => {
            let meta = VariantMeta {
                name: hex,
                // Which original it came from is not recorded in the file.
                original: String::new(),
                bytes: content.len() as u64 + 32,
                created: unix_now(),
                last_used: 0,
            };
            index
                .put_variant(&meta)
                .map_err(index_error("record a variant"))?;
        }
    }
    Ok(())
}

/// Records whose files are gone. URL records stay (the next request fetches the URL again,
/// keeping its pins); object and variant records go.
fn check_records(
    disk: &Disk,
    index: &Index,
    repair: bool,
    report: &mut VerifyReport,
) -> Result<(), StoreError> {
    let snapshot = index.snapshot().map_err(index_error("read a snapshot"))?;
    let exists = |kind: Kind, hex: &str| {
        ContentHash::parse(hex).is_some_and(|h| disk.path(kind, &h).is_file())
    };
    let (mut objects, mut variants) = (Vec::new(), Vec::new());
    snapshot
        .objects(|o: ObjectMeta| {
            if !exists(Kind::Object, &o.sha256) {
                objects.push(o.sha256);
            }
        })
        .map_err(index_error("list the objects"))?;
    snapshot
        .variants(|v: VariantMeta| {
            if !exists(Kind::Variant, &v.name) {
                variants.push(v.name);
            }
        })
        .map_err(index_error("list the variants"))?;
    snapshot
        .urls(|u| {
            if !exists(Kind::Object, &u.sha256) {
                report
                    .missing
                    .push(format!("{} (object {})", u.url, u.sha256));
            }
        })
        .map_err(index_error("list the URLs"))?;
    report
        .missing
        .extend(objects.iter().map(|o| format!("objects/{o}")));
    report
        .missing
        .extend(variants.iter().map(|v| format!("variants/{v}")));
    if repair {
        index
            .remove(Table::Objects, &objects)
            .map_err(index_error("drop records of missing objects"))?;
        index
            .remove(Table::Variants, &variants)
            .map_err(index_error("drop records of missing variants"))?;
    }
    Ok(())
}

/// The files under a fan-out directory (`<dir>/<2 hex>/<name>`), sorted for stable reports.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut files = Vec::new();
    let Ok(fans) = fs::read_dir(dir) else {
        return Ok(files);
    };
    for fan in fans.flatten() {
        let path = fan.path();
        if path.is_dir() {
            let entries = fs::read_dir(&path).map_err(|e| file_error("list", &path, e))?;
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        } else {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn quarantine(from: &Path, to: &Path) -> Result<(), StoreError> {
    tracing::warn!(file = %from.display(), to = %to.display(), "moving to quarantine");
    fs::rename(from, to).map_err(|e| file_error("quarantine", from, e))
}

impl IndexError {
    /// Another process (a running server) holds the index.
    pub fn is_locked(&self) -> bool {
        matches!(self, IndexError::Db(redb::Error::DatabaseAlreadyOpen))
    }
}
