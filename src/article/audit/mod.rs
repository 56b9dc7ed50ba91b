//! The link-rot audit (`imgmirror audit`): for every image of every post, is it mirrored
//! (and pinned), does its upstream still answer, has it changed there — and so which posts
//! now depend on the mirror alone.
//!
//! It reads the store through the service layer without fetching ([`Mirror::lookup`],
//! [`Mirror::urls_naming`]) and asks each upstream with [`Mirror::check_upstream`]: one
//! bodiless request, conditional on the validators the mirror kept, through the SSRF guard,
//! at most `per_host` at a time per upstream host and `concurrency` overall. An image the
//! mirror holds is never downloaded again.
//!
//! - [`report`]: the result as a table, JSON, or a self-contained HTML page.

pub mod report;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use url::Url;

pub use report::{AuditReport, ImageAudit, PostAudit, UpstreamState, Verdict};

use super::resolve::read;
use super::{Named, Settings, find_posts, references};
use crate::error::Chain;
use crate::hash::ContentHash;
use crate::mirror::Mirror;
use crate::store::UrlEntry;
use crate::upstream::{Checked, UpstreamError};
use crate::url_grammar;

/// How an audit runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Upstream checks in flight at once.
    pub concurrency: usize,
    /// Upstream checks in flight at once per upstream host.
    pub per_host: usize,
    /// Embed a small rendition of every mirrored image (for `--html` without `--base`).
    pub thumbnails: bool,
}

/// Audits the posts under `paths` (found as `rewrite` finds them).
pub async fn audit(
    mirror: &Arc<Mirror>,
    paths: &[PathBuf],
    settings: &Settings,
    options: &Options,
) -> AuditReport {
    let started = Instant::now();
    let mut report = AuditReport::default();
    let mut index: HashMap<Named, usize> = HashMap::new();
    for found in find_posts(paths) {
        let read = found.and_then(|(path, kind)| {
            let text = read(&path)?;
            let refs =
                references(&text, kind, settings).map_err(|e| super::ArticleError::Parse {
                    path: path.clone(),
                    source: Box::new(e),
                })?;
            Ok((path, refs))
        });
        let (path, refs) = match read {
            Ok(post) => post,
            Err(e) => {
                report.errors.push(Chain(&e).to_string());
                continue;
            }
        };
        let mut post = PostAudit {
            path: path.display().to_string(),
            images: Vec::new(),
            via_worker: 0,
        };
        for r in refs {
            if r.rewritable {
                post.via_worker += 1;
            }
            let next = report.images.len();
            let at = *index.entry(r.named.clone()).or_insert(next);
            if at == next {
                report.images.push(ImageAudit::new(&r.named));
            }
            if !post.images.contains(&at) {
                post.images.push(at);
                report.images[at].posts.push(post.path.clone());
            }
        }
        report.posts.push(post);
    }
    resolve_mirrored(mirror, &mut report).await;
    check_upstreams(mirror, &mut report.images, options).await;
    if options.thumbnails {
        for image in &mut report.images {
            image.thumbnail = thumbnail(mirror, image).await;
        }
    }
    for image in &mut report.images {
        image.verdict = Verdict::of(image);
    }
    report.ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

/// Fills in what the mirror holds for each image: by URL from the index, by hash from the
/// URLs mirrored as that object.
async fn resolve_mirrored(mirror: &Mirror, report: &mut AuditReport) {
    let hashes: std::collections::HashSet<String> = report
        .images
        .iter()
        .filter_map(|i| i.sha256.clone().filter(|_| i.upstream.is_none()))
        .collect();
    let by_hash: Vec<UrlEntry> = if hashes.is_empty() {
        Vec::new()
    } else {
        match mirror.urls_naming(hashes).await {
            Ok(entries) => entries,
            Err(e) => {
                report
                    .errors
                    .push(format!("cannot list mirrored URLs: {}", Chain(&e)));
                Vec::new()
            }
        }
    };
    for image in &mut report.images {
        let entry = match (&image.upstream, &image.sha256) {
            (Some(upstream), _) => match url_grammar::parse_upstream(upstream) {
                Ok(url) => match mirror.lookup(&url).await {
                    Ok(entry) => entry.map(|e| (*e).clone()),
                    Err(e) => {
                        image.error = Some(Chain(&e).to_string());
                        None
                    }
                },
                Err(e) => {
                    image.error = Some(e.to_string());
                    None
                }
            },
            (None, Some(sha)) => {
                let mut entries: Vec<&UrlEntry> =
                    by_hash.iter().filter(|e| &e.sha256 == sha).collect();
                entries.sort_by_key(|e| (e.pinned_by.is_empty(), e.url.clone()));
                match entries.first() {
                    Some(entry) => Some((*entry).clone()),
                    None => {
                        // A permalink whose URL entry is gone: the object may still be there.
                        image.mirrored = object_exists(mirror, sha).await;
                        None
                    }
                }
            }
            (None, None) => None,
        };
        if let Some(entry) = entry {
            image.record(&entry);
        }
    }
}

async fn object_exists(mirror: &Mirror, sha: &str) -> bool {
    match ContentHash::parse(sha) {
        Some(hash) => mirror.original_by_hash(&hash).await.is_ok(),
        None => false,
    }
}

/// Asks every known upstream, bounded overall and per host, conditionally on the stored
/// validators when the image is mirrored.
async fn check_upstreams(mirror: &Arc<Mirror>, images: &mut [ImageAudit], options: &Options) {
    let global = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut hosts: HashMap<String, Arc<Semaphore>> = HashMap::new();
    let mut tasks = JoinSet::new();
    for (i, image) in images.iter().enumerate() {
        let Some(url) = image
            .upstream
            .as_deref()
            .and_then(|u| url_grammar::parse_upstream(u).ok())
        else {
            continue;
        };
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let host = hosts
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(options.per_host.max(1))))
            .clone();
        let (mirror, global) = (mirror.clone(), global.clone());
        let validators = image.validators.clone();
        tasks.spawn(async move {
            // The host slot first, so a queue for one slow host holds no global slot.
            let _host = host.acquire_owned().await.ok();
            let _slot = global.acquire_owned().await.ok();
            (i, check_one(&mirror, &url, validators.as_ref()).await)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, checked)) => images[i].apply_check(checked),
            Err(e) => tracing::error!(error = %e, "audit check task failed"),
        }
    }
}

