//! Joins: of two pair streams (`join`, the outer joins, `cogroup`), both
//! sides shuffled by the job's one partitioner so that a key's pairs from
//! both sides meet in the same partition; and of a pair stream with a
//! reference dataset ([`Datasets`]), which needs no shuffle (every
//! partition sees the whole dataset).
//!
//! Output order is deterministic: keys in order of first appearance (left
//! side first), and for each key the left values in input order, each with
//! the right values in input order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::{ExecError, Executor};
use crate::batching::BatchTime;
use crate::data::codec::{pair_len, split_pair, write_list, write_pair, write_prefixed};
use crate::data::{Codec, Numeric, Rows, RowsError};
use crate::plan::{JoinKind, Step, StepKind};
use crate::storage::{self, StorageOptions, Version};

impl Executor {
    /// Runs a `Join`, `Cogroup` or `JoinDataset` step.
    pub(super) fn run_join(
        &self,
        time: BatchTime,
        step: &Step,
        mut inputs: Vec<Vec<Rows>>,
    ) -> Result<Vec<Rows>, ExecError> {
        let (kind, partitions) = match &step.kind {
            StepKind::Join {
                kind, partitions, ..
            } => (Some(*kind), *partitions),
            StepKind::Cogroup { partitions, .. } => (None, *partitions),
            StepKind::JoinDataset {
                location,
                kind,
                key,
                value,
                ..
            } => {
                let table = self
                    .datasets
                    .table(location, key, value)
                    .map_err(|e| self.data_error(time, step, e))?;
                let stream = inputs.pop().expect("one input");
                return self.workers.install(|| {
                    stream
                        .par_iter()
                        .map(|p| {
                            join_with_table(p, &table, *kind)
                                .map_err(|e| self.data_error(time, step, e))
                        })
                        .collect()
                });
            }
            _ => unreachable!("run_join runs joins"),
        };
        let right = inputs.pop().expect("two inputs");
        let left = inputs.pop().expect("two inputs");
        let n = self.shuffle_partitions(partitions);
        let left = self.bucket_all(time, step, &left, n)?;
        let right = self.bucket_all(time, step, &right, n)?;
        self.workers.install(|| {
            (0..n)
                .into_par_iter()
                .map(|p| {
                    let sides = Sides::new(left.iter().map(|b| &b[p]), right.iter().map(|b| &b[p]))
                        .ok_or_else(|| {
                            self.data_error(time, step, "a record is not a (key, value) pair")
                        })?;
                    match kind {
                        Some(kind) => sides.join(kind),
                        None => sides.cogroup(),
                    }
                    .map_err(|e| self.data_error(time, step, e))
                })
                .collect()
        })
    }
}

/// A key and its values on the left and on the right side.
type KeySides<'a> = (&'a [u8], Vec<&'a [u8]>, Vec<&'a [u8]>);

/// The values of each key on the two sides of a join, within a partition.
struct Sides<'a> {
    index: HashMap<&'a [u8], usize, foldhash::fast::FixedState>,
    /// Per key in order of first appearance: its left and right values.
    keys: Vec<KeySides<'a>>,
}

