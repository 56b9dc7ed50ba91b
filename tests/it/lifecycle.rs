//! Process-level behaviour: graceful shutdown finishes in-flight requests, and the
//! binary starts on the shipped defaults.

use std::time::Duration;

use crate::support::{Origin, Server, client, config_for, fixture};

#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(config_for(dir.path(), Some(&origin))).await;
    let url = server.proxy(&origin.url("/slow/700/photo-1080.jpg"));
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop().await;
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        fixture("photo-1080.jpg").as_slice()
    );
    // And nothing is accepted any more.
    assert!(
        client()
            .get(format!("http://{}/healthz", server.addr))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_binary_serves_and_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_imgmirror"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--cache-dir",
        ])
        .arg(dir.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let health = format!("http://127.0.0.1:{port}/healthz");
    let mut up = false;
    for _ in 0..100 {
        if let Ok(r) = client().get(&health).send().await {
            up = r.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "server did not come up");
    assert!(dir.path().join("index.redb").exists());
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}
