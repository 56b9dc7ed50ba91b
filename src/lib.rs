//! imgmirror: an image mirror and media proxy that replaces third-party CORS-proxy
//! workers. It fetches each upstream image once, verifies and content-hashes it, keeps
//! the original on disk for good, and serves it (resized on request) with the headers
//! browsers and CDNs need.
//!
//! - [`article`]: find image URLs in posts and rewrite them to the mirror.
//! - [`config`]: the one config struct; file, then environment, then flags.
//! - [`server`]: HTTP accept loop, routing, responses and the error → status map.
//! - [`store`]: the mirror: memory LRU, content-addressed files, the URL index.
//! - [`transform`]: resize and re-encode: options, negotiation, limits, the render pool.
//! - [`upstream`]: outbound fetches, the SSRF guard, image verification.

pub mod article;
pub mod config;
pub mod server;
pub mod store;
pub mod transform;
pub mod upstream;
