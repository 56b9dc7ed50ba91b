//! Several nodes sharing one S3 bucket (`store.backend = "s3"`), against a real
//! S3-compatible server on loopback: moto in server mode (`pip install 'moto[server]'`),
//! one per test, run by the Python that has it (`IMGMIRROR_MOTO_PYTHON`, else `python3`).
//! It is moto's own WSGI app and werkzeug server, but single-threaded: moto's threaded
//! `moto_server` checks `If-Match` and then writes without a lock, so two conditional
//! updates can both pass (a real store — S3, R2, MinIO — decides atomically); serialising
//! requests gives the atomic compare-and-set the protocol promises. The tests are
//! `#[ignore = "needs moto_server"]`, so a plain `cargo test` passes without moto;
//! `.ci/run` installs it and runs them with `--include-ignored`, and there a missing moto
//! fails them (never a silent skip).
//!
//! Every node is a real `imgmirror serve` process (support/node.rs) with its own TOML
//! config, its own cache dir and its own loopback port, as in production: nothing is
//! shared between two nodes but the bucket, and their counters are read from `/metrics`.
//!
//! Proven here: what one node mirrored another serves with the upstream gone and without
//! asking it; purges through one node are seen by the other within
//! `store.shared_recheck_secs`; one cold URL asked 50 times over two nodes is fetched at
//! most twice and stored once; concurrent pins from two nodes all survive; a store outage
//! (a TCP relay in front of moto cut and restored) is served from the local layers, 503
//! for the rest, and recovers with nothing acknowledged lost; `migrate` disk → bucket →
//! `verify` → serve; and start-up refuses a store that ignores conditional writes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use imgmirror::config::Config;
use imgmirror::store::shared::{Shared, Space};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use crate::support::node::Node;
use crate::support::{Origin, client, fixture, imgmirror, imgmirror_with, sha256, text};

const TOKEN: &str = "s3-token";
const BUCKET: &str = "imgmirror-test";

/// A moto server on a free loopback port, killed when dropped, with [`BUCKET`] created.
struct Moto {
    addr: SocketAddr,
    _child: tokio::process::Child,
}

/// moto's server, one request at a time (see the module comment).
const MOTO: &str = "import sys\n\
from werkzeug.serving import run_simple\n\
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app\n\
run_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), threaded=False)\n";

fn moto_python() -> std::ffi::OsString {
    std::env::var_os("IMGMIRROR_MOTO_PYTHON").unwrap_or_else(|| "python3".into())
}

