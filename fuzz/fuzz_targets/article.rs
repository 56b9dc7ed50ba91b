//! The article front end on arbitrary posts: front matter, HTML and Markdown scanning
//! (`extract`, `references`) and the rewrite (forward, `--from-base`, `--undo`). Besides
//! "never panics" it checks two promises of the rewrite: a post with nothing rewritten is
//! returned byte for byte, and rewriting a rewritten post changes nothing more.
//!
//! Input: byte 0 picks Markdown or HTML and the settings; the rest is the post (UTF-8).
//! The checks are `imgmirror_fuzz::article` (fuzz/src/lib.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| imgmirror_fuzz::article(data));
