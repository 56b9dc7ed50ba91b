//! Crash safety: the real binary is killed with SIGKILL in the middle of a burst of cold
//! fetches and renders, restarted on the same directory with the upstream gone, and then
//!
//! - every image acknowledged with a 200 before the kill is served again, byte for byte;
//! - `imgmirror verify` finds no file whose hash does not match its name and no index
//!   record without its file (an orphan file is allowed: files are committed before the
//!   index names them, so a kill in between leaves one).

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::support::{Origin, client, enc};

const FILES: [&str; 6] = [
    "photo-480.jpg",
    "photo-1080.jpg",
    "astronaut-512.jpg",
    "logo-alpha.png",
    "cat-alpha.png",
    "photo-1920.jpg",
];

/// URL → the bytes it was acknowledged with.
type Acked = Vec<(String, Vec<u8>)>;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, port: u16, origin: &Origin) -> std::path::PathBuf {
    let path = dir.join("imgmirror.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace_secs = 2\n\
         [cache]\ndir = \"{}\"\n\
         [upstream]\ntimeout_secs = 5\nallow_cidrs = [\"127.0.0.1/32\"]\nallowed_ports = [80, 443, {}]\n",
        dir.join("cache").display(),
        origin.addr.port()
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn start(config: &Path, port: u16) -> tokio::process::Child {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_imgmirror"))
        .args(["serve", "--config"])
        .arg(config)
        .env("IMGMIRROR_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let health = format!("http://127.0.0.1:{port}/healthz");
    for _ in 0..200 {
        if client().get(&health).send().await.is_ok() {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("imgmirror did not come up on {port}");
}

#[tokio::test]
async fn sigkill_mid_burst_loses_nothing_acknowledged_and_corrupts_nothing() {
    let mut origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &origin);
    let mut child = start(&config, port).await;

    // Cold originals (some slow, so they are in flight at the kill) and cold renders.
    let mut urls = Vec::new();
    for (i, file) in FILES.iter().enumerate() {
        let upstream = origin.url(&format!("/slow/{}/{file}", 40 * i));
        urls.push(format!("http://127.0.0.1:{port}/?{upstream}"));
        for w in 0..8 {
            urls.push(format!(
                "http://127.0.0.1:{port}/?url={}&w={}&format=jpeg",
                enc(&upstream),
                60 + 17 * w
            ));
        }
    }
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let mut burst = tokio::task::JoinSet::new();
    for url in urls {
        let acked = acked.clone();
        burst.spawn(async move {
            if let Ok(response) = client().get(&url).send().await
                && response.status() == 200
                && let Ok(bytes) = response.bytes().await
            {
                acked.lock().unwrap().push((url, bytes.to_vec()));
            }
        });
    }
    // Kill once part of the burst is acknowledged and the rest is in flight.
    for _ in 0..400 {
        if acked.lock().unwrap().len() >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    while burst.join_next().await.is_some() {}
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() >= 8,
        "only {} acknowledged before the kill",
        acked.len()
    );

    origin.stop().await;
    let mut child = start(&config, port).await;
    for (url, bytes) in &acked {
        let response = client().get(url).send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "{url} was acknowledged before the kill"
        );
        assert_eq!(&response.bytes().await.unwrap().to_vec(), bytes, "{url}");
    }
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    child.wait().await.unwrap();

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_imgmirror"))
        .args(["verify", "--json", "--config"])
        .arg(&config)
        .env("IMGMIRROR_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert_ne!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["mismatched"], serde_json::json!([]), "{report}");
    assert_eq!(report["missing"], serde_json::json!([]), "{report}");
    assert!(report["objects"].as_u64().unwrap() >= 1, "{report}");
}
