//! A stateful step's new values grouped by key and *packed*: the records the
//! chain before `update_state_by_key` or `map_with_state` ends with, that
//! the merges of its early outputs group again, and that the state calls
//! read. Each key comes once, in order of first appearance, with its values
//! in arrival order as runs of equal values.
//!
//! A packed group is one record, internal to the host (never handed to a
//! guest, never persisted):
//!
//! ```text
//! u32-le key length | key | run, run, …      (one run at least)
//! run = count (LEB128, ≥ 1) | value length (LEB128) | value
//! ```
//!
//! The key comes first as in a `tuple<k, v>` pair, so the partitioner places
//! a packed group like a pair. A block's `(word, 1)` pairs, held until
//! their batch's time, cost a key and one run per distinct word instead of
//! twelve bytes per word (a `list<s64>` element); the state calls get the
//! runs as they are ([`Values::write_runs`]), one call's piece at a time.
//!
//! A grouper refers to the keys and values it holds where they lie, in its
//! inputs ([`Grouper::of_pairs`], [`Grouper::of_packed`]), or copies them
//! into an arena ([`Grouper::add_pairs`]): a chain's answers then go as
//! soon as they are grouped, and what a block's grouping holds is its
//! distinct keys and its runs' values, not its pairs.

pub(super) mod index;
pub(super) mod totals;

use std::hash::BuildHasher;

use bumpalo::Bump;

use self::index::{Index, prefetch};
use super::shuffle::ShuffleError;
use crate::data::codec::{split_pair, write_prefixed};
use crate::data::{Rows, RowsError};

/// The values of each key of some partitions of pairs or of packed groups.
pub struct Grouper<'a> {
    hasher: foldhash::fast::FixedState,
    /// Numbers of `groups`, by key hash.
    index: Index,
    groups: Vec<Group<'a>>,
    /// What else each group has, by its number in `groups`.
    links: Vec<Links>,
    /// The groups' runs before their last, each group's linked through
    /// [`Run::next`].
    runs: Vec<Run<'a>>,
    /// [`AHEAD_FROM`], or another threshold in tests.
    ahead_from: usize,
    /// Bits of each key hash kept: all but in tests, which make keys
    /// collide.
    #[cfg(test)]
    hash_mask: u32,
}

/// A key and its last run: one cache line, so that finding a key and adding
/// a value of up to 8 bytes to its last run touch one line and, for a key of
/// up to 16 bytes, nothing else (not the value where it lies in its input).
#[repr(align(64))]
struct Group<'a> {
    /// The key's first 16 bytes, zero-padded ([`short_of`]).
    short: u128,
    key: &'a [u8],
    /// The last run, open: its value, the value's bytes as a number when
    /// it has at most 8 ([`word_of`]), and its count.
    value: &'a [u8],
    word: u64,
    count: u32,
}

/// What a group needs only when a run closes: the runs before its last, in
/// `runs`, the first and the last of them.
struct Links {
    first: u32,
    last: u32,
}

struct Run<'a> {
    value: &'a [u8],
    count: u32,
    /// The group's next run; `NO_RUN` after its last.
    next: u32,
}

const NO_RUN: u32 = u32::MAX;

const _: () = assert!(std::mem::size_of::<Group<'_>>() == 64);

/// Records read ahead of their lookups: each one's slot, then its likely
/// group, is asked for before the first of them is looked up.
const AHEAD: usize = 32;

/// The groups (of 64 bytes) past which lookups are asked for ahead: below
/// it, the groups are mostly in cache, and asking costs more than it saves
/// (`cargo bench --bench shuffle`).
const AHEAD_FROM: usize = 8192;

/// A record read, not yet grouped: its key, the key's first 16 bytes and
/// hash, and the rest of the record.
struct Ahead<'a, T> {
    key: &'a [u8],
    short: u128,
    hash: u32,
    rest: T,
}

