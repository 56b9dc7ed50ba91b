//! Fetching originals from upstream servers: the only code that opens outbound
//! connections.
//!
//! [`Fetcher::fetch`] takes an absolute URL and returns a verified image (or "not
//! modified" for a conditional request) or a typed [`UpstreamError`]. It owns the HTTP
//! client, the timeouts, the byte cap, redirect following (each hop re-checked by
//! [`guard`]), and the check that the body is an image ([`verify`]). It knows nothing of
//! the store, hashing or HTTP responses to clients.
//!
//! Fetch slots are shared fairly: a fetch takes its host's slot
//! (`upstream.max_in_flight_per_host`) before a global one (`upstream.max_in_flight`),
//! so one slow or tarpit host cannot hold every slot. Per-host policy (`[[upstream.host]]`:
//! User-Agent, Referer, extra headers, slot count, request rate) is [`hosts`]'s, applied
//! on every hop by that hop's host.

mod check;
pub mod guard;
mod hosts;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;
use reqwest::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, HOST, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, LOCATION,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::Url;

use crate::config::UpstreamConfig;
pub use check::Checked;
pub use guard::{GuardError, Policy};
pub use verify::{ImageInfo, VerifyError};

/// What the upstream said about freshness, kept to make conditional requests later.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub cache_control: Option<String>,
}

/// A fetched, verified original.
#[derive(Debug, Clone)]
pub struct Image {
    pub bytes: Bytes,
    pub info: ImageInfo,
    pub validators: Validators,
    pub status: u16,
    /// Where the bytes came from after redirects.
    pub final_url: Url,
}

#[derive(Debug, Clone)]
pub enum Fetched {
    Image(Image),
    /// The conditional request matched: the mirrored copy is still current.
    NotModified(Validators),
}

/// Why a fetch failed. Variants say whose fault it is; `crate::error` maps them to
/// statuses.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("destination refused: {0}")]
    Forbidden(#[from] GuardError),
    #[error("upstream answered {status} for {url}")]
    NotFound { status: u16, url: String },
    #[error("upstream answered {status} for {url}")]
    Status { status: u16, url: String },
    #[error("upstream body for {url} is larger than the {limit}-byte limit")]
    TooLarge { limit: u64, url: String },
    #[error("upstream sent {content_type} for {url}: {reason}")]
    NotAnImage {
        content_type: String,
        url: String,
        reason: VerifyError,
    },
    #[error("upstream image {url} is corrupt: {reason}")]
    Corrupt { url: String, reason: VerifyError },
    #[error("upstream timed out after {secs} s for {url}")]
    Timeout { secs: u64, url: String },
    #[error("more than {max} redirects from {url}")]
    TooManyRedirects { max: usize, url: String },
    #[error("upstream request to {url} failed: {message}")]
    Transport { url: String, message: String },
    #[error("too many upstream fetches in flight")]
    Overloaded,
    /// The host's `rate_per_sec` would not give this fetch a turn in time.
    #[error("upstream host {host} is over its rate_per_sec")]
    RateLimited { host: String },
}

impl UpstreamError {
    /// Worth retrying later (timeouts, 5xx, resets), as opposed to a definite answer.
    pub fn is_transient(&self) -> bool {
        match self {
            UpstreamError::Timeout { .. }
            | UpstreamError::Transport { .. }
            | UpstreamError::Overloaded
            | UpstreamError::RateLimited { .. } => true,
            UpstreamError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// Our own overload (no slot in time, over a host's rate), not the upstream's answer:
    /// never remembered as the URL's failure.
    pub fn is_own_overload(&self) -> bool {
        matches!(
            self,
            UpstreamError::Overloaded | UpstreamError::RateLimited { .. }
        )
    }
}

pub struct Fetcher {
    client: reqwest::Client,
    policy: Arc<Policy>,
    config: UpstreamConfig,
    slots: Semaphore,
    hosts: hosts::Hosts,
}

impl Fetcher {
    pub fn new(config: &UpstreamConfig) -> Result<Fetcher, reqwest::Error> {
        // reqwest is built without a bundled crypto provider (ring is much cheaper to
        // build than aws-lc); installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let policy = Arc::new(Policy::new(config));
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(guard::GuardedResolver::new(policy.clone())))
            // Redirects are followed by hand so each hop passes the guard again.
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .no_proxy()
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .timeout(Duration::from_secs(config.timeout_secs))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Fetcher {
            client,
            policy,
            config: config.clone(),
            slots: Semaphore::new(config.max_in_flight),
            hosts: hosts::Hosts::new(config),
        })
    }

