//! Tests of the stateful steps: the host's half of the state calls with a
//! Rust function in the guest's place ([`calls`]), and the [`Executor`]
//! over the `keyed-ops` fixture plugin, both against brute-force references
//! recomputed from scratch over the batches so far.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::calls::{self, Codecs, NewValues, Owned, PrepareError, Prepared, TIME_PREFIX};
use super::store::StateStore;
use crate::batching::BatchTime;
use crate::data::codec::{ListIter, split_prefixed, write_pair};
use crate::data::{Codec, KeyGroups, Partitioner, Rows};
use crate::exec::Executor;
use crate::exec::grouping::Grouper;
use crate::exec::testing::{self, WORKERS, pairs};
use crate::plan::Plan;

/// A batch: its partitions, each a list of `(key, value)` pairs.
type Batch = Vec<Vec<(String, i64)>>;

fn i64_of(bytes: &[u8]) -> i64 {
    i64::from_le_bytes(bytes.try_into().expect("an i64"))
}

fn decode_pairs(rows: &[Rows]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for r in rows {
        for rec in r {
            let (k, v) = split_prefixed(rec).unwrap();
            let old = out.insert(String::from_utf8(k.to_vec()).unwrap(), i64_of(v));
            assert!(old.is_none(), "a key once per batch");
        }
    }
    out
}

/// Random batches: keys from a small alphabet (so they repeat), values in
/// -2..=2 (so sums return to zero), empty batches and empty partitions.
fn batches() -> impl Strategy<Value = Vec<Batch>> {
    let pair = ("[a-f]", -2i64..=2);
    let partition = proptest::collection::vec(pair, 0..8);
    let batch = prop_oneof![
        1 => Just(Vec::new()),
        4 => proptest::collection::vec(partition, 1..4),
    ];
    proptest::collection::vec(batch, 1..8)
}

/// `running-sums`' state after `batches`, from scratch: a key's state is
/// the sum of all its values so far, and the key has none when that is 0
/// (`None` removed it; a removed key starts again from 0).
fn reference_running_sums(batches: &[Batch]) -> BTreeMap<String, i64> {
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    for (k, v) in batches.iter().flatten().flatten() {
        *sums.entry(k.clone()).or_default() += v;
    }
    sums.retain(|_, s| *s != 0);
    sums
}

/// What `mapped-sums` maps to in the last of `batches` (sorted), and its
/// state after it, replayed from the first batch: per value, `s' = s + v`
/// (removed at 0), mapped to `(k, Some(s'))`; a key whose last new values
/// came before `T - timeout` is mapped to `(k, None)` and removed.
type Mapped = Vec<(String, Option<i64>)>;
fn reference_map_with_state(
    batches: &[Batch],
    timeout_batches: Option<u64>,
) -> (Mapped, BTreeMap<String, i64>) {
    let mut state: BTreeMap<String, (i64, u64)> = BTreeMap::new();
    let mut mapped = Vec::new();
    for (i, batch) in batches.iter().enumerate() {
        let t = i as u64 + 1;
        mapped.clear();
        for (k, v) in batch.iter().flatten() {
            let s = state.get(k).map_or(0, |(s, _)| *s) + v;
            if s == 0 {
                state.remove(k);
            } else {
                state.insert(k.clone(), (s, t));
            }
            mapped.push((k.clone(), Some(s)));
        }
        if let Some(timeout) = timeout_batches {
            let timing_out: Vec<String> = state
                .iter()
                .filter(|(_, (_, last))| t >= timeout && *last < t - timeout)
                .map(|(k, _)| k.clone())
                .collect();
            for k in timing_out {
                state.remove(&k);
                mapped.push((k, None));
            }
        }
    }
    mapped.sort();
    (
        mapped,
        state.into_iter().map(|(k, (s, _))| (k, s)).collect(),
    )
}

// ---------------------------------------------------------------------------
// The host's half, with Rust functions in the guest's place.

const PARTITIONS: usize = 3;

fn i64_codec() -> Codec {
    "i64".parse().unwrap()
}

fn string_codec() -> Codec {
    "string".parse().unwrap()
}

