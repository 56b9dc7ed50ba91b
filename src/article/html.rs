//! HTML: locates the start tags that can name images (`<img>`, `<source>`, `<a>`, `<video>`
//! and any element with a `style` attribute) and the text of `<style>` elements with
//! lol_html's streaming tokenizer, and reports the byte range of every attribute value, plus
//! where new attributes can go. lol_html
//! is used only as a locator and its output is thrown away, because when it modifies an
//! attribute it re-serialises the whole start tag (losing single quotes, unquoted values and
//! spacing); splicing into the original bytes keeps everything else exactly as written.
//!
//! Also home of the `srcset` splitter (the HTML standard's candidate rules, by byte range)
//! and the CSS `url()` finder used for `style` attributes and `<style>` sheets.

use std::cell::RefCell;
use std::ops::Range;

use lol_html::{HtmlRewriter, Settings, element, text};

use super::ArticleError;
use super::frontmatter::line_of;

/// A start tag of interest.
#[derive(Debug, Clone)]
pub(crate) struct Tag {
    /// Lower-cased tag name: `img`, `source`, `a`, `video`, or any element with `style`.
    pub name: String,
    /// The whole start tag, `<` to `>`, in the whole file.
    pub span: Range<usize>,
    pub attrs: Vec<Attr>,
    /// Just after the last attribute (after its closing quote), where added attributes go so
    /// that a trailing ` />` or an unquoted value ending in `/` stays intact.
    pub insert_at: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Attr {
    /// Lower-cased name.
    pub name: String,
    /// Where the name starts in the whole file (the attribute's first byte).
    pub name_start: Option<usize>,
    /// The value as written (character references not decoded).
    pub raw: String,
    /// The value's bytes without quotes; `None` for a bare attribute like `hidden`.
    pub value: Option<Range<usize>>,
    /// `"` or `'` if the value is quoted.
    pub quote: Option<u8>,
}

impl Tag {
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    /// Whether every attribute name is an ordinary one. A tag left open by broken markup
    /// swallows what follows as attribute names (`<img src="…"` then `</div>` gives an
    /// attribute `</div`); appending attributes there would only add to the mess.
    pub fn is_well_formed(&self) -> bool {
        self.attrs.iter().all(|a| {
            !a.name.is_empty()
                && a.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'))
        })
    }
}

/// What the HTML locator found in one range.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// Start tags of interest, in document order.
    pub tags: Vec<Tag>,
    /// The text of each `<style>` element (a CSS sheet), in the whole file.
    pub sheets: Vec<Range<usize>>,
}

/// The start tags of interest in `text[range]`, in document order, with positions in `text`,
/// and the `<style>` sheets. The range is tokenized on its own, so a Markdown post's HTML blocks cannot leak
/// tokenizer state (an unclosed `<script>`, say) into each other.
///
/// `<noscript>` content is raw text to a tokenizer with scripting on (as lol_html is), yet it
/// is where lazy-loading themes put the real `<img>`; it is tokenized again as markup.
pub(crate) fn tags(text: &str, range: Range<usize>) -> Result<Found, ArticleError> {
    let mut found = tags_once(text, range.clone(), true)?;
    found.tags.sort_by_key(|t| t.span.start);
    Ok(found)
}

/// The selector of the start tags reported: lol_html calls one handler once per element,
/// however many of the list's selectors match it.
const SELECTOR: &str = "img, source, a, video, [style]";

fn tags_once(text: &str, range: Range<usize>, descend: bool) -> Result<Found, ArticleError> {
    let base = range.start;
    let html = &text[range];
    let found: RefCell<Vec<Tag>> = RefCell::new(Vec::new());
    let noscript: RefCell<Vec<Range<usize>>> = RefCell::new(Vec::new());
    let sheets: RefCell<Vec<Range<usize>>> = RefCell::new(Vec::new());
    {
        let settings = Settings::new()
            .append_element_content_handler(element!(SELECTOR, |el| {
                let span = el.source_location().bytes();
                let mut insert_at = span.start + 1 + el.tag_name_preserve_case().len();
                let attrs = el
                    .attributes()
                    .iter()
                    .map(|a| {
                        let value = a.value_source_location().map(|l| l.bytes());
                        let quote = value.as_ref().and_then(|v| quote_around(html, v));
                        let end = match (&value, a.name_source_location()) {
                            (Some(v), _) => v.end + usize::from(quote.is_some()),
                            (None, Some(n)) => n.bytes().end,
                            (None, None) => insert_at,
                        };
                        insert_at = insert_at.max(end);
                        Attr {
                            name_start: a.name_source_location().map(|n| base + n.bytes().start),
                            name: a.name(),
                            raw: a.value(),
                            value: value.map(|v| base + v.start..base + v.end),
                            quote,
                        }
                    })
                    .collect();
                found.borrow_mut().push(Tag {
                    name: el.tag_name(),
                    span: base + span.start..base + span.end,
                    attrs,
                    insert_at: base + insert_at,
                });
                Ok(())
            }))
            .append_element_content_handler(text!("noscript", |chunk| {
                merge_chunk(
                    &mut noscript.borrow_mut(),
                    base,
                    chunk.source_location().bytes(),
                );
                Ok(())
            }))
            .append_element_content_handler(text!("style", |chunk| {
                merge_chunk(
                    &mut sheets.borrow_mut(),
                    base,
                    chunk.source_location().bytes(),
                );
                Ok(())
            }));
        let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
        let fail = |e: lol_html::errors::RewritingError| ArticleError::Html {
            line: line_of(text, base),
            message: e.to_string(),
        };
        rewriter.write(html.as_bytes()).map_err(fail)?;
        rewriter.end().map_err(fail)?;
    }
    let mut found = Found {
        tags: found.into_inner(),
        sheets: sheets.into_inner(),
    };
    if descend {
        for inner in noscript.into_inner() {
            let nested = tags_once(text, inner, false)?;
            found.tags.extend(nested.tags);
            found.sheets.extend(nested.sheets);
        }
    }
    Ok(found)
}

