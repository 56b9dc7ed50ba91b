//! Server-side request forgery: with the default config, no request can make imgmirror
//! connect to loopback, private, link-local or metadata addresses, by literal, by DNS
//! name, by `upstream.resolve`, or by redirect; `allow_cidrs` opens a range on purpose.

use crate::support::{Origin, Server, client, config_for, fixture, setup};

async fn code_of(server: &Server, upstream: &str) -> (u16, String) {
    let response = client().get(server.proxy(upstream)).send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (status, body["code"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn default_config_refuses_internal_destinations() {
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), None);
    // Let the origin's port through so the refusal can only come from the address.
    config.upstream.allowed_ports = vec![80, 443, port];
    let server = Server::start(config).await;
    for upstream in [
        format!("http://127.0.0.1:{port}/img/photo-480.jpg"),
        "http://10.0.0.1/a.jpg".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://[::1]:{port}/img/photo-480.jpg"),
        "http://2130706433/a.jpg".to_string(),
        "http://0x7f.1/a.jpg".to_string(),
        format!("http://[::ffff:127.0.0.1]:{port}/img/photo-480.jpg"),
        format!("http://localhost:{port}/img/photo-480.jpg"),
        "http://192.168.1.1/a.jpg".to_string(),
        "http://[fd00::1]/a.jpg".to_string(),
    ] {
        assert_eq!(
            code_of(&server, &upstream).await,
            (403, "forbidden-destination".to_string()),
            "{upstream}"
        );
    }
    assert_eq!(origin.total_hits(), 0, "the origin was reached");
}

#[tokio::test]
async fn a_host_name_pinned_to_loopback_is_refused_unless_allowed() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), None);
    config
        .upstream
        .resolve
        .insert("static.1sapp.com:80".into(), origin.addr);
    let server = Server::start(config.clone()).await;
    let upstream =
        "http://static.1sapp.com/qupost/img/2022/01/31/f8a4283e70d403f54ac17f21b5a1cadf.jpeg";
    assert_eq!(code_of(&server, upstream).await.0, 403);
    assert_eq!(origin.total_hits(), 0);

    // The operator config: the same pin, with the range allowed.
    let dir2 = tempfile::tempdir().unwrap();
    config.cache.dir = dir2.path().to_path_buf();
    config.upstream.allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
    let server = Server::start(config).await;
    assert_eq!(code_of(&server, upstream).await.0, 200); // the origin serves the seed images
    assert_eq!(
        origin.hits("/qupost/img/2022/01/31/f8a4283e70d403f54ac17f21b5a1cadf.jpeg"),
        1
    );
    let ok = client()
        .get(server.proxy("http://static.1sapp.com/img/photo-480.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.bytes().await.unwrap().as_ref(),
        fixture("photo-480.jpg").as_slice()
    );
}

#[tokio::test]
async fn a_redirect_from_an_allowed_origin_to_a_refused_address_is_refused() {
    let (origin, server, _dir) = setup().await;
    for target in [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/a.jpg",
        "http://[::1]/a.jpg",
        "http://127.0.0.2/a.jpg",
    ] {
        let upstream = origin.url(&format!("/redirect-to?{target}"));
        assert_eq!(
            code_of(&server, &upstream).await,
            (403, "forbidden-destination".to_string()),
            "{target}"
        );
    }
    // A redirect to a disallowed port or scheme is refused too.
    let upstream = origin.url("/redirect-to?http://example.com:22/a.jpg");
    assert_eq!(code_of(&server, &upstream).await.0, 403);
    let upstream = origin.url("/redirect-to?file:///etc/passwd");
    assert_eq!(code_of(&server, &upstream).await.0, 400);
}

#[tokio::test]
async fn allow_cidrs_opens_the_loopback_origin() {
    let (origin, server, _dir) = setup().await;
    let response = client()
        .get(server.proxy(&origin.url("/img/photo-480.jpg")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn userinfo_and_other_ports_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config_for(dir.path(), None)).await;
    assert_eq!(
        code_of(&server, "http://user:secret@example.com/a.jpg").await,
        (403, "forbidden-destination".to_string())
    );
    assert_eq!(
        code_of(&server, "http://example.com:6379/a.jpg").await,
        (403, "forbidden-destination".to_string())
    );
}
