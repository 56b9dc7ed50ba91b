//! Articles: finds the image URLs in blog posts (YAML front matter, HTML, Markdown image
//! syntax) and rewrites them to imgmirror URLs while keeping every other byte of the post.
//! One extraction serves both `imgmirror rewrite` and `imgmirror prefetch`, so what gets
//! prefetched is exactly what the rewritten post will ask for.
//!
//! Extraction and rewriting know nothing of HTTP or the store: `--pin` hands them a ready
//! map of upstream URL to content hash. `prefetch` is the one part that acts: it calls the
//! service layer ([`crate::mirror`]) for originals, pins and variants, exactly as the HTTP
//! server does, and `remote` is its client for a running server's `POST /prefetch`. Real
//! parsers locate the values (saphyr-parser for YAML, lol_html for HTML, pulldown-cmark for
//! Markdown); the rewrite then splices new values into the original text, so whitespace,
//! quoting, attribute order, entities and line endings are untouched. The URLs written are
//! spelled by [`crate::url_grammar`], the grammar the server parses.
//!
//! Submodules: `frontmatter` (the `---` block), `html` (start tags and `srcset`), `markdown`
//! (HTML ranges and image destinations), `urls` (which URLs are ours, the URLs we write),
//! `scan` (the one extraction), `splice` (edits for a rewrite), `files` (the `rewrite`
//! command's engine: walking, atomic writes, diffs, the report), `prefetch` (mirroring,
//! pinning and warming a post's images), `remote` (the `POST /prefetch` client).

mod files;
mod frontmatter;
mod html;
mod markdown;
pub mod prefetch;
pub mod remote;
mod scan;
mod splice;
pub(crate) mod urls;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use files::{FileReport, Mode, RewriteReport, find_posts, rewrite_paths, write_atomic};

/// The worker every seed post goes through.
pub const DEFAULT_WORKER_PREFIX: &str = "https://cors.zfour.workers.dev/?";

/// What counts as an image URL to rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// A URL starting with one of these (either scheme, or protocol-relative) is a worker
    /// URL; the rest of it is the upstream URL.
    pub worker_prefixes: Vec<String>,
    /// Also rewrite plain `http://` image URLs (`--all-http`).
    pub all_http: bool,
    /// The size front-matter images are asked for; `None` keeps the original.
    pub front_matter_size: Option<(u32, u32)>,
    /// Bases of imgmirror servers: URLs under them are never upstreams, even with
    /// `all_http`. `rewrite` adds its target base itself; `prefetch` should list its server.
    pub own_bases: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            worker_prefixes: vec![DEFAULT_WORKER_PREFIX.to_owned()],
            all_http: false,
            front_matter_size: None,
            own_bases: Vec::new(),
        }
    }
}

impl Settings {
    /// The `[article]` config section as settings (`all_http` and `own_bases` are the
    /// command's to set).
    pub fn from_config(config: &crate::config::ArticleConfig) -> Settings {
        Settings {
            worker_prefixes: config.worker_prefixes.clone(),
            all_http: false,
            front_matter_size: config.front_matter_size(),
            own_bases: Vec::new(),
        }
    }
}

/// How a post is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Optional front matter, then Markdown with embedded HTML.
    Markdown,
    /// Optional front matter, then HTML.
    Html,
}

impl Kind {
    /// `.md` and `.markdown` are Markdown, `.html` and `.htm` HTML; anything else is not a post.
    pub fn from_path(path: &Path) -> Option<Kind> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "md" | "markdown" => Some(Kind::Markdown),
            "html" | "htm" => Some(Kind::Html),
            _ => None,
        }
    }
}

/// Where in a post an image URL was found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Place {
    /// A front-matter value; `key` is its path, e.g. `headimg`, `photos[1]`, `cover.image`.
    FrontMatter {
        key: String,
    },
    ImgSrc,
    /// A candidate of an `<img srcset>`.
    Srcset,
    DataSrc,
    /// A candidate of a `<source srcset>` (in `<picture>`).
    SourceSrcset,
    /// `![alt](url)`, or the `[ref]: url` definition of `![alt][ref]`.
    MarkdownImage,
}

impl Place {
    /// A stable kebab-case name, for logs and reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            Place::FrontMatter { .. } => "front-matter",
            Place::ImgSrc => "img-src",
            Place::Srcset => "img-srcset",
            Place::DataSrc => "img-data-src",
            Place::SourceSrcset => "source-srcset",
            Place::MarkdownImage => "markdown-image",
        }
    }
}

/// One image URL of a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The real upstream URL: worker prefix stripped, character references decoded
    /// (`&amp;` → `&`), percent-encoding as written.
    pub upstream: String,
    /// The size the rewritten post asks for: `data-size="W,H"` of an `<img>` (for `src` and
    /// `data-src`), or [`Settings::front_matter_size`] for front matter.
    pub size: Option<(u32, u32)>,
    pub place: Place,
    /// 1-based line of the URL in the file.
    pub line: usize,
    /// The rewritten post also asks for `size` at `dpr=2` (the `2x` of the `srcset` added to
    /// an `<img>`), so a prefetch should render that variant too.
    pub also_2x: bool,
}

/// How to write the new URL for an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// The imgmirror server, e.g. `https://img.example.com` (a trailing slash is ignored).
    pub base: String,
    /// For `--pin`: upstream URL → (sha256 hex, extension without dot) of its mirrored
    /// original. Pinned images get `/m/<sha256>.<ext>` URLs; the others keep `/?url=`.
    pub pins: HashMap<String, (String, String)>,
}

/// The result of rewriting one post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub text: String,
    /// How many image URLs were replaced (attributes added alongside are not counted).
    pub changed: usize,
    /// Worker URLs left as they are, with the reason (e.g. an upstream that is not a URL).
    pub warnings: Vec<String>,
}

/// Why a post could not be read or rewritten.
#[derive(Debug, thiserror::Error)]
pub enum ArticleError {
    #[error("front matter is not valid yaml at line {line}: {message}")]
    FrontMatter { line: usize, message: String },
    #[error("html starting at line {line} could not be tokenized: {message}")]
    Html { line: usize, message: String },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not utf-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{} is not a .md, .markdown or .html post", path.display())]
    UnsupportedFile { path: PathBuf },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<ArticleError>,
    },
}

/// The image URLs of a post, in document order, one entry per occurrence.
pub fn extract(text: &str, kind: Kind, settings: &Settings) -> Result<Vec<ImageRef>, ArticleError> {
    let scan = scan::scan(text, kind, settings, &[])?;
    Ok(scan
        .urls
        .into_iter()
        .map(|found| ImageRef {
            upstream: found.upstream,
            size: found.size,
            place: found.place,
            line: found.line,
            also_2x: found.adds_2x,
        })
        .collect())
}

/// Rewrites the image URLs of a post to `target`, keeping every other byte.
pub fn rewrite(
    text: &str,
    kind: Kind,
    settings: &Settings,
    target: &Target,
) -> Result<Rewritten, ArticleError> {
    let scan = scan::scan(text, kind, settings, &[target.base.as_str()])?;
    Ok(splice::apply(text, &scan, target))
}

#[cfg(test)]
mod tests;
