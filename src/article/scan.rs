//! The one extraction: walks a post's front matter, HTML and Markdown, decides which URLs are
//! ours to rewrite, and records for each the exact bytes it occupies and how it is written
//! there. `extract` reports these; `rewrite` turns them into edits.

use std::ops::Range;

use super::frontmatter;
use super::html::{self, Tag};
use super::markdown;
use super::urls::{self, Class};
use super::{ArticleError, Kind, Place, Settings};

/// Everything found in one post.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// URLs to rewrite, in document order.
    pub urls: Vec<Found>,
    /// Every `<img>`/`<source>` start tag of the body, in document order.
    pub tags: Vec<Tag>,
    /// Where the first image of the body starts (`<img>` or Markdown image): it alone stays
    /// eager, since it is the likely largest contentful paint.
    pub first_image_at: Option<usize>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub range: Range<usize>,
    pub upstream: String,
    pub size: Option<(u32, u32)>,
    pub place: Place,
    pub line: usize,
    pub syntax: Syntax,
    /// The rewritten post also asks for this image at `size` with `dpr=2`.
    pub adds_2x: bool,
}

/// How a found URL is written, which decides how its replacement must be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// Verbatim: a front-matter value without escapes, a Markdown destination.
    Verbatim,
    /// A front-matter scalar that had escapes or folding; `range` covers its quotes too.
    Requote(char),
    /// Inside an HTML attribute value: `tag` indexes [`Scan::tags`], `attr` that tag's
    /// attributes. The replacement is HTML-escaped.
    Html { tag: usize, attr: usize },
}

pub(crate) fn scan(
    text: &str,
    kind: Kind,
    settings: &Settings,
    extra_own: &[&str],
) -> Result<Scan, ArticleError> {
    let own: Vec<&str> = settings
        .own_bases
        .iter()
        .map(String::as_str)
        .chain(extra_own.iter().copied())
        .filter(|base| !base.is_empty())
        .collect();
    let mut out = Scan::default();
    let lines = LineIndex::new(text);

    let fm = frontmatter::split(text);
    let body_start = fm.as_ref().map_or(0, |fm| fm.body_start);
    if let Some(fm) = &fm {
        for value in frontmatter::values(text, fm)? {
            let http_ok = urls::front_matter_http_ok(&value.key, &value.value);
            let line = lines.line(value.range.start);
            match urls::classify(&value.value, settings, &own, http_ok) {
                Class::Rewrite(upstream) => out.urls.push(Found {
                    range: value.range,
                    upstream,
                    size: settings.front_matter_size,
                    adds_2x: false,
                    place: Place::FrontMatter { key: value.key },
                    line,
                    syntax: value.requote.map_or(Syntax::Verbatim, Syntax::Requote),
                }),
                Class::Invalid(upstream) => out.warnings.push(invalid(line, &upstream)),
                Class::Other => {}
            }
        }
    }

    match kind {
        Kind::Html => scan_html(
            text,
            body_start..text.len(),
            settings,
            &own,
            &lines,
            &mut out,
        )?,
        Kind::Markdown => {
            let body = markdown::scan(text, body_start);
            for range in body.html {
                scan_html(text, range, settings, &own, &lines, &mut out)?;
            }
            for image in body.images {
                out.first_image_at = Some(
                    out.first_image_at
                        .map_or(image.site.start, |at| at.min(image.site.start)),
                );
                let line = lines.line(image.site.start);
                match urls::classify(&image.dest, settings, &own, true) {
                    Class::Rewrite(upstream) => match image.range {
                        Some(range) => out.urls.push(Found {
                            range,
                            upstream,
                            size: None,
                            adds_2x: false,
                            place: Place::MarkdownImage,
                            line,
                            syntax: Syntax::Verbatim,
                        }),
                        None => out.warnings.push(format!(
                            "line {line}: image destination written with escapes left as is: {}",
                            image.dest
                        )),
                    },
                    Class::Invalid(upstream) => out.warnings.push(invalid(line, &upstream)),
                    Class::Other => {}
                }
            }
            // HTML ranges and Markdown images were found in two passes.
            out.urls.sort_by_key(|found| found.range.start);
        }
    }
    Ok(out)
}

fn scan_html(
    text: &str,
    range: Range<usize>,
    settings: &Settings,
    own: &[&str],
    lines: &LineIndex,
    out: &mut Scan,
) -> Result<(), ArticleError> {
    for tag in html::tags(text, range)? {
        let tag_index = out.tags.len();
        let is_img = tag.name == "img";
        if is_img {
            out.first_image_at = Some(
                out.first_image_at
                    .map_or(tag.span.start, |at| at.min(tag.span.start)),
            );
        }
        let size = tag
            .attr("data-size")
            .and_then(|a| urls::parse_size(&urls::decode_entities(&a.raw)));
        for (attr_index, attr) in tag.attrs.iter().enumerate() {
            let Some(value) = attr.value.clone() else {
                continue;
            };
            let (place, is_srcset) = match (is_img, attr.name.as_str()) {
                (true, "src") => (Place::ImgSrc, false),
                (true, "data-src") => (Place::DataSrc, false),
                (true, "srcset") => (Place::Srcset, true),
                (false, "srcset") => (Place::SourceSrcset, true),
                _ => continue,
            };
            // HTML ignores a repeated attribute; so do we, or we would rewrite a dead value.
            if tag.attrs[..attr_index].iter().any(|a| a.name == attr.name) {
                continue;
            }
            let pieces = if is_srcset {
                html::srcset_urls(&text[value.clone()])
            } else {
                // The value is the URL, minus the whitespace HTML strips from it.
                let raw = &text[value.clone()];
                let start = raw.len() - raw.trim_start_matches(urls::is_html_space).len();
                let end = raw.trim_end_matches(urls::is_html_space).len();
                let mut whole = Vec::new();
                if start < end {
                    whole.push(start..end);
                }
                whole
            };
            for piece in pieces {
                let range = value.start + piece.start..value.start + piece.end;
                let line = lines.line(range.start);
                let decoded = urls::decode_entities(&text[range.clone()]);
                match urls::classify(&decoded, settings, own, true) {
                    Class::Rewrite(upstream) => out.urls.push(Found {
                        range,
                        upstream,
                        // srcset candidates carry their own descriptors; they keep the original.
                        size: if is_srcset { None } else { size },
                        // The splice adds a 1x/2x `srcset` for a sized `src` when there is none.
                        adds_2x: place == Place::ImgSrc
                            && size.is_some()
                            && !tag.has("srcset")
                            && tag.is_well_formed(),
                        place: place.clone(),
                        line,
                        syntax: Syntax::Html {
                            tag: tag_index,
                            attr: attr_index,
                        },
                    }),
                    Class::Invalid(upstream) => out.warnings.push(invalid(line, &upstream)),
                    Class::Other => {}
                }
            }
        }
        out.tags.push(tag);
    }
    Ok(())
}

fn invalid(line: usize, upstream: &str) -> String {
    format!("line {line}: worker URL without a valid http(s) upstream left as is: {upstream:?}")
}

/// Byte offset → 1-based line, by binary search over line starts, so a post with thousands
/// of images is not rescanned from the top for each one.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_agrees_with_counting() {
        let text = "a\nbc\r\n\nd";
        let index = LineIndex::new(text);
        for offset in 0..=text.len() {
            assert_eq!(
                index.line(offset),
                frontmatter::line_of(text, offset),
                "{offset}"
            );
        }
    }
}
