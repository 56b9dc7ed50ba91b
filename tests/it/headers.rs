//! What browsers and CDNs see: validators and 304s, HEAD, CORS preflight and the
//! cross-origin and safety headers, HTTP/2 cleartext, health.

use crate::support::{Origin, Server, client, config_for, fixture, get_status, setup, sha256};

#[tokio::test]
async fn image_responses_carry_the_headers_browsers_and_cdns_need() {
    let (origin, server, _dir) = setup().await;
    let upstream = origin.url("/img/cat-alpha.png");
    let bytes = fixture("cat-alpha.png");
    let response = client()
        .get(server.proxy(&upstream))
        .header("origin", "https://blog.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let h = response.headers();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["content-length"], bytes.len().to_string().as_str());
    assert_eq!(h["etag"], format!("\"{}\"", sha256(&bytes)).as_str());
    assert!(httpdate::parse_http_date(h["last-modified"].to_str().unwrap()).is_ok());
    assert_eq!(
        h["cache-control"],
        "public, max-age=86400, stale-while-revalidate=604800, stale-if-error=604800"
    );
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["timing-allow-origin"], "*");
    assert_eq!(h["cross-origin-resource-policy"], "cross-origin");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-security-policy"], "default-src 'none'; sandbox");
    assert_eq!(
        h["link"],
        format!("<{upstream}>; rel=\"canonical\"").as_str()
    );
    assert!(h.get("vary").is_none());
    assert!(h.get("x-request-id").is_some());
}

#[tokio::test]
async fn etag_and_if_modified_since_give_304() {
    let (origin, server, _dir) = setup().await;
    let url = server.proxy(&origin.url("/img/photo-480.jpg"));
    let first = client().get(&url).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let last_modified = first.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_string();

    let revalidated = client()
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    assert_eq!(revalidated.headers()["etag"], etag.as_str());
    assert_eq!(revalidated.headers()["access-control-allow-origin"], "*");
    assert!(revalidated.bytes().await.unwrap().is_empty());

    let list = client()
        .get(&url)
        .header("if-none-match", format!("\"other\", W/{etag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 304);

    let other = client()
        .get(&url)
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);

    let since = client()
        .get(&url)
        .header("if-modified-since", &last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(since.status(), 304);
    let before = client()
        .get(&url)
        .header("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(before.status(), 200);
}

#[tokio::test]
async fn head_has_the_get_headers_and_no_body() {
    let (origin, server, _dir) = setup().await;
    let url = server.proxy(&origin.url("/img/photo-480.jpg"));
    let head = client().head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "image/jpeg");
    assert_eq!(
        head.headers()["content-length"],
        fixture("photo-480.jpg").len().to_string().as_str()
    );
    assert!(head.bytes().await.unwrap().is_empty());
    let health = client().head(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn cors_preflight_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config_for(dir.path(), None)).await;
    let response = client()
        .request(
            reqwest::Method::OPTIONS,
            server.url("/?http://example.com/a.jpg"),
        )
        .header("origin", "https://blog.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "x-custom")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let h = response.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("GET")
    );
    assert_eq!(h["access-control-allow-headers"], "x-custom");
    assert!(h.get("access-control-max-age").is_some());
}

#[tokio::test]
async fn cleartext_http2_is_served() {
    let (origin, server, _dir) = setup().await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2
        .get(server.proxy(&origin.url("/img/photo-480.jpg")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        fixture("photo-480.jpg").as_slice()
    );
}

#[tokio::test]
async fn bad_requests_get_a_json_error_with_a_stable_code() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config_for(dir.path(), None)).await;
    let cases = [
        ("/", 400, "bad-url"),
        ("/?not%20a%20url", 400, "bad-url"),
        ("/?ftp://example.com/a.jpg", 400, "bad-url"),
        ("/nope", 404, "not-found"),
        ("/m/xyz", 404, "not-found"),
    ];
    for (path, status, code) in cases {
        let response = client().get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{path}");
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    let post = client().post(server.url("/healthz")).send().await.unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test]
async fn purge_needs_the_admin_token_and_makes_the_next_request_fetch_again() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    config.admin.token = "s3cret-token".into();
    let server = Server::start(config).await;
    let upstream = origin.url("/img/photo-480.jpg");
    assert_eq!(get_status(server.proxy(&upstream)).await, 200);

    let purge = |token: Option<&'static str>| {
        let request = client().delete(server.proxy(&upstream));
        let request = match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        request.send()
    };
    assert_eq!(purge(None).await.unwrap().status(), 401);
    assert_eq!(purge(Some("s3cret-tokem")).await.unwrap().status(), 403);
    assert_eq!(purge(Some("s3cret-token")).await.unwrap().status(), 200);
    assert_eq!(purge(Some("s3cret-token")).await.unwrap().status(), 404);

    let again = client().get(server.proxy(&upstream)).send().await.unwrap();
    assert_eq!(again.headers()["x-imgmirror-source"], "upstream");
    assert_eq!(origin.hits("/img/photo-480.jpg"), 2);
}

#[tokio::test]
async fn admin_endpoints_are_off_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config_for(dir.path(), None)).await;
    let response = client()
        .delete(server.proxy("http://example.com/a.jpg"))
        .bearer_auth("")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn slow_header_senders_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), None);
    config.server.header_read_timeout_secs = 1;
    let server = Server::start(config).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    // The server closes the connection (possibly after a 408) instead of waiting forever.
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "connection still open after 5 s");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}
