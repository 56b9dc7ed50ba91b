//! Turns a scan into byte edits and applies them: each found URL is replaced by its new URL
//! (the imgmirror URL of a worker URL; an imgmirror URL moved to another base; or, undoing,
//! the worker or upstream URL back), and an `<img>` that was rewritten gets the attributes
//! the rewrite adds (see `additions`), or loses them again on `--undo`. Nothing outside the
//! edited ranges is touched, so the rest of the post is byte-identical.

use std::collections::BTreeMap;
use std::ops::Range;

use super::additions;
use super::scan::{Found, Scan, Syntax, What};
use super::urls::{self, Density, starts_with_ignore_case};
use super::{Rewritten, Settings, Target, UndoTo};
use crate::url_grammar::{Recognised, RecognisedKind};

pub(crate) struct Edit {
    pub range: Range<usize>,
    pub text: String,
}

/// The new text for one found URL.
enum New {
    /// Replace the whole URL with this (unescaped) URL.
    Whole(String),
    /// Replace only its first `len` bytes (the old base) with this base, so the rest of the
    /// URL stays exactly as written.
    Base { len: usize, base: String },
}

pub(crate) fn apply(text: &str, scan: &Scan, settings: &Settings, target: &Target) -> Rewritten {
    let mut warnings = scan.warnings.clone();
    let mut edits = Vec::new();
    let mut changed: Vec<Range<usize>> = Vec::new();
    // HTML replacements are grouped per attribute: an unquoted value must be rewritten as a
    // whole (and quoted) when the new URLs contain `=`.
    let mut by_attr: BTreeMap<(usize, usize), Vec<(&Found, New)>> = BTreeMap::new();
    let mut touched_imgs: BTreeMap<usize, Vec<&Found>> = BTreeMap::new();
    for found in &scan.urls {
        let Some(new) = new_url(found, settings, target, &mut warnings) else {
            continue;
        };
        changed.push(found.range.clone());
        match found.syntax {
            Syntax::Verbatim => edits.push(edit_for(text, found, new, false)),
            Syntax::Requote(quote) => {
                let url = match new {
                    New::Whole(url) => url,
                    New::Base { len, base } => format!("{base}{}", &found.url[len..]),
                };
                edits.push(Edit {
                    range: found.range.clone(),
                    text: format!("{quote}{url}{quote}"),
                });
            }
            Syntax::Html { tag, attr } => {
                by_attr.entry((tag, attr)).or_default().push((found, new));
                if scan.tags[tag].name == "img" {
                    touched_imgs.entry(tag).or_default().push(found);
                }
            }
        }
    }

    edits.extend(attr_edits(text, scan, by_attr));

    // With `--placeholders`, images already rewritten get their preview too.
    if !target.placeholders.is_empty() && target.undo.is_none() {
        for found in &scan.urls {
            if let (Syntax::Html { tag, .. }, What::Own(_)) = (&found.syntax, &found.what)
                && scan.tags[*tag].name == "img"
            {
                let list = touched_imgs.entry(*tag).or_default();
                if !list.iter().any(|f| f.range == found.range) {
                    list.push(found);
                }
            }
        }
    }
    let mut removed: Vec<Range<usize>> = Vec::new();
    for (tag_index, founds) in touched_imgs {
        let tag = &scan.tags[tag_index];
        let edit = match target.undo {
            Some(_) => additions::remove(text, tag).unwrap_or_else(|why| {
                let line = founds.first().map_or(0, |f| f.line);
                warnings.push(format!("line {line}: {why}"));
                None
            }),
            None => additions::add(tag, &founds, scan, target),
        };
        if target.undo.is_some()
            && let Some(edit) = &edit
        {
            removed.push(edit.range.clone());
        }
        edits.extend(edit);
    }
    // URLs inside an added attribute that `--undo` takes out go with it.
    let inside = |range: &Range<usize>| {
        removed
            .iter()
            .any(|r| r != range && r.start <= range.start && range.end <= r.end)
    };
    edits.retain(|e| !inside(&e.range));
    changed.retain(|r| !inside(r));

    let kept = non_overlapping(edits, &mut warnings);
    let whole = 0..text.len();
    Rewritten {
        text: splice(text, whole, &kept),
        changed: changed.len(),
        warnings,
    }
}

