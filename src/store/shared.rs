//! The shared backend: one bucket of an S3-compatible object store (through the
//! `object_store` crate) that every node reads and writes. Layout under `store.prefix`:
//!
//! ```text
//! objects/<sha256>          originals; key = SHA-256 of the bytes
//! variants/<name>           renditions; name = SHA-256(original, options, format);
//!                           content + 32-byte SHA-256 trailer (as on disk)
//! urls/<sha256 of the URL>  one UrlEntry as JSON (the normalised URL, its object, pins)
//! probes/…                  start-up checks of conditional writes (deleted after)
//! ```
//!
//! Objects and variants are content-addressed, so concurrent writers never conflict: a
//! key always holds the same bytes, and a write of an existing key is skipped
//! (`If-None-Match: *`). URL records are read-modify-written with conditional puts
//! (create: `If-None-Match: *`; update: `If-Match: <etag>`) and re-applied on a conflict,
//! so two nodes pinning one URL at once both keep their pin. Every read re-hashes what it
//! read: a damaged key is never served under its name.
//!
//! This module knows keys, bytes and records; the tiering policy in front of it (local
//! disk and memory as caches) is [`super::tiered`]'s.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, UpdateVersion,
};

use super::index::UrlEntry;
use crate::config::StoreConfig;
use crate::hash::ContentHash;

/// Conflicting writes of one URL record retried before giving up (each re-reads it).
const MAX_CONFLICTS: u32 = 50;
/// Records fetched at once when listing the URL records.
const LIST_CONCURRENCY: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("cannot configure the S3 client")]
    Config(#[source] object_store::Error),
    #[error("shared store: cannot {action} {key}")]
    Request {
        action: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("shared store record {key} is unreadable")]
    Record {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the shared store does not honour conditional writes ({0}); concurrent pins from \
         several nodes could be lost. Use a store that does, or set \
         store.unsafe_unconditional_writes = true to run anyway"
    )]
    Unconditional(&'static str),
    #[error("shared store: gave up on {key} after {MAX_CONFLICTS} conflicting writes")]
    Contended { key: String },
}

/// Which content-addressed namespace a key is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Objects,
    Variants,
}

impl Space {
    fn dir(self) -> &'static str {
        match self {
            Space::Objects => "objects",
            Space::Variants => "variants",
        }
    }
}

/// A listed key: its name (hex) and size in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub bytes: u64,
}

