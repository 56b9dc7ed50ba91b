//! One eviction pass over the index: which variants and originals go, least recently used
//! first, and their removal from disk and index. The budget itself, its counters and when
//! a pass runs are [`super::budget`]'s; this module only chooses and removes.
//!
//! Two rules keep a pass cheap in memory and rare in time, however large the index:
//!
//! - a pass evicts down to a low-water mark ([`low_water`], 1/32 below the limit), so the
//!   writes after it do not each start a pass (every pass reads whole tables);
//! - the victims are chosen while the tables stream past ([`Oldest`]), holding only the
//!   oldest entries that cover the bytes to free, at most [`MAX_VICTIMS`] per round, and
//!   the URLs read are only those of chosen originals. Nothing is held per index entry,
//!   so a pass costs memory in proportion to what it evicts, not to what the store holds.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashSet};
use std::sync::atomic::Ordering;

use super::budget::{Budget, Usage};
use super::index::{Index, Table};
use super::{Disk, Kind, StoreError, index_error};
use crate::hash::ContentHash;

/// The slack below a limit that a pass evicts to, as a fraction of the limit (1/32, ≈3 %).
const SLACK_DIVISOR: u64 = 32;
/// Victims chosen per round at most; a pass that needs more runs further rounds.
const MAX_VICTIMS: usize = 4096;

/// Where a pass stops: `limit` less its slack.
pub(super) fn low_water(limit: u64) -> u64 {
    limit - limit / SLACK_DIVISOR
}

/// What an eviction pass removed that the caches in front may still hold.
#[derive(Default)]
pub(super) struct Evicted {
    pub memory_keys: Vec<String>,
    pub urls: Vec<String>,
}

/// One candidate: its age (last use or creation), its key (the tie-break), its size.
struct Candidate {
    age: u64,
    key: String,
    bytes: u64,
    /// A variant's original (empty for originals).
    original: String,
}

impl Candidate {
    fn order(&self) -> (u64, &str) {
        (self.age, &self.key)
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.order() == other.order()
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.order().cmp(&other.order())
    }
}

/// The oldest candidates whose bytes add up to `need` (or the `cap` oldest, if they do
/// not), chosen from a stream: a max-heap whose newest member is dropped as soon as the
/// rest cover `need` without it.
struct Oldest {
    heap: BinaryHeap<Candidate>,
    bytes: u64,
    need: u64,
    cap: usize,
}

impl Oldest {
    fn new(need: u64, cap: usize) -> Oldest {
        Oldest {
            heap: BinaryHeap::new(),
            bytes: 0,
            need,
            cap,
        }
    }

    fn offer(&mut self, candidate: Candidate) {
        if self.need == 0 || self.cap == 0 {
            return;
        }
        let full = self.bytes >= self.need || self.heap.len() >= self.cap;
        if full && self.heap.peek().is_some_and(|newest| candidate >= *newest) {
            return;
        }
        self.bytes += candidate.bytes;
        self.heap.push(candidate);
        while let Some(newest) = self.heap.peek() {
            let covered = self.bytes - newest.bytes >= self.need;
            if !(self.heap.len() > self.cap || covered) {
                break;
            }
            self.bytes -= newest.bytes;
            self.heap.pop();
        }
    }

    /// Oldest first.
    fn into_sorted(self) -> Vec<Candidate> {
        self.heap.into_sorted_vec()
    }
}

fn over_disk(usage: &Usage, budget: &Budget, limit: impl Fn(u64) -> u64) -> u64 {
    if budget.max_disk_bytes == 0 {
        return 0;
    }
    usage.total().saturating_sub(limit(budget.max_disk_bytes))
}

/// Bytes of variants to free to get below both low-water marks (all of them at most).
fn variant_need(usage: &Usage, budget: &Budget) -> u64 {
    let variants = usage.variant_bytes.load(Ordering::Relaxed);
    let by_variants = variants.saturating_sub(low_water(budget.max_variant_bytes));
    by_variants
        .max(over_disk(usage, budget, low_water))
        .min(variants)
}

