//! The client side of `POST /prefetch`: the remote mode of `imgmirror prefetch` (and of
//! `rewrite --pin --server`). It sends a post (or a list of image URLs) to a running server
//! with the admin bearer token and reads the streamed NDJSON answer line by line, so the
//! caller sees each image as the server finishes it.
//!
//! The server runs the same engine as local mode (`super::prefetch::run`), so mirroring,
//! pinning and warming the variants all happen there, next to its store; a local prefetch
//! cannot share the store with a running server anyway (redb holds a file lock).

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::Kind;
use super::prefetch::{Event, ImageReport};

/// What to prefetch remotely.
#[derive(Debug, Clone)]
pub enum RemoteBody {
    /// A whole post; the server extracts its images.
    Article { text: String, kind: Kind },
    /// Image URLs (upstream or worker URLs).
    Urls(Vec<String>),
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{0} is not a usable server URL")]
    BadServer(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("request to {url} failed: {message}")]
    Transport { url: String, message: String },
    #[error("{url} answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} sent a line that is not a prefetch event: {message}")]
    BadLine { url: String, message: String },
    #[error("{url} closed the answer before its last line")]
    Incomplete { url: String },
}

/// A server to prefetch through.
pub struct Remote {
    client: reqwest::Client,
    endpoint: String,
    token: String,
}

impl Remote {
    /// `server` is the server's base URL (`http://127.0.0.1:8080`).
    pub fn new(server: &str, token: &str) -> Result<Remote, RemoteError> {
        let base = url::Url::parse(server).map_err(|_| RemoteError::BadServer(server.into()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(RemoteError::BadServer(server.into()));
        }
        // reqwest is built without a bundled crypto provider; see `upstream::Fetcher::new`.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            // The server is ours and usually on this host or network: an ambient proxy
            // would only get in the way (and see the token).
            .no_proxy()
            .build()
            .map_err(|e| RemoteError::Client(e.to_string()))?;
        Ok(Remote {
            client,
            endpoint: format!("{}/prefetch", server.trim_end_matches('/')),
            token: token.to_owned(),
        })
    }

    /// Prefetches `body` on the server, pinned to `article` when given, calling `on_image`
    /// as each image's line arrives. Returns the images in arrival order and the
    /// milliseconds the server reported.
    pub async fn prefetch(
        &self,
        body: RemoteBody,
        article: Option<&str>,
        mut on_image: impl FnMut(&ImageReport),
    ) -> Result<(Vec<ImageReport>, u64), RemoteError> {
        let url = match article {
            Some(id) => format!(
                "{}?article={}",
                self.endpoint,
                utf8_percent_encode(id, NON_ALPHANUMERIC)
            ),
            None => self.endpoint.clone(),
        };
        let (content_type, payload) = match body {
            RemoteBody::Article { text, kind } => (
                match kind {
                    Kind::Markdown => "text/markdown; charset=utf-8",
                    Kind::Html => "text/html; charset=utf-8",
                },
                text.into_bytes(),
            ),
            RemoteBody::Urls(urls) => (
                "application/json",
                serde_json::to_vec(&urls).unwrap_or_default(),
            ),
        };
        let transport = |e: reqwest::Error| RemoteError::Transport {
            url: url.clone(),
            message: e.to_string(),
        };
        let mut response = self
            .client
            .post(&url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(payload)
            .send()
            .await
            .map_err(transport)?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            return Err(RemoteError::Refused {
                url,
                status,
                body: body.trim().to_owned(),
            });
        }
        let mut images = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            pending.extend_from_slice(&chunk);
            while let Some(newline) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=newline).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let event: Event =
                    serde_json::from_slice(&line).map_err(|e| RemoteError::BadLine {
                        url: url.clone(),
                        message: e.to_string(),
                    })?;
                match event {
                    Event::Image(image) => {
                        on_image(&image);
                        images.push(*image);
                    }
                    Event::Done { ms, .. } => return Ok((images, ms)),
                }
            }
        }
        // Without the last line, the server stopped mid-way (it was shut down, or the
        // connection broke): the images not listed are in an unknown state.
        Err(RemoteError::Incomplete { url })
    }
}
