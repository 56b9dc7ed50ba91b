//! THE place where errors become HTTP statuses and stable codes.
//!
//! [`Error`] is everything a front end (the HTTP server, the prefetcher's report) can fail
//! with: a bad URL, a refused request, or what the service layer ([`MirrorError`]) said.
//! [`Error::status_and_code`] is the one mapping; the JSON error body and the prefetch
//! report both carry its stable kebab-case `code`, which clients and tests branch on.
//!
//! It sits above the service layer and below both front ends, and owns no behaviour.

use std::fmt;

use http::{Method, StatusCode};

use crate::mirror::MirrorError;
use crate::signing::SignatureError;
use crate::store::StoreError;
use crate::transform::{PoolError, TransformError};
use crate::upstream::{GuardError, UpstreamError};
use crate::url_grammar::UrlError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    /// `security.signing_keys` is set and the request's signature is missing or wrong.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("no such route: {0}")]
    NotFound(String),
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(Method),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is larger than the {limit}-byte limit")]
    RequestTooLarge { limit: u64 },
    #[error("the request URL is longer than the {limit}-byte limit")]
    UriTooLong { limit: usize },
    #[error("the article cannot be read: {0}")]
    BadArticle(String),
    /// Our bug (a panicked task): a 500, whatever the input was.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Mirror(MirrorError::Store(e))
    }
}

impl Error {
    /// The one mapping from errors to HTTP: status and stable error code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::Mirror(e) => mirror_status(e),
            Error::Signature(SignatureError::Missing | SignatureError::WorkerForm(_)) => {
                (StatusCode::FORBIDDEN, "signature-required")
            }
            Error::Signature(SignatureError::Bad) => (StatusCode::FORBIDDEN, "bad-signature"),
            Error::Signature(SignatureError::Options(e)) => (StatusCode::BAD_REQUEST, e.code()),
            Error::Url(UrlError::BadUrl(_)) => (StatusCode::BAD_REQUEST, "bad-url"),
            Error::Url(UrlError::NotAPermalink(_)) | Error::NotFound(_) => {
                (StatusCode::NOT_FOUND, "not-found")
            }
            Error::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            Error::RequestTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "request-too-large"),
            Error::UriTooLong { .. } => (StatusCode::URI_TOO_LONG, "uri-too-long"),
            Error::BadArticle(_) => (StatusCode::BAD_REQUEST, "bad-article"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

fn mirror_status(e: &MirrorError) -> (StatusCode, &'static str) {
    match e {
        MirrorError::Store(e) => store_status(e),
        MirrorError::Spec(e) => (StatusCode::BAD_REQUEST, e.code()),
        // Abandoned past `render_timeout_secs`: not the image's fault alone (load slows
        // renders), so "try later", like a full queue.
        MirrorError::Transform(TransformError::Timeout { .. })
        | MirrorError::Pool(PoolError::Timeout(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, "render-timeout")
        }
        MirrorError::Transform(e) if e.is_client_error() => {
            (StatusCode::UNPROCESSABLE_ENTITY, e.code())
        }
        MirrorError::Transform(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.code()),
        MirrorError::Pool(PoolError::Overloaded) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        MirrorError::Pool(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.code()),
        MirrorError::UnknownObject(_) => (StatusCode::NOT_FOUND, "not-found"),
        MirrorError::TooExpensive(_) => (StatusCode::UNPROCESSABLE_ENTITY, "too-expensive"),
    }
}

fn store_status(e: &StoreError) -> (StatusCode, &'static str) {
    match e {
        StoreError::Upstream(e) => upstream_status(e),
        StoreError::WaitTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "upstream-timeout"),
        StoreError::UnexpectedNotModified(_) => (StatusCode::BAD_GATEWAY, "upstream-error"),
        StoreError::Full(_) => (StatusCode::INSUFFICIENT_STORAGE, "insufficient-storage"),
        StoreError::ClientBusy { .. } => (StatusCode::TOO_MANY_REQUESTS, "client-busy"),
        // The shared store (s3) is down or unreachable: try again later (503 carries
        // Retry-After).
        StoreError::Shared(_) => (StatusCode::SERVICE_UNAVAILABLE, "store-unavailable"),
        StoreError::File { .. }
        | StoreError::Index { .. }
        | StoreError::BadRecord { .. }
        | StoreError::NotAnImage { .. }
        | StoreError::Client(_)
        | StoreError::Task(_)
        | StoreError::Closed
        | StoreError::Missing(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

fn upstream_status(e: &UpstreamError) -> (StatusCode, &'static str) {
    match e {
        UpstreamError::Forbidden(GuardError::Scheme(_) | GuardError::NoHost) => {
            (StatusCode::BAD_REQUEST, "bad-url")
        }
        UpstreamError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden-destination"),
        UpstreamError::NotFound { .. } => (StatusCode::NOT_FOUND, "upstream-not-found"),
        UpstreamError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too-large"),
        UpstreamError::NotAnImage { .. } => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not-an-image"),
        UpstreamError::Corrupt { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "corrupt-image"),
        UpstreamError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "upstream-timeout"),
        UpstreamError::Overloaded | UpstreamError::RateLimited { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "overloaded")
        }
        UpstreamError::Status { .. }
        | UpstreamError::Transport { .. }
        | UpstreamError::TooManyRedirects { .. } => (StatusCode::BAD_GATEWAY, "upstream-error"),
    }
}

/// An error with its causes, `: `-separated, for logs and reports (text, not a backtrace).
pub struct Chain<'a>(pub &'a dyn std::error::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicked_task_is_internal_not_a_client_error() {
        let (status, code) = Error::Internal("task panicked".into()).status_and_code();
        assert_eq!((status.as_u16(), code), (500, "internal"));
    }

    #[test]
    fn abandoned_renders_are_try_later_and_their_originals_too_expensive() {
        let status = |e: MirrorError| {
            let (status, code) = Error::Mirror(e).status_and_code();
            (status.as_u16(), code)
        };
        assert_eq!(
            status(MirrorError::Transform(TransformError::Timeout { secs: 10 })),
            (503, "render-timeout")
        );
        assert_eq!(
            status(MirrorError::Pool(PoolError::Timeout(
                std::time::Duration::from_secs(11)
            ))),
            (503, "render-timeout")
        );
        assert_eq!(
            status(MirrorError::TooExpensive("ab".into())),
            (422, "too-expensive")
        );
        assert_eq!(
            status(MirrorError::Store(StoreError::Full(
                "http://a/b.jpg".into()
            ))),
            (507, "insufficient-storage")
        );
    }

    #[test]
    fn an_unreachable_shared_store_is_try_later() {
        let e = StoreError::Shared(std::sync::Arc::new(
            crate::store::shared::SharedError::Contended {
                key: "urls/ab".into(),
            },
        ));
        let (status, code) = Error::from(e).status_and_code();
        assert_eq!((status.as_u16(), code), (503, "store-unavailable"));
    }

    #[test]
    fn chain_shows_every_cause() {
        let io = std::io::Error::other("disk on fire");
        let e = StoreError::File {
            action: "write",
            path: "/c/objects/ab".into(),
            source: std::sync::Arc::new(io),
        };
        assert_eq!(
            Chain(&e).to_string(),
            "cannot write /c/objects/ab: disk on fire"
        );
    }
}
