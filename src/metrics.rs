//! Metrics: every series `/metrics` exposes, in one registry per [`Metrics`] value, and
//! the functions that record them where the work happens (the server for requests, the
//! store for fetches, memory-cache lookups and disk usage, the service layer for renders).
//!
//! A leaf module: it knows the names, labels and buckets of the series, nothing of HTTP,
//! disk or images; callers pass plain label values (`Source::as_str`, `Route::name`, a
//! format's name) or the small vocabularies below. One registry per mirror rather than a
//! process-global recorder, so two servers in one process (the integration tests run
//! dozens) count only their own work. Encoding is the Prometheus text format 0.0.4 of
//! `prometheus-client`; counters get their `_total` suffix from it.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// How one background AVIF job ended (`imgmirror_avif_background_renders_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AvifOutcome {
    /// Rendered and stored.
    Rendered,
    /// Not queued: the queue was full (a later request offers it again).
    Dropped,
    /// The render failed (not offered again for a while).
    Failed,
    /// Nothing to do by its turn: already rendered, or the original was purged.
    Skipped,
}

impl AvifOutcome {
    pub const ALL: [AvifOutcome; 4] = [
        AvifOutcome::Rendered,
        AvifOutcome::Dropped,
        AvifOutcome::Failed,
        AvifOutcome::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AvifOutcome::Rendered => "rendered",
            AvifOutcome::Dropped => "dropped",
            AvifOutcome::Failed => "failed",
            AvifOutcome::Skipped => "skipped",
        }
    }
}

/// `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the latency histograms: 1 ms to 30 s, which spans a memory
/// hit and a slow upstream.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Output formats a render can produce (`transform::Format::as_str`), exposed at zero
/// from the start. Another name passed to [`Metrics::render`] still gets its own series.
const RENDER_FORMATS: [&str; 5] = ["jpeg", "png", "webp", "gif", "avif"];

/// How one upstream request ended (`imgmirror_upstream_fetches_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchOutcome {
    /// A verified image arrived.
    Ok,
    /// A revalidation was answered 304.
    NotModified,
    /// The upstream answered 404 or 410.
    NotFound,
    /// Another status, a broken transfer, too many redirects.
    Error,
    /// The upstream took longer than `upstream.timeout_secs`.
    Timeout,
    /// The body was not an image, was corrupt, or too large.
    Rejected,
    /// The guard refused the destination.
    Forbidden,
    /// No upstream slot was free in time.
    Overloaded,
}

impl FetchOutcome {
    pub const ALL: [FetchOutcome; 8] = [
        FetchOutcome::Ok,
        FetchOutcome::NotModified,
        FetchOutcome::NotFound,
        FetchOutcome::Error,
        FetchOutcome::Timeout,
        FetchOutcome::Rejected,
        FetchOutcome::Forbidden,
        FetchOutcome::Overloaded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FetchOutcome::Ok => "ok",
            FetchOutcome::NotModified => "not_modified",
            FetchOutcome::NotFound => "not_found",
            FetchOutcome::Error => "error",
            FetchOutcome::Timeout => "timeout",
            FetchOutcome::Rejected => "rejected",
            FetchOutcome::Forbidden => "forbidden",
            FetchOutcome::Overloaded => "overloaded",
        }
    }
}

/// What was full when a request was shed (`imgmirror_overloaded_total{what}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Overload {
    /// The render pool's workers and queue (`transform.workers`, `transform.queue`).
    RenderQueue,
    /// Upstream fetch slots (`upstream.max_in_flight`).
    UpstreamSlots,
}

impl Overload {
    pub fn as_str(self) -> &'static str {
        match self {
            Overload::RenderQueue => "render_queue",
            Overload::UpstreamSlots => "upstream_slots",
        }
    }
}