/// A text node can arrive in several chunks; they are contiguous, so they are merged.
fn merge_chunk(ranges: &mut Vec<Range<usize>>, base: usize, loc: Range<usize>) {
    match ranges.last_mut() {
        Some(last) if last.end == base + loc.start => last.end = base + loc.end,
        _ => ranges.push(base + loc.start..base + loc.end),
    }
}

/// Byte ranges of the URLs of the `url(…)` functions in CSS text, without their quotes.
/// In a `style` attribute the quotes may be written as character references (`&quot;`),
/// which count as quotes too. Comments are skipped; `image-set()` and `src:` lists need no
/// special case since each of their URLs is its own `url()`.
pub(crate) fn css_urls(css: &str) -> Vec<Range<usize>> {
    const QUOTES: [&str; 6] = ["\"", "'", "&quot;", "&#34;", "&#39;", "&apos;"];
    let bytes = css.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        if css[pos..].starts_with("/*") {
            pos = css[pos + 2..]
                .find("*/")
                .map_or(bytes.len(), |end| pos + 2 + end + 2);
            continue;
        }
        let at_url = css.len() >= pos + 4
            && css.as_bytes()[pos..pos + 4].eq_ignore_ascii_case(b"url(")
            && (pos == 0 || !(bytes[pos - 1].is_ascii_alphanumeric() || bytes[pos - 1] == b'-'));
        if !at_url {
            pos += css[pos..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        let mut start = pos + 4;
        while start < bytes.len() && bytes[start].is_ascii_whitespace() {
            start += 1;
        }
        let quote = QUOTES.iter().find(|q| css[start..].starts_with(**q));
        let (url_start, url_end) = match quote {
            Some(q) => {
                let from = start + q.len();
                match css[from..].find(*q) {
                    Some(len) => (from, from + len),
                    None => break,
                }
            }
            None => {
                let len = css[start..]
                    .find(|c: char| c == ')' || c.is_ascii_whitespace())
                    .unwrap_or(css.len() - start);
                (start, start + len)
            }
        };
        if url_end > url_start {
            out.push(url_start..url_end);
        }
        pos = url_end.max(pos + 4);
    }
    out
}

/// The quote character around a value, if the bytes on both sides are the same quote.
fn quote_around(html: &str, value: &Range<usize>) -> Option<u8> {
    let bytes = html.as_bytes();
    let before = *bytes.get(value.start.checked_sub(1)?)?;
    let after = *bytes.get(value.end)?;
    (matches!(before, b'"' | b'\'') && before == after).then_some(before)
}

/// Byte ranges of the URLs in a `srcset` value, following the HTML standard's "parse a srcset
/// attribute": candidates are split on commas, a URL runs to the next whitespace, trailing
/// commas of a URL are separators, and descriptors run to the next comma outside parentheses.
pub(crate) fn srcset_urls(value: &str) -> Vec<Range<usize>> {
    let bytes = value.as_bytes();
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c');
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        while pos < bytes.len() && (is_space(bytes[pos]) || bytes[pos] == b',') {
            pos += 1;
        }
        if pos >= bytes.len() {
            break;
        }
        let start = pos;
        while pos < bytes.len() && !is_space(bytes[pos]) {
            pos += 1;
        }
        let mut end = pos;
        let url_ended_with_comma = bytes[start..end].ends_with(b",");
        while end > start && bytes[end - 1] == b',' {
            end -= 1;
        }
        if end > start {
            out.push(start..end);
        }
        if url_ended_with_comma {
            continue;
        }
        // Skip the descriptors: up to a comma that is not inside parentheses.
        let mut depth = 0usize;
        while pos < bytes.len() {
            match bytes[pos] {
                b'(' => depth += 1,
                b')' => depth = depth.saturating_sub(1),
                b',' if depth == 0 => break,
                _ => {}
            }
            pos += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srcset_table() {
        let cases: &[(&str, &[&str])] = &[
            ("a.jpg", &["a.jpg"]),
            ("a.jpg 1x, b.jpg 2x", &["a.jpg", "b.jpg"]),
            ("  a.jpg   480w ,b.jpg 960w  ", &["a.jpg", "b.jpg"]),
            ("a.jpg,b.jpg", &["a.jpg,b.jpg"]),
            ("a.jpg, b.jpg", &["a.jpg", "b.jpg"]),
            ("a.jpg,, b.jpg 2x", &["a.jpg", "b.jpg"]),
            (
                "http://x/a.jpg?v=1&amp;w=2 1x",
                &["http://x/a.jpg?v=1&amp;w=2"],
            ),
            ("a.jpg 1x (weird, desc), b.jpg", &["a.jpg", "b.jpg"]),
            ("", &[]),
            (" , ", &[]),
        ];
        for (value, want) in cases {
            let got: Vec<&str> = srcset_urls(value).into_iter().map(|r| &value[r]).collect();
            assert_eq!(&got, want, "{value:?}");
        }
    }

    #[test]
    fn tags_report_value_spans_and_quotes() {
        let text = "x<P><IMG SRC=a/ Alt='b c' data-size=\"1,2\" hidden></P><picture><source srcset=\"s 1x\"><img src=\"i\" /></picture>";
        let tags = tags(text, 1..text.len()).expect("parses").tags;
        assert_eq!(tags.len(), 3);
        let img = &tags[0];
        assert_eq!(img.name, "img");
        assert_eq!(
            &text[img.span.clone()],
            "<IMG SRC=a/ Alt='b c' data-size=\"1,2\" hidden>"
        );
        let src = img.attr("src").expect("src");
        assert_eq!(&text[src.value.clone().expect("value")], "a/");
        assert_eq!(src.quote, None);
        let alt = img.attr("alt").expect("alt");
        assert_eq!(&text[alt.value.clone().expect("value")], "b c");
        assert_eq!(alt.quote, Some(b'\''));
        assert!(img.has("hidden"));
        assert_eq!(&text[img.insert_at..img.span.end], ">");
        assert_eq!(tags[1].name, "source");
        assert_eq!(&text[tags[2].insert_at..tags[2].span.end], " />");
    }

    #[test]
    fn only_real_elements_are_tags_but_noscript_counts() {
        let text = "<noscript><img src=a></noscript><template><img src=b></template><!-- <img src=c> --><title><img src=d></title><script>'<img src=e>'</script><textarea><img src=f></textarea><img src=g>";
        let found: Vec<&str> = tags(text, 0..text.len())
            .expect("parses")
            .tags
            .into_iter()
            .map(|t| &text[t.span])
            .collect();
        assert_eq!(found, ["<img src=a>", "<img src=b>", "<img src=g>"]);
    }

    #[test]
    fn css_urls_table() {
        let cases: &[(&str, &[&str])] = &[
            ("background:url(http://a/x.jpg)", &["http://a/x.jpg"]),
            (
                "background: URL( 'http://a/x.jpg' ) no-repeat",
                &["http://a/x.jpg"],
            ),
            (
                "background-image:url(&quot;http://a/x.jpg?a=1&amp;b=2&quot;)",
                &["http://a/x.jpg?a=1&amp;b=2"],
            ),
            (
                "a{background:url(\"x.png\")} /* url(no.png) */ b{background:url(y.png)}",
                &["x.png", "y.png"],
            ),
            ("background:myurl(x.png)", &[]),
            ("background:url()", &[]),
            ("background:url('unterminated", &[]),
        ];
        for (css, want) in cases {
            let got: Vec<&str> = css_urls(css).into_iter().map(|r| &css[r]).collect();
            assert_eq!(&got, want, "{css:?}");
        }
    }

    #[test]
    fn one_tag_per_element_and_style_sheets() {
        let text = "<img style=\"a\" src=x><a href=y><div style='b'></div></a><video poster=p></video><style>s{}</style>";
        let found = tags(text, 0..text.len()).expect("parses");
        let names: Vec<&str> = found.tags.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["img", "a", "div", "video"]);
        let sheets: Vec<&str> = found.sheets.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(sheets, ["s{}"]);
        assert_eq!(found.tags[0].attrs[1].name_start, Some(15));
    }

    #[test]
    fn broken_html_does_not_panic() {
        let cases = [
            "<img src=\"unterminated",
            "<img",
            "<<img src=x>>",
            "</img><img/src=x>",
            "<svg><img src=x></svg><select><script>",
            "<img src='a' src='b'>",
        ];
        for text in cases {
            // Either outcome is fine; what matters is no panic and sane spans.
            if let Ok(found) = tags(text, 0..text.len()) {
                for t in found.tags {
                    assert!(t.span.end <= text.len());
                    assert!(t.insert_at <= t.span.end);
                }
            }
        }
    }
}
