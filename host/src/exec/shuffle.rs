//! The native half of keyed operators: bucketing a partition's pairs by the
//! one placement function ([`Partitioner::partition_of`], in
//! [`crate::data::partitioner`]), the built-in reducers (sum, min, max, count) with
//! their map-side combine and, for windows, the inverse of sum and count
//! ([`Builtin::inverse`]), grouping values by key for `group_by_key` and for
//! windows' guest reducers, and the key-disjoint pieces ([`key_pieces`]) in
//! which the guest's combine reduces a partition or merges early outputs
//! ([`combine_in_pieces`]).
//!
//! Keys are compared and placed as their encoded bytes (see `wit/sluice.wit`).
//! The in-memory hash maps here use a fast hasher; only placement is Kafka's
//! murmur2.

use std::hash::BuildHasher;

use hashbrown::HashMap;

use super::grouping::index::Index;
use super::grouping::totals::Totals;
use super::grouping::{InPlace, Keep};

use crate::data::Partitioner;
use crate::data::codec::{list_len, pair_len, split_pair, write_list, write_pair, write_prefixed};
use crate::data::{Number, Numeric, Rows, RowsError};
use crate::plan::Reducer;

/// Why the native part of a keyed operator failed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShuffleError {
    /// A record is not an encoded pair (or its value not the codec's number).
    #[error("record {index} is not an encoded (key, value) pair")]
    NotAPair {
        /// Index of the record in its input (a partition, an output, one
        /// piece's answer).
        index: usize,
    },
    /// A record is not a packed group (see [`super::grouping`]).
    #[error("record {index} is not a packed group of a key's values")]
    NotAGroup {
        /// Index of the record in its input (a partition, an output, one
        /// piece's answer).
        index: usize,
    },
    /// A record is not a number of the stream's codec.
    #[error("record {index} is not an encoded number of the stream's codec")]
    NotANumber {
        /// Index of the record in its input (a partition, an output, one
        /// piece's answer).
        index: usize,
    },
    /// An output partition, or a key's list of values, would pass 4 GiB.
    #[error(transparent)]
    TooLarge(#[from] RowsError),
}

type Hasher = foldhash::fast::FixedState;

/// The hasher of in-memory maps only (placement is [`Partitioner`]'s).
fn hasher() -> Hasher {
    foldhash::fast::FixedState::with_seed(0x5111_ce00)
}

/// An in-memory map keyed by encoded keys, with the fast hasher.
pub type KeyMap<K, V> = HashMap<K, V, Hasher>;

/// An empty [`KeyMap`].
pub fn key_map<K, V>() -> KeyMap<K, V> {
    HashMap::with_hasher(hasher())
}

/// The pairs of `inputs` (the buckets of one partition) in key-disjoint
/// pieces of about `limit` bytes each: every pair of a key is in the same
/// piece, in input order, so a piece can be combined on its own and the
/// answers of the pieces concatenate. The pieces are chosen by a hash of the
/// key (not the placement's), so a piece can pass `limit` a little, or by a
/// whole key with more values than that.
pub fn key_pieces<'a>(
    inputs: impl IntoIterator<Item = &'a Rows> + Clone,
    limit: usize,
) -> Result<Vec<KeyPiece>, ShuffleError> {
    let (records, bytes) = inputs
        .clone()
        .into_iter()
        .fold((0, 0), |(n, b), rows| (n + rows.len(), b + rows.byte_len()));
    let n = bytes.div_ceil(limit.max(1)).max(1);
    if n == 1 {
        // One piece: not cut, so no key is hashed here.
        let mut pairs = Rows::with_capacity(records, bytes);
        for rows in inputs {
            pairs.try_extend_from(rows)?;
        }
        return Ok(vec![KeyPiece {
            pairs,
            hashes: None,
        }]);
    }
    // Each pair's piece and hash bits first, then the pieces at their exact
    // sizes: a piece cut at the mean size would grow (a copy into fresh
    // pages) for about half of them.
    let hasher = hasher();
    let mut placed: Vec<(u32, u32)> = Vec::with_capacity(records);
    let mut sizes = vec![(0, 0); n];
    for rows in inputs.clone() {
        for (index, record) in rows.iter().enumerate() {
            let (key, _) = split_pair(record).ok_or(ShuffleError::NotAPair { index })?;
            let hash = hasher.hash_one(key);
            // The hash's high bits, scaled to `n`.
            let piece = ((u128::from(hash) * n as u128) >> 64) as usize;
            let (piece_records, piece_bytes) = &mut sizes[piece];
            *piece_records += 1;
            *piece_bytes += record.len();
            placed.push((piece as u32, singles_hash(hash)));
        }
    }
    let mut cut: Vec<(Rows, Vec<u32>)> = sizes
        .into_iter()
        .map(|(records, bytes)| {
            (
                Rows::with_capacity(records, bytes),
                Vec::with_capacity(records),
            )
        })
        .collect();
    let records = inputs.into_iter().flat_map(|rows| rows.iter());
    for (record, (piece, hash)) in records.zip(placed) {
        let (pairs, hashes) = &mut cut[piece as usize];
        pairs.try_push(record)?;
        hashes.push(hash);
    }
    Ok(cut
        .into_iter()
        .map(|(pairs, hashes)| KeyPiece {
            pairs,
            hashes: Some(hashes),
        })
        .collect())
}

