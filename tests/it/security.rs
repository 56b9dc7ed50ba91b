//! Issue 8's client-facing defences against a real server: the per-client limit on
//! expensive work (429 for the ninth cold request of one client, while its hits and other
//! clients are served), `X-Forwarded-For` believed only from trusted proxies, HEAD on a
//! cold URL (fetched, and counted like a GET), and signed URLs (refused unsigned or
//! tampered, key rotation, the worker form only for allow-listed hosts, `imgmirror sign`
//! and `imgmirror rewrite` writing URLs the server accepts).

use std::time::Duration;

use imgmirror::config::Config;
use imgmirror::signing::{Signer, SigningKey};
use reqwest::StatusCode;

use crate::support::{Origin, Server, client, config_for, enc, imgmirror_with, text};

const K1: &str = "first-signing-key-0123456789";
const K2: &str = "second-signing-key-0123456789";

/// A config in which 127.0.0.1 is a trusted proxy, so tests on loopback can be several
/// clients (by `X-Forwarded-For`), with fetch slots to spare so only the client limit
/// can refuse.
fn two_client_config(dir: &std::path::Path, origin: &Origin) -> Config {
    let mut config = config_for(dir, Some(origin));
    config.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    config.upstream.max_in_flight = 64;
    config.upstream.max_in_flight_per_host = 64;
    config
}

fn proxy(server: &Server, upstream: &str, options: &str) -> String {
    server.url(&format!("/?url={}{options}", enc(upstream)))
}

async fn get_as(url: &str, client_ip: &str) -> reqwest::Response {
    client()
        .get(url)
        .header("x-forwarded-for", client_ip)
        .send()
        .await
        .unwrap()
}

async fn code_of(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["code"].as_str().unwrap_or_default().to_owned()
}

/// Waits until the origin has seen each of `paths` (the fetches are in flight).
async fn until_fetching(origin: &Origin, paths: &[String]) {
    for _ in 0..200 {
        if paths.iter().all(|p| origin.hits(p) > 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the origin never saw all of {paths:?}");
}

/// Eight slow cold fetches of one client fill its share: the ninth cold request, a cold
/// render and a cold HEAD of that client get 429 (Retry-After, no-store, `client-busy`)
/// without touching the origin, while the same client's hits (an original and a variant)
/// and another client's cold request are served. Once the eight finish, it is served again.
#[tokio::test]
async fn the_ninth_cold_request_of_a_client_is_refused_but_hits_and_others_are_not() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = two_client_config(dir.path(), &origin);
    assert_eq!(config.server.per_client_expensive, 8, "the default");
    let server = Server::start(config).await;
    let (a, b) = ("198.51.100.1", "198.51.100.2");

    let warm = origin.url("/img/photo-480.jpg");
    assert_eq!(get_as(&proxy(&server, &warm, ""), a).await.status(), 200);
    assert_eq!(
        get_as(&proxy(&server, &warm, "&w=64"), a).await.status(),
        200
    );

    let slow: Vec<String> = (0..8)
        .map(|i| format!("/slow/3000/photo-480.jpg?n={i}"))
        .collect();
    let mut in_flight = Vec::new();
    for path in &slow {
        let url = proxy(&server, &origin.url(path), "");
        in_flight.push(tokio::spawn(async move { get_as(&url, a).await.status() }));
    }
    until_fetching(&origin, &slow).await;

    let ninth = "/slow/10/photo-480.jpg?n=9";
    let refused = get_as(&proxy(&server, &origin.url(ninth), ""), a).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(refused.headers()["cache-control"], "no-store");
    assert_eq!(code_of(refused).await, "client-busy");
    assert_eq!(origin.hits(ninth), 0, "a refused request must not fetch");

    // A render is expensive work too; a HEAD of a cold URL is counted like a GET.
    let render = get_as(&proxy(&server, &warm, "&w=65"), a).await;
    assert_eq!(render.status(), StatusCode::TOO_MANY_REQUESTS);
    let head = client()
        .head(proxy(&server, &origin.url(ninth), ""))
        .header("x-forwarded-for", a)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::TOO_MANY_REQUESTS);

    // Hits are never refused: the original and the rendered variant.
    for options in ["", "&w=64"] {
        let hit = get_as(&proxy(&server, &warm, options), a).await;
        assert_eq!(hit.status(), 200, "hit {options:?} refused");
        assert_eq!(hit.headers()["x-imgmirror-source"], "memory");
    }
    // Another client is not held back by the first one.
    let other = origin.url("/img/photo-1080.jpg");
    assert_eq!(get_as(&proxy(&server, &other, ""), b).await.status(), 200);
    assert_eq!(
        get_as(&proxy(&server, &warm, "&w=66"), b).await.status(),
        200
    );

    for task in in_flight {
        assert_eq!(task.await.unwrap(), 200);
    }
    let after = get_as(&proxy(&server, &origin.url(ninth), ""), a).await;
    assert_eq!(after.status(), 200, "the share is given back");
}

