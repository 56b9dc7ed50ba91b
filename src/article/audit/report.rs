//! What an audit found: one [`ImageAudit`] per distinct image (with the posts that use it),
//! one [`PostAudit`] per post, and the whole [`AuditReport`] as a terminal table with a
//! summary line, JSON, or a self-contained HTML page. Plain data and formatting.

use std::fmt::Write as _;

use serde::Serialize;

use crate::article::Named;
use crate::article::urls::escape_attr;
use crate::store::UrlEntry;
use crate::upstream::{Checked, UpstreamError, Validators};

/// What the upstream said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamState {
    /// No upstream URL is known (a permalink whose URL the store no longer names).
    Unknown,
    /// It answered that the mirrored image is current (304, or the same validators).
    Unchanged,
    /// It answers with something other than the mirrored image.
    Changed,
    /// It answers; there was nothing mirrored (or no validator) to compare with.
    Answers,
    /// 404 or 410.
    Gone,
    /// Any other failure: another status, a timeout, a refused address, no connection.
    Failing,
}

impl UpstreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamState::Unknown => "unknown",
            UpstreamState::Unchanged => "unchanged",
            UpstreamState::Changed => "changed",
            UpstreamState::Answers => "answers",
            UpstreamState::Gone => "gone",
            UpstreamState::Failing => "failing",
        }
    }

    pub fn reachable(self) -> bool {
        matches!(
            self,
            UpstreamState::Unchanged | UpstreamState::Changed | UpstreamState::Answers
        )
    }
}

/// What an image's state means for the posts that show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Mirrored, and the upstream still answers.
    Ok,
    /// Mirrored, and the upstream is gone or failing: only the mirror has it now.
    MirrorOnly,
    /// Not mirrored; the upstream answers (a prefetch would secure it).
    UpstreamOnly,
    /// Neither mirrored nor reachable: the image is lost to the post.
    Lost,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::MirrorOnly => "mirror-only",
            Verdict::UpstreamOnly => "upstream-only",
            Verdict::Lost => "lost",
        }
    }

    pub(super) fn of(image: &ImageAudit) -> Verdict {
        match (image.mirrored, image.upstream_state.reachable()) {
            (true, true) => Verdict::Ok,
            (true, false) => Verdict::MirrorOnly,
            (false, true) => Verdict::UpstreamOnly,
            (false, false) => Verdict::Lost,
        }
    }
}

/// One distinct image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageAudit {
    /// The upstream URL, when the post or the store names one.
    pub upstream: Option<String>,
    /// The mirrored object, when there is one.
    pub sha256: Option<String>,
    pub mirrored: bool,
    /// Articles the mirror has it pinned to.
    pub pinned_by: Vec<String>,
    pub media_type: Option<String>,
    pub bytes: Option<u64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub upstream_state: UpstreamState,
    /// The upstream's HTTP status, when it answered one.
    pub upstream_status: Option<u16>,
    /// Why the upstream (or the store) failed, when it did.
    pub error: Option<String>,
    pub verdict: Verdict,
    /// Posts that show it.
    pub posts: Vec<String>,
    /// A data URI of a small rendition, for the HTML page only.
    #[serde(skip)]
    pub thumbnail: Option<String>,
    #[serde(skip)]
    pub(super) validators: Option<Validators>,
}

impl ImageAudit {
    pub(super) fn new(named: &Named) -> ImageAudit {
        let (upstream, sha256) = match named {
            Named::Upstream(url) => (Some(url.clone()), None),
            Named::Hash(hex) => (None, Some(hex.clone())),
        };
        ImageAudit {
            upstream,
            sha256,
            mirrored: false,
            pinned_by: Vec::new(),
            media_type: None,
            bytes: None,
            width: None,
            height: None,
            upstream_state: UpstreamState::Unknown,
            upstream_status: None,
            error: None,
            verdict: Verdict::Lost,
            posts: Vec::new(),
            thumbnail: None,
            validators: None,
        }
    }