impl Moto {
    async fn start() -> Moto {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new(moto_python())
            .args(["-c", MOTO, &port.to_string()])
            .env("MOTO_PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto_server");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let bucket = format!("http://{addr}/{BUCKET}");
        for _ in 0..600 {
            // An unsigned PUT creates a bucket on moto; it answers once it is up.
            if let Ok(r) = client().put(&bucket).send().await
                && r.status().is_success()
            {
                return Moto {
                    addr,
                    _child: child,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "moto did not come up on {addr} (pip install 'moto[server]'; IMGMIRROR_MOTO_PYTHON names the Python that has it)"
        );
    }
}

/// A TCP relay in front of the store, so a test can take the store away (connections
/// refused, open ones cut) and bring it back on the same address, state intact. It runs
/// on a thread and runtime of its own, so that stopping it (dropping that runtime) cuts
/// every connection it relays at once.
struct Relay {
    addr: SocketAddr,
    target: SocketAddr,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
}

/// Serves `make_service`-style connections from `listener` on a thread of its own until
/// the returned sender fires (or is dropped); then its runtime is dropped, which cuts
/// every open connection.
fn on_own_thread<F, Fut>(
    listener: std::net::TcpListener,
    each: F,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = TcpListener::from_std(listener).unwrap();
            loop {
                tokio::select! {
                    accepted = listener.accept() => if let Ok((stream, _)) = accepted {
                        tokio::spawn(each(stream));
                    },
                    _ = &mut stopped => break,
                }
            }
        });
    });
    (stop, thread)
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut relay = Relay {
            addr,
            target,
            running: None,
        };
        relay.run(listener);
        relay
    }

    fn run(&mut self, listener: std::net::TcpListener) {
        let target = self.target;
        self.running = Some(on_own_thread(listener, move |mut inbound| async move {
            if let Ok(mut outbound) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        }));
    }

    /// The store is gone: the port refuses connections and open ones are cut.
    fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(());
            thread.join().unwrap();
        }
    }

    fn restart(&mut self) {
        let listener = std::net::TcpListener::bind(self.addr).unwrap();
        self.run(listener);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A node's config file `<dir>/<name>.toml`, as an operator would write it: cache dir
/// `<dir>/<name>`, the loopback origin allowed, and with `store` the bucket under that
/// prefix, with a short recheck window, timeout and retry count so the tests need not
/// wait long. Returns the path and the config as the binary reads it (the test's view of
/// the bucket goes through the same settings).
fn node_toml(
    dir: &Path,
    name: &str,
    origin: &Origin,
    store: Option<(SocketAddr, &str)>,
) -> (PathBuf, Config) {
    let cache = dir.join(name);
    let mut text = format!(
        "[server]\nshutdown_grace_secs = 5\n\
         [cache]\ndir = {:?}\n\
         [upstream]\ntimeout_secs = 5\nallow_cidrs = [\"127.0.0.1/32\"]\n\
         allowed_ports = [80, 443, {}]\n\
         [article]\nprefetch_avif = false\n\
         [admin]\ntoken = \"{TOKEN}\"\n",
        cache.to_str().unwrap(),
        origin.addr.port()
    );
    if let Some((addr, prefix)) = store {
        text.push_str(&format!(
            "[store]\nbackend = \"s3\"\nbucket = \"{BUCKET}\"\nprefix = \"{prefix}\"\n\
             endpoint = \"http://{addr}\"\nregion = \"us-east-1\"\nallow_http = true\n\
             access_key_id = \"test\"\nsecret_access_key = \"test\"\n\
             shared_recheck_secs = 1\ntimeout_secs = 2\nmax_retries = 1\n"
        ));
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path, true).unwrap();
    (path, config)
}

/// Two nodes `a` and `b` in `dir` on the bucket under `prefix`, started at once.
async fn two_nodes(
    dir: &Path,
    origin: &Origin,
    store: SocketAddr,
    prefix: &str,
) -> (Node, Node, Config) {
    let (toml_a, config) = node_toml(dir, "a", origin, Some((store, prefix)));
    let (toml_b, _) = node_toml(dir, "b", origin, Some((store, prefix)));
    let (a, b) = tokio::join!(Node::start(&toml_a), Node::start(&toml_b));
    (a, b, config)
}

/// The bucket as a test sees it, through the same client the nodes use.
fn bucket(config: &Config) -> Shared {
    Shared::open(&config.store).unwrap()
}

async fn prefetch(node: &Node, article: &str, urls: &[String]) -> Vec<Value> {
    let response = client()
        .post(node.url(&format!("/prefetch?article={article}")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(urls).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn purge(node: &Node, query: &str) {
    let response = client()
        .delete(node.url(&format!("/purge?{query}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "purge {query}");
}

async fn get(url: String) -> (u16, String, Vec<u8>) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let source = response
        .headers()
        .get("x-imgmirror-source")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, source, response.bytes().await.unwrap().to_vec())
}

/// Upstream requests a node made, every outcome, from its `/metrics`.
async fn upstream_fetches(node: &Node) -> f64 {
    node.metric("imgmirror_upstream_fetches_total").await
}

#[tokio::test]
#[ignore = "needs moto_server"]
async fn what_node_a_prefetched_node_b_serves_with_the_upstream_gone_and_a_purge_through_a_reaches_b()
 {
    let moto = Moto::start().await;
    let mut origin = Origin::start().await;
    let work = tempfile::tempdir().unwrap();
    let (mut a, mut b, config) = two_nodes(work.path(), &origin, moto.addr, "share").await;
    assert_ne!(a.addr, b.addr);
    let url = origin.url("/img/photo-480.jpg");
    let lines = prefetch(&a, "post-a", std::slice::from_ref(&url)).await;
    assert_eq!(lines[0]["http_status"], 200, "{lines:?}");
    assert_eq!(upstream_fetches(&a).await, 1.0);
    // Acknowledged means in the bucket: the object and the URL record with its pin.
    let store = bucket(&config);
    let hash = sha256(&fixture("photo-480.jpg"));
    let objects = store.list(Space::Objects).await.unwrap();
    assert_eq!(
        objects.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        [hash.as_str()]
    );
    let record = store
        .url(&url)
        .await
        .unwrap()
        .expect("URL record in the bucket");
    assert_eq!(
        (record.sha256.as_str(), record.pinned_by.clone()),
        (hash.as_str(), vec!["post-a".to_string()])
    );

    origin.stop().await;
    let (status, source, body) = get(b.proxy(&url)).await;
    assert_eq!((status, source.as_str()), (200, "shared"), "{}", b.log());
    assert_eq!(body, fixture("photo-480.jpg"));
    // The permalink and a variant too; B asked its upstream for nothing.
    let (status, _, body) = get(b.url(&format!("/m/{hash}"))).await;
    assert_eq!((status, body.len()), (200, fixture("photo-480.jpg").len()));
    let (status, _, _) = get(b.url(&format!("/?url={}&w=120", crate::support::enc(&url)))).await;
    assert_eq!(status, 200);
    assert_eq!(upstream_fetches(&b).await, 0.0);
    let (_, source, _) = get(b.proxy(&url)).await;
    assert_eq!(source, "memory");

    // A purge through A: B trusts its copy for shared_recheck_secs (1 s), then sees the
    // record gone and fetches the URL again from its upstream.
    purge(&a, &format!("url={}", crate::support::enc(&url))).await;
    assert!(store.url(&url).await.unwrap().is_none());
    let origin = Origin::start_on(origin.addr).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, source, _) = get(b.proxy(&url)).await;
    assert_eq!((status, source.as_str()), (200, "upstream"));
    assert_eq!(origin.hits("/img/photo-480.jpg"), 1);
    assert_eq!(upstream_fetches(&b).await, 1.0);
    assert_eq!(upstream_fetches(&a).await, 1.0);
    // ...and its fetch is the bucket's record again, without A's pin.
    let record = store
        .url(&url)
        .await
        .unwrap()
        .expect("record written again by B");
    assert!(record.pinned_by.is_empty(), "{record:?}");
    // A purge of the original through A: B's permalink goes once its window is over.
    assert_eq!(get(b.url(&format!("/m/{hash}"))).await.0, 200);
    purge(&a, &format!("sha256={hash}")).await;
    assert!(store.list(Space::Objects).await.unwrap().is_empty());
    assert!(store.url(&url).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(b.url(&format!("/m/{hash}"))).await.0, 404);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
#[ignore = "needs moto_server"]
async fn fifty_concurrent_requests_for_one_cold_url_over_two_nodes_fetch_it_at_most_twice() {
    let moto = Moto::start().await;
    let origin = Origin::start().await;
    let work = tempfile::tempdir().unwrap();
    let (mut a, mut b, config) = two_nodes(work.path(), &origin, moto.addr, "burst").await;
    // Slow enough that every request arrives while the first fetches are in flight.
    let url = origin.url("/slow/400/photo-1080.jpg");
    let requests: Vec<_> = (0..50)
        .map(|i| {
            let node = if i % 2 == 0 { &a } else { &b };
            get(node.proxy(&url))
        })
        .collect();
    let answers = futures_util::future::join_all(requests).await;
    let expected = fixture("photo-1080.jpg");
    for (status, _, body) in &answers {
        assert_eq!(*status, 200);
        assert!(body == &expected);
    }
    let fetches = origin.hits("/slow/400/photo-1080.jpg");
    assert!((1..=2).contains(&fetches), "{fetches} upstream fetches");
    // Within a node exactly one fetch at most; across nodes they add up to the origin's.
    let (from_a, from_b) = (upstream_fetches(&a).await, upstream_fetches(&b).await);
    assert!(from_a <= 1.0 && from_b <= 1.0, "a {from_a}, b {from_b}");
    assert_eq!(from_a + from_b, fetches as f64);
    let objects = bucket(&config).list(Space::Objects).await.unwrap();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0].name, sha256(&expected));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
#[ignore = "needs moto_server"]
async fn two_nodes_pinning_one_url_for_different_articles_at_once_keep_every_pin() {
    let moto = Moto::start().await;
    let origin = Origin::start().await;
    let work = tempfile::tempdir().unwrap();
    let (mut a, mut b, config) = two_nodes(work.path(), &origin, moto.addr, "pins").await;
    let url = origin.url("/img/photo-480.jpg");
    assert_eq!(get(a.proxy(&url)).await.0, 200);
    assert_eq!(get(b.proxy(&url)).await.0, 200);
    let pins: Vec<_> = (0..12)
        .map(|i| {
            let node = if i % 2 == 0 { &a } else { &b };
            let urls = vec![url.clone()];
            async move { prefetch(node, &format!("post-{i:02}"), &urls).await }
        })
        .collect();
    for lines in futures_util::future::join_all(pins).await {
        assert_eq!(lines[0]["http_status"], 200, "{lines:?}");
    }
    let record = bucket(&config).url(&url).await.unwrap().unwrap();
    let expected: Vec<String> = (0..12).map(|i| format!("post-{i:02}")).collect();
    assert_eq!(record.pinned_by, expected);
    // A purge of one article through B leaves the others' pins, as A sees them.
    purge(&b, "article=post-03").await;
    let record = bucket(&config).url(&url).await.unwrap().unwrap();
    assert_eq!(record.pinned_by.len(), 11);
    assert!(!record.pinned_by.contains(&"post-03".to_string()));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
#[ignore = "needs moto_server"]
async fn a_store_outage_is_served_from_local_layers_503_for_the_rest_and_loses_nothing() {
    let moto = Moto::start().await;
    let mut relay = Relay::start(moto.addr);
    let origin = Origin::start().await;
    let work = tempfile::tempdir().unwrap();
    let (mut a, mut b, config) = two_nodes(work.path(), &origin, relay.addr, "outage").await;
    let held = origin.url("/img/photo-480.jpg");
    let cold = origin.url("/img/cat-alpha.png");
    let lines = prefetch(&a, "post-a", std::slice::from_ref(&held)).await;
    assert_eq!(lines[0]["http_status"], 200, "{lines:?}");
    assert_eq!(get(a.url("/readyz")).await.0, 200);

    relay.stop();
    // A holds what it mirrored (memory, then local disk past the recheck window).
    assert_eq!(get(a.proxy(&held)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, source, _) = get(a.proxy(&held)).await;
    assert_eq!((status, source.as_str()), (200, "memory"));
    // B never held it, and nothing new can be acknowledged: 503 + Retry-After.
    for (node, url) in [(&b, &held), (&a, &cold)] {
        let response = client().get(node.proxy(url)).send().await.unwrap();
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "store-unavailable", "{body}");
    }
    let lines = prefetch(&a, "post-b", std::slice::from_ref(&cold)).await;
    assert_ne!(
        lines[0]["http_status"], 200,
        "a prefetch must not succeed: {lines:?}"
    );
    let (status, _, body) = get(a.url("/readyz")).await;
    assert_eq!(status, 503, "{}", text(&body));

    relay.restart();
    assert_eq!(get(a.url("/readyz")).await.0, 200);
    assert_eq!(get(b.proxy(&held)).await.0, 200);
    let (status, source, _) = get(a.proxy(&cold)).await;
    assert_eq!((status, source.as_str()), (200, "upstream"));
    // Everything acknowledged is in the bucket, pin included.
    let store = bucket(&config);
    let record = store.url(&held).await.unwrap().unwrap();
    assert_eq!(record.pinned_by, ["post-a"]);
    assert!(store.url(&cold).await.unwrap().is_some());
    assert_eq!(store.list(Space::Objects).await.unwrap().len(), 2);
    a.stop().await;
    b.stop().await;
}

/// A fake "S3" that stores nothing and ignores `If-None-Match`/`If-Match`: every PUT
/// succeeds, like s3rver's. On its own thread (see [`Relay`]); stops when dropped.
fn unconditional_store() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    use http_body_util::Full;
    use hyper::service::service_fn;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let puts = Arc::new(AtomicUsize::new(0));
    let (stop, _thread) = on_own_thread(listener, move |stream| {
        let puts = puts.clone();
        async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let n = puts.fetch_add(1, Ordering::SeqCst);
                async move {
                    let status = match *req.method() {
                        http::Method::PUT => 200,
                        http::Method::DELETE => 204,
                        _ => 404,
                    };
                    Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .status(status)
                            .header("etag", format!("\"etag-{n}\""))
                            .body(Full::new(bytes::Bytes::new()))
                            .unwrap(),
                    )
                }
            });
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        }
    });
    (addr, stop)
}

