//! The plan of a prefetch: one [`Job`] per distinct upstream URL, in first-seen order, with
//! the articles that pin it and the variant URLs the rewritten posts will request.

use std::collections::HashMap;

use crate::article::urls::{Class, Density, classify, mirror_url};
use crate::article::{ImageRef, Settings, Target};
use crate::url_grammar;

/// One upstream image to prefetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The upstream URL as the post spells it (the key `Target::pins` uses).
    pub upstream: String,
    /// Path and query of each variant the rewritten posts request, e.g.
    /// `/?url=…&w=480&h=319` and `…&dpr=2`; each is warmed with every
    /// [`super::WARM_ACCEPTS`].
    pub variants: Vec<String>,
    /// Articles that reference the image; it is pinned to each once mirrored.
    pub articles: Vec<String>,
}

/// Jobs in first-seen order, one per distinct upstream URL.
#[derive(Debug, Default)]
pub struct Plan {
    jobs: Vec<Job>,
    by_url: HashMap<String, usize>,
}

impl Plan {
    /// Adds the images of one post; `article` (its id) pins them.
    pub fn add_refs(&mut self, refs: &[ImageRef], article: Option<&str>) {
        let target = Target::default();
        for image in refs {
            let job = self.job(&image.upstream, article);
            let Some(size) = image.size else { continue };
            // Exactly the URLs `rewrite` writes for this image (with an empty base), so the
            // warmed variants are the ones readers will ask for.
            let mut wanted = vec![mirror_url(
                &target,
                &image.upstream,
                Some(size),
                Density::One,
            )];
            if image.also_2x {
                wanted.push(mirror_url(
                    &target,
                    &image.upstream,
                    Some(size),
                    Density::Two,
                ));
            }
            for path in wanted {
                if !job.variants.contains(&path) {
                    job.variants.push(path);
                }
            }
        }
    }

    /// Adds one image by URL: an upstream URL or a worker URL (whose upstream is taken).
    pub fn add_url(&mut self, url: &str, settings: &Settings, article: Option<&str>) {
        let upstream = image_upstream(url, settings).unwrap_or_else(|| url.to_owned());
        self.job(&upstream, article);
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn into_jobs(self) -> Vec<Job> {
        self.jobs
    }

    fn job(&mut self, upstream: &str, article: Option<&str>) -> &mut Job {
        let index = *self.by_url.entry(upstream.to_owned()).or_insert_with(|| {
            self.jobs.push(Job {
                upstream: upstream.to_owned(),
                variants: Vec::new(),
                articles: Vec::new(),
            });
            self.jobs.len() - 1
        });
        let job = &mut self.jobs[index];
        if let Some(article) = article
            && !job.articles.iter().any(|a| a == article)
        {
            job.articles.push(article.to_owned());
        }
        job
    }
}

/// The upstream of an image URL given on its own: a worker URL's upstream, or the URL itself
/// when it is an absolute http(s) URL; `None` otherwise.
pub fn image_upstream(url: &str, settings: &Settings) -> Option<String> {
    match classify(url, settings, &[], false) {
        Class::Rewrite(upstream) => Some(upstream),
        Class::Invalid(_) => None,
        // An imgmirror URL given on its own: the upstream it names, if it names one.
        Class::Own(own) => match own.kind {
            url_grammar::RecognisedKind::Proxy { upstream } => Some(upstream),
            url_grammar::RecognisedKind::Permalink { .. } => None,
        },
        Class::Other => url_grammar::parse_upstream(url)
            .ok()
            .map(|_| url.trim().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::article::{Kind, extract};

    #[test]
    fn plan_merges_images_and_lists_the_variants_rewrite_writes() {
        let post = concat!(
            "---\nheadimg: https://cors.zfour.workers.dev/?http://a.example/1.jpg\n---\n",
            "<img src=\"https://cors.zfour.workers.dev/?http://a.example/1.jpg\" data-size=\"480,319\">\n",
            "<img src=\"https://cors.zfour.workers.dev/?http://a.example/2.jpg?v=1&amp;x=2\" data-size=\"10,20\">\n",
            "<img src=\"https://cors.zfour.workers.dev/?http://a.example/1.jpg\" data-size=\"480,319\">\n",
        );
        let refs = extract(post, Kind::Markdown, &Settings::default()).unwrap();
        let mut plan = Plan::default();
        plan.add_refs(&refs, Some("post.md"));
        plan.add_refs(&refs, Some("other.md"));
        let jobs = plan.into_jobs();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].upstream, "http://a.example/1.jpg");
        assert_eq!(jobs[0].articles, ["post.md", "other.md"]);
        assert_eq!(
            jobs[0].variants,
            [
                "/?url=http%3A%2F%2Fa.example%2F1.jpg&w=480&h=319",
                "/?url=http%3A%2F%2Fa.example%2F1.jpg&w=480&h=319&dpr=2",
            ]
        );
        assert_eq!(jobs[1].upstream, "http://a.example/2.jpg?v=1&x=2");
        assert_eq!(jobs[1].variants.len(), 2);
    }

    #[test]
    fn image_upstream_table() {
        let s = Settings::default();
        let cases = [
            (
                "https://cors.zfour.workers.dev/?http://a.example/x.jpg",
                Some("http://a.example/x.jpg"),
            ),
            (
                "https://a.example/x.jpg?v=2",
                Some("https://a.example/x.jpg?v=2"),
            ),
            ("ftp://a.example/x.jpg", None),
            ("not a url", None),
            ("https://cors.zfour.workers.dev/?javascript:alert(1)", None),
        ];
        for (url, want) in cases {
            assert_eq!(image_upstream(url, &s).as_deref(), want, "{url}");
        }
    }
}
