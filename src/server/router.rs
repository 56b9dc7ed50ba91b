//! Request → [`Route`]: which endpoint a method and URL name. Image URLs are parsed by
//! [`crate::url_grammar`], the one grammar the article rewriter writes too.
//!
//! - `GET|HEAD /?<URL>`, `/?url=…&…`, `/m/<sha256>[.<ext>]`: an image ([`Address`]).
//! - `GET /healthz` (alive), `GET /readyz` (store writable, index open), `GET /metrics`;
//!   admin: `POST /prefetch`, `DELETE /?<URL>` and
//!   `DELETE /purge?url=<URL>|sha256=<hex>|article=<id>` (purge), `GET /stats`,
//!   `GET /export[?variants=1]` (a tar stream of the mirror).
//! - `OPTIONS` anywhere (preflight).
//!
//! Parsing only: nothing here touches the store or the network.

use http::Method;

use crate::error::Error;
use crate::hash::ContentHash;
use crate::mirror::Purge;
use crate::url_grammar::{self, Address};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    Ready,
    Metrics,
    Preflight,
    Prefetch,
    /// An image, by upstream URL or by content hash.
    Image(Address),
    /// `DELETE /?…` (a URL) or `DELETE /purge?…` (a URL, an original or an article): admin.
    Purge(Purge),
    /// `GET /stats`: what the store holds (admin).
    Stats,
    /// `GET /export[?variants=1]`: the mirror as a tar stream (admin).
    Export {
        variants: bool,
    },
}

impl Route {
    /// A short name for logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Health => "healthz",
            Route::Ready => "readyz",
            Route::Metrics => "metrics",
            Route::Preflight => "preflight",
            Route::Prefetch => "prefetch",
            Route::Image(Address::Proxy { .. }) => "proxy",
            Route::Image(Address::Permalink { .. }) => "permalink",
            Route::Purge(_) => "purge",
            Route::Stats => "stats",
            Route::Export { .. } => "export",
        }
    }
}

pub fn route(method: &Method, path: &str, query: Option<&str>) -> Result<Route, Error> {
    if method == Method::OPTIONS {
        return Ok(Route::Preflight);
    }
    let route = match path {
        "/healthz" => Route::Health,
        "/readyz" => Route::Ready,
        "/metrics" => Route::Metrics,
        "/prefetch" if method == Method::POST => return Ok(Route::Prefetch),
        "/prefetch" => return Err(Error::MethodNotAllowed(method.clone())),
        "/purge" if method == Method::DELETE => {
            return purge(query.unwrap_or("")).map(Route::Purge);
        }
        "/purge" => return Err(Error::MethodNotAllowed(method.clone())),
        "/stats" => Route::Stats,
        "/export" => Route::Export {
            variants: form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .any(|(k, v)| k == "variants" && (v == "1" || v == "true")),
        },
        _ => match url_grammar::parse(path, query) {
            None => return Err(Error::NotFound(path.to_string())),
            Some(address) => match (address?, method == Method::DELETE) {
                (Address::Proxy { upstream, .. }, true) => {
                    return Ok(Route::Purge(Purge::Url(upstream)));
                }
                (Address::Permalink { .. }, true) => {
                    return Err(Error::MethodNotAllowed(method.clone()));
                }
                (address, false) => Route::Image(address),
            },
        },
    };
    if method != Method::GET && method != Method::HEAD {
        return Err(Error::MethodNotAllowed(method.clone()));
    }
    Ok(route)
}

/// `url=<URL>`, `sha256=<hex>` or `article=<id>`: exactly one.
fn purge(query: &str) -> Result<Purge, Error> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let [(name, value)] = pairs.as_slice() else {
        return Err(Error::BadRequest(
            "purge needs exactly one of url=, sha256= or article=".into(),
        ));
    };
    match name.as_str() {
        "url" => Ok(Purge::Url(url_grammar::parse_upstream(value)?)),
        "sha256" => ContentHash::parse(value)
            .map(Purge::Object)
            .ok_or_else(|| Error::BadRequest(format!("sha256={value:?} is not a SHA-256"))),
        "article" if !value.is_empty() => Ok(Purge::Article(value.clone())),
        _ => Err(Error::BadRequest(format!(
            "purge by {name:?} is not supported: use url=, sha256= or article="
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url_grammar::UrlError;
    use url::Url;

    fn get(path: &str, query: Option<&str>) -> Result<Route, Error> {
        route(&Method::GET, path, query)
    }

    #[test]
    fn images_are_parsed_by_the_url_grammar() {
        let route = get("/", Some("url=http%3A%2F%2Fa.example%2Fx.jpg&w=480")).unwrap();
        assert_eq!(route.name(), "proxy");
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            get(&format!("/m/{hex}.jpg"), None).unwrap().name(),
            "permalink"
        );
        assert!(matches!(
            get("/", Some("ftp://a.example/x.jpg")),
            Err(Error::Url(UrlError::BadUrl(_)))
        ));
        assert!(matches!(
            get("/", None),
            Err(Error::Url(UrlError::BadUrl(_)))
        ));
        assert!(matches!(
            get("/m/abc", None),
            Err(Error::Url(UrlError::NotAPermalink(_)))
        ));
    }

    #[test]
    fn methods() {
        assert_eq!(
            route(&Method::OPTIONS, "/", None).unwrap(),
            Route::Preflight
        );
        assert_eq!(
            route(&Method::HEAD, "/healthz", None).unwrap(),
            Route::Health
        );
        assert_eq!(route(&Method::GET, "/readyz", None).unwrap(), Route::Ready);
        assert_eq!(
            route(&Method::POST, "/prefetch", None).unwrap(),
            Route::Prefetch
        );
        assert!(matches!(
            route(&Method::POST, "/healthz", None),
            Err(Error::MethodNotAllowed(_))
        ));
        assert!(matches!(
            route(&Method::GET, "/prefetch", None),
            Err(Error::MethodNotAllowed(_))
        ));
        assert!(matches!(
            route(&Method::POST, "/", Some("http://a.example/x.jpg")),
            Err(Error::MethodNotAllowed(_))
        ));
        assert!(matches!(get("/nope", None), Err(Error::NotFound(_))));
        assert_eq!(
            route(&Method::DELETE, "/", Some("http://a.example/x.jpg")).unwrap(),
            Route::Purge(Purge::Url(Url::parse("http://a.example/x.jpg").unwrap()))
        );
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            route(&Method::DELETE, "/purge", Some(&format!("sha256={hex}"))).unwrap(),
            Route::Purge(Purge::Object(ContentHash::parse(hex).unwrap()))
        );
        assert_eq!(
            route(&Method::DELETE, "/purge", Some("article=posts%2Fa.md")).unwrap(),
            Route::Purge(Purge::Article("posts/a.md".into()))
        );
        for bad in [
            "",
            "sha256=abc",
            "url=ftp%3A%2F%2Fa%2Fb",
            "article=",
            "x=1",
            "url=a&sha256=b",
        ] {
            assert!(
                route(&Method::DELETE, "/purge", Some(bad)).is_err(),
                "{bad}"
            );
        }
        assert!(matches!(
            route(&Method::GET, "/purge", Some("article=a")),
            Err(Error::MethodNotAllowed(_))
        ));
    }
}
