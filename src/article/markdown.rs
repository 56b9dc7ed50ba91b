//! Markdown: runs pulldown-cmark with source offsets over a post's body and reports where its
//! raw HTML is (blocks and inline tags, handed to the HTML locator) and where the destination
//! of each image (`![alt](url)`, or the `[ref]: url` definition an image uses) and of each
//! link (with the images it wraps, for `[![a](x.jpg)](x.jpg)` galleries) is written.
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
    /// Links, whatever they point at; the caller decides which point at images.
    pub links: Vec<Link>,
}

#[derive(Debug)]
pub(crate) struct Link {
    pub site: Range<usize>,
    pub dest: String,
    /// As [`Image::range`].
    pub range: Option<Range<usize>>,
    /// Destinations of the images inside the link text.
    pub wraps: Vec<String>,
}

/// A link or image being read: its span, destination, kind, reference label, and where its
/// text (the alt text, or the link text) ends so far.
struct Open {
    site: Range<usize>,
    dest: String,
    link_type: LinkType,
    id: String,
    text_end: usize,
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
    let mut open_image: Option<Open> = None;
    let mut open_link: Option<(Open, Vec<String>)> = None;
    for (event, range) in parser.into_offset_iter() {
        // Whatever is inside a link is its text: the destination comes after all of it.
        if let Some((link, _)) = open_link.as_mut()
            && !matches!(event, Event::End(TagEnd::Link))
        {
            link.text_end = link.text_end.max(range.end);
        }
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
            }) => open_image = Some(Open::new(range, &dest_url, link_type, &id, 2)),
            Event::End(TagEnd::Image) => {
                let Some(open) = open_image.take() else {
                    continue;
                };
                if let Some(image) = close_image(body, start, open, &defs, &mut used_defs) {
                    if let Some((_, wraps)) = open_link.as_mut() {
                        wraps.push(image.dest.clone());
                    }
                    out.images.push(image);
                }
            }
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                id,
                ..
            }) => open_link = Some((Open::new(range, &dest_url, link_type, &id, 1), Vec::new())),
            Event::End(TagEnd::Link) => {
                let Some((open, wraps)) = open_link.take() else {
                    continue;
                };
                if let Some(located) = locate_open(body, &open, &defs, None) {
                    out.links.push(Link {
                        site: start + open.site.start..start + open.site.end,
                        dest: open.dest,
                        range: located.map(|r| start + r.start..start + r.end),
                        wraps,
                    });
                }
            }
            // Alt text: the destination starts after the last of it.
            _ => {
                if let Some(open) = open_image.as_mut() {
                    open.text_end = open.text_end.max(range.end);
                }
            }
        }
    }
    out
}

impl Open {
    /// `marker` is the length of `![` or `[`, where the text starts.
    fn new(site: Range<usize>, dest: &str, link_type: LinkType, id: &str, marker: usize) -> Open {
        Open {
            text_end: site.start + marker,
            site,
            dest: dest.to_owned(),
            link_type,
            id: id.to_owned(),
        }
    }
}

/// A finished image, with positions in the whole file; `None` when it is not one to report.
fn close_image(
    body: &str,
    start: usize,
    open: Open,
    defs: &[(String, String, Range<usize>)],
    used: &mut HashSet<usize>,
) -> Option<Image> {
    let located = locate_open(body, &open, defs, Some(used))?;
    Some(Image {
        site: start + open.site.start..start + open.site.end,
        dest: open.dest,
        range: located.map(|r| start + r.start..start + r.end),
    })
}

/// Where an image's or link's destination is written: `None` inside the outer option when it
/// is not an image or link we can rewrite (an autolink, a reference definition already
/// rewritten for another image), `Some(None)` when it is written with escapes. Images mark
/// the definitions they use in `used`, so a definition shared by many is rewritten once.
#[allow(clippy::option_option)]
fn locate_open(
    body: &str,
    open: &Open,
    defs: &[(String, String, Range<usize>)],
    used: Option<&mut HashSet<usize>>,
) -> Option<Option<Range<usize>>> {
    let site_end = open.site.end;
    match open.link_type {
        LinkType::Inline => Some(
            body[open.text_end.min(site_end)..site_end]
                .find("](")
                .and_then(|i| locate_dest(body, open.text_end + i + 2, site_end, &open.dest)),
        ),
        LinkType::Reference | LinkType::Collapsed | LinkType::Shortcut => {
            let def = defs
                .iter()
                .find(|(label, _, _)| labels_match(label, &open.id));
            match def {
                Some((_, _, span)) if used.is_some_and(|used| !used.insert(span.start)) => None,
                Some((_, def_dest, span)) if *def_dest == open.dest => Some(
                    body[span.clone()]
                        .find("]:")
                        .and_then(|i| locate_dest(body, span.start + i + 2, span.end, &open.dest)),
                ),
                _ => Some(None),
            }
        }
        // Autolinks and e-mail links are not written as destinations.
        _ => None,
    }
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
    fn links_report_the_images_they_wrap() {
        let text = "[![a](http://x/i.jpg)](http://x/i.jpg) [page](http://x/p) [![b][r]][r]\n\n[r]: http://x/r.jpg\n";
        let body = scan(text, 0);
        let links: Vec<(String, Option<&str>, Vec<String>)> = body
            .links
            .iter()
            .map(|l| {
                (
                    l.dest.clone(),
                    l.range.clone().map(|r| &text[r]),
                    l.wraps.clone(),
                )
            })
            .collect();
        assert_eq!(
            links,
            [
                (
                    "http://x/i.jpg".into(),
                    Some("http://x/i.jpg"),
                    vec!["http://x/i.jpg".into()]
                ),
                ("http://x/p".into(), Some("http://x/p"), vec![]),
                (
                    "http://x/r.jpg".into(),
                    Some("http://x/r.jpg"),
                    vec!["http://x/r.jpg".into()]
                ),
            ]
        );
        // The first `http://x/i.jpg` of the text is the image's, the second the link's.
        assert_eq!(body.images[0].range, Some(6..20));
        assert_eq!(body.links[0].range, Some(23..37));
    }

    #[test]
    fn html_ranges_skip_code() {
        let text = "<div>\n<img src=a>\n</div>\n\ntext <img src=b> `<img src=c>`\n\n```\n<img src=d>\n```\n";
        let body = scan(text, 0);
        let html: Vec<&str> = body.html.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(html, ["<div>\n<img src=a>\n</div>\n", "<img src=b>"]);
    }
}
