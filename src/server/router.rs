//! Request → [`Route`]: the URL shapes operators and articles depend on.
//!
//! - `GET /?<absolute URL>`: the CORS worker's form. The whole raw query is the
//!   upstream URL, its own query string included, percent-encoded or not.
//! - `GET /?url=<percent-encoded URL>[&option=…]`: the explicit form, with options.
//! - `GET /m/<sha256>[.<ext>][?option=…]`: the content-addressed permalink.
//! - `GET /healthz`, `GET /metrics`; admin: `POST /prefetch`, `DELETE /?<URL>` (purge).
//! - `OPTIONS` anywhere (preflight).
//!
//! Parsing only: nothing here touches the store or the network.

use http::Method;
use percent_encoding::percent_decode_str;
use url::Url;

use crate::store::ContentHash;

/// Transform options as `(name, value)` pairs, in request order, percent-decoded.
pub type Options = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    Metrics,
    Preflight,
    Prefetch,
    /// An image by upstream URL (normalised: fragment removed).
    Proxy {
        upstream: Url,
        options: Options,
    },
    /// `DELETE /?…`: forget a mirrored URL (admin).
    Purge {
        upstream: Url,
    },
    /// A mirrored original by content hash.
    Permalink {
        hash: ContentHash,
        extension: Option<String>,
        options: Options,
    },
}

impl Route {
    /// A short name for logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Health => "healthz",
            Route::Metrics => "metrics",
            Route::Preflight => "preflight",
            Route::Prefetch => "prefetch",
            Route::Proxy { .. } => "proxy",
            Route::Purge { .. } => "purge",
            Route::Permalink { .. } => "permalink",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("{0}")]
    BadUrl(String),
    #[error("no such route: {0}")]
    NotFound(String),
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(Method),
}

pub fn route(method: &Method, path: &str, query: Option<&str>) -> Result<Route, RouteError> {
    if method == Method::OPTIONS {
        return Ok(Route::Preflight);
    }
    let route = match path {
        "/" if method == Method::DELETE => {
            return match proxy(query)? {
                Route::Proxy { upstream, .. } => Ok(Route::Purge { upstream }),
                other => Ok(other),
            };
        }
        "/" => proxy(query)?,
        "/healthz" => Route::Health,
        "/metrics" => Route::Metrics,
        "/prefetch" => {
            return if method == Method::POST {
                Ok(Route::Prefetch)
            } else {
                Err(RouteError::MethodNotAllowed(method.clone()))
            };
        }
        _ => match path.strip_prefix("/m/") {
            Some(rest) => permalink(rest, query)?,
            None => return Err(RouteError::NotFound(path.to_string())),
        },
    };
    if method != Method::GET && method != Method::HEAD {
        return Err(RouteError::MethodNotAllowed(method.clone()));
    }
    Ok(route)
}

fn proxy(query: Option<&str>) -> Result<Route, RouteError> {
    let query = query.unwrap_or("");
    if query.is_empty() {
        return Err(RouteError::BadUrl(
            "missing upstream URL: use /?<absolute URL> or /?url=<percent-encoded URL>".into(),
        ));
    }
    // The worker's form starts with the URL's scheme; anything else is `name=value`
    // pairs, in any order, one of them `url`.
    let lower = query.get(..8).unwrap_or(query).to_ascii_lowercase();
    let worker_form = ["http:", "https:", "http%3a", "https%3a"]
        .iter()
        .any(|p| lower.starts_with(p));
    if !worker_form {
        let mut upstream = None;
        let mut options = Options::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if name == "url" {
                if upstream.is_some() {
                    return Err(RouteError::BadUrl("url given twice".into()));
                }
                upstream = Some(value.into_owned());
            } else {
                options.push((name.into_owned(), value.into_owned()));
            }
        }
        let upstream = upstream.ok_or_else(|| {
            RouteError::BadUrl(
                "missing upstream URL: use /?<absolute URL> or /?url=<percent-encoded URL>".into(),
            )
        })?;
        let upstream = parse_upstream(&upstream)?;
        return Ok(Route::Proxy { upstream, options });
    }
    // The worker's form: everything after the first `?` is the URL. It arrives either
    // verbatim (`/?http://a/b.jpg?v=2`) or percent-encoded as a whole (`/?http%3A%2F%2F…`).
    let raw = if lower.starts_with("http%3a") || lower.starts_with("https%3a") {
        percent_decode_str(query)
            .decode_utf8()
            .map_err(|_| RouteError::BadUrl("upstream URL is not valid UTF-8".into()))?
            .into_owned()
    } else {
        query.to_string()
    };
    Ok(Route::Proxy {
        upstream: parse_upstream(&raw)?,
        options: Options::new(),
    })
}

