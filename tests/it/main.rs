//! Integration tests: real imgmirror servers on 127.0.0.1 against a fixture origin that
//! serves real photos and misbehaves on purpose. One binary (`autotests = false`).

mod articles;
mod articles_rewrite;
mod audit;
mod avif;
mod browser;
mod browser_placeholders;
mod cdn;
mod crash;
mod fuzz_regressions;
mod headers;
mod hostile_clients;
mod hostile_images;
mod hostile_inputs;
mod hostile_upstreams;
mod lifecycle;
mod mirror;
mod s3;
mod security;
mod ssrf;
mod store_lifecycle;
mod support;
mod transform;
mod upstream_policy;
mod varnish;
