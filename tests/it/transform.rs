//! Resized variants over HTTP: the issue's `curl … -H 'Accept: image/webp'` case,
//! `Accept` negotiation and `Vary`, variants rendered once and cached, permalink
//! variants immutable, hostile images refused with clear 4xx, and load shedding (503 +
//! Retry-After) when the render pool is full. Pixel-level correctness (fit modes,
//! orientation, alpha, animation, quality) is unit-tested in `src/transform`.

use crate::support::{Origin, Server, client, config_for, enc, fixture, get_status, setup, sha256};

fn decode(bytes: &[u8]) -> image::DynamicImage {
    image::load_from_memory(bytes).expect("a decodable image")
}

async fn metric(server: &Server, name: &str) -> u64 {
    // Summed over labels (`imgmirror_renders_total{format}`).
    crate::support::metric(server, name).await as u64
}

#[tokio::test]
async fn webp_for_a_client_that_accepts_it_at_the_hinted_size() {
    let (origin, server, _dir) = setup().await;
    let upstream = origin.url("/img/photo-1920.jpg");
    let url = server.url(&format!("/?url={}&w=480&h=319", enc(&upstream)));

    let response = client()
        .get(&url)
        .header("accept", "image/webp,*/*")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let h = response.headers().clone();
    assert_eq!(h["content-type"], "image/webp");
    assert_eq!(h["vary"], "Accept");
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(
        h["link"],
        format!("<{upstream}>; rel=\"canonical\"").as_str()
    );
    assert_eq!(h["x-imgmirror-source"], "render");
    let etag = h["etag"].to_str().unwrap().to_string();
    assert_ne!(etag, format!("\"{}\"", sha256(&fixture("photo-1920.jpg"))));
    let body = response.bytes().await.unwrap();
    assert_eq!(h["content-length"], body.len().to_string().as_str());
    let img = decode(&body);
    // 1920x1200 inside 480x319 keeps the aspect ratio: 480x300.
    assert_eq!((img.width(), img.height()), (480, 300));

    // Without WebP in Accept: JPEG, still varying on Accept, a different variant.
    let jpeg = client()
        .get(&url)
        .header("accept", "image/*")
        .send()
        .await
        .unwrap();
    assert_eq!(jpeg.headers()["content-type"], "image/jpeg");
    assert_eq!(jpeg.headers()["vary"], "Accept");
    assert_ne!(jpeg.headers()["etag"].to_str().unwrap(), etag);

    // An explicit format does not depend on Accept: no Vary.
    let fixed = client()
        .get(format!("{url}&format=png"))
        .header("accept", "image/webp")
        .send()
        .await
        .unwrap();
    assert_eq!(fixed.headers()["content-type"], "image/png");
    assert!(fixed.headers().get("vary").is_none());

    // The same variant again: a 304 for its ETag, and served from memory.
    let again = client()
        .get(&url)
        .header("accept", "image/webp")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
}

#[tokio::test]
async fn a_variant_is_rendered_once_however_often_and_concurrently_it_is_asked_for() {
    let (origin, server, _dir) = setup().await;
    let upstream = origin.url("/img/photo-1080.jpg");
    // Mirror the original first, so all requests below race for the render only.
    assert_eq!(get_status(server.proxy(&upstream)).await, 200);
    let url = server.url(&format!("/?url={}&w=300", enc(&upstream)));
    let requests = (0..20).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let r = client()
                .get(url)
                .header("accept", "image/webp")
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap())
        })
    });
    let results = futures_util::future::join_all(requests).await;
    let first = results[0].as_ref().unwrap().1.clone();
    for result in results {
        let (status, body) = result.unwrap();
        assert_eq!(status, 200);
        assert!(body == first, "concurrent requests got different bytes");
    }
    // Equivalent spellings are the same variant.
    let same = server.url(&format!("/?w=300&fit=inside&url={}&dpr=1", enc(&upstream)));
    let response = client()
        .get(same)
        .header("accept", "image/webp")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.unwrap() == first,
        "reordered options gave other bytes"
    );
    assert_eq!(metric(&server, "imgmirror_renders_total").await, 1);
    assert_eq!(server.files("variants"), 1);
}