    /// What the mirror's entry says.
    pub(super) fn record(&mut self, entry: &UrlEntry) {
        self.mirrored = true;
        self.upstream.get_or_insert_with(|| entry.url.clone());
        self.sha256 = Some(entry.sha256.clone());
        self.pinned_by.clone_from(&entry.pinned_by);
        self.media_type = Some(entry.media_type.clone());
        self.bytes = Some(entry.bytes);
        self.width = Some(entry.width);
        self.height = Some(entry.height);
        self.validators = Some(entry.validators.clone());
    }

    /// What the upstream said to the check.
    pub(super) fn apply_check(&mut self, checked: Result<Checked, UpstreamError>) {
        match checked {
            Ok(Checked::NotModified) => {
                self.upstream_state = UpstreamState::Unchanged;
                self.upstream_status = Some(304);
            }
            Ok(Checked::Answered {
                status,
                validators,
                content_length,
                ..
            }) => {
                self.upstream_status = Some(status);
                self.upstream_state = match (&self.validators, self.mirrored) {
                    (Some(stored), true) => {
                        compare(stored, &validators, self.bytes, content_length)
                    }
                    _ => UpstreamState::Answers,
                };
            }
            Err(UpstreamError::NotFound { status, .. }) => {
                self.upstream_state = UpstreamState::Gone;
                self.upstream_status = Some(status);
            }
            Err(e) => {
                self.upstream_state = UpstreamState::Failing;
                if let UpstreamError::Status { status, .. } = &e {
                    self.upstream_status = Some(*status);
                }
                self.error = Some(e.to_string());
            }
        }
    }

    /// How the image is named in the table: its upstream, else its permalink.
    pub fn label(&self) -> String {
        match (&self.upstream, &self.sha256) {
            (Some(url), _) => url.clone(),
            (None, Some(sha)) => format!("/m/{sha}"),
            (None, None) => "?".into(),
        }
    }

    fn mirror_cell(&self) -> &'static str {
        match (self.mirrored, self.pinned_by.is_empty()) {
            (true, false) => "pinned",
            (true, true) => "mirrored",
            (false, _) => "no",
        }
    }

    fn upstream_cell(&self) -> String {
        match self.upstream_status {
            Some(status) => format!("{status} {}", self.upstream_state.as_str()),
            None => self.upstream_state.as_str().to_owned(),
        }
    }
}

/// A 200 to a conditional request does not always mean "changed": servers that ignore
/// conditionals send the same validators back. Compare them, then the length.
fn compare(
    stored: &Validators,
    now: &Validators,
    bytes: Option<u64>,
    length: Option<u64>,
) -> UpstreamState {
    let same = |a: &Option<String>, b: &Option<String>| match (a, b) {
        (Some(a), Some(b)) => Some(a == b),
        _ => None,
    };
    let verdict = same(&stored.etag, &now.etag)
        .or_else(|| same(&stored.last_modified, &now.last_modified))
        .or_else(|| Some(bytes? == length?));
    match verdict {
        Some(true) => UpstreamState::Unchanged,
        Some(false) => UpstreamState::Changed,
        None => UpstreamState::Answers,
    }
}

/// One post.
#[derive(Debug, Clone, Serialize)]
pub struct PostAudit {
    pub path: String,
    /// Indexes into [`AuditReport::images`].
    pub images: Vec<usize>,
    /// References that still go through a worker (or, with `--all-http`, hotlink the
    /// upstream): not rewritten yet.
    pub via_worker: usize,
}

/// The whole audit.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditReport {
    pub posts: Vec<PostAudit>,
    pub images: Vec<ImageAudit>,
    /// Posts that could not be read, with why.
    pub errors: Vec<String>,
    pub ms: u64,
}

