//! Who the client is: the socket peer, or, when the peer is a trusted proxy
//! (`server.trusted_proxies`), the address its `X-Forwarded-For` names. The client IP is
//! what the per-client limit on expensive work counts by ([`crate::mirror::ClientLimits`]).
//!
//! `X-Forwarded-For` is read from the right: each proxy appends the address it received
//! the request from, so the right-most entry that is not itself a trusted proxy is the
//! first address no trusted party can vouch for beyond: the client. Everything left of it
//! was written by the client and is ignored. A peer that is not trusted is the client,
//! whatever it sends. Pure functions; no IO.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// Entries of `X-Forwarded-For` looked at, from the right: more proxies than this in
/// front of a server is a misconfiguration, and the walk stays cheap on hostile headers.
const MAX_HOPS: usize = 16;

/// The client's address for a request from `peer` with `headers`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = unmapped(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    // The nearest address a trusted proxy vouched for, should the chain end or break.
    let mut nearest = peer;
    let values = headers.get_all("x-forwarded-for");
    let mut hops = 0;
    for value in values.iter().rev() {
        let Ok(value) = value.to_str() else {
            return nearest;
        };
        for entry in value.rsplit(',') {
            hops += 1;
            if hops > MAX_HOPS {
                return nearest;
            }
            match parse_entry(entry) {
                Some(ip) if is_trusted(ip, trusted) => nearest = ip,
                Some(ip) => return ip,
                None => return nearest,
            }
        }
    }
    nearest
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// `1.2.3.4`, `2001:db8::1`, and the port-carrying forms some proxies write
/// (`1.2.3.4:5678`, `[2001:db8::1]:5678`); `None` for anything else (`unknown`, junk).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()?;
    Some(unmapped(ip))
}

/// `::ffff:1.2.3.4` is `1.2.3.4` (a dual-stack socket reports IPv4 peers that way).
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", v.parse().unwrap());
        }
        map
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let cases: &[(&str, &[&str], &str)] = &[
            // An untrusted peer is the client, whatever it claims.
            ("203.0.113.9", &["1.1.1.1"], "203.0.113.9"),
            ("127.0.0.1", &["1.1.1.1"], "127.0.0.1"),
            // A trusted peer without the header: the peer.
            ("10.0.0.1", &[], "10.0.0.1"),
            // The right-most untrusted entry; what the client wrote to the left is ignored.
            ("10.0.0.1", &["6.6.6.6, 198.51.100.7"], "198.51.100.7"),
            (
                "10.0.0.1",
                &["6.6.6.6, 198.51.100.7, 10.0.0.2"],
                "198.51.100.7",
            ),
            // Several header lines are one list, in order.
            (
                "10.0.0.1",
                &["6.6.6.6", "198.51.100.7", "10.0.0.3"],
                "198.51.100.7",
            ),
            // Ports and IPv6 spellings; mapped IPv4 is IPv4.
            ("10.0.0.1", &["198.51.100.7:4711"], "198.51.100.7"),
            ("10.0.0.1", &["[2001:db8::7]:4711"], "2001:db8::7"),
            ("::ffff:10.0.0.1", &[" 2001:db8::8 "], "2001:db8::8"),
            ("::1", &["::ffff:198.51.100.9"], "198.51.100.9"),
            // Junk ends the chain at the nearest trusted hop rather than trusting what
            // lies beyond it.
            ("10.0.0.1", &["198.51.100.7, unknown, 10.0.0.2"], "10.0.0.2"),
            ("10.0.0.1", &["198.51.100.7, "], "10.0.0.1"),
            // Only proxies: the farthest one.
            ("10.0.0.1", &["10.0.0.5, 10.0.0.4"], "10.0.0.5"),
        ];
        for (peer, xff, want) in cases {
            let got = client_ip(ip(peer), &headers(xff), &trusted);
            assert_eq!(got, ip(want), "peer {peer}, X-Forwarded-For {xff:?}");
        }
        // Without trusted proxies the header is never read.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers(&["198.51.100.7"]), &[]),
            ip("10.0.0.1")
        );
        // A hostile chain costs at most MAX_HOPS parses.
        let long = vec!["10.1.1.1"; 100].join(",");
        let got = client_ip(ip("10.0.0.1"), &headers(&[&long, "10.0.0.2"]), &trusted);
        assert!(trusted[0].contains(&got));
    }
}