/// `key`'s first 16 bytes (all of a short key), zero-padded, as a number.
/// `key` lies in `buffer`: when 16 bytes from its start do too, they are
/// read at once and masked to the key's length, without a copy of a length
/// known only at run time.
#[inline]
fn short_of(key: &[u8], buffer: &[u8]) -> u128 {
    let len = key.len().min(16);
    let start = (key.as_ptr() as usize).wrapping_sub(buffer.as_ptr() as usize);
    let bytes: [u8; 16] = match start.checked_add(16).and_then(|end| buffer.get(start..end)) {
        Some(window) => window.try_into().expect("16 bytes"),
        None => {
            let mut bytes = [0; 16];
            bytes[..len].copy_from_slice(&key[..len]);
            bytes
        }
    };
    let mask = u128::MAX.checked_shr(128 - 8 * len as u32).unwrap_or(0);
    u128::from_le_bytes(bytes) & mask
}

/// The 32 bits of a key's hash that an [`Index`] keeps, for a key whose
/// first 16 bytes are `short`: a short key is hashed as that number.
#[inline]
fn key_hash(hasher: &impl BuildHasher, key: &[u8], short: u128) -> u32 {
    let hash = if key.len() <= 16 {
        hasher.hash_one((short, key.len()))
    } else {
        hasher.hash_one(key)
    };
    (hash >> 32) as u32
}

/// Whether two keys, each with its first 16 bytes as a number
/// ([`short_of`]), are equal: compared as those numbers and lengths, and
/// past 16 bytes as slices.
#[inline]
fn same_key((a_short, a): (u128, &[u8]), (b_short, b): (u128, &[u8])) -> bool {
    a_short == b_short && a.len() == b.len() && (a.len() <= 16 || a[16..] == b[16..])
}

/// Where a [`Grouper`] or a [`Totals`](totals::Totals) keeps the bytes
/// (keys, values) of an input of lifetime `'b` that it holds on to, for its
/// lifetime `'a`.
pub(in crate::exec) trait Keep<'b, 'a>: Copy {
    fn keep(self, bytes: &'b [u8]) -> &'a [u8];
}

/// Where they lie: the inputs outlive the grouper.
#[derive(Clone, Copy)]
pub(in crate::exec) struct InPlace;

impl<'a> Keep<'a, 'a> for InPlace {
    #[inline]
    fn keep(self, bytes: &'a [u8]) -> &'a [u8] {
        bytes
    }
}

/// Copied into an arena that outlives the grouper: once a record's key
/// and value are grouped, its input may go.
impl<'b, 'a> Keep<'b, 'a> for &'a Bump {
    #[inline]
    fn keep(self, bytes: &'b [u8]) -> &'a [u8] {
        self.alloc_slice_copy(bytes)
    }
}

/// The number an [`Index`] gives the next of `len` keys: below `u32::MAX`.
#[inline]
fn next_number(len: usize) -> Result<u32, RowsError> {
    u32::try_from(len)
        .ok()
        .filter(|&n| n != u32::MAX)
        .ok_or(RowsError::TooLarge)
}

/// The bytes of a value of at most 8 bytes, zero-padded, as a number: two
/// values of the same length are equal when these are (compared without a
/// call to `memcmp`, which a slice compare is even at a constant length).
#[inline]
fn word_of(value: &[u8]) -> Option<u64> {
    match value.len() {
        8 => Some(u64::from_le_bytes(value.try_into().expect("8 bytes"))),
        len @ 0..8 => {
            let mut word = [0; 8];
            word[..len].copy_from_slice(value);
            Some(u64::from_le_bytes(word))
        }
        _ => None,
    }
}

impl Default for Grouper<'_> {
    fn default() -> Self {
        Self {
            hasher: foldhash::fast::FixedState::with_seed(0x5111_ce01),
            index: Index::default(),
            groups: Vec::new(),
            links: Vec::new(),
            runs: Vec::new(),
            ahead_from: AHEAD_FROM,
            #[cfg(test)]
            hash_mask: u32::MAX,
        }
    }
}

