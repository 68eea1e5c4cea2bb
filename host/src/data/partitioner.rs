//! Where a key goes: the one placement function of every keyed operator, a
//! function of the key's encoded bytes alone (see `wit/sluice.wit`, "Key
//! placement"), the same in every build, on every machine and in every SDK.
//!
//! 1. `hash = murmur2(key bytes) & 0x7fffffff`: Kafka's default partitioner
//!    (`org.apache.kafka.common.utils.Utils.murmur2`, made positive by
//!    `Utils.toPositive`).
//! 2. The key's *key group* is `hash mod N`, N fixed for the life of a job
//!    (`--key-groups`, default [`DEFAULT_KEY_GROUPS`], at most
//!    [`MAX_KEY_GROUPS`], as Flink's max parallelism).
//! 3. Partition `p` of `P` owns the key groups `g` with `g mod P = p`.
//!
//! Partitions default to the number of workers, capped at `N`; a keyed
//! operator may not ask for more than `N` (plan validation refuses it): every
//! partition owns at least one key group.
//!
//! When `P` divides `N`, a key's partition is `hash mod P`, exactly Kafka's
//! partition for that key among `P` partitions: a Kafka topic keyed the same
//! way is co-partitioned with Sluice's shuffle. State will be kept per key
//! group, so `P` can change without rehashing it.
//!
//! `wit/vectors/partitioner.json` pins these numbers; the tests below check
//! every case in it.

use std::fmt;
use std::num::NonZeroU32;

/// Key groups of a job unless `--key-groups` says otherwise.
pub const DEFAULT_KEY_GROUPS: u32 = 128;

/// The most key groups a job may have (Flink's limit on max parallelism).
pub const MAX_KEY_GROUPS: u32 = 32_768;

