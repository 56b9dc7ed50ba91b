//! Prefetch: mirrors the images of posts before anyone reads them, pins them to the posts
//! that use them, and renders the variants the rewritten posts will ask for, so the first
//! reader never waits and a post outlives its upstream.
//!
//! The input is a [`Plan`]: one [`Job`] per distinct upstream URL, built from
//! [`super::extract`] (the same extraction `rewrite` uses, so what is warmed is exactly what
//! the rewritten post requests) or from a plain list of URLs. [`run`] works through it
//! in-process against a server [`State`]: originals through `Store::get_by_url`, variants
//! through [`server::get`], which answers a GET exactly as over HTTP. Both `imgmirror
//! prefetch` (local mode) and `POST /prefetch` run this one engine; the remote mode of the
//! command is a client of the endpoint (`super::remote`).
//!
//! Bounds: at most `concurrency` images at once overall and `per_host` per upstream host
//! (politeness: a blog's twenty images must not become twenty simultaneous connections to
//! one small origin). Transient failures (timeouts, 5xx, 429, resets, overload) are retried
//! with exponential backoff; definite answers (4xx, not an image, refused destination) are
//! not, since asking again cannot change them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, header};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use url::Url;

use super::remote::{Remote, RemoteBody};
use super::urls::{Class, Density, classify, mirror_url};
use super::{ArticleError, ImageRef, Settings, Target, find_posts};
use crate::config::ArticleConfig;
use crate::server::response::AppError;
use crate::server::{self, State, router};
use crate::store::{Source, StoreError};

/// The `Accept` headers variants are warmed with: what browsers send for an `<img>` (so the
/// AVIF/WebP rendition `format=auto` picks for them is ready) and a plain `image/*` (the
/// fallback rendition older clients and crawlers get).
pub const WARM_ACCEPTS: [&str; 2] = ["image/avif,image/webp,*/*", "image/*"];

/// One upstream image to prefetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The upstream URL as the post spells it (the key `Target::pins` uses).
    pub upstream: String,
    /// Path and query of each variant the rewritten posts request, e.g.
    /// `/?url=…&w=480&h=319` and `…&dpr=2`; each is warmed with every [`WARM_ACCEPTS`].
    pub variants: Vec<String>,
    /// Articles that reference the image; it is pinned to each once mirrored.
    pub articles: Vec<String>,
}

/// Jobs in first-seen order, one per distinct upstream URL.
#[derive(Debug, Default)]
pub struct Plan {
    jobs: Vec<Job>,
    by_url: HashMap<String, usize>,
}

impl Plan {
    /// Adds the images of one post; `article` (its id) pins them.
    pub fn add_refs(&mut self, refs: &[ImageRef], article: Option<&str>) {
        let target = Target::default();
        for image in refs {
            let job = self.job(&image.upstream, article);
            if let Some(size) = image.size {
                // Exactly the URLs `rewrite` writes for this image (with an empty base),
                // so the warmed variants are the ones readers will ask for.
                let mut wanted = vec![mirror_url(
                    &target,
                    &image.upstream,
                    Some(size),
                    Density::One,
                )];
                if image.also_2x {
                    wanted.push(mirror_url(
                        &target,
                        &image.upstream,
                        Some(size),
                        Density::Two,
                    ));
                }
                for path in wanted {
                    if !job.variants.contains(&path) {
                        job.variants.push(path);
                    }
                }
            }
        }
    }

