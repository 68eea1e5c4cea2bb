//! The plugin's exports, as called by the code [`export_job!`](crate::export_job)
//! generates: `define` builds the graph and fills this instance's function
//! table; the other calls look functions up in it by id.
//!
//! Wasm is single-threaded, so the table and the name of the node being run
//! live in thread-locals. The node name is what the panic hook reports: a
//! panic aborts the instance (wasm32-wasip2 has no unwinding), and the line
//! the hook writes to stderr is all the host gets to tell the user. In a
//! chain the stages take turns record by record, so a call keeps the names
//! of all its stages and each stage stores its index as it starts running
//! ([`enter_stage`]: one store in a `Cell`).

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::panic::PanicHookInfo;
use std::rc::Rc;
use std::sync::Once;

use crate::args::Args;
use crate::bindings::sluice::plugin::types::{FunctionId, JobGraph, Rows, Stage};
use crate::context::{Job, StreamingContext};
use crate::function::{BatchFn, ChainFn, Entry, Function, run_pipeline};
use crate::graph::Graph;
use crate::output::IdempotencyKey;

thread_local! {
    /// The function table, filled by `define`.
    static TABLE: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
    /// The nodes of the running call, for the panic hook: its node, or the
    /// stages of a chain in order.
    static CURRENT: RefCell<Vec<Rc<str>>> = const { RefCell::new(Vec::new()) };
    /// The index in `CURRENT` of the node whose code is running.
    static CURRENT_STAGE: Cell<usize> = const { Cell::new(0) };
    /// Whether `define` is running (broadcast values are not loaded yet).
    static DEFINING: Cell<bool> = const { Cell::new(false) };
    /// The job's name, set by `define`: part of an output's idempotency key.
    static JOB: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Whether the job's `define` is running on this thread.
pub(crate) fn defining() -> bool {
    DEFINING.get()
}

/// Marks `name` as the running node until dropped.
struct Running;

impl Running {
    fn enter(name: &Rc<str>) -> Self {
        Self::enter_chain(vec![Rc::clone(name)])
    }

    /// Marks the stages of a chain as running, the first one first.
    fn enter_chain(names: Vec<Rc<str>>) -> Self {
        CURRENT.with_borrow_mut(|current| *current = names);
        CURRENT_STAGE.set(0);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        CURRENT.with_borrow_mut(Vec::clear);
        CURRENT_STAGE.set(0);
    }
}

/// Marks stage `stage` of the running chain as the node whose code runs.
#[inline]
pub(crate) fn enter_stage(stage: usize) {
    CURRENT_STAGE.set(stage);
}

/// The `define` export: runs `J::define` and keeps its function table.
pub fn define<J: Job>(args: Vec<(String, String)>) -> Result<JobGraph, String> {
    install_panic_hook();
    let job = job_name::<J>();
    let _running = Running::enter(&Rc::from(format!("define of job {job}")));
    let mut ctx = StreamingContext::new(job.clone());
    DEFINING.set(true);
    let defined = J::define(&mut ctx, &Args::from_pairs(args));
    DEFINING.set(false);
    let graph = std::mem::replace(&mut *ctx.graph.borrow_mut(), Graph::new(String::new()));
    defined.map_err(|e| format!("{job}: {e}"))?;
    let (graph, functions) = graph.finish()?;
    TABLE.with_borrow_mut(|table| *table = functions);
    JOB.set(job);
    Ok(graph)
}

/// The job's name: its type's name without the module path.
fn job_name<J>() -> String {
    let full = std::any::type_name::<J>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base).to_string()
}

fn entry(table: &[Entry], id: FunctionId) -> Result<&Entry, String> {
    table.get(id as usize).ok_or_else(|| {
        format!(
            "function {id} does not exist: this instance's define registered {} functions",
            table.len()
        )
    })
}

fn misuse(id: FunctionId, entry: &Entry, called_as: &str) -> String {
    format!(
        "function {id} ({}) is {}, not {called_as}",
        entry.name,
        entry.function.what()
    )
}

fn chain_stage<'t>(
    table: &'t [Entry],
    stage: &Stage,
) -> Result<(&'t Rc<str>, &'t dyn ChainFn), String> {
    match *stage {
        Stage::Apply(id) => {
            let entry = entry(table, id)?;
            match &entry.function {
                Function::Narrow(f) => Ok((&entry.name, f.as_ref())),
                _ => Err(misuse(
                    id,
                    entry,
                    "a narrow operator's function (stage apply)",
                )),
            }
        }
        Stage::Combine(id) => {
            let entry = entry(table, id)?;
            match &entry.function {
                Function::KeyReducer(f) => Ok((&entry.name, f.as_ref() as &dyn ChainFn)),
                _ => Err(misuse(id, entry, "a reduce_by_key reducer (stage combine)")),
            }
        }
    }
}

/// The `run-chain` export: runs the chain's functions as one pipeline
/// ([`run_pipeline`]). An empty chain returns its input.
pub fn run_chain(stages: Vec<Stage>, input: Rows) -> Result<Rows, String> {
    TABLE.with_borrow(|table| {
        if stages.is_empty() {
            return Ok(input);
        }
        let chain = stages
            .iter()
            .map(|stage| chain_stage(table, stage))
            .collect::<Result<Vec<_>, _>>()?;
        let _running = Running::enter_chain(chain.iter().map(|(n, _)| Rc::clone(n)).collect());
        let chain: Vec<(&str, &dyn ChainFn)> = chain.iter().map(|&(n, f)| (&**n, f)).collect();
        run_pipeline(&chain, input)
    })
}

