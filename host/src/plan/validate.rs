//! Checks a [`JobGraph`] before anything runs: shapes (inputs come first, the
//! right number of them), codecs (parse, and agree along every edge: a keyed
//! operator reads pairs, a built-in reducer reads numbers, a union joins one
//! type), parameters (partition counts, no more partitions than the job's key
//! groups), timing (the batch interval is a multiple of the block interval),
//! and that the job has an output. Every error names the node as the user
//! wrote it.

use std::time::Duration;

use super::graph::{JobGraph, JoinKind, KeyFilter, NodeKind, Reducer, SourceSpec, Window};
use crate::data::KeyGroups;
use crate::data::{Codec, Numeric};

/// Why a job graph or its timing was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// A node is malformed; `node` is its index and `name` what the user wrote.
    #[error("invalid job: node {node} (`{name}`): {reason}")]
    Node {
        /// Index of the node.
        node: usize,
        /// The node's name (`"map at src/lib.rs:3:7"`).
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The job as a whole is wrong.
    #[error("invalid job `{job}`: {reason}")]
    Job {
        /// The job's name.
        job: String,
        /// What is wrong.
        reason: String,
    },
    /// The intervals do not fit together.
    #[error("invalid timing: {0}")]
    Timing(String),
}

/// What [`validate()`] learned about a graph, for [`Plan::new`](super::Plan::new).
#[derive(Debug, Clone)]
pub struct Validated {
    /// The parsed codec of each node (`None` for outputs).
    pub codecs: Vec<Option<Codec>>,
    /// Each node's slide: how often it produces a batch (the batch interval,
    /// or the slide of the last window before it). An output's is its input's.
    pub slides: Vec<Duration>,
    /// Each stateful node's state name (`None` for the others).
    pub state_names: Vec<Option<String>>,
    /// What the user should hear about a graph that is valid: stateful
    /// operators without a name.
    pub warnings: Vec<String>,
}

