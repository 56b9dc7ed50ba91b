//! The engine of `imgmirror rewrite`: walks the given files and folders for posts, rewrites
//! each, writes the changed ones atomically (a temp file in the same folder, fsync, rename,
//! so a crash leaves either the old post or the new one, never half of one), optionally
//! collects a unified diff, and reports per file. One post failing never stops the others.
//! A read-only post is left alone (and reported) unless `force`: the owner made it so, and
//! an atomic rename would replace it regardless of its mode.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use similar::TextDiff;

use super::{ArticleError, Kind, Settings, Target, rewrite};

/// What `rewrite_paths` does with the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Write changed posts in place.
    Write,
    /// Report what would change; write nothing.
    DryRun,
    /// Like `DryRun`, and collect a unified diff of every change.
    Diff,
}

/// The outcome for one post.
#[derive(Debug)]
pub struct FileReport {
    pub path: PathBuf,
    /// Image URLs rewritten (or that would be, in `DryRun`/`Diff`).
    pub changed: usize,
    /// Whether the file on disk was replaced.
    pub written: bool,
    /// Set when the post would change but was left alone, with why (it is read-only).
    pub skipped: Option<String>,
    /// URLs left as they are, with why.
    pub warnings: Vec<String>,
    /// Set when the post could not be read, parsed or written; it is then left untouched.
    pub error: Option<ArticleError>,
}

/// The outcome of a whole run.
#[derive(Debug, Default)]
pub struct RewriteReport {
    /// One entry per post, in the order they were found (folders sorted by name).
    pub files: Vec<FileReport>,
    /// The unified diff of all changes, in `Mode::Diff`; empty otherwise.
    pub diff: String,
}

impl RewriteReport {
    /// Whether any post failed, which is what the exit status reports.
    pub fn any_failed(&self) -> bool {
        self.files.iter().any(|f| f.error.is_some())
    }

    /// Image URLs rewritten over all posts (not counting posts skipped).
    pub fn changed(&self) -> usize {
        self.files
            .iter()
            .filter(|f| f.skipped.is_none())
            .map(|f| f.changed)
            .sum()
    }

    /// One line per post and a total: `path: N URLs rewritten`, or the error with its causes.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for file in &self.files {
            let path = file.path.display();
            match &file.error {
                Some(err) => {
                    let _ = write!(out, "{path}: failed: {err}");
                    let mut source = std::error::Error::source(err);
                    while let Some(cause) = source {
                        let _ = write!(out, ": {cause}");
                        source = cause.source();
                    }
                    out.push('\n');
                }
                None => match &file.skipped {
                    Some(why) => {
                        let _ = writeln!(out, "{path}: skipped: {why}");
                    }
                    None => {
                        let _ = writeln!(out, "{path}: {} URLs rewritten", file.changed);
                    }
                },
            }
            for warning in &file.warnings {
                let _ = writeln!(out, "{path}: warning: {warning}");
            }
        }
        let failed = self.files.iter().filter(|f| f.error.is_some()).count();
        let skipped = self.files.iter().filter(|f| f.skipped.is_some()).count();
        let _ = write!(
            out,
            "{} posts, {} URLs rewritten, {failed} failed",
            self.files.len(),
            self.changed()
        );
        if skipped > 0 {
            let _ = write!(
                out,
                ", {skipped} skipped (read-only: --force rewrites them)"
            );
        }
        out.push('\n');
        out
    }
}

/// Rewrites every post under `paths`: files are taken as given (they must be posts), folders
/// are searched recursively for `.md`, `.markdown` and `.html` files, skipping hidden entries
/// and `node_modules`. Read-only posts are skipped unless `force`.
pub fn rewrite_paths(
    paths: &[PathBuf],
    settings: &Settings,
    target: &Target,
    mode: Mode,
    force: bool,
) -> RewriteReport {
    let mut report = RewriteReport::default();
    let mut posts = Vec::new();
    for path in paths {
        if let Err(err) = collect(path, true, &mut posts) {
            report.files.push(failed(path, err));
        }
    }
    // A post named twice (itself and through its folder) is rewritten once.
    let mut seen = std::collections::HashSet::new();
    posts.retain(|(path, _)| seen.insert(fs::canonicalize(path).unwrap_or_else(|_| path.clone())));
    for (path, kind) in posts {
        report.files.push(rewrite_file(
            &path,
            kind,
            (settings, target),
            mode,
            force,
            &mut report.diff,
        ));
    }
    report
}