#[tokio::test]
async fn start_up_refuses_a_store_that_ignores_conditional_writes_unless_told_it_is_unsafe() {
    let origin = Origin::start().await;
    let work = tempfile::tempdir().unwrap();
    let (store, _stop) = unconditional_store();
    let (toml, _) = node_toml(work.path(), "node", &origin, Some((store, "")));
    let toml_arg = toml.to_str().unwrap();
    let out = imgmirror(&["serve", "--listen", "127.0.0.1:0", "--config", toml_arg]).await;
    let message = text(&out.stderr);
    assert!(!out.status.success(), "must refuse: {message}");
    assert!(
        message.contains("If-None-Match: * was ignored"),
        "{message}"
    );
    assert!(
        message.contains("store.unsafe_unconditional_writes"),
        "{message}"
    );
    let mut file = std::fs::read_to_string(&toml).unwrap();
    file.push_str("unsafe_unconditional_writes = true\n");
    std::fs::write(&toml, file).unwrap();
    let mut node = Node::start(&toml).await;
    assert!(
        node.log().contains("running with unconditional writes"),
        "{}",
        node.log()
    );
    node.stop().await;
}

async fn run_json(args: &[&str]) -> (i32, Value) {
    let out = imgmirror_with(args, &[]).await;
    let stdout = text(&out.stdout);
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|_| panic!("{args:?}: {stdout} {}", text(&out.stderr)));
    (out.status.code().unwrap_or(-1), value)
}

