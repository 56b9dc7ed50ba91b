//! Integration tests: real imgmirror servers on 127.0.0.1 against a fixture origin that
//! serves real photos and misbehaves on purpose. One binary (`autotests = false`).

mod articles;
mod articles_rewrite;
mod audit;
mod browser;
mod browser_placeholders;
mod headers;
mod lifecycle;
mod mirror;
mod ssrf;
mod support;
mod transform;