/// What a store series counts (`{kind}` of the store and eviction series).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// Mirrored originals under `objects/`.
    Original,
    /// Rendered variants under `variants/`.
    Variant,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Original => "original",
            StoreKind::Variant => "variant",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FormatLabel {
    format: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WhatLabel {
    what: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The series of one mirror. Cheap to record into from any thread (atomics behind
/// `prometheus-client`'s handles).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histograms<RouteLabel>,
    served_bytes: Family<SourceLabel, Counter>,
    upstream_fetches: Family<OutcomeLabel, Counter>,
    upstream_fetch_duration: Histogram,
    revalidations: Counter,
    renders: Family<FormatLabel, Counter>,
    render_duration: Histograms<FormatLabel>,
    render_queue_depth: Gauge,
    overloaded: Family<WhatLabel, Counter>,
    store_objects: Family<KindLabel, Gauge>,
    store_bytes: Family<KindLabel, Gauge<u64, AtomicU64>>,
    evictions: Family<KindLabel, Counter>,
    memory_hits: Counter,
    memory_misses: Counter,
    open_connections: Gauge,
    avif_background: Family<OutcomeLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every series under the `imgmirror_` prefix. Series with a small fixed
    /// label vocabulary start at zero, so a dashboard sees them before the first event;
    /// the request series appear with the first request of each route.
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("imgmirror"),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            served_bytes: Family::default(),
            upstream_fetches: Family::default(),
            upstream_fetch_duration: latency_histogram(),
            revalidations: Counter::default(),
            renders: Family::default(),
            render_duration: Family::new_with_constructor(latency_histogram),
            render_queue_depth: Gauge::default(),
            overloaded: Family::default(),
            store_objects: Family::default(),
            store_bytes: Family::default(),
            evictions: Family::default(),
            memory_hits: Counter::default(),
            memory_misses: Counter::default(),
            open_connections: Gauge::default(),
            avif_background: Family::default(),
        };
        m.register();
        m.register_avif();
        for source in ["memory", "disk", "upstream", "render"] {
            drop(m.served_bytes.get_or_create(&SourceLabel { source }));
        }
        for outcome in FetchOutcome::ALL {
            drop(m.upstream_fetches.get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            }));
        }
        for format in RENDER_FORMATS {
            drop(m.renders.get_or_create(&FormatLabel { format }));
            drop(m.render_duration.get_or_create(&FormatLabel { format }));
        }
        for what in [Overload::RenderQueue, Overload::UpstreamSlots] {
            drop(m.overloaded.get_or_create(&WhatLabel {
                what: what.as_str(),
            }));
        }
        for kind in [StoreKind::Original, StoreKind::Variant] {
            let kind = KindLabel {
                kind: kind.as_str(),
            };
            drop(m.store_objects.get_or_create(&kind));
            drop(m.store_bytes.get_or_create(&kind));
            drop(m.evictions.get_or_create(&kind));
        }
        m
    }

    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "requests",
            "HTTP requests answered, by route and status",
            self.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from request to response headers, by route",
            self.request_duration.clone(),
        );
        r.register(
            "served_bytes",
            "Response body bytes of images, by where they came from",
            self.served_bytes.clone(),
        );
        r.register(
            "upstream_fetches",
            "Requests to upstream servers (first fetches and revalidations), by outcome",
            self.upstream_fetches.clone(),
        );
        r.register(
            "upstream_fetch_duration_seconds",
            "Time of one upstream fetch, redirects and body included",
            self.upstream_fetch_duration.clone(),
        );
        r.register(
            "revalidations",
            "Background revalidations of mirrored URLs",
            self.revalidations.clone(),
        );
        r.register(
            "renders",
            "Variants rendered (resized / re-encoded), by output format",
            self.renders.clone(),
        );
        r.register(
            "render_duration_seconds",
            "Time of one render on the pool, queue wait included, by output format",
            self.render_duration.clone(),
        );
        r.register(
            "render_queue_depth",
            "Renders waiting for a worker of the render pool",
            self.render_queue_depth.clone(),
        );
        r.register(
            "overloaded",
            "Requests shed with 503 because a bound was full, by which",
            self.overloaded.clone(),
        );
        r.register(
            "store_objects",
            "Files in the store, by kind",
            self.store_objects.clone(),
        );
        r.register(
            "store_bytes",
            "Bytes of the files in the store, by kind",
            self.store_bytes.clone(),
        );
        r.register(
            "evictions",
            "Files evicted from the store to keep its disk budget, by kind",
            self.evictions.clone(),
        );
        r.register(
            "memory_cache_hits",
            "Lookups answered from the in-memory cache",
            self.memory_hits.clone(),
        );
        r.register(
            "memory_cache_misses",
            "Lookups the in-memory cache could not answer",
            self.memory_misses.clone(),
        );
        r.register(
            "open_connections",
            "Client connections open",
            self.open_connections.clone(),
        );
    }

    /// The background AVIF series, at zero for every outcome from the start.
    fn register_avif(&mut self) {
        self.registry.register(
            "avif_background_renders",
            "Background AVIF renditions, by outcome (rendered, dropped: queue full, failed, skipped)",
            self.avif_background.clone(),
        );
        for outcome in AvifOutcome::ALL {
            drop(self.avif_background.get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            }));
        }
    }

    /// Counts one background AVIF job's outcome.
    pub fn avif_background(&self, outcome: AvifOutcome) {
        self.avif_background
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// The Prometheus text exposition of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// One answered request.
    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabel { route })
            .observe(seconds);
    }

    /// Image body bytes sent, by [`crate::store::Source`] name.
    pub fn served(&self, source: &'static str, bytes: u64) {
        self.served_bytes
            .get_or_create(&SourceLabel { source })
            .inc_by(bytes);
    }

    /// One upstream request and how long it took.
    pub fn upstream_fetch(&self, outcome: FetchOutcome, seconds: f64) {
        self.upstream_fetches
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
        self.upstream_fetch_duration.observe(seconds);
    }

    /// One background revalidation started.
    pub fn revalidation(&self) {
        self.revalidations.inc();
    }

    /// One finished render, by output format name.
    pub fn render(&self, format: &'static str, seconds: f64) {
        self.renders.get_or_create(&FormatLabel { format }).inc();
        self.render_duration
            .get_or_create(&FormatLabel { format })
            .observe(seconds);
    }

    /// A render handed to the pool: counted in the queue depth until the returned guard
    /// is dropped (when a worker starts it, or when it is refused or abandoned).
    pub fn render_queued(&self) -> Tracked {
        Tracked::new(&self.render_queue_depth)
    }

    /// A request shed because `what` was full.
    pub fn overloaded(&self, what: Overload) {
        self.overloaded
            .get_or_create(&WhatLabel {
                what: what.as_str(),
            })
            .inc();
    }

    /// Sets how many files of `kind` the store holds and their total size.
    pub fn store_usage(&self, kind: StoreKind, objects: u64, bytes: u64) {
        let kind = KindLabel {
            kind: kind.as_str(),
        };
        self.store_objects
            .get_or_create(&kind)
            .set(i64::try_from(objects).unwrap_or(i64::MAX));
        self.store_bytes.get_or_create(&kind).set(bytes);
    }

    /// `n` files of `kind` evicted.
    pub fn evicted(&self, kind: StoreKind, n: u64) {
        self.evictions
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc_by(n);
    }

    /// One lookup in the in-memory cache.
    pub fn memory_cache(&self, hit: bool) {
        if hit {
            self.memory_hits.inc();
        } else {
            self.memory_misses.inc();
        }
    }

    /// A client connection: counted as open until the returned guard is dropped.
    pub fn connection(&self) -> Tracked {
        Tracked::new(&self.open_connections)
    }
}

