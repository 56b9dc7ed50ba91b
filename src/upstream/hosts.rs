//! Per-host fetch policy: which `[[upstream.host]]` entry a host gets (the first whose
//! pattern matches, by [`guard::host_matches`]), the request headers that entry sets on
//! each hop, and the per-host gates every upstream request passes before a global slot:
//! the host's slots (`max_in_flight`, else `upstream.max_in_flight_per_host`) and its
//! token bucket (`rate_per_sec`).
//!
//! It decides and waits; it does not connect. Refusals are our own overload
//! ([`UpstreamError::Overloaded`], [`UpstreamError::RateLimited`]), which the store never
//! remembers as a failure of the URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue, REFERER, USER_AGENT};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::{UpstreamError, guard};
use crate::config::{UpstreamConfig, UpstreamHost};

/// Hosts tracked before idle ones (no request holding or waiting for a slot, bucket
/// full) are pruned.
const HOSTS_BEFORE_PRUNE: usize = 256;

/// What one `[[upstream.host]]` entry (or the `[upstream]` defaults) asks for.
#[derive(Debug)]
struct Rule {
    pattern: String,
    headers: HeaderMap,
    slots: usize,
    rate_per_sec: Option<f64>,
}

impl Rule {
    fn from_config(entry: &UpstreamHost, config: &UpstreamConfig) -> Rule {
        let mut rule = Rule::defaults(config);
        rule.pattern = entry.pattern.clone();
        if let Some(ua) = &entry.user_agent {
            rule.headers.remove(USER_AGENT);
            if let Ok(v) = HeaderValue::from_str(ua)
                && !ua.is_empty()
            {
                rule.headers.insert(USER_AGENT, v);
            }
        }
        if let Ok(referer) = HeaderValue::from_str(&entry.referer)
            && !entry.referer.is_empty()
        {
            rule.headers.insert(REFERER, referer);
        }
        // `Config::validate` refuses bad names and values at load; one that reaches
        // here unvalidated is left out rather than sent mangled.
        for (name, value) in &entry.headers {
            let parsed = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            );
            if let (Ok(name), Ok(value)) = parsed {
                rule.headers.insert(name, value);
            } else {
                tracing::warn!(pattern = %entry.pattern, header = %name, "invalid upstream header left out");
            }
        }
        rule.slots = entry.max_in_flight.unwrap_or(rule.slots).max(1);
        rule.rate_per_sec = entry.rate_per_sec.filter(|r| r.is_finite() && *r > 0.0);
        rule
    }

    fn defaults(config: &UpstreamConfig) -> Rule {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("image/*,*/*;q=0.8"));
        if let Ok(ua) = HeaderValue::from_str(&config.user_agent)
            && !config.user_agent.is_empty()
        {
            headers.insert(USER_AGENT, ua);
        }
        Rule {
            pattern: String::new(),
            headers,
            slots: config.per_host_slots(),
            rate_per_sec: None,
        }
    }
}

/// A token bucket holding one second's worth of requests (at least one). Tokens may go
/// negative: each waiting request has reserved the token it will get.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        let capacity = rate.floor().max(1.0);
        Bucket {
            rate,
            capacity,
            tokens: capacity,
            at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.at = now;
    }

    /// Reserves a token and says when it is due, or `None` (nothing reserved) when that
    /// would be after `latest`.
    fn take(&mut self, now: Instant, latest: Instant) -> Option<Instant> {
        self.refill(now);
        let due = if self.tokens >= 1.0 {
            now
        } else {
            now + std::time::Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        };
        if due > latest {
            return None;
        }
        self.tokens -= 1.0;
        Some(due)
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.capacity
    }
}

/// One upstream host's gates.
#[derive(Debug)]
struct HostState {
    rule: Arc<Rule>,
    slots: Arc<Semaphore>,
    bucket: Option<Mutex<Bucket>>,
}

impl HostState {
    fn idle(&self, now: Instant) -> bool {
        self.bucket
            .as_ref()
            .is_none_or(|b| b.lock().unwrap_or_else(|e| e.into_inner()).is_full(now))
    }
}

/// Leave to send requests to one host: its slot, held until dropped, and its headers.
pub(super) struct Pass {
    host: String,
    state: Arc<HostState>,
    _slot: OwnedSemaphorePermit,
}

impl Pass {
    pub(super) fn host(&self) -> &str {
        &self.host
    }

    /// The headers every request to this host carries (Accept, User-Agent, Referer and
    /// the entry's extras).
    pub(super) fn headers(&self) -> &HeaderMap {
        &self.state.rule.headers
    }
}

/// The compiled `[[upstream.host]]` entries and the per-host gates, created on first use
/// and dropped when idle.
pub(super) struct Hosts {
    rules: Vec<Arc<Rule>>,
    fallback: Arc<Rule>,
    map: Mutex<HashMap<String, Arc<HostState>>>,
}

