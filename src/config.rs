//! Configuration: one struct, read from `config/imgmirror.toml`, then overridden by
//! `IMGMIRROR_<SECTION>_<KEY>` environment variables, then by command-line flags.
//!
//! This module owns the keys, their defaults and their validation. It does not act on
//! them: each module receives the section it needs. The shipped `config/imgmirror.toml`
//! mirrors this file key for key; keep the two in step.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

#[path = "config_env.rs"]
mod env;
#[path = "config_upstream.rs"]
mod upstream;
pub use crate::config_store::{Backend, StoreConfig};
use env::apply_env;
pub use upstream::UpstreamHost;

/// Where `serve` looks for a config file when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "config/imgmirror.toml";

/// Prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "IMGMIRROR_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var} is not valid: {message}")]
    Env { var: String, message: String },
    #[error("config key {key} is not valid: {message}")]
    Invalid { key: &'static str, message: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub cache: CacheConfig,
    pub upstream: UpstreamConfig,
    pub response: ResponseConfig,
    /// Resizing: the transform module's own settings struct, key for key.
    pub transform: crate::transform::Settings,
    pub admin: AdminConfig,
    pub article: ArticleConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub security: crate::signing::SecurityConfig,
    /// Where the mirror lives: `cache.dir` alone, or a shared S3 bucket (see config_store.rs).
    pub store: StoreConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Connections served at once; further ones wait in the kernel's accept queue. Default 1024.
    pub max_connections: usize,
    /// Seconds a client may take to send a request head, counted from the accept for the
    /// first request (so a socket that sends nothing is closed) and from its first byte
    /// for later ones. Default 10.
    pub header_read_timeout_secs: u64,
    /// Seconds a keep-alive connection (HTTP/1 or HTTP/2) may sit with no request in
    /// flight and no bytes moving before it is closed. hyper's header timer also runs
    /// while an HTTP/1 connection waits for its next request, so for HTTP/1 the smaller
    /// of this and `header_read_timeout_secs` applies. Default 60.
    pub idle_timeout_secs: u64,
    /// Largest request head (request line and headers; HTTP/2 header list) in bytes;
    /// larger ones are refused (431) by the HTTP layer. At least 16384. Default 65536.
    pub max_request_head_bytes: usize,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM. Default 30.
    pub shutdown_grace_secs: u64,
    /// Fetches and renders in flight per client IP (IPv6: /64), else 429; 0 = off. Default 8.
    pub per_client_expensive: usize,
    /// Peers (CIDRs) whose `X-Forwarded-For` names the client. Default [] (the peer is).
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: 1024,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_request_head_bytes: 64 * 1024,
            shutdown_grace_secs: 30,
            per_client_expensive: 8,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Data directory: originals, variants and the index. Default `cache`.
    pub dir: PathBuf,
    /// Bytes of hot objects kept in memory (an LRU weighted by size). Default 256 MiB.
    pub memory_bytes: u64,
    /// Seconds a mirrored original is fresh; after that a request triggers a background
    /// revalidation while the mirrored copy is served at once. Default 86400 (1 day).
    pub fresh_secs: u64,
    /// Seconds a failed fetch is remembered, so a failing URL does not hammer its upstream.
    /// Default 30; 0 turns the negative cache off.
    pub negative_ttl_secs: u64,
    /// Bytes of originals and variants on disk, all told; 0 = no limit. Past it, variants
    /// are evicted (least recently used first), then originals if `evict_originals`.
    /// Default 0.
    pub max_disk_bytes: u64,
    /// Bytes of variants on disk; past it the least recently used are evicted (they are
    /// re-rendered on demand). Default 10 GiB.
    pub max_variant_bytes: u64,
    /// Whether originals may be evicted (least recently used, never one pinned by an
    /// article) to stay under `max_disk_bytes`. They are the mirror: an evicted original
    /// is fetched again on demand only if its upstream still has it. Default false.
    pub evict_originals: bool,
    /// Answer 507 `insufficient-storage` instead of mirroring new originals while
    /// originals alone exceed `max_disk_bytes`. Default false (log it, keep mirroring).
    pub refuse_when_full: bool,
    /// Bytes of the index's (redb's) page cache. Default 64 MiB.
    pub index_cache_bytes: u64,
    /// Bytes of the in-memory URL map (URL → index entry, weighed as key + record heap
    /// sizes + per-entry overhead). Default 32 MiB.
    pub url_map_bytes: u64,
    /// Bytes of the negative cache (URL → remembered failure). Default 8 MiB.
    pub negative_bytes: u64,
    /// Bytes of the probe cache (original → header facts). Default 4 MiB.
    pub probe_cache_bytes: u64,
    /// Bytes of the list of originals refused as too expensive to render. Default 1 MiB.
    pub expensive_bytes: u64,
    /// Bytes of whole answers the hot-response cache keeps (for URLs served from memory
    /// again and again, each weighed as body + target + headers + overhead, see
    /// `server::hot`); at most `memory_bytes / 8`; 0 = off.
    /// Default 32 MiB.
    pub hot_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            dir: PathBuf::from("cache"),
            memory_bytes: 256 * 1024 * 1024,
            fresh_secs: 86_400,
            negative_ttl_secs: 30,
            max_disk_bytes: 0,
            max_variant_bytes: 10 * 1024 * 1024 * 1024,
            evict_originals: false,
            refuse_when_full: false,
            index_cache_bytes: 64 * 1024 * 1024,
            url_map_bytes: 32 * 1024 * 1024,
            negative_bytes: 8 * 1024 * 1024,
            probe_cache_bytes: 4 * 1024 * 1024,
            expensive_bytes: 1024 * 1024,
            hot_bytes: 32 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Seconds to establish a TCP (and TLS) connection. Default 5.
    pub connect_timeout_secs: u64,
    /// Seconds for a whole fetch, redirects and body included. Default 30.
    pub timeout_secs: u64,
    /// Largest body accepted, in bytes; the fetch aborts the moment it is crossed. Default 25 MiB.
    pub max_bytes: u64,
    /// Redirects followed, each checked like the first URL. Default 5.
    pub max_redirects: usize,
    /// User-Agent sent upstream.
    pub user_agent: String,
    /// Destination ports allowed. Default [80, 443].
    pub allowed_ports: Vec<u16>,
    /// Address ranges allowed even though the default policy refuses them
    /// (loopback, private, link-local…). Default [] (none).
    pub allow_cidrs: Vec<IpNet>,
    /// Fixed answers for host names, like curl's `--resolve`: `"host:port" = "ip:port"`.
    /// The mapped address is still checked against the address policy. Default {}.
    pub resolve: BTreeMap<String, SocketAddr>,
    /// Upstream fetches in flight at once; further requests wait for a slot. Default 64.
    pub max_in_flight: usize,
    /// Upstream fetches in flight at once to one host (taken before a global slot), so a
    /// slow host cannot hold them all. 0 = a quarter of `max_in_flight` (at least 1).
    /// Default 0.
    pub max_in_flight_per_host: usize,
    /// Source rules: only hosts matching one of these patterns are fetched, on the first
    /// URL and on every redirect hop. A pattern is an exact name (`static.1sapp.com`) or
    /// `*.` and a name (`*.1sapp.com`: its subdomains, not itself); case is ignored.
    /// Default [] (every host).
    pub allow_hosts: Vec<String>,
    /// Hosts never fetched (same patterns), checked before `allow_hosts`. Default [].
    pub deny_hosts: Vec<String>,
    /// Per-host policy, `[[upstream.host]]` in the file (file only: no env override):
    /// the first entry whose pattern matches a hop's host applies. Default [] (none).
    pub host: Vec<UpstreamHost>,
}

