//! AVIF without making anyone wait: for a client whose `Accept` lists `image/avif`, the
//! AVIF rendition of a variant is served once it exists; until then the request gets the
//! usual (WebP/JPEG) rendition, marked provisional so the front end caches it briefly, and
//! the AVIF is queued for rendering in the background.
//!
//! Owns the background queue and its own render pool: one low-priority thread
//! ([`transform::Pool::background`], niced) fed by a bounded queue
//! (`transform.avif_background_queue`) with dedupe by variant name, so a flood of requests
//! queues each rendition at most once and never more than the bound (the rest are dropped
//! and counted; a later request offers them again). Foreground renders never wait behind
//! it: they run on the mirror's own pool, whose workers and queue this never touches.
//! Renditions that failed in the background are not offered again for [`FAILED_FOR`].
//!
//! The AVIF rendition is an ordinary variant (named like every other one, from the
//! original, the canonical options for `avif` and the format), stored through
//! [`crate::store::Store::get_variant`], so the disk budget, purges and exports treat it
//! like the rest. A queued job holds hashes and options only, not image bytes: it reads the
//! original again when its turn comes, and skips it if the original was purged meanwhile.
//! It knows nothing of HTTP.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::variant::{render_blob, variant_name};
use super::{Image, Mirror, MirrorError};
use crate::hash::ContentHash;
use crate::metrics::{AvifOutcome, Metrics};
use crate::store::{Blob, Source, Store};
use crate::transform::{self, OutputFormat, Probe, Spec};

/// How long a rendition whose background render failed is not offered again.
pub const FAILED_FOR: Duration = Duration::from_secs(600);

/// What a variant request does about AVIF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvifMode {
    /// A reader: the AVIF if it exists, else the usual rendition (provisional) and the
    /// AVIF queued in the background.
    Offer,
    /// A prefetch: render the AVIF now (on the background pool) and wait for it.
    Await,
    /// Never AVIF unless `format=avif` asks for it (prefetch with `prefetch_avif` off).
    Never,
}

/// One queued background render.
struct Job {
    original: ContentHash,
    spec: Spec,
    name: ContentHash,
}

/// The background queue and its pool.
pub(super) struct Background {
    /// `None` when AVIF is not offered (feature off, `avif_background` off) or there was
    /// no async runtime to run the queue on (store commands).
    queue: Option<mpsc::Sender<Job>>,
    /// Names queued or being rendered: the dedupe set (at most queue bound + 1 entries).
    queued: Arc<Mutex<HashSet<ContentHash>>>,
    /// Names whose background render failed recently.
    failed: moka::future::Cache<ContentHash, ()>,
    pool: Arc<transform::Pool>,
}

impl Background {
    /// Starts the queue's consumer on the current runtime (if any).
    pub(super) fn start(store: &Arc<Store>, settings: &transform::Settings) -> Background {
        let bound = settings.avif_background_queue.max(1);
        // The pool's own queue only holds the consumer's job and prefetches waiting for
        // theirs (bounded by the prefetch concurrency).
        let pool = Arc::new(transform::Pool::background(1, bound, settings));
        let queued = Arc::new(Mutex::new(HashSet::new()));
        let failed = moka::future::Cache::builder()
            .max_capacity(10_000)
            .time_to_live(FAILED_FOR)
            .build();
        let offered = transform::AVIF_ENABLED && settings.avif_background;
        let queue = match tokio::runtime::Handle::try_current() {
            Ok(runtime) if offered => {
                let (tx, rx) = mpsc::channel(bound);
                let consumer = Consumer {
                    store: Arc::downgrade(store),
                    settings: settings.clone(),
                    pool: pool.clone(),
                    queued: queued.clone(),
                    failed: failed.clone(),
                };
                runtime.spawn(consumer.run(rx));
                Some(tx)
            }
            _ => None,
        };
        Background {
            queue,
            queued,
            failed,
            pool,
        }
    }

    /// Queues the AVIF `name` of `original` unless it is queued already or the queue is
    /// full (then it is dropped and counted; a later request offers it again). False when
    /// no AVIF is coming: there is no queue, or its render failed recently.
    fn offer(&self, original: &str, spec: Spec, name: ContentHash, metrics: &Metrics) -> bool {
        let Some(queue) = &self.queue else {
            return false;
        };
        let Some(original) = ContentHash::parse(original) else {
            return false;
        };
        if self.failed.contains_key(&name) {
            return false;
        }
        let Ok(mut queued) = self.queued.lock() else {
            return false;
        };
        if queued.contains(&name) {
            return true;
        }
        // Recorded before sending, so the consumer's removal can never come first.
        queued.insert(name);
        let job = Job {
            original,
            spec,
            name,
        };
        if queue.try_send(job).is_err() {
            queued.remove(&name);
            metrics.avif_background(AvifOutcome::Dropped);
            tracing::debug!(variant = %name, "background AVIF queue full; dropped");
        }
        true
    }
}

