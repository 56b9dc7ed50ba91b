//! Checking that an upstream still answers, without downloading the image: the link-rot
//! audit's question. [`Fetcher::check`] sends a `HEAD` (a `GET` whose body is never read
//! when the server refuses `HEAD`), conditional on the validators the mirror stored, through
//! the same guard, redirect checks, per-host policy, timeouts and in-flight bounds as a
//! fetch.
//!
//! An extra `impl Fetcher` block, apart from the fetch path in `upstream/mod.rs`.

use std::time::Duration;

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use tokio::time::Instant;
use url::Url;

use super::{Fetcher, UpstreamError, Validators, hosts, redirect_target, validators};

/// What an upstream said to a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// 304: the image is the one the validators describe.
    NotModified,
    /// A 2xx answer: the upstream serves something there, described by these headers.
    Answered {
        status: u16,
        validators: Validators,
        content_length: Option<u64>,
        content_type: Option<String>,
    },
}

impl Fetcher {
    /// Asks the upstream whether `url` is still there (and, with `conditional`, still the
    /// same), never reading a body. A 404 or 410 is [`UpstreamError::NotFound`], another
    /// non-2xx [`UpstreamError::Status`].
    pub async fn check(
        &self,
        url: &Url,
        conditional: Option<&Validators>,
    ) -> Result<Checked, UpstreamError> {
        let secs = self.config.timeout_secs;
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut pass = Some(self.hosts.enter(&hosts::host_key(url), deadline).await?);
        let _slot = tokio::time::timeout_at(deadline, self.slots.acquire())
            .await
            .map_err(|_| UpstreamError::Overloaded)?
            .map_err(|_| UpstreamError::Overloaded)?;
        let checked = tokio::time::timeout_at(deadline, async {
            let head = self.check_hops(url, conditional, Method::HEAD, deadline, &mut pass);
            match head.await {
                // Some servers refuse HEAD; a GET whose body is dropped unread costs them
                // the headers only (the connection is closed, not drained).
                Err(UpstreamError::Status {
                    status: 405 | 501, ..
                }) => {
                    let get = self.check_hops(url, conditional, Method::GET, deadline, &mut pass);
                    get.await
                }
                other => other,
            }
        });
        checked.await.map_err(|_| UpstreamError::Timeout {
            secs,
            url: url.to_string(),
        })?
    }

    async fn check_hops(
        &self,
        url: &Url,
        conditional: Option<&Validators>,
        method: Method,
        deadline: Instant,
        pass: &mut Option<hosts::Pass>,
    ) -> Result<Checked, UpstreamError> {
        let mut current = url.clone();
        for _ in 0..=self.config.max_redirects {
            let request = self
                .hop_request(method.clone(), &current, conditional, deadline, pass)
                .await?;
            let response = request
                .send()
                .await
                .map_err(|e| self.transport_error(&current, e))?;
            let status = response.status();
            if status == StatusCode::NOT_MODIFIED && conditional.is_some() {
                return Ok(Checked::NotModified);
            }
            if status.is_redirection() {
                current = redirect_target(&current, &response)?;
                continue;
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
            let headers = response.headers();
            let text = |name| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            return Ok(Checked::Answered {
                status: status.as_u16(),
                validators: validators(headers),
                content_length: text(CONTENT_LENGTH).and_then(|v| v.trim().parse().ok()),
                content_type: text(CONTENT_TYPE),
            });
        }
        Err(UpstreamError::TooManyRedirects {
            max: self.config.max_redirects,
            url: url.to_string(),
        })
    }
}