/// The name a host's gates are kept under: lowercase, no trailing dot, no port.
pub(super) fn host_key(url: &url::Url) -> String {
    url.host_str()
        .unwrap_or("")
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

impl Hosts {
    pub(super) fn new(config: &UpstreamConfig) -> Hosts {
        Hosts {
            rules: config
                .host
                .iter()
                .map(|entry| Arc::new(Rule::from_config(entry, config)))
                .collect(),
            fallback: Arc::new(Rule::defaults(config)),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn rule_for(&self, host: &str) -> Arc<Rule> {
        self.rules
            .iter()
            .find(|r| guard::host_matches(&r.pattern, host))
            .unwrap_or(&self.fallback)
            .clone()
    }

    fn state(&self, host: &str) -> Arc<HostState> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = map.get(host) {
            return state.clone();
        }
        if map.len() >= HOSTS_BEFORE_PRUNE {
            // Only the map holds an idle host's state: every request (holding a slot or
            // waiting for one) holds a clone. A bucket still refilling is kept, so
            // pruning cannot hand a rate-limited host a fresh burst.
            let now = Instant::now();
            map.retain(|_, state| Arc::strong_count(state) > 1 || !state.idle(now));
        }
        let rule = self.rule_for(host);
        let state = Arc::new(HostState {
            slots: Arc::new(Semaphore::new(rule.slots)),
            bucket: rule.rate_per_sec.map(|r| Mutex::new(Bucket::new(r))),
            rule,
        });
        map.insert(host.to_string(), state.clone());
        state
    }

    /// Waits (until `deadline`) for a slot of `host`, then for its turn under the host's
    /// rate: at most half of the time left, refused at once when the turn would come
    /// later, so a fetch that waited always has time left to run.
    pub(super) async fn enter(&self, host: &str, deadline: Instant) -> Result<Pass, UpstreamError> {
        let state = self.state(host);
        let slot = tokio::time::timeout_at(deadline, state.slots.clone().acquire_owned())
            .await
            .map_err(|_| UpstreamError::Overloaded)?
            .map_err(|_| UpstreamError::Overloaded)?;
        if let Some(bucket) = &state.bucket {
            let now = Instant::now();
            let latest = now + deadline.saturating_duration_since(now) / 2;
            let due = bucket
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(now, latest)
                .ok_or_else(|| UpstreamError::RateLimited {
                    host: host.to_string(),
                })?;
            tokio::time::sleep_until(due).await;
        }
        Ok(Pass {
            host: host.to_string(),
            state,
            _slot: slot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(pattern: &str) -> UpstreamHost {
        UpstreamHost {
            pattern: pattern.into(),
            ..UpstreamHost::default()
        }
    }

    #[test]
    fn first_matching_entry_wins_and_sets_the_headers() {
        let config = UpstreamConfig {
            host: vec![
                UpstreamHost {
                    referer: "https://www.1sapp.com/".into(),
                    user_agent: Some("Mozilla/5.0 test".into()),
                    headers: [("X-Extra".to_string(), "1".to_string())].into(),
                    ..entry("static.1sapp.com")
                },
                UpstreamHost {
                    user_agent: Some(String::new()),
                    ..entry("*.1sapp.com")
                },
            ],
            ..UpstreamConfig::default()
        };
        let hosts = Hosts::new(&config);
        let first = hosts.rule_for("static.1sapp.com");
        assert_eq!(first.headers[REFERER], "https://www.1sapp.com/");
        assert_eq!(first.headers[USER_AGENT], "Mozilla/5.0 test");
        assert_eq!(first.headers["x-extra"], "1");
        let second = hosts.rule_for("img.1sapp.com");
        assert!(second.headers.get(USER_AGENT).is_none(), "\"\" = no UA");
        assert!(second.headers.get(REFERER).is_none());
        let other = hosts.rule_for("example.org");
        assert_eq!(other.headers[USER_AGENT], config.user_agent.as_str());
        assert!(other.headers.get(REFERER).is_none());
        assert_eq!(other.slots, config.per_host_slots());
    }

    #[test]
    fn bucket_spaces_requests_and_refuses_past_the_bound() {
        let now = Instant::now();
        let mut bucket = Bucket::new(2.0);
        bucket.at = now;
        let far = now + Duration::from_secs(60);
        // Two tokens at once (one second's worth), then one every half second.
        assert_eq!(bucket.take(now, far), Some(now));
        assert_eq!(bucket.take(now, far), Some(now));
        let third = bucket.take(now, far).unwrap();
        assert!((third - now).as_secs_f64() > 0.49 && (third - now).as_secs_f64() < 0.51);
        let fourth = bucket.take(now, far).unwrap();
        assert!((fourth - now).as_secs_f64() > 0.99);
        // A turn later than the bound reserves nothing.
        assert_eq!(bucket.take(now, now + Duration::from_millis(100)), None);
        let fifth = bucket.take(now, far).unwrap();
        assert!((fifth - now).as_secs_f64() < 1.51);
        assert!(!bucket.is_full(now));
        assert!(bucket.is_full(now + Duration::from_secs(10)));
    }
}
