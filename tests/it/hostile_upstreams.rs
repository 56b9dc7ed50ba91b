//! Hostile upstreams and hostile request URLs end to end (issue 8, item 10): a gzip bomb,
//! an endless chunked body, a tarpit, redirect loops and redirects to other schemes, 100 KB
//! URLs, CR LF in URLs, and IDNA host names that map to loopback. Each case names the
//! attack, asserts the refusal (status and code), that an honest render sent at the same
//! moment is served, and that the attack left nothing in the store (`support::attack`).

use std::time::{Duration, Instant};

use crate::support::attack::{
    assert_nothing_stored, during_honest, during_honest_with, raw_request,
};
use crate::support::{Origin, Server, config_for, enc, fixture, setup};

/// A gzip bomb: 256 KB that inflate to 256 MiB (a JPEG header, then zeros), served with
/// `Content-Encoding: gzip` and `Content-Type: image/jpeg`. imgmirror never asks for or
/// inflates compressed bodies: the bytes it gets are gzip, not an image, so 415
/// `not-an-image`, after reading 256 KB, not 256 MiB.
#[tokio::test]
async fn a_gzip_bomb_is_refused_as_not_an_image_without_inflating_it() {
    let (origin, mut server, _dir) = setup().await;
    let bomb = fixture("gzip-bomb-256m.jpg.gz");
    origin.set_bytes("bomb.jpg", bomb, "image/jpeg", Some("gzip"));
    let upstream = origin.url("/bytes/bomb.jpg");
    let started = Instant::now();
    let answer = during_honest(&server, &origin, &server.proxy(&upstream)).await;
    answer.assert_refused(415, "not-an-image", "gzip bomb");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(answer.headers.get("content-encoding").is_none());
    // Nothing asked the upstream for a compressed body in the first place.
    for (target, headers) in origin.heads() {
        if let Some(accept) = headers.get("accept-encoding") {
            assert!(
                !accept.to_str().unwrap().contains("gzip"),
                "{target} asked for gzip"
            );
        }
    }
    assert_nothing_stored(&mut server, &[upstream], &[]).await;
}

/// An endless chunked body (no Content-Length; 6 GiB if read to the end) against the
/// default `upstream.max_bytes`: refused with 413 `too-large` as the cap is crossed, with
/// no object and no temp file left.
#[tokio::test]
async fn an_endless_chunked_body_is_cut_at_the_size_limit() {
    let (origin, mut server, _dir) = setup().await;
    let upstream = origin.url("/endless/a.jpg");
    let started = Instant::now();
    let answer = during_honest(&server, &origin, &server.proxy(&upstream)).await;
    answer.assert_refused(413, "too-large", "endless body");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_nothing_stored(&mut server, &[upstream], &[]).await;
}

/// A tarpit: the upstream answers at once, then trickles the body a byte every 200 ms (a
/// 37 KB photo would take two hours), so no read ever times out. `upstream.timeout_secs`
/// bounds the whole fetch: 504 `upstream-timeout` after it, and meanwhile an honest
/// request is served.
#[tokio::test]
async fn a_trickling_upstream_is_cut_at_the_time_limit() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    config.upstream.timeout_secs = 2;
    let mut server = Server::start(config).await;
    let upstream = origin.url("/trickle/200/photo-480.jpg");
    let started = Instant::now();
    let answer = during_honest(&server, &origin, &server.proxy(&upstream)).await;
    answer.assert_refused(504, "upstream-timeout", "tarpit");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert_nothing_stored(&mut server, &[upstream], &[]).await;
}

/// Redirect loops (a → b → a …, and a page redirecting to itself) end at
/// `upstream.max_redirects` with 502 `upstream-error`: a bounded number of upstream
/// requests, nothing stored.
#[tokio::test]
async fn redirect_loops_end_at_the_redirect_limit() {
    let (origin, mut server, _dir) = setup().await;
    let mut refused = Vec::new();
    for path in ["/loop/a", "/self-loop"] {
        let upstream = origin.url(path);
        let answer = during_honest(&server, &origin, &server.proxy(&upstream)).await;
        answer.assert_refused(502, "upstream-error", path);
        refused.push(upstream);
    }
    // 5 redirects followed (the default), so 6 requests per loop at most.
    assert!(origin.hits("/loop/a") + origin.hits("/loop/b") <= 6);
    assert!(origin.hits("/self-loop") <= 6);
    assert_nothing_stored(&mut server, &refused, &[]).await;
}

/// Redirects from an allowed origin to `file://` and every other scheme reqwest might
/// know: refused as a bad URL (400 `bad-url`) without following them; nothing stored.
#[tokio::test]
async fn redirects_to_other_schemes_are_refused() {
    let (origin, mut server, _dir) = setup().await;
    let mut refused = Vec::new();
    for target in [
        "file:///etc/passwd",
        "file://localhost/etc/passwd",
        "ftp://example.com/a.jpg",
        "gopher://127.0.0.1:70/_GET%20/",
        "data:image/jpeg;base64,/9j/4AAQSkZJRgABAQ==",
        "javascript:alert(1)",
        "dict://127.0.0.1:11211/stats",
        "ws://127.0.0.1/a.jpg",
    ] {
        let upstream = origin.url(&format!("/redirect-to?{target}"));
        let answer = during_honest(&server, &origin, &server.proxy(&upstream)).await;
        answer.assert_refused(400, "bad-url", target);
        refused.push(upstream);
    }
    assert_nothing_stored(&mut server, &refused, &[]).await;
}

