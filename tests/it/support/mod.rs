//! Test support: the misbehaving fixture origin, a real imgmirror server on
//! 127.0.0.1:0 with a temporary data directory, and captured logs.

pub mod attack;
pub mod node;
pub mod origin;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use imgmirror::config::Config;
use imgmirror::server::State;
use tokio::sync::oneshot;

pub use origin::{Origin, fixture};

/// Everything the server logged, for tests that assert a log line was written.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs() -> Arc<Mutex<Vec<u8>>> {
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = LogWriter(buffer.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter("imgmirror=debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        let _ = rustls::crypto::ring::default_provider().install_default();
        buffer
    })
    .clone()
}

/// True when some log line contains every one of `needles`.
pub fn logged(needles: &[&str]) -> bool {
    let logs = init_logs();
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    text.lines()
        .any(|line| needles.iter().all(|n| line.contains(n)))
}

/// Waits up to 5 s for a log line containing every one of `needles`.
pub async fn wait_logged(needles: &[&str]) -> bool {
    for _ in 0..100 {
        if logged(needles) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// A config for tests: temp data dir, and the loopback origin allowed on its port.
pub fn config_for(dir: &Path, origin: Option<&Origin>) -> Config {
    let mut config = Config::default();
    config.cache.dir = dir.to_path_buf();
    config.server.shutdown_grace_secs = 5;
    config.upstream.timeout_secs = 5;
    // AVIF at prefetch is tests/it/avif.rs's subject. Elsewhere it would dominate: a debug
    // build of rav1e takes seconds per rendition and the seed article warms forty.
    config.article.prefetch_avif = false;
    if let Some(origin) = origin {
        config.upstream.allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
        config.upstream.allowed_ports = vec![80, 443, origin.addr.port()];
    }
    config
}

/// The usual test setup: a fixture origin, and a server with a temp data dir that is
/// allowed to fetch from it. Keep the `TempDir` bound while the server runs.
pub async fn setup() -> (Origin, Server, tempfile::TempDir) {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config_for(dir.path(), Some(&origin))).await;
    (origin, server, dir)
}

pub struct Server {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start(config: Config) -> Server {
        init_logs();
        let dir = config.cache.dir.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = State::new(config).expect("open store");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(imgmirror::server::run(listener, state, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// The worker form for an upstream URL.
    pub fn proxy(&self, upstream: &str) -> String {
        self.url(&format!("/?{upstream}"))
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Number of files under `cache/<sub>/`.
    pub fn files(&self, sub: &str) -> usize {
        count_files(&self.dir.join(sub))
    }
}

pub fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// The status of a plain GET.
pub async fn get_status(url: impl reqwest::IntoUrl) -> reqwest::StatusCode {
    client().get(url).send().await.unwrap().status()
}

pub fn client() -> reqwest::Client {
    init_logs();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Percent-encodes a whole URL for the `url=` form.
pub fn enc(url: &str) -> String {
    percent_encoding::utf8_percent_encode(url, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// SHA-256 hex of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    imgmirror::store::ContentHash::of(bytes).to_hex()
}

/// The `/metrics` text of a server.
pub async fn metrics_text(server: &Server) -> String {
    client()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The sum of every sample of series `name` in a `/metrics` text, over all its label
/// sets (0 when it has none yet). `name` may include a label set, as the text spells it
/// (`imgmirror_renders_total{format="webp"}`), or a histogram suffix (`_count`). Panics
/// if the series is not exposed at all.
pub fn metric_in(text: &str, name: &str) -> f64 {
    let base = name.split('{').next().unwrap();
    let family = ["_bucket", "_count", "_sum"]
        .iter()
        .find_map(|suffix| base.strip_suffix(suffix))
        .filter(|f| text.contains(&format!("# TYPE {f} histogram")))
        .unwrap_or(base);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("# TYPE {family} "))),
        "no series {name} in {text}"
    );
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = if rest.starts_with('{') {
                rest.split_once("} ")?.1
            } else {
                rest.strip_prefix(' ')?
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// [`metric_in`] of a server's current `/metrics`.
pub async fn metric(server: &Server, name: &str) -> f64 {
    metric_in(&metrics_text(server).await, name)
}

/// Runs the real binary (logs at `warn`) without blocking the runtime the origin runs on.
pub async fn imgmirror(args: &[&str]) -> std::process::Output {
    imgmirror_with(args, &[]).await
}

/// [`imgmirror`] with `env` added.
pub async fn imgmirror_with(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    binary()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run imgmirror")
}

/// The real binary, logging at `warn`, killed with its test, and without AVIF at prefetch
/// (as [`config_for`]; `env` of [`imgmirror_with`] can turn it back on). Its render
/// deadline is 120 s: a debug-build render of a 2x variant on a loaded 2-core machine can
/// pass the default 10 s, and these runs test articles, not the deadline
/// (tests/it/hostile_images.rs does).
pub fn binary() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_imgmirror"));
    command
        .env("IMGMIRROR_LOG", "warn")
        .env("IMGMIRROR_ARTICLE_PREFETCH_AVIF", "false")
        .env("IMGMIRROR_TRANSFORM_RENDER_TIMEOUT_SECS", "120")
        .kill_on_drop(true);
    command
}

/// Output bytes as text, for assertions and their messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Opens the index at `path` once the process or server that held it has let go of its
/// lock (a server's background tasks may drop their store a moment after it stops).
pub async fn open_index(path: &Path) -> imgmirror::store::Index {
    for _ in 0..50 {
        if let Ok(index) = imgmirror::store::Index::open(path) {
            return index;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    imgmirror::store::Index::open(path).unwrap()
}