impl<'a> Grouper<'a> {
    /// Groups the `tuple<k, v>` pairs of `inputs`.
    pub fn of_pairs(inputs: impl IntoIterator<Item = &'a Rows>) -> Result<Self, ShuffleError> {
        Self::default().with_pairs(inputs)
    }

    /// Groups the packed groups of `inputs` again: one group per key, its
    /// runs in input order.
    pub fn of_packed(inputs: impl IntoIterator<Item = &'a Rows>) -> Result<Self, ShuffleError> {
        Self::default().with_packed(inputs)
    }

    /// Groups the `tuple<k, v>` pairs of `input` after those grouped
    /// before, copying into `arena` the keys and values the groups hold
    /// (one key per new group, one value per new run): `input` may go once
    /// this returns. A chain's pieces are grouped so, answer by answer
    /// (with room [`Grouper::reserve`]d for the block's keys first: grown
    /// answer by answer, the groups would be copied into fresh pages at
    /// each doubling).
    pub fn add_pairs(&mut self, arena: &'a Bump, input: &Rows) -> Result<(), ShuffleError> {
        self.group_pairs(input, arena)
    }

    fn with_pairs(
        mut self,
        inputs: impl IntoIterator<Item = &'a Rows>,
    ) -> Result<Self, ShuffleError> {
        let inputs: Vec<&Rows> = inputs.into_iter().collect();
        // A guess of the distinct keys (a word count's block has one for
        // about 14 pairs); the table grows past it if need be.
        self.reserve(inputs.iter().map(|input| input.len()).sum::<usize>() / 16);
        for input in inputs {
            self.group_pairs(input, InPlace)?;
        }
        Ok(self)
    }

