//! The `imgmirror` binary: parses the command line, sets up logging, and calls the
//! library. `anyhow` lives here and nowhere else.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use imgmirror::config::{Config, DEFAULT_CONFIG_PATH};

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
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IMGMIRROR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        Command::Serve { store, listen } => {
            let mut config = load_config(&store)?;
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            runtime.block_on(serve(config))
        }
    }
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
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let state = imgmirror::server::State::new(config).context("opening the store")?;
    imgmirror::server::run(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
