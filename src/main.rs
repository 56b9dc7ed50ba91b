//! The `imgmirror` binary: parses the command line, sets up logging, and calls the
//! library. `anyhow` lives here and nowhere else.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use imgmirror::article::Settings;
use imgmirror::config::{Config, DEFAULT_CONFIG_PATH, LogConfig, LogFormat};

mod article_commands;
mod sign_commands;
mod store_commands;

use article_commands::{audit_main, exit_code, prefetch_cmd, rewrite_main};
use store_commands as ops;

// glibc's malloc let a long mixed soak's RSS keep rising far past what the caches hold
// (freed image buffers stranded in per-thread arenas); jemalloc gives them back, so RSS
// tracks the byte budgets README "Memory" adds up. Measured there.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "imgmirror", version, about = "Image mirror and media proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Flags shared by the commands that open the local store.
#[derive(clap::Args)]
struct StoreArgs {
    /// Config file [default: config/imgmirror.toml if it exists]
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (overrides cache.dir)
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on (overrides server.listen)
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Mirror the images of posts (and the resized variants their rewritten versions
    /// request) before anyone reads them; the images are pinned to their posts
    Prefetch {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        remote: RemoteArgs,
        /// Print the report as JSON instead of a table
        #[arg(long)]
        json: bool,
        /// Posts (.md, .markdown, .html), folders of posts, or image URLs
        #[arg(required = true, value_name = "PATH_OR_URL")]
        inputs: Vec<String>,
    },
    /// Rewrite the image URLs of posts to point at the mirror, keeping every other byte;
    /// move a blog to a new mirror base (--from-base), or undo a rewrite (--undo)
    Rewrite(RewriteArgs),
    /// Link-rot report: for each image of each post, is it mirrored (pinned), does the
    /// upstream still answer, has it changed; exit status 1 when an image is lost
    Audit(AuditArgs),
    /// Remove a URL, an original (with its variants and URLs) or an article's images from
    /// the store (offline: stop the server, or use DELETE /purge on it)
    Purge {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        target: PurgeTarget,
    },
    /// Re-hash every object and variant and check the index against the files; exit 0
    /// when clean, 1 when problems were found (and, with --repair, fixed), 2 on errors
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Quarantine damaged files, rebuild missing records, drop dangling ones, remove
        /// temp files
        #[arg(long)]
        repair: bool,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Counts and bytes by kind, URLs, the largest upstream hosts, the disk budget
    Stats {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        remote: RemoteArgs,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Write the mirror as a portable tar archive (through --server while it runs)
    Export {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        remote: RemoteArgs,
        /// The archive to write
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Include the rendered variants (else they are re-rendered on demand)
        #[arg(long)]
        with_variants: bool,
    },
    /// Print a signed URL for an image (security.signing_keys): the form `rewrite` writes,
    /// with its sig=
    Sign(sign_commands::SignArgs),
    /// Load an archive written by `export` into the store, verifying every hash
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// The archive to read
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Copy this mirror into another backend (disk → S3 and back): originals, variants,
    /// URL records and pins, every hash verified; rerun to resume (what is there is kept)
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
        /// The destination's config file (its [store] and cache.dir)
        #[arg(long, value_name = "FILE")]
        to_config: PathBuf,
    },
}

/// What `imgmirror purge` removes: exactly one.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct PurgeTarget {
    /// An upstream URL's record (the object stays for other URLs)
    #[arg(long)]
    url: Option<String>,
    /// An original, all its variants and every URL that points at it
    #[arg(long)]
    sha256: Option<String>,
    /// An article's pins, and the images no other article pins
    #[arg(long)]
    article: Option<String>,
}

#[derive(clap::Args)]
struct RewriteArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    remote: RemoteArgs,
    /// The imgmirror server the posts will use, e.g. https://img.example.com
    #[arg(long, required_unless_present = "undo")]
    base: Option<String>,
    /// Also move imgmirror URLs written under this base to --base (with --undo: undo
    /// only the URLs under it)
    #[arg(long, value_name = "OLD")]
    from_base: Option<String>,
    /// Turn imgmirror URLs (any base) back into worker URLs, taking out the attributes
    /// the rewrite added
    #[arg(long, conflicts_with_all = ["base", "pin", "placeholders", "all_http"])]
    undo: bool,
    /// With --undo: write the worker form (default) or the plain upstream URL
    #[arg(long, value_enum, requires = "undo", default_value = "worker")]
    to: UndoArg,
    /// Prefetch first, then write content-addressed /m/<sha256>.<ext> URLs
    #[arg(long)]
    pin: bool,
    /// Write each <img>'s intrinsic width/height (when data-size is missing) and a
    /// tiny inline preview as its CSS background; needs the images mirrored (--pin, or
    /// a store that holds them)
    #[arg(long)]
    placeholders: bool,
    /// Report what would change; write nothing
    #[arg(long, conflicts_with = "diff")]
    dry_run: bool,
    /// Print a unified diff of the changes; write nothing
    #[arg(long)]
    diff: bool,
    /// Also rewrite plain http:// image URLs (not only worker URLs)
    #[arg(long)]
    all_http: bool,
    /// Rewrite every <a href> and Markdown link to a worker URL, not only those that
    /// point at an image
    #[arg(long)]
    links: bool,
    /// Rewrite read-only posts too
    #[arg(long)]
    force: bool,
    /// Posts or folders of posts
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct AuditArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Print the report as JSON instead of a table
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML page (thumbnails, status per image) to FILE
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Show the HTML page's thumbnails from this running mirror instead of embedding them
    #[arg(long, value_name = "URL")]
    base: Option<String>,
    /// Posts or folders of posts
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// What `--undo` writes back.
#[derive(Clone, Copy, clap::ValueEnum)]
enum UndoArg {
    Worker,
    Upstream,
}

