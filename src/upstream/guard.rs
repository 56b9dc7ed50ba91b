//! The server-side request forgery guard: which URLs and addresses imgmirror may fetch.
//!
//! imgmirror fetches URLs that strangers give it, so every hop of every fetch passes two
//! checks, in this order:
//!
//! 1. [`Policy::check_url`], on the URL itself: scheme (http/https only), no userinfo,
//!    an allowed port, and when the host is an IP literal (in any spelling: the `url`
//!    crate has already turned `2130706433`, `0x7f.1` and `[::ffff:127.0.0.1]` into
//!    addresses) the address check below. Redirect targets are checked again, because
//!    the fetcher follows redirects itself.
//! 2. [`GuardedResolver`], on every address a host name resolves to, at the moment the
//!    connection is made: reqwest asks this resolver and connects only to what it
//!    returns, so a DNS answer cannot change between the check and the connect.
//!
//! Refused by default: loopback, private (RFC 1918), CGNAT, link-local (including the
//! cloud metadata address), ULA, multicast, broadcast, unspecified, documentation,
//! benchmarking and reserved ranges, and IPv4 addresses hidden in IPv6 (mapped,
//! compatible, NAT64, 6to4, Teredo). `upstream.allow_cidrs` opens ranges on purpose;
//! `upstream.resolve` pins host names to addresses, which are still checked.
//!
//! Before the address check, the operator's source rules: a host on
//! `upstream.deny_hosts` is refused, and with `upstream.allow_hosts` set only hosts on it
//! are fetched (patterns are exact names or `*.name` for its subdomains; see
//! [`host_matches`]). Like everything here they apply to every redirect hop.
//!
//! This module does not open connections; it only decides.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use url::{Host, Url};

use crate::config::UpstreamConfig;

/// Why a destination was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    #[error("scheme {0:?} is not allowed (only http and https)")]
    Scheme(String),
    #[error("credentials in the URL are not allowed")]
    Userinfo,
    #[error("port {0} is not allowed")]
    Port(u16),
    #[error("address {addr} is not allowed ({range})")]
    Address { addr: IpAddr, range: &'static str },
    #[error("host {host} is pinned by upstream.resolve only for other ports")]
    UnmappedPort { host: String },
    #[error("host {0} has no address")]
    NoAddress(String),
    #[error("URL has no host")]
    NoHost,
    #[error("host {host} is {rule}")]
    HostRule { host: String, rule: &'static str },
}

/// Whether `host` (lowercase, no trailing dot) matches `pattern`: an exact name, or
/// `*.name`, which matches every subdomain of `name` but not `name` itself. Case is
/// ignored; the trailing dot of a fully qualified pattern is too.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim().trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(parent) => {
            host.len() > parent.len() + 1 && {
                let (sub, rest) = host.split_at(host.len() - parent.len());
                sub.ends_with('.') && rest.eq_ignore_ascii_case(parent)
            }
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Where one hop actually goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The URL to hand to the HTTP client; differs from the requested one only when
    /// `upstream.resolve` moved the port.
    pub connect_url: Url,
    /// The `Host` header to send when `connect_url` changed the authority.
    pub host_header: Option<String>,
}

/// The destination policy, built once from the config.
#[derive(Debug)]
pub struct Policy {
    allow: Vec<IpNet>,
    ports: Vec<u16>,
    /// Lowercase host → (port the URL names → address to connect to).
    pinned: HashMap<String, HashMap<u16, SocketAddr>>,
    allow_hosts: Vec<String>,
    deny_hosts: Vec<String>,
}

impl Policy {
    pub fn new(config: &UpstreamConfig) -> Policy {
        let mut pinned: HashMap<String, HashMap<u16, SocketAddr>> = HashMap::new();
        for (key, addr) in &config.resolve {
            // Config::validate has checked the shape of every key.
            if let Some((host, port)) = key.rsplit_once(':')
                && let Ok(port) = port.parse::<u16>()
            {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                pinned
                    .entry(host.to_ascii_lowercase())
                    .or_default()
                    .insert(port, *addr);
            }
        }
        Policy {
            allow: config.allow_cidrs.clone(),
            ports: config.allowed_ports.clone(),
            pinned,
            allow_hosts: config.allow_hosts.clone(),
            deny_hosts: config.deny_hosts.clone(),
        }
    }

