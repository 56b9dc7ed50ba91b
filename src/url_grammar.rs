//! The URL grammar: how an imgmirror URL names an image, parsed and written in this one
//! place. The router parses requests with it; the article rewriter writes the URLs that
//! posts will request with it, and the prefetcher parses those URLs back, so what is
//! warmed is exactly what readers ask for.
//!
//! - `/?<absolute URL>`: the CORS worker's form. The whole raw query is the upstream URL,
//!   its own query string included, verbatim or percent-encoded as a whole.
//! - `/?url=<percent-encoded URL>[&option=…]`: the explicit form, with transform options.
//! - `/m/<sha256>[.<ext>][?option=…]`: the content-addressed permalink.
//!
//! A leaf: strings in, [`Address`] out (and back). Nothing here touches the store, the
//! network or the transform options' meaning.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use url::Url;

use crate::hash::ContentHash;

/// Transform options as `(name, value)` pairs, in request order, percent-decoded.
pub type Options = Vec<(String, String)>;

/// What an image URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// An image by upstream URL (normalised: fragment removed, host lower-cased).
    Proxy { upstream: Url, options: Options },
    /// A mirrored original by content hash.
    Permalink {
        hash: ContentHash,
        extension: Option<String>,
        options: Options,
    },
}

impl Address {
    /// `/m/<sha256>?placeholder`: the hash whose placeholder preview is asked for.
    pub fn placeholder_of(&self) -> Option<&ContentHash> {
        match self {
            Address::Permalink { hash, options, .. } if matches!(options.as_slice(), [(name, value)] if name == "placeholder" && (value.is_empty() || value == "1")) => {
                Some(hash)
            }
            _ => None,
        }
    }

    pub fn options(&self) -> &Options {
        match self {
            Address::Proxy { options, .. } | Address::Permalink { options, .. } => options,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The request names no usable upstream URL (a 400).
    #[error("{0}")]
    BadUrl(String),
    /// A `/m/…` path that is not a permalink (a 404: no such resource can exist).
    #[error("{0}")]
    NotAPermalink(String),
}

/// Characters escaped in the `url=` parameter: everything but RFC 3986 "unreserved". Being
/// strict keeps `&`, `=`, `#`, `,` and quotes of the upstream from ever reaching the outer
/// URL, so the result is also safe inside a `srcset` candidate and in any YAML quoting style.
const URL_PARAM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Names a written URL's query may carry besides `url` (the transform options; their meaning
/// is `transform`'s business, only the names matter here, to tell our URLs from others').
const OPTION_NAMES: [&str; 8] = ["bg", "dpr", "enlarge", "fit", "format", "h", "q", "w"];

/// The query parameter that carries a URL's signature (`security.signing_keys`). It is no
/// option: parsing takes it out of [`Address::options`] (read it with [`signature`]), and
/// [`recognise`] accepts and drops it, so a moved or undone URL never keeps a stale one.
pub const SIG_PARAM: &str = "sig";

const MISSING: &str = "missing upstream URL: use /?<absolute URL> or /?url=<percent-encoded URL>";

/// Parses a path and query that name an image; `None` when the path is neither `/` nor
/// under `/m/` (some other route).
pub fn parse(path: &str, query: Option<&str>) -> Option<Result<Address, UrlError>> {
    if path == "/" {
        return Some(parse_proxy_query(query.unwrap_or("")));
    }
    path.strip_prefix("/m/")
        .map(|rest| parse_permalink(rest, query.unwrap_or("")))
}

/// Parses a path-and-query string such as `/?url=…&w=480` (what [`proxy_url`] writes with
/// an empty base).
pub fn parse_path_and_query(path_and_query: &str) -> Result<Address, UrlError> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    parse(path, query).unwrap_or_else(|| {
        Err(UrlError::BadUrl(format!(
            "{path_and_query:?} names no image"
        )))
    })
}

/// The query of `/`: the worker form or the explicit `url=` form.
pub fn parse_proxy_query(query: &str) -> Result<Address, UrlError> {
    if query.is_empty() {
        return Err(UrlError::BadUrl(MISSING.into()));
    }
    if let Some(raw) = worker_upstream(query) {
        return Ok(Address::Proxy {
            upstream: parse_upstream(&raw)?,
            options: Options::new(),
        });
    }
    // Not the worker's form: `name=value` pairs, in any order, one of them `url`.
    let mut upstream = None;
    let mut options = Options::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name == "url" {
            if upstream.is_some() {
                return Err(UrlError::BadUrl("url given twice".into()));
            }
            upstream = Some(value.into_owned());
        } else if name != SIG_PARAM {
            options.push((name.into_owned(), value.into_owned()));
        }
    }
    let upstream = upstream.ok_or_else(|| UrlError::BadUrl(MISSING.into()))?;
    Ok(Address::Proxy {
        upstream: parse_upstream(&upstream)?,
        options,
    })
}