/// A piece of [`key_pieces`]: its pairs, and the hash bits of each pair's
/// key that [`take_singles`] tells keys apart by, when cutting the pieces
/// computed them (so that no key is hashed twice).
#[derive(Debug)]
pub struct KeyPiece {
    /// The pairs, in input order.
    pairs: Rows,
    /// One for each pair when the pieces were cut by them; `None` for a
    /// single piece, which was not cut.
    hashes: Option<Vec<u32>>,
}

impl KeyPiece {
    /// The piece's pairs, in input order.
    pub fn pairs(&self) -> &Rows {
        &self.pairs
    }

    /// [`take_singles`] of the piece's pairs.
    pub fn take_singles(&self, singles: &mut Rows) -> Result<Rows, ShuffleError> {
        match &self.hashes {
            Some(hashes) => split_singles(&self.pairs, hashes, singles),
            None => take_singles(&self.pairs, singles),
        }
    }
}

/// Why [`combine_in_pieces`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CombineError<E> {
    /// The pairs could not be cut or passed on.
    #[error(transparent)]
    Pairs(#[from] ShuffleError),
    /// The combine of a piece failed.
    #[error(transparent)]
    Combine(E),
}

/// The pairs of `inputs` with one pair per key, each key's values folded by
/// `combine` (the guest's combine, which folds them in arrival order as
/// `reduce-groups` would over the key's list): `reduce_by_key` with a guest
/// reducer over a partition's buckets, and the merge of a chain's early
/// outputs. The pairs go to `combine` in key-disjoint pieces of about
/// `limit` bytes ([`key_pieces`]), so that the guest's memory follows the
/// piece and not the number of keys, and its answers concatenate; the pairs
/// of keys that occur once in their piece need no call and pass as they are
/// ([`KeyPiece::take_singles`]).
pub fn combine_in_pieces<'a, E>(
    inputs: impl IntoIterator<Item = &'a Rows> + Clone,
    limit: usize,
    mut combine: impl FnMut(&mut Rows) -> Result<Rows, E>,
) -> Result<Rows, CombineError<E>> {
    let pieces = key_pieces(inputs, limit)?;
    // Room for as much as the input: a reducer's answer is at most that
    // when its values keep their size (a count, a sum), so the output does
    // not grow (a copy into fresh pages each time).
    let (records, bytes) = pieces.iter().fold((0, 0), |(n, b), piece| {
        (n + piece.pairs.len(), b + piece.pairs.byte_len())
    });
    let mut combined = Rows::with_capacity(records, bytes);
    for piece in pieces {
        let mut rest = piece.take_singles(&mut combined)?;
        if rest.is_empty() {
            continue;
        }
        let answer = combine(&mut rest).map_err(CombineError::Combine)?;
        if combined.is_empty() {
            combined = answer;
        } else {
            combined
                .try_extend_from(&answer)
                .map_err(ShuffleError::from)?;
        }
    }
    // The output is held until its batch is done: without the room it did
    // not use, which a smaller buffer could have reused.
    combined.shrink_to_fit();
    Ok(combined)
}

/// The bits of a key's hash that [`take_singles`] tells keys apart by.
fn singles_hash(hash: u64) -> u32 {
    hash as u32
}

/// Moves the pairs of the keys that occur once in `pairs` to the end of
/// `singles`, and returns the pairs of the keys that occur more than once;
/// both in input order. A reducer has nothing to do for the first: they
/// skip the guest (whose call costs microseconds a record in Python or
/// JavaScript).
///
/// Keys are told apart by 32 bits of their hash, never compared, so that a
/// pair costs a hash and an index lookup whose slot is asked for ahead,
/// not a read of another record: a key that occurs once but shares its
/// hash bits with another one (about one in 50,000 of a 2 MiB piece) goes
/// with the rest, where the reducer passes it on as it is.
pub fn take_singles(pairs: &Rows, singles: &mut Rows) -> Result<Rows, ShuffleError> {
    let hasher = hasher();
    take_singles_by(pairs, singles, |key| singles_hash(hasher.hash_one(key)))
}