/// 100 KB request URLs, in the worker form, the `url=` form and as a permalink path (sent
/// raw: reqwest itself refuses URIs over 64 KB), get 414 `uri-too-long` like any target
/// over the 8 KiB cap, even past the whole request-head budget
/// (`server.max_request_head_bytes`, 64 KiB, which a 100 KB header still gets: 431).
/// Nothing is parsed, fetched or stored.
#[tokio::test]
async fn urls_of_100_kb_are_refused() {
    let (origin, mut server, _dir) = setup().await;
    let mut refused = Vec::new();
    // 100 KB is more than hyper buffers for a head (`server.max_request_head_bytes`): the
    // first request line is measured at the socket, so it is a 414 all the same.
    for (kb, status) in [(100, 414), (60, 414)] {
        let pad = "a".repeat(kb * 1024);
        let upstream = origin.url(&format!("/img/photo-480.jpg?pad={pad}"));
        for target in [
            format!("/?{upstream}"),
            format!("/?url={}&w=100", enc(&upstream)),
            format!("/m/{pad}"),
        ] {
            let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let (got, answer) = during_honest_with(
                &server,
                &origin,
                &target,
                raw_request(&server, request.as_bytes()),
            )
            .await;
            let shown = &answer[..answer.len().min(300)];
            assert_eq!(got, status, "{kb} KB {}…: {shown}", &target[..40]);
            assert!(answer.contains("uri-too-long"), "{shown}");
        }
        refused.push(upstream);
    }
    let header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let (got, _) = raw_request(&server, header.as_bytes()).await;
    assert_eq!(got, 431, "a head over max_request_head_bytes");
    assert_eq!(origin.total_hits(), 1, "only the honest photo was fetched");
    assert_nothing_stored(&mut server, &refused, &[]).await;
}

/// CR LF in request URLs (`%0d%0a`, in the worker form and decoded in the `url=` form and
/// in an option): no header is injected, neither into the upstream request (it sees one
/// request, with no `X-Injected` header) nor into the response.
#[tokio::test]
async fn crlf_in_urls_injects_no_header() {
    let (origin, mut server, _dir) = setup().await;
    let photo = origin.url("/img/photo-480.jpg");
    let injected = "%0d%0aX-Injected:%20yes%0d%0a%0d%0aGET%20/img/cat-alpha.png%20HTTP/1.1";
    let attacks = [
        server.proxy(&format!("{photo}{injected}")),
        server.url(&format!("/?url={}{injected}", enc(&photo))),
        server.url(&format!("/?url={}&w=100{injected}", enc(&photo))),
        server.url(&format!("/?url={}&w=100&fit={injected}", enc(&photo))),
    ];
    for attack in &attacks {
        let answer = during_honest(&server, &origin, attack).await;
        assert_ne!(answer.status, 200, "{attack}");
        for (name, value) in &answer.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase();
            assert!(
                name.as_str() != "x-injected" && !value.contains("x-injected"),
                "{attack}: response header {name}: {value}"
            );
        }
    }
    for (target, headers) in origin.heads() {
        assert!(headers.get("x-injected").is_none(), "{target}: {headers:?}");
        assert!(
            !target.contains('\r') && !target.contains('\n'),
            "{target:?}"
        );
    }
    assert_eq!(
        origin.hits("/img/cat-alpha.png"),
        0,
        "a second request was smuggled"
    );
    assert_nothing_stored(&mut server, &[], &[]).await;
}

/// IDNA host names that the URL parser's mapping turns into loopback: full-width
/// `ｌｏｃａｌｈｏｓｔ`, mixed case with a trailing dot, full-width digits and ideographic
/// full stops (`１２７。０。０。１`), a soft hyphen inside `localhost`. The server allows
/// only the honest origin's address (127.0.0.2), so each is refused 403
/// `forbidden-destination` and the victim on 127.0.0.1 is never reached.
#[tokio::test]
async fn idna_names_that_map_to_loopback_are_refused() {
    let victim = Origin::start().await;
    let port = victim.addr.port();
    let honest = Origin::start_on("127.0.0.2:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), None);
    config.upstream.allow_cidrs = vec!["127.0.0.2/32".parse().unwrap()];
    config.upstream.allowed_ports = vec![80, 443, port, honest.addr.port()];
    let mut server = Server::start(config).await;
    let mut refused = Vec::new();
    for host in [
        "ｌｏｃａｌｈｏｓｔ",
        "LocalHost.",
        "ＬＯＣＡＬＨＯＳＴ．",
        "loc\u{00AD}alhost",
        "１２７。０。０。１",
        "１２７．１",
        "0x7f．0．0．1",
    ] {
        let upstream = format!("http://{host}:{port}/img/photo-480.jpg");
        let attack = server.url(&format!("/?url={}", enc(&upstream)));
        let answer = during_honest(&server, &honest, &attack).await;
        answer.assert_refused(403, "forbidden-destination", host);
        refused.push(upstream);
    }
    assert_eq!(victim.total_hits(), 0, "loopback was reached");
    assert_nothing_stored(&mut server, &refused, &[]).await;
}

/// A raw request with a bare CR in its target (not percent-encoded, the way a header would
/// be smuggled) is a malformed request: 400 from the HTTP parser, no upstream request.
#[tokio::test]
async fn raw_crlf_in_a_request_target_is_a_bad_request() {
    let (origin, server, _dir) = setup().await;
    let request = format!(
        "GET /?{}\rX-Injected: yes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.url("/img/photo-480.jpg")
    );
    let (status, answer) = raw_request(&server, request.as_bytes()).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("x-injected"),
        "{answer}"
    );
    assert_eq!(origin.total_hits(), 0);
}
