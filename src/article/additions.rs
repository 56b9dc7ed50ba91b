//! The attributes a rewrite adds to an `<img>` — `srcset` with 1x/2x, `width`/`height`,
//! the `--placeholders` preview as a `style` background, `loading`/`decoding` — and taking
//! them out again for `--undo`.
//!
//! They are inserted as one run after the tag's last attribute, in a fixed order, and
//! followed by `data-imgmirror="N"`, the number of attributes in the run. That marker is
//! what makes `--undo` exact: without it, a `loading="lazy"` the author wrote could not be
//! told from one the rewrite added. A later rewrite that adds more (placeholders on a post
//! rewritten before) extends the run and the count.

use super::Target;
use super::html::Tag;
use super::scan::{Found, Scan, What};
use super::splice::Edit;
use super::urls::{self, Density};
use crate::url_grammar::RecognisedKind;

/// The marker attribute; its value is how many attributes before it the rewrite added.
pub(crate) const MARKER: &str = "data-imgmirror";

/// Names a rewrite may add, in the order it adds them.
const ADDED: [&str; 6] = ["srcset", "width", "height", "style", "loading", "decoding"];

/// The attributes to add to a rewritten `<img>`, as one edit: an insertion after its last
/// attribute, or, when an earlier rewrite left a marker, a replacement of the marker that
/// extends the run.
pub(crate) fn add(tag: &Tag, founds: &[&Found], scan: &Scan, target: &Target) -> Option<Edit> {
    if !tag.is_well_formed() {
        return None;
    }
    let quote = tag
        .attr("src")
        .and_then(|a| a.quote)
        .map_or('"', char::from);
    let mut added: Vec<(&str, String)> = Vec::new();
    let mut add = |name: &'static str, value: String| {
        if !tag.has(name) && !added.iter().any(|(n, _)| *n == name) {
            added.push((name, value));
        }
    };
    let sized_src = founds
        .iter()
        .find(|f| f.adds_2x)
        .and_then(|f| Some((*f, f.size?, f.upstream()?)));
    if let Some((src, size, upstream)) = sized_src
        && matches!(src.what, What::Upstream(_))
    {
        let one = urls::mirror_url(target, upstream, Some(size), Density::One);
        let two = urls::mirror_url(target, upstream, Some(size), Density::Two);
        add(
            "srcset",
            urls::escape_attr(&format!("{one} 1x, {two} 2x")).into_owned(),
        );
    }
    let placeholder = founds
        .iter()
        .filter(|f| f.place.names_the_image())
        .find_map(|f| target.placeholders.get(&key(f)?));
    let has_new_urls = founds.iter().any(|f| matches!(f.what, What::Upstream(_)));
    // Moving or re-running over URLs written before adds nothing but a preview asked for.
    let size = founds
        .iter()
        .find_map(|f| f.size)
        .filter(|_| has_new_urls)
        .or(placeholder.map(|p| (p.width, p.height)));
    // Adding only the missing one of width/height could contradict the one already there.
    if let Some((w, h)) = size.filter(|_| !tag.has("width") && !tag.has("height")) {
        add("width", w.to_string());
        add("height", h.to_string());
    }
    if let Some(placeholder) = placeholder {
        // The preview is the element's background: painted at once, under the image once it
        // loads, and it costs no request. An existing `style` is the author's: left alone.
        add(
            "style",
            format!("background:url({}) center/cover", placeholder.data_uri),
        );
    }
    if has_new_urls && scan.first_image_at != Some(tag.span.start) {
        add("loading", "lazy".into());
        add("decoding", "async".into());
    }
    if added.is_empty() {
        return None;
    }
    let mut run: String = added
        .iter()
        .map(|(name, value)| format!(" {name}={quote}{value}{quote}"))
        .collect();
    match marker(tag) {
        Some((range, count)) => {
            run.push_str(&format!(" {MARKER}={quote}{}{quote}", count + added.len()));
            Some(Edit {
                range,
                text: run.trim_start().to_owned(),
            })
        }
        None => {
            run.push_str(&format!(" {MARKER}={quote}{}{quote}", added.len()));
            Some(Edit {
                range: tag.insert_at..tag.insert_at,
                text: run,
            })
        }
    }
}

/// The edit that takes the added run (and its marker) out of `tag`; `None` when the tag has
/// no marker (nothing was added, or a version before the marker added it).
pub(crate) fn remove(text: &str, tag: &Tag) -> Result<Option<Edit>, String> {
    let Some(at) = tag.attrs.iter().position(|a| a.name == MARKER) else {
        return Ok(None);
    };
    let count: usize = tag.attrs[at]
        .value
        .clone()
        .and_then(|v| text[v].trim().parse().ok())
        .ok_or_else(|| format!("{MARKER} is not a count; added attributes left in place"))?;
    let Some(first) = at.checked_sub(count) else {
        return Err(format!(
            "{MARKER}=\"{count}\" but only {at} attributes precede it; added attributes left in place"
        ));
    };
    let run = &tag.attrs[first..at];
    if let Some(other) = run.iter().find(|a| !ADDED.contains(&a.name.as_str())) {
        return Err(format!(
            "attribute {} was not added by imgmirror; added attributes left in place",
            other.name
        ));
    }
    let start = tag.attrs[first]
        .name_start
        .ok_or_else(|| "cannot locate the added attributes".to_owned())?;
    // The run starts with the one space the rewrite put before it.
    let start = if text[..start].ends_with(|c: char| urls::is_html_space(c)) {
        start - 1
    } else {
        start
    };
    let end = attr_end(&tag.attrs[at]).ok_or_else(|| "cannot locate the marker".to_owned())?;
    Ok(Some(Edit {
        range: start..end,
        text: String::new(),
    }))
}

/// The marker's range (name to closing quote) and count, when the tag has one.
fn marker(tag: &Tag) -> Option<(std::ops::Range<usize>, usize)> {
    let attr = tag.attr(MARKER)?;
    let start = attr.name_start?;
    let count = attr.raw.trim().parse().ok()?;
    Some((start..attr_end(attr)?, count))
}

fn attr_end(attr: &super::html::Attr) -> Option<usize> {
    attr.value
        .as_ref()
        .map(|v| v.end + usize::from(attr.quote.is_some()))
}

/// The key of an image in [`Target::placeholders`]: its upstream, or its hash.
fn key(found: &Found) -> Option<String> {
    match &found.what {
        What::Upstream(upstream) => Some(upstream.clone()),
        What::Own(own) => match &own.kind {
            RecognisedKind::Proxy { upstream } => Some(upstream.clone()),
            RecognisedKind::Permalink { hash, .. } => Some(hash.to_hex()),
        },
    }
}
