//! Key groups: the unit of keyed state and of its placement on workers.
//!
//! `key_group = ⌊hash(key) · K / 2⁶⁴⌋` (the high bits of the hash; a multiply, not a division)
//! with `K` fixed for the life of a job's state; worker `w` of `n` owns a contiguous range of
//! groups. A snapshot stored per key group restores onto any number of workers. Both
//! mappings are part of the checkpoint format: they must never change.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// One key group, `0 .. K`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyGroup(pub u32);

/// The stable 64-bit hash of a key's encoded bytes (xxh3: identical on every process and
/// release, unlike `std`'s randomised hasher).
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// The fixed number of key groups of a job (Flink's "max parallelism").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroups {
    count: u32,
}

impl KeyGroups {
    /// The default, as in Flink: 128 groups.
    pub const DEFAULT: KeyGroups = KeyGroups { count: 128 };

    /// `count` key groups (at least one).
    pub fn new(count: u32) -> Self {
        KeyGroups {
            count: count.max(1),
        }
    }

    /// Number of groups.
    pub fn count(self) -> u32 {
        self.count
    }

    /// The group of a key hash.
    #[inline]
    pub fn group_of_hash(self, hash: u64) -> KeyGroup {
        KeyGroup(((hash as u128 * self.count as u128) >> 64) as u32)
    }

    /// The group of a key's bytes.
    #[inline]
    pub fn group_of(self, key: &[u8]) -> KeyGroup {
        self.group_of_hash(key_hash(key))
    }

    /// The worker (of `peers`) that owns `group`.
    #[inline]
    pub fn worker_of(self, group: KeyGroup, peers: usize) -> usize {
        (group.0 as u64 * peers as u64 / self.count as u64) as usize
    }

    /// The owning worker of every group, for routing without a division per record.
    pub fn routes(self, peers: usize) -> Vec<u32> {
        (0..self.count)
            .map(|g| self.worker_of(KeyGroup(g), peers) as u32)
            .collect()
    }

    /// The groups owned by `worker` of `peers`.
    pub fn groups_of_worker(self, worker: usize, peers: usize) -> Range<u32> {
        let k = self.count as u64;
        let p = peers as u64;
        let start = (worker as u64 * k).div_ceil(p);
        let end = ((worker as u64 + 1) * k).div_ceil(p);
        start as u32..end as u32
    }
}

impl Default for KeyGroups {
    fn default() -> Self {
        KeyGroups::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_the_groups_and_agree_with_worker_of() {
        for k in [1u32, 7, 128, 1000] {
            let groups = KeyGroups::new(k);
            for peers in 1..=9usize {
                let mut seen = 0;
                for w in 0..peers {
                    for g in groups.groups_of_worker(w, peers) {
                        assert_eq!(
                            groups.worker_of(KeyGroup(g), peers),
                            w,
                            "k={k} peers={peers}"
                        );
                        seen += 1;
                    }
                }
                assert_eq!(seen, k);
            }
        }
    }

    #[test]
    fn hash_is_stable_across_releases() {
        // A changed hash would scatter restored state onto the wrong workers.
        assert_eq!(key_hash(b"user-42"), 5_836_184_775_705_692_621);
        assert_eq!(KeyGroups::DEFAULT.group_of(b"user-42"), KeyGroup(40));
        let groups = KeyGroups::new(1000);
        let routes = groups.routes(7);
        for g in 0..1000 {
            assert_eq!(
                routes[g as usize] as usize,
                groups.worker_of(KeyGroup(g), 7)
            );
        }
    }
}
