//! The function table's entries: user closures behind type-erased,
//! per-partition interfaces.
//!
//! A closure is registered with its types when the job is defined; the host
//! later calls it by id with encoded partitions. Everything here works on a
//! whole partition at a time: a chain decodes its input once into a `Vec<T>`
//! (as a `Box<dyn Any>`), each stage turns the vector into the next one, and
//! the last stage encodes the result into one buffer. Nothing is boxed or
//! dispatched per record.

use std::any::Any;
use std::cell::RefCell;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::rc::Rc;

use hashbrown::HashTable;

use crate::bindings::sluice::plugin::types::Rows;
use crate::codec::{Data, DecodeError, for_each_list_element, split_pair};
use crate::rows::{decode_all, decode_error, encode_all, end_offset, records};

/// A partition between two stages of a chain: a `Vec<T>` of the stage's type.
pub(crate) type Partition = Box<dyn Any>;

/// One entry of the function table.
pub(crate) struct Entry {
    /// The name of the node that registered it, e.g. `"map at src/lib.rs:3:9"`.
    pub(crate) name: Rc<str>,
    pub(crate) function: Function,
}

/// What a registered function can be called as.
pub(crate) enum Function {
    /// `map`, `flat_map`, `filter`, `map_partitions`: a `stage::apply`.
    Narrow(Box<dyn ChainFn>),
    /// The reducer of `reduce_by_key`: a `stage::combine` and `reduce-groups`.
    KeyReducer(Box<dyn KeyReducerFn>),
    /// The reducer of `reduce`: `reduce-all`.
    Reducer(Box<dyn ReduceAllFn>),
    /// The function of `foreach_partition`.
    Output(Box<dyn OutputFn>),
}

impl Function {
    /// What the function is, for messages about misuse by the host.
    pub(crate) fn what(&self) -> &'static str {
        match self {
            Function::Narrow(_) => "a narrow operator's function",
            Function::KeyReducer(_) => "a reduce_by_key reducer",
            Function::Reducer(_) => "a reduce reducer",
            Function::Output(_) => "a foreach_partition function",
        }
    }
}

/// A stage of a fused chain. `node` is the function's node name, for errors.
pub(crate) trait ChainFn {
    /// Decodes a partition encoded with this stage's input codec.
    fn decode_input(&self, rows: &Rows, node: &str) -> Result<Partition, String>;
    /// Runs the stage over a partition of its input type.
    fn apply(&self, input: Partition, node: &str) -> Result<Partition, String>;
    /// Encodes a partition of this stage's output type.
    fn encode_output(&self, output: Partition, node: &str) -> Result<Rows, String>;
}

/// A `reduce_by_key` reducer: the map-side combine stage and the reduction
/// of shuffled groups.
pub(crate) trait KeyReducerFn: ChainFn {
    fn reduce_groups(&self, groups: &Rows, node: &str) -> Result<Rows, String>;
}

/// A `reduce` reducer.
pub(crate) trait ReduceAllFn {
    fn reduce_all(&self, input: &Rows, node: &str) -> Result<Rows, String>;
}

/// A `foreach_partition` function.
pub(crate) trait OutputFn {
    fn foreach_partition(
        &self,
        batch_time_ms: u64,
        partition: u32,
        input: &Rows,
        node: &str,
    ) -> Result<(), String>;
}

fn downcast<T: Data>(partition: Partition, node: &str) -> Result<Vec<T>, String> {
    match partition.downcast::<Vec<T>>() {
        Ok(records) => Ok(*records),
        Err(_) => Err(format!(
            "{node}: the previous stage of the chain does not produce {} records; \
             the host chained functions of streams that do not follow each other",
            T::codec()
        )),
    }
}

/// A narrow operator as a function of whole partitions: `map`, `flat_map`,
/// `filter` and `map_partitions` are all wrapped into one of these.
pub(crate) struct PartitionFn<T, U, F> {
    f: F,
    types: PhantomData<fn(Vec<T>) -> Vec<U>>,
}

impl<T, U, F> PartitionFn<T, U, F>
where
    T: Data,
    U: Data,
    F: Fn(Vec<T>) -> Vec<U> + 'static,
{
    pub(crate) fn boxed(f: F) -> Function {
        Function::Narrow(Box::new(Self {
            f,
            types: PhantomData,
        }))
    }
}