impl<'a> Sides<'a> {
    /// Groups both sides; `None` when a record is not a pair.
    fn new(
        left: impl IntoIterator<Item = &'a Rows>,
        right: impl IntoIterator<Item = &'a Rows>,
    ) -> Option<Sides<'a>> {
        let mut sides = Sides {
            index: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0x10_1e)),
            keys: Vec::new(),
        };
        for (side, partitions) in [
            (0, left.into_iter().collect::<Vec<_>>()),
            (1, right.into_iter().collect()),
        ] {
            for rows in partitions {
                for record in rows {
                    let (key, value) = split_pair(record)?;
                    let at = *sides.index.entry(key).or_insert_with(|| {
                        sides.keys.push((key, Vec::new(), Vec::new()));
                        sides.keys.len() - 1
                    });
                    let entry = &mut sides.keys[at];
                    if side == 0 {
                        entry.1.push(value);
                    } else {
                        entry.2.push(value);
                    }
                }
            }
        }
        Some(sides)
    }

    /// `tuple<k, tuple<v, w>>` records (options on the outer sides).
    fn join(&self, kind: JoinKind) -> Result<Rows, RowsError> {
        let (left_outer, right_outer) = match kind {
            JoinKind::Inner => (false, false),
            JoinKind::LeftOuter => (true, false),
            JoinKind::RightOuter => (false, true),
            JoinKind::FullOuter => (true, true),
        };
        let mut out = Rows::new();
        let mut value = Vec::new();
        for (key, lefts, rights) in &self.keys {
            let lefts: Vec<Option<&[u8]>> = if lefts.is_empty() && right_outer {
                vec![None]
            } else {
                lefts.iter().map(|v| Some(*v)).collect()
            };
            let rights: Vec<Option<&[u8]>> = if rights.is_empty() && left_outer {
                vec![None]
            } else {
                rights.iter().map(|w| Some(*w)).collect()
            };
            for v in &lefts {
                for w in &rights {
                    value.clear();
                    let mut first = Vec::new();
                    write_side(*v, right_outer, &mut first);
                    write_prefixed(&first, &mut value)?;
                    write_side(*w, left_outer, &mut value);
                    push_pair(&mut out, key, &value)?;
                }
            }
        }
        Ok(out)
    }

    /// `tuple<k, tuple<list<v>, list<w>>>` records, one per key.
    fn cogroup(&self) -> Result<Rows, RowsError> {
        let mut out = Rows::new();
        let mut value = Vec::new();
        let mut lefts_list = Vec::new();
        for (key, lefts, rights) in &self.keys {
            value.clear();
            lefts_list.clear();
            write_list(lefts.iter().copied(), &mut lefts_list)?;
            write_prefixed(&lefts_list, &mut value)?;
            write_list(rights.iter().copied(), &mut value)?;
            push_pair(&mut out, key, &value)?;
        }
        Ok(out)
    }
}

/// A side's value: as it is, or as an `option` on an outer side.
fn write_side(value: Option<&[u8]>, optional: bool, out: &mut Vec<u8>) {
    match (value, optional) {
        (Some(v), false) => out.extend_from_slice(v),
        (Some(v), true) => {
            out.push(1);
            out.extend_from_slice(v);
        }
        (None, _) => out.push(0),
    }
}

fn push_pair(out: &mut Rows, key: &[u8], value: &[u8]) -> Result<(), RowsError> {
    out.try_push_with(pair_len(key, value.len()), |buf| {
        write_pair(key, value, buf)
    })
}

/// The pairs of `stream` joined with the dataset's values of their keys.
fn join_with_table(stream: &Rows, table: &Table, kind: JoinKind) -> Result<Rows, String> {
    let mut out = Rows::new();
    let mut value = Vec::new();
    for (index, record) in stream.iter().enumerate() {
        let (key, v) = split_pair(record)
            .ok_or_else(|| format!("record {index} is not a (key, value) pair"))?;
        let matches = table.values.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let outer = kind == JoinKind::LeftOuter;
        let none: [Option<&[u8]>; 1] = [None];
        let rights: Vec<Option<&[u8]>> = if matches.is_empty() && outer {
            none.to_vec()
        } else {
            matches.iter().map(|w| Some(w.as_slice())).collect()
        };
        for w in rights {
            value.clear();
            write_prefixed(v, &mut value).map_err(|e| e.to_string())?;
            write_side(w, outer, &mut value);
            push_pair(&mut out, key, &value).map_err(|e| e.to_string())?;
        }
    }
    Ok(out)
}

/// A reference dataset as read: key bytes → the encoded values of that key,
/// in file order.
#[derive(Debug, Default)]
struct Table {
    values: HashMap<Vec<u8>, Vec<Vec<u8>>>,
}

