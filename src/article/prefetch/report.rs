//! What a prefetch did: one [`ImageReport`] per upstream image (the original, its pins and
//! each variant warmed), the whole [`PrefetchReport`] as a table or JSON, and the NDJSON
//! [`Event`]s of `POST /prefetch`. Plain data: nothing here does any work.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// What happened to an original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Fetched from the upstream by this prefetch.
    Mirrored,
    /// Already mirrored; the upstream was not asked.
    Cached,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Mirrored => "mirrored",
            Status::Cached => "cached",
            Status::Failed => "failed",
        }
    }
}

/// What happened to a variant request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VariantStatus {
    /// Served (rendered now, or already rendered).
    Ok,
    Failed,
}

/// One variant request of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantReport {
    /// Path and query, e.g. `/?url=…&w=480&h=319&dpr=2`.
    pub path: String,
    pub accept: String,
    pub status: VariantStatus,
    pub http_status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Where the bytes came from: `render` when this request rendered it, else `memory`
    /// or `disk` (the same names as the `X-Imgmirror-Source` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl VariantReport {
    /// A variant that has not failed (yet).
    pub(super) fn new(path: &str, accept: &str) -> VariantReport {
        VariantReport {
            path: path.to_owned(),
            accept: accept.to_owned(),
            status: VariantStatus::Ok,
            http_status: 200,
            code: None,
            content_type: None,
            bytes: None,
            source: None,
        }
    }

    /// Records why the variant failed, as a reader would see it.
    pub(super) fn fail(&mut self, error: &Error) {
        let (status, code) = error.status_and_code();
        self.status = VariantStatus::Failed;
        self.http_status = status.as_u16();
        self.code = Some(code.to_owned());
    }
}

/// The outcome for one upstream image: one row of the table, one NDJSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageReport {
    /// The upstream URL as the post spells it.
    pub url: String,
    pub status: Status,
    /// The HTTP status a reader would get for the original (200, or the error's).
    pub http_status: u16,
    /// The stable error code (`upstream-not-found`, …) when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Extension of the original's type (`jpg`, `png`, …), for `/m/<sha256>.<ext>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Tries the original took.
    pub attempts: u32,
    /// Milliseconds for the original and its variants.
    pub ms: u64,
    /// The inline preview (`data:image/png;base64,…`, a decoded ThumbHash) that
    /// `rewrite --placeholders` writes, when it could be made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// Articles the image is pinned to.
    #[serde(default)]
    pub pinned_by: Vec<String>,
    #[serde(default)]
    pub variants: Vec<VariantReport>,
}

impl ImageReport {
    pub(super) fn new(upstream: &str) -> ImageReport {
        ImageReport {
            url: upstream.to_owned(),
            status: Status::Failed,
            http_status: 0,
            code: None,
            error: None,
            sha256: None,
            ext: None,
            media_type: None,
            bytes: None,
            width: None,
            height: None,
            attempts: 0,
            ms: 0,
            placeholder: None,
            pinned_by: Vec::new(),
            variants: Vec::new(),
        }
    }

    /// Records why the original (or a pin) failed, as a reader would see it.
    pub(super) fn fail(&mut self, error: &Error) {
        let (status, code) = error.status_and_code();
        self.status = Status::Failed;
        self.http_status = status.as_u16();
        self.code = Some(code.to_owned());
        self.error = Some(error.to_string());
    }

    /// Whether the original or a variant failed.
    pub fn failed(&self) -> bool {
        self.status == Status::Failed
            || self
                .variants
                .iter()
                .any(|v| v.status == VariantStatus::Failed)
    }

    /// `4 ok`, `1 failed of 4`, `-` for none: the table's variants column.
    pub fn variants_summary(&self) -> String {
        let total = self.variants.len();
        if total == 0 {
            return "-".into();
        }
        let count = |s| self.variants.iter().filter(|v| v.status == s).count();
        let failed = count(VariantStatus::Failed);
        if failed > 0 {
            return format!("{failed} failed of {total}");
        }
        format!("{} ok", count(VariantStatus::Ok))
    }
}

/// The outcome of a whole prefetch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefetchReport {
    /// One entry per distinct upstream image, in plan (document) order.
    pub images: Vec<ImageReport>,
    /// Wall-clock milliseconds for the whole run.
    pub ms: u64,
    /// Inputs that could not be prefetched at all (an unreadable post, a refused request),
    /// with why.
    #[serde(default)]
    pub errors: Vec<String>,
}

impl PrefetchReport {
    /// Whether any image or input failed, which is what the exit status reports.
    pub fn any_failed(&self) -> bool {
        !self.errors.is_empty() || self.images.iter().any(ImageReport::failed)
    }

    pub fn failed(&self) -> usize {
        self.images.iter().filter(|i| i.failed()).count()
    }