/// Checks `graph`, for a job with `key_groups` key groups, and returns what
/// the plan needs to know about each node.
pub fn validate(
    graph: &JobGraph,
    batch_interval: Duration,
    block_interval: Duration,
    key_groups: KeyGroups,
) -> Result<Validated, PlanError> {
    check_timing(batch_interval, block_interval)?;
    let mut codecs: Vec<Option<Codec>> = Vec::with_capacity(graph.nodes.len());
    let mut slides: Vec<Duration> = Vec::with_capacity(graph.nodes.len());
    let mut state_names = Vec::with_capacity(graph.nodes.len());
    let mut warnings = Vec::new();
    let mut uids = std::collections::HashMap::new();
    let mut has_output = false;
    let mut sqlite_tables = std::collections::HashMap::new();
    for (index, node) in graph.nodes.iter().enumerate() {
        let fail = |reason: String| PlanError::Node {
            node: index,
            name: node.display(),
            reason,
        };
        for &input in &node.inputs {
            if input >= index {
                return Err(fail(format!(
                    "reads node {input}, which does not come before it"
                )));
            }
            if codecs[input].is_none() {
                return Err(fail(format!(
                    "reads node {input} (`{}`), which is an output",
                    graph.nodes[input].display()
                )));
            }
        }
        if let Some(uid) = &node.uid {
            if uid.trim().is_empty() || uid.len() > 256 || uid.chars().any(char::is_control) {
                return Err(fail(format!(
                    "the operator name {uid:?} must be 1 to 256 printable characters"
                )));
            }
            if let Some(other) = uids.insert(uid.clone(), index) {
                return Err(fail(format!(
                    "the operator name `{uid}` is already the name of node {other} (`{}`); \
                     names must be unique, since state is kept under them",
                    graph.nodes[other].name
                )));
            }
        }
        let expected_inputs = match node.kind {
            NodeKind::Source(_) => 0..=0,
            NodeKind::Union => 1..=usize::MAX,
            NodeKind::Join { .. } | NodeKind::Cogroup { .. } => 2..=2,
            _ => 1..=1,
        };
        if !expected_inputs.contains(&node.inputs.len()) {
            return Err(fail(format!(
                "a {} takes {} input(s), not {}",
                node.kind.label(),
                if expected_inputs.end() == &usize::MAX {
                    "one or more".to_string()
                } else {
                    expected_inputs.start().to_string()
                },
                node.inputs.len()
            )));
        }
        let input_codec = node.inputs.first().and_then(|&i| codecs[i].clone());
        let input_slide = node.inputs.first().map_or(batch_interval, |&i| slides[i]);
        for &i in &node.inputs {
            if slides[i] != input_slide {
                return Err(fail(format!(
                    "its inputs produce batches at different slides: node {} (`{}`) every {}, \
                     node {i} (`{}`) every {}; window them with the same slide",
                    node.inputs[0],
                    graph.nodes[node.inputs[0]].display(),
                    show(input_slide),
                    graph.nodes[i].display(),
                    show(slides[i]),
                )));
            }
        }
        state_names.push(node.is_stateful().then(|| node.state_name(index)));
        if node.is_stateful() && node.uid.is_none() {
            warnings.push(format!(
                "node {index} (`{}`) keeps state but has no name: its state is kept under \
                 `{}`, which changes when the code around it changes; name it with \
                 `.name(\"...\")` so that its state survives",
                node.name,
                node.state_name(index)
            ));
        }

        if node.kind.is_output() {
            has_output = true;
            if let NodeKind::SaveToSqlite { path, table } = &node.kind {
                check_sqlite_output(path, table).map_err(fail)?;
                if let Some(other) = sqlite_tables.insert((path, table), index) {
                    return Err(fail(format!(
                        "node {other} (`{}`) already writes table `{table}` of {path}; each \
                         table has one writer, since it records the last batch committed",
                        graph.nodes[other].display()
                    )));
                }
            }
            if !node.codec.is_empty() {
                return Err(fail(format!(
                    "an output produces no records, yet declares codec `{}`",
                    node.codec
                )));
            }
            codecs.push(None);
            slides.push(input_slide);
            continue;
        }
        let codec: Codec = node.codec.parse().map_err(|e| fail(format!("{e}")))?;
        let expect = |want: &Codec, what: &str| -> Result<(), PlanError> {
            if &codec == want {
                Ok(())
            } else {
                Err(fail(format!(
                    "{what} produces `{want}` records, but the node declares `{codec}`"
                )))
            }
        };
        let pair = |codec: Option<&Codec>, what: &str| -> Result<(Codec, Codec), PlanError> {
            let codec = codec.expect("inputs checked");
            match (codec.key(), codec.value()) {
                (Some(k), Some(v)) => Ok((k.clone(), v.clone())),
                _ => Err(fail(format!(
                    "{what} needs (key, value) pairs, but its input has `{codec}`"
                ))),
            }
        };
        let tuple = |items: Vec<Codec>| Codec::Tuple(items);
        let list = |c: Codec| Codec::List(Box::new(c));
        let mut slide = input_slide;
        match &node.kind {
            NodeKind::Source(spec) => match spec {
                SourceSpec::SocketText { .. }
                | SourceSpec::TextFile { .. }
                | SourceSpec::LinesFile { .. } => expect(&Codec::String, "a text source")?,
                SourceSpec::Rate { records_per_second } => {
                    if *records_per_second == 0 {
                        return Err(fail("a rate source needs records_per_second > 0".into()));
                    }
                    expect(
                        &Codec::Tuple(vec![Codec::Num(Numeric::I64), Codec::Num(Numeric::I64)]),
                        "a rate source",
                    )?
                }
                SourceSpec::Queue(_) => {}
            },
            NodeKind::Map(_)
            | NodeKind::FlatMap(_)
            | NodeKind::MapPartitions(_)
            | NodeKind::Transform(_) => {}
            NodeKind::Filter(_) => expect(input_codec.as_ref().expect("one input"), "filter")?,
            NodeKind::Repartition(n) => {
                if *n == 0 {
                    return Err(fail("repartition needs at least one partition".into()));
                }
                expect(input_codec.as_ref().expect("one input"), "repartition")?
            }
            NodeKind::Union => {
                for &i in &node.inputs {
                    let c = codecs[i].as_ref().expect("checked above");
                    if c != &codec {
                        return Err(fail(format!(
                            "union of different types: node {i} (`{}`) has `{c}`, the union `{codec}`",
                            graph.nodes[i].display()
                        )));
                    }
                }
            }
            NodeKind::Count => expect(&Codec::Num(Numeric::I64), "count")?,
            NodeKind::Reduce(reducer) => {
                let input = input_codec.as_ref().expect("one input");
                check_reducer(*reducer, input, "reduce").map_err(&fail)?;
                let out = match reducer {
                    Reducer::Count => Codec::Num(Numeric::I64),
                    _ => input.clone(),
                };
                expect(&out, "reduce")?
            }
            NodeKind::ReduceByKey {
                reducer,
                partitions,
            } => {
                let (key, value) = pair(input_codec.as_ref(), "reduce_by_key")?;
                check_partitions(*partitions, key_groups).map_err(&fail)?;
                check_reducer(*reducer, &value, "reduce_by_key").map_err(&fail)?;
                expect(&tuple(vec![key, reduced(*reducer, value)]), "reduce_by_key")?
            }
            NodeKind::GroupByKey { partitions } => {
                let (key, value) = pair(input_codec.as_ref(), "group_by_key")?;
                check_partitions(*partitions, key_groups).map_err(&fail)?;
                expect(&tuple(vec![key, list(value)]), "group_by_key")?
            }
            NodeKind::Window(window) => {
                check_window(window, input_slide).map_err(&fail)?;
                slide = window.slide_over(input_slide);
                expect(input_codec.as_ref().expect("one input"), "window")?
            }
            NodeKind::ReduceByKeyAndWindow {
                reducer,
                inverse,
                filter,
                window,
                partitions,
            } => {
                let what = "reduce_by_key_and_window";
                let (key, value) = pair(input_codec.as_ref(), what)?;
                check_window(window, input_slide).map_err(&fail)?;
                check_partitions(*partitions, key_groups).map_err(&fail)?;
                check_reducer(*reducer, &value, what).map_err(&fail)?;
                let incremental = match reducer {
                    Reducer::Function(_) => inverse.is_some(),
                    Reducer::Sum | Reducer::Count => {
                        if inverse.is_some() {
                            return Err(fail(format!(
                                "the built-in {reducer:?} reducer is incremental by itself: \
                                 it takes no inverse function"
                            )));
                        }
                        true
                    }
                    Reducer::Min | Reducer::Max => {
                        if inverse.is_some() {
                            return Err(fail(format!(
                                "the built-in {reducer:?} reducer has no inverse"
                            )));
                        }
                        false
                    }
                };
                if filter.is_some() && !incremental {
                    return Err(fail(
                        "a filter applies to an incremental window (an inverse function, \
                         or the built-in sum or count) only"
                            .into(),
                    ));
                }
                if *filter == Some(KeyFilter::Nonzero) && matches!(reducer, Reducer::Function(_)) {
                    return Err(fail(
                        "the nonzero filter is for the built-in sum and count; give a user \
                         reducer a filter function"
                            .into(),
                    ));
                }
                slide = window.slide_over(input_slide);
                expect(&tuple(vec![key, reduced(*reducer, value)]), what)?
            }
            NodeKind::UpdateStateByKey {
                state_codec,
                partitions,
                ..
            } => {
                let (key, _) = pair(input_codec.as_ref(), "update_state_by_key")?;
                check_partitions(*partitions, key_groups).map_err(&fail)?;
                let state: Codec = state_codec
                    .parse()
                    .map_err(|e| fail(format!("its state codec: {e}")))?;
                expect(&tuple(vec![key, state]), "update_state_by_key")?
            }
            NodeKind::MapWithState {
                state_codec,
                timeout,
                partitions,
                ..
            } => {
                pair(input_codec.as_ref(), "map_with_state")?;
                check_partitions(*partitions, key_groups).map_err(&fail)?;
                state_codec
                    .parse::<Codec>()
                    .map_err(|e| fail(format!("its state codec: {e}")))?;
                if timeout.is_some_and(|t| t.is_zero()) {
                    return Err(fail("a state timeout must be positive".into()));
                }
            }
            NodeKind::StateSnapshots => {
                let input = node.inputs[0];
                let NodeKind::MapWithState { state_codec, .. } = &graph.nodes[input].kind else {
                    return Err(fail(format!(
                        "state_snapshots reads a map_with_state node, not node {input} (`{}`)",
                        graph.nodes[input].display()
                    )));
                };
                let (key, _) = pair(
                    graph.nodes[input]
                        .inputs
                        .first()
                        .and_then(|&i| codecs[i].as_ref()),
                    "map_with_state",
                )?;
                let state: Codec = state_codec.parse().map_err(|e| fail(format!("{e}")))?;
                expect(&tuple(vec![key, state]), "state_snapshots")?
            }
            NodeKind::Join { kind, partitions } => {
                let (key, left) = pair(input_codec.as_ref(), kind.label())?;
                let (right_key, right) = pair(codecs[node.inputs[1]].as_ref(), kind.label())?;
                if key != right_key {
                    return Err(fail(format!(
                        "{} of keys of different types: `{key}` and `{right_key}`",
                        kind.label()
                    )));
                }
                check_partitions(*partitions, key_groups).map_err(&fail)?;
                expect(&tuple(vec![key, joined(*kind, left, right)]), kind.label())?
            }
            NodeKind::Cogroup { partitions } => {
                let (key, left) = pair(input_codec.as_ref(), "cogroup")?;
                let (right_key, right) = pair(codecs[node.inputs[1]].as_ref(), "cogroup")?;
                if key != right_key {
                    return Err(fail(format!(
                        "cogroup of keys of different types: `{key}` and `{right_key}`"
                    )));
                }
                check_partitions(*partitions, key_groups).map_err(&fail)?;
                expect(
                    &tuple(vec![key, tuple(vec![list(left), list(right)])]),
                    "cogroup",
                )?
            }
            NodeKind::JoinDataset { location, kind } => {
                let what = node.kind.label();
                let (key, left) = pair(input_codec.as_ref(), what)?;
                if !matches!(kind, JoinKind::Inner | JoinKind::LeftOuter) {
                    return Err(fail(format!(
                        "a dataset join is inner or left outer, not {}",
                        kind.label()
                    )));
                }
                if location.is_empty() {
                    return Err(fail("the dataset's location is empty".into()));
                }
                let right = codec
                    .value()
                    .and_then(Codec::value)
                    .map(|w| match (kind, w) {
                        (JoinKind::LeftOuter, Codec::Option(w)) => (**w).clone(),
                        _ => w.clone(),
                    })
                    .ok_or_else(|| {
                        fail(format!(
                            "{what} produces (key, (value, dataset value)) pairs, not `{codec}`"
                        ))
                    })?;
                for c in [&key, &right] {
                    if !text_parsable(c) {
                        return Err(fail(format!(
                            "a dataset's keys and values are read from text, so they must be \
                             strings, numbers or booleans, not `{c}`"
                        )));
                    }
                }
                expect(&tuple(vec![key, joined(*kind, left, right)]), what)?
            }
            NodeKind::Print(_)
            | NodeKind::SaveAsTextFiles { .. }
            | NodeKind::ForeachPartition(_)
            | NodeKind::SaveToSqlite { .. } => {
                unreachable!("outputs handled above")
            }
        }
        codecs.push(Some(codec));
        slides.push(slide);
    }
    if !has_output {
        return Err(PlanError::Job {
            job: graph.name.clone(),
            reason: "no output operation (print, save_as_text_files, foreach_partition) is \
                     registered, so there is nothing to execute"
                .into(),
        });
    }
    for (index, node) in graph.nodes.iter().enumerate() {
        if let Some(interval) = node.checkpoint
            && (interval.is_zero()
                || !interval.subsec_nanos().is_multiple_of(1_000_000)
                || !interval
                    .as_millis()
                    .is_multiple_of(slides[index].as_millis()))
        {
            return Err(PlanError::Node {
                node: index,
                name: node.display(),
                reason: format!(
                    "its checkpoint interval ({}) must be a positive multiple of its slide ({})",
                    show(interval),
                    show(slides[index])
                ),
            });
        }
    }
    if let Some(remember) = graph.remember
        && (remember.is_zero()
            || !remember
                .as_millis()
                .is_multiple_of(batch_interval.as_millis()))
    {
        return Err(PlanError::Job {
            job: graph.name.clone(),
            reason: format!(
                "remember ({}) must be a positive multiple of the batch interval ({})",
                show(remember),
                show(batch_interval)
            ),
        });
    }
    let mut names = std::collections::HashSet::new();
    for b in &graph.broadcasts {
        if !names.insert(&b.name) {
            return Err(PlanError::Job {
                job: graph.name.clone(),
                reason: format!("two broadcast values are named `{}`", b.name),
            });
        }
    }
    Ok(Validated {
        codecs,
        slides,
        state_names,
        warnings,
    })
}