pub struct Shared {
    store: Arc<dyn ObjectStore>,
    /// Whether conditional puts are used (false only with `unsafe_unconditional_writes`
    /// after the probe found them ignored).
    conditional: bool,
    /// `s3://bucket/prefix`, for logs.
    name: String,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Shared {
    /// Builds the client from `[store]` (credentials from the config or the standard
    /// `AWS_*` variables). Connects nothing yet.
    pub fn open(config: &StoreConfig) -> Result<Shared, SharedError> {
        // reqwest is built without a default TLS crypto provider; name ours (as the
        // upstream client does), for https endpoints.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&config.bucket);
        if !config.endpoint.is_empty() {
            builder = builder.with_endpoint(&config.endpoint);
        }
        let region = if !config.region.is_empty() {
            config.region.clone()
        } else {
            std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|_| "us-east-1".into())
        };
        builder = builder.with_region(region);
        if !config.access_key_id.is_empty() {
            builder = builder
                .with_access_key_id(&config.access_key_id)
                .with_secret_access_key(&config.secret_access_key);
        }
        let timeout = Duration::from_secs(config.timeout_secs);
        let store = builder
            // Client options replace the builder's: allow_http goes in them.
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(config.allow_http)
                    .with_timeout(timeout)
                    .with_connect_timeout(Duration::from_secs(config.timeout_secs.min(3))),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: config.max_retries,
                retry_timeout: timeout,
            })
            .build()
            .map_err(SharedError::Config)?;
        let prefix = config.prefix.trim_matches('/');
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(store)
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        };
        Ok(Shared {
            store,
            conditional: true,
            name: format!("s3://{}/{prefix}", config.bucket),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_conditional(&self) -> bool {
        self.conditional
    }

    pub(super) fn set_conditional(&mut self, conditional: bool) {
        self.conditional = conditional;
    }

    /// Checks that the store honours `If-None-Match: *` and `If-Match` on a probe key (a
    /// store that silently ignores them would let concurrent pins overwrite each other).
    /// With `allow_unconditional`, a store that ignores them is used with plain puts.
    pub async fn probe(&mut self, allow_unconditional: bool) -> Result<(), SharedError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let key = Path::from(format!("probes/{}-{nanos}", std::process::id()));
        let put = |mode: PutMode| {
            self.store
                .put_opts(&key, PutPayload::from_static(b"probe"), mode.into())
        };
        let request = |source| SharedError::Request {
            action: "write a probe key",
            key: key.to_string(),
            source,
        };
        put(PutMode::Create).await.map_err(request)?;
        let second = put(PutMode::Create).await;
        let wrong = UpdateVersion {
            e_tag: Some("\"imgmirror-probe-no-such-etag\"".into()),
            version: None,
        };
        let update = put(PutMode::Update(wrong)).await;
        let _ = self.store.delete(&key).await;
        let ignored = match (second, update) {
            (Ok(_), _) => Some("If-None-Match: * was ignored"),
            (_, Ok(_)) => Some("If-Match was ignored"),
            (Err(object_store::Error::AlreadyExists { .. }), Err(e)) => match e {
                object_store::Error::Precondition { .. } => None,
                e => return Err(request(e)),
            },
            (Err(e), _) => return Err(request(e)),
        };
        match ignored {
            None => Ok(()),
            Some(what) if allow_unconditional => {
                tracing::warn!(store = %self.name, "{what}: running with unconditional writes (store.unsafe_unconditional_writes); concurrent URL record updates from several nodes can lose a pin");
                self.conditional = false;
                Ok(())
            }
            Some(what) => Err(SharedError::Unconditional(what)),
        }
    }

    /// Reachable and answering: a read of a key that need not exist.
    pub async fn check_ready(&self) -> Result<(), SharedError> {
        let key = Path::from("probes/ready");
        match self.store.head(&key).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(SharedError::Request {
                action: "reach",
                key: self.name.clone(),
                source,
            }),
        }
    }

    fn key(space: Space, name: &str) -> Path {
        Path::from(format!("{}/{name}", space.dir()))
    }

    /// The content under `objects/<hash>` or `variants/<hash>`, or `None` when absent or
    /// damaged (its content no longer matches its name: logged, not served).
    pub async fn get(
        &self,
        space: Space,
        hash: &ContentHash,
    ) -> Result<Option<Bytes>, SharedError> {
        let key = Self::key(space, &hash.to_hex());
        let Some(bytes) = self.get_raw(&key).await? else {
            return Ok(None);
        };
        let hash = *hash;
        let bytes = tokio::task::spawn_blocking(move || check_content(space, &hash, bytes))
            .await
            .ok()
            .flatten();
        if bytes.is_none() {
            tracing::error!(%key, store = %self.name, "shared object does not match its name; not serving it (imgmirror verify reports it)");
        }
        Ok(bytes)
    }

    /// Writes `bytes` (a variant: plus its trailer) under `hash` unless the key exists;
    /// whether it wrote. For objects the caller guarantees `hash` is their SHA-256.
    pub async fn put(
        &self,
        space: Space,
        hash: &ContentHash,
        bytes: Bytes,
    ) -> Result<bool, SharedError> {
        let key = Self::key(space, &hash.to_hex());
        let payload = match space {
            Space::Objects => PutPayload::from_bytes(bytes),
            Space::Variants => {
                let trailer = ContentHash::of(&bytes);
                PutPayload::from_iter([bytes, Bytes::copy_from_slice(trailer.as_bytes())])
            }
        };
        let mode = if self.conditional {
            PutMode::Create
        } else {
            match self.store.head(&key).await {
                Ok(_) => return Ok(false),
                Err(object_store::Error::NotFound { .. }) => PutMode::Overwrite,
                Err(source) => return Err(request_error("check", &key, source)),
            }
        };
        match self.store.put_opts(&key, payload, mode.into()).await {
            Ok(_) => Ok(true),
            // Another node stored the same content first: the same bytes.
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(source) => Err(request_error("write", &key, source)),
        }
    }

    /// Whether `objects/<hash>` (or a variant) exists, without reading it.
    pub async fn exists(&self, space: Space, hash: &ContentHash) -> Result<bool, SharedError> {
        let key = Self::key(space, &hash.to_hex());
        match self.store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(request_error("check", &key, source)),
        }
    }

    pub async fn delete(&self, space: Space, name: &str) -> Result<(), SharedError> {
        let key = Self::key(space, name);
        self.delete_key(&key).await
    }

    /// Moves a damaged key to `quarantine/<space>-<name>.<unix nanos>` (never deleted: an
    /// operator decides).
    pub async fn quarantine(&self, space: Space, name: &str) -> Result<(), SharedError> {
        let key = Self::key(space, name);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let aside = Path::from(format!("quarantine/{}-{name}.{nanos}", space.dir()));
        self.store
            .copy(&key, &aside)
            .await
            .map_err(|source| request_error("quarantine", &key, source))?;
        self.delete_key(&key).await
    }

    /// Every key in `space`, with its size.
    pub async fn list(&self, space: Space) -> Result<Vec<Listed>, SharedError> {
        let prefix = Path::from(space.dir());
        self.store
            .list(Some(&prefix))
            .map_ok(|meta| Listed {
                name: meta.location.filename().unwrap_or_default().to_string(),
                bytes: meta.size,
            })
            .try_collect()
            .await
            .map_err(|source| request_error("list", &prefix, source))
    }

    fn url_key(url: &str) -> Path {
        Path::from(format!("urls/{}", ContentHash::of(url.as_bytes()).to_hex()))
    }

    /// The shared record of `url` (normalised), or `None`.
    pub async fn url(&self, url: &str) -> Result<Option<UrlEntry>, SharedError> {
        Ok(self.url_versioned(url).await?.map(|(entry, _)| entry))
    }

    async fn url_versioned(
        &self,
        url: &str,
    ) -> Result<Option<(UrlEntry, UpdateVersion)>, SharedError> {
        let key = Self::url_key(url);
        let got = match self.store.get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(request_error("read", &key, source)),
        };
        let version = UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|source| request_error("read", &key, source))?;
        let entry = serde_json::from_slice(&bytes).map_err(|source| SharedError::Record {
            key: key.to_string(),
            source,
        })?;
        Ok(Some((entry, version)))
    }

    /// Read-modify-write of one URL record: `change` gets the record as it is now (or
    /// `None`) and returns what to write, or `None` to leave it. A conflicting write by
    /// another node makes it read again and re-apply `change`, so no update is lost.
    /// Returns the record as it is afterwards.
    pub async fn update_url(
        &self,
        url: &str,
        mut change: impl FnMut(Option<&UrlEntry>) -> Option<UrlEntry>,
    ) -> Result<Option<UrlEntry>, SharedError> {
        let key = Self::url_key(url);
        for attempt in 0..MAX_CONFLICTS {
            let current = self.url_versioned(url).await?;
            let Some(new) = change(current.as_ref().map(|(e, _)| e)) else {
                return Ok(current.map(|(e, _)| e));
            };
            let mode = match (self.conditional, current) {
                (false, _) => PutMode::Overwrite,
                (true, None) => PutMode::Create,
                (true, Some((_, version))) => PutMode::Update(version),
            };
            let json = serde_json::to_vec(&new).unwrap_or_default();
            let opts = PutOptions::from(mode);
            match self
                .store
                .put_opts(&key, PutPayload::from(json), opts)
                .await
            {
                Ok(_) => return Ok(Some(new)),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => {
                    // Someone else wrote first: back off a little (jittered, so two nodes
                    // do not collide again in lockstep), then re-read.
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.subsec_nanos());
                    let jitter = u64::from(nanos % 20) + u64::from(attempt.min(10)) * 4;
                    tokio::time::sleep(Duration::from_millis(2 + jitter)).await;
                }
                Err(source) => return Err(request_error("write", &key, source)),
            }
        }
        Err(SharedError::Contended {
            key: key.to_string(),
        })
    }

    /// Removes a URL record (a purge). Not conditional: a purge wins over a pin racing it.
    pub async fn delete_url(&self, url: &str) -> Result<(), SharedError> {
        self.delete_key(&Self::url_key(url)).await
    }

    /// Every URL record, fetched a few at a time.
    pub async fn urls(&self) -> Result<Vec<UrlEntry>, SharedError> {
        let prefix = Path::from("urls");
        let keys: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|source| request_error("list", &prefix, source))?;
        let records: Vec<Option<UrlEntry>> = futures_util::stream::iter(keys)
            .map(|key| async move {
                let got = match self.store.get(&key).await {
                    Ok(got) => got,
                    // Purged between the listing and the read.
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(source) => return Err(request_error("read", &key, source)),
                };
                let bytes = got
                    .bytes()
                    .await
                    .map_err(|source| request_error("read", &key, source))?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| SharedError::Record {
                        key: key.to_string(),
                        source,
                    })
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(records.into_iter().flatten().collect())
    }

    async fn get_raw(&self, key: &Path) -> Result<Option<Bytes>, SharedError> {
        match self.store.get(key).await {
            Ok(got) => got
                .bytes()
                .await
                .map(Some)
                .map_err(|source| request_error("read", key, source)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(request_error("read", key, source)),
        }
    }

    async fn delete_key(&self, key: &Path) -> Result<(), SharedError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(request_error("delete", key, source)),
        }
    }
}