#[tokio::test]
#[ignore = "needs moto_server"]
async fn migrate_a_disk_mirror_to_the_bucket_verify_it_there_and_serve_it_with_the_upstream_gone() {
    let moto = Moto::start().await;
    let mut origin = Origin::start().await;
    let work = tempfile::tempdir().unwrap();
    let (disk_toml, _) = node_toml(work.path(), "disk", &origin, None);
    let (s3_toml, node_config) =
        node_toml(work.path(), "node", &origin, Some((moto.addr, "migrated")));
    let (back_toml, _) = node_toml(work.path(), "back", &origin, None);
    let mut server = Node::start(&disk_toml).await;
    let urls = vec![
        origin.url("/img/photo-480.jpg"),
        origin.url("/img/cat-alpha.png"),
    ];
    let lines = prefetch(&server, "post-a", &urls).await;
    let images: Vec<_> = lines.iter().filter(|l| l["event"] == "image").collect();
    assert!(
        images.len() == 2 && images.iter().all(|l| l["http_status"] == 200),
        "{lines:?}"
    );
    let variant = format!("/?url={}&w=100&format=jpeg", crate::support::enc(&urls[0]));
    assert_eq!(get(server.url(&variant)).await.0, 200);
    server.stop().await;

    let (disk_toml, s3_toml) = (disk_toml.to_str().unwrap(), s3_toml.to_str().unwrap());
    let args = ["migrate", "--config", disk_toml, "--to-config", s3_toml];
    let (code, report) = run_json(&args).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["objects_copied"], 2, "{report}");
    assert!(report["variants_copied"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["urls"], 2, "{report}");
    // Resumable: a second run finds everything there and copies nothing.
    let (code, report) = run_json(&args).await;
    assert_eq!(
        (code, &report["objects_copied"], &report["objects_present"]),
        (0, &Value::from(0), &Value::from(2)),
        "{report}"
    );

    let (code, report) = run_json(&["verify", "--config", s3_toml, "--json"]).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["objects"], 2, "{report}");
    assert!(
        report["mismatched"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let (code, stats) = run_json(&["stats", "--config", s3_toml, "--json"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        (
            &stats["originals"]["count"],
            &stats["urls"],
            &stats["pinned"]["count"]
        ),
        (&Value::from(2), &Value::from(2), &Value::from(2)),
        "{stats}"
    );

    // A node on the bucket, with an empty local cache, serves both with the upstream gone.
    origin.stop().await;
    let mut node = Node::start(Path::new(s3_toml)).await;
    for (url, file) in urls.iter().zip(["photo-480.jpg", "cat-alpha.png"]) {
        let (status, source, body) = get(node.proxy(url)).await;
        assert_eq!((status, source.as_str()), (200, "shared"), "{url}");
        assert!(body == fixture(file));
    }
    assert_eq!(get(node.url(&variant)).await.1, "shared");
    assert_eq!(upstream_fetches(&node).await, 0.0);
    let record = bucket(&node_config).url(&urls[0]).await.unwrap().unwrap();
    assert_eq!(record.pinned_by, ["post-a"]);
    node.stop().await;

    // And back: bucket → a new data directory, which verifies clean.
    let back_toml = back_toml.to_str().unwrap();
    let (code, report) =
        run_json(&["migrate", "--config", s3_toml, "--to-config", back_toml]).await;
    assert_eq!(
        (code, &report["objects_copied"], &report["urls"]),
        (0, &Value::from(2), &Value::from(2)),
        "{report}"
    );
    let out = imgmirror(&["verify", "--config", back_toml]).await;
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
