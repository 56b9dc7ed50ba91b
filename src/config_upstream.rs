//! `[upstream]` keys that need more than a line: the per-host policy `[[upstream.host]]`
//! (what a matching upstream host gets: User-Agent, Referer, extra headers, its own slot
//! count and request rate) and the validation of host patterns and `upstream.resolve`.
//!
//! A child of [`crate::config`] kept in its own file; like the rest of `config` it owns
//! keys, defaults and validation only. [`crate::upstream`] acts on them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use super::{ConfigError, UpstreamConfig};

/// One `[[upstream.host]]` entry. The first entry whose `pattern` matches a request's
/// host applies to it (on the first URL and on every redirect hop, by that hop's host);
/// a host no entry matches gets the `[upstream]` defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamHost {
    /// Which hosts: an exact name (`static.1sapp.com`) or `*.` and a name (`*.1sapp.com`:
    /// its subdomains, not itself), as in `upstream.allow_hosts`. Required.
    pub pattern: String,
    /// User-Agent sent to matching hosts. Absent = `upstream.user_agent`; `""` = none.
    pub user_agent: Option<String>,
    /// Referer sent to matching hosts: an absolute http(s) URL, or `""` for none. Default
    /// `""` (no Referer, as for every host without an entry).
    pub referer: String,
    /// Extra request headers, name → value (checked as HTTP header names and values at
    /// load). Names imgmirror sets itself (Host, User-Agent, Referer, conditional and
    /// framing headers) are refused; `Accept` may be replaced. Default {}.
    pub headers: BTreeMap<String, String>,
    /// Fetches in flight at once to one matching host (each host its own count).
    /// Absent = `upstream.max_in_flight_per_host`.
    pub max_in_flight: Option<usize>,
    /// Requests per second to one matching host (a token bucket per host holding one
    /// second's worth, at least one token). A request over the rate waits for its turn up
    /// to half of `upstream.timeout_secs`; one whose turn would come later is refused at
    /// once (503 `overloaded`, never negative-cached). Absent = no limit.
    pub rate_per_sec: Option<f64>,
}

/// Request headers a `[[upstream.host]]` entry may not set through `headers`: the ones
/// imgmirror sets itself or that frame the message.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "user-agent",
    "referer",
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
    "range",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
];

/// Whether `p` is a host pattern: a name, or `*.` and a name.
pub(super) fn is_host_pattern(p: &str) -> bool {
    let name = p.strip_prefix("*.").unwrap_or(p);
    !(name.is_empty() || name.contains(['*', '/', ':', ' ']) || name.starts_with('.'))
}

/// `[[upstream.host]]`: every entry names a valid pattern, header and bound; the message
/// names the entry (1-based) and the offending key.
pub(super) fn validate_hosts(upstream: &UpstreamConfig) -> Result<(), ConfigError> {
    for (i, host) in upstream.host.iter().enumerate() {
        let entry = format!("entry {} (pattern {:?})", i + 1, host.pattern);
        let invalid = |message: String| {
            Err(ConfigError::Invalid {
                key: "upstream.host",
                message: format!("{entry}: {message}"),
            })
        };
        if !is_host_pattern(&host.pattern) {
            return invalid("pattern must be a host name or *.name".into());
        }
        if let Some(ua) = &host.user_agent
            && http::HeaderValue::from_str(ua).is_err()
        {
            return invalid(format!("user_agent {ua:?} is not a valid header value"));
        }
        if !host.referer.is_empty() {
            let url = url::Url::parse(&host.referer).ok();
            let http = url.is_some_and(|u| matches!(u.scheme(), "http" | "https"));
            if !http || http::HeaderValue::from_str(&host.referer).is_err() {
                return invalid(format!(
                    "referer {:?} must be an absolute http(s) URL, or \"\" for none",
                    host.referer
                ));
            }
        }
        for (name, value) in &host.headers {
            let Ok(parsed) = http::HeaderName::from_bytes(name.as_bytes()) else {
                return invalid(format!("headers key {name:?} is not a valid header name"));
            };
            if RESERVED_HEADERS.contains(&parsed.as_str()) {
                return invalid(format!(
                    "headers key {name:?} is set by imgmirror (use user_agent / referer)"
                ));
            }
            if http::HeaderValue::from_str(value).is_err() {
                return invalid(format!(
                    "headers.{name} value {value:?} is not a valid header value"
                ));
            }
        }
        if let Some(n) = host.max_in_flight
            && (n == 0 || n > upstream.max_in_flight)
        {
            return invalid("max_in_flight must be between 1 and upstream.max_in_flight".into());
        }
        if let Some(rate) = host.rate_per_sec
            && !(rate.is_finite() && rate >= 0.001)
        {
            return invalid("rate_per_sec must be a number of at least 0.001".into());
        }
    }
    Ok(())
}

/// `upstream.resolve`: keys are `host:port`, and one host maps to one address.
pub(super) fn validate_resolve(resolve: &BTreeMap<String, SocketAddr>) -> Result<(), ConfigError> {
    let invalid = |message: String| {
        Err(ConfigError::Invalid {
            key: "upstream.resolve",
            message,
        })
    };
    let mut hosts: BTreeMap<&str, std::net::IpAddr> = BTreeMap::new();
    for (key, addr) in resolve {
        let Some((host, port)) = key.rsplit_once(':') else {
            return invalid(format!("key {key:?} is not host:port"));
        };
        if host.is_empty() || port.parse::<u16>().is_err() {
            return invalid(format!("key {key:?} is not host:port"));
        }
        // One connection pool entry per host name: a host may be mapped on several
        // ports, but all to the same address.
        if let Some(prev) = hosts.insert(host, addr.ip())
            && prev != addr.ip()
        {
            return invalid(format!(
                "host {host} is mapped to two addresses ({prev} and {})",
                addr.ip()
            ));
        }
    }
    Ok(())
}
