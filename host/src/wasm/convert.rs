//! Conversions between the generated WIT types and the host's own: the
//! `job-graph` a plugin's `define` returns becomes a [`JobGraph`], a
//! [`Stage`] becomes a WIT `stage`, and [`Rows`] move in and out of the WIT
//! `rows` record without copying. Everything coming from the guest is
//! checked: offsets of rows, and node inputs (in range and before the node).

use super::bindings::wit;
use super::error::CallError;
use crate::data::Rows;
use std::time::Duration;

use crate::plan::graph::{
    Broadcast, BroadcastValue, JobGraph, JoinKind, KeyFilter, Node, NodeKind, Reducer, SourceSpec,
    Stage, Window,
};

/// Moves the buffers of `rows` into a WIT record, leaving `rows` empty until
/// [`restore_rows`] puts them back.
pub(super) fn lend_rows(rows: &mut Rows) -> wit::Rows {
    let (data, ends) = std::mem::take(rows).into_parts();
    wit::Rows { data, ends }
}

/// Puts back the buffers [`lend_rows`] took.
pub(super) fn restore_rows(rows: &mut Rows, lent: wit::Rows) {
    *rows = Rows::from_parts(lent.data, lent.ends)
        .expect("rows lent to a call come from a valid Rows and are put back unchanged");
}

/// Rows returned by the guest, checked.
pub(super) fn rows_from_guest(rows: wit::Rows, function: &str) -> Result<Rows, CallError> {
    Rows::from_parts(rows.data, rows.ends).map_err(|e| {
        CallError::Host(format!(
            "the plugin's `{function}` returned malformed rows: {e}"
        ))
    })
}

pub(super) fn stage_to_wit(stage: &Stage) -> wit::Stage {
    match *stage {
        Stage::Apply(f) => wit::Stage::Apply(f),
        Stage::Combine(f) => wit::Stage::Combine(f),
    }
}

/// The plan's [`JobGraph`] for the graph a plugin's `define` returned.
pub(super) fn job_graph(graph: wit::JobGraph) -> Result<JobGraph, CallError> {
    let mut nodes = Vec::with_capacity(graph.nodes.len());
    for (index, node) in graph.nodes.into_iter().enumerate() {
        let bad = |reason: String| {
            CallError::Host(format!(
                "the job graph from `define` is malformed: node {index} (`{}`) {reason}",
                node.name
            ))
        };
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for &input in &node.inputs {
            let input = input as usize;
            if input >= index {
                return Err(bad(format!(
                    "reads node {input}, which does not come before it"
                )));
            }
            inputs.push(input);
        }
        let kind = node_kind(node.kind).map_err(bad)?;
        nodes.push(Node {
            name: node.name,
            uid: node.uid,
            checkpoint: node.checkpoint_ms.map(Duration::from_millis),
            kind,
            inputs,
            codec: node.codec,
        });
    }
    let broadcasts = graph
        .broadcasts
        .into_iter()
        .map(|b| Broadcast {
            name: b.name,
            value: match b.value {
                wit::BroadcastValue::Bytes(bytes) => BroadcastValue::Bytes(bytes),
                wit::BroadcastValue::File(path) => BroadcastValue::File(path),
            },
        })
        .collect();
    Ok(JobGraph {
        name: graph.name,
        nodes,
        broadcasts,
        remember: graph.remember_ms.map(Duration::from_millis),
    })
}

fn window(w: wit::Window) -> Window {
    Window {
        length: Duration::from_millis(w.length_ms),
        slide: w.slide_ms.map(Duration::from_millis),
    }
}

fn join_kind(kind: wit::JoinKind) -> JoinKind {
    match kind {
        wit::JoinKind::Inner => JoinKind::Inner,
        wit::JoinKind::LeftOuter => JoinKind::LeftOuter,
        wit::JoinKind::RightOuter => JoinKind::RightOuter,
        wit::JoinKind::FullOuter => JoinKind::FullOuter,
    }
}

fn node_kind(kind: wit::NodeKind) -> Result<NodeKind, String> {
    use wit::NodeKind as W;
    Ok(match kind {
        W::Source(source) => NodeKind::Source(source_spec(source)?),
        W::Map(f) => NodeKind::Map(f),
        W::FlatMap(f) => NodeKind::FlatMap(f),
        W::Filter(f) => NodeKind::Filter(f),
        W::MapPartitions(f) => NodeKind::MapPartitions(f),
        W::Repartition(n) => NodeKind::Repartition(n),
        W::Union => NodeKind::Union,
        W::Count => NodeKind::Count,
        W::Reduce(r) => NodeKind::Reduce(reducer(r)),
        W::ReduceByKey(r) => NodeKind::ReduceByKey {
            reducer: reducer(r.reducer),
            partitions: r.partitions,
        },
        W::GroupByKey(partitions) => NodeKind::GroupByKey { partitions },
        W::Window(w) => NodeKind::Window(window(w)),
        W::ReduceByKeyAndWindow(r) => NodeKind::ReduceByKeyAndWindow {
            reducer: reducer(r.reducer),
            inverse: r.inverse,
            filter: r.filter.map(|f| match f {
                wit::KeyFilter::Function(f) => KeyFilter::Function(f),
                wit::KeyFilter::Nonzero => KeyFilter::Nonzero,
            }),
            window: window(r.window),
            partitions: r.partitions,
        },
        W::UpdateStateByKey(u) => NodeKind::UpdateStateByKey {
            function: u.function,
            state_codec: u.state_codec,
            partitions: u.partitions,
        },
        W::MapWithState(m) => NodeKind::MapWithState {
            function: m.function,
            state_codec: m.state_codec,
            timeout: m.timeout_ms.map(Duration::from_millis),
            partitions: m.partitions,
        },
        W::StateSnapshots => NodeKind::StateSnapshots,
        W::Join(j) => NodeKind::Join {
            kind: join_kind(j.kind),
            partitions: j.partitions,
        },
        W::Cogroup(partitions) => NodeKind::Cogroup { partitions },
        W::Transform(f) => NodeKind::Transform(f),
        W::JoinDataset(d) => NodeKind::JoinDataset {
            location: d.location,
            kind: join_kind(d.kind),
        },
        W::Print(n) => NodeKind::Print(n),
        W::SaveAsTextFiles(s) => NodeKind::SaveAsTextFiles {
            prefix: s.prefix,
            suffix: s.suffix,
        },
        W::ForeachPartition(f) => NodeKind::ForeachPartition(f),
        W::SaveToSqlite(s) => NodeKind::SaveToSqlite {
            path: s.path,
            table: s.table,
        },
    })
}