    /// The operator's source rules: `deny_hosts` first, then `allow_hosts` when set.
    fn check_host(&self, url: &Url) -> Result<(), GuardError> {
        let host = url.host_str().ok_or(GuardError::NoHost)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let refused = |rule| {
            Err(GuardError::HostRule {
                host: host.clone(),
                rule,
            })
        };
        if self.deny_hosts.iter().any(|p| host_matches(p, &host)) {
            return refused("on upstream.deny_hosts");
        }
        if !self.allow_hosts.is_empty() && !self.allow_hosts.iter().any(|p| host_matches(p, &host))
        {
            return refused("not on upstream.allow_hosts");
        }
        Ok(())
    }

    /// Checks one hop's URL and says where to connect.
    pub fn check_url(&self, url: &Url) -> Result<Hop, GuardError> {
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(GuardError::Scheme(url.scheme().to_string()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(GuardError::Userinfo);
        }
        let port = url.port_or_known_default().unwrap_or(0);
        if !self.ports.contains(&port) {
            return Err(GuardError::Port(port));
        }
        self.check_host(url)?;
        let host = url.host().ok_or(GuardError::NoHost)?;
        let name = match host {
            Host::Ipv4(ip) => {
                self.check_ip(IpAddr::V4(ip))?;
                return Ok(direct(url));
            }
            Host::Ipv6(ip) => {
                self.check_ip(IpAddr::V6(ip))?;
                return Ok(direct(url));
            }
            Host::Domain(name) => name.to_ascii_lowercase(),
        };
        // RFC 6761: `localhost` and its subdomains are loopback whatever DNS says (and
        // some resolvers fail `localhost.` instead of answering), so they are refused as
        // the loopback addresses they name, before any lookup, unless one is allowed
        // (then the resolver's filter keeps only that one).
        let bare = name.trim_end_matches('.');
        if bare == "localhost" || bare.ends_with(".localhost") {
            let v4 = self.check_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
            if v4.is_err() && self.check_ip(IpAddr::V6(Ipv6Addr::LOCALHOST)).is_err() {
                return v4.map(|()| direct(url));
            }
        }
        let Some(ports) = self.pinned.get(name.trim_end_matches('.')) else {
            return Ok(direct(url));
        };
        // A pinned host is never looked up in DNS, so a port without a pin has nowhere
        // to go: refuse it rather than guess.
        let target = ports
            .get(&port)
            .ok_or_else(|| GuardError::UnmappedPort { host: name.clone() })?;
        self.check_ip(target.ip())?;
        if target.port() == port {
            return Ok(direct(url));
        }
        let mut connect_url = url.clone();
        // Cannot fail: http(s) URLs with a host always accept a port.
        let _ = connect_url.set_port(Some(target.port()));
        let host_header = match url.port() {
            Some(p) => format!("{name}:{p}"),
            None => name,
        };
        Ok(Hop {
            connect_url,
            host_header: Some(host_header),
        })
    }

    /// Refuses addresses in the default-deny ranges unless `allow_cidrs` opens them.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), GuardError> {
        let Some(range) = refused_range(ip) else {
            return Ok(());
        };
        let embedded = embedded_ipv4(ip).map(IpAddr::V4);
        let allowed = self
            .allow
            .iter()
            .any(|net| net.contains(&ip) || embedded.is_some_and(|v4| net.contains(&v4)));
        if allowed {
            Ok(())
        } else {
            Err(GuardError::Address { addr: ip, range })
        }
    }

    /// The pinned address for a host name, for the resolver.
    fn pinned_addrs(&self, host: &str) -> Option<Vec<SocketAddr>> {
        let ports = self.pinned.get(host.trim_end_matches('.'))?;
        Some(ports.values().copied().collect())
    }
}

fn direct(url: &Url) -> Hop {
    Hop {
        connect_url: url.clone(),
        host_header: None,
    }
}

