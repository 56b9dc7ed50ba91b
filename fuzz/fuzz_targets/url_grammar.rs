//! The request-URL grammar as the router meets it: any path-and-query → `Address` →
//! transform options (`Spec`), plus `recognise` (the rewriter's reading of URLs in posts)
//! and `check_base`. Beyond "never panics", it checks the round trip the rewriter and the
//! prefetcher rely on: what `proxy_url` writes for a parsed upstream parses back to it.
//! The checks are `imgmirror_fuzz::url_grammar` (fuzz/src/lib.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| imgmirror_fuzz::url_grammar(data));