/// Evicts variants first, then (with `cache.evict_originals`) unpinned originals, to the
/// low-water marks; `spare` (the file just written) is never chosen.
pub(super) fn pass(
    disk: &Disk,
    index: &Index,
    budget: &Budget,
    usage: &Usage,
    spare: Option<&str>,
) -> Result<Evicted, StoreError> {
    let mut evicted = Evicted::default();
    let mut variants_gone = 0;
    loop {
        let need = variant_need(usage, budget);
        let removed = if need == 0 {
            0
        } else {
            variants_round(disk, index, usage, need, spare, &mut evicted)?
        };
        variants_gone += removed;
        if removed < MAX_VICTIMS {
            break;
        }
    }
    if variants_gone > 0 {
        tracing::info!(
            variants = variants_gone,
            "evicted variants to stay within the disk budget"
        );
    }
    if budget.evict_originals {
        loop {
            let need = over_disk(usage, budget, low_water);
            if need == 0
                || originals_round(disk, index, budget, usage, need, spare, &mut evicted)?
                    < MAX_VICTIMS
            {
                break;
            }
        }
    }
    let full = over_disk(usage, budget, |limit| limit) > 0;
    if full && !usage.full.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            object_bytes = usage.object_bytes.load(Ordering::Relaxed),
            max_disk_bytes = budget.max_disk_bytes,
            "originals alone exceed cache.max_disk_bytes; still serving{}",
            if budget.refuse_when_full {
                ", refusing new originals (507)"
            } else {
                ""
            }
        );
    } else if !full {
        usage.full.store(false, Ordering::Relaxed);
    }
    Ok(evicted)
}

/// The oldest variants covering `need` bytes: files, then index rows. Returns how many.
fn variants_round(
    disk: &Disk,
    index: &Index,
    usage: &Usage,
    need: u64,
    spare: Option<&str>,
    evicted: &mut Evicted,
) -> Result<usize, StoreError> {
    let snapshot = index.snapshot().map_err(index_error("read a snapshot"))?;
    let mut oldest = Oldest::new(need, MAX_VICTIMS);
    snapshot
        .variants(|v| {
            if spare != Some(v.name.as_str()) {
                oldest.offer(Candidate {
                    age: v.last_used.max(v.created),
                    key: v.name,
                    bytes: v.bytes,
                    original: String::new(),
                });
            }
        })
        .map_err(index_error("list the variants"))?;
    drop(snapshot);
    remove_variants(disk, index, usage, oldest.into_sorted(), true, evicted)
}

/// Removes variants' files and then their index rows (those whose file went, even when a
/// later one failed). `counted`: an eviction of its own (not an orphan of an original).
fn remove_variants(
    disk: &Disk,
    index: &Index,
    usage: &Usage,
    victims: Vec<Candidate>,
    counted: bool,
    evicted: &mut Evicted,
) -> Result<usize, StoreError> {
    let (names, failed) = remove_victims(disk, usage, Kind::Variant, victims, counted, evicted);
    index
        .remove(Table::Variants, &names)
        .map_err(index_error("remove evicted variants"))?;
    failed.map_or(Ok(names.len()), Err)
}

/// The oldest unpinned originals covering `need` bytes, with the URLs that point at them
/// and their variants. Returns how many originals went.
fn originals_round(
    disk: &Disk,
    index: &Index,
    budget: &Budget,
    usage: &Usage,
    need: u64,
    spare: Option<&str>,
    evicted: &mut Evicted,
) -> Result<usize, StoreError> {
    let snapshot = index.snapshot().map_err(index_error("read a snapshot"))?;
    // Only pinned originals are remembered here: as many as the articles pin.
    let mut pinned = HashSet::new();
    if !budget.backed {
        snapshot
            .urls(|u| {
                if !u.pinned_by.is_empty() {
                    pinned.insert(u.sha256);
                }
            })
            .map_err(index_error("list the URLs"))?;
    }
    let mut oldest = Oldest::new(need, MAX_VICTIMS);
    snapshot
        .objects(|o| {
            if !pinned.contains(&o.sha256) && spare != Some(o.sha256.as_str()) {
                oldest.offer(Candidate {
                    age: o.last_used.max(o.created),
                    key: o.sha256,
                    bytes: o.bytes,
                    original: String::new(),
                });
            }
        })
        .map_err(index_error("list the objects"))?;
    drop(pinned);
    let victims = oldest.into_sorted();
    if victims.is_empty() {
        return Ok(0);
    }
    let chosen: HashSet<&str> = victims.iter().map(|o| o.key.as_str()).collect();
    // (original, URL) pairs: only the URLs of chosen originals are read into memory.
    let mut urls = Vec::new();
    let mut orphans = Vec::new();
    snapshot
        .urls(|u| {
            if chosen.contains(u.sha256.as_str()) {
                urls.push((u.sha256, u.url));
            }
        })
        .map_err(index_error("list the URLs"))?;
    // Variants of evicted originals can never be asked for again under their names.
    snapshot
        .variants(|v| {
            if chosen.contains(v.original.as_str()) {
                orphans.push(Candidate {
                    age: 0,
                    key: v.name,
                    bytes: v.bytes,
                    original: v.original,
                });
            }
        })
        .map_err(index_error("list the variants"))?;
    drop(chosen);
    drop(snapshot);
    let (gone, failed) = remove_victims(disk, usage, Kind::Object, victims, true, evicted);
    // Rows only of originals whose file went (all of them unless a removal failed).
    let gone_set: HashSet<&str> = gone.iter().map(String::as_str).collect();
    let urls: Vec<String> = urls
        .into_iter()
        .filter(|(sha256, _)| gone_set.contains(sha256.as_str()))
        .map(|(_, url)| url)
        .collect();
    orphans.retain(|v| gone_set.contains(v.original.as_str()));
    drop(gone_set);
    index
        .remove(Table::Urls, &urls)
        .map_err(index_error("remove the URLs of evicted originals"))?;
    index
        .remove(Table::Objects, &gone)
        .map_err(index_error("remove evicted originals"))?;
    tracing::info!(
        originals = gone.len(),
        urls = urls.len(),
        "evicted originals to stay within the disk budget"
    );
    evicted.urls.extend(urls);
    remove_variants(disk, index, usage, orphans, false, evicted)?;
    failed.map_or(Ok(gone.len()), Err)
}