    /// Fetches `url`, following redirects, and verifies the body is an image. With
    /// `conditional`, sends the stored validators and may return [`Fetched::NotModified`].
    pub async fn fetch(
        &self,
        url: &Url,
        conditional: Option<&Validators>,
    ) -> Result<Fetched, UpstreamError> {
        let secs = self.config.timeout_secs;
        let deadline = Instant::now() + Duration::from_secs(secs);
        let timeout = || UpstreamError::Timeout {
            secs,
            url: url.to_string(),
        };
        // The host's slot (and turn) first: fetches queued for a slow host wait there,
        // not in the global queue, so other hosts' fetches still find a free global slot.
        let pass = Some(self.hosts.enter(&hosts::host_key(url), deadline).await?);
        let _slot = tokio::time::timeout_at(deadline, self.slots.acquire())
            .await
            .map_err(|_| UpstreamError::Overloaded)?
            .map_err(|_| UpstreamError::Overloaded)?;
        tokio::time::timeout_at(deadline, self.fetch_hops(url, conditional, deadline, pass))
            .await
            .map_err(|_| timeout())?
    }

    /// The request for one hop: the hop host's headers (from its `[[upstream.host]]`
    /// entry), `Host` when `upstream.resolve` moved the port, and the validators. `pass`
    /// is replaced by the hop host's own when a redirect changed hosts (or is `None`), so
    /// every hop takes its host's slot and turn.
    async fn hop_request(
        &self,
        method: reqwest::Method,
        current: &Url,
        conditional: Option<&Validators>,
        deadline: Instant,
        pass: &mut Option<hosts::Pass>,
    ) -> Result<reqwest::RequestBuilder, UpstreamError> {
        let hop = self.policy.check_url(current)?;
        let host = hosts::host_key(current);
        if pass.as_ref().is_none_or(|p| p.host() != host) {
            // Let go of the previous host's slot before waiting for this one's.
            *pass = None;
            *pass = Some(self.hosts.enter(&host, deadline).await?);
        }
        let mut headers = pass
            .as_ref()
            .map(|p| p.headers().clone())
            .unwrap_or_default();
        let mut set = |name, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        };
        if let Some(host) = &hop.host_header {
            set(HOST, host);
        }
        if let Some(v) = conditional {
            if let Some(etag) = &v.etag {
                set(IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &v.last_modified {
                set(IF_MODIFIED_SINCE, lm);
            }
        }
        Ok(self
            .client
            .request(method, hop.connect_url)
            .headers(headers))
    }

    async fn fetch_hops(
        &self,
        url: &Url,
        conditional: Option<&Validators>,
        deadline: Instant,
        mut pass: Option<hosts::Pass>,
    ) -> Result<Fetched, UpstreamError> {
        let mut current = url.clone();
        for _ in 0..=self.config.max_redirects {
            let request = self
                .hop_request(
                    reqwest::Method::GET,
                    &current,
                    conditional,
                    deadline,
                    &mut pass,
                )
                .await?;
            let mut response = request
                .send()
                .await
                .map_err(|e| self.transport_error(&current, e))?;
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                current = redirect_target(&current, &response)?;
                continue;
            }
            let validators = validators(response.headers());
            if status == StatusCode::NOT_MODIFIED && conditional.is_some() {
                return Ok(Fetched::NotModified(validators));
            }
            if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
                return Err(UpstreamError::NotFound {
                    status: status.as_u16(),
                    url: current.to_string(),
                });
            }
            if !status.is_success() {
                return Err(UpstreamError::Status {
                    status: status.as_u16(),
                    url: current.to_string(),
                });
            }
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("no content type")
                .to_string();
            let bytes = self.read_capped(&mut response, &current, deadline).await?;
            // Verification scans the whole body for end markers: off the runtime.
            let body = bytes.clone();
            let verified = tokio::task::spawn_blocking(move || verify::verify(&body))
                .await
                .map_err(|e| UpstreamError::Transport {
                    url: current.to_string(),
                    message: format!("verification task failed: {e}"),
                })?;
            let info = verified.map_err(|reason| match reason {
                VerifyError::Truncated(..) | VerifyError::BadHeader(..) => UpstreamError::Corrupt {
                    url: current.to_string(),
                    reason,
                },
                _ => UpstreamError::NotAnImage {
                    content_type,
                    url: current.to_string(),
                    reason,
                },
            })?;
            return Ok(Fetched::Image(Image {
                bytes,
                info,
                validators,
                status: status.as_u16(),
                final_url: current,
            }));
        }
        Err(UpstreamError::TooManyRedirects {
            max: self.config.max_redirects,
            url: url.to_string(),
        })
    }

    /// Reads the body, aborting the moment it crosses `max_bytes` rather than
    /// buffering a hostile upstream's endless stream.
    async fn read_capped(
        &self,
        response: &mut reqwest::Response,
        url: &Url,
        deadline: Instant,
    ) -> Result<Bytes, UpstreamError> {
        let limit = self.config.max_bytes;
        let too_large = || UpstreamError::TooLarge {
            limit,
            url: url.to_string(),
        };
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let capacity = response.content_length().unwrap_or(64 * 1024).min(limit);
        let mut body = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
        loop {
            let chunk = tokio::time::timeout_at(deadline, response.chunk())
                .await
                .map_err(|_| UpstreamError::Timeout {
                    secs: self.config.timeout_secs,
                    url: url.to_string(),
                })?
                .map_err(|e| self.transport_error(url, e))?;
            let Some(chunk) = chunk else { break };
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        // Without a Content-Length the buffer grew by doubling; the bytes are kept in
        // memory (weighed by length), so hand over a tight copy when much is spare.
        if body.capacity() - body.len() > body.len() / 8 {
            return Ok(Bytes::copy_from_slice(&body));
        }
        Ok(body.freeze())
    }

    fn transport_error(&self, url: &Url, error: reqwest::Error) -> UpstreamError {
        // The guard's refusal travels up from the resolver inside reqwest's error chain.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(e) = source {
            if let Some(refusal) = e.downcast_ref::<GuardError>() {
                return UpstreamError::Forbidden(refusal.clone());
            }
            source = e.source();
        }
        if error.is_timeout() {
            return UpstreamError::Timeout {
                secs: self.config.timeout_secs,
                url: url.to_string(),
            };
        }
        UpstreamError::Transport {
            url: url.to_string(),
            message: error_chain(&error),
        }
    }
}

