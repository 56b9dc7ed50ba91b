//! The image entry point as the mirror drives it: `verify` (what the fetcher checks before
//! storing), `probe` (header facts), `negotiate`, then `render` under the limits, and the
//! placeholder's `thumbnail_rgba`. Limits are the defaults scaled down so one input costs
//! milliseconds, not seconds; a render past the limits must be refused, never allocate
//! beyond them (libFuzzer's `-rss_limit_mb` catches that) and never panic.
//!
//! Input: byte 0 picks the options and the output format; the rest is the image.
//! The checks are `imgmirror_fuzz::image` (fuzz/src/lib.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| imgmirror_fuzz::image(data));