/// Parses and normalises an upstream URL: absolute, http(s), no fragment. The result's
/// string form is the index key, so equivalent spellings share one mirror entry.
pub fn parse_upstream(raw: &str) -> Result<Url, RouteError> {
    if raw.is_empty() {
        return Err(RouteError::BadUrl("missing upstream URL".into()));
    }
    let mut url = Url::parse(raw.trim())
        .map_err(|e| RouteError::BadUrl(format!("malformed upstream URL {raw:?}: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(RouteError::BadUrl(format!(
            "upstream URL must be http or https, not {:?}",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(RouteError::BadUrl(format!(
            "upstream URL {raw:?} has no host"
        )));
    }
    url.set_fragment(None);
    Ok(url)
}

fn permalink(rest: &str, query: Option<&str>) -> Result<Route, RouteError> {
    let (hex, extension) = match rest.split_once('.') {
        Some((hex, ext)) => (hex, Some(ext)),
        None => (rest, None),
    };
    let hash = ContentHash::parse(hex)
        .ok_or_else(|| RouteError::NotFound(format!("/m/{rest}: not a SHA-256")))?;
    if let Some(ext) = extension
        && (ext.is_empty() || ext.len() > 5 || !ext.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err(RouteError::NotFound(format!("/m/{rest}: bad extension")));
    }
    let options = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok(Route::Permalink {
        hash,
        extension: extension.map(|e| e.to_ascii_lowercase()),
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, query: Option<&str>) -> Result<Route, RouteError> {
        route(&Method::GET, path, query)
    }

    fn upstream(route: Result<Route, RouteError>) -> String {
        match route.unwrap() {
            Route::Proxy { upstream, .. } => upstream.to_string(),
            other => panic!("not a proxy route: {other:?}"),
        }
    }

    #[test]
    fn worker_form_keeps_the_upstream_query() {
        let cases = [
            ("http://a.example/x.jpg?v=2", "http://a.example/x.jpg?v=2"),
            (
                "http://a.example/x.jpg?v=2&w=3",
                "http://a.example/x.jpg?v=2&w=3",
            ),
            (
                "http%3A%2F%2Fa.example%2Fx.jpg%3Fv%3D2",
                "http://a.example/x.jpg?v=2",
            ),
            ("HTTPS%3a%2f%2fA.example%2Fx.jpg", "https://a.example/x.jpg"),
            ("http://A.EXAMPLE:80/x.jpg#frag", "http://a.example/x.jpg"),
            (
                "http://static.1sapp.com/qupost/img/2022/01/31/f8a4283e70d403f54ac17f21b5a1cadf.jpeg",
                "http://static.1sapp.com/qupost/img/2022/01/31/f8a4283e70d403f54ac17f21b5a1cadf.jpeg",
            ),
        ];
        for (query, want) in cases {
            assert_eq!(upstream(get("/", Some(query))), want, "{query}");
        }
    }

    #[test]
    fn explicit_form_separates_options() {
        let route = get(
            "/",
            Some("url=http%3A%2F%2Fa.example%2Fx.jpg%3Fv%3D2&w=480&h=319"),
        )
        .unwrap();
        assert_eq!(
            route,
            Route::Proxy {
                upstream: Url::parse("http://a.example/x.jpg?v=2").unwrap(),
                options: vec![("w".into(), "480".into()), ("h".into(), "319".into())],
            }
        );
        assert!(matches!(
            get("/", Some("url=http%3A%2F%2Fa%2F&url=http%3A%2F%2Fb%2F")),
            Err(RouteError::BadUrl(_))
        ));
        // Options may come first.
        let reordered = get("/", Some("w=480&url=http%3A%2F%2Fa.example%2Fx.jpg")).unwrap();
        assert_eq!(
            reordered,
            Route::Proxy {
                upstream: Url::parse("http://a.example/x.jpg").unwrap(),
                options: vec![("w".into(), "480".into())],
            }
        );
    }

    #[test]
    fn malformed_upstreams_are_400() {
        for query in [
            "",
            "not a url",
            "/relative.jpg",
            "ftp://a.example/x.jpg",
            "javascript:alert(1)",
            "url=",
            "data:image/png;base64,AAAA",
        ] {
            assert!(
                matches!(get("/", Some(query)), Err(RouteError::BadUrl(_))),
                "{query:?}"
            );
        }
        assert!(matches!(get("/", None), Err(RouteError::BadUrl(_))));
    }

    #[test]
    fn permalinks() {
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let route = get(&format!("/m/{hex}.JPG"), Some("w=10")).unwrap();
        assert_eq!(
            route,
            Route::Permalink {
                hash: ContentHash::parse(hex).unwrap(),
                extension: Some("jpg".into()),
                options: vec![("w".into(), "10".into())],
            }
        );
        assert!(matches!(get("/m/abc", None), Err(RouteError::NotFound(_))));
        assert!(matches!(
            get(&format!("/m/{hex}./x"), None),
            Err(RouteError::NotFound(_))
        ));
    }

    #[test]
    fn methods() {
        assert_eq!(route(&Method::OPTIONS, "/", None), Ok(Route::Preflight));
        assert_eq!(route(&Method::HEAD, "/healthz", None), Ok(Route::Health));
        assert_eq!(route(&Method::POST, "/prefetch", None), Ok(Route::Prefetch));
        assert!(matches!(
            route(&Method::POST, "/healthz", None),
            Err(RouteError::MethodNotAllowed(_))
        ));
        assert!(matches!(
            route(&Method::GET, "/prefetch", None),
            Err(RouteError::MethodNotAllowed(_))
        ));
        assert!(matches!(get("/nope", None), Err(RouteError::NotFound(_))));
        assert_eq!(
            route(&Method::DELETE, "/", Some("http://a.example/x.jpg")),
            Ok(Route::Purge {
                upstream: Url::parse("http://a.example/x.jpg").unwrap()
            })
        );
    }
}
