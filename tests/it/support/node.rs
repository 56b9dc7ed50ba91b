//! A real `imgmirror serve` process as a test node: the binary of [`super::binary`] with
//! a TOML config file of its own, on a loopback port of its own, stopped with SIGTERM.
//! It owns starting, addressing, scraping and stopping such a process; what goes in the
//! config file is the test's business.
//!
//! The process binds `127.0.0.1:0` itself and the test reads the port back from its
//! `listening` log line, so no port is probed and then lost to a parallel test. That line
//! is written once the store is open, so a started node is ready to serve. Its stderr is
//! drained into a buffer (a full pipe would stall the process) and shown when it fails.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

/// An `imgmirror serve --config <file>` process, killed if dropped without [`Node::stop`].
pub struct Node {
    pub addr: SocketAddr,
    child: tokio::process::Child,
    log: Arc<Mutex<String>>,
}

impl Node {
    /// Starts the binary on `config` (whose `server.listen` is overridden to
    /// `127.0.0.1:0`) and waits up to 30 s for it to listen.
    pub async fn start(config: &Path) -> Node {
        let mut child = super::binary()
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .current_dir(config.parent().unwrap())
            // Warnings as usual, plus the server's info lines: the `listening` one names
            // the port, the access lines help when a test fails.
            .env("IMGMIRROR_LOG", "warn,imgmirror::server=info")
            .env("IMGMIRROR_LOG_FORMAT", "text")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start imgmirror serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (found, listening) = oneshot::channel();
        tokio::spawn(drain(child.stderr.take().unwrap(), log.clone(), found));
        let addr = match tokio::time::timeout(Duration::from_secs(30), listening).await {
            Ok(Ok(addr)) => addr,
            _ => {
                let status = child.try_wait().ok().flatten();
                let text = log.lock().unwrap().clone();
                panic!("imgmirror serve did not come up (exit {status:?}):\n{text}");
            }
        };
        Node { addr, child, log }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// The worker form for an upstream URL.
    pub fn proxy(&self, upstream: &str) -> String {
        self.url(&format!("/?{upstream}"))
    }

    /// [`super::metric_in`] of the node's `/metrics`, scraped over HTTP.
    pub async fn metric(&self, name: &str) -> f64 {
        let response = super::client().get(self.url("/metrics")).send().await;
        let text = response.unwrap().text().await.unwrap();
        super::metric_in(&text, name)
    }

    /// What the process logged so far, for assertion messages.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, then waits up to 15 s for a clean exit (status 0).
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let sent = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap();
            assert!(sent.success());
        }
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("imgmirror serve did not stop on SIGTERM")
            .unwrap();
        assert!(status.success(), "exit {status:?}:\n{}", self.log());
    }
}

/// Copies `stderr` into `log` line by line until the process closes it, and sends the
/// main listener's address the first time it is logged.
async fn drain(
    stderr: tokio::process::ChildStderr,
    log: Arc<Mutex<String>>,
    found: oneshot::Sender<SocketAddr>,
) {
    let mut found = Some(found);
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains(" listening ")
            && line.contains("listener=Main")
            && let Some(addr) = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("addr="))
                .and_then(|addr| addr.parse().ok())
            && let Some(found) = found.take()
        {
            let _ = found.send(addr);
        }
        let mut log = log.lock().unwrap();
        log.push_str(&line);
        log.push('\n');
    }
}
