//! URL rules of the article module: which URLs are ours to rewrite (worker URLs, and with
//! `--all-http` plain `http://` ones), which are imgmirror URLs written before (to move or
//! undo), what their upstream is, and how the URL that replaces them is spelled. Pure string
//! functions; no parsing of documents happens here.

use std::borrow::Cow;

use super::{Settings, Target};
use crate::url_grammar::{self, Recognised};

/// Extensions that make a front-matter `http://` value an image under `--all-http`. Front
/// matter also holds links, and turning a link into a mirror URL would break it.
const IMAGE_EXTENSIONS: &[&str] = &[
    ".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif", ".bmp", ".ico", ".tif", ".tiff",
];

/// Front-matter keys whose `http://` values are images even without an image extension.
const IMAGE_KEYS: &[&str] = &[
    "headimg",
    "thumbnail",
    "cover",
    "image",
    "images",
    "img",
    "banner",
    "top_img",
    "photos",
    "og_image",
    "feature",
    "featured_image",
];

/// What a URL found in a post is to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Class {
    /// Goes through a CORS-proxy worker or is a plain `http://` image: rewrite it.
    Rewrite(String),
    /// Looks like ours to rewrite but its upstream is not a usable URL: leave it and warn.
    Invalid(String),
    /// An imgmirror URL (under any base): left alone by a plain rewrite, moved by
    /// `--from-base`, turned back by `--undo`.
    Own(Recognised),
    /// Someone else's URL: leave it alone.
    Other,
}

/// Classifies a decoded URL. `own` are our own bases: they are never upstreams, which is what
/// makes a second `--all-http` run over `http://` bases change nothing.
pub(crate) fn classify(url: &str, settings: &Settings, own: &[&str], http_ok: bool) -> Class {
    let url = url.trim_matches(is_html_space);
    if let Some(rest) = settings
        .worker_prefixes
        .iter()
        .find_map(|prefix| strip_worker_prefix(url, prefix))
    {
        // The worker's own rule: the tail is the upstream, as written or encoded as a
        // whole; a tail without a scheme is kept as written and refused below.
        let upstream =
            url_grammar::worker_upstream(rest).map_or_else(|| rest.to_owned(), Cow::into_owned);
        // The browser never sends a fragment, so the worker never fetched it: it is no part
        // of the upstream (and must not become `%23…` in the index key).
        let upstream = without_fragment(&upstream).to_owned();
        return if is_valid_upstream(&upstream) {
            Class::Rewrite(upstream)
        } else {
            Class::Invalid(upstream)
        };
    }
    if let Some(recognised) = url_grammar::recognise(url) {
        return Class::Own(recognised);
    }
    if settings.all_http
        && http_ok
        && starts_with_ignore_case(url, "http://")
        && !own
            .iter()
            .any(|base| starts_with_ignore_case(url, &format!("{}/", base.trim_end_matches('/'))))
    {
        let url = without_fragment(url);
        return if is_valid_upstream(url) {
            Class::Rewrite(url.to_owned())
        } else {
            Class::Invalid(url.to_owned())
        };
    }
    Class::Other
}

fn without_fragment(url: &str) -> &str {
    url.split('#').next().unwrap_or(url)
}

/// Whether a URL's path ends in an image extension (query and fragment aside).
pub(crate) fn has_image_extension(url: &str) -> bool {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    IMAGE_EXTENSIONS.iter().any(|ext| path.ends_with(ext))
}

/// The worker URL for an upstream: the first configured worker prefix, then the upstream as
/// the post spelled it (what `--undo` writes back).
pub(crate) fn worker_url(settings: &Settings, upstream: &str) -> String {
    let prefix = settings
        .worker_prefixes
        .first()
        .map_or(super::DEFAULT_WORKER_PREFIX, String::as_str);
    format!("{prefix}{upstream}")
}