/// A client waiting on a fetch another request leads needs no permit: with a share of
/// one, a client's second request for the URL its first is fetching is served (one fetch),
/// and so is another client's.
#[tokio::test]
async fn waiting_on_someone_elses_fetch_takes_no_share() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = two_client_config(dir.path(), &origin);
    config.server.per_client_expensive = 1;
    let server = Server::start(config).await;
    let path = "/slow/1500/photo-480.jpg?shared".to_string();
    let url = proxy(&server, &origin.url(&path), "");
    let leader = {
        let url = url.clone();
        tokio::spawn(async move { get_as(&url, "198.51.100.1").await.status() })
    };
    until_fetching(&origin, std::slice::from_ref(&path)).await;
    let (same, other) = tokio::join!(get_as(&url, "198.51.100.1"), get_as(&url, "198.51.100.2"));
    assert_eq!(same.status(), 200);
    assert_eq!(other.status(), 200);
    assert_eq!(leader.await.unwrap(), 200);
    assert_eq!(origin.hits(&path), 1, "one fetch for all three");
}

/// Without trusted proxies, `X-Forwarded-For` is the client's own claim: every loopback
/// request is one client (the peer), whatever address it names.
#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = two_client_config(dir.path(), &origin);
    config.server.trusted_proxies = Vec::new();
    config.server.per_client_expensive = 2;
    let server = Server::start(config).await;
    let slow: Vec<String> = (0..2)
        .map(|i| format!("/slow/2000/photo-480.jpg?u={i}"))
        .collect();
    let mut in_flight = Vec::new();
    for (i, path) in slow.iter().enumerate() {
        let url = proxy(&server, &origin.url(path), "");
        let claimed = format!("203.0.113.{i}");
        in_flight.push(tokio::spawn(async move {
            get_as(&url, &claimed).await.status()
        }));
    }
    until_fetching(&origin, &slow).await;
    let third = origin.url("/img/photo-1080.jpg?u=3");
    let refused = get_as(&proxy(&server, &third, ""), "203.0.113.99").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    for task in in_flight {
        assert_eq!(task.await.unwrap(), 200);
    }
}

/// HEAD of a URL not mirrored yet fetches and mirrors it (the fetch is the product; it
/// counts against the client's share, see above): the answer has the image's headers and
/// no body, and the GET after it is a hit.
#[tokio::test]
async fn head_of_a_cold_url_mirrors_it() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config_for(dir.path(), Some(&origin))).await;
    let upstream = origin.url("/img/photo-480.jpg");
    let head = client()
        .head(proxy(&server, &upstream, ""))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "image/jpeg");
    assert_eq!(head.headers()["x-imgmirror-source"], "upstream");
    assert!(head.bytes().await.unwrap().is_empty());
    assert_eq!(origin.hits("/img/photo-480.jpg"), 1);
    let conditional = client()
        .get(proxy(&server, &origin.url("/img/photo-1080.jpg"), ""))
        .header("if-none-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(
        conditional.status(),
        304,
        "If-None-Match: * matches once mirrored"
    );
    assert_eq!(origin.hits("/img/photo-1080.jpg"), 1);
    let get = client()
        .get(proxy(&server, &upstream, ""))
        .send()
        .await
        .unwrap();
    assert_eq!(get.headers()["x-imgmirror-source"], "memory");
    assert_eq!(origin.hits("/img/photo-480.jpg"), 1);
}

