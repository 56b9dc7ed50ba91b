//! `imgmirror stats`: what the store holds, counted from one index snapshot and the
//! `quarantine/` directory: originals, variants, pinned originals and quarantined files (count
//! and bytes), the URL count, the upstream hosts with the most bytes, and the budget.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::index::Index;
use super::{Budget, StoreError, index_error};

/// A count and its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub count: u64,
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
    }
}

/// One upstream host's share of the mirror.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostShare {
    pub host: String,
    pub urls: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inventory {
    pub originals: Tally,
    pub variants: Tally,
    /// Originals at least one article pins.
    pub pinned: Tally,
    pub quarantined: Tally,
    pub urls: u64,
    /// Hosts by bytes of the originals their URLs name, largest first.
    pub top_hosts: Vec<HostShare>,
    /// `cache.max_disk_bytes` (0 = no limit) and `cache.max_variant_bytes`.
    pub max_disk_bytes: u64,
    pub max_variant_bytes: u64,
    /// Originals + variants, against `max_disk_bytes`.
    pub disk_bytes: u64,
}

impl Inventory {
    /// Counts what `index` records (one snapshot) and what `dir/quarantine` holds.
    pub fn take(
        index: &Index,
        dir: &Path,
        budget: &Budget,
        top: usize,
    ) -> Result<Inventory, StoreError> {
        let snapshot = index.snapshot().map_err(index_error("read a snapshot"))?;
        let mut inv = Inventory {
            max_disk_bytes: budget.max_disk_bytes,
            max_variant_bytes: budget.max_variant_bytes,
            ..Inventory::default()
        };
        let mut sizes: HashMap<String, u64> = HashMap::new();
        snapshot
            .objects(|o| {
                inv.originals.add(o.bytes);
                sizes.insert(o.sha256, o.bytes);
            })
            .map_err(index_error("count the objects"))?;
        snapshot
            .variants(|v| inv.variants.add(v.bytes))
            .map_err(index_error("count the variants"))?;
        let mut pinned = HashSet::new();
        let mut hosts: HashMap<String, HostShare> = HashMap::new();
        snapshot
            .urls(|u| {
                inv.urls += 1;
                let bytes = sizes.get(&u.sha256).copied().unwrap_or(0);
                if !u.pinned_by.is_empty() && pinned.insert(u.sha256.clone()) {
                    inv.pinned.add(bytes);
                }
                let host = url::Url::parse(&u.url)
                    .ok()
                    .and_then(|p| p.host_str().map(str::to_owned))
                    .unwrap_or_default();
                let share = hosts.entry(host.clone()).or_insert(HostShare {
                    host,
                    urls: 0,
                    bytes: 0,
                });
                share.urls += 1;
                share.bytes += bytes;
            })
            .map_err(index_error("count the URLs"))?;
        let mut top_hosts: Vec<HostShare> = hosts.into_values().collect();
        top_hosts.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.host.cmp(&b.host)));
        top_hosts.truncate(top);
        inv.top_hosts = top_hosts;
        if let Ok(entries) = std::fs::read_dir(dir.join("quarantine")) {
            for entry in entries.flatten() {
                inv.quarantined.add(entry.metadata().map_or(0, |m| m.len()));
            }
        }
        inv.disk_bytes = inv.originals.bytes + inv.variants.bytes;
        Ok(inv)
    }

    /// The human report.
    pub fn table(&self) -> String {
        let row = |name: &str, t: &Tally| format!("{name:<12} {:>9} {:>14}\n", t.count, t.bytes);
        let mut out = format!("{:<12} {:>9} {:>14}\n", "KIND", "COUNT", "BYTES");
        out += &row("originals", &self.originals);
        out += &row("variants", &self.variants);
        out += &row("pinned", &self.pinned);
        out += &row("quarantined", &self.quarantined);
        out += &format!("urls         {:>9}\n", self.urls);
        let limit = |n: u64| {
            if n == 0 {
                "no limit".to_string()
            } else {
                format!("{n} bytes")
            }
        };
        out += &format!(
            "disk in use: {} bytes of {}; variants {} bytes of {}\n",
            self.disk_bytes,
            limit(self.max_disk_bytes),
            self.variants.bytes,
            limit(self.max_variant_bytes)
        );
        if !self.top_hosts.is_empty() {
            out += "largest upstream hosts:\n";
            for h in &self.top_hosts {
                out += &format!(
                    "  {:<40} {:>6} urls {:>14} bytes\n",
                    h.host, h.urls, h.bytes
                );
            }
        }
        out
    }
}
