//! The binary's article commands (`prefetch`, `rewrite`, `audit`): gather what each needs
//! (a local mirror or a running server, pins, placeholders), call the library, and print
//! its reports, with a progress bar on a terminal. Part of the `imgmirror` binary, not of
//! the library; `anyhow` is allowed here as in `main.rs`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use imgmirror::article::prefetch::{self, ImageReport, Options, PrefetchReport, Via};
use imgmirror::article::remote::Remote;
use imgmirror::article::{Mode, Named, Settings, Target, UndoTo, audit, resolve};
use imgmirror::config::Config;
use imgmirror::mirror::Mirror;

use crate::{AuditArgs, RemoteArgs, RewriteArgs, UndoArg, load_config};

pub(crate) fn rewrite_main(
    runtime: &tokio::runtime::Runtime,
    args: RewriteArgs,
) -> anyhow::Result<ExitCode> {
    let RewriteArgs {
        store,
        remote,
        base,
        from_base,
        undo,
        to,
        pin,
        placeholders,
        dry_run,
        diff,
        all_http,
        links,
        force,
        paths,
    } = args;
    for base in base.iter().chain(&from_base) {
        if let Err(e) = imgmirror::article::check_base(base) {
            eprintln!("error: --base: {e}; nothing was written");
            return Ok(ExitCode::from(2));
        }
    }
    let config = load_config(&store)?;
    let mut settings = Settings::from_full_config(&config);
    settings.all_http = all_http;
    settings.links = links;
    settings.own_bases.extend(remote.server.clone());
    let mode = if diff {
        Mode::Diff
    } else if dry_run {
        Mode::DryRun
    } else {
        Mode::Write
    };
    let flags = RewriteFlags {
        pin,
        placeholders,
        undo: undo.then_some(match to {
            UndoArg::Worker => UndoTo::Worker,
            UndoArg::Upstream => UndoTo::Upstream,
        }),
        mode,
        force,
    };
    let target = Target {
        base: base.unwrap_or_default(),
        from_base,
        signer: imgmirror::signing::Signer::new(&config.security.signing_keys, &config.transform),
        ..Target::default()
    };
    let failed = runtime.block_on(rewrite_cmd(
        &config, &remote, &settings, target, &flags, &paths,
    ))?;
    Ok(exit_code(failed))
}

pub(crate) fn audit_main(
    runtime: &tokio::runtime::Runtime,
    args: AuditArgs,
) -> anyhow::Result<ExitCode> {
    let AuditArgs {
        store,
        json,
        html,
        base,
        paths,
    } = args;
    if let Some(base) = &base
        && let Err(e) = imgmirror::article::check_base(base)
    {
        eprintln!("error: --base: {e}");
        return Ok(ExitCode::from(2));
    }
    let config = load_config(&store)?;
    let settings = Settings::from_full_config(&config);
    let options = audit::Options {
        concurrency: config.article.prefetch_concurrency.max(1),
        per_host: config.article.prefetch_per_host.max(1),
        thumbnails: html.is_some() && base.is_none(),
    };
    let mirror = std::sync::Arc::new(open_mirror(&config)?);
    let report = runtime.block_on(audit::audit(&mirror, &paths, &settings, &options));
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    if let Some(path) = html {
        imgmirror::article::write_atomic(&path, report.html(base.as_deref()).as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("audit: wrote {}", path.display());
    }
    Ok(exit_code(report.any_lost()))
}

/// The `rewrite` flags that decide how it runs.
struct RewriteFlags {
    pin: bool,
    placeholders: bool,
    undo: Option<UndoTo>,
    mode: Mode,
    force: bool,
}

/// `imgmirror rewrite`: gathers what the rewrite needs (pins and placeholders from a
/// prefetch or the local store, the upstreams of permalinks for `--undo`), then rewrites.
/// Returns whether anything failed.
async fn rewrite_cmd(
    config: &Config,
    remote: &RemoteArgs,
    settings: &Settings,
    mut target: Target,
    flags: &RewriteFlags,
    paths: &[PathBuf],
) -> anyhow::Result<bool> {
    let mut failed = false;
    // Through a server, a prefetch is the only way to learn the placeholders.
    if flags.pin || (flags.placeholders && remote.server.is_some()) {
        let inputs: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let report = prefetch_cmd(config, remote, settings, &inputs).await?;
        // stdout carries the rewrite's own output (a diff can be piped to patch).
        eprint!("{}", report.table());
        failed |= report.any_failed();
        if flags.pin {
            target.pins = report.pins();
        }
        if flags.placeholders {
            target.placeholders = report.placeholders();
        }
    } else if flags.placeholders || flags.undo.is_some() {
        let images = resolve::named_images(paths, settings);
        let needs_store = flags.placeholders || images.iter().any(|n| matches!(n, Named::Hash(_)));
        if needs_store {
            let mirror = open_mirror(config)?;
            if flags.placeholders {
                let (found, warnings) = resolve::placeholders(&mirror, &images).await;
                for warning in warnings {
                    eprintln!("rewrite: warning: {warning}");
                }
                target.placeholders = found;
            } else {
                let (found, warnings) = resolve::permalinks(&mirror, &images).await?;
                for warning in warnings {
                    eprintln!("rewrite: warning: {warning}");
                }
                target.permalinks = found;
            }
        }
    }
    target.undo = flags.undo;
    let report =
        imgmirror::article::rewrite_paths(paths, settings, &target, flags.mode, flags.force);
    if flags.mode == Mode::Diff {
        print!("{}", report.diff);
        eprint!("{}", report.summary());
    } else {
        print!("{}", report.summary());
    }
    Ok(failed || report.any_failed())
}

/// The local store, with the hint a locked one needs.
pub(crate) fn open_mirror(config: &Config) -> anyhow::Result<Mirror> {
    Mirror::open(config).with_context(|| {
        format!(
            "cannot open the store in {} (a running server holds its lock: \
             stop it, or prefetch through it with --server URL --token T)",
            config.cache.dir.display()
        )
    })
}

pub(crate) fn exit_code(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prefetches `inputs` locally or through `--server`, with a progress bar on a terminal and
/// one line per image otherwise.
pub(crate) async fn prefetch_cmd(
    config: &Config,
    remote: &RemoteArgs,
    settings: &Settings,
    inputs: &[String],
) -> anyhow::Result<PrefetchReport> {
    let options = Options::from_config(&config.article);
    let mut progress = Progress::new();
    let report = match &remote.server {
        Some(server) => {
            let token = remote.token(config)?;
            let client = Remote::new(server, &token)?;
            prefetch::prefetch_inputs(Via::Remote(&client), inputs, settings, &options, |i| {
                progress.image(i)
            })
            .await
        }
        None => {
            let mirror = std::sync::Arc::new(open_mirror(config)?);
            prefetch::prefetch_inputs(Via::Local(&mirror), inputs, settings, &options, |i| {
                progress.image(i)
            })
            .await
        }
    };
    progress.finish();
    Ok(report)
}

/// A progress bar when stderr is a terminal, else one log line per image (CI logs and pipes
/// get readable lines instead of carriage returns).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    done: usize,
}

impl Progress {
    fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {pos} images {elapsed} {wide_msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Progress { bar, done: 0 }
    }

    fn image(&mut self, image: &ImageReport) {
        self.done += 1;
        let status = match &image.code {
            Some(code) => format!("failed {} {code}", image.http_status),
            None => image.status.as_str().to_owned(),
        };
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(format!("{status} {}", image.url));
            }
            None => eprintln!(
                "prefetch: [{}] {status} {} ({} ms)",
                self.done, image.url, image.ms
            ),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
