//! imgmirror: an image mirror and media proxy that replaces third-party CORS-proxy
//! workers. It fetches each upstream image once, verifies and content-hashes it, keeps
//! the original on disk for good, and serves it (resized on request) with the headers
//! browsers and CDNs need.
//!
//! Front ends call the service layer, which calls the store and the transforms; nothing
//! below calls back up.
//!
//! - [`server`]: the HTTP front end: accept loop, routing, responses.
//! - [`article`]: the posts front end: find image URLs in posts, rewrite them, prefetch.
//! - [`error`]: the request-level error and THE error → HTTP status map.
//! - [`mirror`]: the service layer: original by URL or hash, variant, pin, purge.
//! - [`store`]: the mirror's storage: memory LRU, content-addressed files, the URL index.
//! - [`transform`]: resize and re-encode: options, negotiation, limits, the render pool.
//! - [`upstream`]: outbound fetches, the SSRF guard, image verification.
//! - [`url_grammar`]: the shapes of imgmirror URLs, parsed and written (leaf).
//! - [`signing`]: signed URLs: the canonical message, HMAC, which requests need one (leaf).
//! - [`hash`]: `ContentHash`, the SHA-256 that names everything stored (leaf).
//! - [`config`]: the one config struct; file, then environment, then flags (leaf).
//! - [`metrics`]: the Prometheus series and the functions that record them (leaf).

pub mod article;
pub mod config;
mod config_store;
pub mod error;
pub mod hash;
pub mod metrics;
pub mod mirror;
pub mod server;
pub mod signing;
pub mod store;
pub mod transform;
pub mod upstream;
pub mod url_grammar;