/// `update-state` as the `keyed-ops` plugin's `running-sums` computes it,
/// over encoded records (`tuple<k, list<tuple<u32, i64>>, option<i64>>` →
/// `option<i64>`: the values as runs).
fn running_sums(input: &mut Rows) -> Result<Rows, String> {
    let mut out = Rows::new();
    for rec in input.iter() {
        let (_, rest) = split_prefixed(rec).unwrap();
        let (list, state) = split_prefixed(rest).unwrap();
        let mut s = match state {
            [1, s @ ..] => i64_of(s),
            _ => 0,
        };
        for run in ListIter::new(list).unwrap() {
            let (count, v) = split_prefixed(run.unwrap()).unwrap();
            let count = u32::from_le_bytes(count.try_into().expect("a u32"));
            assert!(count >= 1, "a run's count is at least 1");
            s += i64::from(count) * i64_of(v);
        }
        if s == 0 {
            out.push(&[0]);
        } else {
            let mut some = vec![1];
            some.extend_from_slice(&s.to_le_bytes());
            out.push(&some);
        }
    }
    Ok(out)
}

/// Runs one batch of `update_state_by_key` as the step does: bucket, prepare
/// every partition, then commit all.
fn update_batch(
    store: &StateStore,
    batch: &Batch,
    call: impl Fn(&mut Rows) -> Result<Rows, String>,
) -> Result<Vec<Rows>, PrepareError<String>> {
    let partitioner = Partitioner::new(store.key_groups(), PARTITIONS);
    let inputs: Vec<Rows> = batch.iter().map(|p| pairs(p)).collect();
    let buckets: Vec<Vec<Rows>> = inputs
        .iter()
        .map(|p| crate::exec::shuffle::bucket(p, partitioner).unwrap())
        .collect();
    let op = store.operator("running-sums");
    let (key, state) = (string_codec(), i64_codec());
    let codecs = Codecs {
        key: &key,
        state: &state,
        mapped: None,
    };
    let prepared = (0..PARTITIONS)
        .map(|p| {
            let owned = Owned {
                partition: p,
                partitions: PARTITIONS,
                key_groups: store.key_groups().get(),
            };
            calls::prepare_update(
                &op,
                owned,
                NewValues::pairs(buckets.iter().map(|b| &b[p])),
                &codecs,
                usize::MAX,
                &call,
            )
        })
        .collect::<Result<Vec<Prepared>, _>>()?;
    Ok(prepared
        .into_iter()
        .map(|p| {
            p.commit(&op);
            p.emitted
        })
        .collect())
}

#[test]
fn update_state_sees_every_key_with_state_or_new_values_and_none_removes() {
    let store = StateStore::new(KeyGroups::new(8).unwrap());
    let batch =
        |items: &[(&str, i64)]| vec![items.iter().map(|(k, v)| (k.to_string(), *v)).collect()];
    let out = update_batch(
        &store,
        &batch(&[("a", 1), ("b", 2), ("a", 1)]),
        running_sums,
    )
    .unwrap();
    assert_eq!(
        decode_pairs(&out),
        BTreeMap::from([("a".into(), 2), ("b".into(), 2)])
    );
    // No new values: both keys are still called and kept.
    let seen = std::sync::Mutex::new(Vec::new());
    let out = update_batch(&store, &Vec::new(), |rows| {
        seen.lock().unwrap().push(rows.len());
        running_sums(rows)
    })
    .unwrap();
    assert_eq!(seen.lock().unwrap().iter().sum::<usize>(), 2);
    assert_eq!(decode_pairs(&out).len(), 2);
    // b returns to 0: removed.
    let out = update_batch(&store, &batch(&[("b", -2)]), running_sums).unwrap();
    assert_eq!(decode_pairs(&out), BTreeMap::from([("a".into(), 2)]));
    assert_eq!(store.get("running-sums", b"b"), None);
    assert_eq!(store.operator("running-sums").stats().keys, 1);
}

