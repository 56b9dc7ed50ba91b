//! The one extraction: walks a post's front matter, HTML and Markdown, decides which URLs are
//! ours to rewrite, and records for each the exact bytes it occupies and how it is written
//! there. `extract` reports these; `rewrite` turns them into edits.

use std::ops::Range;

use super::frontmatter;
use super::html::{self, Tag};
use super::markdown;
use super::urls::{self, Class};
use super::{ArticleError, Kind, Place, Settings};
use crate::url_grammar::Recognised;

/// Everything found in one post.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// URLs to rewrite, in document order.
    pub urls: Vec<Found>,
    /// Every start tag of interest of the body, in document order.
    pub tags: Vec<Tag>,
    /// Where the first image of the body starts (`<img>` or Markdown image): it alone stays
    /// eager, since it is the likely largest contentful paint.
    pub first_image_at: Option<usize>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub range: Range<usize>,
    /// The URL as found, decoded (character references, YAML escapes) and trimmed.
    pub url: String,
    pub what: What,
    pub size: Option<(u32, u32)>,
    pub place: Place,
    pub line: usize,
    pub syntax: Syntax,
    /// The rewritten post also asks for this image at `size` with `dpr=2`.
    pub adds_2x: bool,
}

/// What a found URL is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum What {
    /// A worker (or, with `--all-http`, plain `http://`) URL of this upstream.
    Upstream(String),
    /// An imgmirror URL written before.
    Own(Recognised),
}

impl Found {
    /// The upstream, when the URL names one (a permalink names a hash instead).
    pub fn upstream(&self) -> Option<&str> {
        match &self.what {
            What::Upstream(upstream) => Some(upstream),
            What::Own(Recognised {
                kind: crate::url_grammar::RecognisedKind::Proxy { upstream },
                ..
            }) => Some(upstream),
            What::Own(_) => None,
        }
    }
}

/// How a found URL is written, which decides how its replacement must be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// Verbatim: a front-matter value without escapes, a Markdown destination, a `<style>`
    /// sheet's `url()`.
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
    let ctx = Ctx {
        text,
        settings,
        own: &own,
        lines: &lines,
    };

    let fm = frontmatter::split(text);
    let body_start = fm.as_ref().map_or(0, |fm| fm.body_start);
    if let Some(fm) = &fm {
        for value in frontmatter::values(text, fm)? {
            let http_ok = urls::front_matter_http_ok(&value.key, &value.value);
            let line = lines.line(value.range.start);
            let Some(what) = ctx.what(&value.value, http_ok, line, &mut out.warnings) else {
                continue;
            };
            out.urls.push(Found {
                range: value.range,
                url: value.value.trim_matches(urls::is_html_space).to_owned(),
                what,
                size: settings.front_matter_size,
                adds_2x: false,
                place: Place::FrontMatter { key: value.key },
                line,
                syntax: value.requote.map_or(Syntax::Verbatim, Syntax::Requote),
            });
        }
    }

    match kind {
        Kind::Html => scan_html(&ctx, body_start..text.len(), &mut out)?,
        Kind::Markdown => {
            let body = markdown::scan(text, body_start);
            for range in body.html {
                scan_html(&ctx, range, &mut out)?;
            }
            scan_markdown(&ctx, body.images, body.links, &mut out);
        }
    }
    // Passes found URLs in different orders, and a reference definition shared by an image
    // and a link is found twice.
    out.urls
        .sort_by_key(|found| (found.range.start, found.range.end));
    out.urls.dedup_by(|b, a| a.range == b.range);
    Ok(out)
}

/// What every pass needs.
struct Ctx<'a> {
    text: &'a str,
    settings: &'a Settings,
    own: &'a [&'a str],
    lines: &'a LineIndex,
}

impl Ctx<'_> {
    /// Classifies a decoded URL; `None` for someone else's URL (an invalid worker URL is
    /// also warned about).
    fn what(
        &self,
        url: &str,
        http_ok: bool,
        line: usize,
        warnings: &mut Vec<String>,
    ) -> Option<What> {
        match urls::classify(url, self.settings, self.own, http_ok) {
            Class::Rewrite(upstream) => Some(What::Upstream(upstream)),
            Class::Own(recognised) => Some(What::Own(recognised)),
            Class::Invalid(upstream) => {
                warnings.push(invalid(line, &upstream));
                None
            }
            Class::Other => None,
        }
    }

    /// Whether a link to `what` points at an image: always with `--links`, else when it
    /// is one of ours, has an image extension, or names what an image it wraps names.
    fn is_image_link(&self, what: &What, wrapped: &[What]) -> bool {
        match what {
            What::Own(_) => true,
            What::Upstream(upstream) => {
                self.settings.links || urls::has_image_extension(upstream) || wrapped.contains(what)
            }
        }
    }
}