#[tokio::test]
async fn variants_survive_eviction_and_restart_as_files() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(config_for(dir.path(), Some(&origin))).await;
    let url_path = format!(
        "/?url={}&w=200&h=200&fit=cover",
        enc(&origin.url("/img/astronaut-512.jpg"))
    );
    let first = client().get(server.url(&url_path)).send().await.unwrap();
    assert_eq!(first.headers()["x-imgmirror-source"], "render");
    let body = first.bytes().await.unwrap();
    assert_eq!((decode(&body).width(), decode(&body).height()), (200, 200));
    server.stop().await;
    drop(server);

    let restarted = Server::start(config_for(dir.path(), Some(&origin))).await;
    let again = client().get(restarted.url(&url_path)).send().await.unwrap();
    assert_eq!(again.headers()["x-imgmirror-source"], "disk");
    assert!(
        again.bytes().await.unwrap() == body,
        "variant changed across restart"
    );
    assert_eq!(metric(&restarted, "imgmirror_renders_total").await, 0);
}

#[tokio::test]
async fn permalink_variants_are_immutable() {
    let (origin, server, _dir) = setup().await;
    let hash = sha256(&fixture("cat-alpha.png"));
    assert_eq!(
        get_status(server.proxy(&origin.url("/img/cat-alpha.png"))).await,
        200
    );
    let response = client()
        .get(server.url(&format!("/m/{hash}.png?w=200&format=jpeg")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    let img = decode(&response.bytes().await.unwrap()).to_rgb8();
    assert_eq!(img.width(), 200);
    // The transparent corner is flattened onto white, never black.
    let corner = img.get_pixel(0, 0);
    assert!(corner.0.iter().all(|&c| c > 240), "corner is {corner:?}");
}

#[tokio::test]
async fn bad_options_are_400_naming_the_option() {
    let (origin, server, _dir) = setup().await;
    let base = format!("/?url={}", enc(&origin.url("/img/photo-480.jpg")));
    for (query, option) in [
        ("&w=0", "w"),
        ("&w=abc", "w"),
        ("&dpr=9", "dpr"),
        ("&q=101", "q"),
        ("&fit=squash", "fit"),
        ("&format=bmp", "format"),
        ("&frobnicate=1", "frobnicate"),
    ] {
        let response = client()
            .get(server.url(&format!("{base}{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains(option),
            "{query}: {body}"
        );
    }
    // Nothing was even fetched for them.
    assert_eq!(origin.total_hits(), 0);
}

#[tokio::test]
async fn a_pixel_bomb_is_refused_fast_and_nothing_is_rendered() {
    let (origin, server, _dir) = setup().await;
    for bomb in ["bomb-50000.jpg", "bomb-50000.png"] {
        let url = server.url(&format!(
            "/?url={}&w=100",
            enc(&origin.url(&format!("/img/{bomb}")))
        ));
        let response = client().get(url).send().await.unwrap();
        assert_eq!(response.status(), 422, "{bomb}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "too-many-pixels", "{bomb}");
    }
    assert_eq!(server.files("variants"), 0);
}

#[tokio::test]
async fn a_truncated_jpeg_is_422_and_nothing_is_stored() {
    let (origin, server, _dir) = setup().await;
    let url = server.url(&format!(
        "/?url={}&w=100",
        enc(&origin.url("/img/truncated-1080.jpg"))
    ));
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 422);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "corrupt-image");
    assert_eq!(server.files("objects"), 0);
    assert_eq!(server.files("variants"), 0);
}

#[tokio::test]
async fn a_full_render_pool_sheds_load_with_503_and_retry_after() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), Some(&origin));
    config.transform.workers = 1;
    config.transform.queue = 1;
    // About the pool's own shedding (503), not the per-client limit (429).
    config.server.per_client_expensive = 0;
    let server = Server::start(config).await;
    let upstream = origin.url("/img/photo-4000.jpg");
    assert_eq!(get_status(server.proxy(&upstream)).await, 200);
    // Twelve different variants at once: one renders, one waits, the rest are shed.
    let requests = (0..12).map(|i| {
        let url = server.url(&format!(
            "/?url={}&w={}&format=png",
            enc(&upstream),
            1000 + i
        ));
        tokio::spawn(async move {
            let r = client().get(url).send().await.unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), retry)
        })
    });
    let results: Vec<_> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let shed: Vec<_> = results.iter().filter(|(s, _)| *s == 503).collect();
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    assert!(!shed.is_empty(), "nothing was shed: {results:?}");
    assert!(ok >= 1, "nothing was rendered: {results:?}");
    assert_eq!(ok + shed.len(), results.len(), "{results:?}");
    assert!(shed.iter().all(|(_, retry)| retry.as_deref() == Some("1")));
}