#[test]
fn a_malformed_state_fails_naming_the_key_and_writes_nothing() {
    let store = StateStore::new(KeyGroups::new(8).unwrap());
    let one = vec![vec![("word".to_string(), 1i64)]];
    update_batch(&store, &one, running_sums).unwrap();
    let before = store.get("running-sums", b"word");
    // An i64 state of 4 bytes.
    let err = update_batch(&store, &one, |rows| {
        let mut out = Rows::new();
        for _ in rows.iter() {
            out.push(&[1, 7, 0, 0, 0]);
        }
        Ok(out)
    })
    .unwrap_err();
    let PrepareError::Data(message) = err else {
        panic!("a data error")
    };
    assert_eq!(
        message,
        "the state returned for key word is malformed: record does not match codec `i64`: \
         4 bytes where 8 are expected"
    );
    // One state too few.
    let err = update_batch(&store, &one, |_| Ok(Rows::new())).unwrap_err();
    assert!(
        matches!(&err, PrepareError::Data(m) if m == "update-state returned 0 states for 1 keys"),
        "{err:?}"
    );
    assert_eq!(store.get("running-sums", b"word"), before);
}

#[test]
fn a_failed_partition_leaves_every_partition_unchanged() {
    // Preparing reads the store only: a call retried after a trap (inside
    // `Workers::run`) or a batch failing in another partition writes nothing.
    let store = StateStore::new(KeyGroups::new(16).unwrap());
    let batch: Batch = vec![(0..20).map(|i| (format!("k{i}"), 1)).collect()];
    update_batch(&store, &batch, running_sums).unwrap();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let err = update_batch(&store, &batch, |rows| {
        // The second partition's call fails, after the first succeeded.
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            Err("trap".to_string())
        } else {
            running_sums(rows)
        }
    })
    .unwrap_err();
    assert!(matches!(err, PrepareError::Call(ref e) if e == "trap"));
    for i in 0..20 {
        let key = format!("k{i}");
        assert_eq!(
            store
                .get("running-sums", key.as_bytes())
                .map(|s| i64_of(&s)),
            Some(1),
            "{key}"
        );
    }
    // Run again (as a retry of the batch would): applied once.
    let out = update_batch(&store, &batch, running_sums).unwrap();
    assert!(decode_pairs(&out).values().all(|&s| s == 2));
}

#[test]
fn map_with_state_keeps_the_time_of_the_last_new_values_before_the_state() {
    let store = StateStore::new(KeyGroups::new(4).unwrap());
    let op = store.operator("m");
    let (key, state, mapped) = (string_codec(), i64_codec(), string_codec());
    let codecs = Codecs {
        key: &key,
        state: &state,
        mapped: Some(&mapped),
    };
    let owned = Owned {
        partition: 0,
        partitions: 1,
        key_groups: 4,
    };
    let input = pairs(&[("k".to_string(), 5)]);
    let echo = |rows: &mut Rows| -> Result<Rows, String> {
        // State 9, mapped to two strings.
        let mut out = Rows::new();
        for _ in rows.iter() {
            let mut rec = Vec::new();
            let mut list = Vec::new();
            crate::data::codec::write_list([&b"x"[..], b"y"].into_iter(), &mut list).unwrap();
            let mut option = vec![1];
            option.extend_from_slice(&9i64.to_le_bytes());
            write_pair(&option, &list, &mut rec).unwrap();
            out.push(&rec);
        }
        Ok(out)
    };
    let prepared = calls::prepare_map(
        &op,
        owned,
        NewValues::pairs([&input]),
        3000,
        Some(1000),
        &codecs,
        usize::MAX,
        echo,
    )
    .unwrap();
    assert_eq!(store.get("m", b"k"), None, "nothing written before commit");
    prepared.commit(&op);
    let value = store.get("m", b"k").unwrap();
    assert_eq!(value[..TIME_PREFIX], 3000u64.to_le_bytes());
    assert_eq!(i64_of(&value[TIME_PREFIX..]), 9);
    assert_eq!(prepared.emitted.iter().collect::<Vec<_>>(), [b"x", b"y"]);
    let snapshot = calls::snapshot(&op, owned).unwrap();
    assert_eq!(decode_pairs(&[snapshot]), BTreeMap::from([("k".into(), 9)]));
    // A mapped record that is not a string fails naming the key.
    let bad = |rows: &mut Rows| -> Result<Rows, String> {
        let mut out = Rows::new();
        for _ in rows.iter() {
            let mut rec = Vec::new();
            let mut list = Vec::new();
            crate::data::codec::write_list([&[0xffu8][..]].into_iter(), &mut list).unwrap();
            write_pair(&[0], &list, &mut rec).unwrap();
            out.push(&rec);
        }
        Ok(out)
    };
    let err = calls::prepare_map(
        &op,
        owned,
        NewValues::pairs([&input]),
        4000,
        None,
        &codecs,
        usize::MAX,
        bad,
    )
    .unwrap_err();
    assert!(
        matches!(&err, PrepareError::Data(m) if m.starts_with("the mapped records returned for key k are malformed")),
        "{err:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn update_state_host_side_matches_the_running_sums_recomputed_from_scratch(
        batches in batches(),
        key_groups in 1u64..=8,
    ) {
        let store = StateStore::new(KeyGroups::new(key_groups).unwrap());
        for (i, batch) in batches.iter().enumerate() {
            let out = update_batch(&store, batch, running_sums).unwrap();
            let partitioner = Partitioner::new(store.key_groups(), PARTITIONS);
            for (p, part) in out.iter().enumerate() {
                for rec in part {
                    let (k, _) = split_prefixed(rec).unwrap();
                    prop_assert_eq!(partitioner.partition_of(k), p);
                }
            }
            prop_assert_eq!(decode_pairs(&out), reference_running_sums(&batches[..=i]));
        }
    }
}