/// The `reduce-groups` export.
pub fn reduce_groups(reducer: FunctionId, groups: Rows) -> Result<Rows, String> {
    TABLE.with_borrow(|table| {
        let entry = entry(table, reducer)?;
        let Function::KeyReducer(f) = &entry.function else {
            return Err(misuse(
                reducer,
                entry,
                "a reduce_by_key reducer (reduce-groups)",
            ));
        };
        let _running = Running::enter(&entry.name);
        f.reduce_groups(&groups, &entry.name)
    })
}

/// The `reduce-all` export.
pub fn reduce_all(reducer: FunctionId, input: Rows) -> Result<Rows, String> {
    TABLE.with_borrow(|table| {
        let entry = entry(table, reducer)?;
        let Function::Reducer(f) = &entry.function else {
            return Err(misuse(reducer, entry, "a reduce reducer (reduce-all)"));
        };
        let _running = Running::enter(&entry.name);
        f.reduce_all(&input, &entry.name)
    })
}

/// The `foreach-partition` export.
pub fn foreach_partition(
    function: FunctionId,
    batch_time_ms: u64,
    partition: u32,
    input: Rows,
) -> Result<(), String> {
    TABLE.with_borrow(|table| {
        let entry = entry(table, function)?;
        let Function::Output(f) = &entry.function else {
            return Err(misuse(function, entry, "a foreach_partition function"));
        };
        let _running = Running::enter(&entry.name);
        let key = IdempotencyKey {
            job: JOB.with_borrow(Clone::clone),
            batch_time_ms,
            partition,
        };
        f.foreach_partition(&key, &input, &entry.name)
    })
}

/// Runs a [`BatchFn`] registered as `expected` (which `pick` selects).
fn batch_call(
    function: FunctionId,
    batch_time_ms: u64,
    input: Rows,
    called_as: &str,
    pick: impl Fn(&Function) -> Option<&dyn BatchFn>,
) -> Result<Rows, String> {
    TABLE.with_borrow(|table| {
        let entry = entry(table, function)?;
        let Some(f) = pick(&entry.function) else {
            return Err(misuse(function, entry, called_as));
        };
        let _running = Running::enter(&entry.name);
        f.call(batch_time_ms, &input, &entry.name)
    })
}

/// The `update-state` export (see "State calls" in `wit/sluice.wit`).
pub fn update_state(function: FunctionId, batch_time_ms: u64, input: Rows) -> Result<Rows, String> {
    batch_call(
        function,
        batch_time_ms,
        input,
        "an update_state_by_key function (update-state)",
        |f| match f {
            Function::UpdateState(f) => Some(f.as_ref()),
            _ => None,
        },
    )
}

/// The `map-with-state` export (see "State calls" in `wit/sluice.wit`).
pub fn map_with_state(
    function: FunctionId,
    batch_time_ms: u64,
    input: Rows,
) -> Result<Rows, String> {
    batch_call(
        function,
        batch_time_ms,
        input,
        "a map_with_state function (map-with-state)",
        |f| match f {
            Function::MapWithState(f) => Some(f.as_ref()),
            _ => None,
        },
    )
}

/// The `transform` export: the whole batch in one call.
pub fn transform(function: FunctionId, batch_time_ms: u64, input: Rows) -> Result<Rows, String> {
    batch_call(
        function,
        batch_time_ms,
        input,
        "a transform function (transform)",
        |f| match f {
            Function::Transform(f) => Some(f.as_ref()),
            _ => None,
        },
    )
}

/// Replaces the default panic message (a multi-line report without the
/// operator) with one line naming the node.
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| std::panic::set_hook(Box::new(report_panic)));
}

fn report_panic(info: &PanicHookInfo<'_>) {
    let _ = writeln!(std::io::stderr(), "{}", panic_line(info));
}