    /// Upstream URL → (sha256, extension) of every mirrored image: `Target::pins`.
    pub fn pins(&self) -> HashMap<String, (String, String)> {
        self.images
            .iter()
            .filter(|i| i.status != Status::Failed)
            .filter_map(|i| Some((i.url.clone(), (i.sha256.clone()?, i.ext.clone()?))))
            .collect()
    }

    /// Upstream URL and sha256 hex → the placeholder of every mirrored image that has one:
    /// `Target::placeholders`.
    pub fn placeholders(&self) -> HashMap<String, crate::article::Placeholder> {
        let mut out = HashMap::new();
        for image in self.images.iter().filter(|i| i.status != Status::Failed) {
            let (Some(data_uri), Some(width), Some(height)) =
                (&image.placeholder, image.width, image.height)
            else {
                continue;
            };
            let placeholder = crate::article::Placeholder {
                width,
                height,
                data_uri: data_uri.clone(),
            };
            if let Some(sha) = &image.sha256 {
                out.insert(sha.clone(), placeholder.clone());
            }
            out.insert(image.url.clone(), placeholder);
        }
        out
    }

    /// The human report: a table (URL, status, sha256, bytes, width×height, time,
    /// variants), the failures with their reasons, and a total line.
    pub fn table(&self) -> String {
        let header = [
            "URL", "STATUS", "SHA256", "BYTES", "W×H", "TIME", "VARIANTS",
        ];
        let mut rows: Vec<[String; 7]> = vec![header.map(str::to_owned)];
        for image in &self.images {
            let status = match &image.code {
                Some(code) => format!("{} {code}", image.http_status),
                None => image.status.as_str().to_owned(),
            };
            let size = match (image.width, image.height) {
                (Some(w), Some(h)) => format!("{w}×{h}"),
                _ => "-".into(),
            };
            rows.push([
                image.url.clone(),
                status,
                image.sha256.clone().unwrap_or_else(|| "-".into()),
                image.bytes.map_or_else(|| "-".into(), |b| b.to_string()),
                size,
                format!("{} ms", image.ms),
                image.variants_summary(),
            ]);
        }
        let mut widths = [0usize; 7];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &rows {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                // Numbers read best right-aligned.
                if i == 3 || i == 5 {
                    let _ = write!(line, "{cell:>width$}  ");
                } else {
                    let _ = write!(line, "{cell:<width$}  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        for image in self.images.iter().filter(|i| i.failed()) {
            if let Some(error) = &image.error {
                let _ = writeln!(out, "failed: {}: {error}", image.url);
            }
            for variant in &image.variants {
                if variant.status == VariantStatus::Failed {
                    let _ = writeln!(
                        out,
                        "failed: {} (Accept: {}): {} {}",
                        variant.path,
                        variant.accept,
                        variant.http_status,
                        variant.code.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        for error in &self.errors {
            let _ = writeln!(out, "failed: {error}");
        }
        let count = |s| self.images.iter().filter(|i| i.status == s).count();
        let _ = writeln!(
            out,
            "{} images: {} mirrored, {} cached, {} failed in {:.1} s",
            self.images.len(),
            count(Status::Mirrored),
            count(Status::Cached),
            self.failed(),
            self.ms as f64 / 1000.0
        );
        out
    }
}

/// One line of `POST /prefetch`'s NDJSON answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// An image finished (in completion order).
    Image(Box<ImageReport>),
    /// The last line: totals.
    Done {
        images: usize,
        failed: usize,
        ms: u64,
    },
}

impl Event {
    /// The event as one NDJSON line, newline included.
    pub fn to_line(&self) -> String {
        // Serialising these plain structs cannot fail.
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::MirrorError;

    #[test]
    fn report_failure_and_pins() {
        let mut ok = ImageReport::new("http://a/1.jpg");
        ok.status = Status::Cached;
        ok.sha256 = Some("ab".repeat(32));
        ok.ext = Some("jpg".into());
        ok.variants
            .push(VariantReport::new("/?url=x&w=1&h=1", "image/*"));
        let mut bad = ImageReport::new("http://a/2.jpg");
        bad.fail(&Error::Mirror(MirrorError::UnknownObject("x".into())));
        let report = PrefetchReport {
            images: vec![ok.clone(), bad],
            ms: 5,
            errors: Vec::new(),
        };
        assert!(!ok.failed());
        assert!(report.any_failed());
        assert_eq!(report.failed(), 1);
        assert_eq!(
            report.pins()["http://a/1.jpg"],
            ("ab".repeat(32), "jpg".to_string())
        );
        let table = report.table();
        assert!(table.contains("404 not-found"), "{table}");
        assert!(table.contains("1 ok"), "{table}");
        assert!(
            table.ends_with("2 images: 0 mirrored, 1 cached, 1 failed in 0.0 s\n"),
            "{table}"
        );
        let line = Event::Image(Box::new(ok.clone())).to_line();
        assert_eq!(
            serde_json::from_str::<Event>(&line).unwrap(),
            Event::Image(Box::new(ok))
        );
    }
}