/// The posts under `paths`, found exactly as [`rewrite_paths`] finds them (so `prefetch` and
/// `rewrite --pin` see the same posts), each once; a path that cannot be read or is not a post
/// is an error entry.
pub fn find_posts(paths: &[PathBuf]) -> Vec<Result<(PathBuf, Kind), ArticleError>> {
    let mut out = Vec::new();
    let mut posts = Vec::new();
    for path in paths {
        if let Err(err) = collect(path, true, &mut posts) {
            out.push(Err(err));
        }
    }
    let mut seen = std::collections::HashSet::new();
    posts.retain(|(path, _)| seen.insert(fs::canonicalize(path).unwrap_or_else(|_| path.clone())));
    out.extend(posts.into_iter().map(Ok));
    out
}

fn rewrite_file(
    path: &Path,
    kind: Kind,
    (settings, target): (&Settings, &Target),
    mode: Mode,
    force: bool,
    diff: &mut String,
) -> FileReport {
    let text = match fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => {
                return failed(
                    path,
                    ArticleError::NotUtf8 {
                        path: path.to_owned(),
                    },
                );
            }
        },
        Err(source) => {
            return failed(
                path,
                ArticleError::Read {
                    path: path.to_owned(),
                    source,
                },
            );
        }
    };
    let rewritten = match rewrite(&text, kind, settings, target) {
        Ok(rewritten) => rewritten,
        Err(err) => {
            return failed(
                path,
                ArticleError::Parse {
                    path: path.to_owned(),
                    source: Box::new(err),
                },
            );
        }
    };
    let mut report = FileReport {
        path: path.to_owned(),
        changed: rewritten.changed,
        written: false,
        skipped: None,
        warnings: rewritten.warnings,
        error: None,
    };
    if rewritten.text == text {
        return report;
    }
    if !force && fs::metadata(path).is_ok_and(|m| m.permissions().readonly()) {
        report.skipped = Some("read-only (use --force to rewrite it anyway)".into());
        return report;
    }
    match mode {
        Mode::Write => match write_atomic(path, rewritten.text.as_bytes()) {
            Ok(()) => report.written = true,
            Err(source) => {
                report.error = Some(ArticleError::Write {
                    path: path.to_owned(),
                    source,
                });
            }
        },
        Mode::DryRun => {}
        Mode::Diff => {
            let name = path.display().to_string();
            let _ = write!(
                diff,
                "{}",
                TextDiff::from_lines(&text, &rewritten.text)
                    .unified_diff()
                    .context_radius(1)
                    .header(&format!("a/{name}"), &format!("b/{name}"))
            );
        }
    }
    report
}

fn failed(path: &Path, err: ArticleError) -> FileReport {
    FileReport {
        path: path.to_owned(),
        changed: 0,
        written: false,
        skipped: None,
        warnings: Vec::new(),
        error: Some(err),
    }
}

/// Adds the posts at `path`. Symbolic links to folders are not followed, so a link cycle
/// cannot make the walk endless.
fn collect(
    path: &Path,
    explicit: bool,
    out: &mut Vec<(PathBuf, Kind)>,
) -> Result<(), ArticleError> {
    let read_err = |source| ArticleError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = if explicit {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    }
    .map_err(read_err)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .map_err(read_err)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.') && n != "node_modules")
            })
            .collect();
        entries.sort();
        for entry in entries {
            // One unreadable entry is skipped like any non-post file; the walk goes on.
            let _ = collect(&entry, false, out);
        }
        return Ok(());
    }
    match Kind::from_path(path) {
        Some(kind) if meta.is_file() => out.push((path.to_owned(), kind)),
        _ if explicit => {
            return Err(ArticleError::UnsupportedFile {
                path: path.to_owned(),
            });
        }
        _ => {}
    }
    Ok(())
}

/// Replaces `path` (or the file a symbolic link points to) with `bytes` atomically: a temp file in the same folder (so the rename
/// cannot cross file systems), written, fsynced, given the old file's permissions, renamed
/// over the original, then the folder fsynced so the rename itself survives a crash. On any
/// error the temp file is removed and the original is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // Renaming over a symbolic link would replace the link with a file; write its target.
    let resolved;
    let path = if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        resolved = fs::canonicalize(path)?;
        resolved.as_path()
    } else {
        path
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.imgmirror-{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        if let Ok(meta) = fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Persisting the directory entry is best effort: not every platform can open a folder.
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}
