//! `[store]`: which backend holds the mirror. `"disk"` (the default) is the embedded store
//! in `cache.dir`; `"s3"` is a bucket of any S3-compatible object store shared by every
//! node, with `cache.dir` as this node's read-through cache in front of it (see README
//! "Running several nodes"). Part of [`crate::config`]; kept apart so that file stays
//! small. It owns the keys, their defaults and their validation, nothing else.

use serde::Deserialize;

use crate::config::ConfigError;

/// Where the mirror lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `cache.dir` alone (objects, variants, index.redb).
    #[default]
    Disk,
    /// A shared S3-compatible bucket, `cache.dir` as a local cache.
    S3,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `"disk"` or `"s3"`. Default `"disk"`.
    pub backend: Backend,
    /// The bucket (s3). Required with `backend = "s3"`; it must exist.
    pub bucket: String,
    /// Key prefix inside the bucket, so several mirrors can share one bucket. Default ``.
    pub prefix: String,
    /// Endpoint URL of an S3-compatible server (`http://127.0.0.1:9000`); empty = AWS
    /// (or `AWS_ENDPOINT_URL`). Default ``.
    pub endpoint: String,
    /// Region; empty = `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`. Default ``.
    pub region: String,
    /// Allow a plain-HTTP endpoint (a test server, a store on a private network).
    /// Default false.
    pub allow_http: bool,
    /// Credentials; empty = the standard `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
    /// (and `AWS_SESSION_TOKEN`) environment variables. Default ``.
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Start even when the store ignores conditional writes (`If-None-Match: *`,
    /// `If-Match`). Then two nodes writing one URL record at once can lose a pin; objects
    /// and variants stay safe (same key, same bytes). Default false: refuse to start.
    pub unsafe_unconditional_writes: bool,
    /// Seconds a node trusts its local copy of a URL record before re-reading the shared
    /// one (so a purge through another node is seen within this). Default 30.
    pub shared_recheck_secs: u64,
    /// Seconds for one request to the store, retries included. Default 10.
    pub timeout_secs: u64,
    /// Retries (with exponential backoff) of a failed request to the store. Default 3.
    pub max_retries: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Disk,
            bucket: String::new(),
            prefix: String::new(),
            endpoint: String::new(),
            region: String::new(),
            allow_http: false,
            access_key_id: String::new(),
            secret_access_key: String::new(),
            unsafe_unconditional_writes: false,
            shared_recheck_secs: 30,
            timeout_secs: 10,
            max_retries: 3,
        }
    }
}

impl StoreConfig {
    pub fn is_shared(&self) -> bool {
        self.backend == Backend::S3
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_string(),
            })
        };
        if self.backend == Backend::S3 && self.bucket.trim().is_empty() {
            return invalid("store.bucket", "is required with store.backend = \"s3\"");
        }
        if self.timeout_secs == 0 {
            return invalid("store.timeout_secs", "must be at least 1");
        }
        if self.prefix.starts_with('/') || self.prefix.contains("//") {
            return invalid("store.prefix", "must not start with / or contain //");
        }
        if self.access_key_id.is_empty() != self.secret_access_key.is_empty() {
            return invalid(
                "store.access_key_id",
                "give both access_key_id and secret_access_key, or neither (AWS_* variables)",
            );
        }
        Ok(())
    }
}
