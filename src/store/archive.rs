//! Export and import: a whole mirror as one portable tar stream, so it can move to another
//! host (or be backed up) and serve there with the upstream gone.
//!
//! Layout, in stream order (import relies on it: records of files come before the files,
//! and URLs come last, after every object they may name):
//!
//! ```text
//! imgmirror/objects.jsonl      one ObjectMeta per line
//! imgmirror/objects/<sha256>   the originals
//! imgmirror/variants.jsonl     with --with-variants: one VariantMeta per line
//! imgmirror/variants/<name>    the variants' content (no trailer)
//! imgmirror/urls.jsonl         one UrlEntry per line (pins included)
//! ```
//!
//! Export reads one index snapshot (a read transaction), so a running server keeps
//! writing while a consistent copy streams out; an object purged meanwhile is skipped.
//! Import verifies every hash and that every original is an image, writes through the
//! normal commit path (temp → fsync → link), merges pins, and is idempotent.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::index::{Index, ObjectMeta, Snapshot, UrlEntry, VariantMeta};
use super::{Disk, Kind, StoreError, file_error, index_error, rebuild_meta};
use crate::hash::ContentHash;

const ROOT: &str = "imgmirror";
/// The largest member import accepts: beyond any upstream body or rendition we write.
const MAX_MEMBER_BYTES: u64 = 1 << 30;

/// Counts of what an export wrote or an import took in.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveReport {
    pub objects: u64,
    pub variants: u64,
    pub urls: u64,
    /// Export: records whose file was gone (purged meanwhile). Import: members refused
    /// (hash mismatch, not an image, URL without its object).
    pub skipped: u64,
    pub bytes: u64,
}

/// Writes the mirror in `index`/`disk` as a tar stream to `out`.
pub fn export(
    index: &Index,
    disk: &Disk,
    out: impl Write,
    with_variants: bool,
) -> Result<ArchiveReport, StoreError> {
    let snapshot = index.snapshot().map_err(index_error("read a snapshot"))?;
    let mut tar = tar::Builder::new(out);
    let mut report = ArchiveReport::default();
    let io = |e: io::Error| file_error("write the archive", Path::new("-"), e);

    let mut objects = Vec::new();
    snapshot
        .objects(|o| objects.push(o.sha256))
        .map_err(index_error("list the objects"))?;
    append_jsonl(&mut tar, "objects.jsonl", &snapshot, |s, each| {
        s.objects(|o| each(&o))
    })?;
    for sha in objects {
        let Some(hash) = ContentHash::parse(&sha) else {
            continue;
        };
        match disk
            .read(Kind::Object, &hash)
            .map_err(|e| file_error("read", &disk.path(Kind::Object, &hash), e))?
        {
            Some(bytes) => {
                append(&mut tar, &format!("objects/{sha}"), &bytes).map_err(io)?;
                report.objects += 1;
                report.bytes += bytes.len() as u64;
            }
            None => report.skipped += 1,
        }
    }
    if with_variants {
        let mut names = Vec::new();
        snapshot
            .variants(|v| names.push(v.name))
            .map_err(index_error("list the variants"))?;
        append_jsonl(&mut tar, "variants.jsonl", &snapshot, |s, each| {
            s.variants(|v| each(&v))
        })?;
        for name in names {
            let Some(hash) = ContentHash::parse(&name) else {
                continue;
            };
            match disk
                .read(Kind::Variant, &hash)
                .map_err(|e| file_error("read", &disk.path(Kind::Variant, &hash), e))?
            {
                Some(bytes) => {
                    append(&mut tar, &format!("variants/{name}"), &bytes).map_err(io)?;
                    report.variants += 1;
                    report.bytes += bytes.len() as u64;
                }
                None => report.skipped += 1,
            }
        }
    }
    report.urls = append_jsonl(&mut tar, "urls.jsonl", &snapshot, |s, each| {
        s.urls(|u| each(&u))
    })?;
    tar.into_inner().map_err(io)?.flush().map_err(io)?;
    Ok(report)
}

/// Reads a tar stream written by [`export`] into the store in `index`/`disk`.
pub fn import(index: &Index, disk: &Disk, input: impl Read) -> Result<ArchiveReport, StoreError> {
    let mut archive = tar::Archive::new(input);
    let mut report = ArchiveReport::default();
    let mut object_meta: HashMap<String, ObjectMeta> = HashMap::new();
    let mut variant_meta: HashMap<String, VariantMeta> = HashMap::new();
    let io = |e: io::Error| file_error("read the archive", Path::new("-"), e);
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let path = entry.path().map_err(io)?.to_string_lossy().into_owned();
        let Some(name) = path.strip_prefix(&format!("{ROOT}/")).map(str::to_owned) else {
            report.skipped += 1;
            continue;
        };
        if entry.size() > MAX_MEMBER_BYTES {
            report.skipped += 1;
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(io)?;
        match name.as_str() {
            "objects.jsonl" => read_jsonl(&bytes, |o: ObjectMeta| {
                object_meta.insert(o.sha256.clone(), o);
            }),
            "variants.jsonl" => read_jsonl(&bytes, |v: VariantMeta| {
                variant_meta.insert(v.name.clone(), v);
            }),
            "urls.jsonl" => import_urls(index, disk, &bytes, &mut report)?,
            other => {
                if let Some(sha) = other.strip_prefix("objects/") {
                    import_object(
                        index,
                        disk,
                        sha,
                        &bytes,
                        object_meta.remove(sha),
                        &mut report,
                    )?;
                } else if let Some(vname) = other.strip_prefix("variants/") {
                    import_variant(
                        index,
                        disk,
                        vname,
                        &bytes,
                        variant_meta.remove(vname),
                        &mut report,
                    )?;
                } else {
                    report.skipped += 1;
                }
            }
        }
    }
    Ok(report)
}