/// A SQLite output names a file and a table that SQL can name without
/// quoting.
fn check_sqlite_output(path: &str, table: &str) -> Result<(), String> {
    if path.trim().is_empty() {
        return Err("save_to_sqlite needs the path of a database file".into());
    }
    if path.contains("://") {
        return Err(format!(
            "save_to_sqlite writes a local SQLite file, not `{path}`"
        ));
    }
    let mut chars = table.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && table.len() <= 128
        && !table.eq_ignore_ascii_case("sluice_commits")
        && !table.to_ascii_lowercase().starts_with("sqlite_");
    if !valid {
        return Err(format!(
            "`{table}` is not a table name save_to_sqlite can use: letters, digits and `_`, \
             not starting with a digit, at most 128 characters, not `sluice_commits` nor \
             `sqlite_...`"
        ));
    }
    Ok(())
}

/// `1s`, `250ms`, for messages.
fn show(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

/// A window's length and slide are positive multiples of the slide of the
/// stream it reads (the batch interval, unless a window comes before).
fn check_window(window: &Window, input_slide: Duration) -> Result<(), String> {
    let ms = |d: Duration| d.as_millis();
    let fits = |d: Duration| {
        !d.is_zero()
            && d.subsec_nanos().is_multiple_of(1_000_000)
            && ms(d).is_multiple_of(ms(input_slide))
    };
    let slide = window.slide_over(input_slide);
    if fits(window.length) && fits(slide) {
        return Ok(());
    }
    Err(format!(
        "the window length ({}) and slide ({}) must be positive multiples of the batch interval \
         of the stream it reads ({})",
        show(window.length),
        show(slide),
        show(input_slide)
    ))
}

/// A built-in reducer needs numbers, except `count`.
fn check_reducer(reducer: Reducer, value: &Codec, what: &str) -> Result<(), String> {
    match reducer {
        Reducer::Sum | Reducer::Min | Reducer::Max if !matches!(value, Codec::Num(_)) => {
            Err(format!(
                "the built-in {reducer:?} reducer of {what} needs numeric values, not `{value}`"
            ))
        }
        _ => Ok(()),
    }
}

/// The value a reducer yields for values of `value`.
fn reduced(reducer: Reducer, value: Codec) -> Codec {
    match reducer {
        Reducer::Count => Codec::Num(Numeric::I64),
        _ => value,
    }
}

/// The value of a join's output pairs.
fn joined(kind: JoinKind, left: Codec, right: Codec) -> Codec {
    let option = |c: Codec| Codec::Option(Box::new(c));
    let (left, right) = match kind {
        JoinKind::Inner => (left, right),
        JoinKind::LeftOuter => (left, option(right)),
        JoinKind::RightOuter => (option(left), right),
        JoinKind::FullOuter => (option(left), option(right)),
    };
    Codec::Tuple(vec![left, right])
}

/// Codecs a reference dataset's text can hold.
fn text_parsable(codec: &Codec) -> bool {
    matches!(codec, Codec::String | Codec::Bool | Codec::Num(_))
}

/// A keyed operator's partitions each own at least one key group.
fn check_partitions(partitions: Option<u32>, key_groups: KeyGroups) -> Result<(), String> {
    match partitions {
        Some(0) => Err("the number of partitions must be at least 1".into()),
        Some(p) if p > key_groups.get() => Err(format!(
            "asks for {p} partitions, more than the job's {key_groups} key groups \
             (raise --key-groups to at least {p}, or ask for fewer partitions)"
        )),
        _ => Ok(()),
    }
}

/// The batch interval must be a positive multiple of the block interval, so
/// that every block belongs to exactly one batch.
pub fn check_timing(batch: Duration, block: Duration) -> Result<(), PlanError> {
    if block.is_zero() || batch.is_zero() {
        return Err(PlanError::Timing(
            "the batch and block intervals must be positive".into(),
        ));
    }
    if batch.as_millis() == 0
        || block.as_millis() == 0
        || !batch.subsec_nanos().is_multiple_of(1_000_000)
        || !block.subsec_nanos().is_multiple_of(1_000_000)
    {
        return Err(PlanError::Timing(
            "the batch and block intervals must be whole milliseconds".into(),
        ));
    }
    if block > batch || !batch.as_millis().is_multiple_of(block.as_millis()) {
        return Err(PlanError::Timing(format!(
            "the batch interval ({}) must be a multiple of the block interval ({})",
            humantime::format_duration(batch),
            humantime::format_duration(block)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::plan::graph::test_node as node;

    use crate::plan::graph::{Node, test_socket as socket};

    fn job(nodes: Vec<Node>) -> JobGraph {
        JobGraph {
            name: "test".into(),
            nodes,
            broadcasts: Vec::new(),
            remember: None,
        }
    }

    const SEC: Duration = Duration::from_secs(1);
    const BLOCK: Duration = Duration::from_millis(200);

    #[test]
    fn word_count_is_valid() {
        let g = job(vec![
            socket(),
            node("flat_map at a", NodeKind::FlatMap(0), &[0], "string"),
            node("map at b", NodeKind::Map(1), &[1], "tuple<string,i64>"),
            node(
                "reduce_by_key at c",
                NodeKind::ReduceByKey {
                    reducer: Reducer::Sum,
                    partitions: None,
                },
                &[2],
                "tuple<string,i64>",
            ),
            node("print at d", NodeKind::Print(10), &[3], ""),
        ]);
        let codecs = validate(&g, SEC, BLOCK, KeyGroups::default())
            .unwrap()
            .codecs;
        assert_eq!(codecs.len(), 5);
        assert!(codecs[4].is_none());
    }

    #[test]
    fn reduce_by_key_on_strings_names_the_node() {
        let g = job(vec![
            socket(),
            node(
                "reduce_by_key at src/lib.rs:9:4",
                NodeKind::ReduceByKey {
                    reducer: Reducer::Function(0),
                    partitions: None,
                },
                &[0],
                "string",
            ),
            node("print at d", NodeKind::Print(10), &[1], ""),
        ]);
        let e = validate(&g, SEC, BLOCK, KeyGroups::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node 1 (`reduce_by_key at src/lib.rs:9:4`)"),
            "{e}"
        );
        assert!(e.contains("needs (key, value) pairs"), "{e}");
    }

    #[test]
    fn codec_nested_100000_levels_deep_is_refused_naming_the_node() {
        let deep = format!("{}i64{}", "list<".repeat(100_000), ">".repeat(100_000));
        let g = job(vec![
            socket(),
            node("map at src/lib.rs:7:5", NodeKind::Map(0), &[0], &deep),
            node("print at d", NodeKind::Print(10), &[1], ""),
        ]);
        // Without a bound, parsing this overflowed the host's stack.
        let e = validate(&g, SEC, BLOCK, KeyGroups::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("node 1 (`map at src/lib.rs:7:5`)"), "{e}");
        assert!(e.contains("a codec descriptor has at most"), "{e}");
        assert!(e.len() < 400, "the descriptor is abbreviated: {e}");
    }

    #[test]
    fn builtin_sum_needs_numbers() {
        let g = job(vec![
            node(
                "q",
                NodeKind::Source(SourceSpec::Queue(vec![])),
                &[],
                "tuple<string,string>",
            ),
            node(
                "sum_by_key at x",
                NodeKind::ReduceByKey {
                    reducer: Reducer::Sum,
                    partitions: None,
                },
                &[0],
                "tuple<string,string>",
            ),
            node("print", NodeKind::Print(10), &[1], ""),
        ]);
        let e = validate(&g, SEC, BLOCK, KeyGroups::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs numeric values"), "{e}");
    }

    #[test]
    fn forward_references_and_missing_outputs_are_refused() {
        let g = job(vec![
            node("map at a", NodeKind::Map(0), &[1], "string"),
            socket(),
        ]);
        assert!(
            validate(&g, SEC, BLOCK, KeyGroups::default())
                .unwrap_err()
                .to_string()
                .contains("does not come before it")
        );
        let g = job(vec![socket()]);
        assert!(
            validate(&g, SEC, BLOCK, KeyGroups::default())
                .unwrap_err()
                .to_string()
                .contains("no output operation")
        );
    }

    #[test]
    fn union_of_different_types_is_refused() {
        let g = job(vec![
            socket(),
            node(
                "rate",
                NodeKind::Source(SourceSpec::Rate {
                    records_per_second: 1,
                }),
                &[],
                "tuple<i64,i64>",
            ),
            node("union at u", NodeKind::Union, &[0, 1], "string"),
            node("print", NodeKind::Print(10), &[2], ""),
        ]);
        let e = validate(&g, SEC, BLOCK, KeyGroups::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("union of different types"), "{e}");
    }

    fn group_by_key(partitions: u32) -> JobGraph {
        job(vec![
            node(
                "q",
                NodeKind::Source(SourceSpec::Queue(vec![])),
                &[],
                "tuple<string,i64>",
            ),
            node(
                "group_by_key at src/lib.rs:7:2",
                NodeKind::GroupByKey {
                    partitions: Some(partitions),
                },
                &[0],
                "tuple<string,list<i64>>",
            ),
            node("print", NodeKind::Print(10), &[1], ""),
        ])
    }

    #[test]
    fn more_partitions_than_key_groups_are_refused_naming_node_and_numbers() {
        let groups = |n| KeyGroups::new(n).unwrap();
        let e = validate(&group_by_key(9), SEC, BLOCK, groups(8))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node 1 (`group_by_key at src/lib.rs:7:2`)"),
            "{e}"
        );
        assert!(
            e.contains("asks for 9 partitions, more than the job's 8 key groups"),
            "{e}"
        );
        assert!(validate(&group_by_key(8), SEC, BLOCK, groups(8)).is_ok());
        assert!(validate(&group_by_key(128), SEC, BLOCK, KeyGroups::default()).is_ok());
        assert!(validate(&group_by_key(129), SEC, BLOCK, KeyGroups::default()).is_err());
    }

    fn pairs_source(name: &str) -> Node {
        node(
            name,
            NodeKind::Source(SourceSpec::Queue(vec![])),
            &[],
            "tuple<string,i64>",
        )
    }

    fn window(length_ms: u64, slide_ms: Option<u64>) -> NodeKind {
        NodeKind::Window(Window {
            length: Duration::from_millis(length_ms),
            slide: slide_ms.map(Duration::from_millis),
        })
    }

    #[test]
    fn a_window_length_or_slide_not_a_multiple_of_the_batch_interval_is_refused() {
        for (length, slide, shown) in [
            (2_500, Some(1_000), "(2s 500ms) and slide (1s)"),
            (3_000, Some(1_500), "(3s) and slide (1s 500ms)"),
            (0, Some(1_000), "(0s) and slide (1s)"),
        ] {
            let g = job(vec![
                pairs_source("q"),
                node(
                    "window at src/lib.rs:4:2",
                    window(length, slide),
                    &[0],
                    "tuple<string,i64>",
                ),
                node("print", NodeKind::Print(10), &[1], ""),
            ]);
            let e = validate(&g, SEC, BLOCK, KeyGroups::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains("node 1 (`window at src/lib.rs:4:2`)"), "{e}");
            assert!(
                e.contains(&format!(
                    "the window length {shown} must be positive multiples"
                )),
                "{e}"
            );
            assert!(e.contains("the stream it reads (1s)"), "{e}");
        }
        let g = job(vec![
            pairs_source("q"),
            node(
                "window at a",
                window(3_000, Some(2_000)),
                &[0],
                "tuple<string,i64>",
            ),
            node("print", NodeKind::Print(10), &[1], ""),
        ]);
        assert_eq!(
            validate(&g, SEC, BLOCK, KeyGroups::default())
                .unwrap()
                .slides,
            vec![SEC, 2 * SEC, 2 * SEC]
        );
    }

    #[test]
    fn a_window_over_a_window_must_be_a_multiple_of_the_inner_slide() {
        let g = job(vec![
            pairs_source("q"),
            node(
                "inner",
                window(4_000, Some(2_000)),
                &[0],
                "tuple<string,i64>",
            ),
            node(
                "reduce_by_key_and_window at b",
                NodeKind::ReduceByKeyAndWindow {
                    reducer: Reducer::Sum,
                    inverse: None,
                    filter: None,
                    window: Window {
                        length: Duration::from_secs(6),
                        slide: Some(Duration::from_secs(3)),
                    },
                    partitions: None,
                },
                &[1],
                "tuple<string,i64>",
            ),
            node("print", NodeKind::Print(10), &[2], ""),
        ]);
        let e = validate(&g, SEC, BLOCK, KeyGroups::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node 2 (`reduce_by_key_and_window at b`)"),
            "{e}"
        );
        assert!(e.contains("length (6s) and slide (3s)"), "{e}");
        assert!(e.contains("the stream it reads (2s)"), "{e}");
    }

    #[test]
    fn a_join_of_inputs_with_different_slides_is_refused() {
        let g = job(vec![
            pairs_source("a"),
            pairs_source("b"),
            node(
                "window a",
                window(4_000, Some(2_000)),
                &[0],
                "tuple<string,i64>",
            ),
            node("window b", window(3_000, None), &[1], "tuple<string,i64>"),
            node(
                "join at src/lib.rs:9:1",
                NodeKind::Join {
                    kind: JoinKind::Inner,
                    partitions: None,
                },
                &[2, 3],
                "tuple<string,tuple<i64,i64>>",
            ),
            node("print", NodeKind::Print(10), &[4], ""),
        ]);
        let e = validate(&g, SEC, BLOCK, KeyGroups::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("node 4 (`join at src/lib.rs:9:1`)"), "{e}");
        assert!(e.contains("different slides"), "{e}");
        assert!(e.contains("every 2s") && e.contains("every 1s"), "{e}");
    }

    #[test]
    fn batch_interval_must_be_a_multiple_of_block_interval() {
        assert!(check_timing(SEC, BLOCK).is_ok());
        let e = check_timing(SEC, Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert!(e.contains("multiple of the block interval (300ms)"), "{e}");
        assert!(check_timing(Duration::from_millis(100), BLOCK).is_err());
        assert!(check_timing(SEC, Duration::ZERO).is_err());
    }

    fn update_state(uid: Option<&str>, state_codec: &str) -> JobGraph {
        let mut update = node(
            "update_state_by_key at src/lib.rs:5:9",
            NodeKind::UpdateStateByKey {
                function: 0,
                state_codec: state_codec.into(),
                partitions: None,
            },
            &[0],
            &format!("tuple<string,{state_codec}>"),
        );
        update.uid = uid.map(String::from);
        job(vec![
            pairs_source("q"),
            update,
            node("print", NodeKind::Print(10), &[1], ""),
        ])
    }

    #[test]
    fn an_unnamed_stateful_operator_is_warned_about_and_named_by_its_place() {
        let named = validate(
            &update_state(Some("running-counts"), "i64"),
            SEC,
            BLOCK,
            KeyGroups::default(),
        )
        .unwrap();
        assert_eq!(named.warnings, Vec::<String>::new());
        assert_eq!(named.state_names[1].as_deref(), Some("running-counts"));
        let unnamed =
            validate(&update_state(None, "i64"), SEC, BLOCK, KeyGroups::default()).unwrap();
        assert_eq!(
            unnamed.state_names[1].as_deref(),
            Some("update_state_by_key#1")
        );
        assert_eq!(unnamed.warnings.len(), 1);
        assert!(
            unnamed.warnings[0].contains("`update_state_by_key at src/lib.rs:5:9`")
                && unnamed.warnings[0].contains("`update_state_by_key#1`")
                && unnamed.warnings[0].contains(".name("),
            "{:?}",
            unnamed.warnings
        );
    }

    #[test]
    fn a_state_codec_that_does_not_parse_is_refused_naming_the_operator() {
        let mut g = update_state(Some("running-counts"), "i64");
        g.nodes[1].kind = NodeKind::UpdateStateByKey {
            function: 0,
            state_codec: "tuple<i64".into(),
            partitions: None,
        };
        let e = validate(&g, SEC, BLOCK, KeyGroups::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node 1 (`running-counts (update_state_by_key at src/lib.rs:5:9)`)"),
            "{e}"
        );
        assert!(e.contains("its state codec"), "{e}");
    }

    #[test]
    fn operator_names_are_unique() {
        let mut g = update_state(Some("counts"), "i64");
        g.nodes[2].uid = Some("counts".into());
        let e = validate(&g, SEC, BLOCK, KeyGroups::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`counts` is already the name of node 1"), "{e}");
    }

    #[test]
    fn a_checkpoint_interval_must_be_a_multiple_of_the_node_slide() {
        let graph = |interval_ms: u64| {
            let mut mapped = node("map at a", NodeKind::Map(0), &[0], "string");
            mapped.checkpoint = Some(Duration::from_millis(interval_ms));
            job(vec![
                socket(),
                mapped,
                node("print at b", NodeKind::Print(10), &[1], ""),
            ])
        };
        assert!(validate(&graph(10_000), SEC, BLOCK, KeyGroups::default()).is_ok());
        for bad in [0, 1_500] {
            let e = validate(&graph(bad), SEC, BLOCK, KeyGroups::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains("node 1 (`map at a`)"), "{e}");
            assert!(e.contains("checkpoint interval"), "{e}");
            assert!(e.contains("multiple of its slide (1s)"), "{e}");
        }
    }

    #[test]
    fn a_sqlite_output_needs_a_local_file_and_a_plain_table_name_written_once() {
        let sqlite = |path: &str, table: &str| NodeKind::SaveToSqlite {
            path: path.into(),
            table: table.into(),
        };
        let graph = |outputs: Vec<NodeKind>| {
            let mut nodes = vec![socket()];
            nodes.extend(
                outputs
                    .into_iter()
                    .map(|kind| node("save_to_sqlite at a", kind, &[0], "")),
            );
            job(nodes)
        };
        let check = |outputs| validate(&graph(outputs), SEC, BLOCK, KeyGroups::default());
        assert!(check(vec![sqlite("out.db", "counts"), sqlite("out.db", "other")]).is_ok());
        for (bad, says) in [
            (vec![sqlite("", "counts")], "needs the path"),
            (vec![sqlite("s3://b/out.db", "counts")], "local SQLite file"),
            (
                vec![sqlite("out.db", "1counts")],
                "`1counts` is not a table name",
            ),
            (
                vec![sqlite("out.db", "a;drop")],
                "`a;drop` is not a table name",
            ),
            (vec![sqlite("out.db", "sluice_commits")], "not a table name"),
            (
                vec![sqlite("out.db", "counts"), sqlite("out.db", "counts")],
                "already writes table `counts` of out.db",
            ),
        ] {
            let e = check(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }
}