/// Removes the victims' files in order, stopping at the first removal that fails; takes
/// each one that went off `usage` (and counts it as an eviction when `counted`) and notes
/// its memory-layer key. Returns the names whose file went, and what stopped it.
fn remove_victims(
    disk: &Disk,
    usage: &Usage,
    kind: Kind,
    victims: Vec<Candidate>,
    counted: bool,
    evicted: &mut Evicted,
) -> (Vec<String>, Option<StoreError>) {
    let (prefix, evictions) = match kind {
        Kind::Object => ("o", &usage.evicted_objects),
        Kind::Variant => ("v", &usage.evicted_variants),
    };
    let mut gone = Vec::with_capacity(victims.len());
    for victim in victims {
        if let Some(hash) = ContentHash::parse(&victim.key)
            && let Err(e) = remove_file(disk, kind, &hash)
        {
            return (gone, Some(e));
        }
        usage.sub(kind, victim.bytes);
        if counted {
            evictions.fetch_add(1, Ordering::Relaxed);
        }
        evicted.memory_keys.push(format!("{prefix}:{}", victim.key));
        gone.push(victim.key);
    }
    (gone, None)
}

fn remove_file(disk: &Disk, kind: Kind, hash: &ContentHash) -> Result<(), StoreError> {
    disk.remove(kind, hash)
        .map_err(|e| super::file_error("remove", &disk.path(kind, hash), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(age: u64, key: &str, bytes: u64) -> Candidate {
        Candidate {
            age,
            key: key.into(),
            bytes,
            original: String::new(),
        }
    }

    fn keys(oldest: Oldest) -> Vec<String> {
        oldest.into_sorted().into_iter().map(|c| c.key).collect()
    }

    #[test]
    fn the_oldest_that_cover_the_need_are_chosen_whatever_the_order_they_come_in() {
        let mut oldest = Oldest::new(250, 100);
        for (age, key) in [(50, "e"), (10, "a"), (40, "d"), (20, "b"), (30, "c")] {
            oldest.offer(candidate(age, key, 100));
        }
        assert_eq!(keys(oldest), ["a", "b", "c"]);
    }

    #[test]
    fn the_cap_bounds_what_a_round_holds_and_keeps_the_oldest() {
        let mut oldest = Oldest::new(u64::MAX, 3);
        for age in (0..1000u64).rev() {
            oldest.offer(candidate(age, &format!("k{age:04}"), 1));
            assert!(oldest.heap.len() <= 3);
        }
        assert_eq!(keys(oldest), ["k0000", "k0001", "k0002"]);
    }

    #[test]
    fn equal_ages_are_ordered_by_key_and_nothing_is_chosen_for_no_need() {
        let mut oldest = Oldest::new(2, 10);
        for key in ["z", "m", "a"] {
            oldest.offer(candidate(7, key, 1));
        }
        assert_eq!(keys(oldest), ["a", "m"]);
        let mut none = Oldest::new(0, 10);
        none.offer(candidate(1, "x", 5));
        assert!(none.into_sorted().is_empty());
    }

    #[test]
    fn the_low_water_mark_sits_a_thirty_second_below_the_limit() {
        assert_eq!(low_water(1 << 30), (1 << 30) - (1 << 25));
        assert_eq!(low_water(31), 31);
        assert_eq!(low_water(0), 0);
    }
}