/// The name of the refused range `ip` falls in, or `None` for a public address.
pub fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[(&str, &str)] = &[
        ("0.0.0.0/8", "this network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("255.255.255.255/32", "broadcast"),
    ];
    find_range(IpAddr::V4(ip), RANGES)
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // IPv4 hidden in IPv6 is judged as the IPv4 address it carries.
    if let Some(range) = embedded_ipv4(IpAddr::V6(ip)).and_then(refused_v4) {
        return Some(range);
    }
    const RANGES: &[(&str, &str)] = &[
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "unique local (ULA)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    ];
    find_range(IpAddr::V6(ip), RANGES)
}

fn find_range(ip: IpAddr, ranges: &[(&str, &'static str)]) -> Option<&'static str> {
    ranges.iter().find_map(|(net, name)| {
        let net: IpNet = net.parse().ok()?;
        net.contains(&ip).then_some(*name)
    })
}

/// The IPv4 address carried by an IPv6 address: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`), 6to4 (`2002::/16`) and
/// Teredo (`2001::/32`, where the client address is stored inverted).
fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // `::` and `::1` are themselves, not IPv4-compatible forms.
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x2002, _, _, ..] => Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        [0x2001, 0, ..] => Some(Ipv4Addr::new(!o[12], !o[13], !o[14], !o[15])),
        _ => None,
    }
}

/// The resolver reqwest connects through: pinned names first, then the system resolver,
/// keeping only addresses the policy allows.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<Policy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<Policy>) -> GuardedResolver {
        GuardedResolver { policy }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            let candidates: Vec<SocketAddr> = match policy.pinned_addrs(&host) {
                Some(addrs) => addrs,
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            let mut first_refusal = None;
            let allowed: Vec<SocketAddr> = candidates
                .into_iter()
                .filter(|addr| match policy.check_ip(addr.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        first_refusal.get_or_insert(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let err = first_refusal.unwrap_or(GuardError::NoAddress(host));
                return Err(Box::new(err) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_match_exact_names_and_subdomains_only() {
        assert!(host_matches("*.1sapp.com", "static.1sapp.com"));
        assert!(host_matches("*.1sapp.com", "a.b.1sapp.com"));
        assert!(host_matches("*.1SAPP.com", "static.1sapp.com"));
        assert!(!host_matches("*.1sapp.com", "1sapp.com"));
        assert!(!host_matches("*.1sapp.com", "evil1sapp.com"));
        assert!(!host_matches("*.1sapp.com", "1sapp.com.evil.net"));
        assert!(host_matches("Static.1sapp.com.", "static.1sapp.com"));
        assert!(!host_matches("static.1sapp.com", "x.static.1sapp.com"));
        assert!(host_matches("127.0.0.1", "127.0.0.1"));
    }

    #[test]
    fn allow_and_deny_hosts_apply_to_every_url() {
        let config = UpstreamConfig {
            allow_hosts: vec!["*.1sapp.com".into(), "images.example".into()],
            deny_hosts: vec!["private.1sapp.com".into()],
            ..UpstreamConfig::default()
        };
        let policy = Policy::new(&config);
        let check = |u: &str| policy.check_url(&Url::parse(u).unwrap());
        assert!(check("https://static.1sapp.com/a.jpg").is_ok());
        assert!(check("https://IMAGES.example./a.jpg").is_ok());
        for refused in [
            "https://private.1sapp.com/a.jpg",
            "https://1sapp.com/a.jpg",
            "https://other.example/a.jpg",
            "http://93.184.216.34/a.jpg",
        ] {
            assert!(
                matches!(check(refused), Err(GuardError::HostRule { .. })),
                "{refused}"
            );
        }
        let open = Policy::new(&UpstreamConfig {
            deny_hosts: vec!["*.evil.test".into()],
            ..UpstreamConfig::default()
        });
        assert!(
            open.check_url(&Url::parse("https://a.evil.test/").unwrap())
                .is_err()
        );
        assert!(
            open.check_url(&Url::parse("https://good.test/").unwrap())
                .is_ok()
        );
    }

    fn policy(allow: &[&str], resolve: &[(&str, &str)]) -> Policy {
        let config = UpstreamConfig {
            allow_cidrs: allow.iter().map(|s| s.parse().unwrap()).collect(),
            resolve: resolve
                .iter()
                .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
                .collect(),
            ..UpstreamConfig::default()
        };
        Policy::new(&config)
    }

    fn check(p: &Policy, url: &str) -> Result<Hop, GuardError> {
        p.check_url(&Url::parse(url).unwrap())
    }

    #[test]
    fn refused_addresses() {
        let refused = [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "203.0.113.9",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
        ];
        for addr in refused {
            let ip: IpAddr = addr.parse().unwrap();
            assert!(refused_range(ip).is_some(), "{addr} should be refused");
        }
        let public = [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for addr in public {
            let ip: IpAddr = addr.parse().unwrap();
            assert_eq!(refused_range(ip), None, "{addr} should be allowed");
        }
    }

    #[test]
    fn ip_literals_in_any_spelling_are_checked() {
        let p = policy(&[], &[]);
        for url in [
            "http://127.0.0.1/a.jpg",
            "http://2130706433/a.jpg",
            "http://0x7f.1/a.jpg",
            "http://0177.0.0.1/a.jpg",
            "http://127.1/a.jpg",
            "http://[::1]/a.jpg",
            "http://[::ffff:127.0.0.1]/a.jpg",
            "http://[::ffff:7f00:1]/a.jpg",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/a.jpg",
        ] {
            assert!(
                matches!(check(&p, url), Err(GuardError::Address { .. })),
                "{url} should be refused"
            );
        }
        assert!(check(&p, "http://93.184.216.34/a.jpg").is_ok());
    }

    #[test]
    fn localhost_names_are_loopback_without_a_lookup() {
        let p = policy(&[], &[]);
        for url in [
            "http://localhost/a.jpg",
            "http://LOCALHOST./a.jpg",
            "http://img.localhost/a.jpg",
            "http://a.b.localhost../a.jpg",
        ] {
            assert!(
                matches!(check(&p, url), Err(GuardError::Address { .. })),
                "{url}"
            );
        }
        assert!(check(&p, "http://localhost.example.com/a.jpg").is_ok());
        assert!(check(&p, "http://notlocalhost/a.jpg").is_ok());
        assert!(check(&policy(&["127.0.0.1/32"], &[]), "http://localhost/a.jpg").is_ok());
        assert!(check(&policy(&["::1/128"], &[]), "http://localhost./a.jpg").is_ok());
    }

    #[test]
    fn scheme_userinfo_and_ports() {
        let p = policy(&[], &[]);
        assert_eq!(
            check(&p, "ftp://example.com/a.jpg"),
            Err(GuardError::Scheme("ftp".into()))
        );
        assert_eq!(
            check(&p, "file:///etc/passwd"),
            Err(GuardError::Scheme("file".into()))
        );
        assert_eq!(
            check(&p, "http://user:pw@example.com/a.jpg"),
            Err(GuardError::Userinfo)
        );
        assert_eq!(
            check(&p, "http://example.com:22/a.jpg"),
            Err(GuardError::Port(22))
        );
        assert!(check(&p, "https://example.com:443/a.jpg").is_ok());
        assert!(check(&p, "http://example.com/a.jpg").is_ok());
    }

    #[test]
    fn allow_cidrs_opens_a_range_including_its_mapped_form() {
        let p = policy(&["127.0.0.1/32"], &[]);
        assert!(p.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check_ip("::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check_ip("127.0.0.2".parse().unwrap()).is_err());
        assert!(p.check_ip("10.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn resolve_pins_host_and_moves_the_port() {
        let p = policy(
            &["127.0.0.1/32"],
            &[("static.1sapp.com:80", "127.0.0.1:18080")],
        );
        let hop = check(&p, "http://static.1sapp.com/qupost/a.jpeg?x=1").unwrap();
        assert_eq!(
            hop.connect_url.as_str(),
            "http://static.1sapp.com:18080/qupost/a.jpeg?x=1"
        );
        assert_eq!(hop.host_header.as_deref(), Some("static.1sapp.com"));
        assert_eq!(
            p.pinned_addrs("static.1sapp.com"),
            Some(vec!["127.0.0.1:18080".parse().unwrap()])
        );
        // Same host on a port it is not pinned for.
        let p443 = policy(
            &["127.0.0.1/32"],
            &[("static.1sapp.com:80", "127.0.0.1:18080")],
        );
        assert!(matches!(
            check(&p443, "https://static.1sapp.com/a.jpeg"),
            Err(GuardError::UnmappedPort { .. })
        ));
    }

    #[test]
    fn resolve_target_is_still_checked() {
        let p = policy(&[], &[("evil.example:80", "127.0.0.1:18080")]);
        assert!(matches!(
            check(&p, "http://evil.example/a.jpg"),
            Err(GuardError::Address { .. })
        ));
    }
}