impl AuditReport {
    /// Whether an image is lost (neither mirrored nor reachable) or a post unreadable,
    /// which is what the exit status reports.
    pub fn any_lost(&self) -> bool {
        !self.errors.is_empty() || self.count(Verdict::Lost) > 0
    }

    pub fn count(&self, verdict: Verdict) -> usize {
        self.images.iter().filter(|i| i.verdict == verdict).count()
    }

    /// Posts with at least one image only the mirror still has.
    pub fn depending_on_mirror(&self) -> Vec<&PostAudit> {
        self.posts
            .iter()
            .filter(|p| {
                p.images
                    .iter()
                    .any(|&i| self.images[i].verdict == Verdict::MirrorOnly)
            })
            .collect()
    }

    /// `20 images in 1 post: 0 ok, 20 mirror-only, 0 upstream-only, 0 lost; 1 post depends on the mirror alone`.
    pub fn summary(&self) -> String {
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        let depending = self.depending_on_mirror().len();
        format!(
            "{} in {}: {} ok, {} mirror-only, {} upstream-only, {} lost; {} on the mirror alone",
            plural(self.images.len(), "image"),
            plural(self.posts.len(), "post"),
            self.count(Verdict::Ok),
            self.count(Verdict::MirrorOnly),
            self.count(Verdict::UpstreamOnly),
            self.count(Verdict::Lost),
            if depending == 1 {
                "1 post depends".to_owned()
            } else {
                format!("{depending} posts depend")
            },
        )
    }

