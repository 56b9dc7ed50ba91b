//! The binary's store-maintenance commands (`purge`, `verify`, `stats`, `export`,
//! `import`, `migrate`): parse nothing, decide nothing, print the library's reports. With
//! `store.backend = "s3"` they work on the bucket (export and import by way of a local
//! spool directory, so the archive format stays one implementation). Part of the
//! `imgmirror` binary, not of the library; `anyhow` is allowed here as in `main.rs`.
//!
//! Offline commands open the data directory themselves, so they refuse to run next to a
//! live server (the index's lock); `stats` and `export` can ask a running server instead
//! (`--server URL --token T`).

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use imgmirror::config::Config;
use imgmirror::hash::ContentHash;
use imgmirror::mirror::{Mirror, Purge};
use imgmirror::store::archive;
use imgmirror::store::transfer::{self, Side};
use imgmirror::store::verify::verify as verify_store;
use imgmirror::store::{Budget, Disk, Index, inventory::Inventory};
use imgmirror::url_grammar;

pub async fn purge(
    config: &Config,
    url: Option<String>,
    sha256: Option<String>,
    article: Option<String>,
) -> anyhow::Result<ExitCode> {
    let what = match (url, sha256, article) {
        (Some(url), _, _) => Purge::Url(url_grammar::parse_upstream(&url)?),
        (_, Some(hex), _) => Purge::Object(
            ContentHash::parse(&hex).with_context(|| format!("{hex:?} is not a SHA-256"))?,
        ),
        (_, _, Some(id)) => Purge::Article(id),
        _ => anyhow::bail!("give one of --url, --sha256, --article"),
    };
    let mirror = open(config)?;
    let report = mirror.purge(&what).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if report.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn verify(config: &Config, repair: bool, json: bool) -> anyhow::Result<ExitCode> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} files checked {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let tick = bar.clone();
    let progress = move || {
        if let Some(bar) = &tick {
            bar.inc(1);
        }
    };
    let result = if config.store.is_shared() {
        match Side::open(config) {
            Ok(Side::Shared(shared)) => transfer::verify_shared(&shared, repair, &progress).await,
            Ok(Side::Disk { .. }) => unreachable!("a shared config opens a bucket"),
            Err(e) => Err(e),
        }
    } else {
        let dir = config.cache.dir.clone();
        tokio::task::spawn_blocking(move || verify_store(&dir, repair, &progress)).await?
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("imgmirror verify: {}", imgmirror::error::Chain(&e));
            return Ok(ExitCode::from(2));
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.summary());
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn stats(
    config: &Config,
    server: Option<(String, String)>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let inventory: Inventory = match server {
        Some((base, token)) => {
            let answer = client()?
                .get(format!("{base}/stats"))
                .bearer_auth(token)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            let answer: serde_json::Value = serde_json::from_slice(&answer)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(ExitCode::SUCCESS);
            }
            serde_json::from_value(answer["inventory"].clone())?
        }
        None if config.store.is_shared() => {
            let Side::Shared(shared) = Side::open(config)? else {
                anyhow::bail!("store.backend = \"s3\" opened no bucket");
            };
            transfer::inventory_shared(&shared, &Budget::from_config(&config.cache), 10).await?
        }
        None => {
            let index =
                Index::open(&config.cache.dir.join("index.redb")).map_err(|e| locked(config, e))?;
            Inventory::take(
                &index,
                &config.cache.dir,
                &Budget::from_config(&config.cache),
                10,
            )?
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&inventory)?);
    } else {
        print!("{}", inventory.table());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn export(
    config: &Config,
    server: Option<(String, String)>,
    out: &Path,
    with_variants: bool,
) -> anyhow::Result<ExitCode> {
    // Written to a temp name and renamed at the end: a half-written archive never sits
    // under the name asked for.
    let partial = out.with_extension("partial");
    let mut file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    match server {
        Some((base, token)) => {
            use std::io::Write;
            let query = if with_variants { "?variants=1" } else { "" };
            let mut response = client()?
                .get(format!("{base}/export{query}"))
                .bearer_auth(token)
                .send()
                .await?
                .error_for_status()?;
            while let Some(chunk) = response.chunk().await? {
                file.write_all(&chunk)?;
            }
            file.sync_all()?;
        }
        None if config.store.is_shared() => {
            // The bucket is copied to a local spool first (originals and URL records).
            let spool = Spool::new()?;
            let report = transfer::migrate(&Side::open(config)?, &spool.side()?, &|| {}).await?;
            let (index, disk) = spool.open()?;
            let written =
                archive::export(&index, &disk, std::io::BufWriter::new(&mut file), false)?;
            file.sync_all()?;
            eprintln!(
                "exported {} objects, {} urls from the bucket ({} bytes, {} skipped)",
                written.objects,
                written.urls,
                written.bytes,
                written.skipped + report.failed.len() as u64
            );
        }
        None => {
            let index =
                Index::open(&config.cache.dir.join("index.redb")).map_err(|e| locked(config, e))?;
            let disk = Disk::attach(&config.cache.dir);
            let report = archive::export(
                &index,
                &disk,
                std::io::BufWriter::new(&mut file),
                with_variants,
            )?;
            file.sync_all()?;
            eprintln!(
                "exported {} objects, {} variants, {} urls ({} bytes, {} skipped)",
                report.objects, report.variants, report.urls, report.bytes, report.skipped
            );
        }
    }
    std::fs::rename(&partial, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(ExitCode::SUCCESS)
}

pub async fn import(config: &Config, file: &Path) -> anyhow::Result<ExitCode> {
    let input =
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    if config.store.is_shared() {
        // Checked into a local spool by the one importer, then copied into the bucket.
        let spool = Spool::new()?;
        let report = {
            let (index, disk) = spool.open()?;
            archive::import(&index, &disk, std::io::BufReader::new(input))?
        };
        let copied = transfer::migrate(&spool.side()?, &Side::open(config)?, &|| {}).await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(if report.skipped == 0 && copied.failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    std::fs::create_dir_all(&config.cache.dir)?;
    // The index first: its lock keeps a running server's directory safe from us.
    let index = Index::open(&config.cache.dir.join("index.redb")).map_err(|e| locked(config, e))?;
    let disk = Disk::open(&config.cache.dir)?;
    let report = archive::import(&index, &disk, std::io::BufReader::new(input))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if report.skipped == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `imgmirror migrate --to-config other.toml`: copies this config's mirror into the
/// other's backend (resumable: what is there is skipped; every byte re-hashed).
pub async fn migrate(config: &Config, to: &Path) -> anyhow::Result<ExitCode> {
    let target = Config::load(to, true)?;
    let same = match (config.store.is_shared(), target.store.is_shared()) {
        (false, false) => config.cache.dir == target.cache.dir,
        (true, true) => {
            let key = |c: &Config| {
                (
                    c.store.endpoint.clone(),
                    c.store.bucket.clone(),
                    c.store.prefix.trim_matches('/').to_owned(),
                )
            };
            key(config) == key(&target)
        }
        _ => false,
    };
    anyhow::ensure!(!same, "{} names the same store as the source", to.display());
    let from = Side::open(config)
        .map_err(|e| anyhow::anyhow!("source: {}", imgmirror::error::Chain(&e)))?;
    let into = Side::open(&target)
        .map_err(|e| anyhow::anyhow!("destination: {}", imgmirror::error::Chain(&e)))?;
    let report = transfer::migrate(&from, &into, &|| {}).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A temporary data directory a bucket is copied through; removed when dropped.
struct Spool(std::path::PathBuf);

impl Spool {
    fn new() -> anyhow::Result<Spool> {
        let dir = transfer::spool_dir(&std::env::temp_dir());
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Spool(dir))
    }

    fn config(&self) -> Config {
        let mut config = Config::default();
        config.cache.dir = self.0.clone();
        config
    }

    fn side(&self) -> anyhow::Result<Side> {
        Ok(Side::open(&self.config())?)
    }

    fn open(&self) -> anyhow::Result<(Index, Disk)> {
        let dir = &self.0;
        Ok((Index::open(&dir.join("index.redb"))?, Disk::open(dir)?))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(config: &Config) -> anyhow::Result<Arc<Mirror>> {
    let mirror = Mirror::open(config).with_context(|| {
        format!(
            "cannot open the store in {} (a running server holds its lock: stop it, or use its admin endpoints)",
            config.cache.dir.display()
        )
    })?;
    Ok(Arc::new(mirror))
}

fn locked(config: &Config, e: imgmirror::store::index::IndexError) -> anyhow::Error {
    let hint = if e.is_locked() {
        " (a running server holds it: stop it, or pass --server URL --token T)"
    } else {
        ""
    };
    anyhow::anyhow!(
        "cannot open the index in {}{hint}: {}",
        config.cache.dir.display(),
        imgmirror::error::Chain(&e)
    )
}

fn client() -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a default TLS crypto provider; name ours.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder().no_proxy().build()?)
}
