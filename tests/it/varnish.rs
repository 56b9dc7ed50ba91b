//! A real CDN in front of imgmirror: Varnish (`varnishd` from the Debian `varnish`
//! package) on loopback, running the shipped `config/varnish.vcl` with only the backend
//! port changed. Checks that repeated requests are answered by Varnish without reaching
//! imgmirror (its request counter does not move), that WebP and JPEG variants stay apart
//! under `Vary: Accept`, that a 304 and a 206 flow through, and that a purge by surrogate
//! key makes Varnish fetch again.
//!
//! Ignored by a plain `cargo test` (no Varnish needed); `.ci/run` installs Varnish and runs
//! it with `--include-ignored`, where a missing `varnishd` is a failure, not a skip.
//! `varnishd` is `IMGMIRROR_VARNISHD`, else the first on `PATH`, `/usr/sbin` or
//! `/usr/local/sbin`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{Server, client, enc, fixture, metric, setup, sha256};

fn varnishd() -> PathBuf {
    if let Some(path) = std::env::var_os("IMGMIRROR_VARNISHD") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("varnishd"))
        .find(|candidate| candidate.is_file())
        .expect(
            "varnishd not found (apt-get install varnish, or set IMGMIRROR_VARNISHD); \
             this test is ignored unless asked for, so asking means it must run",
        )
}