fn reducer(r: wit::Reducer) -> Reducer {
    match r {
        wit::Reducer::Function(f) => Reducer::Function(f),
        wit::Reducer::Sum => Reducer::Sum,
        wit::Reducer::Min => Reducer::Min,
        wit::Reducer::Max => Reducer::Max,
        wit::Reducer::Count => Reducer::Count,
    }
}

fn source_spec(source: wit::Source) -> Result<SourceSpec, String> {
    Ok(match source {
        wit::Source::SocketText(s) => SourceSpec::SocketText {
            host: s.host,
            port: s.port,
        },
        wit::Source::TextFile(s) => SourceSpec::TextFile {
            directory: s.directory,
        },
        wit::Source::Queue(wit::QueueSource::Batches(batches)) => SourceSpec::Queue(
            batches
                .into_iter()
                .enumerate()
                .map(|(i, b)| {
                    Rows::from_parts(b.data, b.ends)
                        .map_err(|e| format!("has a malformed queue batch {i}: {e}"))
                })
                .collect::<Result<_, _>>()?,
        ),
        wit::Source::Queue(wit::QueueSource::LinesFile(f)) => SourceSpec::LinesFile {
            path: f.path,
            lines_per_batch: f.lines_per_batch,
        },
        wit::Source::Rate(r) => SourceSpec::Rate {
            records_per_second: r.records_per_second,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, kind: wit::NodeKind, inputs: Vec<u32>) -> wit::Node {
        wit::Node {
            name: name.to_string(),
            uid: None,
            checkpoint_ms: None,
            kind,
            inputs,
            codec: "string".to_string(),
        }
    }

    fn source() -> wit::NodeKind {
        wit::NodeKind::Source(wit::Source::SocketText(wit::SocketTextSource {
            host: "localhost".to_string(),
            port: 9999,
        }))
    }

    #[test]
    fn graph_converts_field_for_field() {
        let graph = job_graph(wit::JobGraph {
            name: "wc".to_string(),
            broadcasts: vec![],
            remember_ms: None,
            nodes: vec![
                node("socket", source(), vec![]),
                node(
                    "flat_map at src/lib.rs:3:7",
                    wit::NodeKind::FlatMap(0),
                    vec![0],
                ),
                node(
                    "reduce_by_key at src/lib.rs:5:7",
                    wit::NodeKind::ReduceByKey(wit::ReduceByKey {
                        reducer: wit::Reducer::Sum,
                        partitions: Some(4),
                    }),
                    vec![1],
                ),
                node("print", wit::NodeKind::Print(10), vec![2]),
            ],
        })
        .unwrap();
        assert_eq!(graph.name, "wc");
        assert_eq!(graph.nodes.len(), 4);
        assert_eq!(graph.nodes[1].inputs, vec![0]);
        assert!(matches!(graph.nodes[1].kind, NodeKind::FlatMap(0)));
        assert!(matches!(
            graph.nodes[2].kind,
            NodeKind::ReduceByKey {
                reducer: Reducer::Sum,
                partitions: Some(4)
            }
        ));
    }

    #[test]
    fn forward_or_self_reference_is_refused_with_the_node_name() {
        for inputs in [vec![1], vec![7]] {
            let err = job_graph(wit::JobGraph {
                name: "wc".to_string(),
                broadcasts: vec![],
                remember_ms: None,
                nodes: vec![
                    node("socket", source(), vec![]),
                    node("map at src/lib.rs:4:9", wit::NodeKind::Map(0), inputs),
                ],
            })
            .unwrap_err();
            let CallError::Host(msg) = err else {
                panic!("{err:?}")
            };
            assert!(msg.contains("node 1 (`map at src/lib.rs:4:9`)"), "{msg}");
            assert!(msg.contains("does not come before it"), "{msg}");
        }
    }

    #[test]
    fn malformed_queue_batch_is_refused() {
        let err = job_graph(wit::JobGraph {
            name: "q".to_string(),
            broadcasts: vec![],
            remember_ms: None,
            nodes: vec![node(
                "queue",
                wit::NodeKind::Source(wit::Source::Queue(wit::QueueSource::Batches(vec![
                    wit::Rows {
                        data: b"ab".to_vec(),
                        ends: vec![3],
                    },
                ]))),
                vec![],
            )],
        })
        .unwrap_err();
        assert!(err.to_string().contains("malformed queue batch 0"), "{err}");
    }

    #[test]
    fn lent_rows_come_back() {
        let mut rows: Rows = ["a", "bc"].into_iter().collect();
        let lent = lend_rows(&mut rows);
        assert!(rows.is_empty());
        assert_eq!(lent.data, b"abc");
        restore_rows(&mut rows, lent);
        assert_eq!(rows.get(1), b"bc");
        assert!(
            rows_from_guest(
                wit::Rows {
                    data: vec![],
                    ends: vec![1]
                },
                "run-chain"
            )
            .is_err()
        );
    }
}