fn request_error(action: &'static str, key: &Path, source: object_store::Error) -> SharedError {
    SharedError::Request {
        action,
        key: key.to_string(),
        source,
    }
}

/// The content of a key if it matches its name: an object's SHA-256 is its name; a
/// variant carries the SHA-256 of its content as a 32-byte trailer (stripped here).
pub fn check_content(space: Space, hash: &ContentHash, bytes: Bytes) -> Option<Bytes> {
    match space {
        Space::Objects => (ContentHash::of(&bytes) == *hash).then_some(bytes),
        Space::Variants => {
            let split = bytes.len().checked_sub(32)?;
            let (content, trailer) = (bytes.slice(..split), &bytes[split..]);
            let expected = ContentHash::from_bytes(<[u8; 32]>::try_from(trailer).ok()?);
            (ContentHash::of(&content) == expected).then_some(content)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_checked_against_its_name() {
        let bytes = Bytes::from_static(b"original");
        let hash = ContentHash::of(&bytes);
        assert_eq!(
            check_content(Space::Objects, &hash, bytes.clone()),
            Some(bytes.clone())
        );
        let other = ContentHash::of(b"other");
        assert_eq!(check_content(Space::Objects, &other, bytes), None);
        let mut variant = b"rendered".to_vec();
        variant.extend_from_slice(ContentHash::of(b"rendered").as_bytes());
        let name = ContentHash::of(b"recipe");
        assert_eq!(
            check_content(Space::Variants, &name, Bytes::from(variant.clone())).as_deref(),
            Some(&b"rendered"[..])
        );
        variant[0] ^= 1;
        assert_eq!(
            check_content(Space::Variants, &name, Bytes::from(variant)),
            None
        );
        assert_eq!(
            check_content(Space::Variants, &name, Bytes::from_static(b"short")),
            None
        );
    }
}
