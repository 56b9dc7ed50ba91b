//! The command-line front of prefetch: reads posts (files or folders, found as `rewrite`
//! finds them) and image URLs, and runs them through the engine in this process or through
//! a running server's `POST /prefetch`, merging the answers into one report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::engine::{Options, run};
use super::plan::Plan;
use super::report::{ImageReport, PrefetchReport};
use crate::article::remote::{Remote, RemoteBody};
use crate::article::{ArticleError, Settings, extract, find_posts};
use crate::error::Chain;
use crate::mirror::Mirror;

/// Where [`prefetch_inputs`] does the work.
pub enum Via<'a> {
    /// In this process, on a store opened here.
    Local(&'a Arc<Mirror>),
    /// Through a running server's `POST /prefetch`.
    Remote(&'a Remote),
}

/// The command-line prefetch: `inputs` are posts, folders of posts (found as `rewrite` finds
/// them) or image URLs (upstream or worker URLs). Locally all images go through one run
/// (shared images once, pinned to every post that uses them, a post's id being its
/// canonical path); remotely each post is posted with its id and the URLs as one list.
pub async fn prefetch_inputs(
    via: Via<'_>,
    inputs: &[String],
    settings: &Settings,
    options: &Options,
    mut on_image: impl FnMut(&ImageReport),
) -> PrefetchReport {
    let started = Instant::now();
    let mut errors = Vec::new();
    let mut urls = Vec::new();
    let mut paths = Vec::new();
    for input in inputs {
        if input.contains("://") || input.starts_with("//") {
            urls.push(input.clone());
        } else {
            paths.push(PathBuf::from(input));
        }
    }
    let mut posts = Vec::new();
    for found in find_posts(&paths) {
        let read = found.and_then(|(path, kind)| {
            let text = std::fs::read(&path).map_err(|source| ArticleError::Read {
                path: path.clone(),
                source,
            })?;
            let text = String::from_utf8(text)
                .map_err(|_| ArticleError::NotUtf8 { path: path.clone() })?;
            let refs = extract(&text, kind, settings).map_err(|e| ArticleError::Parse {
                path: path.clone(),
                source: Box::new(e),
            })?;
            let id = std::fs::canonicalize(&path)
                .unwrap_or_else(|_| path.clone())
                .display()
                .to_string();
            Ok((id, text, kind, refs))
        });
        match read {
            Ok(post) => posts.push(post),
            Err(e) => errors.push(Chain(&e).to_string()),
        }
    }
    let mut report = match via {
        Via::Local(mirror) => {
            let mut plan = Plan::default();
            for (id, _, _, refs) in &posts {
                plan.add_refs(refs, Some(id));
            }
            for url in &urls {
                plan.add_url(url, settings, None);
            }
            run(mirror, plan.into_jobs(), options, &mut on_image).await
        }
        Via::Remote(remote) => {
            let mut images: Vec<ImageReport> = Vec::new();
            let mut requests: Vec<(RemoteBody, Option<String>)> = posts
                .into_iter()
                .map(|(id, text, kind, _)| (RemoteBody::Article { text, kind }, Some(id)))
                .collect();
            if !urls.is_empty() {
                requests.push((RemoteBody::Urls(urls), None));
            }
            for (body, id) in requests {
                match remote.prefetch(body, id.as_deref(), &mut on_image).await {
                    Ok((got, _)) => {
                        for image in got {
                            // A shared image appears once, pinned to every post.
                            match images.iter_mut().find(|i| i.url == image.url) {
                                Some(seen) => seen.pinned_by.extend(image.pinned_by),
                                None => images.push(image),
                            }
                        }
                    }
                    Err(e) => errors.push(Chain(&e).to_string()),
                }
            }
            PrefetchReport {
                images,
                ms: 0,
                errors: Vec::new(),
            }
        }
    };
    report.errors.extend(errors);
    report.ms = millis(started);
    report
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