fn import_object(
    index: &Index,
    disk: &Disk,
    sha: &str,
    bytes: &[u8],
    meta: Option<ObjectMeta>,
    report: &mut ArchiveReport,
) -> Result<(), StoreError> {
    let Some(hash) = ContentHash::parse(sha).filter(|h| *h == ContentHash::of(bytes)) else {
        tracing::warn!(
            member = sha,
            "archive member does not match its name; skipped"
        );
        report.skipped += 1;
        return Ok(());
    };
    // The bytes must still say they are an image: an archive is input like any other.
    let rebuilt = match rebuild_meta(&hash, bytes) {
        Ok(meta) => meta,
        Err(e) => {
            tracing::warn!(member = sha, error = %crate::error::Chain(&e), "archive member is not an image; skipped");
            report.skipped += 1;
            return Ok(());
        }
    };
    disk.write(Kind::Object, &hash, bytes)
        .map_err(|e| file_error("write", &disk.path(Kind::Object, &hash), e))?;
    if index
        .object(sha)
        .map_err(index_error("read an object"))?
        .is_none()
    {
        let meta = meta
            .filter(|m| m.bytes == bytes.len() as u64)
            .unwrap_or(rebuilt);
        index
            .put_object(&meta)
            .map_err(index_error("record an object"))?;
    }
    report.objects += 1;
    report.bytes += bytes.len() as u64;
    Ok(())
}

fn import_variant(
    index: &Index,
    disk: &Disk,
    name: &str,
    bytes: &[u8],
    meta: Option<VariantMeta>,
    report: &mut ArchiveReport,
) -> Result<(), StoreError> {
    // Exported variants carry their trailer: the content's own hash.
    let intact = bytes.len() >= 32 && {
        let (content, trailer) = bytes.split_at(bytes.len() - 32);
        ContentHash::of(content).as_bytes() == trailer
    };
    let (Some(hash), true) = (ContentHash::parse(name), intact) else {
        report.skipped += 1;
        return Ok(());
    };
    let content = &bytes[..bytes.len() - 32];
    disk.write(Kind::Variant, &hash, content)
        .map_err(|e| file_error("write", &disk.path(Kind::Variant, &hash), e))?;
    let meta = meta.unwrap_or_else(|| VariantMeta {
        name: name.to_owned(),
        original: String::new(),
        bytes: bytes.len() as u64,
        created: super::unix_now(),
        last_used: 0,
    });
    index
        .put_variant(&meta)
        .map_err(index_error("record a variant"))?;
    report.variants += 1;
    report.bytes += bytes.len() as u64;
    Ok(())
}

/// URL records whose object is present; pins merge with what the store already has.
fn import_urls(
    index: &Index,
    disk: &Disk,
    bytes: &[u8],
    report: &mut ArchiveReport,
) -> Result<(), StoreError> {
    let mut entries = Vec::new();
    read_jsonl(bytes, |u: UrlEntry| entries.push(u));
    for entry in entries {
        let object = ContentHash::parse(&entry.sha256)
            .filter(|h| disk.path(Kind::Object, h).is_file())
            .and_then(|_| index.object(&entry.sha256).ok().flatten());
        let Some(object) = object else {
            report.skipped += 1;
            continue;
        };
        index
            .commit_url(&object, &entry, false)
            .map_err(index_error("record a URL"))?;
        report.urls += 1;
    }
    Ok(())
}

/// Spools one JSON line per record to a temp file (memory stays bounded) and appends it.
fn append_jsonl<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    snapshot: &Snapshot,
    scan: impl FnOnce(
        &Snapshot,
        &mut dyn FnMut(&dyn erased::Record),
    ) -> Result<(), super::index::IndexError>,
) -> Result<u64, StoreError> {
    let spool_path = spool_path();
    let io = |e: io::Error| file_error("spool", &spool_path, e);
    let mut spool = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&spool_path)
        .map_err(io)?;
    let _ = std::fs::remove_file(&spool_path); // unlinked: gone even if we crash
    let mut count = 0;
    let mut failed = None;
    {
        let mut writer = io::BufWriter::new(&mut spool);
        scan(snapshot, &mut |record| {
            if failed.is_none() {
                if let Err(e) = record.write_line(&mut writer) {
                    failed = Some(e);
                }
                count += 1;
            }
        })
        .map_err(index_error("read the index"))?;
        if let Some(e) = failed {
            return Err(io(e));
        }
        writer.flush().map_err(io)?;
    }
    let len = spool.stream_position().map_err(io)?;
    spool.rewind().map_err(io)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(len);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, format!("{ROOT}/{name}"), &mut spool)
        .map_err(io)?;
    Ok(count)
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, format!("{ROOT}/{name}"), bytes)
}

fn read_jsonl<T: for<'de> serde::Deserialize<'de>>(bytes: &[u8], mut each: impl FnMut(T)) {
    for line in BufReader::new(bytes).lines().map_while(Result::ok) {
        match serde_json::from_str(&line) {
            Ok(record) => each(record),
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable archive record"),
        }
    }
}

fn spool_path() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("imgmirror-export.{}.{n}", std::process::id()))
}

/// Index records as one JSON line each, whatever their type.
mod erased {
    use std::io::Write;

    pub trait Record {
        fn write_line(&self, out: &mut dyn Write) -> std::io::Result<()>;
    }

    impl<T: serde::Serialize> Record for T {
        fn write_line(&self, out: &mut dyn Write) -> std::io::Result<()> {
            serde_json::to_writer(&mut *out, self)?;
            out.write_all(b"\n")
        }
    }
}