/// Flags of the commands that can prefetch through a running server.
#[derive(clap::Args)]
struct RemoteArgs {
    /// Prefetch through this running server's POST /prefetch instead of the local store
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Admin bearer token for --server (visible in `ps`: prefer --token-file or
    /// IMGMIRROR_ADMIN_TOKEN) [default: admin.token from the config]
    #[arg(long, value_name = "T")]
    token: Option<String>,
    /// Read the admin token for --server from this file (surrounding whitespace trimmed)
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
}

impl RemoteArgs {
    /// The admin token: `--token`, else `--token-file`, else `admin.token` (which
    /// `IMGMIRROR_ADMIN_TOKEN` overrides, like every config key).
    fn token(&self, config: &Config) -> anyhow::Result<String> {
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => token.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --token-file {}", path.display()))?
                .trim()
                .to_owned(),
            (None, None) => config.admin.token.clone(),
        };
        if token.is_empty() {
            anyhow::bail!(
                "--server needs the admin token: pass --token-file, set IMGMIRROR_ADMIN_TOKEN \
                 or admin.token"
            );
        }
        Ok(token)
    }
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // The config says how to log, so it is read first; its errors are printed by main.
    let config = load_config(match &cli.command {
        Command::Serve { store, .. }
        | Command::Prefetch { store, .. }
        | Command::Rewrite(RewriteArgs { store, .. })
        | Command::Audit(AuditArgs { store, .. })
        | Command::Purge { store, .. }
        | Command::Verify { store, .. }
        | Command::Stats { store, .. }
        | Command::Export { store, .. }
        | Command::Import { store, .. }
        | Command::Migrate { store, .. } => store,
        Command::Sign(args) => &args.store,
    })?;
    init_logging(&config.log)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        Command::Serve { store: _, listen } => {
            let mut config = config;
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            runtime.block_on(serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Prefetch {
            store: _,
            remote,
            json,
            inputs,
        } => {
            let mut settings = Settings::from_full_config(&config);
            settings.own_bases.extend(remote.server.clone());
            let report = runtime.block_on(prefetch_cmd(&config, &remote, &settings, &inputs))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(exit_code(report.any_failed()))
        }
        Command::Rewrite(args) => rewrite_main(&runtime, args),
        Command::Audit(args) => audit_main(&runtime, args),
        Command::Purge { store: _, target } => runtime.block_on(ops::purge(
            &config,
            target.url,
            target.sha256,
            target.article,
        )),
        Command::Verify {
            store: _,
            repair,
            json,
        } => runtime.block_on(ops::verify(&config, repair, json)),
        Command::Stats {
            store: _,
            remote,
            json,
        } => {
            let server = remote_of(&config, &remote)?;
            runtime.block_on(ops::stats(&config, server, json))
        }
        Command::Export {
            store: _,
            remote,
            out,
            with_variants,
        } => {
            let server = remote_of(&config, &remote)?;
            runtime.block_on(ops::export(&config, server, &out, with_variants))
        }
        Command::Import { store: _, file } => runtime.block_on(ops::import(&config, &file)),
        Command::Migrate {
            store: _,
            to_config,
        } => runtime.block_on(ops::migrate(&config, &to_config)),
        Command::Sign(args) => sign_commands::sign_main(&config, args),
    }
}

/// `--server` with its token (see [`RemoteArgs::token`]), when given.
fn remote_of(config: &Config, remote: &RemoteArgs) -> anyhow::Result<Option<(String, String)>> {
    let Some(server) = &remote.server else {
        return Ok(None);
    };
    let token = remote.token(config)?;
    Ok(Some((server.trim_end_matches('/').to_owned(), token)))
}

/// Logs to stderr (stdout is the commands' output: `prefetch --json`, `--diff`), as text
/// or one JSON object per line. The filter is `IMGMIRROR_LOG`, else `RUST_LOG`, else
/// `log.filter`.
fn init_logging(log: &LogConfig) -> anyhow::Result<()> {
    let (filter, from) = ["IMGMIRROR_LOG", "RUST_LOG"]
        .into_iter()
        .find_map(|var| {
            let value = std::env::var(var).ok().filter(|v| !v.trim().is_empty())?;
            Some((value, var))
        })
        .unwrap_or_else(|| (log.filter.clone(), "log.filter"));
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .with_context(|| format!("{from} is not a valid log filter: {filter:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match log.format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // Flattened: the event's fields sit at the top level of each object.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    Ok(())
}

fn load_config(args: &StoreArgs) -> anyhow::Result<Config> {
    let (path, required) = match &args.config {
        Some(path) => (path.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    let mut config = Config::load(&path, required)?;
    if let Some(dir) = &args.cache_dir {
        config.cache.dir = dir.clone();
    }
    Ok(config)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM that arrives while the store opens (or before the accept
    // loop first polls the shutdown future) must stop us gracefully, not kill us.
    let shutdown = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let state = imgmirror::server::State::new(config).context("opening the store")?;
    imgmirror::server::run(listener, state, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now; the future resolves on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let (interrupt, terminate) = signals;
            tokio::select! {
                () = wait(interrupt) => {},
                () = wait(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown signal received");
    }
}
