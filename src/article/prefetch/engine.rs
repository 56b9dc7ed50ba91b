//! The prefetch engine: works through a plan's jobs against the service layer, bounded
//! overall (`concurrency`) and per upstream host (`per_host`: a blog's twenty images must
//! not become twenty simultaneous connections to one small origin).
//!
//! For each job: the original ([`Mirror::original`]), then its pins, then every variant URL
//! for every [`WARM_ACCEPTS`] ([`Mirror::image`], the same call the HTTP server makes for a
//! GET; with AVIF prefetch on, the AVIF-accepting request waits for the AVIF rendition
//! instead of leaving it to the background, and the WebP that browsers without AVIF get is
//! warmed as a row of its own). Outcomes come from the typed results. One retry policy ([`retry`]) serves
//! originals and variants: transient failures (timeouts, 5xx, 429, resets, a full render
//! queue) are retried with exponential backoff; definite answers (4xx, not an image, a
//! refused destination) are not, since asking again cannot change them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use url::Url;

use super::plan::Job;
use super::report::{ImageReport, PrefetchReport, Status, VariantReport};
use crate::config::ArticleConfig;
use crate::error::{Chain, Error};
use crate::mirror::{AvifMode, Mirror, MirrorError};
use crate::store::Source;
use crate::url_grammar;

/// The `Accept` headers variants are warmed with: what browsers send for an `<img>` (so the
/// WebP rendition `format=auto` picks for them is ready) and a plain `image/*` (the
/// fallback rendition older clients and crawlers get).
pub const WARM_ACCEPTS: [&str; 2] = ["image/avif,image/webp,*/*", "image/*"];

/// With AVIF prefetch on, the first of [`WARM_ACCEPTS`] gets the AVIF rendition; this one
/// warms the WebP rendition of browsers that take WebP but not AVIF.
pub const WARM_ACCEPT_WEBP: &str = "image/webp,*/*";

/// The `Accept` headers one prefetch warms each variant with, in report order.
pub fn warm_accepts(avif: bool) -> Vec<&'static str> {
    let [first, rest] = WARM_ACCEPTS;
    if avif {
        vec![first, WARM_ACCEPT_WEBP, rest]
    } else {
        vec![first, rest]
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
    /// Also compute each image's placeholder (a small decode on the render pool), so
    /// `rewrite --placeholders` gets it from the report, locally or through a server.
    pub placeholders: bool,
    /// Render the AVIF renditions too (`article.prefetch_avif`, and the `avif` feature).
    pub avif: bool,
}

impl Options {
    pub fn from_config(config: &ArticleConfig) -> Options {
        Options {
            concurrency: config.prefetch_concurrency.max(1),
            per_host: config.prefetch_per_host.max(1),
            attempts: config.prefetch_attempts.max(1),
            backoff: Duration::from_millis(500),
            placeholders: true,
            avif: config.prefetch_avif && crate::transform::AVIF_ENABLED,
        }
    }
}

