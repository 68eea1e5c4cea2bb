//! The physical [`Plan`]: the steps the executor runs for every batch, in
//! order. A node's output is materialized (held as partitions for the batch)
//! only when it is a source, a shuffle, a union, or read by more than one
//! node; a run of narrow operators with single readers becomes one
//! [`StepKind::Chain`], a single guest call per partition.

use std::time::Duration;

use super::graph::{
    FunctionId, JobGraph, JoinKind, KeyFilter, NodeId, NodeKind, Reducer, SourceSpec, Stage, Window,
};
use super::validate::Validated;
use crate::data::KeyGroups;
use crate::data::{Codec, Numeric};

/// What to run for every batch.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The job's name.
    pub job: String,
    /// Steps in dependency order: a step's inputs are produced by earlier steps.
    pub steps: Vec<Step>,
    /// The sources, each with its node id and name.
    pub sources: Vec<(NodeId, String, SourceSpec)>,
    /// The codec of every slot's records (`None` for outputs). Slots are the
    /// node ids, then intermediates with no node of their own (the output of a
    /// map-side combine).
    pub codecs: Vec<Option<Codec>>,
    /// How many steps read each slot; the executor drops a slot's partitions
    /// after its last reader.
    pub readers: Vec<usize>,
    /// The job's key groups: every keyed step places keys with them.
    pub key_groups: KeyGroups,
    /// The batch interval.
    pub batch_interval: Duration,
    /// Keep every stream's batches at least this long (Spark's `remember`).
    pub remember: Option<Duration>,
}

/// One step: produces the partitions of slot `node` (or, for an output,
/// writes them somewhere).
#[derive(Debug, Clone)]
pub struct Step {
    /// The slot this step produces: a node id (for a chain, its last node), or
    /// an intermediate slot past the nodes.
    pub node: NodeId,
    /// For messages: the names of the nodes this step runs, joined by ` → `.
    pub name: String,
    /// The step runs at the batch times that are multiples of this: the
    /// slide of the streams it reads (the batch interval unless a window
    /// comes before it).
    pub every: Duration,
    /// What it does.
    pub kind: StepKind,
}

