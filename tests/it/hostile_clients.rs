//! Hostile clients and hostile upstreams against the server's own limits: each test
//! names the attack, asserts the refusal, and that an honest request made meanwhile
//! still succeeds.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Server, client, config_for, imgmirror_with};

/// Reads until the server closes the connection; the time it took, or `None` when it
/// was still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Slowloris: 200 sockets that connect and send nothing, against a server with fewer
/// connection slots than that. hyper's preface detection has no timer of its own; the
/// server must close them after `header_read_timeout_secs`, and serve `/healthz`.
#[tokio::test]
async fn silent_connections_are_closed_and_health_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), None);
    config.server.header_read_timeout_secs = 1;
    config.server.max_connections = 100;
    let server = Server::start(config).await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // One more that sends a byte (it could be HTTP/1 or the HTTP/2 preface) and stops.
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial.write_all(b"P").await.unwrap();

    let started = Instant::now();
    let health = tokio::time::timeout(
        Duration::from_secs(10),
        client().get(server.url("/healthz")).send(),
    )
    .await
    .expect("/healthz not answered within 10 s while idle sockets are open")
    .unwrap();
    assert_eq!(health.status(), 200);
    let health_latency = started.elapsed();

    let mut slowest = Duration::ZERO;
    for stream in idle.iter_mut().chain(std::iter::once(&mut partial)) {
        let took = closed_within(stream, Duration::from_secs(10))
            .await
            .expect("an idle connection was still open after 10 s");
        slowest = slowest.max(took);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closing 201 silent sockets took {:?}",
        started.elapsed()
    );
    eprintln!("healthz answered in {health_latency:?}; all silent sockets closed by {slowest:?}");
}

/// Slowloris at the default timeouts: more silent sockets than connection slots, with
/// `header_read_timeout_secs` far away (30 s). While every slot is taken, a connection
/// silent for a second makes room, so an honest request waits about that long, not 30 s.
#[tokio::test]
async fn a_full_house_of_silent_sockets_makes_room_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), None);
    config.server.header_read_timeout_secs = 30;
    config.server.idle_timeout_secs = 30;
    config.server.max_connections = 50;
    let server = Server::start(config).await;
    let mut silent = Vec::new();
    for _ in 0..80 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let health = tokio::time::timeout(
        Duration::from_secs(8),
        client().get(server.url("/healthz")).send(),
    )
    .await
    .expect("/healthz not answered within 8 s while silent sockets fill every slot")
    .unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        started.elapsed()
    );
    // The silent ones were closed, not the honest one kept waiting for them.
    let closed = closed_within(&mut silent[0], Duration::from_secs(5)).await;
    assert!(closed.is_some(), "a silent socket in a slot was not closed");
}