/// [`take_singles`] with the hash of its keys given.
fn take_singles_by(
    pairs: &Rows,
    singles: &mut Rows,
    hash: impl Fn(&[u8]) -> u32,
) -> Result<Rows, ShuffleError> {
    let hashes = pairs
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let (key, _) = split_pair(record).ok_or(ShuffleError::NotAPair { index })?;
            Ok::<_, ShuffleError>(hash(key))
        })
        .collect::<Result<Vec<u32>, _>>()?;
    split_singles(pairs, &hashes, singles)
}

/// [`take_singles`] with the hash bits of each pair's key given.
fn split_singles(pairs: &Rows, hashes: &[u32], singles: &mut Rows) -> Result<Rows, ShuffleError> {
    /// How many records ahead of its lookup a record's slot is asked for.
    const AHEAD: usize = 16;
    debug_assert_eq!(pairs.len(), hashes.len());
    let mut first = Index::default();
    first.reserve(hashes.len());
    let mut several = vec![false; hashes.len()];
    for (index, &hash) in hashes.iter().enumerate() {
        if let Some(&ahead) = hashes.get(index + AHEAD) {
            first.prefetch(ahead);
        }
        if let Some(seen) = first.find_or_insert(hash, |_| true, index as u32) {
            several[seen as usize] = true;
            several[index] = true;
        }
    }
    drop(first);
    // Both sides at their exact sizes, so neither grows (a copy into fresh
    // pages each time).
    let (rest_records, rest_bytes) = pairs
        .iter()
        .zip(&several)
        .filter(|(_, several)| **several)
        .fold((0, 0), |(n, b), (record, _)| (n + 1, b + record.len()));
    let mut rest = Rows::with_capacity(rest_records, rest_bytes);
    singles.reserve(pairs.len() - rest_records, pairs.byte_len() - rest_bytes);
    for (record, several) in pairs.iter().zip(several) {
        if several {
            rest.try_push(record)?;
        } else {
            singles.try_push(record)?;
        }
    }
    Ok(rest)
}

/// Splits a partition of pairs into one bucket per partition of
/// `partitioner`, by key.
pub fn bucket(input: &Rows, partitioner: Partitioner) -> Result<Vec<Rows>, ShuffleError> {
    let partitions = partitioner.partitions();
    let mut buckets: Vec<Rows> = (0..partitions)
        .map(|_| {
            Rows::with_capacity(
                input.len() / partitions + 1,
                input.byte_len() / partitions + 1,
            )
        })
        .collect();
    for (index, record) in input.iter().enumerate() {
        let (key, _) = split_pair(record).ok_or(ShuffleError::NotAPair { index })?;
        buckets[partitioner.partition_of(key)].try_push(record)?;
    }
    Ok(buckets)
}

/// A built-in reducer over one numeric value codec.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    op: Op,
    /// The codec values are read in (map side: the stream's value codec).
    read: Numeric,
    /// Map side of `count`: each value counts 1 whatever it holds.
    count_values: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Sum,
    Min,
    Max,
}

impl Builtin {
    /// The map-side combine of `reducer` over values of codec `value`
    /// (`None` for `count`, which accepts any value).
    pub fn map_side(reducer: Reducer, value: Option<Numeric>) -> Option<Builtin> {
        let (op, count_values) = match reducer {
            Reducer::Sum => (Op::Sum, false),
            Reducer::Min => (Op::Min, false),
            Reducer::Max => (Op::Max, false),
            Reducer::Count => (Op::Sum, true),
            Reducer::Function(_) => return None,
        };
        let read = if count_values { Numeric::I64 } else { value? };
        Some(Builtin {
            op,
            read,
            count_values,
        })
    }

    /// The reduce side: merges the map side's outputs (`count` becomes a sum
    /// of `i64` counts).
    pub fn reduce_side(self) -> Builtin {
        Builtin {
            count_values: false,
            ..self
        }
    }

    /// `a` combined with `b` (`a + b` for sum and count).
    pub fn merge(self, a: Number, b: Number) -> Number {
        use Number::{Float, Int};
        match (self.op, a, b) {
            (Op::Sum, Int(x), Int(y)) => Int(x.wrapping_add(y)),
            (Op::Sum, Float(x), Float(y)) => Float(x + y),
            (Op::Min, Int(x), Int(y)) => Int(x.min(y)),
            (Op::Min, Float(x), Float(y)) => Float(x.min(y)),
            (Op::Max, Int(x), Int(y)) => Int(x.max(y)),
            (Op::Max, Float(x), Float(y)) => Float(x.max(y)),
            _ => unreachable!("one codec per stream"),
        }
    }

    /// The inverse of [`Builtin::merge`], for incremental windows: `a - b`
    /// for sum and count (integers wrap as the guest's arithmetic would),
    /// `None` for min and max, which have none.
    pub fn inverse(self, a: Number, b: Number) -> Option<Number> {
        use Number::{Float, Int};
        match (self.op, a, b) {
            (Op::Sum, Int(x), Int(y)) => Some(Int(x.wrapping_sub(y))),
            (Op::Sum, Float(x), Float(y)) => Some(Float(x - y)),
            _ => None,
        }
    }

