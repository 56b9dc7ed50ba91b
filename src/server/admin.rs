//! Admin endpoints: purge (`DELETE /?<URL>`) and, later, prefetch. All of them need
//! `Authorization: Bearer <admin.token>`; with no token configured they do not exist.

use http::{HeaderMap, Response, StatusCode};
use subtle::ConstantTimeEq;
use url::Url;

use super::State;
use super::response::{self, AppError, Body};
use super::router::RouteError;

/// Checks the bearer token in constant time (for a given length), so it cannot be
/// guessed byte by byte from response times.
pub fn authorize(headers: &HeaderMap, token: &str) -> Result<(), AppError> {
    if token.is_empty() {
        return Err(AppError::Route(RouteError::NotFound(
            "admin endpoints are off (no admin.token configured)".into(),
        )));
    }
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AppError::Unauthorized("missing bearer token"))?;
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(AppError::Forbidden("wrong bearer token"))
    }
}

/// Forgets a mirrored URL: the next request fetches it again. The object file stays,
/// since other URLs and permalinks may share it.
pub async fn purge(
    state: &State,
    headers: &HeaderMap,
    upstream: &Url,
) -> Result<Response<Body>, AppError> {
    authorize(headers, &state.config.admin.token)?;
    let removed = state.store.forget(upstream).await?;
    tracing::info!(%upstream, removed, "purged");
    let status = if removed {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    let body = serde_json::json!({ "url": upstream.as_str(), "purged": removed });
    Ok(response::text(
        status,
        format!("{body}\n"),
        "application/json",
    ))
}