// ---------------------------------------------------------------------------
// The executor over the `keyed-ops` plugin.

/// An executor for `keyed-ops` with `args`, and the node id of its source.
fn executor(args: &[(&str, &str)]) -> (Executor, usize) {
    executor_with(args, |_| {})
}

/// [`executor`] with its plan changed by `tweak` first.
fn executor_with(args: &[(&str, &str)], tweak: impl FnOnce(&mut Plan)) -> (Executor, usize) {
    testing::executor(
        sluice_test_artifacts::KEYED_OPS,
        testing::args(args),
        KeyGroups::default(),
        tweak,
    )
}

/// The lines saved for batch `time` under `prefix`, by part file, checking
/// the batch is committed.
fn saved_lines(prefix: &Path, time: BatchTime) -> Vec<Vec<String>> {
    let dir = PathBuf::from(format!("{}-{}", prefix.display(), time.as_millis()));
    assert!(
        dir.join("_SUCCESS").exists(),
        "{} is committed",
        dir.display()
    );
    (0..)
        .map(|p| dir.join(format!("part-{p:05}")))
        .take_while(|part| part.exists())
        .map(|part| {
            std::fs::read_to_string(part)
                .expect("part")
                .lines()
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// `(key,rest)` → key and rest.
fn split_line(line: &str) -> (String, String) {
    let inner = line
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .unwrap_or_else(|| panic!("a tuple: {line}"));
    let (k, rest) = inner.split_once(',').expect("a comma");
    (k.to_string(), rest.to_string())
}

/// Saved `(k,n)` lines, checking each key is in the part file of its
/// partition among `WORKERS` and appears once.
fn saved_sums(prefix: &Path, time: BatchTime) -> BTreeMap<String, i64> {
    let partitioner = Partitioner::new(KeyGroups::default(), WORKERS);
    let parts = saved_lines(prefix, time);
    assert_eq!(parts.len(), WORKERS, "one part per partition");
    let mut out = BTreeMap::new();
    for (p, part) in parts.iter().enumerate() {
        for line in part {
            let (k, n) = split_line(line);
            assert_eq!(partitioner.partition_of(k.as_bytes()), p, "{k} in part {p}");
            assert!(
                out.insert(k, n.parse().expect("a number")).is_none(),
                "once: {line}"
            );
        }
    }
    out
}

fn source_partitions(source: usize, batch: &Batch) -> std::collections::HashMap<usize, Vec<Rows>> {
    std::collections::HashMap::from([(source, batch.iter().map(|p| pairs(p)).collect())])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn update_state_by_key_saves_the_running_sums_recomputed_from_scratch(batches in batches()) {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("sums");
        let (executor, source) =
            executor(&[("op", "update-state"), ("output", output.to_str().unwrap())]);
        for (i, batch) in batches.iter().enumerate() {
            let time = BatchTime((i as u64 + 1) * 1000);
            executor.run_batch(time, source_partitions(source, batch)).expect("the batch runs");
            prop_assert_eq!(saved_sums(&output, time), reference_running_sums(&batches[..=i]), "batch {}", i);
        }
        prop_assert_eq!(
            executor.state().operator("running-sums").stats().keys,
            reference_running_sums(&batches).len() as u64
        );
        std::sync::Arc::new(executor).shutdown();
    }

    #[test]
    fn map_with_state_maps_and_snapshots_as_recomputed_from_scratch_with_timeouts(
        batches in batches(),
        timeout in proptest::option::of(1u64..=3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("mapped");
        let snapshots = dir.path().join("mapped-snapshots");
        let timeout_arg = timeout.map(|t| format!("{t}s"));
        let mut args = vec![("op", "map-with-state"), ("output", output.to_str().unwrap())];
        if let Some(t) = &timeout_arg {
            args.push(("timeout", t));
        }
        let (executor, source) = executor(&args);
        for (i, batch) in batches.iter().enumerate() {
            let time = BatchTime((i as u64 + 1) * 1000);
            executor.run_batch(time, source_partitions(source, batch)).expect("the batch runs");
            let (mapped, state) = reference_map_with_state(&batches[..=i], timeout);
            let mut got: Mapped = saved_lines(&output, time)
                .into_iter()
                .flatten()
                .map(|line| {
                    let (k, m) = split_line(&line);
                    let m = match m.as_str() {
                        "None" => None,
                        some => Some(
                            some.strip_prefix("Some(")
                                .and_then(|s| s.strip_suffix(')'))
                                .and_then(|s| s.parse().ok())
                                .unwrap_or_else(|| panic!("Some(n): {line}")),
                        ),
                    };
                    (k, m)
                })
                .collect();
            got.sort();
            prop_assert_eq!(got, mapped, "mapped records of batch {}", i);
            prop_assert_eq!(saved_sums(&snapshots, time), state, "snapshot after batch {}", i);
        }
        std::sync::Arc::new(executor).shutdown();
    }
}

#[test]
fn a_state_that_does_not_decode_fails_the_batch_naming_the_operator_and_the_key() {
    // The host is told the state is an `i32`; the guest returns `i64`s: as a
    // guest whose states do not match the codec it declared.
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("sums");
    let (executor, source) = executor_with(
        &[("op", "update-state"), ("output", output.to_str().unwrap())],
        |plan| {
            let node = plan
                .steps
                .iter()
                .find(|s| matches!(s.kind, crate::plan::StepKind::UpdateStateByKey { .. }))
                .expect("an update_state_by_key step")
                .node;
            plan.codecs[node] = Some("tuple<string,i32>".parse().unwrap());
        },
    );
    let batch: Batch = vec![vec![("word".to_string(), 3)]];
    let err = executor
        .run_batch(BatchTime(1000), source_partitions(source, &batch))
        .unwrap_err()
        .to_string();
    let p = Partitioner::new(KeyGroups::default(), WORKERS).partition_of(b"word");
    assert!(
        err.starts_with(
            "batch 1000 ms failed in `running-sums (update_state_by_key at tests/plugins/keyed-ops/"
        ),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(
            "`: partition {p}: the state returned for key word is malformed: \
             record does not match codec `i32`: 8 bytes where 4 are expected"
        )),
        "{err}"
    );
    assert_eq!(executor.state().operator("running-sums").stats().keys, 0);
    std::sync::Arc::new(executor).shutdown();
}

proptest! {
    /// The same new values as pairs, or grouped and packed piece by piece
    /// (as the chain before a stateful step hands them on), make the same
    /// call input: keys in order of first arrival, values in arrival order,
    /// whether it goes to the guest whole or in pieces of at most
    /// `piece_bytes` (a larger record alone).
    #[test]
    fn grouped_new_values_make_the_call_input_of_their_pairs(
        pieces in proptest::collection::vec(
            proptest::collection::vec(("[a-d]{0,2}", 0i64..3), 0..20),
            0..4,
        ),
        piece_bytes in 1usize..200,
    ) {
        let store = StateStore::new(KeyGroups::new(4).unwrap());
        let op = store.operator("s");
        let (key, state) = (string_codec(), i64_codec());
        let codecs = Codecs { key: &key, state: &state, mapped: None };
        let owned = Owned { partition: 0, partitions: 1, key_groups: 4 };
        let pieces: Vec<Rows> = pieces.iter().map(|p| pairs(p)).collect();
        let groups: Vec<Rows> = pieces
            .iter()
            .map(|p| Grouper::of_pairs([p]).unwrap().to_packed().unwrap())
            .collect();
        let input_of = |new: NewValues<std::slice::Iter<'_, Rows>>, limit: usize| {
            let mut seen = Rows::new();
            let prepared = calls::prepare_update(&op, owned, new, &codecs, limit, |piece: &mut Rows| {
                assert!(
                    piece.byte_len() <= limit || piece.len() == 1 && piece.is_exact(),
                    "a piece past the limit, or a record past it not alone in a buffer of its size"
                );
                seen.try_extend_from(piece).unwrap();
                // A state for every key but the empty one.
                Ok::<_, String>(piece.iter().map(|r| if r.starts_with(&[0; 4]) { &[0u8][..] } else { &[1, 1, 0, 0, 0, 0, 0, 0, 0][..] }).collect())
            })
            .unwrap();
            (seen, prepared.emitted)
        };
        let from_pairs = input_of(NewValues::pairs(pieces.iter()), usize::MAX);
        let from_groups = input_of(NewValues { buckets: groups.iter(), grouped: true }, piece_bytes);
        prop_assert_eq!(from_pairs, from_groups);
    }
}

proptest! {
    /// `map_with_state`'s input, timing-out keys included, is the same
    /// whether it goes to the guest whole or in pieces of at most
    /// `piece_bytes` (a larger record alone, in a buffer of exactly its size).
    #[test]
    fn map_with_state_input_in_pieces_is_its_input_whole(
        first in proptest::collection::vec(("[a-f]{0,2}", 0i64..3), 0..30),
        then in proptest::collection::vec(("[a-f]{0,2}", 0i64..3), 0..30),
        piece_bytes in 1usize..200,
    ) {
        let store = StateStore::new(KeyGroups::new(4).unwrap());
        let op = store.operator("m");
        let (key, state, mapped) = (string_codec(), i64_codec(), string_codec());
        let codecs = Codecs { key: &key, state: &state, mapped: Some(&mapped) };
        let owned = Owned { partition: 0, partitions: 1, key_groups: 4 };
        // Every record answered with state 9 and no mapped records.
        let answer = |rows: &Rows| -> Rows {
            let mut state = vec![1];
            state.extend_from_slice(&9i64.to_le_bytes());
            let mut record = Vec::new();
            write_pair(&state, &0u32.to_le_bytes(), &mut record).unwrap();
            rows.iter().map(|_| record.as_slice()).collect()
        };
        // The keys of `first` get a state at 1 s.
        let first = pairs(&first);
        calls::prepare_map(&op, owned, NewValues::pairs([&first]), 1000, None, &codecs, usize::MAX, |rows: &mut Rows| {
            Ok::<_, String>(answer(rows))
        })
        .unwrap()
        .commit(&op);
        // At 5 s, with a 1 s timeout, those without new values time out.
        let then = pairs(&then);
        let input_of = |limit: usize| {
            let mut seen = Rows::new();
            calls::prepare_map(&op, owned, NewValues::pairs([&then]), 5000, Some(1000), &codecs, limit, |piece: &mut Rows| {
                assert!(
                    piece.byte_len() <= limit || piece.len() == 1 && piece.is_exact(),
                    "a piece past the limit, or a record past it not alone in a buffer of its size"
                );
                seen.try_extend_from(piece).unwrap();
                Ok::<_, String>(answer(piece))
            })
            .unwrap();
            seen
        };
        prop_assert_eq!(input_of(usize::MAX), input_of(piece_bytes));
    }
}
