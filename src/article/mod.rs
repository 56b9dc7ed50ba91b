//! Articles: finds the image URLs in blog posts (YAML front matter, HTML — `<img>` and its
//! lazy-loading attributes, `<picture>`, `<video poster>`, `<a href>` around images, CSS
//! `url()` in `style` and `<style>` — and Markdown images and image links) and rewrites them
//! to imgmirror URLs while keeping every other byte of the post. It also recognises the
//! imgmirror URLs it wrote before, to move them to another base or undo them.
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
//! Submodules: `frontmatter` (the `---` block), `html` (start tags, `srcset`, CSS `url()`),
//! `markdown` (HTML ranges, image and link destinations), `urls` (which URLs are ours, the
//! URLs we write), `scan` (the one extraction), `splice` (edits for a rewrite), `additions`
//! (the attributes a rewrite adds to an `<img>`, and taking them out again), `files` (the
//! `rewrite` command's engine: walking, atomic writes, diffs, the report), `prefetch`
//! (mirroring, pinning and warming a post's images), `audit` (the link-rot report),
//! `remote` (the `POST /prefetch` client).

mod additions;
pub mod audit;
mod files;
mod frontmatter;
mod html;
mod markdown;
pub mod prefetch;
pub mod remote;
pub mod resolve;
mod scan;
mod splice;
pub(crate) mod urls;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::url_grammar;

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
    /// (URLs of imgmirror's own shapes are recognised under any base anyway.)
    pub own_bases: Vec<String>,
    /// Rewrite every `<a href>` and Markdown link to a worker URL (`--links`), not only
    /// those that point at an image.
    pub links: bool,
    /// The largest `w`/`h` a written URL may ask for (the transform limits): a bigger
    /// `data-size` is scaled down to fit, and reported.
    pub max_size: (u32, u32),
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            worker_prefixes: vec![DEFAULT_WORKER_PREFIX.to_owned()],
            all_http: false,
            front_matter_size: None,
            own_bases: Vec::new(),
            links: false,
            max_size: (8192, 8192),
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
            ..Settings::default()
        }
    }

    /// [`Settings::from_config`], with the size limits of the `[transform]` section.
    pub fn from_full_config(config: &crate::config::Config) -> Settings {
        Settings {
            max_size: (config.transform.max_width, config.transform.max_height),
            ..Settings::from_config(&config.article)
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
    /// `<img data-original>` (jQuery lazyload and the themes built on it).
    DataOriginal,
    /// `<img data-lazy-src>`.
    DataLazySrc,
    /// A candidate of an `<img data-srcset>` or `<source data-srcset>`.
    DataSrcset,
    /// `<video poster>`.
    VideoPoster,
    /// `<a href>` or a Markdown link pointing at an image.
    Link,
    /// A CSS `url()`, in a `style` attribute or a `<style>` sheet.
    CssUrl,
}

impl Place {
    /// Whether a URL here is the `<img>`'s own image (what its size and preview are of).
    pub fn names_the_image(&self) -> bool {
        matches!(
            self,
            Place::ImgSrc | Place::DataSrc | Place::DataOriginal | Place::DataLazySrc
        )
    }

    /// A stable kebab-case name, for logs and reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            Place::FrontMatter { .. } => "front-matter",
            Place::ImgSrc => "img-src",
            Place::Srcset => "img-srcset",
            Place::DataSrc => "img-data-src",
            Place::SourceSrcset => "source-srcset",
            Place::MarkdownImage => "markdown-image",
            Place::DataOriginal => "img-data-original",
            Place::DataLazySrc => "img-data-lazy-src",
            Place::DataSrcset => "data-srcset",
            Place::VideoPoster => "video-poster",
            Place::Link => "link",
            Place::CssUrl => "css-url",
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
    /// `--from-base`: imgmirror URLs under this base are moved to `base`.
    pub from_base: Option<String>,
    /// `--undo`: imgmirror URLs (under `from_base` if set, else any) go back to the worker
    /// form or the plain upstream, and the attributes a rewrite added are taken out.
    pub undo: Option<UndoTo>,
    /// For `--undo` of `/m/` permalinks: sha256 hex → the upstream URL it was mirrored from.
    pub permalinks: HashMap<String, String>,
    /// For `--placeholders`: upstream URL or sha256 hex → the image's preview and size.
    pub placeholders: HashMap<String, Placeholder>,
    /// With `security.signing_keys`: every URL written gets its `sig=`.
    pub signer: Option<crate::signing::Signer>,
}

/// What `--undo` writes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UndoTo {
    /// The worker URL (the first of `article.worker_prefixes`), as the post had it.
    Worker,
    /// The plain upstream URL (`--to upstream`).
    Upstream,
}

