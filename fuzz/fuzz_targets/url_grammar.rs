//! The request-URL grammar as the router meets it: any path-and-query → `Address` →
//! transform options (`Spec`), plus `recognise` (the rewriter's reading of URLs in posts)
//! and `check_base`. Beyond "never panics", it checks the round trip the rewriter and the
//! prefetcher rely on: what `proxy_url` writes for a parsed upstream parses back to it.
#![no_main]

use imgmirror::transform::{Settings, Spec};
use imgmirror::url_grammar::{self, Address};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let settings = Settings::default();
    if let Ok(address) = url_grammar::parse_path_and_query(input) {
        let pairs = address.options().iter().map(|(k, v)| (k.as_str(), v.as_str()));
        if let Ok(Some(spec)) = Spec::from_query(pairs, &settings) {
            let _ = spec.canonical();
            for format in [
                imgmirror::transform::OutputFormat::Jpeg,
                imgmirror::transform::OutputFormat::Png,
                imgmirror::transform::OutputFormat::Webp,
                imgmirror::transform::OutputFormat::Gif,
            ] {
                let _ = spec.canonical_for(format, &settings);
            }
        }
        if let Address::Proxy { upstream, options } = &address {
            let written: Vec<(&str, String)> =
                options.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            let again = url_grammar::proxy_url("", upstream.as_str(), &written);
            match url_grammar::parse_path_and_query(&again) {
                Ok(Address::Proxy {
                    upstream: u2,
                    options: o2,
                }) => {
                    assert_eq!(&u2, upstream, "{again}");
                    assert_eq!(&o2, options, "{again}");
                }
                other => panic!("{again:?} did not parse back: {other:?}"),
            }
        }
    }
    let (path, query) = match input.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (input, None),
    };
    let _ = url_grammar::parse(path, query);
    let _ = url_grammar::recognise(input);
    let _ = url_grammar::recognise(&format!("https://img.example.com{input}"));
    let _ = url_grammar::check_base(input);
});