/// The upstream of a worker-form query (`http://a/b.jpg?v=2`, or `http%3A%2F%2Fa…` encoded
/// as a whole, which is decoded once); `None` when the query does not start with a scheme.
/// The same rule reads the tail of a worker URL found in a post.
pub fn worker_upstream(query: &str) -> Option<Cow<'_, str>> {
    let starts = |prefix: &str| {
        query.len() >= prefix.len()
            && query.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    if starts("http%3a") || starts("https%3a") {
        return Some(match percent_decode_str(query).decode_utf8() {
            Ok(decoded) => decoded,
            // Not UTF-8 once decoded: keep it as written, and let URL parsing refuse it.
            Err(_) => Cow::Borrowed(query),
        });
    }
    (starts("http:") || starts("https:")).then_some(Cow::Borrowed(query))
}

/// Parses and normalises an upstream URL: absolute, http(s), with a host, no fragment. The
/// result's string form is the index key, so equivalent spellings share one mirror entry.
pub fn parse_upstream(raw: &str) -> Result<Url, UrlError> {
    if raw.is_empty() {
        return Err(UrlError::BadUrl("missing upstream URL".into()));
    }
    let mut url = Url::parse(raw.trim())
        .map_err(|e| UrlError::BadUrl(format!("malformed upstream URL {raw:?}: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(UrlError::BadUrl(format!(
            "upstream URL must be http or https, not {:?}",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(UrlError::BadUrl(format!(
            "upstream URL {raw:?} has no host"
        )));
    }
    url.set_fragment(None);
    Ok(url)
}

/// `rest` is the path after `/m/`: `<sha256>` or `<sha256>.<ext>`.
pub fn parse_permalink(rest: &str, query: &str) -> Result<Address, UrlError> {
    let (hex, extension) = match rest.split_once('.') {
        Some((hex, ext)) => (hex, Some(ext)),
        None => (rest, None),
    };
    let hash = ContentHash::parse(hex)
        .ok_or_else(|| UrlError::NotAPermalink(format!("/m/{rest}: not a SHA-256")))?;
    if let Some(ext) = extension
        && (ext.is_empty() || ext.len() > 5 || !ext.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err(UrlError::NotAPermalink(format!("/m/{rest}: bad extension")));
    }
    let options = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k != SIG_PARAM)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok(Address::Permalink {
        hash,
        extension: extension.map(|e| e.to_ascii_lowercase()),
        options,
    })
}

/// The explicit form for `upstream` (as the post spells it) under `base` (no trailing
/// slash needed), with `options` appended in order: `{base}/?url=…&w=480&h=319`.
pub fn proxy_url(base: &str, upstream: &str, options: &[(&str, String)]) -> String {
    let base = base.trim_end_matches('/');
    let url = format!("{base}/?url={}", utf8_percent_encode(upstream, URL_PARAM));
    with_options(url, options)
}

/// The permalink of an original: `{base}/m/<sha256>[.<ext>]`, with `options`.
pub fn permalink_url(
    base: &str,
    sha256: &str,
    extension: &str,
    options: &[(&str, String)],
) -> String {
    let base = base.trim_end_matches('/');
    let url = match extension.trim_start_matches('.') {
        "" => format!("{base}/m/{sha256}"),
        ext => format!("{base}/m/{sha256}.{ext}"),
    };
    with_options(url, options)
}

/// The `sig=` of an explicit-form or permalink query (the first one); `None` for the worker
/// form, whose whole query is the upstream URL (a `sig=` in it is the upstream's).
pub fn signature(query: &str) -> Option<String> {
    if worker_upstream(query).is_some() {
        return None;
    }
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == SIG_PARAM)
        .map(|(_, value)| value.into_owned())
}

/// Whether a `/` query is the worker form `/?<URL>` (as opposed to `url=…`).
pub fn is_worker_form(query: &str) -> bool {
    worker_upstream(query).is_some()
}

/// `url` (written by [`proxy_url`] or [`permalink_url`]) with its signature appended.
pub fn with_signature(url: String, sig: &str) -> String {
    with_options(url, &[(SIG_PARAM, sig.to_owned())])
}

/// Appends options; names and values we write are plain tokens and numbers, but both are
/// escaped anyway so a caller can never break the URL (a `+`, `&` or `=` in a name would
/// otherwise parse back as another option: found by the `url_grammar` fuzz target).
fn with_options(mut url: String, options: &[(&str, String)]) -> String {
    for (name, value) in options {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.extend(utf8_percent_encode(name, URL_PARAM));
        url.push('=');
        url.extend(utf8_percent_encode(value, URL_PARAM));
    }
    url
}