    /// The value of an encoded value of the reduce side (`None` unless it
    /// has the codec's width).
    pub fn read(self, bytes: &[u8]) -> Option<Number> {
        self.read.read(bytes)
    }

    /// Appends the encoding of `n` (integers wrapped to the codec's width).
    pub fn write(self, n: Number, out: &mut Vec<u8>) {
        self.read.write(n, out)
    }

    /// Whether an encoded value is zero (`0`, `0.0` or `-0.0`): what the
    /// `nonzero` key filter drops.
    pub fn is_zero(self, bytes: &[u8]) -> bool {
        match self.read.read(bytes) {
            Some(Number::Int(i)) => i == 0,
            Some(Number::Float(f)) => f == 0.0,
            None => false,
        }
    }

    /// Zero in the reduce side's codec: what a sum or count starts from.
    pub fn zero(self) -> Number {
        match self.read {
            Numeric::F32 | Numeric::F64 => Number::Float(0.0),
            _ => Number::Int(0),
        }
    }

    /// Reduces whole records (not pairs) to one value, encoded; `None` when
    /// there are none. (`reduce` with a built-in reducer.)
    pub fn reduce_values<'a>(
        self,
        records: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Option<Vec<u8>>, ShuffleError> {
        let mut total: Option<Number> = None;
        for (index, record) in records.into_iter().enumerate() {
            let value = if self.count_values {
                Number::Int(1)
            } else {
                self.read
                    .read(record)
                    .ok_or(ShuffleError::NotANumber { index })?
            };
            total = Some(total.map_or(value, |t| self.merge(t, value)));
        }
        Ok(total.map(|total| {
            let mut out = Vec::with_capacity(8);
            self.read.write(total, &mut out);
            out
        }))
    }

    /// Combines the values of equal keys across `inputs`, writing one pair
    /// per key into the bucket of its partition under `partitioner`, keys
    /// in order of first appearance ([`Totals`]).
    pub fn combine<'a>(
        self,
        inputs: impl IntoIterator<Item = &'a Rows>,
        partitioner: Partitioner,
    ) -> Result<Vec<Rows>, ShuffleError> {
        self.bucketed(&self.totals(inputs, |_| true)?, partitioner)
    }

    /// One pair per key of `totals` in the bucket of its partition under
    /// `partitioner`, keys in order of first appearance.
    pub(in crate::exec) fn bucketed(
        self,
        totals: &Totals<'_>,
        partitioner: Partitioner,
    ) -> Result<Vec<Rows>, ShuffleError> {
        let partitions = partitioner.partitions();
        let mut scratch = Vec::with_capacity(16);
        self.write(self.zero(), &mut scratch);
        // Exact for one partition: each pair's key and a value of the
        // codec's width; the share of the whole for more.
        let bytes: usize = totals
            .iter()
            .map(|(key, _)| pair_len(key, scratch.len()))
            .sum();
        let mut buckets: Vec<Rows> = (0..partitions)
            .map(|_| {
                Rows::with_capacity(
                    totals.len().div_ceil(partitions),
                    bytes.div_ceil(partitions),
                )
            })
            .collect();
        for (key, total) in totals.iter() {
            scratch.clear();
            self.read.write(total, &mut scratch);
            buckets[partitioner.partition_of(key)]
                .try_push_with(pair_len(key, scratch.len()), |out| {
                    write_pair(key, &scratch, out)
                })?;
        }
        Ok(buckets)
    }
}

impl Builtin {
    /// The values of equal keys across `inputs` combined, for the keys
    /// `accept` takes, keys in order of first appearance.
    pub(in crate::exec) fn totals<'a>(
        self,
        inputs: impl IntoIterator<Item = &'a Rows>,
        accept: impl Fn(&[u8]) -> bool,
    ) -> Result<Totals<'a>, ShuffleError> {
        let inputs: Vec<&Rows> = inputs.into_iter().collect();
        // A guess of the distinct keys (a block's pairs have one for about
        // 14 pairs, a merge's mostly distinct ones); the table grows past it.
        let mut totals = Totals::with_capacity(inputs.iter().map(|i| i.len()).sum::<usize>() / 8);
        for input in inputs {
            self.add_pairs(&mut totals, input, InPlace, &accept)?;
        }
        Ok(totals)
    }

    /// Adds the pairs of `input` whose keys `accept` takes to `totals`,
    /// keeping their new keys by `keep`: copied into an arena, `input`
    /// may go once added (a chain's answers, one by one).
    pub(in crate::exec) fn add_pairs<'a, 'b>(
        self,
        totals: &mut Totals<'a>,
        input: &'b Rows,
        keep: impl Keep<'b, 'a>,
        accept: impl Fn(&[u8]) -> bool,
    ) -> Result<(), ShuffleError> {
        let records = input.iter().enumerate().filter_map(|(index, record)| {
            let Some((key, value)) = split_pair(record) else {
                return Some(Err(ShuffleError::NotAPair { index }));
            };
            if !accept(key) {
                return None;
            }
            if self.count_values {
                return Some(Ok((key, Number::Int(1))));
            }
            // `None` unless the value has the codec's width.
            Some(
                self.read
                    .read(value)
                    .map(|value| (key, value))
                    .ok_or(ShuffleError::NotAPair { index }),
            )
        });
        totals.add_all(input.data(), records, keep, |a, b| self.merge(a, b))
    }
}