fn scan_markdown(
    ctx: &Ctx<'_>,
    images: Vec<markdown::Image>,
    links: Vec<markdown::Link>,
    out: &mut Scan,
) {
    for image in images {
        out.first_image_at = Some(
            out.first_image_at
                .map_or(image.site.start, |at| at.min(image.site.start)),
        );
        let line = ctx.lines.line(image.site.start);
        let Some(what) = ctx.what(&image.dest, true, line, &mut out.warnings) else {
            continue;
        };
        push_markdown(
            out,
            image.range,
            what,
            Place::MarkdownImage,
            line,
            &image.dest,
        );
    }
    for link in links {
        let line = ctx.lines.line(link.site.start);
        let mut ignore = Vec::new();
        let Some(what) = ctx.what(&link.dest, true, line, &mut ignore) else {
            continue;
        };
        let wrapped: Vec<What> = link
            .wraps
            .iter()
            .filter_map(|dest| ctx.what(dest, true, line, &mut ignore))
            .collect();
        if ctx.is_image_link(&what, &wrapped) {
            out.warnings.extend(ignore);
            push_markdown(out, link.range, what, Place::Link, line, &link.dest);
        }
    }
}

fn push_markdown(
    out: &mut Scan,
    range: Option<Range<usize>>,
    what: What,
    place: Place,
    line: usize,
    dest: &str,
) {
    match range {
        Some(range) => out.urls.push(Found {
            range,
            url: dest.to_owned(),
            what,
            size: None,
            adds_2x: false,
            place,
            line,
            syntax: Syntax::Verbatim,
        }),
        None => out.warnings.push(format!(
            "line {line}: image destination written with escapes left as is: {dest}"
        )),
    }
}

/// Which attribute of which element holds image URLs, and how.
fn place_of(tag: &str, attr: &str) -> Option<(Place, Shape)> {
    let found = match (tag, attr) {
        ("img", "src") => (Place::ImgSrc, Shape::Url),
        ("img", "data-src") => (Place::DataSrc, Shape::Url),
        ("img", "data-original") => (Place::DataOriginal, Shape::Url),
        ("img", "data-lazy-src") => (Place::DataLazySrc, Shape::Url),
        ("img", "srcset") => (Place::Srcset, Shape::Srcset),
        ("img" | "source", "data-srcset") => (Place::DataSrcset, Shape::Srcset),
        ("source", "srcset") => (Place::SourceSrcset, Shape::Srcset),
        ("video", "poster") => (Place::VideoPoster, Shape::Url),
        ("a", "href") => (Place::Link, Shape::Url),
        (_, "style") => (Place::CssUrl, Shape::Css),
        _ => return None,
    };
    Some(found)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The whole value is one URL.
    Url,
    /// A `srcset` candidate list.
    Srcset,
    /// CSS declarations, with `url()`s.
    Css,
}

