//! Checks a [`JobGraph`] before anything runs: shapes (inputs come first, the
//! right number of them), codecs (parse, and agree along every edge: a keyed
//! operator reads pairs, a built-in reducer reads numbers, a union joins one
//! type), parameters (partition counts, no more partitions than the job's key
//! groups), timing (the batch interval is a multiple of the block interval),
//! and that the job has an output. Every error names the node as the user
//! wrote it.

use std::time::Duration;

use super::graph::{JobGraph, NodeKind, Reducer, SourceSpec};
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

/// Checks `graph`, for a job with `key_groups` key groups, and returns the
/// parsed codec of each node (`None` for outputs).
pub fn validate(
    graph: &JobGraph,
    batch_interval: Duration,
    block_interval: Duration,
    key_groups: KeyGroups,
) -> Result<Vec<Option<Codec>>, PlanError> {
    check_timing(batch_interval, block_interval)?;
    let mut codecs: Vec<Option<Codec>> = Vec::with_capacity(graph.nodes.len());
    let mut has_output = false;
    for (index, node) in graph.nodes.iter().enumerate() {
        let fail = |reason: String| PlanError::Node {
            node: index,
            name: node.name.clone(),
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
                    graph.nodes[input].name
                )));
            }
        }
        let expected_inputs = match node.kind {
            NodeKind::Source(_) => 0..=0,
            NodeKind::Union => 1..=usize::MAX,
            _ => 1..=1,
        };
        if !expected_inputs.contains(&node.inputs.len()) {
            return Err(fail(format!(
                "a {} takes {} input(s), not {}",
                node.kind.label(),
                if node.inputs.is_empty() && expected_inputs.start() == &1 {
                    "one or more".to_string()
                } else {
                    expected_inputs.start().to_string()
                },
                node.inputs.len()
            )));
        }
        let input_codec = node.inputs.first().and_then(|&i| codecs[i].clone());

        if node.kind.is_output() {
            has_output = true;
            if !node.codec.is_empty() {
                return Err(fail(format!(
                    "an output produces no records, yet declares codec `{}`",
                    node.codec
                )));
            }
            codecs.push(None);
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
            NodeKind::Map(_) | NodeKind::FlatMap(_) | NodeKind::MapPartitions(_) => {}
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
                            graph.nodes[i].name
                        )));
                    }
                }
            }
            NodeKind::Count => expect(&Codec::Num(Numeric::I64), "count")?,
            NodeKind::Reduce(_) => expect(input_codec.as_ref().expect("one input"), "reduce")?,
            NodeKind::ReduceByKey {
                reducer,
                partitions,
            } => {
                let input = input_codec.as_ref().expect("one input");
                let (Some(key), Some(value)) = (input.key(), input.value()) else {
                    return Err(fail(format!(
                        "reduce_by_key needs (key, value) pairs, but its input has `{input}`"
                    )));
                };
                check_partitions(*partitions, key_groups).map_err(&fail)?;
                match reducer {
                    Reducer::Function(_) => expect(input, "reduce_by_key")?,
                    Reducer::Count => expect(
                        &Codec::Tuple(vec![key.clone(), Codec::Num(Numeric::I64)]),
                        "count_by_key",
                    )?,
                    Reducer::Sum | Reducer::Min | Reducer::Max => {
                        if !matches!(value, Codec::Num(_)) {
                            return Err(fail(format!(
                                "the built-in {reducer:?} reducer needs numeric values, not `{value}`"
                            )));
                        }
                        expect(input, "reduce_by_key")?
                    }
                }
            }
            NodeKind::GroupByKey { partitions } => {
                let input = input_codec.as_ref().expect("one input");
                let (Some(key), Some(value)) = (input.key(), input.value()) else {
                    return Err(fail(format!(
                        "group_by_key needs (key, value) pairs, but its input has `{input}`"
                    )));
                };
                check_partitions(*partitions, key_groups).map_err(&fail)?;
                expect(
                    &Codec::Tuple(vec![key.clone(), Codec::List(Box::new(value.clone()))]),
                    "group_by_key",
                )?
            }
            NodeKind::Print(_)
            | NodeKind::SaveAsTextFiles { .. }
            | NodeKind::ForeachPartition(_) => {
                unreachable!("outputs handled above")
            }
        }
        codecs.push(Some(codec));
    }
    if !has_output {
        return Err(PlanError::Job {
            job: graph.name.clone(),
            reason: "no output operation (print, save_as_text_files, foreach_partition) is \
                     registered, so there is nothing to execute"
                .into(),
        });
    }
    Ok(codecs)
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
        let codecs = validate(&g, SEC, BLOCK, KeyGroups::default()).unwrap();
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
}
