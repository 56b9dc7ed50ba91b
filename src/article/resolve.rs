//! What a rewrite needs from the local store, read without fetching anything: the preview
//! and size of each image for `--placeholders`, and the upstream behind each `/m/<sha256>`
//! permalink for `--undo`. The rewrite itself stays pure: these maps are handed to it in
//! [`super::Target`].

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use super::{ArticleError, Named, Placeholder, Settings, find_posts, references};
use crate::error::Chain;
use crate::hash::ContentHash;
use crate::mirror::{Mirror, MirrorError};
use crate::url_grammar;

/// Every image the posts under `paths` name, once each, in first-seen order; posts that
/// cannot be read are skipped here (the rewrite reports them).
pub fn named_images(paths: &[PathBuf], settings: &Settings) -> Vec<Named> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (path, kind) in find_posts(paths).into_iter().flatten() {
        let Ok(text) = read(&path) else { continue };
        let Ok(refs) = references(&text, kind, settings) else {
            continue;
        };
        for r in refs {
            if seen.insert(r.named.clone()) {
                out.push(r.named);
            }
        }
    }
    out
}

/// The placeholders of the mirrored ones among `images`, keyed by upstream URL and by
/// sha256 hex (the keys [`super::Target::placeholders`] is read with). Images not mirrored
/// are left out, with a warning each.
pub async fn placeholders(
    mirror: &Mirror,
    images: &[Named],
) -> (HashMap<String, Placeholder>, Vec<String>) {
    let mut out = HashMap::new();
    let mut warnings = Vec::new();
    for named in images {
        match placeholder_of(mirror, named).await {
            Ok(Some((sha256, placeholder))) => {
                if let Named::Upstream(upstream) = named {
                    out.insert(upstream.clone(), placeholder.clone());
                }
                out.insert(sha256, placeholder);
            }
            Ok(None) => warnings.push(format!("{}: not mirrored, no placeholder", show(named))),
            Err(e) => warnings.push(format!("{}: no placeholder: {}", show(named), Chain(&e))),
        }
    }
    (out, warnings)
}

async fn placeholder_of(
    mirror: &Mirror,
    named: &Named,
) -> Result<Option<(String, Placeholder)>, MirrorError> {
    let hash = match named {
        Named::Hash(hex) => ContentHash::parse(hex),
        Named::Upstream(upstream) => {
            let Ok(url) = url_grammar::parse_upstream(upstream) else {
                return Ok(None);
            };
            let Some(entry) = mirror.lookup(&url).await? else {
                return Ok(None);
            };
            ContentHash::parse(&entry.sha256)
        }
    };
    let Some(hash) = hash else { return Ok(None) };
    let original = match mirror.original_by_hash(&hash).await {
        Ok(original) => original,
        Err(MirrorError::UnknownObject(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let p = mirror.placeholder(&original.blob).await?;
    Ok(Some((
        hash.to_hex(),
        Placeholder {
            width: p.width,
            height: p.height,
            data_uri: p.data_uri,
        },
    )))
}

/// sha256 hex → the upstream URL mirrored as it, for the permalinks among `images`, and a
/// warning for each object several URLs were mirrored as: a permalink does not say which of
/// them the post had, so the first in URL order that a post pinned is written back (all of
/// them serve the same bytes).
pub async fn permalinks(
    mirror: &Mirror,
    images: &[Named],
) -> Result<(HashMap<String, String>, Vec<String>), MirrorError> {
    let wanted: HashSet<String> = images
        .iter()
        .filter_map(|n| match n {
            Named::Hash(hex) => Some(hex.clone()),
            Named::Upstream(_) => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok((HashMap::new(), Vec::new()));
    }
    let mut entries = mirror.urls_naming(wanted).await?;
    entries.sort_by(|a, b| (a.pinned_by.is_empty(), &a.url).cmp(&(b.pinned_by.is_empty(), &b.url)));
    let mut out: HashMap<String, String> = HashMap::new();
    let mut shared: HashMap<String, usize> = HashMap::new();
    for entry in entries {
        *shared.entry(entry.sha256.clone()).or_default() += 1;
        out.entry(entry.sha256).or_insert(entry.url);
    }
    let mut warnings: Vec<String> = shared
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(sha, n)| {
            format!(
                "/m/{sha} was mirrored from {n} URLs; it is undone to {}, which serves the same bytes",
                out[&sha]
            )
        })
        .collect();
    warnings.sort();
    Ok((out, warnings))
}

fn show(named: &Named) -> &str {
    match named {
        Named::Upstream(url) => url,
        Named::Hash(hex) => hex,
    }
}

pub(crate) fn read(path: &PathBuf) -> Result<String, ArticleError> {
    let bytes = std::fs::read(path).map_err(|source| ArticleError::Read {
        path: path.clone(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| ArticleError::NotUtf8 { path: path.clone() })
}