impl<T, U, F> ChainFn for PartitionFn<T, U, F>
where
    T: Data,
    U: Data,
    F: Fn(Vec<T>) -> Vec<U> + 'static,
{
    fn decode_input(&self, rows: &Rows, node: &str) -> Result<Partition, String> {
        Ok(Box::new(decode_all::<T>(rows, node)?))
    }

    fn apply(&self, input: Partition, node: &str) -> Result<Partition, String> {
        let input = downcast::<T>(input, node)?;
        Ok(Box::new((self.f)(input)))
    }

    fn encode_output(&self, output: Partition, node: &str) -> Result<Rows, String> {
        Ok(encode_all(&downcast::<U>(output, node)?))
    }
}

/// The hasher of the map-side combine's table.
type KeyHasher = foldhash::fast::RandomState;

/// The reducer of `reduce_by_key`.
pub(crate) struct KeyReducer<K, V, F> {
    f: F,
    hasher: KeyHasher,
    /// The combine's hash table, kept between calls so that its capacity is
    /// reused: `(hash, index into the partition's output)`.
    table: RefCell<HashTable<(u64, usize)>>,
    types: PhantomData<fn(K, V) -> V>,
}

impl<K, V, F> KeyReducer<K, V, F>
where
    K: Data + Hash + Eq,
    V: Data,
    F: Fn(V, V) -> V + 'static,
{
    pub(crate) fn boxed(f: F) -> Function {
        Function::KeyReducer(Box::new(Self {
            f,
            hasher: KeyHasher::default(),
            table: RefCell::new(HashTable::new()),
            types: PhantomData,
        }))
    }

    /// Merges the values of equal keys. Keys leave in the order of their
    /// first appearance, so the output does not depend on the hasher.
    fn combine(&self, pairs: Vec<(K, V)>) -> Vec<(K, V)> {
        let mut table = self.table.borrow_mut();
        table.clear();
        // `None` only while a value is handed to the user's reducer. The
        // table's capacity remembers how many keys earlier partitions had.
        let mut merged: Vec<(K, Option<V>)> = Vec::with_capacity(table.capacity().min(pairs.len()));
        for (key, value) in pairs {
            let hash = self.hasher.hash_one(&key);
            match table.find(hash, |&(h, i)| h == hash && merged[i].0 == key) {
                Some(&(_, i)) => {
                    let slot = &mut merged[i].1;
                    let acc = slot.take().expect("a merged value is always present");
                    *slot = Some((self.f)(acc, value));
                }
                None => {
                    table.insert_unique(hash, (hash, merged.len()), |&(h, _)| h);
                    merged.push((key, Some(value)));
                }
            }
        }
        merged
            .into_iter()
            .map(|(k, v)| (k, v.expect("a merged value is always present")))
            .collect()
    }
}

impl<K, V, F> ChainFn for KeyReducer<K, V, F>
where
    K: Data + Hash + Eq,
    V: Data,
    F: Fn(V, V) -> V + 'static,
{
    fn decode_input(&self, rows: &Rows, node: &str) -> Result<Partition, String> {
        Ok(Box::new(decode_all::<(K, V)>(rows, node)?))
    }

    fn apply(&self, input: Partition, node: &str) -> Result<Partition, String> {
        let pairs = downcast::<(K, V)>(input, node)?;
        Ok(Box::new(self.combine(pairs)))
    }

    fn encode_output(&self, output: Partition, node: &str) -> Result<Rows, String> {
        Ok(encode_all(&downcast::<(K, V)>(output, node)?))
    }
}

impl<K, V, F> KeyReducerFn for KeyReducer<K, V, F>
where
    K: Data + Hash + Eq,
    V: Data,
    F: Fn(V, V) -> V + 'static,
{
    /// Folds each `tuple<k,list<v>>` group. The key's bytes are copied to the
    /// output as they are: the host grouped by them, so they need no decoding.
    fn reduce_groups(&self, groups: &Rows, node: &str) -> Result<Rows, String> {
        let mut folded: Vec<(&[u8], V)> = Vec::with_capacity(groups.ends.len());
        for (i, record) in records(groups).enumerate() {
            let record = record.map_err(|e| format!("{node}: {e}"))?;
            let fail = |e: DecodeError| decode_error::<(K, Vec<V>)>(node, i, e);
            let (key, values) = split_pair(record).map_err(fail)?;
            let mut acc: Option<V> = None;
            for_each_list_element(values, |j, bytes| {
                let value = V::decode(bytes).map_err(|e| {
                    DecodeError::new(format!("tuple element 1: list element {j}: {e}"))
                })?;
                acc = Some(match acc.take() {
                    None => value,
                    Some(acc) => (self.f)(acc, value),
                });
                Ok(())
            })
            .map_err(fail)?;
            // A group always has a value; an empty one has nothing to reduce.
            if let Some(acc) = acc {
                folded.push((key, acc));
            }
        }
        let size = folded
            .iter()
            .map(|(k, v)| 4 + k.len() + v.encoded_size_hint())
            .sum();
        let mut out = Rows {
            data: Vec::with_capacity(size),
            ends: Vec::with_capacity(folded.len()),
        };
        for (key, value) in &folded {
            out.data.extend_from_slice(&end_offset(key).to_le_bytes());
            out.data.extend_from_slice(key);
            value.encode(&mut out.data);
            out.ends.push(end_offset(&out.data));
        }
        Ok(out)
    }
}