fn scan_html(ctx: &Ctx<'_>, range: Range<usize>, out: &mut Scan) -> Result<(), ArticleError> {
    let text = ctx.text;
    let found = html::tags(text, range.clone())?;
    let mut links = Vec::new();
    for tag in found.tags {
        let tag_index = out.tags.len();
        if tag.name == "img" {
            out.first_image_at = Some(
                out.first_image_at
                    .map_or(tag.span.start, |at| at.min(tag.span.start)),
            );
        }
        let size = img_size(ctx, &tag, &mut out.warnings);
        for (attr_index, attr) in tag.attrs.iter().enumerate() {
            let Some(value) = attr.value.clone() else {
                continue;
            };
            let Some((place, shape)) = place_of(&tag.name, &attr.name) else {
                continue;
            };
            // HTML ignores a repeated attribute; so do we, or we would rewrite a dead value.
            if tag.attrs[..attr_index].iter().any(|a| a.name == attr.name) {
                continue;
            }
            let raw = &text[value.clone()];
            let pieces = match shape {
                Shape::Srcset => html::srcset_urls(raw),
                Shape::Css => html::css_urls(raw),
                // The value is the URL, minus the whitespace HTML strips from it.
                Shape::Url => {
                    let start = raw.len() - raw.trim_start_matches(urls::is_html_space).len();
                    let end = raw.trim_end_matches(urls::is_html_space).len();
                    std::iter::once(start..end)
                        .filter(|r| r.start < r.end)
                        .collect()
                }
            };
            for piece in pieces {
                let range = value.start + piece.start..value.start + piece.end;
                let line = ctx.lines.line(range.start);
                let decoded = urls::decode_entities(&text[range.clone()]);
                let Some(what) = ctx.what(&decoded, true, line, &mut out.warnings) else {
                    continue;
                };
                let sized = place.names_the_image();
                let found = Found {
                    range,
                    url: decoded.trim_matches(urls::is_html_space).to_owned(),
                    what,
                    size: size.filter(|_| sized),
                    adds_2x: place == Place::ImgSrc
                        && size.is_some_and(|s| fits_2x(s, ctx.settings.max_size))
                        && !tag.has("srcset")
                        && tag.is_well_formed(),
                    place: place.clone(),
                    line,
                    syntax: Syntax::Html {
                        tag: tag_index,
                        attr: attr_index,
                    },
                };
                if place == Place::Link {
                    links.push(found);
                } else {
                    out.urls.push(found);
                }
            }
        }
        out.tags.push(tag);
    }
    for link in links {
        let Syntax::Html { tag, .. } = link.syntax else {
            continue;
        };
        let wrapped = wrapped_images(text, &out.tags[tag], range.end, &out.urls[..]);
        if ctx.is_image_link(&link.what, &wrapped) {
            out.urls.push(link);
        }
    }
    scan_sheets(ctx, &found.sheets, out);
    Ok(())
}

/// The `url()`s of `<style>` sheets: raw text, so replacements are written verbatim.
fn scan_sheets(ctx: &Ctx<'_>, sheets: &[Range<usize>], out: &mut Scan) {
    let text = ctx.text;
    for sheet in sheets {
        let css = &text[sheet.clone()];
        for piece in html::css_urls(css) {
            let range = sheet.start + piece.start..sheet.start + piece.end;
            let line = ctx.lines.line(range.start);
            let url = &text[range.clone()];
            // Under `--all-http` a sheet's `url()` may be a font or a cursor: only image
            // extensions count. Worker URLs are rewritten whatever they name.
            let http_ok = urls::has_image_extension(url);
            let Some(what) = ctx.what(url, http_ok, line, &mut out.warnings) else {
                continue;
            };
            out.urls.push(Found {
                range,
                url: url.to_owned(),
                what,
                size: None,
                adds_2x: false,
                place: Place::CssUrl,
                line,
                syntax: Syntax::Verbatim,
            });
        }
    }
}

/// An `<img>`'s `data-size`, validated (a bad one is a warning) and clamped to the transform
/// limits (reported too).
fn img_size(ctx: &Ctx<'_>, tag: &Tag, warnings: &mut Vec<String>) -> Option<(u32, u32)> {
    if tag.name != "img" {
        return None;
    }
    let attr = tag.attr("data-size")?;
    let raw = urls::decode_entities(&attr.raw);
    let line = ctx.lines.line(tag.span.start);
    match urls::parse_size(&raw) {
        Err(why) => {
            warnings.push(format!("line {line}: data-size {raw:?} ignored: {why}"));
            None
        }
        Ok(size) => match urls::clamp_size(size, ctx.settings.max_size) {
            Some(clamped) => {
                let (max_w, max_h) = ctx.settings.max_size;
                warnings.push(format!(
                    "line {line}: data-size {raw:?} clamped to {},{} (the transform limit is {max_w}x{max_h})",
                    clamped.0, clamped.1
                ));
                Some(clamped)
            }
            None => Some(size),
        },
    }
}

fn fits_2x((w, h): (u32, u32), (max_w, max_h): (u32, u32)) -> bool {
    u64::from(w) * 2 <= u64::from(max_w) && u64::from(h) * 2 <= u64::from(max_h)
}

/// What the images inside an `<a>` (up to its `</a>`, or the end of the range) name.
fn wrapped_images(text: &str, a: &Tag, limit: usize, found: &[Found]) -> Vec<What> {
    let from = a.span.end;
    let to = text
        .get(from..limit)
        .and_then(|rest| find_ignore_case(rest, "</a"))
        .map_or(limit, |i| from + i);
    found
        .iter()
        .filter(|f| f.range.start >= from && f.range.end <= to)
        .filter(|f| {
            matches!(
                f.place,
                Place::ImgSrc
                    | Place::DataSrc
                    | Place::DataOriginal
                    | Place::DataLazySrc
                    | Place::Srcset
            )
        })
        .map(|f| f.what.clone())
        .collect()
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
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