/// Holds one unit of a gauge (a queued render, an open connection) until dropped, so
/// every path out (success, error, cancellation, panic) gives it back.
#[derive(Debug)]
pub struct Tracked(Gauge);

impl Tracked {
    fn new(gauge: &Gauge) -> Tracked {
        gauge.inc();
        Tracked(gauge.clone())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn series_are_named_labelled_and_move() {
        let m = Metrics::new();
        let before = m.encode();
        assert_eq!(
            value(&before, "imgmirror_evictions_total{kind=\"original\"}"),
            Some(0.0)
        );
        m.request("proxy", 200, 0.003);
        m.served("memory", 10);
        m.upstream_fetch(FetchOutcome::NotModified, 0.2);
        m.render("webp", 0.04);
        m.overloaded(Overload::RenderQueue);
        m.store_usage(StoreKind::Original, 3, 300);
        m.evicted(StoreKind::Variant, 2);
        m.memory_cache(true);
        m.memory_cache(false);
        let queued = m.render_queued();
        let open = m.connection();
        let text = m.encode();
        for (series, want) in [
            (
                "imgmirror_requests_total{route=\"proxy\",status=\"200\"}",
                1.0,
            ),
            (
                "imgmirror_request_duration_seconds_bucket{route=\"proxy\",le=\"0.005\"}",
                1.0,
            ),
            ("imgmirror_served_bytes_total{source=\"memory\"}", 10.0),
            (
                "imgmirror_upstream_fetches_total{outcome=\"not_modified\"}",
                1.0,
            ),
            ("imgmirror_upstream_fetch_duration_seconds_count", 1.0),
            ("imgmirror_renders_total{format=\"webp\"}", 1.0),
            (
                "imgmirror_render_duration_seconds_count{format=\"webp\"}",
                1.0,
            ),
            ("imgmirror_render_queue_depth", 1.0),
            ("imgmirror_overloaded_total{what=\"render_queue\"}", 1.0),
            ("imgmirror_store_objects{kind=\"original\"}", 3.0),
            ("imgmirror_store_bytes{kind=\"original\"}", 300.0),
            ("imgmirror_evictions_total{kind=\"variant\"}", 2.0),
            ("imgmirror_memory_cache_hits_total", 1.0),
            ("imgmirror_memory_cache_misses_total", 1.0),
            ("imgmirror_open_connections", 1.0),
        ] {
            assert_eq!(value(&text, series), Some(want), "{series} in\n{text}");
        }
        drop((queued, open));
        let text = m.encode();
        assert_eq!(value(&text, "imgmirror_render_queue_depth"), Some(0.0));
        assert_eq!(value(&text, "imgmirror_open_connections"), Some(0.0));
    }
}
