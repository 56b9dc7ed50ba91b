//! Turns a scan into byte edits and applies them: each found URL is replaced by its imgmirror
//! URL, and an `<img>` that was rewritten gets the attributes the issue asks for (`srcset`
//! with 1x/2x, `width`/`height`, `loading`/`decoding`) inserted after its last attribute.
//! Nothing outside the edited ranges is touched, so the rest of the post is byte-identical.

use std::collections::BTreeMap;
use std::ops::Range;

use super::html::Tag;
use super::scan::{Found, Scan, Syntax};
use super::urls::{self, Density};
use super::{Rewritten, Target};

struct Edit {
    range: Range<usize>,
    text: String,
}

pub(crate) fn apply(text: &str, scan: &Scan, target: &Target) -> Rewritten {
    let mut edits = Vec::new();
    // HTML replacements are grouped per attribute: an unquoted value must be rewritten as a
    // whole (and quoted) when the new URLs contain `=`.
    let mut by_attr: BTreeMap<(usize, usize), Vec<&Found>> = BTreeMap::new();
    for found in &scan.urls {
        let url = urls::mirror_url(target, &found.upstream, found.size, Density::One);
        match found.syntax {
            Syntax::Verbatim => edits.push(Edit {
                range: found.range.clone(),
                text: url,
            }),
            Syntax::Requote(quote) => edits.push(Edit {
                range: found.range.clone(),
                text: format!("{quote}{url}{quote}"),
            }),
            Syntax::Html { tag, attr } => by_attr.entry((tag, attr)).or_default().push(found),
        }
    }

    let mut touched_imgs: BTreeMap<usize, Vec<&Found>> = BTreeMap::new();
    for (&(tag_index, attr_index), founds) in &by_attr {
        let Some(tag) = scan.tags.get(tag_index) else {
            continue;
        };
        let Some(value) = tag.attrs.get(attr_index).and_then(|a| a.value.clone()) else {
            continue;
        };
        let quoted = tag.attrs[attr_index].quote.is_some();
        let pieces: Vec<Edit> = founds
            .iter()
            .map(|found| Edit {
                range: found.range.clone(),
                text: urls::escape_attr(&urls::mirror_url(
                    target,
                    &found.upstream,
                    found.size,
                    Density::One,
                ))
                .into_owned(),
            })
            .collect();
        if quoted {
            edits.extend(pieces);
        } else {
            let new_value = splice(text, value.clone(), &pieces);
            let text = if urls::needs_quotes(&new_value) {
                format!("\"{new_value}\"")
            } else {
                new_value
            };
            edits.push(Edit { range: value, text });
        }
        if tag.name == "img" {
            touched_imgs.entry(tag_index).or_default().extend(founds);
        }
    }

    for (tag_index, founds) in touched_imgs {
        if let Some(insert) = img_additions(&scan.tags[tag_index], &founds, scan, target) {
            edits.push(insert);
        }
    }

    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let mut warnings = scan.warnings.clone();
    let mut kept: Vec<Edit> = Vec::with_capacity(edits.len());
    for edit in edits {
        // Overlaps cannot come out of one tokenizer pass; if one ever does, dropping the edit
        // leaves a stale URL, which is safer than corrupting the post.
        if kept
            .last()
            .is_some_and(|last| edit.range.start < last.range.end)
        {
            warnings.push(format!(
                "internal: overlapping edit at byte {} skipped",
                edit.range.start
            ));
            continue;
        }
        kept.push(edit);
    }
    let whole = 0..text.len();
    Rewritten {
        text: splice(text, whole, &kept),
        changed: scan.urls.len(),
        warnings,
    }
}

/// The attributes to add to a rewritten `<img>`, as one insertion after its last attribute.
fn img_additions(tag: &Tag, founds: &[&Found], scan: &Scan, target: &Target) -> Option<Edit> {
    if !tag.is_well_formed() {
        return None;
    }
    let quote = tag
        .attr("src")
        .and_then(|a| a.quote)
        .map_or('"', char::from);
    let mut added = String::new();
    let mut add = |name: &str, value: &str| {
        if !tag.has(name) {
            added.push_str(&format!(" {name}={quote}{value}{quote}"));
        }
    };
    let sized_src = founds
        .iter()
        .find(|f| f.adds_2x)
        .and_then(|f| f.size.map(|size| (*f, size)));
    if let Some((src, size)) = sized_src {
        let one = urls::mirror_url(target, &src.upstream, Some(size), Density::One);
        let two = urls::mirror_url(target, &src.upstream, Some(size), Density::Two);
        add("srcset", &urls::escape_attr(&format!("{one} 1x, {two} 2x")));
    }
    let size = founds.iter().find_map(|f| f.size);
    // Adding only the missing one of width/height could contradict the one already there.
    if let Some((w, h)) = size.filter(|_| !tag.has("width") && !tag.has("height")) {
        add("width", &w.to_string());
        add("height", &h.to_string());
    }
    if scan.first_image_at != Some(tag.span.start) {
        add("loading", "lazy");
        add("decoding", "async");
    }
    (!added.is_empty()).then_some(Edit {
        range: tag.insert_at..tag.insert_at,
        text: added,
    })
}

/// `text[range]` with sorted, non-overlapping `edits` (absolute ranges inside it) applied.
fn splice(text: &str, range: Range<usize>, edits: &[Edit]) -> String {
    let mut out = String::with_capacity(range.len() + edits.len() * 64);
    let mut pos = range.start;
    for edit in edits {
        out.push_str(&text[pos..edit.range.start]);
        out.push_str(&edit.text);
        pos = edit.range.end;
    }
    out.push_str(&text[pos..range.end]);
    out
}