/// Kafka's `Utils.murmur2`: MurmurHash2 (32-bit) of `data` with seed
/// `0x9747b28c`, as the Java client computes it (a signed `int`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java's `seed ^ length` on ints: the length wraps to 32 bits.
    let mut h = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`).
pub fn to_positive(hash: i32) -> u32 {
    (hash as u32) & 0x7fff_ffff
}

/// The positive hash of a key's encoded bytes, the start of its placement.
pub fn key_hash(key: &[u8]) -> u32 {
    to_positive(murmur2(key))
}

/// A number of key groups outside `1..=MAX_KEY_GROUPS`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the number of key groups must be between 1 and {MAX_KEY_GROUPS}, not {0}")]
pub struct KeyGroupsError(pub u64);

/// The number of key groups of a job, `N`: in `1..=MAX_KEY_GROUPS`, fixed for
/// the life of the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyGroups(NonZeroU32);

impl KeyGroups {
    /// `n` key groups, if `n` is in `1..=MAX_KEY_GROUPS`.
    pub fn new(n: u64) -> Result<KeyGroups, KeyGroupsError> {
        u32::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_KEY_GROUPS)
            .and_then(NonZeroU32::new)
            .map(KeyGroups)
            .ok_or(KeyGroupsError(n))
    }

    /// `N`.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The key group of `key` (its encoded bytes): `key_hash(key) mod N`.
    pub fn of(self, key: &[u8]) -> u32 {
        key_hash(key) % self.get()
    }
}

impl Default for KeyGroups {
    fn default() -> KeyGroups {
        KeyGroups(NonZeroU32::new(DEFAULT_KEY_GROUPS).expect("not zero"))
    }
}

impl fmt::Display for KeyGroups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for KeyGroups {
    type Err = String;

    fn from_str(s: &str) -> Result<KeyGroups, String> {
        let n: u64 = s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a number of key groups"))?;
        KeyGroups::new(n).map_err(|e| e.to_string())
    }
}

/// Placement of keys among the `partitions` partitions of one shuffle of a
/// job with `key_groups` key groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitioner {
    key_groups: KeyGroups,
    partitions: usize,
}

impl Partitioner {
    /// Places keys among `partitions` (at least 1) partitions.
    pub fn new(key_groups: KeyGroups, partitions: usize) -> Partitioner {
        Partitioner {
            key_groups,
            partitions: partitions.max(1),
        }
    }

    /// Everything in one partition (a map-side combine before the shuffle).
    pub fn single() -> Partitioner {
        Partitioner::new(KeyGroups::default(), 1)
    }

    /// The number of partitions, `P`.
    pub fn partitions(self) -> usize {
        self.partitions
    }

    /// The partition that owns key group `group`: `group mod P`.
    pub fn partition_of_group(self, group: u32) -> usize {
        group as usize % self.partitions
    }

    /// The partition of `key` (its encoded bytes): every keyed operator uses
    /// this one function.
    pub fn partition_of(self, key: &[u8]) -> usize {
        self.partition_of_group(self.key_groups.of(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// The language-neutral vectors other SDKs read too.
    const VECTORS: &str = include_str!("../../../wit/vectors/partitioner.json");

    fn field<'a>(case: &'a Value, name: &str) -> &'a Value {
        case.get(name)
            .unwrap_or_else(|| panic!("case {case} has no `{name}`"))
    }

    #[test]
    fn kafka_utils_test_vectors_hash_as_kafka_does() {
        // Kafka's UtilsTest.testMurmur2.
        for (key, hash) in [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ] {
            assert_eq!(murmur2(key.as_bytes()), hash, "murmur2({key:?})");
        }
    }

    #[test]
    fn every_case_of_the_vector_file_places_its_key_as_written() {
        let file: Value = serde_json::from_str(VECTORS).expect("valid JSON");
        let cases = field(&file, "cases").as_array().expect("cases is a list");
        assert!(cases.len() >= 20, "the file holds {} cases", cases.len());
        let mut checked = 0;
        for case in cases {
            let key = hex::decode(field(case, "key_hex").as_str().expect("hex string"))
                .expect("valid hex");
            let hash = field(case, "murmur2").as_i64().expect("integer");
            assert_eq!(i64::from(murmur2(&key)), hash, "murmur2 of {case}");
            let positive = field(case, "positive").as_u64().expect("integer");
            assert_eq!(u64::from(key_hash(&key)), positive, "positive of {case}");
            for (n, group) in field(case, "key_group").as_object().expect("object") {
                let groups = KeyGroups::new(n.parse().expect("N")).expect("valid N");
                assert_eq!(
                    u64::from(groups.of(&key)),
                    group.as_u64().expect("integer"),
                    "key group among {n} of {case}"
                );
                checked += 1;
            }
            for (n, by_p) in field(case, "partition").as_object().expect("object") {
                let groups = KeyGroups::new(n.parse().expect("N")).expect("valid N");
                for (p, partition) in by_p.as_object().expect("object") {
                    let partitioner = Partitioner::new(groups, p.parse().expect("P"));
                    assert_eq!(
                        partitioner.partition_of(&key) as u64,
                        partition.as_u64().expect("integer"),
                        "partition among {p} with {n} key groups of {case}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 200, "only {checked} placements checked");
    }

    #[test]
    fn key_groups_outside_one_to_32768_are_refused() {
        assert!(KeyGroups::new(0).is_err());
        assert_eq!(KeyGroups::new(1).map(KeyGroups::get), Ok(1));
        assert_eq!(KeyGroups::new(32_768).map(KeyGroups::get), Ok(32_768));
        assert_eq!(
            KeyGroups::new(32_769).unwrap_err().to_string(),
            "the number of key groups must be between 1 and 32768, not 32769"
        );
        assert!(KeyGroups::new(u64::from(u32::MAX) + 129).is_err());
        assert_eq!(KeyGroups::default().get(), 128);
        assert!("12x".parse::<KeyGroups>().is_err());
    }

    proptest! {
        /// When P divides N, a key's partition is Kafka's `positive hash mod P`.
        #[test]
        fn a_partition_count_dividing_the_key_groups_places_keys_as_kafka(
            key in proptest::collection::vec(any::<u8>(), 0..64),
            p in 1u32..=64,
            multiple in 1u32..=512,
        ) {
            let n = p * multiple;
            let p = p as usize;
            let partitioner = Partitioner::new(KeyGroups::new(u64::from(n)).unwrap(), p);
            prop_assert_eq!(partitioner.partition_of(&key), key_hash(&key) as usize % p);
        }

        /// Any N and P (P ≤ N): the partition owns the key's group.
        #[test]
        fn the_partition_of_a_key_owns_its_key_group(
            key in proptest::collection::vec(any::<u8>(), 0..64),
            n in 1u32..=MAX_KEY_GROUPS,
            p in 1usize..=64,
        ) {
            let groups = KeyGroups::new(u64::from(n)).unwrap();
            let partitioner = Partitioner::new(groups, p);
            let partition = partitioner.partition_of(&key);
            prop_assert!(partition < p);
            prop_assert_eq!(groups.of(&key) as usize % p, partition);
        }
    }
}