    /// Adds one image by URL: an upstream URL or a worker URL (whose upstream is taken).
    pub fn add_url(&mut self, url: &str, settings: &Settings, article: Option<&str>) {
        let upstream = image_upstream(url, settings).unwrap_or_else(|| url.to_owned());
        self.job(&upstream, article);
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn into_jobs(self) -> Vec<Job> {
        self.jobs
    }

    fn job(&mut self, upstream: &str, article: Option<&str>) -> &mut Job {
        let index = *self.by_url.entry(upstream.to_owned()).or_insert_with(|| {
            self.jobs.push(Job {
                upstream: upstream.to_owned(),
                variants: Vec::new(),
                articles: Vec::new(),
            });
            self.jobs.len() - 1
        });
        let job = &mut self.jobs[index];
        if let Some(article) = article
            && !job.articles.iter().any(|a| a == article)
        {
            job.articles.push(article.to_owned());
        }
        job
    }
}

/// The upstream of an image URL given on its own: a worker URL's upstream, or the URL itself
/// when it is an absolute http(s) URL; `None` otherwise.
pub fn image_upstream(url: &str, settings: &Settings) -> Option<String> {
    match classify(url, settings, &[], false) {
        Class::Rewrite(upstream) => Some(upstream),
        Class::Invalid(_) => None,
        Class::Other => router::parse_upstream(url)
            .ok()
            .map(|_| url.trim().to_owned()),
    }
}

/// How hard a prefetch pushes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Images in progress at once.
    pub concurrency: usize,
    /// Images in progress at once per upstream host.
    pub per_host: usize,
    /// Tries per original or variant for transient failures (1 = no retry).
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
}

impl Options {
    pub fn from_config(config: &ArticleConfig) -> Options {
        Options {
            concurrency: config.prefetch_concurrency.max(1),
            per_host: config.prefetch_per_host.max(1),
            attempts: config.prefetch_attempts.max(1),
            backoff: Duration::from_millis(500),
        }
    }
}

/// What happened to an original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Fetched from the upstream by this prefetch.
    Mirrored,
    /// Already mirrored; the upstream was not asked.
    Cached,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Mirrored => "mirrored",
            Status::Cached => "cached",
            Status::Failed => "failed",
        }
    }
}

/// What happened to a variant request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VariantStatus {
    /// Served (rendered now, or already rendered).
    Ok,
    Failed,
}

/// One variant request of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantReport {
    /// Path and query, e.g. `/?url=…&w=480&h=319&dpr=2`.
    pub path: String,
    pub accept: String,
    pub status: VariantStatus,
    pub http_status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// `X-Imgmirror-Source`: `render` when this request rendered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The outcome for one upstream image: one row of the table, one NDJSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageReport {
    /// The upstream URL as the post spells it.
    pub url: String,
    pub status: Status,
    /// The HTTP status a reader would get for the original (200, or the error's).
    pub http_status: u16,
    /// The stable error code (`upstream-not-found`, …) when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Extension of the original's type (`jpg`, `png`, …), for `/m/<sha256>.<ext>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Tries the original took.
    pub attempts: u32,
    /// Milliseconds for the original and its variants.
    pub ms: u64,
    /// Articles the image is pinned to.
    #[serde(default)]
    pub pinned_by: Vec<String>,
    #[serde(default)]
    pub variants: Vec<VariantReport>,
}

impl ImageReport {
    fn new(upstream: &str) -> ImageReport {
        ImageReport {
            url: upstream.to_owned(),
            status: Status::Failed,
            http_status: 0,
            code: None,
            error: None,
            sha256: None,
            ext: None,
            media_type: None,
            bytes: None,
            width: None,
            height: None,
            attempts: 0,
            ms: 0,
            pinned_by: Vec::new(),
            variants: Vec::new(),
        }
    }

    fn fail(&mut self, error: &AppError) {
        let (status, code) = error.status_and_code();
        self.status = Status::Failed;
        self.http_status = status.as_u16();
        self.code = Some(code.to_owned());
        self.error = Some(error.to_string());
    }

    /// Whether the original or a variant failed.
    pub fn failed(&self) -> bool {
        self.status == Status::Failed
            || self
                .variants
                .iter()
                .any(|v| v.status == VariantStatus::Failed)
    }

    /// `4 ok`, `1 failed of 4`, `-` for none: the table's variants column.
    pub fn variants_summary(&self) -> String {
        let total = self.variants.len();
        if total == 0 {
            return "-".into();
        }
        let count = |s| self.variants.iter().filter(|v| v.status == s).count();
        let failed = count(VariantStatus::Failed);
        if failed > 0 {
            return format!("{failed} failed of {total}");
        }
        format!("{} ok", count(VariantStatus::Ok))
    }
}