/// The values of each key of some partitions of pairs, keys in order of first
/// appearance and values in input order.
pub struct Groups<'a> {
    index: HashMap<&'a [u8], usize, Hasher>,
    groups: Vec<(&'a [u8], Vec<&'a [u8]>)>,
}

impl<'a> Groups<'a> {
    /// Groups the pairs of `inputs`.
    pub fn new(inputs: impl IntoIterator<Item = &'a Rows>) -> Result<Groups<'a>, ShuffleError> {
        let mut groups = Groups {
            index: HashMap::with_hasher(hasher()),
            groups: Vec::new(),
        };
        for input in inputs {
            for (index, record) in input.iter().enumerate() {
                let (key, value) = split_pair(record).ok_or(ShuffleError::NotAPair { index })?;
                match groups.index.get(key) {
                    Some(&g) => groups.groups[g].1.push(value),
                    None => {
                        groups.index.insert(key, groups.groups.len());
                        groups.groups.push((key, vec![value]));
                    }
                }
            }
        }
        Ok(groups)
    }

    /// The keys, in order of first appearance, each with its values.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &[&'a [u8]])> {
        self.groups
            .iter()
            .map(|(key, values)| (*key, values.as_slice()))
    }

    /// `tuple<k, list<v>>` records, one per key.
    pub fn to_lists(&self) -> Result<Rows, ShuffleError> {
        let mut out = Rows::with_capacity(self.groups.len(), 0);
        for (key, values) in &self.groups {
            push_list(&mut out, key, values)?;
        }
        Ok(out)
    }

    /// Splits the groups into keys with a single value, already reduced
    /// (returned as `tuple<k, v>` records), and `tuple<k, list<v>>` records of
    /// the keys with several values, which need the reducer.
    pub fn split_singles(&self) -> Result<(Rows, Rows), ShuffleError> {
        let mut singles = Rows::new();
        let mut lists = Rows::new();
        for (key, values) in &self.groups {
            if let [value] = values.as_slice() {
                singles.try_push_with(pair_len(key, value.len()), |buf| {
                    write_pair(key, value, buf)
                })?;
            } else {
                push_list(&mut lists, key, values)?;
            }
        }
        Ok((singles, lists))
    }
}

/// Appends the `tuple<k, list<v>>` record of `key` and `values` to `out`,
/// checking its size before copying anything.
fn push_list(out: &mut Rows, key: &[u8], values: &[&[u8]]) -> Result<(), ShuffleError> {
    let len = pair_len(key, list_len(values.iter().copied()));
    out.try_push_with(len, |buf| {
        write_prefixed(key, buf)?;
        write_list(values.iter().copied(), buf)
    })?;
    Ok(())
}