/// An imgmirror URL found in a post: the base it was written under and what it names,
/// with the upstream as the post spelled it, so a rewrite can be moved to another base or
/// undone byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recognised {
    /// Everything before `/?` or `/m/`: `https://img.example.com`, or with a path prefix
    /// `https://example.com/img`. Never ends with `/`.
    pub base: String,
    /// What the URL names.
    pub kind: RecognisedKind,
    /// The transform options, in order, as written (percent-decoded).
    pub options: Options,
}

/// The two things an imgmirror URL can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecognisedKind {
    /// `/?url=…` or the worker form `/?<URL>`: the upstream as written in the URL (the
    /// `url=` value decoded once, or the worker tail as is), not normalised.
    Proxy { upstream: String },
    /// `/m/<sha256>[.<ext>]`.
    Permalink {
        hash: ContentHash,
        extension: Option<String>,
    },
}

/// Recognises an imgmirror URL under any absolute `http(s)` base: `{base}/?url=…[&opts]`,
/// `{base}/?<http(s) URL>` (the worker form) and `{base}/m/<sha256>[.<ext>][?opts]`. A URL
/// whose query holds anything but `url` and transform option names is someone else's (a
/// redirector's `?url=` link, say) and is not recognised. The caller decides which bases
/// are workers rather than imgmirror servers: this function cannot tell them apart.
pub fn recognise(url: &str) -> Option<Recognised> {
    let scheme_end = url.find("://")?;
    if !["http", "https"]
        .iter()
        .any(|s| url[..scheme_end].eq_ignore_ascii_case(s))
    {
        return None;
    }
    let after_scheme = scheme_end + 3;
    let (path_and_query, base_end) = {
        // The first `/?` or `/m/` after the authority ends the base.
        let rest = &url[after_scheme..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if authority_end == 0 {
            return None;
        }
        let tail = &rest[authority_end..];
        let cut = [tail.find("/?"), tail.find("/m/")]
            .into_iter()
            .flatten()
            .min()?;
        let base_end = after_scheme + authority_end + cut;
        (&url[base_end..], base_end)
    };
    let base = url[..base_end].to_owned();
    if base.contains(['?', '#']) {
        return None;
    }
    if let Some(query) = path_and_query.strip_prefix("/?") {
        let query = query.split('#').next().unwrap_or(query);
        if let Some(raw) = worker_upstream(query) {
            parse_upstream(&raw).ok()?;
            return Some(Recognised {
                base,
                kind: RecognisedKind::Proxy {
                    upstream: raw.into_owned(),
                },
                options: Options::new(),
            });
        }
        let mut upstream = None;
        let mut options = Options::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "url" if upstream.is_none() => upstream = Some(value.into_owned()),
                SIG_PARAM => {}
                name if OPTION_NAMES.contains(&name) => {
                    options.push((name.to_owned(), value.into_owned()));
                }
                _ => return None,
            }
        }
        let upstream = upstream?;
        parse_upstream(&upstream).ok()?;
        return Some(Recognised {
            base,
            kind: RecognisedKind::Proxy { upstream },
            options,
        });
    }
    let rest = path_and_query.strip_prefix("/m/")?;
    let rest = rest.split('#').next().unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let Address::Permalink {
        hash,
        extension,
        options,
    } = parse_permalink(path, query).ok()?
    else {
        return None;
    };
    if options
        .iter()
        .any(|(name, _)| !OPTION_NAMES.contains(&name.as_str()))
    {
        return None;
    }
    Some(Recognised {
        base,
        kind: RecognisedKind::Permalink { hash, extension },
        options,
    })
}

