//! HTML: locates `<img>` and `<source>` start tags with lol_html's streaming tokenizer and
//! reports the byte range of every attribute value, plus where new attributes can go. lol_html
//! is used only as a locator and its output is thrown away, because when it modifies an
//! attribute it re-serialises the whole start tag (losing single quotes, unquoted values and
//! spacing); splicing into the original bytes keeps everything else exactly as written.
//!
//! Also home of the `srcset` splitter (the HTML standard's candidate rules, by byte range).

use std::cell::RefCell;
use std::ops::Range;

use lol_html::{HtmlRewriter, Settings, element, text};

use super::ArticleError;
use super::frontmatter::line_of;

/// A start tag of interest.
#[derive(Debug, Clone)]
pub(crate) struct Tag {
    /// Lower-cased tag name: `img` or `source`.
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

/// The `<img>` and `<source>` start tags in `text[range]`, in document order, with positions
/// in `text`. The range is tokenized on its own, so a Markdown post's HTML blocks cannot leak
/// tokenizer state (an unclosed `<script>`, say) into each other.
///
/// `<noscript>` content is raw text to a tokenizer with scripting on (as lol_html is), yet it
/// is where lazy-loading themes put the real `<img>`; it is tokenized again as markup.
pub(crate) fn tags(text: &str, range: Range<usize>) -> Result<Vec<Tag>, ArticleError> {
    let mut tags = tags_once(text, range.clone(), true)?;
    tags.sort_by_key(|t| t.span.start);
    Ok(tags)
}

fn tags_once(text: &str, range: Range<usize>, descend: bool) -> Result<Vec<Tag>, ArticleError> {
    let base = range.start;
    let html = &text[range];
    let found: RefCell<Vec<Tag>> = RefCell::new(Vec::new());
    let noscript: RefCell<Vec<Range<usize>>> = RefCell::new(Vec::new());
    {
        let settings = Settings::new()
            .append_element_content_handler(element!("img, source", |el| {
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
                let loc = chunk.source_location().bytes();
                let mut ranges = noscript.borrow_mut();
                // A text node can arrive in several chunks; they are contiguous, so merge them.
                match ranges.last_mut() {
                    Some(last) if last.end == base + loc.start => last.end = base + loc.end,
                    _ => ranges.push(base + loc.start..base + loc.end),
                }
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
    let mut found = found.into_inner();
    if descend {
        for inner in noscript.into_inner() {
            found.extend(tags_once(text, inner, false)?);
        }
    }
    Ok(found)
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
        let tags = tags(text, 1..text.len()).expect("parses");
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
            .into_iter()
            .map(|t| &text[t.span])
            .collect();
        assert_eq!(found, ["<img src=a>", "<img src=b>", "<img src=g>"]);
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
            if let Ok(tags) = tags(text, 0..text.len()) {
                for t in tags {
                    assert!(t.span.end <= text.len());
                    assert!(t.insert_at <= t.span.end);
                }
            }
        }
    }
}