impl Table {
    /// Parses the text form documented in `wit/sluice.wit`: `key<TAB>value`
    /// per line, `#` comments and empty lines skipped.
    fn parse(location: &str, text: &[u8], key: &Codec, value: &Codec) -> Result<Table, String> {
        let text = std::str::from_utf8(text)
            .map_err(|e| format!("dataset `{location}` is not UTF-8 text: {e}"))?;
        let mut table = Table::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let place = || format!("dataset `{location}`, line {}", number + 1);
            let (k, v) = line
                .split_once('\t')
                .ok_or_else(|| format!("{}: no tab between the key and the value", place()))?;
            let k = parse_text(k, key).map_err(|e| format!("{}: the key: {e}", place()))?;
            let v = parse_text(v, value).map_err(|e| format!("{}: the value: {e}", place()))?;
            table.values.entry(k).or_default().push(v);
        }
        Ok(table)
    }
}

/// The encoding of `text` read as a value of `codec` (strings, numbers,
/// booleans: what validation allows for datasets).
fn parse_text(text: &str, codec: &Codec) -> Result<Vec<u8>, String> {
    fn num<T: std::str::FromStr>(text: &str, codec: &Codec) -> Result<T, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a `{codec}`"))
    }
    Ok(match codec {
        Codec::String => text.as_bytes().to_vec(),
        Codec::Bool => match text.trim() {
            "true" => vec![1],
            "false" => vec![0],
            _ => return Err(format!("`{text}` is not `true` or `false`")),
        },
        Codec::Num(n) => match n {
            Numeric::I8 => num::<i8>(text, codec)?.to_le_bytes().to_vec(),
            Numeric::I16 => num::<i16>(text, codec)?.to_le_bytes().to_vec(),
            Numeric::I32 => num::<i32>(text, codec)?.to_le_bytes().to_vec(),
            Numeric::I64 => num::<i64>(text, codec)?.to_le_bytes().to_vec(),
            Numeric::U8 => num::<u8>(text, codec)?.to_le_bytes().to_vec(),
            Numeric::U16 => num::<u16>(text, codec)?.to_le_bytes().to_vec(),
            Numeric::U32 => num::<u32>(text, codec)?.to_le_bytes().to_vec(),
            Numeric::U64 => num::<u64>(text, codec)?.to_le_bytes().to_vec(),
            Numeric::F32 => num::<f32>(text, codec)?.to_le_bytes().to_vec(),
            Numeric::F64 => num::<f64>(text, codec)?.to_le_bytes().to_vec(),
        },
        other => return Err(format!("a dataset cannot hold `{other}` values")),
    })
}

/// The reference datasets of a job, each read when first used and again
/// before a batch when its object has changed (one metadata request per
/// batch), so that a job swaps its reference data without a restart: write
/// the new file elsewhere and rename it into place. If a changed dataset
/// cannot be read, the previous content stays in use, with a warning. A
/// table is kept per location and codecs: two joins may read one file as
/// different types.
pub struct Datasets {
    runtime: Option<tokio::runtime::Handle>,
    options: StorageOptions,
    loaded: Mutex<HashMap<TableId, (Version, Arc<Table>)>>,
}

/// A dataset as one join reads it: its location, key codec and value codec.
type TableId = (String, String, String);

impl Default for Datasets {
    /// Datasets read on a runtime of their own making (for tests); jobs pass
    /// theirs with [`Datasets::new`].
    fn default() -> Self {
        Datasets {
            runtime: None,
            options: StorageOptions::default(),
            loaded: Mutex::new(HashMap::new()),
        }
    }
}