/// Prefetches every job, calling `on_done` as each image finishes (for a progress bar or a
/// streamed answer). Never fails as a whole: every problem is a row.
pub async fn run(
    mirror: &Arc<Mirror>,
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
        let slots = Slots {
            global: global.clone(),
            host,
        };
        let handle = tasks.spawn(prefetch_one(mirror.clone(), job, slots, options.clone()));
        position.insert(handle.id(), (i, upstream));
    }
    let mut images: Vec<(usize, ImageReport)> = Vec::new();
    while let Some(joined) = tasks.join_next_with_id().await {
        let (id, report) = match joined {
            Ok((id, report)) => (id, report),
            Err(e) => {
                // A panic in one image's task must not lose the others' results; it is our
                // bug, so it is reported as an internal error, not as the post's fault.
                let url = position.get(&e.id()).map_or("?", |(_, url)| url.as_str());
                let mut report = ImageReport::new(url);
                report.fail(&Error::Internal(format!("prefetch task failed: {e}")));
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

/// The concurrency slots one job competes for.
struct Slots {
    global: Arc<Semaphore>,
    host: Arc<Semaphore>,
}

async fn prefetch_one(
    mirror: Arc<Mirror>,
    job: Job,
    slots: Slots,
    options: Options,
) -> ImageReport {
    let started = Instant::now();
    let mut report = ImageReport::new(&job.upstream);
    let url = match url_grammar::parse_upstream(&job.upstream) {
        Ok(url) => url,
        Err(e) => {
            report.fail(&Error::Url(e));
            return report;
        }
    };
    // The host slot is taken first: a task queued behind a busy host must not sit on one
    // of the global slots meanwhile, or one slow host would starve the others.
    let host_slot = slots.host.acquire_owned().await.ok();
    let _slot = slots.global.acquire_owned().await.ok();
    let (served, attempts) = retry(&options, |attempt| {
        let (mirror, url) = (mirror.clone(), url.clone());
        async move {
            if attempt > 1 {
                // Else the negative cache would answer the retry with the first failure.
                mirror.forget_failure(&url).await;
            }
            mirror.original(&url).await
        }
    })
    .await;
    report.attempts = attempts;
    let served = match served {
        Ok(served) => served,
        Err(e) => {
            tracing::warn!(%url, error = %Chain(&e), attempts, "prefetch failed");
            report.fail(&Error::Mirror(e));
            report.ms = millis(started);
            return report;
        }
    };
    // Variants are rendered from the mirrored original: the upstream host is done with.
    drop(host_slot);
    report.status = match served.source {
        Source::Upstream => Status::Mirrored,
        _ => Status::Cached,
    };
    report.http_status = 200;
    let meta = &served.blob.meta;
    report.sha256 = Some(meta.sha256.clone());
    report.ext = Some(meta.extension.clone());
    report.media_type = Some(meta.media_type.clone());
    report.bytes = Some(meta.bytes);
    report.width = Some(meta.width);
    report.height = Some(meta.height);
    if options.placeholders {
        match mirror.placeholder(&served.blob).await {
            Ok(placeholder) => report.placeholder = Some(placeholder.data_uri),
            // A preview is a nicety: its failure is logged, never the image's.
            Err(e) => tracing::warn!(%url, error = %Chain(&e), "no placeholder"),
        }
    }
    for article in &job.articles {
        match mirror.pin(&url, article).await {
            Ok(Some(_)) => report.pinned_by.push(article.clone()),
            Ok(None) => {}
            Err(e) => {
                // Mirrored but not recorded as needed by the post: report it, since a later
                // eviction could then remove an image the post depends on.
                tracing::error!(%url, article, error = %Chain(&e), "could not pin");
                report.fail(&Error::Mirror(e));
            }
        }
    }
    for path in &job.variants {
        for accept in warm_accepts(options.avif) {
            report
                .variants
                .push(warm(&mirror, path, accept, &options).await);
        }
    }
    report.ms = millis(started);
    report
}

/// Renders (or finds) one variant the rewritten post will request, exactly as a GET of
/// `path` with `Accept: accept` would.
async fn warm(
    mirror: &Mirror,
    path: &str,
    accept: &'static str,
    options: &Options,
) -> VariantReport {
    let mut report = VariantReport::new(path, accept);
    let address = match url_grammar::parse_path_and_query(path) {
        Ok(address) => address,
        Err(e) => return failed_variant(report, &Error::Url(e)),
    };
    let avif = if options.avif {
        AvifMode::Await
    } else {
        AvifMode::Never
    };
    let unlimited = crate::mirror::Admission::unlimited();
    let (image, _) = retry(options, |_| {
        mirror.image_with(&address, Some(accept), avif, &unlimited)
    })
    .await;
    match image {
        Ok(image) => {
            report.content_type = Some(image.blob.meta.media_type.clone());
            report.bytes = Some(image.blob.bytes.len() as u64);
            report.source = Some(image.source.as_str().to_owned());
            report
        }
        Err(e) => failed_variant(report, &Error::Mirror(e)),
    }
}

fn failed_variant(mut report: VariantReport, error: &Error) -> VariantReport {
    tracing::warn!(path = report.path, accept = report.accept, error = %Chain(error), "variant failed");
    report.fail(error);
    report
}

/// The one retry policy: up to `options.attempts` tries of `op` (given the 1-based attempt
/// number), waiting `backoff`, then twice that, … between them, while the failure is
/// transient. Returns the last result and the number of tries.
async fn retry<T, F, Fut>(options: &Options, mut op: F) -> (Result<T, MirrorError>, u32)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, MirrorError>>,
{
    let mut attempt = 1;
    loop {
        match op(attempt).await {
            Err(e) if e.is_transient() && attempt < options.attempts => {
                let wait = options.backoff * 2u32.saturating_pow(attempt - 1);
                tracing::info!(error = %Chain(&e), attempt, wait_ms = wait.as_millis() as u64, "transient failure; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            result => return (result, attempt),
        }
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::PoolError;
    use crate::upstream::UpstreamError;

    fn options(attempts: u32) -> Options {
        Options {
            concurrency: 1,
            per_host: 1,
            attempts,
            backoff: Duration::from_millis(1),
            placeholders: false,
            avif: false,
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_up_to_the_limit() {
        let mut calls = 0;
        let (result, tries) = retry(&options(3), |_| {
            calls += 1;
            async { Err::<(), _>(MirrorError::Pool(PoolError::Overloaded)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!((tries, calls), (3, 3));
    }

    #[tokio::test]
    async fn definite_answers_are_not_retried_and_success_stops() {
        let (result, tries) = retry(&options(3), |_| async {
            Err::<(), _>(MirrorError::from(UpstreamError::NotFound {
                status: 404,
                url: "http://a/x.jpg".into(),
            }))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(tries, 1);
        let (result, tries) = retry(&options(3), |attempt| async move {
            if attempt < 2 {
                Err(MirrorError::Pool(PoolError::Overloaded))
            } else {
                Ok(attempt)
            }
        })
        .await;
        assert_eq!((result.unwrap(), tries), (2, 2));
    }
}