/// The kinds of step.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// The blocks a source received for the batch, one partition each.
    Source,
    /// Narrow operators (and possibly a map-side combine) fused into one guest
    /// call per input partition.
    Chain {
        /// The node read.
        input: NodeId,
        /// The guest stages, in order.
        stages: Vec<Stage>,
        /// The map-side combine of a built-in reducer, run natively on the
        /// guest's output in the same task.
        combine: Option<NativeCombine>,
        /// Whether the guest's output pairs are grouped natively by key in
        /// the same task, into packed groups (`exec::grouping`: keys in
        /// order of first appearance, values in order as runs of equal
        /// values; the slot's codec says what they stand for,
        /// `tuple<k, list<v>>`): the input of a stateful step, which needs
        /// every value, holds one record per key and block instead of one
        /// per value.
        group: bool,
    },
    /// All partitions of all inputs.
    Union {
        /// The nodes read.
        inputs: Vec<NodeId>,
    },
    /// Records spread round-robin over `partitions` partitions.
    Repartition {
        /// The node read.
        input: NodeId,
        /// Number of output partitions.
        partitions: u32,
    },
    /// One `i64` record: the number of input records.
    Count {
        /// The node read.
        input: NodeId,
    },
    /// At most one record: all records reduced.
    Reduce {
        /// The node read.
        input: NodeId,
        /// A guest function or a built-in reducer.
        reducer: Reducer,
    },
    /// Hash shuffle of pairs by key, then reduce the values of each key.
    ReduceByKey {
        /// The node read.
        input: NodeId,
        /// How values combine.
        reducer: Reducer,
        /// Output partitions; `None` = the executor's default parallelism.
        partitions: Option<u32>,
        /// True when the input step already combined values per key
        /// (a guest reducer's map-side combine ran in the chain).
        combined: bool,
    },
    /// Hash shuffle of pairs by key, values of each key gathered in a list.
    GroupByKey {
        /// The node read.
        input: NodeId,
        /// Output partitions; `None` = the executor's default parallelism.
        partitions: Option<u32>,
    },
    /// Keeps the input's batches for the window's length; at the multiples
    /// of its slide (always set in a plan), all the records of the batches in `(T - length, T]`.
    Window {
        /// The node read.
        input: NodeId,
        /// Length and slide.
        window: Window,
    },
    /// Reduces each batch by key (as `ReduceByKey`) into a kept partial; at
    /// the multiples of its slide, the values of each key over the window:
    /// incrementally (previous window, plus what entered, minus what left)
    /// with an inverse or the built-in `sum` and `count`, from the partials
    /// otherwise.
    ReduceByKeyAndWindow {
        /// The node read.
        input: NodeId,
        /// How values combine.
        reducer: Reducer,
        /// The inverse of a user reducer.
        inverse: Option<FunctionId>,
        /// Which keys the window values keep (incremental forms).
        filter: Option<KeyFilter>,
        /// Length and slide.
        window: Window,
        /// Output partitions; `None` = the executor's default parallelism.
        partitions: Option<u32>,
        /// True when the input step already combined values per key.
        combined: bool,
        /// The name its window values are kept under.
        state: String,
    },
    /// Every key with state or new values through the guest's
    /// `update-state`; the state kept per key group under `state`.
    UpdateStateByKey {
        /// The node read.
        input: NodeId,
        /// The update function.
        function: FunctionId,
        /// Output partitions; `None` = the executor's default parallelism.
        partitions: Option<u32>,
        /// The name the state is kept under.
        state: String,
        /// Whether the input is grouped by key (a chain with `group`).
        grouped: bool,
    },
    /// The keys with new values (and those timing out) through the guest's
    /// `map-with-state`; the state kept per key group under `state`.
    MapWithState {
        /// The node read.
        input: NodeId,
        /// The mapping function.
        function: FunctionId,
        /// Idle keys time out after this long.
        timeout: Option<Duration>,
        /// The codec of the state (checked on every state the guest returns).
        state_codec: Codec,
        /// Output partitions; `None` = the executor's default parallelism.
        partitions: Option<u32>,
        /// The name the state is kept under.
        state: String,
        /// Whether the input is grouped by key (a chain with `group`).
        grouped: bool,
    },
    /// The whole state kept under `state`, as `(k, s)` pairs.
    StateSnapshots {
        /// The `MapWithState` step's node (read for ordering only).
        input: NodeId,
        /// The state's name.
        state: String,
    },
    /// Both sides shuffled by the same partitioner, then joined per key.
    Join {
        /// The left side.
        left: NodeId,
        /// The right side.
        right: NodeId,
        /// Which join.
        kind: JoinKind,
        /// Output partitions; `None` = the executor's default parallelism.
        partitions: Option<u32>,
    },
    /// Both sides shuffled by the same partitioner, then the values of each
    /// key gathered per side.
    Cogroup {
        /// The left side.
        left: NodeId,
        /// The right side.
        right: NodeId,
        /// Output partitions; `None` = the executor's default parallelism.
        partitions: Option<u32>,
    },
    /// All partitions of a batch in one guest call.
    Transform {
        /// The node read.
        input: NodeId,
        /// The function.
        function: FunctionId,
    },
    /// Each pair joined with the reference dataset's value of its key.
    JoinDataset {
        /// The node read.
        input: NodeId,
        /// The dataset's path or URL.
        location: String,
        /// `Inner` or `LeftOuter`.
        kind: JoinKind,
        /// The codec of the dataset's keys.
        key: Codec,
        /// The codec of the dataset's values.
        value: Codec,
    },
    /// An output operation.
    Output {
        /// The node read.
        input: NodeId,
        /// Which output.
        output: OutputKind,
    },
}

/// The map-side combine of a built-in reducer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeCombine {
    /// Sum, min, max or count.
    pub reducer: Reducer,
    /// The numeric codec of the values (`None` for count, which takes any).
    pub value: Option<Numeric>,
}

/// Output operations.
#[derive(Debug, Clone)]
pub enum OutputKind {
    /// Print the first `n` records.
    Print(u32),
    /// A directory of part files per batch.
    SaveAsTextFiles {
        /// Path or URL prefix.
        prefix: String,
        /// Optional suffix.
        suffix: Option<String>,
    },
    /// A guest function per partition.
    ForeachPartition(FunctionId),
    /// One SQLite transaction per batch.
    SaveToSqlite {
        /// Local path of the database file.
        path: String,
        /// The table.
        table: String,
    },
}