/// `panic in <node>: <message> (at <file:line:col>)`, on one line.
fn panic_line(info: &PanicHookInfo<'_>) -> String {
    let message = info
        .payload_as_str()
        .unwrap_or("(a panic without a message)");
    let stage = CURRENT_STAGE.try_with(Cell::get).unwrap_or(0);
    let node = CURRENT
        .try_with(|current| {
            current
                .try_borrow()
                .ok()
                .and_then(|names| names.get(stage).cloned())
        })
        .ok()
        .flatten();
    let node = node
        .as_deref()
        .unwrap_or("the plugin, outside any operator");
    let at = match info.location() {
        Some(l) => format!("{}:{}:{}", l.file(), l.line(), l.column()),
        None => "an unknown location".to_string(),
    };
    format!("panic in {node}: {message} (at {at})").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::sluice::plugin::types::{
        Node, NodeKind, QueueSource, ReduceByKey, Reducer, SaveAsTextFiles, Source,
    };
    use crate::codec::Data;
    use crate::prelude::*;
    use crate::rows::{decode_all, encode_all};

    struct WordCount;

    impl Job for WordCount {
        fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
            let lines = ctx.socket_text_stream(args.require("host")?, args.parse::<u16>("port")?);
            let counts = lines
                .flat_map(|l: String| l.split(' ').map(String::from).collect::<Vec<_>>())
                .map(|w| (w, 1i64))
                .reduce_by_key(|a, b| a + b);
            counts.print();
            if let Some(output) = args.get("output") {
                counts.save_as_text_files(output, None);
            }
            Ok(())
        }
    }

    fn args(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn word_count() -> JobGraph {
        define::<WordCount>(args(&[
            ("host", "localhost"),
            ("port", "9999"),
            ("output", "out/wc"),
        ]))
        .expect("defines")
    }

    fn rows<T: Data>(records: &[T]) -> Rows {
        encode_all(records)
    }

    fn names(graph: &JobGraph) -> Vec<String> {
        graph
            .nodes
            .iter()
            .map(|n| n.name.split(" at ").next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn define_builds_the_word_count_graph() {
        let graph = word_count();
        assert_eq!(graph.name, "WordCount");
        assert_eq!(
            names(&graph),
            [
                "socket_text_stream",
                "flat_map",
                "map",
                "reduce_by_key",
                "print",
                "save_as_text_files"
            ]
        );
        for node in &graph.nodes {
            assert!(node.name.contains("src/runtime.rs:"), "{}", node.name);
        }
        let [source, flat_map, map, reduce, print, save] = &graph.nodes[..] else {
            panic!("six nodes: {graph:?}");
        };
        assert!(matches!(
            &source.kind,
            NodeKind::Source(Source::SocketText(s)) if s.host == "localhost" && s.port == 9999
        ));
        assert_eq!(source.codec, "string");
        assert!(source.inputs.is_empty());
        assert!(matches!(flat_map.kind, NodeKind::FlatMap(0)));
        assert_eq!(
            (flat_map.inputs.as_slice(), flat_map.codec.as_str()),
            (&[0][..], "string")
        );
        assert!(matches!(map.kind, NodeKind::Map(1)));
        assert_eq!(
            (map.inputs.as_slice(), map.codec.as_str()),
            (&[1][..], "tuple<string,i64>")
        );
        assert!(matches!(
            reduce.kind,
            NodeKind::ReduceByKey(ReduceByKey {
                reducer: Reducer::Function(2),
                partitions: None
            })
        ));
        assert_eq!(reduce.codec, "tuple<string,i64>");
        assert!(matches!(print.kind, NodeKind::Print(10)));
        assert_eq!(
            (print.inputs.as_slice(), print.codec.as_str()),
            (&[3][..], "")
        );
        assert!(matches!(
            &save.kind,
            NodeKind::SaveAsTextFiles(SaveAsTextFiles { prefix, suffix: None }) if prefix == "out/wc"
        ));
    }

    #[test]
    fn a_fused_chain_splits_counts_and_combines_in_first_seen_order() {
        word_count();
        let input = rows(&["a b a".to_string(), "c  a".to_string()]);
        let out = run_chain(
            vec![Stage::Apply(0), Stage::Apply(1), Stage::Combine(2)],
            input,
        )
        .unwrap();
        let pairs: Vec<(String, i64)> = decode_all(&out, "test").unwrap();
        let expected = [("a", 3), ("b", 1), ("c", 1), ("", 1)].map(|(w, n)| (w.to_string(), n));
        assert_eq!(pairs, expected);
        // Sized once: the 16 bytes of slack that writing a short key's
        // bytes at once takes, no more.
        assert_eq!(
            out.data.capacity(),
            out.data.len() + 16,
            "output sized once"
        );
    }

    #[test]
    fn combine_alone_decodes_pairs_and_an_empty_chain_is_the_identity() {
        word_count();
        let pairs = [("x", 2i64), ("y", 5), ("x", 4)].map(|(k, v)| (k.to_string(), v));
        let out = run_chain(vec![Stage::Combine(2)], rows(&pairs)).unwrap();
        let out: Vec<(String, i64)> = decode_all(&out, "t").unwrap();
        assert_eq!(out, [("x".to_string(), 6), ("y".to_string(), 5)]);
        let input = rows(&[1u8, 2]);
        assert_eq!(run_chain(vec![], input.clone()).unwrap().data, input.data);
    }

    /// Every chainable function over `(String, i64)` pairs; ids 0 to 4.
    struct Chains;

    impl Job for Chains {
        fn define(ctx: &mut StreamingContext, _args: &Args) -> Result<(), String> {
            let pairs: DStream<(String, i64)> = ctx.queue_stream(vec![]);
            pairs.map(chain_map).print();
            pairs.filter(chain_filter).print();
            pairs.flat_map(chain_flat_map).print();
            pairs.map_partitions(chain_map_partitions).print();
            pairs.reduce_by_key(i64::wrapping_add).print();
            Ok(())
        }
    }

    fn chain_map((k, v): (String, i64)) -> (String, i64) {
        (k.chars().rev().collect(), v.wrapping_mul(3))
    }

    fn chain_filter((k, v): &(String, i64)) -> bool {
        v % 3 != 0 || k.len() % 2 == 0
    }

    /// A lazy iterator: user code runs while the stage iterates.
    fn chain_flat_map((k, v): (String, i64)) -> impl Iterator<Item = (String, i64)> {
        (0..v.rem_euclid(3)).map(move |i| (format!("{k}{i}"), v.wrapping_add(i)))
    }

    fn chain_map_partitions(pairs: Vec<(String, i64)>) -> Vec<(String, i64)> {
        let n = pairs.len() as i64;
        pairs
            .into_iter()
            .rev()
            .map(|(k, v)| (k, v.wrapping_add(n)))
            .collect()
    }

    /// The chain's stages done with plain vectors and iterators.
    fn chain_reference(stages: &[u8], mut pairs: Vec<(String, i64)>) -> Vec<(String, i64)> {
        for stage in stages {
            pairs = match stage {
                0 => pairs.into_iter().map(chain_map).collect(),
                1 => pairs.into_iter().filter(chain_filter).collect(),
                2 => pairs.into_iter().flat_map(chain_flat_map).collect(),
                3 => chain_map_partitions(pairs),
                _ => {
                    let mut out: Vec<(String, i64)> = Vec::new();
                    for (k, v) in pairs {
                        match out.iter_mut().find(|(key, _)| *key == k) {
                            Some((_, sum)) => *sum = sum.wrapping_add(v),
                            None => out.push((k, v)),
                        }
                    }
                    out
                }
            };
        }
        pairs
    }

    proptest::proptest! {
        #[test]
        fn a_random_chain_equals_the_same_chain_over_vectors(
            stages in proptest::collection::vec(0u8..5, 0..6),
            pairs in proptest::collection::vec(
                (proptest::prop_oneof!["[ab]{0,3}", "[ab]{13,17}"], -4i64..5),
                0..40,
            ),
        ) {
            let graph = define::<Chains>(vec![]).unwrap();
            let functions: Vec<&str> = graph
                .nodes
                .iter()
                .filter(|n| !matches!(n.kind, NodeKind::Print(_) | NodeKind::Source(_)))
                .map(|n| n.name.split(" at ").next().unwrap())
                .collect();
            proptest::prop_assert_eq!(
                functions,
                ["map", "filter", "flat_map", "map_partitions", "reduce_by_key"]
            );
            let chain = stages
                .iter()
                .map(|&s| if s == 4 { Stage::Combine(4) } else { Stage::Apply(u32::from(s)) })
                .collect();
            let out = run_chain(chain, rows(&pairs)).unwrap();
            let out: Vec<(String, i64)> = decode_all(&out, "t").unwrap();
            proptest::prop_assert_eq!(out, chain_reference(&stages, pairs));
        }
    }

    #[test]
    fn reduce_groups_folds_each_key_and_copies_its_bytes() {
        word_count();
        let groups = [("k", vec![1i64, 2, 3]), ("", vec![7])].map(|(k, v)| (k.to_string(), v));
        let out = reduce_groups(2, rows(&groups)).unwrap();
        let out: Vec<(String, i64)> = decode_all(&out, "t").unwrap();
        assert_eq!(out, [("k".to_string(), 6), (String::new(), 7)]);
    }

    #[test]
    fn errors_name_the_operator_and_the_record() {
        word_count();
        let bad = Rows {
            data: vec![b'o', b'k', 0xc3],
            ends: vec![2, 3],
        };
        let err = run_chain(vec![Stage::Apply(0)], bad).unwrap_err();
        assert!(err.starts_with("flat_map at "), "{err}");
        assert!(
            err.contains("cannot decode input record 1 as string"),
            "{err}"
        );

        let groups = Rows {
            data: vec![1, 0, 0, 0, b'k', 1, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3],
            ends: vec![16],
        };
        let err = reduce_groups(2, groups).unwrap_err();
        assert!(err.starts_with("reduce_by_key at "), "{err}");
        assert!(err.contains("record 0 as tuple<string,list<i64>>: tuple element 1: list element 0: i64 needs exactly 8 bytes, got 3"), "{err}");
    }

    #[test]
    fn the_host_calling_a_function_the_wrong_way_is_an_error() {
        word_count();
        let err = run_chain(vec![Stage::Apply(2)], rows(&["a".to_string()])).unwrap_err();
        assert!(err.starts_with("function 2 (reduce_by_key at "), "{err}");
        assert!(
            err.ends_with(
                "is a reduce_by_key reducer, not a narrow operator's function (stage apply)"
            ),
            "{err}"
        );
        assert!(run_chain(vec![Stage::Combine(0)], rows(&["a".to_string()])).is_err());
        assert!(reduce_all(0, rows(&["a".to_string()])).is_err());
        assert!(foreach_partition(1, 0, 0, rows(&["a".to_string()])).is_err());
        let err = reduce_groups(9, rows(&["a".to_string()])).unwrap_err();
        assert_eq!(
            err,
            "function 9 does not exist: this instance's define registered 3 functions"
        );
        // Stages whose types do not follow each other.
        let err = run_chain(
            vec![Stage::Apply(1), Stage::Apply(0)],
            rows(&["a".to_string()]),
        )
        .unwrap_err();
        assert!(err.starts_with("flat_map at "), "{err}");
        assert!(err.contains("does not produce string records"), "{err}");
    }

    #[test]
    fn define_reports_a_missing_argument_with_the_job_name() {
        let err = define::<WordCount>(args(&[("port", "1")])).unwrap_err();
        assert_eq!(
            err,
            "WordCount: missing argument `host` (pass --arg host=VALUE)"
        );
    }

    struct Everything;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    struct Reading {
        sensor: String,
        value: f64,
    }
    crate::json_data!(Reading);

    impl Job for Everything {
        fn define(ctx: &mut StreamingContext, _args: &Args) -> Result<(), String> {
            let numbers: DStream<i64> = ctx.queue_stream(vec![vec![1, 2, 3], vec![], vec![10]]);
            let lines = ctx.queue_stream_from_lines_file("in.txt", 2);
            let rate = ctx.rate_stream(5);
            let files = ctx.text_file_stream("dir");
            let all_lines = ctx.union(vec![lines.clone(), files]);
            all_lines.union(&lines).repartition(3).count().print_n(3);
            numbers.reduce(|a, b| a + b).print(); // 6
            numbers
                .filter(|n| n % 2 == 1)
                .map_partitions(|v| vec![v.len() as u32])
                .print(); // 7
            rate.map(|(_, n)| n).count_by_value().print(); // 9, 10
            let readings = lines.map(|l| Reading {
                sensor: l,
                value: 1.5,
            }); // 12
            readings
                .map(|r| (r.sensor.clone(), r))
                .group_by_key_with_partitions(2)
                .print(); // 13
            let pairs = readings.map(|r| (r.sensor, r.value)); // 16
            pairs.sum_by_key().print();
            pairs.min_by_key_with_partitions(4).print();
            pairs.max_by_key().print();
            pairs.count_by_key().print();
            pairs
                .map_values(|v| v * 2.0)
                .flat_map_values(|v| [v, -v])
                .print();
            pairs
                .reduce_by_key_with_partitions(f64::max, 2)
                .foreach_partition(|key, records| {
                    if records.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("{key}: {} records", records.len()))
                    }
                });
            Ok(())
        }
    }

    fn kind_of(graph: &JobGraph, op: &str) -> Vec<NodeKind> {
        graph
            .nodes
            .iter()
            .filter(|n: &&Node| n.name.starts_with(&format!("{op} at ")))
            .map(|n| n.kind.clone())
            .collect()
    }

    #[test]
    fn every_operator_becomes_the_documented_node() {
        let graph = define::<Everything>(vec![]).unwrap();
        let queue = &graph.nodes[0];
        let NodeKind::Source(Source::Queue(QueueSource::Batches(batches))) = &queue.kind else {
            panic!("{queue:?}");
        };
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[0].ends, [8, 16, 24]);
        assert!(batches[1].ends.is_empty());
        assert!(matches!(
            &graph.nodes[1].kind,
            NodeKind::Source(Source::Queue(QueueSource::LinesFile(f))) if f.path == "in.txt" && f.lines_per_batch == 2
        ));
        assert_eq!(graph.nodes[2].codec, "tuple<i64,i64>");
        let unions: Vec<_> = graph
            .nodes
            .iter()
            .filter(|n| matches!(n.kind, NodeKind::Union))
            .collect();
        assert_eq!(unions[0].inputs, [1, 3]);
        assert_eq!(unions[1].inputs, [4, 1]);
        assert!(matches!(
            kind_of(&graph, "repartition")[..],
            [NodeKind::Repartition(3)]
        ));
        assert!(matches!(
            kind_of(&graph, "print_n")[..],
            [NodeKind::Print(3)]
        ));
        assert!(matches!(kind_of(&graph, "count")[..], [NodeKind::Count]));
        assert!(matches!(
            kind_of(&graph, "reduce")[..],
            [NodeKind::Reduce(Reducer::Function(0))]
        ));
        assert!(matches!(
            kind_of(&graph, "count_by_value")[..],
            [
                NodeKind::Map(_),
                NodeKind::ReduceByKey(ReduceByKey {
                    reducer: Reducer::Count,
                    partitions: None
                })
            ]
        ));
        let cbv = graph
            .nodes
            .iter()
            .find(|n| n.name.starts_with("count_by_value") && matches!(n.kind, NodeKind::Map(_)))
            .unwrap();
        assert_eq!(cbv.codec, "tuple<i64,unit>");
        assert!(matches!(
            kind_of(&graph, "group_by_key_with_partitions")[..],
            [NodeKind::GroupByKey(Some(2))]
        ));
        let group = graph
            .nodes
            .iter()
            .find(|n| n.name.starts_with("group_by_key"))
            .unwrap();
        assert_eq!(group.codec, "tuple<string,list<json>>");
        let builtin = |op: &str| match &kind_of(&graph, op)[..] {
            [NodeKind::ReduceByKey(r)] => (r.reducer, r.partitions),
            other => panic!("{op}: {other:?}"),
        };
        assert!(matches!(builtin("sum_by_key"), (Reducer::Sum, None)));
        assert!(matches!(
            builtin("min_by_key_with_partitions"),
            (Reducer::Min, Some(4))
        ));
        assert!(matches!(builtin("max_by_key"), (Reducer::Max, None)));
        assert!(matches!(builtin("count_by_key"), (Reducer::Count, None)));
        assert!(matches!(
            builtin("reduce_by_key_with_partitions"),
            (Reducer::Function(_), Some(2))
        ));
        let count_by_key = graph
            .nodes
            .iter()
            .find(|n| n.name.starts_with("count_by_key"))
            .unwrap();
        assert_eq!(count_by_key.codec, "tuple<string,i64>");
        assert!(matches!(
            kind_of(&graph, "map_values")[..],
            [NodeKind::Map(_)]
        ));
        assert!(matches!(
            kind_of(&graph, "flat_map_values")[..],
            [NodeKind::FlatMap(_)]
        ));
        assert!(matches!(
            kind_of(&graph, "foreach_partition")[..],
            [NodeKind::ForeachPartition(_)]
        ));
        // Every input comes before its node.
        for (i, node) in graph.nodes.iter().enumerate() {
            assert!(
                node.inputs.iter().all(|&input| (input as usize) < i),
                "{node:?}"
            );
        }
    }

    #[test]
    fn reduce_all_filter_map_partitions_json_and_foreach_run() {
        let graph = define::<Everything>(vec![]).unwrap();
        let function = |op: &str| -> u32 {
            match graph
                .nodes
                .iter()
                .find(|n| n.name.starts_with(&format!("{op} at ")))
                .map(|n| &n.kind)
            {
                Some(
                    NodeKind::Map(f)
                    | NodeKind::FlatMap(f)
                    | NodeKind::Filter(f)
                    | NodeKind::MapPartitions(f)
                    | NodeKind::Reduce(Reducer::Function(f))
                    | NodeKind::ForeachPartition(f),
                ) => *f,
                Some(NodeKind::ReduceByKey(ReduceByKey {
                    reducer: Reducer::Function(f),
                    ..
                })) => *f,
                other => panic!("{op}: {other:?}"),
            }
        };
        let sum: Vec<i64> = decode_all(
            &reduce_all(function("reduce"), rows(&[1i64, 2, 3])).unwrap(),
            "t",
        )
        .unwrap();
        assert_eq!(sum, [6]);
        assert!(
            reduce_all(function("reduce"), rows::<i64>(&[]))
                .unwrap()
                .ends
                .is_empty()
        );

        let out = run_chain(
            vec![
                Stage::Apply(function("filter")),
                Stage::Apply(function("map_partitions")),
            ],
            rows(&[1i64, 2, 3, 5]),
        )
        .unwrap();
        assert_eq!(decode_all::<u32>(&out, "t").unwrap(), [3]);

        let out = run_chain(vec![Stage::Apply(function("map"))], rows(&[(0i64, 4i64)])).unwrap();
        assert_eq!(decode_all::<i64>(&out, "t").unwrap(), [4]);

        // lines -> Reading (json) -> (sensor, value)
        let maps: Vec<u32> = graph
            .nodes
            .iter()
            .filter_map(|n| match n.kind {
                NodeKind::Map(f) if n.name.starts_with("map at") => Some(f),
                _ => None,
            })
            .collect();
        let out = run_chain(vec![Stage::Apply(maps[1])], rows(&["s1".to_string()])).unwrap();
        assert_eq!(out.data, br#"{"sensor":"s1","value":1.5}"#);
        let out = run_chain(
            vec![Stage::Apply(maps[1]), Stage::Apply(maps[3])],
            rows(&["s1".to_string()]),
        )
        .unwrap();
        assert_eq!(
            decode_all::<(String, f64)>(&out, "t").unwrap(),
            [("s1".to_string(), 1.5)]
        );

        let out = run_chain(
            vec![
                Stage::Apply(function("map_values")),
                Stage::Apply(function("flat_map_values")),
            ],
            rows(&[("k".to_string(), 1.0f64)]),
        )
        .unwrap();
        assert_eq!(
            decode_all::<(String, f64)>(&out, "t").unwrap(),
            [("k".to_string(), 2.0), ("k".to_string(), -2.0)]
        );

        let foreach = function("foreach_partition");
        assert_eq!(
            foreach_partition(foreach, 1000, 2, rows::<(String, f64)>(&[])),
            Ok(())
        );
        let err =
            foreach_partition(foreach, 1000, 2, rows(&[("k".to_string(), 1.0f64)])).unwrap_err();
        assert!(err.starts_with("foreach_partition at "), "{err}");
        assert!(err.ends_with(": Everything/1000/2: 1 records"), "{err}");
    }

    struct Mistakes;
    impl Job for Mistakes {
        fn define(ctx: &mut StreamingContext, _args: &Args) -> Result<(), String> {
            ctx.union(Vec::<DStream<String>>::new()).print();
            Ok(())
        }
    }

    struct ZeroPartitions;
    impl Job for ZeroPartitions {
        fn define(ctx: &mut StreamingContext, _args: &Args) -> Result<(), String> {
            ctx.queue_stream(vec![vec![("a".to_string(), 1i64)]])
                .sum_by_key_with_partitions(0)
                .print();
            Ok(())
        }
    }

    #[test]
    fn mistakes_in_the_definition_fail_define_naming_the_operator() {
        let err = define::<Mistakes>(vec![]).unwrap_err();
        assert!(err.starts_with("union at "), "{err}");
        assert!(err.ends_with(": needs at least one stream"), "{err}");
        let err = define::<ZeroPartitions>(vec![]).unwrap_err();
        assert!(err.starts_with("sum_by_key_with_partitions at "), "{err}");
    }

    #[test]
    fn job_names_drop_the_module_path() {
        assert_eq!(job_name::<WordCount>(), "WordCount");
        assert_eq!(job_name::<Vec<WordCount>>(), "Vec");
    }

    thread_local! {
        static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    #[test]
    fn a_panic_is_reported_on_one_line_with_the_running_node() {
        install_panic_hook();
        std::panic::set_hook(Box::new(|info| {
            let line = panic_line(info);
            LAST_PANIC.with_borrow_mut(|last| *last = Some(line));
        }));
        let node: Rc<str> = Rc::from("map at src/lib.rs:3:9");
        let result = std::panic::catch_unwind(|| {
            let _running = Running::enter(&node);
            panic!("boom: deliberate failure\nsecond line");
        });
        std::panic::set_hook(Box::new(report_panic));
        assert!(result.is_err());
        let line = LAST_PANIC
            .with_borrow_mut(Option::take)
            .expect("the hook ran");
        assert!(
            line.starts_with(
                "panic in map at src/lib.rs:3:9: boom: deliberate failure second line (at "
            ),
            "{line}"
        );
        assert!(line.contains("src/runtime.rs:"), "{line}");
        assert!(!line.contains('\n'));
        assert!(
            CURRENT.with_borrow(Vec::is_empty),
            "the node is cleared after the call"
        );

        // In a chain, the stages take turns record by record (batch by
        // batch): the line names the stage whose code panicked.
        define::<Panicky>(vec![]).unwrap();
        let chain = || {
            vec![
                Stage::Apply(0),
                Stage::Apply(1),
                Stage::Apply(2),
                Stage::Combine(3),
            ]
        };
        let lines = |lines: &[&str]| rows(&lines.iter().map(|l| l.to_string()).collect::<Vec<_>>());
        for (input, node, message) in [
            (lines(&["ok", "map"]), "map at ", "boom in map"),
            // After a full batch has gone down the chain.
            (
                lines(&["ok", "four"]),
                "flat_map at ",
                "boom in flat_map's iterator",
            ),
            (
                lines(&["one", "two", "six"]),
                "reduce_by_key at ",
                "boom in reduce_by_key",
            ),
        ] {
            std::panic::set_hook(Box::new(|info| {
                let line = panic_line(info);
                LAST_PANIC.with_borrow_mut(|last| *last = Some(line));
            }));
            let result = std::panic::catch_unwind(|| run_chain(chain(), input));
            std::panic::set_hook(Box::new(report_panic));
            assert!(result.is_err());
            let line = LAST_PANIC
                .with_borrow_mut(Option::take)
                .expect("the hook ran");
            assert!(line.starts_with(&format!("panic in {node}")), "{line}");
            assert!(line.contains(message), "{line}");
        }
        assert!(CURRENT.with_borrow(Vec::is_empty));
    }

    /// A word count whose functions panic on request.
    struct Panicky;

    impl Job for Panicky {
        fn define(ctx: &mut StreamingContext, _args: &Args) -> Result<(), String> {
            let lines: DStream<String> = ctx.queue_stream(vec![]);
            lines
                .map(|l: String| {
                    assert!(l != "map", "boom in map");
                    l
                })
                .flat_map(|l: String| {
                    let n = l.len();
                    (0..300).map(move |i| {
                        assert!(n != 4 || i < 299, "boom in flat_map's iterator");
                        i.to_string()
                    })
                })
                .map(|w| (w, 1i64))
                .reduce_by_key(|a, b| {
                    assert!(a < 2, "boom in reduce_by_key");
                    a + b
                })
                .print();
            Ok(())
        }
    }

    /// Every stateful, windowed and joining operator, once.
    struct Stateful;

    impl Job for Stateful {
        fn define(ctx: &mut StreamingContext, _args: &Args) -> Result<(), String> {
            let secs = std::time::Duration::from_secs;
            ctx.remember(secs(90));
            let pairs: DStream<(String, i64)> = ctx.queue_stream(vec![]);
            let other: DStream<(String, bool)> = ctx.queue_stream(vec![]);
            let blacklist = ctx.broadcast("blacklist", vec!["x".to_string()]);
            ctx.broadcast_file("words", "/data/words.txt");
            pairs
                .update_state_by_key(|vs: Vec<i64>, s: Option<i64>| {
                    Some(s.unwrap_or(0) + vs.len() as i64)
                })
                .name("running")
                .print();
            let mapped = pairs
                .map_with_state(
                    StateSpec::function(|k: &String, v: Option<i64>, s: &mut State<i64>| {
                        if let Some(v) = v {
                            s.update(v);
                        }
                        k.len() as i64
                    })
                    .timeout(secs(5)),
                )
                .name("mapped");
            mapped.print();
            mapped.state_snapshots().print();
            pairs
                .reduce_by_key_and_window_inv_filtered(
                    |a, b| a + b,
                    |a, b| a - b,
                    |(_, v)| *v != 0,
                    secs(30),
                    secs(10),
                )
                .print();
            pairs.sum_by_key_and_window_nonzero(secs(4), None).print();
            pairs
                .window(secs(2), secs(2))
                .join(&other.window_length(secs(2)))
                .print();
            pairs.cogroup(&other).print();
            pairs
                .transform(move |b: Vec<(String, i64)>| {
                    b.into_iter()
                        .filter(|(k, _)| !blacklist.value().contains(k))
                        .collect::<Vec<_>>()
                })
                .print();
            pairs.count_by_window(secs(3), secs(1)).print();
            Ok(())
        }
    }

    #[test]
    fn stateful_operators_become_the_documented_nodes() {
        use crate::bindings::sluice::plugin::types::{
            BroadcastValue, Join, JoinKind, KeyFilter, ReduceByKeyAndWindow, UpdateStateByKey,
            Window,
        };
        let graph = define::<Stateful>(vec![]).unwrap();
        assert_eq!(graph.remember_ms, Some(90_000));
        assert_eq!(graph.broadcasts.len(), 2);
        assert_eq!(graph.broadcasts[0].name, "blacklist");
        let mut blacklist = Vec::new();
        vec!["x".to_string()].encode(&mut blacklist);
        assert!(matches!(&graph.broadcasts[0].value, BroadcastValue::Bytes(b) if *b == blacklist));
        assert!(
            matches!(&graph.broadcasts[1].value, BroadcastValue::File(p) if p == "/data/words.txt")
        );
        let node = |op: &str| {
            graph
                .nodes
                .iter()
                .find(|n| n.name.starts_with(&format!("{op} at ")))
                .unwrap_or_else(|| panic!("no {op}"))
        };
        let update = node("update_state_by_key");
        assert_eq!(update.uid.as_deref(), Some("running"));
        assert_eq!(update.codec, "tuple<string,i64>");
        assert!(matches!(
            &update.kind,
            NodeKind::UpdateStateByKey(UpdateStateByKey { function: 0, state_codec, partitions: None })
                if state_codec == "i64"
        ));
        let mapped = node("map_with_state");
        assert_eq!(mapped.uid.as_deref(), Some("mapped"));
        assert_eq!(mapped.codec, "i64");
        assert!(matches!(
            &mapped.kind,
            NodeKind::MapWithState(m) if m.function == 1 && m.state_codec == "i64" && m.timeout_ms == Some(5_000)
        ));
        let snapshots = node("state_snapshots");
        assert!(matches!(snapshots.kind, NodeKind::StateSnapshots));
        assert_eq!(snapshots.codec, "tuple<string,i64>");
        let mapped_id = graph
            .nodes
            .iter()
            .position(|n| std::ptr::eq(n, mapped))
            .unwrap() as u32;
        assert_eq!(snapshots.inputs, [mapped_id]);
        assert!(matches!(
            node("reduce_by_key_and_window_inv_filtered").kind,
            NodeKind::ReduceByKeyAndWindow(ReduceByKeyAndWindow {
                reducer: Reducer::Function(2),
                inverse: Some(3),
                filter: Some(KeyFilter::Function(4)),
                window: Window {
                    length_ms: 30_000,
                    slide_ms: Some(10_000)
                },
                partitions: None,
            })
        ));
        assert!(matches!(
            node("sum_by_key_and_window_nonzero").kind,
            NodeKind::ReduceByKeyAndWindow(ReduceByKeyAndWindow {
                reducer: Reducer::Sum,
                inverse: None,
                filter: Some(KeyFilter::Nonzero),
                window: Window {
                    length_ms: 4_000,
                    slide_ms: None
                },
                partitions: None,
            })
        ));
        let join = node("join");
        assert!(matches!(
            join.kind,
            NodeKind::Join(Join {
                kind: JoinKind::Inner,
                partitions: None
            })
        ));
        assert_eq!(join.codec, "tuple<string,tuple<i64,bool>>");
        let [left, right] = join.inputs[..] else {
            panic!("{join:?}")
        };
        assert!(matches!(
            graph.nodes[left as usize].kind,
            NodeKind::Window(Window {
                length_ms: 2_000,
                slide_ms: Some(2_000)
            })
        ));
        assert!(matches!(
            graph.nodes[right as usize].kind,
            NodeKind::Window(Window {
                length_ms: 2_000,
                slide_ms: None
            })
        ));
        assert_eq!(
            node("cogroup").codec,
            "tuple<string,tuple<list<i64>,list<bool>>>"
        );
        assert!(matches!(node("transform").kind, NodeKind::Transform(5)));
        // count_by_window: count, window, native sum, all under one name.
        let kinds = kind_of(&graph, "count_by_window");
        assert!(
            matches!(
                kinds[..],
                [
                    NodeKind::Count,
                    NodeKind::Window(Window {
                        length_ms: 3_000,
                        slide_ms: Some(1_000)
                    }),
                    NodeKind::Reduce(Reducer::Sum)
                ]
            ),
            "{kinds:?}"
        );
    }

    #[test]
    fn the_state_calls_and_transform_dispatch_by_function_id() {
        define::<Stateful>(vec![]).unwrap();
        let input = encode_all(&[("ab".to_string(), vec![(2u32, 1i64)], Some(5i64))]);
        let out = update_state(0, 1_000, input.clone()).unwrap();
        assert_eq!(decode_all::<Option<i64>>(&out, "t").unwrap(), [Some(7)]);
        let err = map_with_state(0, 1_000, input).unwrap_err();
        assert!(
            err.starts_with("function 0 (update_state_by_key at ")
                && err.contains("src/runtime.rs:"),
            "{err}"
        );
        assert!(
            err.ends_with(
                "is an update_state_by_key function, not a map_with_state function (map-with-state)"
            ),
            "{err}"
        );
        let input = encode_all(&[("ab".to_string(), None::<i64>, Some(vec![(1u32, 4i64)]))]);
        let out = map_with_state(1, 1_000, input).unwrap();
        assert_eq!(
            decode_all::<(Option<i64>, Vec<i64>)>(&out, "t").unwrap(),
            [(Some(4), vec![2])]
        );
        let input = encode_all(&[("x".to_string(), 1i64), ("y".to_string(), 2)]);
        let out = transform(5, 3_000, input).unwrap();
        assert_eq!(
            decode_all::<(String, i64)>(&out, "t").unwrap(),
            [("y".to_string(), 2)]
        );
    }

    struct BadDefinitions;

    impl Job for BadDefinitions {
        fn define(ctx: &mut StreamingContext, _args: &Args) -> Result<(), String> {
            let pairs: DStream<(String, i64)> = ctx.queue_stream(vec![]);
            pairs.count_by_key().name("twice").print();
            pairs.sum_by_key().name("twice").print();
            Ok(())
        }
    }

    struct BadWindow;

    impl Job for BadWindow {
        fn define(ctx: &mut StreamingContext, _args: &Args) -> Result<(), String> {
            let pairs: DStream<(String, i64)> = ctx.queue_stream(vec![]);
            pairs
                .window(std::time::Duration::from_micros(1_500), None)
                .print();
            Ok(())
        }
    }

    #[test]
    fn a_name_used_twice_or_a_window_of_a_fraction_of_a_millisecond_fails_define() {
        let err = define::<BadDefinitions>(vec![]).unwrap_err();
        assert!(err.starts_with("sum_by_key at "), "{err}");
        assert!(
            err.contains(": the name \"twice\" is already the name of count_by_key at "),
            "{err}"
        );
        let err = define::<BadWindow>(vec![]).unwrap_err();
        assert!(err.starts_with("window at "), "{err}");
        assert!(
            err.ends_with(": the window's length: 1.5ms is not a whole number of milliseconds"),
            "{err}"
        );
    }
}
