//! Tests of the config keys, their defaults, the environment overrides and validation.

use super::*;

fn load_str(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut table: toml::Table = toml::from_str(text).unwrap();
    apply_env(
        &mut table,
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )?;
    let config =
        Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
            path: "test".into(),
            message: e.to_string(),
        })?;
    config.validate()?;
    Ok(config)
}

#[test]
fn shipped_config_parses_and_equals_defaults() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/imgmirror.toml"
    ))
    .unwrap();
    let shipped = load_str(&text, &[]).unwrap();
    let defaults = Config::default();
    assert_eq!(format!("{shipped:?}"), format!("{defaults:?}"));
}

#[test]
fn issue_example_resolve_and_allow_cidrs() {
    let config = load_str(
        r#"
        [upstream]
        allow_cidrs = ["127.0.0.1/32"]
        resolve = { "static.1sapp.com:80" = "127.0.0.1:18080" }
        "#,
        &[],
    )
    .unwrap();
    assert_eq!(
        config.upstream.allow_cidrs,
        vec!["127.0.0.1/32".parse().unwrap()]
    );
    assert_eq!(
        config.upstream.resolve["static.1sapp.com:80"],
        "127.0.0.1:18080".parse().unwrap()
    );
}

#[test]
fn env_overrides_file_with_typed_values() {
    let config = load_str(
        "[cache]\nmemory_bytes = 10\n",
        &[
            ("IMGMIRROR_CACHE_MEMORY_BYTES", "2048"),
            ("IMGMIRROR_UPSTREAM_ALLOW_CIDRS", r#"["10.0.0.0/8"]"#),
            ("IMGMIRROR_UPSTREAM_USER_AGENT", "test agent/1"),
            ("IMGMIRROR_LOG", "debug"),
            ("PATH", "/bin"),
        ],
    )
    .unwrap();
    assert_eq!(config.cache.memory_bytes, 2048);
    assert_eq!(
        config.upstream.allow_cidrs,
        vec!["10.0.0.0/8".parse().unwrap()]
    );
    assert_eq!(config.upstream.user_agent, "test agent/1");
}

#[test]
fn unknown_keys_and_bad_values_are_refused_by_name() {
    let err = load_str("[upstream]\nallow_cidr = []\n", &[]).unwrap_err();
    assert!(err.to_string().contains("allow_cidr"), "{err}");
    let err = load_str("[upstream]\nmax_bytes = 0\n", &[]).unwrap_err();
    assert!(err.to_string().contains("upstream.max_bytes"), "{err}");
    let err = load_str("", &[("IMGMIRROR_SERVER_LISTEN", "nonsense")]).unwrap_err();
    assert!(err.to_string().contains("server.listen"), "{err}");
    let err = load_str(
        "[upstream]\nresolve = { \"a:80\" = \"10.0.0.1:80\", \"a:443\" = \"10.0.0.2:443\" }\n",
        &[],
    )
    .unwrap_err();
    assert!(err.to_string().contains("two addresses"), "{err}");
    let err = load_str("[article]\nfront_matter_size = \"480\"\n", &[]).unwrap_err();
    assert!(
        err.to_string().contains("article.front_matter_size"),
        "{err}"
    );
    let config = load_str(
        "",
        &[
            ("IMGMIRROR_ARTICLE_FRONT_MATTER_SIZE", "960,540"),
            (
                "IMGMIRROR_ARTICLE_WORKER_PREFIXES",
                r#"["https://a.workers.dev/?"]"#,
            ),
        ],
    )
    .unwrap();
    assert_eq!(config.article.front_matter_size(), Some((960, 540)));
    assert_eq!(config.article.worker_prefixes, ["https://a.workers.dev/?"]);
}

#[test]
fn log_metrics_and_cache_control_keys() {
    let config = load_str(
        "[log]\nformat = \"json\"\n",
        &[
            ("IMGMIRROR_METRICS_LISTEN", "127.0.0.1:9090"),
            ("IMGMIRROR_LOG_FILTER", "warn,imgmirror=debug"),
            ("IMGMIRROR_LOG", "trace"),
        ],
    )
    .unwrap();
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.log.filter, "warn,imgmirror=debug");
    let listen = config.metrics.listen_addr().map(|a| a.to_string());
    assert_eq!(listen.as_deref(), Some("127.0.0.1:9090"));
    assert_eq!(Config::default().metrics.listen_addr(), None);
    for (text, key) in [
        (r#"log = { format = "xml" }"#, "format"),
        (r#"log = { filter = "imgmirror=loud" }"#, "log.filter"),
        (r#"metrics = { listen = "nowhere" }"#, "metrics.listen"),
        (
            r#"response = { cache_control_proxy = "max-age=9, immutable" }"#,
            "_proxy",
        ),
        (
            r#"response = { cache_control_not_found = "" }"#,
            "_not_found",
        ),
    ] {
        let err = load_str(text, &[]).unwrap_err();
        assert!(err.to_string().contains(key), "{text}: {err}");
    }
}

#[test]
fn client_and_source_limit_keys() {
    let defaults = Config::default();
    assert_eq!(defaults.upstream.per_host_slots(), 16);
    assert_eq!(defaults.server.idle_timeout_secs, 60);
    let config = load_str(
        "[upstream]\nmax_in_flight = 3\nallow_hosts = [\"*.1sapp.com\"]\n",
        &[("IMGMIRROR_ADMIN_TOKEN", "from-env")],
    )
    .unwrap();
    assert_eq!(config.upstream.per_host_slots(), 1);
    assert_eq!(config.upstream.allow_hosts, ["*.1sapp.com"]);
    assert_eq!(config.admin.token, "from-env");
    for (text, key) in [
        (
            r#"upstream = { allow_hosts = ["a.*.com"] }"#,
            "upstream.allow_hosts",
        ),
        (
            r#"upstream = { deny_hosts = ["*."] }"#,
            "upstream.deny_hosts",
        ),
        (
            "upstream = { max_in_flight = 4, max_in_flight_per_host = 5 }",
            "max_in_flight_per_host",
        ),
        ("server = { idle_timeout_secs = 0 }", "server."),
        (
            "server = { max_request_head_bytes = 1024 }",
            "server.max_request_head_bytes",
        ),
    ] {
        let err = load_str(text, &[]).unwrap_err();
        assert!(err.to_string().contains(key), "{text}: {err}");
    }
}

#[test]
fn security_keys_and_trusted_proxies_from_the_environment() {
    let config = load_str(
        "",
        &[
            (
                "IMGMIRROR_SECURITY_SIGNING_KEYS",
                "new-key-0123456789abcdef,old-key-0123456789abcdef",
            ),
            ("IMGMIRROR_SERVER_TRUSTED_PROXIES", r#"["10.0.0.0/8"]"#),
            ("IMGMIRROR_SERVER_PER_CLIENT_EXPENSIVE", "3"),
        ],
    )
    .unwrap();
    assert_eq!(config.security.signing_keys.len(), 2);
    assert_eq!(
        config.server.trusted_proxies,
        vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]
    );
    assert_eq!(config.server.per_client_expensive, 3);
    assert!(
        !format!("{config:?}").contains("old-key"),
        "keys never show"
    );
    let short = load_str("[security]\nsigning_keys = [\"short\"]\n", &[]).unwrap_err();
    assert!(
        short.to_string().contains("security.signing_keys"),
        "{short}"
    );
}

#[test]
fn upstream_host_entries_are_parsed_and_checked_by_name() {
    let config = load_str(
        r#"
        [[upstream.host]]
        pattern = "*.1sapp.com"
        referer = "https://www.1sapp.com/"
        user_agent = ""
        headers = { "X-Requested-With" = "imgmirror" }
        max_in_flight = 2
        rate_per_sec = 5.0
        [[upstream.host]]
        pattern = "images.example"
        "#,
        &[],
    )
    .unwrap();
    let first = &config.upstream.host[0];
    assert_eq!(first.referer, "https://www.1sapp.com/");
    assert_eq!(first.user_agent.as_deref(), Some(""));
    assert_eq!(first.headers["X-Requested-With"], "imgmirror");
    assert_eq!(
        (first.max_in_flight, first.rate_per_sec),
        (Some(2), Some(5.0))
    );
    let second = &config.upstream.host[1];
    assert_eq!((second.referer.as_str(), &second.user_agent), ("", &None));
    for (entry, needle) in [
        (r#"pattern = "a.*.com""#, "pattern"),
        (
            r#"pattern = "x.test", referer = "none""#,
            "referer \"none\"",
        ),
        (
            r#"pattern = "x.test", headers = { "Bad Name" = "1" }"#,
            "headers key \"Bad Name\"",
        ),
        (
            r#"pattern = "x.test", headers = { "X-Ok" = "line\nbreak" }"#,
            "headers.X-Ok",
        ),
        (
            r#"pattern = "x.test", headers = { "Referer" = "https://a/" }"#,
            "set by imgmirror",
        ),
        (r#"pattern = "x.test", max_in_flight = 0"#, "max_in_flight"),
        (r#"pattern = "x.test", rate_per_sec = 0.0"#, "rate_per_sec"),
        (r#"pattern = "x.test", refrer = "x""#, "refrer"),
    ] {
        let text = format!("[[upstream.host]]\n{}\n", entry.replace(", ", "\n"));
        let err = load_str(&text, &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(needle), "{entry}: {text}");
        if !needle.contains("refrer") {
            assert!(
                text.contains("upstream.host") && text.contains("entry 1"),
                "{text}"
            );
        }
    }
    let err = load_str(
        "",
        &[("IMGMIRROR_UPSTREAM_HOST", r#"[{pattern = "a.test"}]"#)],
    );
    assert!(
        err.unwrap_err().to_string().contains("config file only"),
        "arrays of tables are file-only"
    );
}

#[test]
fn in_memory_byte_budgets_have_keys_defaults_and_env() {
    let defaults = Config::default().cache;
    assert_eq!(defaults.url_map_bytes, 32 << 20);
    assert_eq!(defaults.negative_bytes, 8 << 20);
    assert_eq!(defaults.probe_cache_bytes, 4 << 20);
    assert_eq!(defaults.expensive_bytes, 1 << 20);
    let config = load_str(
        "[cache]\nurl_map_bytes = 1048576\n",
        &[("IMGMIRROR_CACHE_NEGATIVE_BYTES", "65536")],
    )
    .unwrap();
    assert_eq!(config.cache.url_map_bytes, 1 << 20);
    assert_eq!(config.cache.negative_bytes, 65536);
    for key in [
        "url_map_bytes",
        "negative_bytes",
        "probe_cache_bytes",
        "expensive_bytes",
    ] {
        let err = load_str(&format!("[cache]\n{key} = 100\n"), &[]).unwrap_err();
        assert!(err.to_string().contains(&format!("cache.{key}")), "{err}");
    }
}

#[test]
fn shipped_seed_host_example_parses_when_uncommented() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/imgmirror.toml"
    ))
    .unwrap();
    let example: String = text
        .lines()
        .skip_while(|l| *l != "# [[upstream.host]]")
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let config = load_str(&example, &[]).unwrap();
    let seed = &config.upstream.host[0];
    assert_eq!(seed.pattern, "*.1sapp.com");
    assert_eq!(seed.referer, "");
    assert!(seed.rate_per_sec.is_some() && seed.max_in_flight.is_some());
}
