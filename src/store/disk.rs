//! Content-addressed files on disk: `objects/` for originals, `variants/` for rendered
//! derivatives, each as `<2 hex>/<sha256>`.
//!
//! Every write has one commit point: the bytes go to a temp file under `tmp/`, are
//! fsynced, and are then hard-linked into place. A link never replaces an existing
//! name, so nothing under `objects/` is ever overwritten, and a crash leaves at worst a
//! stray temp file, which [`Disk::open`] removes. Reads re-hash what they read, so a
//! file damaged on disk is reported as missing, never served under its name: an
//! object's name is its SHA-256; a variant's name is derived from its recipe, so a
//! variant file carries the SHA-256 of its content as a 32-byte trailer. A damaged file is
//! moved to `quarantine/`, never deleted: an operator decides (see `imgmirror verify`).
//!
//! All functions here block; the store calls them off the async runtime. This module
//! knows nothing of URLs or the index.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::hash::ContentHash;

/// Which namespace a file lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object,
    Variant,
}

impl Kind {
    pub(super) fn dir(self) -> &'static str {
        match self {
            Kind::Object => "objects",
            Kind::Variant => "variants",
        }
    }
}

#[derive(Debug)]
pub struct Disk {
    root: PathBuf,
    next_temp: AtomicU64,
}

impl Disk {
    /// Creates the layout under `root` if needed and removes temp files a previous run
    /// left behind (they were never committed, so nothing refers to them).
    pub fn open(root: &Path) -> io::Result<Disk> {
        for dir in ["objects", "variants", "tmp", "quarantine"] {
            fs::create_dir_all(root.join(dir))?;
        }
        let mut removed = 0;
        for entry in fs::read_dir(root.join("tmp"))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed leftover temp files");
        }
        Ok(Disk {
            root: root.to_owned(),
            next_temp: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The layout under `root` as it is, for offline tools (`verify`): creates nothing and
    /// leaves `tmp/` alone.
    pub fn attach(root: &Path) -> Disk {
        Disk {
            root: root.to_owned(),
            next_temp: AtomicU64::new(0),
        }
    }

    pub fn path(&self, kind: Kind, hash: &ContentHash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(kind.dir()).join(&hex[..2]).join(hex)
    }

    /// Commits `bytes` under `hash` unless that name exists. Returns whether it wrote.
    /// For objects the caller guarantees `hash` is the SHA-256 of `bytes`.
    pub fn write(&self, kind: Kind, hash: &ContentHash, bytes: &[u8]) -> io::Result<bool> {
        let path = self.path(kind, hash);
        if path.exists() {
            return Ok(false);
        }
        let temp = self.root.join("tmp").join(format!(
            "{}.{}.{}",
            hash.to_hex(),
            std::process::id(),
            self.next_temp.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = File::create(&temp)?;
            file.write_all(bytes)?;
            if kind == Kind::Variant {
                file.write_all(ContentHash::of(bytes).as_bytes())?;
            }
            file.sync_all()?;
            let dir = path.parent().unwrap_or(&self.root);
            if !dir.exists() {
                fs::create_dir_all(dir)?;
                // A new fan-out directory is itself an entry of its parent: make it durable,
                // or a crash could lose the directory and with it the file below.
                if let Some(parent) = dir.parent() {
                    File::open(parent)?.sync_all()?;
                }
            }
            let wrote = match fs::hard_link(&temp, &path) {
                Ok(()) => true,
                // Another writer committed the same content first: identical bytes.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(e),
            };
            // Make the new directory entry itself durable.
            File::open(dir)?.sync_all()?;
            Ok(wrote)
        })();
        let _ = fs::remove_file(&temp);
        result
    }

    /// Reads the file named `hash`, or `None` if it is absent or its content no longer
    /// matches its name (the damaged file is moved to `quarantine/`).
    pub fn read(&self, kind: Kind, hash: &ContentHash) -> io::Result<Option<Vec<u8>>> {
        let path = self.path(kind, hash);
        let mut bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let expected = match kind {
            Kind::Object => Some(*hash),
            Kind::Variant if bytes.len() >= 32 => {
                let trailer = bytes.split_off(bytes.len() - 32);
                <[u8; 32]>::try_from(trailer)
                    .ok()
                    .map(ContentHash::from_bytes)
            }
            Kind::Variant => None,
        };
        if expected != Some(ContentHash::of(&bytes)) {
            let aside = self.quarantine(kind, hash);
            tracing::error!(path = %path.display(), quarantine = %aside.display(), "stored file does not match its hash; moved it to quarantine");
            let _ = fs::rename(&path, aside);
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// Where a damaged file goes: `quarantine/<kind>-<name>.<unix seconds>`, so repeated
    /// damage to one name keeps every copy.
    pub fn quarantine(&self, kind: Kind, hash: &ContentHash) -> PathBuf {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.root
            .join("quarantine")
            .join(format!("{}-{}.{now}", kind.dir(), hash.to_hex()))
    }

    /// Where writes in progress live.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Proves the store can still commit: creates, writes and removes a probe file in
    /// `tmp/`, where every write starts (readiness; a full disk, a read-only mount or a
    /// missing directory fail here before a request does).
    pub fn check_writable(&self) -> io::Result<()> {
        let probe = self.tmp_dir().join(format!(
            "ready.{}.{}",
            std::process::id(),
            self.next_temp.fetch_add(1, Ordering::Relaxed)
        ));
        let written = File::create_new(&probe).and_then(|mut f| f.write_all(b"ok"));
        let removed = fs::remove_file(&probe);
        written.and(removed)
    }

    /// Removes a file (an eviction or a purge).
    pub fn remove(&self, kind: Kind, hash: &ContentHash) -> io::Result<()> {
        match fs::remove_file(self.path(kind, hash)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_is_content_addressed_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path()).unwrap();
        let hash = ContentHash::of(b"hello");
        assert!(disk.write(Kind::Object, &hash, b"hello").unwrap());
        assert!(!disk.write(Kind::Object, &hash, b"hello").unwrap());
        let path = disk.path(Kind::Object, &hash);
        assert!(path.starts_with(dir.path().join("objects").join(&hash.to_hex()[..2])));
        assert_eq!(disk.read(Kind::Object, &hash).unwrap().unwrap(), b"hello");
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn variants_carry_a_checksum_trailer() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path()).unwrap();
        let name = ContentHash::of(b"recipe");
        disk.write(Kind::Variant, &name, b"rendered").unwrap();
        assert_eq!(
            disk.read(Kind::Variant, &name).unwrap().unwrap(),
            b"rendered"
        );
        let path = disk.path(Kind::Variant, &name);
        let mut raw = fs::read(&path).unwrap();
        raw[0] ^= 1;
        fs::write(&path, raw).unwrap();
        assert_eq!(disk.read(Kind::Variant, &name).unwrap(), None);
    }

    #[test]
    fn leftover_temp_files_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        fs::write(dir.path().join("tmp").join("abc.1.0"), b"partial").unwrap();
        Disk::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_damaged_file_is_not_served_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path()).unwrap();
        let hash = ContentHash::of(b"original");
        disk.write(Kind::Object, &hash, b"original").unwrap();
        fs::write(disk.path(Kind::Object, &hash), b"tampered").unwrap();
        assert_eq!(disk.read(Kind::Object, &hash).unwrap(), None);
        assert!(!disk.path(Kind::Object, &hash).exists());
    }
}