/// A keep-alive connection that finished its request and then sits idle is closed
/// after `idle_timeout_secs`, while one kept busy with requests stays open.
#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), None);
    config.server.idle_timeout_secs = 1;
    // hyper's header timer also runs while an HTTP/1 connection waits for its next
    // request: make it long, so only the idle timeout can close the connection in time.
    config.server.header_read_timeout_secs = 30;
    let server = Server::start(config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    // Busy: a request every 300 ms for 2 s keeps the connection.
    for _ in 0..7 {
        stream.write_all(request).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let took = closed_within(&mut stream, Duration::from_secs(5))
        .await
        .expect("idle keep-alive connection still open 5 s later");
    assert!(
        took >= Duration::from_millis(500),
        "closed too early: {took:?}"
    );
}

/// A request head larger than `server.max_request_head_bytes` is refused by the HTTP
/// layer (431) instead of being buffered.
#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), None);
    config.server.max_request_head_bytes = 16 * 1024;
    let server = Server::start(config).await;
    let big = "a".repeat(20 * 1024);
    let response = client()
        .get(server.url("/healthz"))
        .header("x-padding", big)
        .send()
        .await;
    match response {
        Ok(response) => assert_eq!(response.status(), 431),
        // hyper may also just close the connection.
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    assert_eq!(
        crate::support::get_status(server.url("/healthz")).await,
        200
    );
}

/// A tarpit host: with 4 fetch slots and 1 per host, four slow fetches from one host
/// leave slots for another host, and the fetches that found no slot in time (our own
/// overload, 503) are not remembered by the negative cache.
#[tokio::test]
async fn a_slow_host_does_not_starve_other_hosts() {
    let origin = crate::support::Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    let port = origin.addr.port();
    for host in ["slow.test", "fast.test"] {
        config
            .upstream
            .resolve
            .insert(format!("{host}:{port}"), origin.addr);
    }
    config.upstream.max_in_flight = 4;
    config.upstream.max_in_flight_per_host = 1;
    config.upstream.timeout_secs = 4;
    let server = Server::start(config).await;
    let slow: Vec<String> = (0..4)
        .map(|i| format!("http://slow.test:{port}/slow/3000/photo-480.jpg?n={i}"))
        .collect();
    let attack: Vec<_> = slow
        .iter()
        .map(|url| {
            let url = server.proxy(url);
            tokio::spawn(async move { client().get(url).send().await.unwrap().status() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let honest = client()
        .get(server.proxy(&format!("http://fast.test:{port}/img/photo-1080.jpg")))
        .send()
        .await
        .unwrap();
    assert_eq!(honest.status(), 200);
    let honest_latency = started.elapsed();
    assert!(
        honest_latency < Duration::from_secs(2),
        "a fetch from another host waited {honest_latency:?} behind the slow host"
    );

    let mut statuses = Vec::new();
    for task in attack {
        statuses.push(task.await.unwrap().as_u16());
    }
    // One fetch had the host's slot; others found none within the 4 s deadline (503;
    // one may get its slot late and time out upstream instead, 504).
    assert!(statuses.contains(&200), "{statuses:?}");
    // Which of them lost the race for the host slot (503) or got it late and ran out
    // of time upstream (504) varies with load; when one was refused, it was ours, not
    // the upstream's answer: asking again fetches and succeeds.
    let Some(refused) = statuses.iter().position(|s| *s == 503) else {
        eprintln!("no fetch was refused for want of a slot this run: {statuses:?}");
        return;
    };
    let path = format!("/slow/3000/photo-480.jpg?n={refused}");
    let hits_before = origin.hits(&path);
    let again = client()
        .get(server.proxy(&slow[refused]))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(
        again, 200,
        "an overload 503 was remembered by the negative cache"
    );
    assert_eq!(origin.hits(&path), hits_before + 1);
    eprintln!("honest fetch {honest_latency:?} while the slow host held its slot; {statuses:?}");
}

/// Source rules: with `allow_hosts` set, a redirect from an allowed host to another one
/// is refused (403 `forbidden-destination`) and the other host is never asked; a host
/// on `deny_hosts` is refused outright.
#[tokio::test]
async fn redirects_to_hosts_off_the_allow_list_are_refused() {
    let origin = crate::support::Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    let port = origin.addr.port();
    for host in ["img.allowed.test", "evil.test", "blocked.allowed.test"] {
        config
            .upstream
            .resolve
            .insert(format!("{host}:{port}"), origin.addr);
    }
    config.upstream.allow_hosts = vec!["*.allowed.test".into()];
    config.upstream.deny_hosts = vec!["blocked.allowed.test".into()];
    let server = Server::start(config).await;

    let allowed = format!("http://img.allowed.test:{port}/img/photo-480.jpg");
    assert_eq!(
        crate::support::get_status(server.proxy(&allowed)).await,
        200
    );

    let target = format!("http://evil.test:{port}/img/photo-1080.jpg");
    let hop = format!("http://img.allowed.test:{port}/redirect-to?{target}");
    let response = client().get(server.proxy(&hop)).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("forbidden-destination")
    );
    assert_eq!(
        origin.hits("/img/photo-1080.jpg"),
        0,
        "the denied host was asked"
    );

    let denied = format!("http://blocked.allowed.test:{port}/img/photo-1080.jpg");
    assert_eq!(crate::support::get_status(server.proxy(&denied)).await, 403);
    assert_eq!(origin.hits("/img/photo-1080.jpg"), 0);
}

/// Bounded inputs: a request target over 8 KiB is refused with 414 `uri-too-long`
/// before it is parsed (nothing fetched, nothing stored); one just under is served.
#[tokio::test]
async fn urls_over_8_kib_are_refused_with_414() {
    let (origin, server, _dir) = crate::support::setup().await;
    let upstream = origin.url("/img/photo-480.jpg");
    let long = format!("{upstream}?pad={}", "a".repeat(9 * 1024));
    let response = client().get(server.proxy(&long)).send().await.unwrap();
    assert_eq!(response.status(), 414);
    assert!(response.text().await.unwrap().contains("uri-too-long"));
    assert_eq!(origin.total_hits(), 0, "a refused URL was fetched");
    assert_eq!(server.files("objects"), 0);

    let fits = format!("{upstream}?pad={}", "a".repeat(7 * 1024));
    assert_eq!(crate::support::get_status(server.proxy(&fits)).await, 200);
}

/// The admin token never has to be on a command line (where `ps` shows it):
/// `--token-file` and `IMGMIRROR_ADMIN_TOKEN` both work, and a wrong one is refused.
#[tokio::test]
async fn the_admin_token_comes_from_a_file_or_the_environment() {
    const TOKEN: &str = "file-token-123";
    let origin = crate::support::Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    config
        .upstream
        .resolve
        .insert("static.1sapp.com:80".into(), origin.addr);
    config.admin.token = TOKEN.into();
    let server = Server::start(config).await;
    let base = server.url("");
    let work = tempfile::tempdir().unwrap();
    let post = work.path().join("post.md");
    std::fs::copy(
        crate::support::origin::fixture_path("seed-article.md"),
        &post,
    )
    .unwrap();
    let post = post.to_str().unwrap();
    let good = work.path().join("token");
    std::fs::write(&good, format!("{TOKEN}\n")).unwrap();
    let bad = work.path().join("bad-token");
    std::fs::write(&bad, "nope\n").unwrap();
    let prefetch = |file: &std::path::Path| {
        vec![
            "prefetch".to_string(),
            "--server".into(),
            base.clone(),
            "--token-file".into(),
            file.display().to_string(),
            post.to_string(),
        ]
    };

    let args = prefetch(&bad);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = imgmirror_with(&args, &[]).await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stdout).contains("403"));

    let args = prefetch(&good);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let from_file = imgmirror_with(&args, &[]).await;
    assert!(
        from_file.status.success(),
        "{}",
        String::from_utf8_lossy(&from_file.stderr)
    );

    let from_env = imgmirror_with(
        &["prefetch", "--server", &base, post],
        &[("IMGMIRROR_ADMIN_TOKEN", TOKEN)],
    )
    .await;
    assert!(
        from_env.status.success(),
        "{}",
        String::from_utf8_lossy(&from_env.stderr)
    );
    let missing = imgmirror_with(&["prefetch", "--server", &base, post], &[]).await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--token-file"));
}