/// An image's inline preview for `--placeholders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// Intrinsic size of the original, written as `width`/`height` when `data-size` is missing.
    pub width: u32,
    pub height: u32,
    /// `data:image/png;base64,…`, the decoded ThumbHash.
    pub data_uri: String,
}

/// What an image reference of a post names, for the audit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Named {
    /// An upstream URL (worker URL, plain URL, or an imgmirror `/?url=` URL), as spelled.
    Upstream(String),
    /// A mirrored original by sha256 hex (an imgmirror `/m/` permalink).
    Hash(String),
}

/// One image reference of a post, rewritten or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub named: Named,
    pub place: Place,
    /// 1-based line.
    pub line: usize,
    /// The post still goes through a worker or the upstream for it (not rewritten yet).
    pub rewritable: bool,
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

/// The image URLs of a post still to be rewritten, in document order, one entry per
/// occurrence. (imgmirror URLs written before are not listed: see [`references`].)
pub fn extract(text: &str, kind: Kind, settings: &Settings) -> Result<Vec<ImageRef>, ArticleError> {
    let scan = scan::scan(text, kind, settings, &[])?;
    Ok(scan
        .urls
        .into_iter()
        .filter_map(|found| match found.what {
            scan::What::Upstream(upstream) => Some(ImageRef {
                upstream,
                size: found.size,
                place: found.place,
                line: found.line,
                also_2x: found.adds_2x,
            }),
            scan::What::Own(_) => None,
        })
        .collect())
}

/// Every image reference of a post, rewritten (imgmirror URLs under any base) or not
/// (worker URLs, and with `all_http` plain ones), in document order.
pub fn references(
    text: &str,
    kind: Kind,
    settings: &Settings,
) -> Result<Vec<Reference>, ArticleError> {
    let scan = scan::scan(text, kind, settings, &[])?;
    Ok(scan
        .urls
        .into_iter()
        .map(|found| {
            let named = match &found.what {
                scan::What::Upstream(upstream) => Named::Upstream(upstream.clone()),
                scan::What::Own(own) => match &own.kind {
                    url_grammar::RecognisedKind::Proxy { upstream } => {
                        Named::Upstream(upstream.clone())
                    }
                    url_grammar::RecognisedKind::Permalink { hash, .. } => {
                        Named::Hash(hash.to_hex())
                    }
                },
            };
            Reference {
                named,
                rewritable: matches!(found.what, scan::What::Upstream(_)),
                place: found.place,
                line: found.line,
            }
        })
        .collect())
}

/// Checks a `--base` (or `--from-base`): an absolute `http(s)` URL without query or
/// fragment; anything else would write URLs that break every image.
pub fn check_base(base: &str) -> Result<(), url_grammar::UrlError> {
    url_grammar::check_base(base)
}

/// Rewrites the image URLs of a post to `target`, keeping every other byte.
pub fn rewrite(
    text: &str,
    kind: Kind,
    settings: &Settings,
    target: &Target,
) -> Result<Rewritten, ArticleError> {
    let scan = scan::scan(text, kind, settings, &[target.base.as_str()])?;
    Ok(splice::apply(text, &scan, settings, target))
}

#[cfg(test)]
mod tests;
