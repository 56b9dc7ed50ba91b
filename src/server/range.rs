//! `Range` and `If-Range` (RFC 9110 §14) for image bodies: which bytes a request asks for.
//!
//! One range (`bytes=0-99`, `bytes=500-`, `bytes=-500`) gives a 206 with exactly those
//! bytes. Several ranges are answered with the whole body (200) rather than
//! `multipart/byteranges`: browsers and CDNs ask for one range, and a multipart body would
//! be built for nobody. A range that starts past the end is unsatisfiable (416 with
//! `Content-Range: bytes */N`); a header that does not parse is ignored, as the RFC says.
//! `If-Range` must name the current strong ETag (or the exact `Last-Modified`) for the
//! range to apply. Parsing only: no IO, no response building.

use http::HeaderMap;
use http::header;

/// What to send for a request, given the representation's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    /// The whole body, 200.
    Full,
    /// Bytes `start..=end` (inclusive, as in `Content-Range`), 206.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */<len>`.
    Unsatisfiable,
}

/// Decides from `Range` and `If-Range` what part of a `len`-byte body to send. `etag` is
/// the quoted strong ETag, `last_modified` the `Last-Modified` value.
pub fn choose(request: &HeaderMap, etag: &str, last_modified: &str, len: u64) -> Ranged {
    let Some(range) = request.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ranged::Full;
    };
    if let Some(if_range) = request.get(header::IF_RANGE) {
        let Ok(if_range) = if_range.to_str() else {
            return Ranged::Full;
        };
        let if_range = if_range.trim();
        // Strong comparison: a weak tag never matches (§13.1.5); a date must be exact.
        let current = if if_range.starts_with('"') || if_range.starts_with("W/") {
            if_range == etag
        } else {
            if_range == last_modified
        };
        if !current {
            return Ranged::Full;
        }
    }
    parse(range, len)
}

fn parse(range: &str, len: u64) -> Ranged {
    let Some((unit, specs)) = range.split_once('=') else {
        return Ranged::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranged::Full;
    }
    let mut specs = specs.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        // None, or several ranges: the whole body (see the module comment).
        return Ranged::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return Ranged::Full;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // `-N`: the last N bytes.
        (true, false) => match number(last) {
            Some(0) => Ranged::Unsatisfiable,
            Some(_) if len == 0 => Ranged::Unsatisfiable,
            Some(n) => Ranged::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => Ranged::Full,
        },
        // `A-` or `A-B`.
        (false, open) => {
            let Some(start) = number(first) else {
                return Ranged::Full;
            };
            let end = if open {
                u64::MAX
            } else {
                match number(last) {
                    Some(end) if end >= start => end,
                    _ => return Ranged::Full,
                }
            };
            if start >= len {
                return Ranged::Unsatisfiable;
            }
            Ranged::Partial {
                start,
                end: end.min(len - 1),
            }
        }
        (true, true) => Ranged::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const ETAG: &str = "\"abc\"";
    const DATE: &str = "Sat, 01 Jan 2022 00:00:00 GMT";

    fn with(range: &str, if_range: Option<&str>) -> Ranged {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(range).unwrap());
        if let Some(v) = if_range {
            h.insert(header::IF_RANGE, HeaderValue::from_str(v).unwrap());
        }
        choose(&h, ETAG, DATE, 1000)
    }

    #[test]
    fn range_table() {
        let p = |start, end| Ranged::Partial { start, end };
        let cases = [
            ("bytes=0-99", p(0, 99)),
            ("bytes=0-0", p(0, 0)),
            ("Bytes = 10-19", p(10, 19)),
            ("bytes=900-", p(900, 999)),
            ("bytes=900-5000", p(900, 999)),
            ("bytes=-100", p(900, 999)),
            ("bytes=-5000", p(0, 999)),
            ("bytes=999-", p(999, 999)),
            ("bytes=1000-", Ranged::Unsatisfiable),
            ("bytes=1000-1200", Ranged::Unsatisfiable),
            ("bytes=-0", Ranged::Unsatisfiable),
            // Ignored: the whole body.
            ("bytes=0-1,5-6", Ranged::Full),
            ("bytes=5-1", Ranged::Full),
            ("bytes=a-b", Ranged::Full),
            ("bytes=-", Ranged::Full),
            ("bytes=+1-2", Ranged::Full),
            ("items=0-1", Ranged::Full),
            ("bytes 0-1", Ranged::Full),
            ("bytes=", Ranged::Full),
        ];
        for (range, want) in cases {
            assert_eq!(with(range, None), want, "{range}");
        }
        assert_eq!(choose(&HeaderMap::new(), ETAG, DATE, 10), Ranged::Full);
        let mut empty = HeaderMap::new();
        empty.insert(header::RANGE, HeaderValue::from_static("bytes=-1"));
        assert_eq!(choose(&empty, ETAG, DATE, 0), Ranged::Unsatisfiable);
    }

    #[test]
    fn if_range_needs_the_current_strong_validator() {
        let p = Ranged::Partial { start: 0, end: 9 };
        assert_eq!(with("bytes=0-9", Some(ETAG)), p);
        assert_eq!(with("bytes=0-9", Some(DATE)), p);
        assert_eq!(with("bytes=0-9", Some("\"other\"")), Ranged::Full);
        assert_eq!(with("bytes=0-9", Some("W/\"abc\"")), Ranged::Full);
        assert_eq!(
            with("bytes=0-9", Some("Sun, 02 Jan 2022 00:00:00 GMT")),
            Ranged::Full
        );
    }
}