fn signer(keys: &[&str]) -> Signer {
    let keys: Vec<SigningKey> = keys.iter().map(|k| SigningKey::new(*k)).collect();
    Signer::new(&keys, &imgmirror::transform::Settings::default()).unwrap()
}

async fn status_and_code(url: &str) -> (u16, String) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let code = if status == 200 {
        String::new()
    } else {
        code_of(response).await
    };
    (status, code)
}

/// With signing on (keys K2 then K1, a rotation in progress): unsigned and tampered URLs
/// are refused before anything is fetched; URLs signed with either key are served, also
/// spelled differently; a third key is refused; a bare permalink needs no signature but
/// one with options does; the worker form is served only for an allow-listed host.
#[tokio::test]
async fn signed_urls_are_required_verified_and_rotated() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    config.security.signing_keys = vec![SigningKey::new(K2), SigningKey::new(K1)];
    config.upstream.allow_hosts = vec!["127.0.0.1".into()];
    let server = Server::start(config).await;
    let base = server.url("");
    let upstream = origin.url("/img/photo-480.jpg");
    let written = imgmirror::url_grammar::proxy_url(&base, &upstream, &[("w", "120".into())]);

    let unsigned = status_and_code(&written).await;
    assert_eq!(unsigned, (403, "signature-required".into()));
    let by_old = signer(&[K1]).sign_written(written.clone(), &base);
    let by_new = signer(&[K2]).sign_written(written.clone(), &base);
    let tampered = by_old.replace("w=120", "w=121");
    assert_eq!(
        status_and_code(&tampered).await,
        (403, "bad-signature".into())
    );
    let foreign = signer(&["a-third-key-nobody-has-0000"]).sign_written(written.clone(), &base);
    assert_eq!(
        status_and_code(&foreign).await,
        (403, "bad-signature".into())
    );
    assert_eq!(origin.total_hits(), 0, "refusals fetch nothing");
    assert_eq!(status_and_code(&by_old).await.0, 200, "{by_old}");
    assert_eq!(status_and_code(&by_new).await.0, 200, "{by_new}");
    // The same signature covers an equivalent spelling of the same image.
    let sig = by_new.rsplit("sig=").next().unwrap();
    let respelled = format!("{base}/?dpr=2&w=60&url={}&sig={sig}", enc(&upstream));
    assert_eq!(status_and_code(&respelled).await.0, 200, "{respelled}");

    // Permalinks: bare is free, options need a signature.
    let sha = crate::support::sha256(&crate::support::fixture("photo-480.jpg"));
    assert_eq!(
        status_and_code(&server.url(&format!("/m/{sha}"))).await.0,
        200
    );
    let sized = imgmirror::url_grammar::permalink_url(&base, &sha, "jpg", &[("w", "50".into())]);
    assert_eq!(
        status_and_code(&sized).await,
        (403, "signature-required".into())
    );
    let signed = signer(&[K2]).sign_written(sized, &base);
    assert_eq!(status_and_code(&signed).await.0, 200, "{signed}");

    // The worker form: only hosts on upstream.allow_hosts.
    assert_eq!(status_and_code(&server.proxy(&upstream)).await.0, 200);
    let elsewhere = upstream.replace("127.0.0.1", "localhost");
    let (status, code) = status_and_code(&server.proxy(&elsewhere)).await;
    assert_eq!((status, code.as_str()), (403, "signature-required"));
}

