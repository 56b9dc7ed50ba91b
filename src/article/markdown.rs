//! Markdown: runs pulldown-cmark with source offsets over a post's body and reports where its
//! raw HTML is (blocks and inline tags, handed to the HTML locator) and where the destination
//! of each image (`![alt](url)`, or the `[ref]: url` definition an image uses) is written.
//! Code spans and fenced code are never reported: an `<img>` shown as code stays code.

use std::collections::HashSet;
use std::ops::Range;

use pulldown_cmark::{Event, LinkType, Options, Parser, Tag, TagEnd};

/// What the body holds, in bytes of the whole file.
#[derive(Debug, Default)]
pub(crate) struct Body {
    /// HTML blocks and inline HTML, each to be tokenized on its own.
    pub html: Vec<Range<usize>>,
    pub images: Vec<Image>,
}

#[derive(Debug)]
pub(crate) struct Image {
    /// The whole `![alt](…)`, used for document order.
    pub site: Range<usize>,
    /// The destination as pulldown-cmark decoded it.
    pub dest: String,
    /// The destination's bytes, if they could be found as written. `None` when the source
    /// spells it with backslash escapes or entities; the caller warns and leaves it.
    pub range: Option<Range<usize>>,
}

/// Scans `text[start..]` as Markdown.
pub(crate) fn scan(text: &str, start: usize) -> Body {
    let body = &text[start..];
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS;
    let parser = Parser::new_ext(body, options);
    // Reference definitions are resolved by the parser; their spans are kept here so an image
    // written `![a][ref]` rewrites the `[ref]: url` line, once, however many images use it.
    let defs: Vec<(String, String, Range<usize>)> = parser
        .reference_definitions()
        .iter()
        .map(|(label, def)| (label.to_owned(), def.dest.to_string(), def.span.clone()))
        .collect();
    let mut used_defs = HashSet::new();

    let mut out = Body::default();
    let mut html_depth = 0usize;
    let mut open_image: Option<(Range<usize>, String, LinkType, String, usize)> = None;
    for (event, range) in parser.into_offset_iter() {
        match event {
            Event::Start(Tag::HtmlBlock) => {
                html_depth += 1;
                out.html.push(start + range.start..start + range.end);
            }
            Event::End(TagEnd::HtmlBlock) => html_depth = html_depth.saturating_sub(1),
            Event::InlineHtml(_) if html_depth == 0 => {
                out.html.push(start + range.start..start + range.end);
            }
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                id,
                ..
            }) => {
                let alt_start = range.start + 2;
                open_image = Some((
                    range,
                    dest_url.to_string(),
                    link_type,
                    id.to_string(),
                    alt_start,
                ));
            }
            Event::End(TagEnd::Image) => {
                let Some((site, dest, link_type, id, alt_end)) = open_image.take() else {
                    continue;
                };
                let located = match link_type {
                    LinkType::Inline => body[alt_end..site.end]
                        .find("](")
                        .and_then(|i| locate_dest(body, alt_end + i + 2, site.end, &dest)),
                    LinkType::Reference | LinkType::Collapsed | LinkType::Shortcut => {
                        let def = defs.iter().find(|(label, _, _)| labels_match(label, &id));
                        match def {
                            Some((_, _, span)) if !used_defs.insert(span.start) => continue,
                            Some((_, def_dest, span)) if *def_dest == dest => {
                                body[span.clone()].find("]:").and_then(|i| {
                                    locate_dest(body, span.start + i + 2, span.end, &dest)
                                })
                            }
                            _ => None,
                        }
                    }
                    // Autolinks and e-mail links cannot be images.
                    _ => continue,
                };
                out.images.push(Image {
                    site: start + site.start..start + site.end,
                    dest,
                    range: located.map(|r| start + r.start..start + r.end),
                });
            }
            // Alt text: the destination starts after the last of it.
            _ => {
                if let Some(open) = open_image.as_mut() {
                    open.4 = open.4.max(range.end);
                }
            }
        }
    }
    out
}

/// Reference labels match case-insensitively with whitespace collapsed (CommonMark's label
/// normalisation, short of full Unicode case folding).
fn labels_match(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    norm(a) == norm(b)
}

/// Finds `dest` written literally at the first non-space position of `body[from..to]`,
/// optionally inside `<…>`.
fn locate_dest(body: &str, from: usize, to: usize, dest: &str) -> Option<Range<usize>> {
    let window = body.get(from..to)?;
    let skipped = window.len() - window.trim_start().len();
    let mut pos = from + skipped;
    let angle = body[pos..].starts_with('<');
    if angle {
        pos += 1;
    }
    let rest = body.get(pos..to)?;
    if dest.is_empty() || !rest.starts_with(dest) {
        return None;
    }
    let end = pos + dest.len();
    let next = body[end..to].chars().next();
    let terminated = if angle {
        next == Some('>')
    } else {
        next.is_none_or(|c| c.is_whitespace() || c == ')')
    };
    terminated.then_some(pos..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(text: &str) -> Vec<(String, Option<String>)> {
        scan(text, 0)
            .images
            .into_iter()
            .map(|i| (i.dest, i.range.map(|r| text[r].to_owned())))
            .collect()
    }

    /// (Markdown, [(decoded destination, its bytes as located)]).
    type Case<'a> = (&'a str, &'a [(&'a str, Option<&'a str>)]);

    #[test]
    fn image_destinations_table() {
        let cases: &[Case] = &[
            (
                "![a](http://x/a.jpg)",
                &[("http://x/a.jpg", Some("http://x/a.jpg"))],
            ),
            (
                "![a [b] c](http://x/a.jpg \"t](x\")",
                &[("http://x/a.jpg", Some("http://x/a.jpg"))],
            ),
            (
                "![](<http://x/a b.jpg>)",
                &[("http://x/a b.jpg", Some("http://x/a b.jpg"))],
            ),
            (
                "![a](\n  http://x/a.jpg\n)",
                &[("http://x/a.jpg", Some("http://x/a.jpg"))],
            ),
            (
                "![`](`](http://x/a.jpg)",
                &[("http://x/a.jpg", Some("http://x/a.jpg"))],
            ),
            ("![a](http://x/a\\_b.jpg)", &[("http://x/a_b.jpg", None)]),
            (
                "[![a](http://x/i.png)](http://x/link)",
                &[("http://x/i.png", Some("http://x/i.png"))],
            ),
            (
                "![a][r] ![b][R]\n\n[r]: http://x/r.jpg \"t\"\n",
                &[("http://x/r.jpg", Some("http://x/r.jpg"))],
            ),
            (
                "`![a](http://x/code.jpg)`\n\n    ![a](http://x/indented.jpg)\n",
                &[],
            ),
            ("[a](http://x/link.jpg)", &[]),
        ];
        for (text, want) in cases {
            let want: Vec<(String, Option<String>)> = want
                .iter()
                .map(|(d, r)| ((*d).to_owned(), r.map(str::to_owned)))
                .collect();
            assert_eq!(images(text), want, "{text:?}");
        }
    }

    #[test]
    fn html_ranges_skip_code() {
        let text = "<div>\n<img src=a>\n</div>\n\ntext <img src=b> `<img src=c>`\n\n```\n<img src=d>\n```\n";
        let body = scan(text, 0);
        let html: Vec<&str> = body.html.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(html, ["<div>\n<img src=a>\n</div>\n", "<img src=b>"]);
    }
}
