//! Per-host upstream policy (`[[upstream.host]]`), observed at the fixture origin: the
//! headers each host is sent (first matching entry wins, on every redirect hop by the
//! hop's host), a host's own `max_in_flight`, its `rate_per_sec`, and that a request
//! refused for the rate is our overload, not a failure the negative cache repeats.
//!
//! Host names are mapped to the loopback origin with `upstream.resolve`.

use std::time::Duration;

use imgmirror::config::{Config, UpstreamHost};

use crate::support::{Origin, Server, client, config_for};

fn host(pattern: &str) -> UpstreamHost {
    UpstreamHost {
        pattern: pattern.into(),
        ..UpstreamHost::default()
    }
}

/// A config whose `names` all resolve (on port 80) to the origin.
fn config_with(dir: &std::path::Path, origin: &Origin, names: &[&str]) -> Config {
    let mut config = config_for(dir, Some(origin));
    // These tests fetch a dozen cold URLs at once from one client: the per-client limit
    // (tests/it/security.rs) would answer some with 429 before the host policy is reached.
    config.server.per_client_expensive = 0;
    for name in names {
        config
            .upstream
            .resolve
            .insert(format!("{name}:80"), origin.addr);
    }
    config
}

#[tokio::test]
async fn each_host_gets_the_headers_of_its_first_matching_entry_on_every_hop() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let names = ["static.1sapp.com", "img.1sapp.com", "other.test"];
    let mut config = config_with(dir.path(), &origin, &names);
    config.upstream.user_agent = "global-agent/1".into();
    config.upstream.host = vec![
        UpstreamHost {
            referer: "https://www.1sapp.com/".into(),
            user_agent: Some("static-agent/2".into()),
            headers: [("X-Api-Key".to_string(), "k1".to_string())].into(),
            ..host("static.1sapp.com")
        },
        // Matches static.1sapp.com too, but the entry above comes first.
        UpstreamHost {
            user_agent: Some(String::new()),
            headers: [("X-Extra".to_string(), "e2".to_string())].into(),
            ..host("*.1sapp.com")
        },
    ];
    Config::validate(&config).unwrap();
    let mut server = Server::start(config).await;
    let http = client();
    for url in [
        "http://static.1sapp.com/img/photo-480.jpg",
        "http://img.1sapp.com/img/astronaut-512.jpg",
        // other.test redirects to static.1sapp.com: each hop by its own host.
        "http://other.test/redirect-to?http://static.1sapp.com/img/photo-1080.jpg",
    ] {
        let response = http.get(server.proxy(url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
    }

    let statics = origin.seen("static.1sapp.com");
    assert_eq!(statics.len(), 2, "{statics:?}");
    for seen in &statics {
        let h = &seen.headers;
        assert_eq!(h["user-agent"], "static-agent/2", "{}", seen.target);
        assert_eq!(h["referer"], "https://www.1sapp.com/", "{}", seen.target);
        assert_eq!(h["x-api-key"], "k1", "{}", seen.target);
        assert!(h.get("x-extra").is_none(), "only the first match applies");
    }
    assert!(statics.iter().any(|s| s.target == "/img/photo-1080.jpg"));

    let [img] = origin.seen("img.1sapp.com").try_into().unwrap();
    assert!(
        img.headers.get("user-agent").is_none(),
        "user_agent \"\" = none"
    );
    assert!(
        img.headers.get("referer").is_none(),
        "no referer configured"
    );
    assert_eq!(img.headers["x-extra"], "e2");
    assert!(img.headers.get("x-api-key").is_none());

    let [other] = origin.seen("other.test").try_into().unwrap();
    assert_eq!(other.headers["user-agent"], "global-agent/1");
    assert!(
        other.headers.get("referer").is_none(),
        "never a Referer by default"
    );
    assert!(other.headers.get("x-api-key").is_none() && other.headers.get("x-extra").is_none());
    server.stop().await;
}

/// Starts `n` fetches of distinct slow URLs on `name` at once and waits for all of them.
async fn fetch_all_at_once(server: &Server, name: &str, n: usize, path: &str) -> Vec<u16> {
    let http = client();
    let requests = (0..n).map(|i| {
        let url = server.proxy(&format!("http://{name}{path}?n={i}"));
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    });
    futures_util::future::join_all(requests).await
}

#[tokio::test]
async fn a_hosts_max_in_flight_bounds_its_concurrent_fetches() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_with(dir.path(), &origin, &["narrow.test", "wide.test"]);
    config.upstream.timeout_secs = 20;
    config.upstream.host = vec![UpstreamHost {
        max_in_flight: Some(2),
        ..host("narrow.test")
    }];
    Config::validate(&config).unwrap();
    let mut server = Server::start(config).await;

    let (narrow, wide) = tokio::join!(
        fetch_all_at_once(&server, "narrow.test", 6, "/slow/400/photo-480.jpg"),
        fetch_all_at_once(&server, "wide.test", 6, "/slow/400/photo-480.jpg"),
    );
    assert!(
        narrow.iter().chain(&wide).all(|s| *s == 200),
        "{narrow:?} {wide:?}"
    );
    assert_eq!(origin.seen("narrow.test").len(), 6);
    assert_eq!(
        origin.peak_in_flight("narrow.test"),
        2,
        "max_in_flight = 2 for narrow.test"
    );
    // The host without an entry keeps max_in_flight_per_host (16): the load really was
    // concurrent, so the bound above is the entry's doing.
    assert!(
        origin.peak_in_flight("wide.test") > 2,
        "wide.test peak {}",
        origin.peak_in_flight("wide.test")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_hosts_rate_per_sec_spaces_its_requests() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_with(dir.path(), &origin, &["rated.test"]);
    config.upstream.timeout_secs = 20;
    config.upstream.host = vec![UpstreamHost {
        rate_per_sec: Some(4.0),
        ..host("rated.test")
    }];
    Config::validate(&config).unwrap();
    let mut server = Server::start(config).await;

    let statuses = fetch_all_at_once(&server, "rated.test", 12, "/img/photo-480.jpg").await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let seen = origin.seen("rated.test");
    assert_eq!(seen.len(), 12);
    // A burst of 4 (one second's worth), then one every 250 ms: the 12th request is due
    // 2 s after the first. Delays on a busy machine only push requests later; the bound
    // leaves room for the first request itself arriving late.
    let span = seen.last().unwrap().at - seen[0].at;
    assert!(
        span >= Duration::from_millis(1500),
        "12 requests at 4/s in {span:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_request_refused_for_the_rate_is_not_negative_cached() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_with(dir.path(), &origin, &["burst.test"]);
    // One request per 2 s; a request waits at most half of the 2 s timeout (1 s), so the
    // second of two at once is refused at once.
    config.upstream.timeout_secs = 2;
    config.cache.negative_ttl_secs = 300;
    config.upstream.host = vec![UpstreamHost {
        rate_per_sec: Some(0.5),
        ..host("burst.test")
    }];
    Config::validate(&config).unwrap();
    let mut server = Server::start(config).await;
    let http = client();
    let first = server.proxy("http://burst.test/img/photo-480.jpg");
    let second = server.proxy("http://burst.test/img/astronaut-512.jpg");

    assert_eq!(http.get(&first).send().await.unwrap().status(), 200);
    let refused = http.get(&second).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body = refused.text().await.unwrap();
    assert!(body.contains("overloaded"), "{body}");
    assert_eq!(
        origin.hits("/img/astronaut-512.jpg"),
        0,
        "refused before any request"
    );

    // Once the bucket has a token again the same URL is fetched: the refusal was not
    // remembered (the negative cache would repeat it for 300 s).
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let retried = http.get(&second).send().await.unwrap();
    assert_eq!(retried.status(), 200);
    assert_eq!(origin.hits("/img/astronaut-512.jpg"), 1);
    server.stop().await;
}