/// The queue's consumer: one job at a time, so at most one AVIF encode runs.
struct Consumer {
    /// Weak: the consumer must not keep a dropped mirror's store (and its index lock).
    store: std::sync::Weak<Store>,
    settings: transform::Settings,
    pool: Arc<transform::Pool>,
    queued: Arc<Mutex<HashSet<ContentHash>>>,
    failed: moka::future::Cache<ContentHash, ()>,
}

impl Consumer {
    async fn run(self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(job) = jobs.recv().await {
            let Some(store) = self.store.upgrade() else {
                return;
            };
            let outcome = self.render(&store, &job).await;
            if let Ok(mut queued) = self.queued.lock() {
                queued.remove(&job.name);
            }
            store.metrics().avif_background(outcome);
        }
    }

    async fn render(&self, store: &Store, job: &Job) -> AvifOutcome {
        let original = match store.get_by_hash(&job.original).await {
            Ok(Some(served)) => served.blob,
            // Purged (or gone) since it was queued: its variants must not come back.
            Ok(None) => return AvifOutcome::Skipped,
            Err(e) => {
                tracing::warn!(sha256 = %job.original, error = %crate::error::Chain(&e), "background AVIF: original unreadable");
                return AvifOutcome::Failed;
            }
        };
        let sha = original.meta.sha256.clone();
        let render = || {
            render_blob(
                &self.pool,
                store.metrics(),
                &original,
                &job.spec,
                OutputFormat::Avif,
                &self.settings,
                job.name,
            )
        };
        match store.get_variant(&job.name, &sha, render).await {
            Ok((_, Source::Render)) => AvifOutcome::Rendered,
            Ok(_) => AvifOutcome::Skipped,
            Err(e) => {
                tracing::warn!(variant = %job.name, sha256 = %sha, error = %crate::error::Chain(&*e), "background AVIF render failed; not offered again for a while");
                self.failed.insert(job.name, ()).await;
                AvifOutcome::Failed
            }
        }
    }
}

/// What [`Mirror::avif_step`] decided.
pub(super) enum AvifStep {
    /// Serve this (the AVIF rendition).
    Serve(Image),
    /// Serve the usual rendition, provisionally: the AVIF is on its way.
    Provisional,
    /// AVIF is not for this request (or none is coming): the usual rendition, as usual.
    Skip,
}

impl Mirror {
    /// The AVIF part of [`Mirror::variant_with`], before its usual path.
    pub(super) async fn avif_step(
        &self,
        original: &Blob,
        spec: &Spec,
        accept: Option<&str>,
        probe: &Probe,
        mode: AvifMode,
    ) -> Result<AvifStep, MirrorError> {
        if mode == AvifMode::Never || !transform::wants_avif(spec, accept, probe, &self.transform) {
            return Ok(AvifStep::Skip);
        }
        let sha = &original.meta.sha256;
        let avif = spec.with_format(OutputFormat::Avif);
        let (name, _) = variant_name(sha, &avif, OutputFormat::Avif, &self.transform);
        let image = |blob, source| Image {
            blob,
            source,
            vary_accept: true,
            original_sha256: sha.clone(),
            pinned_by: Vec::new(),
            fresh_until: u64::MAX,
            provisional: false,
        };
        if mode == AvifMode::Await {
            let render = || {
                render_blob(
                    &self.background.pool,
                    self.metrics(),
                    original,
                    &avif,
                    OutputFormat::Avif,
                    &self.transform,
                    name,
                )
            };
            let (blob, source) = self
                .store
                .get_variant(&name, sha, render)
                .await
                .map_err(|e| (*e).clone())?;
            return Ok(AvifStep::Serve(image(blob, source)));
        }
        match self.store.peek_variant(&name).await {
            Ok(Some((blob, source))) => return Ok(AvifStep::Serve(image(blob, source))),
            Ok(None) => {}
            // A damaged or unreadable file: serve the usual rendition; the background
            // render writes a good one.
            Err(e) => {
                tracing::warn!(variant = %name, error = %crate::error::Chain(&e), "AVIF rendition unreadable")
            }
        }
        if self.background.offer(sha, avif, name, self.metrics()) {
            Ok(AvifStep::Provisional)
        } else {
            Ok(AvifStep::Skip)
        }
    }
}
