//! `imgmirror sign`: prints a signed imgmirror URL for an upstream image (or a `/m/`
//! permalink), with the first of `security.signing_keys`. The URL is spelled by
//! [`imgmirror::url_grammar`] (as `rewrite` spells it), parsed back, and signed by
//! [`imgmirror::signing`], so what is signed is what the server will parse. Part of the
//! binary; `anyhow` is allowed here as in `main.rs`. The key is never printed.

use std::process::ExitCode;

use imgmirror::config::Config;
use imgmirror::hash::ContentHash;
use imgmirror::signing::Signer;
use imgmirror::url_grammar;

#[derive(clap::Args)]
pub(crate) struct SignArgs {
    #[command(flatten)]
    pub(crate) store: crate::StoreArgs,
    /// The upstream image URL (or the sha256 of a mirrored original, for a /m/ permalink)
    #[arg(value_name = "URL")]
    url: String,
    /// Width (CSS pixels)
    #[arg(long)]
    w: Option<u32>,
    /// Height (CSS pixels)
    #[arg(long)]
    h: Option<u32>,
    /// inside, cover, contain or fill
    #[arg(long)]
    fit: Option<String>,
    /// jpeg, png, webp, gif or auto
    #[arg(long)]
    format: Option<String>,
    /// The imgmirror server, e.g. https://img.example.com [default: none: print the path]
    #[arg(long, value_name = "URL")]
    base: Option<String>,
}

/// Prints the signed URL; exit status 2 (with a message) when there is no key or the URL
/// or an option is unusable.
pub(crate) fn sign_main(config: &Config, args: SignArgs) -> anyhow::Result<ExitCode> {
    let fail = |why: String| {
        eprintln!("error: {why}");
        Ok(ExitCode::from(2))
    };
    let Some(signer) = Signer::new(&config.security.signing_keys, &config.transform) else {
        return fail(
            "security.signing_keys is empty (set it in the config or \
             IMGMIRROR_SECURITY_SIGNING_KEYS): nothing to sign with"
                .into(),
        );
    };
    let base = args.base.clone().unwrap_or_default();
    if !base.is_empty()
        && let Err(e) = url_grammar::check_base(&base)
    {
        return fail(format!("--base: {e}"));
    }
    let mut options = Vec::new();
    for (name, value) in [
        ("w", args.w.map(|w| w.to_string())),
        ("h", args.h.map(|h| h.to_string())),
        ("fit", args.fit.clone()),
        ("format", args.format.clone()),
    ] {
        if let Some(value) = value {
            options.push((name, value));
        }
    }
    let written = match ContentHash::parse(&args.url) {
        Some(hash) => url_grammar::permalink_url(&base, &hash.to_hex(), "", &options),
        None => match url_grammar::parse_upstream(&args.url) {
            Ok(_) => url_grammar::proxy_url(&base, &args.url, &options),
            Err(e) => return fail(format!("{}: {e}", args.url)),
        },
    };
    let path_and_query = &written[base.trim_end_matches('/').len()..];
    let address = match url_grammar::parse_path_and_query(path_and_query) {
        Ok(address) => address,
        Err(e) => return fail(e.to_string()),
    };
    match signer.sign(&address) {
        Ok(sig) => {
            println!("{}", url_grammar::with_signature(written, &sig));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => fail(format!("bad option: {e}")),
    }
}