    fn group_pairs<'b>(
        &mut self,
        input: &'b Rows,
        keep: impl Keep<'b, 'a>,
    ) -> Result<(), ShuffleError> {
        let pairs = input
            .iter()
            .enumerate()
            .map(|(index, record)| split_pair(record).ok_or(ShuffleError::NotAPair { index }));
        self.group_all(input.data(), pairs, keep, |grouper, g, value| {
            grouper.add(g, value, 1, keep)
        })
    }

    fn with_packed(
        mut self,
        inputs: impl IntoIterator<Item = &'a Rows>,
    ) -> Result<Self, ShuffleError> {
        for input in inputs {
            let groups = input.iter().enumerate().map(|(index, record)| {
                let (key, runs) = split_pair(record).ok_or(ShuffleError::NotAGroup { index })?;
                Ok((key, (index, runs)))
            });
            self.group_all(
                input.data(),
                groups,
                InPlace,
                |grouper, g, (index, mut runs)| {
                    // One run at least.
                    loop {
                        let (count, value) =
                            read_run(&mut runs).ok_or(ShuffleError::NotAGroup { index })?;
                        grouper.add(g, value, count, InPlace)?;
                        if runs.is_empty() {
                            return Ok(());
                        }
                    }
                },
            )?;
        }
        Ok(self)
    }

    /// Finds or starts the group of each record's key (the keys lie in
    /// `buffer`), in order, and calls `add` with it and the rest of the
    /// record; a new group's key is kept by `keep`. Once the groups outgrow
    /// the cache ([`AHEAD_FROM`]), reads [`AHEAD`] records at a time,
    /// asking for the index slots of all, then the groups in those slots,
    /// before the first lookup: the lookups then mostly find their lines in
    /// cache.
    fn group_all<'b, T>(
        &mut self,
        buffer: &[u8],
        records: impl Iterator<Item = Result<(&'b [u8], T), ShuffleError>>,
        keep: impl Keep<'b, 'a>,
        mut add: impl FnMut(&mut Self, usize, T) -> Result<(), ShuffleError>,
    ) -> Result<(), ShuffleError> {
        let mut records = records.peekable();
        let mut ahead: Vec<Ahead<'b, T>> = Vec::new();
        while records.peek().is_some() {
            if self.groups.len() < self.ahead_from {
                for record in records.by_ref().take(AHEAD) {
                    let (key, rest) = record?;
                    let short = short_of(key, buffer);
                    let g = self.group(key, short, self.hash(key, short), keep)?;
                    add(self, g, rest)?;
                }
                continue;
            }
            for record in records.by_ref().take(AHEAD) {
                let (key, rest) = record?;
                let short = short_of(key, buffer);
                let hash = self.hash(key, short);
                self.index.prefetch(hash);
                ahead.push(Ahead {
                    key,
                    short,
                    hash,
                    rest,
                });
            }
            for record in &ahead {
                if let Some(g) = self.index.at_home(record.hash) {
                    prefetch(&self.groups[g as usize]);
                }
            }
            for record in ahead.drain(..) {
                let g = self.group(record.key, record.short, record.hash, keep)?;
                add(self, g, record.rest)?;
            }
        }
        Ok(())
    }

    /// Room for `groups` more groups without growing.
    pub fn reserve(&mut self, groups: usize) {
        self.index.reserve(groups);
        self.groups.reserve(groups);
        self.links.reserve(groups);
    }

    /// The hash of a key whose first 16 bytes are `short`.
    #[inline]
    fn hash(&self, key: &[u8], short: u128) -> u32 {
        let hash = key_hash(&self.hasher, key, short);
        #[cfg(test)]
        let hash = hash & self.hash_mask;
        hash
    }

    /// The number of `key`'s group (its first 16 bytes `short`, its hash
    /// `hash`), its key kept by `keep` if it is new. A new group's last run
    /// is empty (a count of 0): the first [`Grouper::add`] replaces it.
    #[inline]
    fn group<'b>(
        &mut self,
        key: &'b [u8],
        short: u128,
        hash: u32,
        keep: impl Keep<'b, 'a>,
    ) -> Result<usize, ShuffleError> {
        let groups = &self.groups;
        let eq = |g: u32| {
            let group = &groups[g as usize];
            same_key((group.short, group.key), (short, key))
        };
        let next = next_number(groups.len())?;
        match self.index.find_or_insert(hash, eq, next) {
            Some(g) => Ok(g as usize),
            None => {
                self.groups.push(Group {
                    short,
                    key: keep.keep(key),
                    value: &[],
                    word: 0,
                    count: 0,
                });
                self.links.push(Links {
                    first: NO_RUN,
                    last: NO_RUN,
                });
                Ok(next as usize)
            }
        }
    }

    /// Appends `count` times `value` to group `g`'s values; `value` is kept
    /// by `keep` if it starts a run.
    #[inline]
    fn add<'b>(
        &mut self,
        g: usize,
        value: &'b [u8],
        count: u32,
        keep: impl Keep<'b, 'a>,
    ) -> Result<(), ShuffleError> {
        let group = &mut self.groups[g];
        let word = word_of(value);
        let same = group.value.len() == value.len()
            && match word {
                Some(word) => word == group.word,
                None => group.value == value,
            };
        if same && let Some(sum) = group.count.checked_add(count) {
            group.count = sum;
            return Ok(());
        }
        // The last run closes (unless it is the new group's empty one).
        if group.count > 0 {
            let run = u32::try_from(self.runs.len())
                .ok()
                .filter(|&r| r != NO_RUN)
                .ok_or(RowsError::TooLarge)?;
            self.runs.push(Run {
                value: group.value,
                count: group.count,
                next: NO_RUN,
            });
            let links = &mut self.links[g];
            match links.last {
                NO_RUN => links.first = run,
                last => self.runs[last as usize].next = run,
            }
            links.last = run;
        }
        (group.value, group.word, group.count) = (keep.keep(value), word.unwrap_or(0), count);
        Ok(())
    }

    /// The keys, in order of first appearance, each with its values.
    pub fn iter(&self) -> impl Iterator<Item = Values<'_, 'a>> {
        self.groups
            .iter()
            .zip(&self.links)
            .map(|(group, links)| Values {
                group,
                first: links.first,
                runs: &self.runs,
            })
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Whether `key` has values.
    pub fn contains(&self, key: &[u8]) -> bool {
        let hash = self.hash(key, short_of(key, key));
        self.index
            .find(hash, |g| self.groups[g as usize].key == key)
            .is_some()
    }

    /// The groups as packed group records, one per key.
    pub fn to_packed(&self) -> Result<Rows, ShuffleError> {
        let mut out = Rows::with_capacity(self.groups.len(), 0);
        for values in self.iter() {
            let len = 4
                + values.key().len()
                + values
                    .runs()
                    .map(|(count, value)| {
                        leb128_len(u64::from(count)) + leb128_len(value.len() as u64) + value.len()
                    })
                    .sum::<usize>();
            out.try_push_with(len, |buf| {
                write_prefixed(values.key(), buf)?;
                for (count, value) in values.runs() {
                    write_leb128(u64::from(count), buf);
                    write_leb128(value.len() as u64, buf);
                    buf.extend_from_slice(value);
                }
                Ok(())
            })?;
        }
        Ok(out)
    }
}