impl UpstreamConfig {
    /// `max_in_flight_per_host` with its default applied.
    pub fn per_host_slots(&self) -> usize {
        match self.max_in_flight_per_host {
            0 => (self.max_in_flight / 4).max(1),
            n => n,
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connect_timeout_secs: 5,
            timeout_secs: 30,
            max_bytes: 25 * 1024 * 1024,
            max_redirects: 5,
            user_agent: concat!("imgmirror/", env!("CARGO_PKG_VERSION")).to_string(),
            allowed_ports: vec![80, 443],
            allow_cidrs: Vec::new(),
            resolve: BTreeMap::new(),
            max_in_flight: 64,
            max_in_flight_per_host: 0,
            allow_hosts: Vec::new(),
            deny_hosts: Vec::new(),
            host: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseConfig {
    /// Cache-Control for images served by upstream URL (`/?…`, originals and variants):
    /// they may change upstream, so never `immutable`. Default: see below.
    pub cache_control_proxy: String,
    /// Cache-Control for content-addressed permalinks (`/m/<sha256>`, originals and
    /// variants): their bytes never change. Default `public, max-age=31536000, immutable`.
    pub cache_control_permalink: String,
    /// Cache-Control for 404s (unknown route, hash, or upstream 404): short, since the
    /// image may appear. Default `public, max-age=60`.
    pub cache_control_not_found: String,
    /// Cache-Control for the other 4xx errors. 5xx and 429 are always `no-store`.
    /// Default `public, max-age=30`.
    pub cache_control_error: String,
    /// `max-age` (seconds) of a WebP/JPEG answer given to a client that accepts AVIF while
    /// the AVIF rendition is rendered in the background (`Cache-Control: public,
    /// max-age=N`, never `immutable`), so caches ask again soon and get the AVIF.
    /// Default 60.
    pub avif_pending_max_age_secs: u64,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        ResponseConfig {
            cache_control_proxy:
                "public, max-age=86400, stale-while-revalidate=604800, stale-if-error=604800".into(),
            cache_control_permalink: "public, max-age=31536000, immutable".into(),
            cache_control_not_found: "public, max-age=60".into(),
            cache_control_error: "public, max-age=30".into(),
            avif_pending_max_age_secs: 60,
        }
    }
}

impl ResponseConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        let values = [
            ("response.cache_control_proxy", &self.cache_control_proxy),
            (
                "response.cache_control_permalink",
                &self.cache_control_permalink,
            ),
            (
                "response.cache_control_not_found",
                &self.cache_control_not_found,
            ),
            ("response.cache_control_error", &self.cache_control_error),
        ];
        let printable = |v: &str| !v.is_empty() && v.bytes().all(|b| (b' '..=b'~').contains(&b));
        if let Some((key, _)) = values.into_iter().find(|(_, v)| !printable(v)) {
            return invalid(key, "must be a non-empty header value of printable ASCII");
        }
        let proxy = self.cache_control_proxy.to_ascii_lowercase();
        if proxy.contains("immutable") {
            let why = "must not be immutable: an upstream URL can change (/m/ URLs cannot)";
            return invalid("response.cache_control_proxy", why);
        }
        Ok(())
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
    /// Filter (`RUST_LOG` syntax, e.g. `info,imgmirror=debug`) used when neither
    /// `IMGMIRROR_LOG` nor `RUST_LOG` is set. Default `info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// A separate address for `/metrics` (e.g. `127.0.0.1:9090`), so the series are not
    /// public; then the main listener answers `/metrics` with 404. Empty = `/metrics` is
    /// served on `server.listen`. Default `""`.
    pub listen: String,
}

impl MetricsConfig {
    /// The separate metrics address, if one is configured (and valid).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.trim().parse().ok()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token for admin endpoints (`POST /prefetch`). Empty = admin endpoints off.
    pub token: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArticleConfig {
    /// URL prefixes of CORS-proxy workers whose image URLs `rewrite` and `prefetch` take as
    /// "upstream behind a worker". Default `["https://cors.zfour.workers.dev/?"]`.
    pub worker_prefixes: Vec<String>,
    /// Size front-matter images are asked for, as `"W,H"` (like `data-size`); empty keeps
    /// the original. Default `""`.
    pub front_matter_size: String,
    /// Images a prefetch mirrors at once. Default 8.
    pub prefetch_concurrency: usize,
    /// Images a prefetch fetches at once from one upstream host (politeness). Default 2.
    pub prefetch_per_host: usize,
    /// Tries per image for transient failures (timeouts, 5xx, resets); 4xx is never
    /// retried. Default 3.
    pub prefetch_attempts: u32,
    /// Largest `POST /prefetch` request body in bytes; larger ones get 413. Default 5 MiB.
    pub prefetch_max_body_bytes: u64,
    /// Also render (and wait for) the AVIF rendition of each variant, so browsers that
    /// accept AVIF get it on their first request. No effect without the `avif` cargo
    /// feature or with `transform.avif_background` off. Default true.
    pub prefetch_avif: bool,
}

impl Default for ArticleConfig {
    fn default() -> Self {
        ArticleConfig {
            worker_prefixes: vec!["https://cors.zfour.workers.dev/?".into()],
            front_matter_size: String::new(),
            prefetch_concurrency: 8,
            prefetch_per_host: 2,
            prefetch_attempts: 3,
            prefetch_max_body_bytes: 5 * 1024 * 1024,
            prefetch_avif: true,
        }
    }
}

impl ArticleConfig {
    /// `front_matter_size` parsed: `None` for the original size (or a value `validate`
    /// refuses).
    pub fn front_matter_size(&self) -> Option<(u32, u32)> {
        let (w, h) = self.front_matter_size.split_once(',')?;
        let w: u32 = w.trim().parse().ok()?;
        let h: u32 = h.trim().parse().ok()?;
        (w > 0 && h > 0).then_some((w, h))
    }
}

impl Config {
    /// Reads `path` (which must exist when `required`), applies the environment, validates.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        apply_env(&mut table, std::env::vars())?;
        let config: Config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects values that cannot work, naming the key; never clamps silently.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_string(),
            })
        };
        if self.server.max_connections == 0 {
            return invalid("server.max_connections", "must be at least 1");
        }
        if self.server.header_read_timeout_secs == 0 || self.server.idle_timeout_secs == 0 {
            return invalid(
                "server.header_read_timeout_secs",
                "header_read_timeout_secs and idle_timeout_secs must be at least 1",
            );
        }
        if self.server.max_request_head_bytes < 16 * 1024 {
            return invalid(
                "server.max_request_head_bytes",
                "must be at least 16384 (URLs up to 8 KiB must fit)",
            );
        }
        if self.upstream.max_bytes == 0 {
            return invalid("upstream.max_bytes", "must be at least 1");
        }
        if self.upstream.timeout_secs == 0 || self.upstream.connect_timeout_secs == 0 {
            return invalid(
                "upstream.timeout_secs",
                "timeouts must be at least 1 second",
            );
        }
        if self.upstream.max_in_flight == 0 {
            return invalid("upstream.max_in_flight", "must be at least 1");
        }
        if self.upstream.max_in_flight_per_host > self.upstream.max_in_flight {
            return invalid(
                "upstream.max_in_flight_per_host",
                "must be at most upstream.max_in_flight (0 = a quarter of it)",
            );
        }
        for (key, patterns) in [
            ("upstream.allow_hosts", &self.upstream.allow_hosts),
            ("upstream.deny_hosts", &self.upstream.deny_hosts),
        ] {
            if let Some(p) = patterns.iter().find(|p| !upstream::is_host_pattern(p)) {
                return invalid(key, &format!("pattern {p:?} is not a host name or *.name"));
            }
        }
        if self.upstream.allowed_ports.is_empty() {
            return invalid("upstream.allowed_ports", "must list at least one port");
        }
        if self.cache.memory_bytes > u64::from(u32::MAX) * 1024 {
            return invalid("cache.memory_bytes", "must be at most 4 TiB");
        }
        // In-memory budgets: room for a few entries of the longest URL; moka weighs in u32.
        for (key, bytes) in [
            ("cache.url_map_bytes", self.cache.url_map_bytes),
            ("cache.negative_bytes", self.cache.negative_bytes),
            ("cache.probe_cache_bytes", self.cache.probe_cache_bytes),
            ("cache.expensive_bytes", self.cache.expensive_bytes),
        ] {
            if !(64 * 1024..=u64::from(u32::MAX) * 1024).contains(&bytes) {
                return invalid(key, "must be between 65536 and 4 TiB");
            }
        }
        if self.cache.index_cache_bytes < 1024 * 1024 {
            return invalid("cache.index_cache_bytes", "must be at least 1 MiB");
        }
        if self.cache.refuse_when_full && self.cache.max_disk_bytes == 0 {
            return invalid(
                "cache.refuse_when_full",
                "needs cache.max_disk_bytes (0 means no limit, so the store is never full)",
            );
        }
        upstream::validate_resolve(&self.upstream.resolve)?;
        upstream::validate_hosts(&self.upstream)?;
        self.response.validate()?;
        if !self.metrics.listen.trim().is_empty() && self.metrics.listen_addr().is_none() {
            return invalid("metrics.listen", "must be an ip:port address, or empty");
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return invalid("log.filter", &e.to_string());
        }
        if let Err(e) = self.transform.validate() {
            return Err(ConfigError::Invalid {
                key: "transform",
                message: e.to_string(),
            });
        }
        self.security.validate()?;
        self.store.validate()?;
        validate_article(&self.article)
    }
}

/// `[article]`: no empty worker prefix, a well-formed front-matter size, positive bounds.
fn validate_article(article: &ArticleConfig) -> Result<(), ConfigError> {
    let invalid = |key, message: &str| {
        Err(ConfigError::Invalid {
            key,
            message: message.to_string(),
        })
    };
    if article.worker_prefixes.iter().any(|p| p.trim().is_empty()) {
        return invalid(
            "article.worker_prefixes",
            "must not contain an empty prefix",
        );
    }
    if !article.front_matter_size.is_empty() && article.front_matter_size().is_none() {
        return invalid(
            "article.front_matter_size",
            "must be \"W,H\" with two positive integers, or empty",
        );
    }
    for (key, value) in [
        ("article.prefetch_concurrency", article.prefetch_concurrency),
        ("article.prefetch_per_host", article.prefetch_per_host),
        (
            "article.prefetch_attempts",
            article.prefetch_attempts as usize,
        ),
        (
            "article.prefetch_max_body_bytes",
            usize::try_from(article.prefetch_max_body_bytes).unwrap_or(usize::MAX),
        ),
    ] {
        if value == 0 {
            return invalid(key, "must be at least 1");
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