/// A `varnishd -F` child, stopped with SIGTERM (so its worker process goes too).
struct Varnish {
    child: tokio::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Varnish {
    async fn start(backend: &Server) -> Varnish {
        let dir = tempfile::tempdir().unwrap();
        // varnishd drops privileges for its worker, which must reach the work directory.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let shipped =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/varnish.vcl"))
                .unwrap();
        let vcl = shipped.replace(
            ".port = \"8080\";",
            &format!(".port = \"{}\";", backend.addr.port()),
        );
        assert_ne!(vcl, shipped, "the VCL's backend port line moved");
        let vcl_path = dir.path().join("imgmirror.vcl");
        std::fs::write(&vcl_path, vcl).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let log = dir.path().join("varnishd.log");
        let child = tokio::process::Command::new(varnishd())
            .arg("-F")
            .arg("-n")
            .arg(dir.path().join("work"))
            .args(["-a", &format!("127.0.0.1:{port}")])
            .arg("-f")
            .arg(&vcl_path)
            .args(["-s", "malloc,64m", "-T", "none"])
            // Bans are checked at lookup anyway; a fast lurker keeps the ban list short.
            .args(["-p", "ban_lurker_sleep=0.01"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("starting varnishd");
        let varnish = Varnish {
            child,
            addr: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        for _ in 0..200 {
            if let Ok(r) = client().get(varnish.url("/healthz")).send().await
                && r.status() == 200
            {
                return varnish;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "varnish did not come up in front of imgmirror:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.addr, path_and_query)
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Image requests imgmirror has answered (all statuses).
async fn origin_requests(server: &Server) -> f64 {
    let proxy = metric(
        server,
        "imgmirror_requests_total{route=\"proxy\",status=\"200\"}",
    )
    .await;
    let ranged = metric(
        server,
        "imgmirror_requests_total{route=\"proxy\",status=\"206\"}",
    )
    .await;
    let not_modified = metric(
        server,
        "imgmirror_requests_total{route=\"proxy\",status=\"304\"}",
    )
    .await;
    proxy + ranged + not_modified
}

#[tokio::test]
#[ignore = "needs varnishd"]
async fn varnish_in_front_caches_varies_ranges_revalidates_and_purges_by_key() {
    let (origin, server, _dir) = setup().await;
    let varnish = Varnish::start(&server).await;
    let upstream = origin.url("/img/photo-1080.jpg");
    let original = fixture("photo-1080.jpg");
    let hash = sha256(&original);
    let variant_path = format!("/?url={}&w=240", enc(&upstream));
    let get = |path: &str, accept: &'static str| {
        client()
            .get(varnish.url(path))
            .header("accept", accept)
            .send()
    };

    // WebP, first through Varnish: a miss that reaches imgmirror.
    let webp = get(&variant_path, "image/avif,image/webp,*/*")
        .await
        .unwrap();
    assert_eq!(webp.status(), 200);
    assert_eq!(webp.headers()["content-type"], "image/webp");
    assert_eq!(webp.headers()["x-cache"], "MISS");
    let webp_body = webp.bytes().await.unwrap();
    let reached = origin_requests(&server).await;
    assert!(reached >= 1.0);

    // Repeated (with another browser's Accept spelling): answered by Varnish alone.
    for accept in [
        "image/webp,*/*",
        "image/avif,image/webp,image/apng,*/*;q=0.8",
    ] {
        let again = get(&variant_path, accept).await.unwrap();
        assert_eq!(again.status(), 200);
        assert_eq!(again.headers()["x-cache"], "HIT");
        assert!(again.bytes().await.unwrap() == webp_body);
    }
    assert_eq!(
        origin_requests(&server).await,
        reached,
        "a hit reached imgmirror"
    );

    // JPEG for a browser without WebP: a separate copy, not the cached WebP.
    let jpeg = get(&variant_path, "image/jpeg,*/*").await.unwrap();
    assert_eq!(jpeg.status(), 200);
    assert_eq!(jpeg.headers()["content-type"], "image/jpeg");
    assert_eq!(jpeg.headers()["x-cache"], "MISS");
    let etag = jpeg.headers()["etag"].to_str().unwrap().to_string();
    jpeg.bytes().await.unwrap();
    let jpeg_again = get(&variant_path, "*/*").await.unwrap();
    assert_eq!(jpeg_again.headers()["content-type"], "image/jpeg");
    assert_eq!(jpeg_again.headers()["x-cache"], "HIT");
    let webp_again = get(&variant_path, "image/webp").await.unwrap();
    assert_eq!(webp_again.headers()["content-type"], "image/webp");
    assert_eq!(webp_again.headers()["x-cache"], "HIT");
    let reached = origin_requests(&server).await;

    // A 304 flows through for a client that has the JPEG.
    let revalidated = client()
        .get(varnish.url(&variant_path))
        .header("accept", "image/jpeg")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    assert!(revalidated.bytes().await.unwrap().is_empty());

    // A Range request gets 206 with exactly the bytes asked for.
    let original_path = format!("/?{upstream}");
    let ranged = client()
        .get(varnish.url(&original_path))
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        ranged.headers()["content-range"],
        format!("bytes 0-99/{}", original.len()).as_str()
    );
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &original[..100]);
    let whole = client()
        .get(varnish.url(&original_path))
        .send()
        .await
        .unwrap();
    assert_eq!(whole.headers()["x-cache"], "HIT");
    assert!(whole.bytes().await.unwrap().as_ref() == original.as_slice());
    let reached_after_original = origin_requests(&server).await;
    assert!(reached_after_original <= reached + 1.0);

    // Purge everything derived from the original by its surrogate key.
    let purge = client()
        .request(
            reqwest::Method::from_bytes(b"PURGE").unwrap(),
            varnish.url("/"),
        )
        .header("surrogate-key", format!("sha256:{hash}"))
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), 200, "{}", purge.text().await.unwrap());
    let refetched = get(&variant_path, "image/webp").await.unwrap();
    assert_eq!(refetched.status(), 200);
    assert_eq!(refetched.headers()["x-cache"], "MISS");
    assert!(refetched.bytes().await.unwrap() == webp_body);
    let original_again = client()
        .get(varnish.url(&original_path))
        .send()
        .await
        .unwrap();
    assert_eq!(original_again.headers()["x-cache"], "MISS");
    assert_eq!(
        origin_requests(&server).await,
        reached_after_original + 2.0,
        "after the purge Varnish did not fetch again"
    );

    // A key that names nothing cached purges nothing.
    let other = client()
        .request(
            reqwest::Method::from_bytes(b"PURGE").unwrap(),
            varnish.url("/"),
        )
        .header("surrogate-key", format!("sha256:{}", "0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    let still = get(&variant_path, "image/webp").await.unwrap();
    assert_eq!(still.headers()["x-cache"], "HIT");
    varnish.stop().await;
}