/// One key's values in a [`Grouper`].
pub struct Values<'g, 'a> {
    group: &'g Group<'a>,
    /// The first of its closed runs in `runs`.
    first: u32,
    runs: &'g [Run<'a>],
}

impl<'g, 'a> Values<'g, 'a> {
    /// The key.
    pub fn key(&self) -> &'a [u8] {
        self.group.key
    }

    /// The runs of equal values, in order: `(count, value)`.
    fn runs(&self) -> impl Iterator<Item = (u32, &'a [u8])> + 'g {
        let runs = self.runs;
        let mut next = self.first;
        let closed = std::iter::from_fn(move || {
            let run = runs.get(next as usize)?;
            next = run.next;
            Some((run.count, run.value))
        });
        closed.chain([(self.group.count, self.group.value)])
    }

    /// Bytes of the values as runs ([`Values::write_runs`]): the list's
    /// count, then per run its element's length (4), the count's length
    /// (4), the count (4) and the value.
    pub fn runs_len(&self) -> u64 {
        self.runs_size().0
    }

    /// [`Values::runs_len`] and the number of runs, in one pass.
    fn runs_size(&self) -> (u64, u64) {
        self.runs().fold((4, 0), |(bytes, runs), (_, value)| {
            (bytes + 12 + value.len() as u64, runs + 1)
        })
    }

    /// Appends the values as the state calls' runs, `list<tuple<u32, v>>`:
    /// each run a count (at least 1) and a value, in order
    /// ([`Values::runs_len`] bytes); fails, writing nothing, when it would
    /// pass the `u32` counts and lengths of the encoding.
    pub fn write_runs(&self, out: &mut Vec<u8>) -> Result<(), RowsError> {
        let (len, runs) = self.runs_size();
        let len = u32::try_from(len).map_err(|_| RowsError::TooLarge)?;
        // Each run takes 12 bytes at least: their number fits too.
        let runs = runs as u32;
        out.reserve(len as usize);
        out.extend_from_slice(&runs.to_le_bytes());
        for (count, value) in self.runs() {
            // Within `len`: no overflow.
            let element = 8 + value.len() as u32;
            out.extend_from_slice(&element.to_le_bytes());
            out.extend_from_slice(&4u32.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(value);
        }
        Ok(())
    }
}

/// Reads one run off the front of `bytes`: `None` when it is truncated, or
/// its count is 0 or past `u32`.
fn read_run<'a>(bytes: &mut &'a [u8]) -> Option<(u32, &'a [u8])> {
    let count = u32::try_from(read_leb128(bytes)?).ok().filter(|&c| c > 0)?;
    let len = usize::try_from(read_leb128(bytes)?).ok()?;
    let (value, rest) = bytes.split_at_checked(len)?;
    *bytes = rest;
    Some((count, value))
}