    /// The terminal report: one row per image, one line per post, the summary line.
    pub fn table(&self) -> String {
        let mut rows: Vec<[String; 5]> =
            vec![["IMAGE", "MIRROR", "UPSTREAM", "VERDICT", "POSTS"].map(str::to_owned)];
        for image in &self.images {
            rows.push([
                image.label(),
                image.mirror_cell().to_owned(),
                image.upstream_cell(),
                image.verdict.as_str().to_owned(),
                image.posts.len().to_string(),
            ]);
        }
        let mut widths = [0usize; 5];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &rows {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(widths) {
                let _ = write!(line, "{cell:<width$}  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        for image in self.images.iter().filter(|i| i.error.is_some()) {
            let _ = writeln!(
                out,
                "{}: {}",
                image.label(),
                image.error.as_deref().unwrap_or("")
            );
        }
        for post in &self.posts {
            let _ = writeln!(out, "{}", self.post_line(post));
        }
        for error in &self.errors {
            let _ = writeln!(out, "failed: {error}");
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    fn post_line(&self, post: &PostAudit) -> String {
        let count = |v| {
            post.images
                .iter()
                .filter(|&&i| self.images[i].verdict == v)
                .count()
        };
        let mut line = format!(
            "{}: {} images: {} ok, {} mirror-only, {} upstream-only, {} lost",
            post.path,
            post.images.len(),
            count(Verdict::Ok),
            count(Verdict::MirrorOnly),
            count(Verdict::UpstreamOnly),
            count(Verdict::Lost)
        );
        if post.via_worker > 0 {
            let _ = write!(line, "; {} references not rewritten yet", post.via_worker);
        }
        if count(Verdict::MirrorOnly) > 0 {
            line.push_str("; depends on the mirror alone");
        }
        line
    }

    /// A self-contained page: the summary, then each post with its images as thumbnails —
    /// embedded data URIs, or with `base` the mirror's own URLs — and the status of each.
    pub fn html(&self, base: Option<&str>) -> String {
        let mut out = String::from(concat!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
            "<title>imgmirror audit</title><style>",
            "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}",
            "table{border-collapse:collapse;width:100%;margin-bottom:2em}",
            "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:middle}",
            "td.u{word-break:break-all;font-family:monospace;font-size:12px}",
            "img{max-width:160px;max-height:120px;display:block;background:#eee}",
            ".ok{color:#176f2c}.mirror-only{color:#a15c00;font-weight:bold}",
            ".upstream-only{color:#2450a0}.lost{color:#b00020;font-weight:bold}",
            "</style></head><body>\n<h1>imgmirror audit</h1>\n"
        ));
        let _ = writeln!(out, "<p>{}</p>", escape_attr(&self.summary()));
        for error in &self.errors {
            let _ = writeln!(out, "<p class=\"lost\">failed: {}</p>", escape_attr(error));
        }
        for post in &self.posts {
            let _ = writeln!(
                out,
                "<h2>{}</h2>\n<p>{}</p>\n<table><tr><th>image</th><th>URL</th><th>mirror</th><th>upstream</th><th>verdict</th></tr>",
                escape_attr(&post.path),
                escape_attr(&self.post_line(post))
            );
            for &i in &post.images {
                let image = &self.images[i];
                let thumb = match (base, &image.sha256, &image.thumbnail) {
                    (Some(base), Some(sha), _) if image.mirrored => Some(format!(
                        "{}/m/{sha}?w=160&h=120",
                        base.trim_end_matches('/')
                    )),
                    (_, _, Some(data)) => Some(data.clone()),
                    _ => None,
                };
                let cell = thumb.map_or_else(
                    || "-".to_owned(),
                    |src| {
                        format!(
                            "<img src=\"{}\" alt=\"\" loading=\"lazy\">",
                            escape_attr(&src)
                        )
                    },
                );
                let _ = writeln!(
                    out,
                    "<tr><td>{cell}</td><td class=\"u\">{}</td><td>{}</td><td>{}</td><td class=\"{v}\">{v}</td></tr>",
                    escape_attr(&image.label()),
                    image.mirror_cell(),
                    escape_attr(&image.upstream_cell()),
                    v = image.verdict.as_str(),
                );
            }
            out.push_str("</table>\n");
        }
        out.push_str("</body></html>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_changes() {
        let mut image = ImageAudit::new(&Named::Upstream("http://a/x.jpg".into()));
        image.apply_check(Err(UpstreamError::Transport {
            url: "http://a/x.jpg".into(),
            message: "connection refused".into(),
        }));
        image.verdict = Verdict::of(&image);
        assert_eq!(
            (image.upstream_state, image.verdict),
            (UpstreamState::Failing, Verdict::Lost)
        );
        image.mirrored = true;
        assert_eq!(Verdict::of(&image), Verdict::MirrorOnly);

        let stored = Validators {
            etag: Some("\"a\"".into()),
            ..Validators::default()
        };
        let changed = Validators {
            etag: Some("\"b\"".into()),
            ..Validators::default()
        };
        assert_eq!(
            compare(&stored, &stored, None, None),
            UpstreamState::Unchanged
        );
        assert_eq!(
            compare(&stored, &changed, None, None),
            UpstreamState::Changed
        );
        let none = Validators::default();
        assert_eq!(
            compare(&none, &none, Some(3), Some(4)),
            UpstreamState::Changed
        );
        assert_eq!(compare(&none, &none, Some(3), None), UpstreamState::Answers);
    }

    #[test]
    fn summary_and_html_escape() {
        let mut image = ImageAudit::new(&Named::Upstream("http://a/<x>.jpg".into()));
        image.mirrored = true;
        image.upstream_state = UpstreamState::Gone;
        image.verdict = Verdict::of(&image);
        image.posts.push("p.md".into());
        let report = AuditReport {
            posts: vec![PostAudit {
                path: "p.md".into(),
                images: vec![0],
                via_worker: 0,
            }],
            images: vec![image],
            errors: Vec::new(),
            ms: 1,
        };
        assert_eq!(
            report.summary(),
            "1 image in 1 post: 0 ok, 1 mirror-only, 0 upstream-only, 0 lost; 1 post depends on the mirror alone"
        );
        assert!(!report.any_lost());
        let html = report.html(None);
        assert!(html.contains("http://a/&lt;x&gt;.jpg"), "{html}");
        assert!(!html.contains("<x>"));
    }
}
