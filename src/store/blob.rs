//! What the store hands out: a [`Blob`] (bytes and what they are) and the [`Source`] it
//! came from. Plain data; the store's layers fill them in.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;

use super::ObjectMeta;

/// Bytes in memory plus what they are.
#[derive(Debug, Clone)]
pub struct Blob {
    pub bytes: Bytes,
    pub meta: Arc<ObjectMeta>,
    /// Unix second of the last use noted for the disk budget's recency (shared by clones).
    pub(super) used: Arc<AtomicU64>,
}

impl Blob {
    pub fn new(bytes: Bytes, meta: ObjectMeta) -> Blob {
        Blob {
            bytes,
            meta: Arc::new(meta),
            used: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Where a response's bytes came from, for logs and the `X-Imgmirror-Source` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Memory,
    Disk,
    Upstream,
    Render,
    /// The shared store (`store.backend = "s3"`), missing from this node's local layers.
    Shared,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Memory => "memory",
            Source::Disk => "disk",
            Source::Upstream => "upstream",
            Source::Render => "render",
            Source::Shared => "shared",
        }
    }
}