/// The outcome of a whole prefetch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefetchReport {
    /// One entry per distinct upstream image, in plan (document) order.
    pub images: Vec<ImageReport>,
    /// Wall-clock milliseconds for the whole run.
    pub ms: u64,
    /// Inputs that could not be prefetched at all (an unreadable post, a refused request),
    /// with why.
    #[serde(default)]
    pub errors: Vec<String>,
}

impl PrefetchReport {
    /// Whether any image or input failed, which is what the exit status reports.
    pub fn any_failed(&self) -> bool {
        !self.errors.is_empty() || self.images.iter().any(ImageReport::failed)
    }

    pub fn failed(&self) -> usize {
        self.images.iter().filter(|i| i.failed()).count()
    }

    /// Upstream URL → (sha256, extension) of every mirrored image: `Target::pins`.
    pub fn pins(&self) -> HashMap<String, (String, String)> {
        self.images
            .iter()
            .filter(|i| i.status != Status::Failed)
            .filter_map(|i| Some((i.url.clone(), (i.sha256.clone()?, i.ext.clone()?))))
            .collect()
    }

    /// The human report: a table (URL, status, sha256, bytes, width×height, time,
    /// variants), the failures with their reasons, and a total line.
    pub fn table(&self) -> String {
        let header = [
            "URL", "STATUS", "SHA256", "BYTES", "W×H", "TIME", "VARIANTS",
        ];
        let mut rows: Vec<[String; 7]> = vec![header.map(str::to_owned)];
        for image in &self.images {
            let status = match &image.code {
                Some(code) => format!("{} {code}", image.http_status),
                None => image.status.as_str().to_owned(),
            };
            let size = match (image.width, image.height) {
                (Some(w), Some(h)) => format!("{w}×{h}"),
                _ => "-".into(),
            };
            rows.push([
                image.url.clone(),
                status,
                image.sha256.clone().unwrap_or_else(|| "-".into()),
                image.bytes.map_or_else(|| "-".into(), |b| b.to_string()),
                size,
                format!("{} ms", image.ms),
                image.variants_summary(),
            ]);
        }
        let mut widths = [0usize; 7];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &rows {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                // Numbers read best right-aligned.
                if i == 3 || i == 5 {
                    let _ = write!(line, "{cell:>width$}  ");
                } else {
                    let _ = write!(line, "{cell:<width$}  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        for image in self.images.iter().filter(|i| i.failed()) {
            if let Some(error) = &image.error {
                let _ = writeln!(out, "failed: {}: {error}", image.url);
            }
            for variant in &image.variants {
                if variant.status == VariantStatus::Failed {
                    let _ = writeln!(
                        out,
                        "failed: {} (Accept: {}): {} {}",
                        variant.path,
                        variant.accept,
                        variant.http_status,
                        variant.code.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        for error in &self.errors {
            let _ = writeln!(out, "failed: {error}");
        }
        let count = |s| self.images.iter().filter(|i| i.status == s).count();
        let _ = writeln!(
            out,
            "{} images: {} mirrored, {} cached, {} failed in {:.1} s",
            self.images.len(),
            count(Status::Mirrored),
            count(Status::Cached),
            self.failed(),
            self.ms as f64 / 1000.0
        );
        out
    }
}

/// Prefetches every job against `state`, calling `on_done` as each image finishes (for a
/// progress bar or a streamed answer). Never fails as a whole: every problem is a row.
pub async fn run(
    state: &Arc<State>,
    jobs: Vec<Job>,
    options: &Options,
    mut on_done: impl FnMut(&ImageReport),
) -> PrefetchReport {
    let started = Instant::now();
    let global = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut hosts: HashMap<String, Arc<Semaphore>> = HashMap::new();
    let mut position = HashMap::new();
    let mut tasks = JoinSet::new();
    for (i, job) in jobs.into_iter().enumerate() {
        let host = Url::parse(&job.upstream)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        let host = hosts
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(options.per_host.max(1))))
            .clone();
        let upstream = job.upstream.clone();
        let handle = tasks.spawn(prefetch_one(
            state.clone(),
            job,
            global.clone(),
            host,
            options.clone(),
        ));
        position.insert(handle.id(), (i, upstream));
    }
    let mut images: Vec<(usize, ImageReport)> = Vec::new();
    while let Some(joined) = tasks.join_next_with_id().await {
        let (id, report) = match joined {
            Ok((id, report)) => (id, report),
            Err(e) => {
                // A panic in one image's task must not lose the others' results.
                let mut report =
                    ImageReport::new(position.get(&e.id()).map_or("?", |(_, url)| url.as_str()));
                report.fail(&AppError::BadRequest(format!("prefetch task failed: {e}")));
                (e.id(), report)
            }
        };
        on_done(&report);
        images.push((position.get(&id).map_or(usize::MAX, |(i, _)| *i), report));
    }
    images.sort_by_key(|(i, _)| *i);
    PrefetchReport {
        images: images.into_iter().map(|(_, r)| r).collect(),
        ms: millis(started),
        errors: Vec::new(),
    }
}

/// Where [`prefetch_inputs`] does the work.
pub enum Via<'a> {
    /// In this process, on a store opened here.
    Local(&'a Arc<State>),
    /// Through a running server's `POST /prefetch`.
    Remote(&'a Remote),
}

/// The command-line prefetch: `inputs` are posts, folders of posts (found as `rewrite` finds
/// them) or image URLs (upstream or worker URLs). Locally all images go through one run
/// (shared images once, pinned to every post that uses them, a post's id being its
/// canonical path); remotely each post is posted with its id and the URLs as one list.
pub async fn prefetch_inputs(
    via: Via<'_>,
    inputs: &[String],
    settings: &Settings,
    options: &Options,
    mut on_image: impl FnMut(&ImageReport),
) -> PrefetchReport {
    let started = Instant::now();
    let mut errors = Vec::new();
    let mut urls = Vec::new();
    let mut paths = Vec::new();
    for input in inputs {
        if input.contains("://") || input.starts_with("//") {
            urls.push(input.clone());
        } else {
            paths.push(PathBuf::from(input));
        }
    }
    let mut posts = Vec::new();
    for found in find_posts(&paths) {
        let read = found.and_then(|(path, kind)| {
            let text = std::fs::read(&path).map_err(|source| ArticleError::Read {
                path: path.clone(),
                source,
            })?;
            let text = String::from_utf8(text)
                .map_err(|_| ArticleError::NotUtf8 { path: path.clone() })?;
            let refs = super::extract(&text, kind, settings).map_err(|e| ArticleError::Parse {
                path: path.clone(),
                source: Box::new(e),
            })?;
            let id = std::fs::canonicalize(&path)
                .unwrap_or_else(|_| path.clone())
                .display()
                .to_string();
            Ok((id, text, kind, refs))
        });
        match read {
            Ok(post) => posts.push(post),
            Err(e) => errors.push(error_chain(&e)),
        }
    }
    let mut report = match via {
        Via::Local(state) => {
            let mut plan = Plan::default();
            for (id, _, _, refs) in &posts {
                plan.add_refs(refs, Some(id));
            }
            for url in &urls {
                plan.add_url(url, settings, None);
            }
            run(state, plan.into_jobs(), options, &mut on_image).await
        }
        Via::Remote(remote) => {
            let mut images: Vec<ImageReport> = Vec::new();
            let mut requests: Vec<(RemoteBody, Option<String>)> = posts
                .into_iter()
                .map(|(id, text, kind, _)| (RemoteBody::Article { text, kind }, Some(id)))
                .collect();
            if !urls.is_empty() {
                requests.push((RemoteBody::Urls(urls), None));
            }
            for (body, id) in requests {
                match remote.prefetch(body, id.as_deref(), &mut on_image).await {
                    Ok((got, _)) => {
                        for image in got {
                            // A shared image appears once, pinned to every post.
                            match images.iter_mut().find(|i| i.url == image.url) {
                                Some(seen) => seen.pinned_by.extend(image.pinned_by),
                                None => images.push(image),
                            }
                        }
                    }
                    Err(e) => errors.push(error_chain(&e)),
                }
            }
            PrefetchReport {
                images,
                ms: 0,
                errors: Vec::new(),
            }
        }
    };
    report.errors.extend(errors);
    report.ms = millis(started);
    report
}

/// An error with its causes, `: `-separated (the report is text, not a backtrace).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

async fn prefetch_one(
    state: Arc<State>,
    job: Job,
    global: Arc<Semaphore>,
    host: Arc<Semaphore>,
    options: Options,
) -> ImageReport {
    let started = Instant::now();
    let mut report = ImageReport::new(&job.upstream);
    let url = match router::parse_upstream(&job.upstream) {
        Ok(url) => url,
        Err(e) => {
            report.fail(&AppError::Route(e));
            return report;
        }
    };
    // The host slot is taken first: a task queued behind a busy host must not sit on one
    // of the global slots meanwhile, or one slow host would starve the others.
    let host_slot = host.acquire_owned().await.ok();
    let _slot = global.acquire_owned().await.ok();
    let served = loop {
        report.attempts += 1;
        match state.store.get_by_url(&url).await {
            Ok(served) => break served,
            Err(e) => {
                let transient = match &e {
                    StoreError::Upstream(u) => u.is_transient(),
                    StoreError::WaitTimeout(_) => true,
                    StoreError::Io(_) | StoreError::Missing(_) => false,
                };
                if !transient || report.attempts >= options.attempts {
                    tracing::warn!(%url, error = %e, attempts = report.attempts, "prefetch failed");
                    report.fail(&AppError::Store(e));
                    report.ms = millis(started);
                    return report;
                }
                let wait = options.backoff * 2u32.saturating_pow(report.attempts - 1);
                tracing::info!(%url, error = %e, attempt = report.attempts, wait_ms = wait.as_millis() as u64, "transient failure; retrying");
                tokio::time::sleep(wait).await;
                state.store.clear_failure(&url).await;
            }
        }
    };
    // Variants are rendered from the mirrored original: the upstream host is done with.
    drop(host_slot);
    report.status = if served.source == Source::Upstream {
        Status::Mirrored
    } else {
        Status::Cached
    };
    report.http_status = 200;
    let meta = &served.blob.meta;
    report.sha256 = Some(meta.sha256.clone());
    report.ext = Some(meta.extension.clone());
    report.media_type = Some(meta.media_type.clone());
    report.bytes = Some(meta.bytes);
    report.width = Some(meta.width);
    report.height = Some(meta.height);
    for article in &job.articles {
        match state.store.pin(&url, article).await {
            Ok(Some(_)) => report.pinned_by.push(article.clone()),
            Ok(None) => {}
            Err(e) => {
                // Mirrored but not recorded as needed by the post: report it, since a later
                // eviction could then remove an image the post depends on.
                tracing::error!(%url, article, error = %e, "could not pin");
                report.fail(&AppError::Store(e));
            }
        }
    }
    for path in &job.variants {
        for accept in WARM_ACCEPTS {
            report
                .variants
                .push(warm(&state, path, accept, options.attempts, options.backoff).await);
        }
    }
    report.ms = millis(started);
    report
}

/// Requests one variant in-process, retrying while the render queue is full.
async fn warm(
    state: &Arc<State>,
    path: &str,
    accept: &'static str,
    attempts: u32,
    backoff: Duration,
) -> VariantReport {
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
    let mut tries = 0;
    loop {
        tries += 1;
        let result = server::get(state, path, headers.clone()).await;
        let mut report = VariantReport {
            path: path.to_owned(),
            accept: accept.to_owned(),
            status: VariantStatus::Ok,
            http_status: 200,
            code: None,
            content_type: None,
            bytes: None,
            source: None,
        };
        match result {
            Ok(response) => {
                let text = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                report.http_status = response.status().as_u16();
                report.content_type = text("content-type");
                report.source = text("x-imgmirror-source");
                report.bytes = hyper::body::Body::size_hint(response.body()).exact();
                if !response.status().is_success() {
                    report.status = VariantStatus::Failed;
                }
                return report;
            }
            Err(error) => {
                let (status, code) = error.status_and_code();
                if status == http::StatusCode::SERVICE_UNAVAILABLE && tries < attempts {
                    tokio::time::sleep(backoff * 2u32.saturating_pow(tries - 1)).await;
                    continue;
                }
                report.http_status = status.as_u16();
                report.code = Some(code.to_owned());
                tracing::warn!(path, accept, error = %error, "variant failed");
                report.status = VariantStatus::Failed;
                return report;
            }
        }
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One line of `POST /prefetch`'s NDJSON answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// An image finished (in completion order).
    Image(Box<ImageReport>),
    /// The last line: totals.
    Done {
        images: usize,
        failed: usize,
        ms: u64,
    },
}

impl Event {
    /// The event as one NDJSON line, newline included.
    pub fn to_line(&self) -> String {
        // Serialising these plain structs cannot fail.
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::article::{Kind, extract};

    #[test]
    fn plan_merges_images_and_lists_the_variants_rewrite_writes() {
        let post = concat!(
            "---\nheadimg: https://cors.zfour.workers.dev/?http://a.example/1.jpg\n---\n",
            "<img src=\"https://cors.zfour.workers.dev/?http://a.example/1.jpg\" data-size=\"480,319\">\n",
            "<img src=\"https://cors.zfour.workers.dev/?http://a.example/2.jpg?v=1&amp;x=2\" data-size=\"10,20\">\n",
            "<img src=\"https://cors.zfour.workers.dev/?http://a.example/1.jpg\" data-size=\"480,319\">\n",
        );
        let refs = extract(post, Kind::Markdown, &Settings::default()).unwrap();
        let mut plan = Plan::default();
        plan.add_refs(&refs, Some("post.md"));
        plan.add_refs(&refs, Some("other.md"));
        let jobs = plan.into_jobs();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].upstream, "http://a.example/1.jpg");
        assert_eq!(jobs[0].articles, ["post.md", "other.md"]);
        assert_eq!(
            jobs[0].variants,
            [
                "/?url=http%3A%2F%2Fa.example%2F1.jpg&w=480&h=319",
                "/?url=http%3A%2F%2Fa.example%2F1.jpg&w=480&h=319&dpr=2",
            ]
        );
        assert_eq!(jobs[1].upstream, "http://a.example/2.jpg?v=1&x=2");
        assert_eq!(jobs[1].variants.len(), 2);
    }

    #[test]
    fn image_upstream_table() {
        let s = Settings::default();
        let cases = [
            (
                "https://cors.zfour.workers.dev/?http://a.example/x.jpg",
                Some("http://a.example/x.jpg"),
            ),
            (
                "https://a.example/x.jpg?v=2",
                Some("https://a.example/x.jpg?v=2"),
            ),
            ("ftp://a.example/x.jpg", None),
            ("not a url", None),
            ("https://cors.zfour.workers.dev/?javascript:alert(1)", None),
        ];
        for (url, want) in cases {
            assert_eq!(image_upstream(url, &s).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn report_failure_and_pins() {
        let mut ok = ImageReport::new("http://a/1.jpg");
        ok.status = Status::Cached;
        ok.sha256 = Some("ab".repeat(32));
        ok.ext = Some("jpg".into());
        ok.variants.push(VariantReport {
            path: "/?url=x&w=1&h=1".into(),
            accept: "image/*".into(),
            status: VariantStatus::Ok,
            http_status: 200,
            code: None,
            content_type: None,
            bytes: None,
            source: None,
        });
        let mut bad = ImageReport::new("http://a/2.jpg");
        bad.fail(&AppError::UnknownObject("x".into()));
        let report = PrefetchReport {
            images: vec![ok.clone(), bad],
            ms: 5,
            errors: Vec::new(),
        };
        assert!(!ok.failed());
        assert!(report.any_failed());
        assert_eq!(report.failed(), 1);
        assert_eq!(
            report.pins()["http://a/1.jpg"],
            ("ab".repeat(32), "jpg".to_string())
        );
        let table = report.table();
        assert!(table.contains("404 not-found"), "{table}");
        assert!(table.contains("1 ok"), "{table}");
        assert!(
            table.ends_with("2 images: 0 mirrored, 1 cached, 1 failed in 0.0 s\n"),
            "{table}"
        );
        let line = Event::Image(Box::new(ok.clone())).to_line();
        assert_eq!(
            serde_json::from_str::<Event>(&line).unwrap(),
            Event::Image(Box::new(ok))
        );
    }
}