impl Plan {
    /// Builds the plan of a graph validated for `key_groups` and
    /// `batch_interval`.
    pub fn new(
        graph: &JobGraph,
        validated: Validated,
        key_groups: KeyGroups,
        batch_interval: Duration,
    ) -> Plan {
        let Validated {
            mut codecs,
            slides,
            state_names,
            ..
        } = validated;
        let nodes = &graph.nodes;
        // A step runs as often as the streams it reads produce batches.
        let every = |id: NodeId| {
            nodes[id]
                .inputs
                .first()
                .map_or(batch_interval, |&input| slides[input])
        };
        let mut consumers = vec![0usize; nodes.len()];
        for node in nodes {
            for &i in &node.inputs {
                consumers[i] += 1;
            }
        }
        // A narrow node whose single reader is a narrow node, a keyed reduce
        // (which appends its map-side combine) or a stateful step (which
        // groups its values by key after it) is fused into its reader.
        let fusable_reader = |reader: &NodeKind| {
            reader.narrow_function().is_some()
                || matches!(
                    reader,
                    NodeKind::ReduceByKey { .. }
                        | NodeKind::ReduceByKeyAndWindow { .. }
                        | NodeKind::UpdateStateByKey { .. }
                        | NodeKind::MapWithState { .. }
                )
        };
        let mut fused_into_reader = vec![false; nodes.len()];
        for node in nodes {
            if fusable_reader(&node.kind) {
                let input = node.inputs[0];
                if nodes[input].kind.narrow_function().is_some() && consumers[input] == 1 {
                    fused_into_reader[input] = true;
                }
            }
        }

        let state_name = |id: NodeId| {
            state_names[id]
                .clone()
                .unwrap_or_else(|| nodes[id].state_name(id))
        };
        let mut steps = Vec::new();
        let mut sources = Vec::new();
        // For a fused narrow node: the chain it belongs to so far (first input, stages, names).
        let mut pending: Vec<Option<PendingChain>> = vec![None; nodes.len()];
        for (id, node) in nodes.iter().enumerate() {
            let input = node.inputs.first().copied();
            let kind = match &node.kind {
                NodeKind::Source(spec) => {
                    sources.push((id, node.name.clone(), spec.clone()));
                    Some(StepKind::Source)
                }
                NodeKind::Map(_)
                | NodeKind::FlatMap(_)
                | NodeKind::Filter(_)
                | NodeKind::MapPartitions(_) => {
                    let input = input.expect("validated: one input");
                    let f = node.kind.narrow_function().expect("narrow");
                    let (chain_input, mut stages, mut names) = pending[input]
                        .take()
                        .unwrap_or_else(|| (input, Vec::new(), Vec::new()));
                    stages.push(Stage::Apply(f));
                    names.push(node.name.clone());
                    if fused_into_reader[id] {
                        pending[id] = Some((chain_input, stages, names));
                        continue;
                    }
                    steps.push(Step {
                        node: id,
                        name: names.join(" → "),
                        every: every(id),
                        kind: StepKind::Chain {
                            input: chain_input,
                            stages,
                            combine: None,
                            group: false,
                        },
                    });
                    continue;
                }
                NodeKind::ReduceByKey { reducer, .. }
                | NodeKind::ReduceByKeyAndWindow { reducer, .. } => {
                    let input = input.expect("validated: one input");
                    let mut shuffle_input = input;
                    let mut combined = false;
                    // The map-side combine runs in the chain before: in the guest
                    // for a user reducer, natively on the chain's output for a
                    // built-in one (when there is a chain to run it in).
                    let chain = match (reducer, pending[input].take()) {
                        (Reducer::Function(f), chain) => {
                            let (chain_input, mut stages, names) =
                                chain.unwrap_or_else(|| (input, Vec::new(), Vec::new()));
                            stages.push(Stage::Combine(*f));
                            Some((chain_input, stages, names, None))
                        }
                        (builtin, Some((chain_input, stages, names))) => {
                            let value = match codecs[input].as_ref().and_then(Codec::value) {
                                Some(Codec::Num(n)) => Some(*n),
                                _ => None,
                            };
                            let combine = NativeCombine {
                                reducer: *builtin,
                                value,
                            };
                            Some((chain_input, stages, names, Some(combine)))
                        }
                        (_, None) => None,
                    };
                    if let Some((chain_input, stages, names, combine)) = chain {
                        // The combined records are an intermediate with a slot
                        // of their own (of the reduce's output type), which the
                        // shuffle reads.
                        let codec = codecs[id].clone();
                        let slot = push_intermediate_chain(
                            &mut steps,
                            &mut codecs,
                            codec,
                            (chain_input, stages, names),
                            format!("{} (map-side combine)", node.name),
                            every(id),
                            (combine, false),
                        );
                        shuffle_input = slot;
                        combined = true;
                    }
                    Some(match &node.kind {
                        NodeKind::ReduceByKey { partitions, .. } => StepKind::ReduceByKey {
                            input: shuffle_input,
                            reducer: *reducer,
                            partitions: *partitions,
                            combined,
                        },
                        NodeKind::ReduceByKeyAndWindow {
                            inverse,
                            filter,
                            window,
                            partitions,
                            ..
                        } => StepKind::ReduceByKeyAndWindow {
                            input: shuffle_input,
                            reducer: *reducer,
                            inverse: *inverse,
                            filter: *filter,
                            window: resolved(window, every(id)),
                            partitions: *partitions,
                            combined,
                            state: state_name(id),
                        },
                        _ => unreachable!("matched above"),
                    })
                }
                NodeKind::Window(window) => Some(StepKind::Window {
                    input: input.expect("validated: one input"),
                    window: resolved(window, every(id)),
                }),
                NodeKind::UpdateStateByKey { .. } | NodeKind::MapWithState { .. } => {
                    let mut input = input.expect("validated: one input");
                    // The chain before, if any, groups the values by key.
                    let grouped = if let Some(chain) = pending[input].take() {
                        let codec = codecs[input].as_ref().and_then(Codec::grouped);
                        input = push_intermediate_chain(
                            &mut steps,
                            &mut codecs,
                            codec,
                            chain,
                            format!("{} (values grouped by key)", node.name),
                            every(id),
                            (None, true),
                        );
                        true
                    } else {
                        false
                    };
                    Some(match &node.kind {
                        NodeKind::UpdateStateByKey {
                            function,
                            partitions,
                            ..
                        } => StepKind::UpdateStateByKey {
                            input,
                            function: *function,
                            partitions: *partitions,
                            state: state_name(id),
                            grouped,
                        },
                        NodeKind::MapWithState {
                            function,
                            timeout,
                            partitions,
                            state_codec,
                        } => StepKind::MapWithState {
                            input,
                            function: *function,
                            timeout: *timeout,
                            state_codec: state_codec.parse().expect("validated: a state codec"),
                            partitions: *partitions,
                            state: state_name(id),
                            grouped,
                        },
                        _ => unreachable!("matched above"),
                    })
                }
                NodeKind::StateSnapshots => {
                    let input = input.expect("validated: one input");
                    Some(StepKind::StateSnapshots {
                        input,
                        state: state_name(input),
                    })
                }
                NodeKind::Join { kind, partitions } => Some(StepKind::Join {
                    left: node.inputs[0],
                    right: node.inputs[1],
                    kind: *kind,
                    partitions: *partitions,
                }),
                NodeKind::Cogroup { partitions } => Some(StepKind::Cogroup {
                    left: node.inputs[0],
                    right: node.inputs[1],
                    partitions: *partitions,
                }),
                NodeKind::Transform(function) => Some(StepKind::Transform {
                    input: input.expect("validated: one input"),
                    function: *function,
                }),
                NodeKind::JoinDataset { location, kind } => {
                    let output = codecs[id].as_ref().expect("validated: not an output");
                    let key = output.key().expect("validated: pairs").clone();
                    let value = match output.value() {
                        Some(Codec::Tuple(items)) => match (kind, &items[1]) {
                            (JoinKind::LeftOuter, Codec::Option(w)) => (**w).clone(),
                            (_, w) => w.clone(),
                        },
                        _ => unreachable!("validated: (k, (v, w)) pairs"),
                    };
                    Some(StepKind::JoinDataset {
                        input: input.expect("validated: one input"),
                        location: location.clone(),
                        kind: *kind,
                        key,
                        value,
                    })
                }
                NodeKind::Repartition(n) => Some(StepKind::Repartition {
                    input: input.expect("validated: one input"),
                    partitions: *n,
                }),
                NodeKind::Union => Some(StepKind::Union {
                    inputs: node.inputs.clone(),
                }),
                NodeKind::Count => Some(StepKind::Count {
                    input: input.expect("validated: one input"),
                }),
                NodeKind::Reduce(reducer) => Some(StepKind::Reduce {
                    input: input.expect("validated: one input"),
                    reducer: *reducer,
                }),
                NodeKind::GroupByKey { partitions } => Some(StepKind::GroupByKey {
                    input: input.expect("validated: one input"),
                    partitions: *partitions,
                }),
                NodeKind::Print(n) => Some(StepKind::Output {
                    input: input.expect("validated: one input"),
                    output: OutputKind::Print(*n),
                }),
                NodeKind::SaveAsTextFiles { prefix, suffix } => Some(StepKind::Output {
                    input: input.expect("validated: one input"),
                    output: OutputKind::SaveAsTextFiles {
                        prefix: prefix.clone(),
                        suffix: suffix.clone(),
                    },
                }),
                NodeKind::ForeachPartition(f) => Some(StepKind::Output {
                    input: input.expect("validated: one input"),
                    output: OutputKind::ForeachPartition(*f),
                }),
                NodeKind::SaveToSqlite { path, table } => Some(StepKind::Output {
                    input: input.expect("validated: one input"),
                    output: OutputKind::SaveToSqlite {
                        path: path.clone(),
                        table: table.clone(),
                    },
                }),
            };
            if let Some(kind) = kind {
                steps.push(Step {
                    node: id,
                    name: node.display(),
                    every: every(id),
                    kind,
                });
            }
        }

        let mut readers = vec![0usize; codecs.len()];
        for step in &steps {
            for input in step.kind.inputs() {
                readers[input] += 1;
            }
        }
        Plan {
            job: graph.name.clone(),
            steps,
            sources,
            codecs,
            readers,
            key_groups,
            batch_interval,
            remember: graph.remember,
        }
    }
}