/// The edits of the URLs in HTML attributes, grouped per attribute: an unquoted value is
/// rewritten as a whole (and quoted when the new URLs contain `=`).
fn attr_edits(
    text: &str,
    scan: &Scan,
    mut by_attr: BTreeMap<(usize, usize), Vec<(&Found, New)>>,
) -> Vec<Edit> {
    let mut edits = Vec::new();
    for (&(tag_index, attr_index), founds) in by_attr.iter_mut() {
        let tag = &scan.tags[tag_index];
        let Some(value) = tag.attrs.get(attr_index).and_then(|a| a.value.clone()) else {
            continue;
        };
        let quoted = tag.attrs[attr_index].quote.is_some();
        let pieces: Vec<Edit> = founds
            .drain(..)
            .map(|(found, new)| edit_for(text, found, new, true))
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
    }

    edits
}

/// `edits` sorted, without any that overlaps an earlier one.
fn non_overlapping(mut edits: Vec<Edit>, warnings: &mut Vec<String>) -> Vec<Edit> {
    edits.sort_by_key(|e| (e.range.start, e.range.end));
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
    kept
}

/// The edit for one URL; `escape` for an HTML attribute value.
fn edit_for(text: &str, found: &Found, new: New, escape: bool) -> Edit {
    let esc = |s: &str| {
        if escape {
            urls::escape_attr(s).into_owned()
        } else {
            s.to_owned()
        }
    };
    match new {
        New::Base { len, base }
            if starts_with_ignore_case(&text[found.range.clone()], &found.url[..len]) =>
        {
            Edit {
                range: found.range.start..found.range.start + len,
                text: esc(&base),
            }
        }
        // The base was written with character references: write the URL out whole.
        New::Base { len, base } => Edit {
            range: found.range.clone(),
            text: esc(&format!("{base}{}", &found.url[len..])),
        },
        New::Whole(url) => Edit {
            range: found.range.clone(),
            text: esc(&url),
        },
    }
}

/// What a found URL becomes under `target`; `None` to leave it.
fn new_url(
    found: &Found,
    settings: &Settings,
    target: &Target,
    warnings: &mut Vec<String>,
) -> Option<New> {
    let own = match &found.what {
        What::Upstream(upstream) if target.undo.is_none() => {
            return Some(New::Whole(urls::mirror_url(
                target,
                upstream,
                found.size,
                Density::One,
            )));
        }
        What::Upstream(_) => return None,
        What::Own(own) => own,
    };
    let under_from = target
        .from_base
        .as_deref()
        .map(|from| same_base(&own.base, from));
    if under_from == Some(false) {
        return None;
    }
    let Some(to) = target.undo else {
        // A plain rewrite leaves imgmirror URLs alone (that is what makes it idempotent);
        // `--from-base` moves the ones under the old base.
        under_from?;
        return Some(New::Base {
            len: own.base.len(),
            base: target.base.trim_end_matches('/').to_owned(),
        });
    };
    let upstream = upstream_of(own, target).or_else(|| {
        warnings.push(format!(
            "line {}: {} left as is: no mirrored upstream is known for it (undo needs the store that pinned it)",
            found.line, found.url
        ));
        None
    })?;
    Some(New::Whole(match to {
        UndoTo::Worker => urls::worker_url(settings, &upstream),
        UndoTo::Upstream => upstream,
    }))
}

fn upstream_of(own: &Recognised, target: &Target) -> Option<String> {
    match &own.kind {
        RecognisedKind::Proxy { upstream } => Some(upstream.clone()),
        RecognisedKind::Permalink { hash, .. } => target.permalinks.get(&hash.to_hex()).cloned(),
    }
}

/// Bases compare as URLs do: scheme and host case-insensitively, a trailing slash aside.
fn same_base(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// `text[range]` with sorted, non-overlapping `edits` (absolute ranges inside it) applied.
pub(crate) fn splice(text: &str, range: Range<usize>, edits: &[Edit]) -> String {
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
