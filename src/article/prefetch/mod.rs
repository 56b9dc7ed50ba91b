//! Prefetch: mirrors the images of posts before anyone reads them, pins them to the posts
//! that use them, and renders the variants the rewritten posts will ask for, so the first
//! reader never waits and a post outlives its upstream.
//!
//! - [`plan`]: posts or URLs → a [`Plan`], one [`Job`] per distinct upstream URL, built from
//!   [`super::extract`] (the same extraction `rewrite` uses) with the variant URLs `rewrite`
//!   writes, so what is warmed is exactly what the rewritten post requests.
//! - [`engine`]: [`run`] works through the jobs against the service layer
//!   ([`crate::mirror::Mirror`]): the original, the pins, each variant for each
//!   [`WARM_ACCEPTS`], with one bounded retry policy.
//! - [`report`]: what happened, as a table, JSON or NDJSON [`Event`]s.
//! - [`inputs`]: the command-line front: reads posts and URLs and runs them locally or
//!   through a running server's `POST /prefetch` (`super::remote`).
//!
//! Both `imgmirror prefetch` (local mode) and `POST /prefetch` run the one engine.

pub mod engine;
pub mod inputs;
pub mod plan;
pub mod report;

pub use engine::{Options, WARM_ACCEPT_WEBP, WARM_ACCEPTS, run, warm_accepts};
pub use inputs::{Via, prefetch_inputs};
pub use plan::{Job, Plan, image_upstream};
pub use report::{Event, ImageReport, PrefetchReport, Status, VariantReport, VariantStatus};