/// Checks a base for written URLs: an absolute `http(s)` URL with a host and no query,
/// fragment or user info. A base without a scheme would make every written URL relative to
/// the post, and one with a query would swallow the `?url=` of every URL.
pub fn check_base(base: &str) -> Result<(), UrlError> {
    let bad = |why: &str| Err(UrlError::BadUrl(format!("base {base:?} {why}")));
    if base.trim() != base || base.is_empty() {
        return bad("must be an absolute http(s) URL such as https://img.example.com");
    }
    let Ok(url) = Url::parse(base) else {
        return bad("must be an absolute http(s) URL such as https://img.example.com");
    };
    if !matches!(url.scheme(), "http" | "https") || !base.contains("://") {
        return bad("must start with http:// or https://");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return bad("has no host");
    }
    if base.contains('?') || base.contains('#') {
        return bad("must not have a query or a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad("must not carry user info");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(query: &str) -> String {
        match parse_proxy_query(query).unwrap() {
            Address::Proxy { upstream, .. } => upstream.to_string(),
            other => panic!("not a proxy address: {other:?}"),
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
            assert_eq!(upstream(query), want, "{query}");
        }
    }

    #[test]
    fn explicit_form_separates_options() {
        let address =
            parse_proxy_query("url=http%3A%2F%2Fa.example%2Fx.jpg%3Fv%3D2&w=480&h=319").unwrap();
        assert_eq!(
            address,
            Address::Proxy {
                upstream: Url::parse("http://a.example/x.jpg?v=2").unwrap(),
                options: vec![("w".into(), "480".into()), ("h".into(), "319".into())],
            }
        );
        assert!(matches!(
            parse_proxy_query("url=http%3A%2F%2Fa%2F&url=http%3A%2F%2Fb%2F"),
            Err(UrlError::BadUrl(_))
        ));
        // Options may come first.
        let reordered = parse_proxy_query("w=480&url=http%3A%2F%2Fa.example%2Fx.jpg").unwrap();
        assert_eq!(
            reordered,
            Address::Proxy {
                upstream: Url::parse("http://a.example/x.jpg").unwrap(),
                options: vec![("w".into(), "480".into())],
            }
        );
    }

    #[test]
    fn malformed_upstreams_are_bad_urls() {
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
                matches!(parse_proxy_query(query), Err(UrlError::BadUrl(_))),
                "{query:?}"
            );
        }
    }

    #[test]
    fn permalinks() {
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let address = parse(&format!("/m/{hex}.JPG"), Some("w=10"))
            .unwrap()
            .unwrap();
        assert_eq!(
            address,
            Address::Permalink {
                hash: ContentHash::parse(hex).unwrap(),
                extension: Some("jpg".into()),
                options: vec![("w".into(), "10".into())],
            }
        );
        assert!(matches!(
            parse("/m/abc", None),
            Some(Err(UrlError::NotAPermalink(_)))
        ));
        assert!(matches!(
            parse(&format!("/m/{hex}./x"), None),
            Some(Err(UrlError::NotAPermalink(_)))
        ));
        assert!(parse("/healthz", None).is_none());
        let preview = parse(&format!("/m/{hex}"), Some("placeholder"))
            .unwrap()
            .unwrap();
        assert_eq!(preview.placeholder_of(), ContentHash::parse(hex).as_ref());
        let sized = parse(&format!("/m/{hex}"), Some("placeholder&w=1"))
            .unwrap()
            .unwrap();
        assert_eq!(sized.placeholder_of(), None);
    }

    #[test]
    fn written_urls_parse_back() {
        let up = "http://a.example/x.jpg?v=1&b=2#frag";
        let size = [("w", "480".to_string()), ("h", "319".to_string())];
        let written = proxy_url("", up, &size);
        assert_eq!(
            written,
            "/?url=http%3A%2F%2Fa.example%2Fx.jpg%3Fv%3D1%26b%3D2%23frag&w=480&h=319"
        );
        let Address::Proxy { upstream, options } = parse_path_and_query(&written).unwrap() else {
            panic!("not a proxy address");
        };
        assert_eq!(upstream.as_str(), "http://a.example/x.jpg?v=1&b=2");
        assert_eq!(
            options,
            [("w".into(), "480".into()), ("h".into(), "319".into())]
        );
        let sha = "ab".repeat(32);
        assert_eq!(
            permalink_url("https://img.example.com/", &sha, ".jpg", &size),
            format!("https://img.example.com/m/{sha}.jpg?w=480&h=319")
        );
        assert_eq!(
            permalink_url("https://img.example.com", &sha, "", &[]),
            format!("https://img.example.com/m/{sha}")
        );
    }

    #[test]
    fn the_signature_is_no_option() {
        let q = "url=http%3A%2F%2Fa.example%2Fx.jpg&w=480&sig=abc_-";
        assert_eq!(signature(q).as_deref(), Some("abc_-"));
        assert_eq!(
            parse_proxy_query(q).unwrap().options(),
            &[("w".into(), "480".into())]
        );
        let hex = "ab".repeat(32);
        let p = parse(&format!("/m/{hex}"), Some("sig=x&w=1"))
            .unwrap()
            .unwrap();
        assert_eq!(p.options(), &[("w".into(), "1".into())]);
        // The worker form's query is the upstream's, sig= and all.
        assert_eq!(signature("http://a.example/x.jpg?sig=abc"), None);
        assert!(is_worker_form("http://a.example/x.jpg?sig=abc"));
        let signed = with_signature(proxy_url("https://i.example", "http://a/x.jpg", &[]), "s1");
        assert_eq!(
            signed,
            "https://i.example/?url=http%3A%2F%2Fa%2Fx.jpg&sig=s1"
        );
        let found = recognise(&format!("{signed}&w=2")).unwrap();
        assert_eq!(found.options, [("w".into(), "2".into())]);
    }
}