/// A window whose slide is set (`None` in the graph means the slide of the
/// stream it reads).
fn resolved(window: &Window, input_slide: Duration) -> Window {
    Window {
        length: window.length,
        slide: Some(window.slide_over(input_slide)),
    }
}

/// A chain being built: the node it reads, its stages, their names.
type PendingChain = (NodeId, Vec<Stage>, Vec<String>);

/// Pushes the step of `chain` ending with a native `tail` (a built-in
/// reducer's combine, or grouping) into an intermediate slot of `codec`
/// past the nodes, named by its stages' names and `last_name`; returns the
/// slot.
fn push_intermediate_chain(
    steps: &mut Vec<Step>,
    codecs: &mut Vec<Option<Codec>>,
    codec: Option<Codec>,
    (input, stages, mut names): PendingChain,
    last_name: String,
    every: Duration,
    (combine, group): (Option<NativeCombine>, bool),
) -> NodeId {
    names.push(last_name);
    let slot = codecs.len();
    codecs.push(codec);
    steps.push(Step {
        node: slot,
        name: names.join(" → "),
        every,
        kind: StepKind::Chain {
            input,
            stages,
            combine,
            group,
        },
    });
    slot
}

impl StepKind {
    /// The nodes this step reads.
    pub fn inputs(&self) -> Vec<NodeId> {
        match self {
            StepKind::Source => vec![],
            StepKind::Union { inputs } => inputs.clone(),
            StepKind::Join { left, right, .. } | StepKind::Cogroup { left, right, .. } => {
                vec![*left, *right]
            }
            StepKind::Chain { input, .. }
            | StepKind::Repartition { input, .. }
            | StepKind::Count { input }
            | StepKind::Reduce { input, .. }
            | StepKind::ReduceByKey { input, .. }
            | StepKind::GroupByKey { input, .. }
            | StepKind::Window { input, .. }
            | StepKind::ReduceByKeyAndWindow { input, .. }
            | StepKind::UpdateStateByKey { input, .. }
            | StepKind::MapWithState { input, .. }
            | StepKind::StateSnapshots { input, .. }
            | StepKind::Transform { input, .. }
            | StepKind::JoinDataset { input, .. }
            | StepKind::Output { input, .. } => vec![*input],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::validate;
    use std::time::Duration;

    use crate::plan::graph::test_node as node;

    fn plan(nodes: Vec<Node>) -> Plan {
        let g = JobGraph {
            name: "t".into(),
            nodes,
            broadcasts: Vec::new(),
            remember: None,
        };
        let groups = KeyGroups::default();
        let validated = validate(
            &g,
            Duration::from_secs(1),
            Duration::from_millis(200),
            groups,
        )
        .unwrap();
        Plan::new(&g, validated, groups, Duration::from_secs(1))
    }

    use crate::plan::graph::{Node, test_socket as source};

    #[test]
    fn word_count_fuses_narrow_ops_and_combine() {
        let p = plan(vec![
            source(),
            node("flat_map", NodeKind::FlatMap(0), &[0], "string"),
            node("map", NodeKind::Map(1), &[1], "tuple<string,i64>"),
            node(
                "rbk",
                NodeKind::ReduceByKey {
                    reducer: Reducer::Function(2),
                    partitions: None,
                },
                &[2],
                "tuple<string,i64>",
            ),
            node("print", NodeKind::Print(10), &[3], ""),
        ]);
        let kinds: Vec<_> = p.steps.iter().map(|s| format!("{:?}", s.kind)).collect();
        assert_eq!(p.steps.len(), 4, "{kinds:#?}");
        match &p.steps[1].kind {
            StepKind::Chain { input, stages, .. } => {
                assert_eq!(*input, 0);
                assert_eq!(
                    stages,
                    &vec![Stage::Apply(0), Stage::Apply(1), Stage::Combine(2)]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p.steps[2].kind,
            StepKind::ReduceByKey {
                input: 5,
                combined: true,
                ..
            }
        ));
        assert_eq!(p.steps[1].name, "flat_map → map → rbk (map-side combine)");
    }

    #[test]
    fn a_stream_read_twice_is_materialized() {
        let p = plan(vec![
            source(),
            node("map", NodeKind::Map(0), &[0], "string"),
            node("filter", NodeKind::Filter(1), &[1], "string"),
            node("print a", NodeKind::Print(10), &[1], ""),
            node("print b", NodeKind::Print(10), &[2], ""),
        ]);
        let chains: Vec<_> = p
            .steps
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Chain { input, stages, .. } => Some((*input, stages.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            chains,
            vec![(0, vec![Stage::Apply(0)]), (1, vec![Stage::Apply(1)])]
        );
        assert_eq!(p.readers[1], 2);
    }

    /// The chain before `update_state_by_key` groups its pairs by key, into
    /// a slot of `tuple<k, list<v>>` (as packed groups) that the stateful
    /// step reads; without a
    /// chain before it, the step reads pairs.
    #[test]
    fn a_stateful_step_reads_its_chain_grouped() {
        let update = || NodeKind::UpdateStateByKey {
            function: 1,
            state_codec: "i64".into(),
            partitions: None,
        };
        let p = plan(vec![
            source(),
            node("flat_map", NodeKind::FlatMap(0), &[0], "tuple<string,i64>"),
            node("update", update(), &[1], "tuple<string,i64>"),
            node("again", update(), &[2], "tuple<string,i64>"),
            node("print", NodeKind::Print(10), &[3], ""),
        ]);
        let kinds: Vec<_> = p.steps.iter().map(|s| format!("{:?}", s.kind)).collect();
        assert!(
            matches!(
                &p.steps[1].kind,
                StepKind::Chain { input: 0, stages, combine: None, group: true }
                    if stages == &vec![Stage::Apply(0)]
            ),
            "{kinds:#?}"
        );
        let slot = p.steps[1].node;
        assert_eq!(
            p.codecs[slot].as_ref().map(ToString::to_string).as_deref(),
            Some("tuple<string,list<i64>>")
        );
        assert_eq!(p.steps[1].name, "flat_map → update (values grouped by key)");
        assert!(
            matches!(p.steps[2].kind, StepKind::UpdateStateByKey { input, grouped: true, .. } if input == slot),
            "{kinds:#?}"
        );
        assert!(
            matches!(
                p.steps[3].kind,
                StepKind::UpdateStateByKey {
                    input: 2,
                    grouped: false,
                    ..
                }
            ),
            "{kinds:#?}"
        );
    }

    #[test]
    fn builtin_reducer_combines_natively_after_the_chain() {
        let p = plan(vec![
            source(),
            node("map", NodeKind::Map(0), &[0], "tuple<string,i64>"),
            node(
                "sum",
                NodeKind::ReduceByKey {
                    reducer: Reducer::Sum,
                    partitions: Some(3),
                },
                &[1],
                "tuple<string,i64>",
            ),
            node("print", NodeKind::Print(10), &[2], ""),
        ]);
        assert!(matches!(
            p.steps[1].kind,
            StepKind::Chain {
                ref stages,
                combine: Some(NativeCombine {
                    reducer: Reducer::Sum,
                    value: Some(Numeric::I64)
                }),
                ..
            } if stages == &vec![Stage::Apply(0)]
        ));
        assert!(matches!(
            p.steps[2].kind,
            StepKind::ReduceByKey {
                input: 4,
                combined: true,
                partitions: Some(3),
                ..
            }
        ));
    }
}