fn read_leb128(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

fn leb128_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn write_leb128(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::data::codec::{ListIter, write_pair};
    use crate::exec::shuffle::Groups;
    use crate::exec::testing::pairs;

    /// The values of a key, each run repeated.
    fn expanded(values: &Values<'_, '_>) -> Vec<Vec<u8>> {
        values
            .runs()
            .flat_map(|(count, value)| std::iter::repeat_n(value.to_vec(), count as usize))
            .collect()
    }

    /// The runs `write_runs` wrote, read back with the host's codec.
    fn read_runs(list: &[u8]) -> Vec<(u32, Vec<u8>)> {
        ListIter::new(list)
            .unwrap()
            .map(|run| {
                let (count, value) = split_pair(run.unwrap()).unwrap();
                (
                    u32::from_le_bytes(count.try_into().unwrap()),
                    value.to_vec(),
                )
            })
            .collect()
    }

    /// The keys and values, in order, checking the runs each writes.
    fn listed(grouper: &Grouper<'_>) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
        grouper
            .iter()
            .map(|values| {
                let mut list = Vec::new();
                values.write_runs(&mut list).unwrap();
                assert_eq!(list.len() as u64, values.runs_len());
                let runs = read_runs(&list);
                assert!(runs.iter().all(|(count, _)| *count >= 1));
                let from_runs: Vec<Vec<u8>> = runs
                    .into_iter()
                    .flat_map(|(count, value)| std::iter::repeat_n(value, count as usize))
                    .collect();
                let plain = expanded(&values);
                assert_eq!(from_runs, plain);
                (values.key().to_vec(), plain)
            })
            .collect()
    }

    /// Groupers that read ahead from their first group or not at all, with
    /// key hashes of 32 bits or of 2 (most keys share one): `(ahead_from,
    /// hash_mask)`.
    const TUNINGS: [(usize, u32); 4] = [
        (0, u32::MAX),
        (usize::MAX, u32::MAX),
        (0, 3),
        (usize::MAX, 3),
    ];

    fn tuned<'a>((ahead_from, hash_mask): (usize, u32)) -> Grouper<'a> {
        Grouper {
            ahead_from,
            hash_mask,
            ..Grouper::default()
        }
    }

    /// `pieces` grouped by [`Grouper::add_pairs`] into `arena`, each from a
    /// copy dropped once grouped.
    fn added_piece_by_piece<'a>(
        arena: &'a Bump,
        tuning: (usize, u32),
        pieces: &[Rows],
    ) -> Grouper<'a> {
        let mut grouper = tuned(tuning);
        for piece in pieces {
            grouper.add_pairs(arena, &piece.clone()).unwrap();
        }
        grouper
    }

    /// The plain grouping's keys and values, in order.
    fn reference(pieces: &[Rows]) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
        Groups::new(pieces)
            .unwrap()
            .iter()
            .map(|(k, vs)| (k.to_vec(), vs.iter().map(|v| v.to_vec()).collect()))
            .collect()
    }

    proptest! {
        /// Pairs grouped piece by piece, packed, then grouped again in
        /// merges of any fan-in (the early chains', the merges' and the
        /// stateful step's groupings), are the pairs grouped at once by the
        /// plain grouping: same keys in the same order, same values in the
        /// same order. Values from a small set, so runs form and break.
        ///
        /// Keys are compared by their first 16 bytes, zero-padded, first:
        /// the keys here are short, 15, 16 or more bytes long, share their
        /// first 16 bytes, or differ only by trailing NULs; some are not
        /// ASCII. Each grouping is done in every tuning ([`TUNINGS`]): read
        /// ahead or not, with hashes that mostly collide or not.
        #[test]
        fn packed_groups_of_groups_are_the_groups_of_all_pairs(
            pieces in proptest::collection::vec(
                proptest::collection::vec(
                    (
                        prop_oneof![Just(""), Just("0123456789abcde"), Just("0123456789abcdef")],
                        "[a\\x00é]{0,3}",
                        0i64..3,
                    ),
                    0..40,
                ),
                0..6,
            ),
            fan_in in 1usize..4,
        ) {
            let pieces: Vec<Rows> = pieces
                .iter()
                .map(|p| {
                    let keys: Vec<String> = p.iter().map(|(a, b, _)| format!("{a}{b}")).collect();
                    let items: Vec<(&str, i64)> =
                        keys.iter().zip(p).map(|(k, (_, _, v))| (k.as_str(), *v)).collect();
                    pairs(&items)
                })
                .collect();
            let expected = reference(&pieces);
            for tuning in TUNINGS {
                let packed: Vec<Rows> = pieces
                    .iter()
                    .map(|p| tuned(tuning).with_pairs([p]).unwrap().to_packed().unwrap())
                    .collect();
                let merged: Vec<Rows> = packed
                    .chunks(fan_in)
                    .map(|c| tuned(tuning).with_packed(c).unwrap().to_packed().unwrap())
                    .collect();
                let regrouped = tuned(tuning).with_packed(&merged).unwrap();
                prop_assert_eq!(&listed(&regrouped), &expected);
                prop_assert_eq!(&listed(&tuned(tuning).with_pairs(&pieces).unwrap()), &expected);
                let arena = Bump::new();
                prop_assert_eq!(&listed(&added_piece_by_piece(&arena, tuning, &pieces)), &expected);
                for (key, _) in &expected {
                    prop_assert!(regrouped.contains(key));
                }
                prop_assert!(!regrouped.contains(b"not a key"));
            }
        }

        /// Values of any width (none, short, 8 bytes, longer), some equal,
        /// some differing only in a trailing zero or in their length, group
        /// as in the plain grouping: values compared as numbers of up to 8
        /// bytes never join a run they differ from.
        #[test]
        fn values_of_any_width_join_only_runs_of_equal_values(
            items in proptest::collection::vec(
                (
                    "[ab]",
                    prop_oneof![
                        Just(vec![]), Just(vec![0]), Just(vec![0, 0]), Just(vec![1]),
                        Just(vec![1, 0]), Just(vec![0; 8]), Just(vec![0; 9]),
                        Just([vec![1], vec![0; 8]].concat()), Just(vec![7; 12]),
                    ],
                ),
                0..60,
            ),
        ) {
            let mut rows = Rows::new();
            for (key, value) in &items {
                let mut record = (key.len() as u32).to_le_bytes().to_vec();
                record.extend_from_slice(key.as_bytes());
                record.extend_from_slice(value);
                rows.push(&record);
            }
            let pieces = [rows];
            let grouper = Grouper::of_pairs(&pieces).unwrap();
            prop_assert_eq!(listed(&grouper), reference(&pieces));
            let packed = grouper.to_packed().unwrap();
            prop_assert_eq!(listed(&Grouper::of_packed([&packed]).unwrap()), reference(&pieces));
            for tuning in TUNINGS {
                // A pair a piece: every run's value comes from another input.
                let one_by_one: Vec<Rows> =
                    pieces[0].iter().map(|pair| Rows::from_iter([pair])).collect();
                let arena = Bump::new();
                let added = added_piece_by_piece(&arena, tuning, &one_by_one);
                prop_assert_eq!(listed(&added), reference(&pieces));
            }
        }

        /// The masked 16-byte read of a key is its first 16 bytes, padded,
        /// wherever the key lies in its buffer (near the end: copied).
        #[test]
        fn a_key_read_in_its_buffer_is_its_padded_prefix(
            buffer in proptest::collection::vec(any::<u8>(), 0..48),
            start in 0usize..48,
            len in 0usize..40,
        ) {
            let start = start.min(buffer.len());
            let key = &buffer[start..(start + len).min(buffer.len())];
            let mut padded = [0u8; 16];
            let n = key.len().min(16);
            padded[..n].copy_from_slice(&key[..n]);
            prop_assert_eq!(short_of(key, &buffer), u128::from_le_bytes(padded));
            prop_assert_eq!(short_of(key, key), u128::from_le_bytes(padded));
        }

        #[test]
        fn leb128_reads_what_it_writes(value in any::<u64>()) {
            let mut out = Vec::new();
            write_leb128(value, &mut out);
            prop_assert_eq!(out.len(), leb128_len(value));
            let mut bytes = &out[..];
            prop_assert_eq!(read_leb128(&mut bytes), Some(value));
            prop_assert!(bytes.is_empty());
        }
    }

    /// The runs of values of any width are the codec's
    /// `list<tuple<u32, v>>`: equal neighbours make one run.
    #[test]
    fn runs_of_any_width_are_the_codecs() {
        let values: [&[u8]; 7] = [
            b"",
            b"abc",
            b"abc",
            b"12345678",
            b"12345678",
            b"123456789",
            b"x",
        ];
        let mut rows = Rows::new();
        for value in values {
            let mut record = Vec::new();
            write_pair(b"k", value, &mut record).unwrap();
            rows.push(&record);
        }
        let grouper = Grouper::of_pairs([&rows]).unwrap();
        let mut list = Vec::new();
        grouper
            .iter()
            .next()
            .unwrap()
            .write_runs(&mut list)
            .unwrap();
        let runs: [(u32, &[u8]); 5] = [
            (1, b""),
            (2, b"abc"),
            (2, b"12345678"),
            (1, b"123456789"),
            (1, b"x"),
        ];
        let elements: Vec<Vec<u8>> = runs
            .iter()
            .map(|(count, value)| {
                let mut element = Vec::new();
                write_pair(&count.to_le_bytes(), value, &mut element).unwrap();
                element
            })
            .collect();
        let mut expected = Vec::new();
        crate::data::codec::write_list(elements.iter().map(Vec::as_slice), &mut expected).unwrap();
        assert_eq!(list, expected);
    }

    /// A word count's block: one run per key, whatever its count.
    #[test]
    fn equal_values_pack_into_one_run() {
        let items: Vec<(&str, i64)> = (0..1000).map(|i| (["a", "b"][i % 2], 1)).collect();
        let input = pairs(&items);
        let packed = Grouper::of_pairs([&input]).unwrap().to_packed().unwrap();
        // key (4 + 1) + count 500 (2) + length (1) + value (8), twice.
        assert_eq!(packed.byte_len(), 2 * 16);
        let again = Grouper::of_packed([&packed]).unwrap();
        assert_eq!(
            again.iter().map(|v| expanded(&v).len()).sum::<usize>(),
            1000
        );
    }

    #[test]
    fn malformed_packed_groups_are_errors() {
        for record in [
            // A key without runs; a truncated key.
            &b"\x01\0\0\0k"[..],
            &b"\x09\0\0\0k"[..],
            // A count of 0; past u32; a truncated varint; a short value.
            b"\x01\0\0\0k\x00\x01x",
            b"\x01\0\0\0k\x80\x80\x80\x80\x10\x01x",
            b"\x01\0\0\0k\x80",
            b"\x01\0\0\0k\x01\x02x",
            // A good run, then a truncated one.
            b"\x01\0\0\0k\x01\x01x\x01",
        ] {
            let mut rows = Rows::new();
            rows.push(b"\x01\0\0\0k\x01\x01x");
            rows.push(record);
            assert_eq!(
                Grouper::of_packed([&rows]).err(),
                Some(ShuffleError::NotAGroup { index: 1 }),
                "{record:?}"
            );
        }
    }
}