/// Whether a front-matter value under `key` may be treated as an image by `--all-http`.
pub(crate) fn front_matter_http_ok(key: &str, url: &str) -> bool {
    let key = key.split('[').next().unwrap_or(key).to_ascii_lowercase();
    IMAGE_KEYS.contains(&key.as_str()) || has_image_extension(url)
}

/// Matches a worker prefix, accepting the other scheme and protocol-relative `//host/` forms
/// too, because blog themes write all three for the same worker.
fn strip_worker_prefix<'a>(url: &'a str, prefix: &str) -> Option<&'a str> {
    let prefix_tail = strip_scheme(prefix);
    let url_tail = strip_scheme(url);
    if prefix_tail.is_empty() || !starts_with_ignore_case(url_tail, prefix_tail) {
        return None;
    }
    // Only accept the scheme-less spellings when the prefix itself had a scheme or was
    // protocol-relative; a prefix like `example.com/?` must not match `http://example.com/?`.
    if prefix_tail.len() == prefix.len() && url_tail.len() != url.len() {
        return None;
    }
    Some(&url_tail[prefix_tail.len()..])
}

fn strip_scheme(url: &str) -> &str {
    for scheme in ["https:", "http:"] {
        if starts_with_ignore_case(url, scheme) {
            return &url[scheme.len()..];
        }
    }
    url
}

fn is_valid_upstream(upstream: &str) -> bool {
    if upstream
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '<' || c == '>')
    {
        return false;
    }
    url_grammar::parse_upstream(upstream).is_ok()
}

pub(crate) fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// ASCII whitespace as HTML defines it (no vertical tab).
pub(crate) fn is_html_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// Decodes the character references that can appear in a URL attribute: the five XML ones and
/// numeric ones. Other named references are left as written: a URL never needs them, and
/// guessing at them could change the upstream.
pub(crate) fn decode_entities(raw: &str) -> Cow<'_, str> {
    if !raw.contains('&') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        match decode_one(rest) {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn decode_one(s: &str) -> Option<(char, usize)> {
    let semi = s[..s.len().min(12)].find(';')?;
    let name = &s[1..semi];
    let c = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => {
            let digits = name.strip_prefix('#')?;
            let code = match digits.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => digits.parse().ok()?,
            };
            char::from_u32(code)?
        }
    };
    Some((c, semi + 1))
}

/// Escapes a value for an HTML attribute; `&` must become `&amp;` or `&h=` could be read as
/// a character reference by lenient parsers and validators flag it.
pub(crate) fn escape_attr(value: &str) -> Cow<'_, str> {
    if !value.contains(['&', '"', '\'', '<', '>']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 16);
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether an unquoted HTML attribute value would stop being one value (or be a parse error)
/// if it held `value`.
pub(crate) fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value
            .chars()
            .any(|c| is_html_space(c) || matches!(c, '"' | '\'' | '=' | '<' | '>' | '`'))
}

/// The pixel density of a written URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Density {
    One,
    Two,
}

/// The imgmirror URL for `upstream`, unescaped: the pinned `/m/<sha256>.<ext>` form when
/// `--pin` resolved it, else the explicit `/?url=` form; with `size`, the resize options.
/// Spelled by [`crate::url_grammar`], which the server parses requests with, and signed
/// when the target has a signer.
pub(crate) fn mirror_url(
    target: &Target,
    upstream: &str,
    size: Option<(u32, u32)>,
    density: Density,
) -> String {
    let mut options = Vec::new();
    if let Some((w, h)) = size {
        options.push(("w", w.to_string()));
        options.push(("h", h.to_string()));
        if density == Density::Two {
            options.push(("dpr", "2".to_string()));
        }
    }
    let url = match target.pins.get(upstream) {
        Some((sha256, ext)) => url_grammar::permalink_url(&target.base, sha256, ext, &options),
        None => url_grammar::proxy_url(&target.base, upstream, &options),
    };
    match &target.signer {
        Some(signer) => signer.sign_written(url, &target.base),
        None => url,
    }
}

