//! Per-client limits on expensive work (`server.per_client_expensive`): the client IP →
//! its [`Admission`], the permits that every request of that client shares.
//!
//! Clients are kept in a bounded map (moka, [`MAX_CLIENTS`] entries, dropped after
//! [`IDLE`] without a request), so a flood of addresses costs a bounded amount of memory.
//! An IPv6 client is its /64, since one host is routinely handed a whole /64. Who the
//! client is (the socket peer, or `X-Forwarded-For` from a trusted proxy) is the front
//! end's business; where a permit is taken (only at the start of a fetch or render) is
//! the store's and [`super::variant`]'s.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

pub use crate::store::Admission;

/// Clients tracked at once: about 200 bytes each, so at most ~13 MiB. Past it the least
/// recently seen are dropped (a dropped client with work running starts a fresh count).
pub const MAX_CLIENTS: u64 = 65_536;

/// A client with no request for this long is forgotten.
const IDLE: Duration = Duration::from_secs(600);

/// The permits of every client, by IP.
pub struct ClientLimits {
    per_client: usize,
    clients: moka::future::Cache<IpAddr, Arc<Semaphore>>,
}

impl ClientLimits {
    /// `per_client` fetches and renders at once per client; 0 = no limit.
    pub fn new(per_client: usize) -> ClientLimits {
        ClientLimits {
            per_client,
            clients: moka::future::Cache::builder()
                .max_capacity(MAX_CLIENTS)
                .time_to_idle(IDLE)
                .build(),
        }
    }

    /// The admission of requests from `client`.
    pub async fn admission(&self, client: IpAddr) -> Admission {
        if self.per_client == 0 {
            return Admission::unlimited();
        }
        let permits = self
            .clients
            .get_with(client_key(client), async {
                Arc::new(Semaphore::new(self.per_client))
            })
            .await;
        Admission::limited(permits, self.per_client)
    }
}

/// IPv4 as is (an IPv4-mapped IPv6 address too); other IPv6 addresses by their /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(Ipv6Addr::from(segments))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_share_per_client_and_per_ipv6_64() {
        let limits = ClientLimits::new(1);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let held = limits.admission(ip("10.0.0.1")).await.try_admit().unwrap();
        assert!(limits.admission(ip("10.0.0.1")).await.try_admit().is_err());
        assert!(
            limits
                .admission(ip("::ffff:10.0.0.1"))
                .await
                .try_admit()
                .is_err()
        );
        assert!(limits.admission(ip("10.0.0.2")).await.try_admit().is_ok());
        let v6 = limits
            .admission(ip("2001:db8:1:2::1"))
            .await
            .try_admit()
            .unwrap();
        assert!(
            limits
                .admission(ip("2001:db8:1:2:ffff::9"))
                .await
                .try_admit()
                .is_err()
        );
        assert!(
            limits
                .admission(ip("2001:db8:1:3::1"))
                .await
                .try_admit()
                .is_ok()
        );
        drop((held, v6));
        assert!(limits.admission(ip("10.0.0.1")).await.try_admit().is_ok());
        let off = ClientLimits::new(0);
        let mut all = Vec::new();
        for _ in 0..50 {
            all.push(off.admission(ip("10.0.0.1")).await.try_admit().unwrap());
        }
        assert_eq!(all.len(), 50);
    }
}