/// Spreads the records of `inputs` round-robin over `partitions` partitions.
pub fn round_robin(inputs: &[Rows], partitions: usize) -> Result<Vec<Rows>, ShuffleError> {
    let mut out: Vec<Rows> = (0..partitions).map(|_| Rows::new()).collect();
    let mut next = 0;
    for input in inputs {
        for record in input {
            out[next].try_push(record)?;
            next = (next + 1) % partitions;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::KeyGroups;
    use crate::data::codec::ListIter;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn pairs(items: &[(&str, i64)]) -> Rows {
        let mut rows = Rows::new();
        for (k, v) in items {
            rows.try_push_with(pair_len(k.as_bytes(), 8), |b| {
                write_pair(k.as_bytes(), &v.to_le_bytes(), b)
            })
            .unwrap();
        }
        rows
    }

    /// How many times each key occurs.
    fn occurrences<'a>(items: &[(&'a str, i64)]) -> BTreeMap<&'a str, usize> {
        let mut occurs = BTreeMap::new();
        for (k, _) in items {
            *occurs.entry(*k).or_insert(0) += 1;
        }
        occurs
    }

    fn decode(rows: &[Rows]) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for r in rows {
            for rec in r {
                let (k, v) = split_pair(rec).unwrap();
                let old = out.insert(
                    String::from_utf8(k.to_vec()).unwrap(),
                    i64::from_le_bytes(v.try_into().unwrap()),
                );
                assert!(old.is_none(), "a key appears once after a reduce");
            }
        }
        out
    }

    fn partitioner(partitions: usize) -> Partitioner {
        Partitioner::new(KeyGroups::default(), partitions)
    }

    #[test]
    fn every_key_lands_in_the_partition_partition_of_names() {
        let input = pairs(&[("a", 1), ("b", 2), ("a", 3), ("c", 4)]);
        let buckets = bucket(&input, partitioner(3)).unwrap();
        for (p, b) in buckets.iter().enumerate() {
            for rec in b {
                let (k, _) = split_pair(rec).unwrap();
                assert_eq!(partitioner(3).partition_of(k), p);
            }
        }
        assert_eq!(buckets.iter().map(Rows::len).sum::<usize>(), 4);
    }

    #[test]
    fn keys_are_bucketed_by_kafka_murmur2_of_their_bytes() {
        // From wit/vectors/partitioner.json: "foobar" has positive hash
        // 1357151166, key group 62 of 128, partition 2 of 4 and 6 of 7.
        let input = pairs(&[("foobar", 1)]);
        assert_eq!(bucket(&input, partitioner(4)).unwrap()[2].len(), 1);
        assert_eq!(bucket(&input, partitioner(7)).unwrap()[6].len(), 1);
        let sum = Builtin::map_side(Reducer::Sum, Some(Numeric::I64)).unwrap();
        assert_eq!(sum.combine([&input], partitioner(7)).unwrap()[6].len(), 1);
    }

    #[test]
    fn malformed_pairs_are_errors() {
        let mut rows = Rows::new();
        rows.push(&[200, 0, 0, 0, 1]);
        assert_eq!(
            bucket(&rows, partitioner(2)).unwrap_err(),
            ShuffleError::NotAPair { index: 0 }
        );
        // After a good pair: the index is the bad record's.
        let mut rows2 = pairs(&[("a", 1)]);
        rows2.push(&[200, 0, 0, 0, 1]);
        assert_eq!(
            key_pieces([&rows2], 1).unwrap_err(),
            ShuffleError::NotAPair { index: 1 }
        );
        assert_eq!(
            take_singles(&rows2, &mut Rows::new()).unwrap_err(),
            ShuffleError::NotAPair { index: 1 }
        );
    }

    #[test]
    fn groups_keep_first_appearance_order() {
        let input = pairs(&[("b", 1), ("a", 2), ("b", 3)]);
        let groups = Groups::new([&input]).unwrap();
        let lists = groups.to_lists().unwrap();
        let (k, list) = split_pair(lists.get(0)).unwrap();
        assert_eq!(k, b"b");
        let values: Vec<i64> = ListIter::new(list)
            .unwrap()
            .map(|v| i64::from_le_bytes(v.unwrap().try_into().unwrap()))
            .collect();
        assert_eq!(values, vec![1, 3]);
        let (singles, multi) = groups.split_singles().unwrap();
        assert_eq!(singles.len(), 1);
        assert_eq!(multi.len(), 1);
    }

    /// A partition of `len` zero bytes as one record: a pair with the empty
    /// key and a value of `len - 4` bytes. Zeroed and never touched, it
    /// costs no memory.
    fn huge_pair(len: usize) -> Rows {
        Rows::from_parts(vec![0u8; len], vec![u32::try_from(len).unwrap()]).unwrap()
    }

    #[test]
    fn groups_and_partitions_past_4_gib_are_errors() {
        let inputs = [huge_pair(3 << 30), huge_pair(3 << 30)];
        let groups = Groups::new(&inputs).unwrap();
        let too_large = ShuffleError::TooLarge(RowsError::TooLarge);
        assert_eq!(groups.to_lists().unwrap_err(), too_large);
        assert_eq!(groups.split_singles().unwrap_err(), too_large);
        // A one-partition shuffle of the two: nothing past the first record
        // is copied before the error.
        let small = pairs(&[("a", 1)]);
        let inputs = [small, huge_pair(u32::MAX as usize)];
        assert_eq!(round_robin(&inputs, 1).unwrap_err(), too_large);
        let groups = Groups::new(&inputs).unwrap();
        assert_eq!(groups.to_lists().unwrap_err(), too_large);
    }

    #[test]
    fn sum_and_count_have_an_inverse_and_min_and_max_none() {
        let sum = Builtin::map_side(Reducer::Sum, Some(Numeric::I64)).unwrap();
        let count = Builtin::map_side(Reducer::Count, None)
            .unwrap()
            .reduce_side();
        for b in [sum, count] {
            let total = b.merge(Number::Int(5), Number::Int(-7));
            assert_eq!(b.inverse(total, Number::Int(-7)), Some(Number::Int(5)));
        }
        let mut out = Vec::new();
        sum.write(
            sum.inverse(Number::Int(i64::MIN as i128), Number::Int(1))
                .unwrap(),
            &mut out,
        );
        assert_eq!(
            sum.read(&out),
            Some(Number::Int(i64::MAX as i128)),
            "wraps as i64"
        );
        assert!(sum.is_zero(&0i64.to_le_bytes()) && !sum.is_zero(&1i64.to_le_bytes()));
        let float = Builtin::map_side(Reducer::Sum, Some(Numeric::F64)).unwrap();
        assert!(float.is_zero(&(-0.0f64).to_le_bytes()));
        assert_eq!(float.zero(), Number::Float(0.0));
        for r in [Reducer::Min, Reducer::Max] {
            let b = Builtin::map_side(r, Some(Numeric::I64)).unwrap();
            assert_eq!(b.inverse(Number::Int(1), Number::Int(1)), None);
        }
    }

    /// Each key's records, in order, by key.
    fn by_key<'a>(rows: impl IntoIterator<Item = &'a Rows>) -> BTreeMap<Vec<u8>, Vec<Vec<u8>>> {
        let mut out: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        for r in rows {
            for rec in r {
                let (k, _) = split_pair(rec).unwrap();
                out.entry(k.to_vec()).or_default().push(rec.to_vec());
            }
        }
        out
    }

    proptest! {
        /// Key pieces hold every record once, each key's records in one
        /// piece and in input order; there are as many pieces as the limit
        /// asks for (one when the input fits). A piece's `take_singles`,
        /// with the hashes cutting the pieces computed, splits its pairs as
        /// `take_singles` does, which hashes them again. The pieces, and the
        /// rest a piece's `take_singles` returns, are sized before they are
        /// filled: no room to spare, so they never grew.
        #[test]
        fn key_pieces_split_a_partition_without_splitting_a_key(
            items in proptest::collection::vec(("[a-h]{0,3}", -1000i64..1000), 0..300),
            cut in 1usize..50,
            limit in 1usize..2000,
        ) {
            let items: Vec<(&str, i64)> = items.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let inputs: Vec<Rows> = items.chunks(cut).map(pairs).collect();
            let mut pieces = Vec::new();
            let cut_pieces = key_pieces(&inputs, limit).unwrap();
            // One piece is the inputs concatenated, sized by their sum.
            prop_assert!(cut_pieces.iter().all(|p| p.pairs().is_exact()), "a piece grew");
            for piece in cut_pieces {
                let mut plain_singles = pairs(&[("held", 7)]);
                let plain_rest = take_singles(piece.pairs(), &mut plain_singles).unwrap();
                pieces.push(piece.pairs().clone());
                let mut singles = pairs(&[("held", 7)]);
                let rest = piece.take_singles(&mut singles).unwrap();
                prop_assert!(rest.is_exact(), "the rest grew");
                prop_assert_eq!(rest, plain_rest);
                prop_assert_eq!(singles, plain_singles);
            }
            let bytes: usize = inputs.iter().map(Rows::byte_len).sum();
            prop_assert_eq!(pieces.len(), bytes.div_ceil(limit).max(1));
            let mut seen = BTreeMap::new();
            for (i, piece) in pieces.iter().enumerate() {
                for rec in piece {
                    let (k, _) = split_pair(rec).unwrap();
                    let first = *seen.entry(k.to_vec()).or_insert(i);
                    prop_assert_eq!(first, i, "a key in two pieces");
                }
            }
            prop_assert_eq!(by_key(&pieces), by_key(&inputs));
        }

        /// `combine_in_pieces` with a combine that sums each key's values
        /// gives one pair per key, holding the sum of its values, whatever
        /// the pieces; the combine is called only with keys that occur more
        /// than once, and a failed call is its error.
        #[test]
        fn combine_in_pieces_gives_each_key_once_with_its_values_folded(
            items in proptest::collection::vec(("[a-h]{0,3}", -1000i64..1000), 0..300),
            cut in 1usize..50,
            limit in 1usize..2000,
        ) {
            let items: Vec<(&str, i64)> = items.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let inputs: Vec<Rows> = items.chunks(cut).map(pairs).collect();
            let sum = |piece: &mut Rows| {
                let mut sums: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
                for rec in &*piece {
                    let (k, v) = split_pair(rec).unwrap();
                    *sums.entry(k.to_vec()).or_default() += i64::from_le_bytes(v.try_into().unwrap());
                }
                let keys: usize = piece.len();
                if sums.len() == keys {
                    return Err(format!("a call with {keys} distinct keys"));
                }
                let mut out = Rows::new();
                for (k, v) in sums {
                    out.try_push_with(pair_len(&k, 8), |b| write_pair(&k, &v.to_le_bytes(), b)).unwrap();
                }
                Ok(out)
            };
            let combined = combine_in_pieces(&inputs, limit, sum).unwrap();
            let mut expect = BTreeMap::new();
            for (k, v) in &items {
                *expect.entry(k.to_string()).or_insert(0) += v;
            }
            prop_assert_eq!(decode(&[combined]), expect);
            let failed = combine_in_pieces(&inputs, limit, |_| Err("failed"));
            let repeated = occurrences(&items).values().any(|&n| n > 1);
            prop_assert_eq!(matches!(failed, Err(CombineError::Combine("failed"))), repeated);
        }

        /// `take_singles` puts each pair with the pairs of its key: after
        /// what `singles` held when its key occurs once, with the rest
        /// otherwise; order kept.
        #[test]
        fn take_singles_splits_pairs_by_how_often_their_key_occurs(
            items in proptest::collection::vec(("[a-f]{0,2}", -1000i64..1000), 0..300),
        ) {
            let items: Vec<(&str, i64)> = items.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let occurs = occurrences(&items);
            let held = [("held", 7)];
            let mut singles = pairs(&held);
            let rest = take_singles(&pairs(&items), &mut singles).unwrap();
            let expect = |once: bool| {
                items.iter().copied().filter(|(k, _)| (occurs[k] == 1) == once).collect::<Vec<_>>()
            };
            prop_assert_eq!(singles, pairs(&[held.to_vec(), expect(true)].concat()));
            prop_assert_eq!(rest, pairs(&expect(false)));
        }

        /// With hashes that collide (all keys of a length share one), a
        /// key that occurs more than once is never a single, and each side
        /// keeps its pairs in input order.
        #[test]
        fn take_singles_never_takes_a_repeated_key_when_hashes_collide(
            items in proptest::collection::vec(("[a-f]{0,3}", -1000i64..1000), 0..300),
        ) {
            let items: Vec<(&str, i64)> = items.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let occurs = occurrences(&items);
            let mut singles = Rows::new();
            let rest = take_singles_by(&pairs(&items), &mut singles, |key| key.len() as u32).unwrap();
            let taken: BTreeSet<&[u8]> = singles.iter().map(|r| split_pair(r).unwrap().0).collect();
            for (k, n) in &occurs {
                prop_assert!(*n == 1 || !taken.contains(k.as_bytes()), "{k:?} occurs {n} times");
            }
            let side = |single: bool| {
                items.iter().copied().filter(|(k, _)| taken.contains(k.as_bytes()) == single).collect::<Vec<_>>()
            };
            prop_assert_eq!(&singles, &pairs(&side(true)));
            prop_assert_eq!(rest, pairs(&side(false)));
        }

        /// Built-in reducers, map side then reduce side over any split of the
        /// input into partitions, equal a brute-force fold.
        #[test]
        fn builtin_reducers_match_a_brute_force_fold(
            items in proptest::collection::vec(("[a-e]{1,2}", -1000i64..1000), 0..200),
            cut in 1usize..5,
            parts in 1usize..4,
        ) {
            let items: Vec<(&str, i64)> = items.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let inputs: Vec<Rows> = items.chunks(cut).map(pairs).collect();
            for (reducer, fold) in [
                (Reducer::Sum, (|a: i64, b: i64| a + b) as fn(i64, i64) -> i64),
                (Reducer::Min, |a: i64, b: i64| a.min(b)),
                (Reducer::Max, |a: i64, b: i64| a.max(b)),
            ] {
                let map = Builtin::map_side(reducer, Some(Numeric::I64)).unwrap();
                let mapped: Vec<Vec<Rows>> = inputs.iter().map(|i| map.combine([i], partitioner(parts)).unwrap()).collect();
                let reduced: Vec<Rows> = (0..parts)
                    .map(|p| map.reduce_side().combine(mapped.iter().map(|m| &m[p]), Partitioner::single()).unwrap().remove(0))
                    .collect();
                let mut expected = BTreeMap::new();
                for (k, v) in &items {
                    expected.entry(k.to_string()).and_modify(|t| *t = fold(*t, *v)).or_insert(*v);
                }
                prop_assert_eq!(decode(&reduced), expected);
            }
            let count = Builtin::map_side(Reducer::Count, None).unwrap();
            let mapped: Vec<Vec<Rows>> = inputs.iter().map(|i| count.combine([i], Partitioner::single()).unwrap()).collect();
            let reduced = count.reduce_side().combine(mapped.iter().map(|m| &m[0]), Partitioner::single()).unwrap();
            let mut expected = BTreeMap::new();
            for (k, _) in &items {
                *expected.entry(k.to_string()).or_insert(0) += 1;
            }
            prop_assert_eq!(decode(&reduced), expected);
        }
    }
}