/// `imgmirror sign` prints a URL the server accepts, for an upstream and a permalink; it
/// refuses to sign without a key.
#[tokio::test]
async fn imgmirror_sign_writes_urls_the_server_accepts() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    config.security.signing_keys = vec![SigningKey::new(K1)];
    let server = Server::start(config).await;
    let base = server.url("");
    let upstream = origin.url("/img/photo-1080.jpg");
    let env = [("IMGMIRROR_SECURITY_SIGNING_KEYS", format!("{K2},{K1}"))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Signed with K2 (the first): this server only knows K1, so it must refuse that one.
    let out = imgmirror_with(&["sign", &upstream, "--w", "200", "--base", &base], &env).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let by_k2 = text(&out.stdout).trim().to_owned();
    assert!(
        by_k2.starts_with(&format!("{base}/?url=")) && by_k2.contains("&sig="),
        "{by_k2}"
    );
    assert_eq!(status_and_code(&by_k2).await, (403, "bad-signature".into()));
    let k1 = [("IMGMIRROR_SECURITY_SIGNING_KEYS", K1)];
    let args = [
        "sign", &upstream, "--w", "200", "--h", "100", "--fit", "cover", "--format", "webp",
        "--base", &base,
    ];
    let out = imgmirror_with(&args, &k1).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let url = text(&out.stdout).trim().to_owned();
    let response = client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    assert_eq!(response.headers()["content-type"], "image/webp");
    let sha = crate::support::sha256(&crate::support::fixture("photo-1080.jpg"));
    let out = imgmirror_with(&["sign", &sha, "--w", "100", "--base", &base], &k1).await;
    let permalink = text(&out.stdout).trim().to_owned();
    assert!(
        permalink.contains(&format!("/m/{sha}?w=100&sig=")),
        "{permalink}"
    );
    assert_eq!(status_and_code(&permalink).await.0, 200, "{permalink}");
    let none = imgmirror_with(
        &["sign", &upstream],
        &[("IMGMIRROR_SECURITY_SIGNING_KEYS", "")],
    )
    .await;
    assert_eq!(none.status.code(), Some(2));
    assert!(text(&none.stderr).contains("security.signing_keys"));
}

/// `imgmirror rewrite` with a key signs every URL it writes (the `src` and both `srcset`
/// candidates), and the server serves each of them.
#[tokio::test]
async fn rewrite_with_a_key_writes_signed_urls_the_server_accepts() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    config.security.signing_keys = vec![SigningKey::new(K1)];
    let server = Server::start(config).await;
    let base = server.url("");
    let posts = tempfile::tempdir().unwrap();
    let post = posts.path().join("post.html");
    let upstream = origin.url("/img/photo-1080.jpg");
    std::fs::write(
        &post,
        format!(
            "<p><img src=\"https://cors.zfour.workers.dev/?{upstream}\" data-size=\"320,213\"></p>\n"
        ),
    )
    .unwrap();
    let env = [("IMGMIRROR_SECURITY_SIGNING_KEYS", K1)];
    let post_arg = post.to_str().unwrap();
    let out = imgmirror_with(&["rewrite", "--base", &base, post_arg], &env).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rewritten = std::fs::read_to_string(&post).unwrap();
    let urls: Vec<String> = rewritten
        .split(['"', ' ', ','])
        .filter(|s| s.starts_with(&base))
        .map(|s| s.replace("&amp;", "&"))
        .collect();
    assert!(
        urls.len() >= 3,
        "src and two srcset candidates: {rewritten}"
    );
    for url in &urls {
        assert!(url.contains("&sig="), "unsigned: {url}");
        assert_eq!(status_and_code(url).await.0, 200, "{url}");
    }
    let unsigned = urls[0].split("&sig=").next().unwrap();
    assert_eq!(status_and_code(unsigned).await.0, 403);
}