async fn check_one(
    mirror: &Mirror,
    url: &Url,
    validators: Option<&crate::upstream::Validators>,
) -> Result<Checked, UpstreamError> {
    let checked = mirror.check_upstream(url, validators).await;
    if let Err(e) = &checked {
        tracing::debug!(%url, error = %e, "upstream check failed");
    }
    checked
}

/// A small JPEG of a mirrored image as a data URI, for the HTML page.
async fn thumbnail(mirror: &Mirror, image: &ImageAudit) -> Option<String> {
    use base64::Engine as _;
    if !image.mirrored {
        return None;
    }
    let hash = ContentHash::parse(image.sha256.as_deref()?)?;
    let original = mirror.original_by_hash(&hash).await.ok()?;
    let options: url_grammar::Options =
        [("w", "160"), ("h", "160"), ("format", "jpeg"), ("q", "70")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    let spec = mirror.spec(&options).ok().flatten();
    let bytes = match spec {
        Some(spec) => match mirror
            .variant(&original.blob, &spec, Some("image/jpeg"))
            .await
        {
            Ok(variant) => variant.blob,
            Err(_) => {
                return mirror
                    .placeholder(&original.blob)
                    .await
                    .ok()
                    .map(|p| p.data_uri);
            }
        },
        // `allowed_widths` refuses 160 px: the blurred preview still shows something.
        None => {
            return mirror
                .placeholder(&original.blob)
                .await
                .ok()
                .map(|p| p.data_uri);
        }
    };
    Some(format!(
        "data:{};base64,{}",
        bytes.meta.media_type,
        base64::engine::general_purpose::STANDARD.encode(&bytes.bytes)
    ))
}