/// The reducer of `reduce`.
pub(crate) struct Reducer<T, F> {
    f: F,
    types: PhantomData<fn(T, T) -> T>,
}

impl<T, F> Reducer<T, F>
where
    T: Data,
    F: Fn(T, T) -> T + 'static,
{
    pub(crate) fn boxed(f: F) -> Function {
        Function::Reducer(Box::new(Self {
            f,
            types: PhantomData,
        }))
    }
}

impl<T, F> ReduceAllFn for Reducer<T, F>
where
    T: Data,
    F: Fn(T, T) -> T + 'static,
{
    fn reduce_all(&self, input: &Rows, node: &str) -> Result<Rows, String> {
        let mut acc: Option<T> = None;
        for (i, record) in records(input).enumerate() {
            let record = record.map_err(|e| format!("{node}: {e}"))?;
            let value = T::decode(record).map_err(|e| decode_error::<T>(node, i, e))?;
            acc = Some(match acc.take() {
                None => value,
                Some(acc) => (self.f)(acc, value),
            });
        }
        Ok(encode_all(acc.as_slice()))
    }
}

/// The function of `foreach_partition`.
pub(crate) struct Output<T, F> {
    f: F,
    types: PhantomData<fn(Vec<T>)>,
}

impl<T, F> Output<T, F>
where
    T: Data,
    F: Fn(u64, u32, Vec<T>) -> Result<(), String> + 'static,
{
    pub(crate) fn boxed(f: F) -> Function {
        Function::Output(Box::new(Self {
            f,
            types: PhantomData,
        }))
    }
}

impl<T, F> OutputFn for Output<T, F>
where
    T: Data,
    F: Fn(u64, u32, Vec<T>) -> Result<(), String> + 'static,
{
    fn foreach_partition(
        &self,
        batch_time_ms: u64,
        partition: u32,
        input: &Rows,
        node: &str,
    ) -> Result<(), String> {
        let records = decode_all::<T>(input, node)?;
        (self.f)(batch_time_ms, partition, records).map_err(|e| format!("{node}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn reducer() -> KeyReducer<String, i64, fn(i64, i64) -> i64> {
        KeyReducer {
            f: i64::wrapping_add,
            hasher: KeyHasher::default(),
            table: RefCell::new(HashTable::new()),
            types: PhantomData,
        }
    }

    /// Sums per key, keys in order of first appearance.
    fn reference(pairs: &[(String, i64)]) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = Vec::new();
        for (k, v) in pairs {
            match out.iter_mut().find(|(key, _)| key == k) {
                Some((_, sum)) => *sum = sum.wrapping_add(*v),
                None => out.push((k.clone(), *v)),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn combine_matches_a_reference_and_reuses_its_table(
            partitions in vec(vec(("[a-e]{0,2}", any::<i64>()), 0..60), 1..4)
        ) {
            let reducer = reducer();
            for pairs in partitions {
                prop_assert_eq!(reducer.combine(pairs.clone()), reference(&pairs));
            }
        }

        #[test]
        fn reduce_groups_matches_a_reference(
            groups in vec(("[a-z]{0,3}", vec(any::<i64>(), 1..5)), 0..20)
        ) {
            let out = reducer().reduce_groups(&encode_all(&groups), "n").unwrap();
            let out: Vec<(String, i64)> = decode_all(&out, "n").unwrap();
            let expected: Vec<(String, i64)> = groups
                .iter()
                .map(|(k, vs)| (k.clone(), vs.iter().fold(0i64, |a, &b| a.wrapping_add(b))))
                .collect();
            prop_assert_eq!(out, expected);
        }
    }
}