/// Longest validator or cache header kept; a longer one is dropped (not cut: a cut
/// ETag would never match), so a hostile upstream cannot make us store or echo 200 KB
/// values per URL.
pub const MAX_VALIDATOR_BYTES: usize = 256;

fn validators(headers: &reqwest::header::HeaderMap) -> Validators {
    let get = |name| {
        headers
            .get(name)
            .filter(|v| v.len() <= MAX_VALIDATOR_BYTES)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    Validators {
        etag: get(ETAG),
        last_modified: get(LAST_MODIFIED),
        cache_control: get(CACHE_CONTROL),
    }
}

/// "a: b: c" from an error and its sources, so logs say why a connection failed.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = e.source();
    }
    message
}

/// Where a redirect answer points: its `Location`, resolved against the URL that answered
/// (checked by the guard like any other hop before it is fetched).
fn redirect_target(current: &Url, response: &reqwest::Response) -> Result<Url, UpstreamError> {
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| UpstreamError::Status {
            status: response.status().as_u16(),
            url: current.to_string(),
        })?;
    current
        .join(location)
        .map_err(|e| UpstreamError::Transport {
            url: current.to_string(),
            message: format!("bad redirect location {location:?}: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn oversized_validators_are_dropped_not_stored() {
        let mut headers = HeaderMap::new();
        let long = format!("\"{}\"", "e".repeat(MAX_VALIDATOR_BYTES));
        headers.insert(ETAG, HeaderValue::from_str(&long).unwrap());
        headers.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Mon, 31 Jan 2022 15:10:03 GMT"),
        );
        let cache = format!("max-age=60, {}", "x".repeat(300));
        headers.insert(CACHE_CONTROL, HeaderValue::from_str(&cache).unwrap());
        let kept = validators(&headers);
        assert_eq!(kept.etag, None);
        assert_eq!(kept.cache_control, None);
        assert_eq!(
            kept.last_modified.as_deref(),
            Some("Mon, 31 Jan 2022 15:10:03 GMT")
        );
        let exact = format!("\"{}\"", "e".repeat(MAX_VALIDATOR_BYTES - 2));
        headers.insert(ETAG, HeaderValue::from_str(&exact).unwrap());
        assert_eq!(validators(&headers).etag.as_deref(), Some(exact.as_str()));
    }
}