/// Parses `data-size="W,H"`; the error says why a value is unusable. A bad size is not an
/// error of the post (it is only a hint, and the image keeps its URL), but it is reported.
pub(crate) fn parse_size(raw: &str) -> Result<(u32, u32), &'static str> {
    let (w, h) = raw.split_once(',').ok_or("not \"width,height\"")?;
    let number = |s: &str| -> Result<u32, &'static str> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err("not two whole numbers");
        }
        // Digits only: a parse failure here is an overflow.
        Ok(s.parse().unwrap_or(u32::MAX))
    };
    let (w, h) = (number(w)?, number(h)?);
    if w == 0 || h == 0 {
        return Err("a side is zero");
    }
    Ok((w, h))
}

/// Scales a size down (keeping its aspect ratio) until it fits `max`: a URL asking for more
/// than the transform limits would only be refused. `None` when it already fits.
pub(crate) fn clamp_size((w, h): (u32, u32), (max_w, max_h): (u32, u32)) -> Option<(u32, u32)> {
    if w <= max_w && h <= max_h {
        return None;
    }
    let scale = f64::min(
        f64::from(max_w) / f64::from(w),
        f64::from(max_h) / f64::from(h),
    );
    let fit = |side: u32, max: u32| ((f64::from(side) * scale).round() as u32).clamp(1, max);
    Some((fit(w, max_w), fit(h, max_h)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(all_http: bool) -> Settings {
        Settings {
            all_http,
            ..Settings::default()
        }
    }

    #[test]
    fn classify_table() {
        let own = ["http://127.0.0.1:8080"];
        let cases: &[(&str, bool, Class)] = &[
            (
                "https://cors.zfour.workers.dev/?http://a.example/x.jpg",
                false,
                Class::Rewrite("http://a.example/x.jpg".into()),
            ),
            (
                "https://cors.zfour.workers.dev/?http://a.example/x.jpg?v=2&w=3",
                false,
                Class::Rewrite("http://a.example/x.jpg?v=2&w=3".into()),
            ),
            (
                "//cors.zfour.workers.dev/?https://a.example/x%20y.jpg",
                false,
                Class::Rewrite("https://a.example/x%20y.jpg".into()),
            ),
            (
                "HTTPS://CORS.ZFOUR.WORKERS.DEV/?http://a.example/x.jpg",
                false,
                Class::Rewrite("http://a.example/x.jpg".into()),
            ),
            (
                "https://cors.zfour.workers.dev/?http%3A%2F%2Fa.example%2Fx.jpg",
                false,
                Class::Rewrite("http://a.example/x.jpg".into()),
            ),
            (
                "https://cors.zfour.workers.dev/?",
                false,
                Class::Invalid(String::new()),
            ),
            (
                "https://cors.zfour.workers.dev/?javascript:alert(1)",
                false,
                Class::Invalid("javascript:alert(1)".into()),
            ),
            ("http://a.example/x.jpg", false, Class::Other),
            (
                "http://a.example/x.jpg",
                true,
                Class::Rewrite("http://a.example/x.jpg".into()),
            ),
            ("https://a.example/x.jpg", true, Class::Other),
            (
                "http://a.example/?page=2",
                true,
                Class::Rewrite("http://a.example/?page=2".into()),
            ),
            ("/local/x.jpg", true, Class::Other),
        ];
        for (url, all_http, want) in cases {
            assert_eq!(
                &classify(url, &settings(*all_http), &own, true),
                want,
                "{url}"
            );
        }
        // Our own URLs, under any base, are recognised rather than taken as upstreams.
        let permalink = format!("https://img.example.com/m/{}.jpg", "ab".repeat(32));
        for url in [
            "http://127.0.0.1:8080/?url=http%3A%2F%2Fa%2Fb.jpg",
            "http://img.other.example/?url=http%3A%2F%2Fa%2Fb.jpg&w=1&h=2",
            permalink.as_str(),
        ] {
            assert!(
                matches!(classify(url, &settings(true), &own, true), Class::Own(_)),
                "{url}"
            );
        }
    }

    #[test]
    fn entities_decode_table() {
        let cases = [
            ("a&amp;b", "a&b"),
            ("a&#38;b&#x26;c", "a&b&c"),
            ("a&b=1", "a&b=1"),
            ("a&copy;b", "a&copy;b"),
            ("&amp", "&amp"),
            ("x&quot;&lt;&gt;&apos;", "x\"<>'"),
        ];
        for (raw, want) in cases {
            assert_eq!(decode_entities(raw), want, "{raw}");
        }
    }

    #[test]
    fn mirror_url_forms() {
        let mut target = Target {
            base: "https://img.example.com/".into(),
            pins: HashMap::new(),
            ..Target::default()
        };
        let up = "http://a.example/x.jpg?v=1&b=2";
        assert_eq!(
            mirror_url(&target, up, None, Density::One),
            "https://img.example.com/?url=http%3A%2F%2Fa.example%2Fx.jpg%3Fv%3D1%26b%3D2"
        );
        assert_eq!(
            mirror_url(&target, up, Some((480, 319)), Density::Two),
            "https://img.example.com/?url=http%3A%2F%2Fa.example%2Fx.jpg%3Fv%3D1%26b%3D2&w=480&h=319&dpr=2"
        );
        target
            .pins
            .insert(up.into(), ("ab".repeat(32), "jpg".into()));
        let sha = "ab".repeat(32);
        assert_eq!(
            mirror_url(&target, up, None, Density::One),
            format!("https://img.example.com/m/{sha}.jpg")
        );
        assert_eq!(
            mirror_url(&target, up, Some((480, 319)), Density::One),
            format!("https://img.example.com/m/{sha}.jpg?w=480&h=319")
        );
        assert_eq!(
            mirror_url(&target, up, Some((480, 319)), Density::Two),
            format!("https://img.example.com/m/{sha}.jpg?w=480&h=319&dpr=2")
        );
    }

    #[test]
    fn size_table() {
        let cases = [
            ("480,319", Some((480, 319))),
            (" 480 , 319 ", Some((480, 319))),
            ("0,319", None),
            ("0,0", None),
            ("480", None),
            ("480x319", None),
            ("", None),
            ("a,b", None),
            ("-1,5", None),
            ("+1,5", None),
            ("99999999999,1", Some((u32::MAX, 1))),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_size(raw).ok(), want, "{raw}");
        }
    }

    #[test]
    fn clamp_keeps_the_aspect_ratio() {
        let max = (8192, 8192);
        assert_eq!(clamp_size((480, 319), max), None);
        assert_eq!(clamp_size((99_999_999, 1), max), Some((8192, 1)));
        assert_eq!(clamp_size((16384, 8192), max), Some((8192, 4096)));
        assert_eq!(clamp_size((100, 20000), max), Some((41, 8192)));
    }

    #[test]
    fn fragments_are_no_part_of_the_upstream() {
        let s = settings(true);
        assert_eq!(
            classify(
                "https://cors.zfour.workers.dev/?http://a/x.jpg#top",
                &s,
                &[],
                true
            ),
            Class::Rewrite("http://a/x.jpg".into())
        );
        assert_eq!(
            classify("http://a/x.jpg#top", &s, &[], true),
            Class::Rewrite("http://a/x.jpg".into())
        );
    }

    #[test]
    fn front_matter_http_heuristic() {
        assert!(front_matter_http_ok("headimg", "http://a/x"));
        assert!(front_matter_http_ok("photos[1]", "http://a/x"));
        assert!(front_matter_http_ok("link", "http://a/x.JPG?v=1"));
        assert!(!front_matter_http_ok("link", "http://a/page.html"));
    }
}