impl Datasets {
    /// Datasets read through `object_store` on `runtime`.
    pub fn new(runtime: tokio::runtime::Handle, options: StorageOptions) -> Datasets {
        Datasets {
            runtime: Some(runtime),
            options,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    fn table(&self, location: &str, key: &Codec, value: &Codec) -> Result<Arc<Table>, String> {
        let local;
        let runtime = match &self.runtime {
            Some(runtime) => runtime,
            None => {
                local = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                local.handle()
            }
        };
        let id: TableId = (location.to_string(), key.to_string(), value.to_string());
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((version, table)) = loaded.get(&id) {
            match storage::version(runtime, location, &self.options) {
                Ok(now) if &now == version => return Ok(Arc::clone(table)),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("reference dataset kept as it was: {e}");
                    return Ok(Arc::clone(table));
                }
            }
        }
        let first = !loaded.contains_key(&id);
        let read = storage::read(runtime, location, &self.options)
            .map_err(|e| e.to_string())
            .and_then(|(bytes, version)| {
                Table::parse(location, &bytes, key, value).map(|t| (version, t))
            });
        match read {
            Ok((version, table)) => {
                if !first {
                    tracing::info!(
                        "reference dataset `{location}` changed: {} keys now",
                        table.values.len()
                    );
                }
                let table = Arc::new(table);
                loaded.insert(id, (version, Arc::clone(&table)));
                Ok(table)
            }
            Err(e) if first => Err(e),
            Err(e) => {
                tracing::warn!("reference dataset `{location}` changed but is kept as it was: {e}");
                Ok(Arc::clone(&loaded[&id].1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, i64)]) -> Rows {
        let mut rows = Rows::new();
        for (k, v) in items {
            let mut record = Vec::new();
            write_pair(k.as_bytes(), &v.to_le_bytes(), &mut record).unwrap();
            rows.push(&record);
        }
        rows
    }

    fn format(rows: &Rows, codec: &str) -> Vec<String> {
        let codec: Codec = codec.parse().unwrap();
        rows.iter().map(|r| codec.format(r).unwrap()).collect()
    }

    /// Every join against the nested loops of its definition.
    #[test]
    fn joins_match_their_definition() {
        let left = pairs(&[("a", 1), ("b", 2), ("a", 3), ("c", 4)]);
        let right = pairs(&[("a", 10), ("d", 40), ("a", 30), ("b", 20)]);
        let sides = Sides::new([&left], [&right]).unwrap();
        assert_eq!(
            format(
                &sides.join(JoinKind::Inner).unwrap(),
                "tuple<string,tuple<i64,i64>>"
            ),
            [
                "(a,(1,10))",
                "(a,(1,30))",
                "(a,(3,10))",
                "(a,(3,30))",
                "(b,(2,20))"
            ]
        );
        assert_eq!(
            format(
                &sides.join(JoinKind::LeftOuter).unwrap(),
                "tuple<string,tuple<i64,option<i64>>>"
            ),
            [
                "(a,(1,Some(10)))",
                "(a,(1,Some(30)))",
                "(a,(3,Some(10)))",
                "(a,(3,Some(30)))",
                "(b,(2,Some(20)))",
                "(c,(4,None))"
            ]
        );
        assert_eq!(
            format(
                &sides.join(JoinKind::RightOuter).unwrap(),
                "tuple<string,tuple<option<i64>,i64>>"
            ),
            [
                "(a,(Some(1),10))",
                "(a,(Some(1),30))",
                "(a,(Some(3),10))",
                "(a,(Some(3),30))",
                "(b,(Some(2),20))",
                "(d,(None,40))"
            ]
        );
        assert_eq!(
            format(
                &sides.join(JoinKind::FullOuter).unwrap(),
                "tuple<string,tuple<option<i64>,option<i64>>>"
            )
            .len(),
            7
        );
        assert_eq!(
            format(
                &sides.cogroup().unwrap(),
                "tuple<string,tuple<list<i64>,list<i64>>>"
            ),
            [
                "(a,([1, 3],[10, 30]))",
                "(b,([2],[20]))",
                "(c,([4],[]))",
                "(d,([],[40]))"
            ]
        );
    }

    #[test]
    fn a_dataset_is_parsed_and_joined() {
        let key = Codec::String;
        let value = Codec::Num(Numeric::I64);
        let table = Table::parse(
            "ref.tsv",
            b"# price list\na\t5\n\nb\t7\na\t6\n",
            &key,
            &value,
        )
        .unwrap();
        let stream = pairs(&[("a", 1), ("z", 2)]);
        assert_eq!(
            format(
                &join_with_table(&stream, &table, JoinKind::Inner).unwrap(),
                "tuple<string,tuple<i64,i64>>"
            ),
            ["(a,(1,5))", "(a,(1,6))"]
        );
        assert_eq!(
            format(
                &join_with_table(&stream, &table, JoinKind::LeftOuter).unwrap(),
                "tuple<string,tuple<i64,option<i64>>>"
            ),
            ["(a,(1,Some(5)))", "(a,(1,Some(6)))", "(z,(2,None))"]
        );
        let e = Table::parse("ref.tsv", b"a\t5\nb 7\n", &key, &value).unwrap_err();
        assert_eq!(
            e,
            "dataset `ref.tsv`, line 2: no tab between the key and the value"
        );
        let e = Table::parse("ref.tsv", b"a\tfive\n", &key, &value).unwrap_err();
        assert_eq!(
            e,
            "dataset `ref.tsv`, line 1: the value: `five` is not a `i64`"
        );
    }

    #[test]
    fn a_changed_dataset_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ref.tsv");
        std::fs::write(&file, "a\t1\n").unwrap();
        let location = file.to_str().unwrap();
        let datasets = Datasets::default();
        let (key, value) = (Codec::String, Codec::Num(Numeric::I64));
        let first = datasets.table(location, &key, &value).unwrap();
        assert_eq!(
            first.values[b"a".as_slice()],
            vec![1i64.to_le_bytes().to_vec()]
        );
        let next = dir.path().join("next.tsv");
        std::fs::write(&next, "a\t2\nb\t3\n").unwrap();
        std::fs::rename(&next, &file).unwrap();
        let second = datasets.table(location, &key, &value).unwrap();
        assert_eq!(
            second.values[b"a".as_slice()],
            vec![2i64.to_le_bytes().to_vec()]
        );
        assert_eq!(second.values.len(), 2);
        // A broken replacement keeps the last good content.
        std::fs::write(&next, "no tab here\n").unwrap();
        std::fs::rename(&next, &file).unwrap();
        let third = datasets.table(location, &key, &value).unwrap();
        assert_eq!(third.values.len(), 2);
    }

    #[test]
    fn one_file_read_as_two_value_types_gives_each_join_its_own_parse() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ref.tsv");
        std::fs::write(&file, "a\t7\n").unwrap();
        let location = file.to_str().unwrap();
        let datasets = Datasets::default();
        let as_int = datasets
            .table(location, &Codec::String, &Codec::Num(Numeric::I64))
            .unwrap();
        let as_text = datasets
            .table(location, &Codec::String, &Codec::String)
            .unwrap();
        assert_eq!(
            as_int.values[b"a".as_slice()],
            vec![7i64.to_le_bytes().to_vec()]
        );
        assert_eq!(as_text.values[b"a".as_slice()], vec![b"7".to_vec()]);
    }

    /// The brute-force join of `left` and `right` (nested loops over every
    /// pair of pairs), formatted, sorted.
    fn nested_loops(
        left: &[(String, i64)],
        right: &[(String, i64)],
        kind: JoinKind,
    ) -> Vec<String> {
        let (keep_left, keep_right) = match kind {
            JoinKind::Inner => (false, false),
            JoinKind::LeftOuter => (true, false),
            JoinKind::RightOuter => (false, true),
            JoinKind::FullOuter => (true, true),
        };
        let (wrap_left, wrap_right) = (keep_right, keep_left);
        let show = |v: Option<i64>, wrap: bool| match (v, wrap) {
            (Some(v), false) => v.to_string(),
            (Some(v), true) => format!("Some({v})"),
            (None, _) => "None".to_string(),
        };
        let mut out = Vec::new();
        for (k, v) in left {
            let matches: Vec<i64> = right.iter().filter(|(j, _)| j == k).map(|p| p.1).collect();
            for w in &matches {
                out.push(format!(
                    "({k},({},{}))",
                    show(Some(*v), wrap_left),
                    show(Some(*w), wrap_right)
                ));
            }
            if matches.is_empty() && keep_left {
                out.push(format!("({k},({},None))", show(Some(*v), wrap_left)));
            }
        }
        for (k, w) in right {
            if keep_right && !left.iter().any(|(j, _)| j == k) {
                out.push(format!("({k},(None,{}))", show(Some(*w), wrap_right)));
            }
        }
        out.sort();
        out
    }

    fn sorted(mut lines: Vec<String>) -> Vec<String> {
        lines.sort();
        lines
    }

    proptest::proptest! {
        /// Every join and cogroup of random sides, split into random
        /// partitions, against the nested loops of its definition.
        #[test]
        fn joins_and_cogroup_equal_a_brute_force_recomputation(
            left in proptest::collection::vec(("[a-e]", -5i64..5), 0..12),
            right in proptest::collection::vec(("[a-e]", -5i64..5), 0..12),
            cut in 1usize..5,
        ) {
            let as_rows = |side: &[(String, i64)]| -> Vec<Rows> {
                side.chunks(cut).map(|c| {
                    let refs: Vec<(&str, i64)> = c.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                    pairs(&refs)
                }).collect()
            };
            let (l, r) = (as_rows(&left), as_rows(&right));
            let sides = Sides::new(l.iter(), r.iter()).unwrap();
            for (kind, codec) in [
                (JoinKind::Inner, "tuple<string,tuple<i64,i64>>"),
                (JoinKind::LeftOuter, "tuple<string,tuple<i64,option<i64>>>"),
                (JoinKind::RightOuter, "tuple<string,tuple<option<i64>,i64>>"),
                (JoinKind::FullOuter, "tuple<string,tuple<option<i64>,option<i64>>>"),
            ] {
                proptest::prop_assert_eq!(
                    sorted(format(&sides.join(kind).unwrap(), codec)),
                    nested_loops(&left, &right, kind),
                    "{:?}", kind
                );
            }
            let cogroup = format(&sides.cogroup().unwrap(), "tuple<string,tuple<list<i64>,list<i64>>>");
            let keys: std::collections::BTreeSet<&String> = left.iter().chain(&right).map(|(k, _)| k).collect();
            let expected: Vec<String> = keys.into_iter().map(|k| {
                let list = |side: &[(String, i64)]| {
                    let items: Vec<String> = side.iter().filter(|(j, _)| j == k).map(|p| p.1.to_string()).collect();
                    format!("[{}]", items.join(", "))
                };
                format!("({k},({},{}))", list(&left), list(&right))
            }).collect();
            proptest::prop_assert_eq!(sorted(cogroup), sorted(expected));
        }

        /// A dataset join of random pairs against the nested loops, the
        /// dataset being the right side.
        #[test]
        fn a_dataset_join_equals_a_brute_force_recomputation(
            stream in proptest::collection::vec(("[a-e]", -5i64..5), 0..12),
            dataset in proptest::collection::vec(("[a-e]", -5i64..5), 0..8),
        ) {
            let text: String = dataset.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect();
            let table = Table::parse("ref", text.as_bytes(), &Codec::String, &Codec::Num(Numeric::I64)).unwrap();
            let refs: Vec<(&str, i64)> = stream.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let rows = pairs(&refs);
            prop_assert_eq_sorted(
                format(&join_with_table(&rows, &table, JoinKind::Inner).unwrap(), "tuple<string,tuple<i64,i64>>"),
                nested_loops(&stream, &dataset, JoinKind::Inner),
            )?;
            prop_assert_eq_sorted(
                format(&join_with_table(&rows, &table, JoinKind::LeftOuter).unwrap(), "tuple<string,tuple<i64,option<i64>>>"),
                nested_loops(&stream, &dataset, JoinKind::LeftOuter),
            )?;
        }
    }

    fn prop_assert_eq_sorted(
        got: Vec<String>,
        want: Vec<String>,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        proptest::prop_assert_eq!(sorted(got), want);
        Ok(())
    }
}
