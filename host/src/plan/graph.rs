//! [`JobGraph`]: the DStream graph a plugin's `define` returned, as plain host
//! data. It mirrors the WIT `job-graph` record field for field; `wasm/`
//! converts one into the other, so nothing past `wasm/` sees a binding type.

use std::time::Duration;

use crate::data::Rows;

/// Index of a user function in the plugin's function table.
pub type FunctionId = u32;

/// Index of a node in [`JobGraph::nodes`].
pub type NodeId = usize;

/// A job: its name and its nodes, each after the nodes it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobGraph {
    /// The job's name, for logs.
    pub name: String,
    /// Sources, operators and outputs.
    pub nodes: Vec<Node>,
    /// Named values every user function can read, loaded at start.
    pub broadcasts: Vec<Broadcast>,
    /// Keep every stream's batches at least this long (Spark's `remember`).
    pub remember: Option<Duration>,
}

/// A broadcast value the graph declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// The name user functions read it by.
    pub name: String,
    /// Where its bytes come from.
    pub value: BroadcastValue,
}

/// Where a broadcast value's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BroadcastValue {
    /// Given by the plugin.
    Bytes(Vec<u8>),
    /// The content of a file (a path or an object store URL), read at start.
    File(String),
}

impl JobGraph {
    /// The first difference between this graph and `other`, for a message
    /// (`None` when they are equal): every instance of a plugin must define
    /// the same graph, since the host calls functions by their number.
    pub fn first_difference(&self, other: &JobGraph) -> Option<String> {
        if self.name != other.name {
            return Some(format!("job name `{}` became `{}`", self.name, other.name));
        }
        if self.broadcasts != other.broadcasts {
            return Some("the broadcast values changed".into());
        }
        if self.remember != other.remember {
            return Some(format!(
                "remember changed from {:?} to {:?}",
                self.remember, other.remember
            ));
        }
        let mut nodes = self.nodes.iter().zip(&other.nodes).enumerate();
        if let Some((index, (a, b))) = nodes.find(|(_, (a, b))| a != b) {
            return Some(format!(
                "node {index} was {} and became {}",
                a.describe(),
                b.describe()
            ));
        }
        (self.nodes.len() != other.nodes.len()).then(|| {
            format!(
                "the graph had {} nodes and now has {}",
                self.nodes.len(),
                other.nodes.len()
            )
        })
    }
}

/// One DStream (or output) of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// What the user wrote and where (`"map at src/lib.rs:12:10"`).
    pub name: String,
    /// The user's name for the operator (`.name("running-counts")`): a
    /// stateful operator's state is kept under it.
    pub uid: Option<String>,
    /// What the node does.
    pub kind: NodeKind,
    /// The nodes it reads.
    pub inputs: Vec<NodeId>,
    /// The codec descriptor of its records, as the plugin gave it; empty for
    /// outputs. [`crate::plan::validate`] parses it.
    pub codec: String,
    /// The SDK's `.checkpoint(interval)`: checkpoint the job at least this
    /// often.
    pub checkpoint: Option<Duration>,
}

impl Node {
    /// How messages name the node: `running-counts (update_state_by_key at
    /// src/lib.rs:9:5)` when the user named it, else what they wrote and
    /// where.
    pub fn display(&self) -> String {
        match &self.uid {
            Some(uid) => format!("{uid} ({})", self.name),
            None => self.name.clone(),
        }
    }

    /// Whether the host keeps state for this node across batches, under
    /// its [`state_name`](Node::state_name).
    pub fn is_stateful(&self) -> bool {
        matches!(
            self.kind,
            NodeKind::UpdateStateByKey { .. }
                | NodeKind::MapWithState { .. }
                | NodeKind::ReduceByKeyAndWindow { .. }
        )
    }

    /// The name the node's state is kept under: the user's name, else one
    /// derived from its place in the graph (`update_state_by_key#4`), which
    /// changes when nodes are added before it.
    pub fn state_name(&self, index: NodeId) -> String {
        match &self.uid {
            Some(uid) => uid.clone(),
            None => format!("{}#{index}", self.kind.label()),
        }
    }

    /// `` `map at src/lib.rs:3:7` (map of function 2, reading node 1, codec `string`) ``.
    pub fn describe(&self) -> String {
        let function = match &self.kind {
            NodeKind::Map(f)
            | NodeKind::FlatMap(f)
            | NodeKind::Filter(f)
            | NodeKind::MapPartitions(f)
            | NodeKind::Reduce(Reducer::Function(f))
            | NodeKind::ForeachPartition(f)
            | NodeKind::Transform(f)
            | NodeKind::UpdateStateByKey { function: f, .. }
            | NodeKind::MapWithState { function: f, .. }
            | NodeKind::ReduceByKeyAndWindow {
                reducer: Reducer::Function(f),
                ..
            }
            | NodeKind::ReduceByKey {
                reducer: Reducer::Function(f),
                ..
            } => format!(" of function {f}"),
            _ => String::new(),
        };
        let inputs: Vec<String> = self.inputs.iter().map(ToString::to_string).collect();
        format!(
            "`{}` ({}{function}, reading [{}], codec `{}`)",
            self.display(),
            self.kind.label(),
            inputs.join(", "),
            self.codec
        )
    }
}

/// Where a source's records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// Lines from a TCP server.
    SocketText {
        /// Host name or address to connect to.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// Lines of new files in a directory.
    TextFile {
        /// The directory watched.
        directory: String,
    },
    /// One entry per batch, encoded with the node's codec.
    Queue(Vec<Rows>),
    /// A text file read by the host, `lines_per_batch` lines per batch.
    LinesFile {
        /// Path of the file.
        path: String,
        /// Lines in each batch.
        lines_per_batch: u32,
    },
    /// `(timestamp-ms, counter)` at a fixed rate.
    Rate {
        /// Records generated per second.
        records_per_second: u64,
    },
}

/// How the values of a key are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reducer {
    /// A user function.
    Function(FunctionId),
    /// Built-in, run natively.
    Sum,
    /// Built-in, run natively.
    Min,
    /// Built-in, run natively.
    Max,
    /// Built-in, run natively; yields `i64`.
    Count,
}

/// A window over a stream's batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// How far back a window reaches: it covers the batches in
    /// `(T - length, T]`.
    pub length: Duration,
    /// How often a window is produced: at the multiples of the slide.
    /// `None`: the slide of the stream it reads.
    pub slide: Option<Duration>,
}

impl Window {
    /// The slide, given that of the stream the window reads.
    pub fn slide_over(&self, input_slide: Duration) -> Duration {
        self.slide.unwrap_or(input_slide)
    }
}

/// Which keys an incremental windowed reduce keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFilter {
    /// A user filter over `(k, v)` pairs.
    Function(FunctionId),
    /// Keys whose value is not zero.
    Nonzero,
}

/// The four joins of two pair streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Keys on both sides.
    Inner,
    /// Every pair of the left side.
    LeftOuter,
    /// Every pair of the right side.
    RightOuter,
    /// Every pair of either side.
    FullOuter,
}

impl JoinKind {
    /// The operator's name, for messages.
    pub fn label(self) -> &'static str {
        match self {
            JoinKind::Inner => "join",
            JoinKind::LeftOuter => "left_outer_join",
            JoinKind::RightOuter => "right_outer_join",
            JoinKind::FullOuter => "full_outer_join",
        }
    }
}

/// What a node does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A source of records.
    Source(SourceSpec),
    /// `map(f)`.
    Map(FunctionId),
    /// `flat_map(f)`.
    FlatMap(FunctionId),
    /// `filter(f)`.
    Filter(FunctionId),
    /// `map_partitions(f)`.
    MapPartitions(FunctionId),
    /// `repartition(n)`.
    Repartition(u32),
    /// The records of all inputs.
    Union,
    /// The number of records of each batch.
    Count,
    /// All records of a batch reduced to one.
    Reduce(Reducer),
    /// `reduce_by_key`, with an optional number of partitions.
    ReduceByKey {
        /// How values are combined.
        reducer: Reducer,
        /// Reduce partitions; the host default when `None`.
        partitions: Option<u32>,
    },
    /// `group_by_key`, with an optional number of partitions.
    GroupByKey {
        /// Partitions; the host default when `None`.
        partitions: Option<u32>,
    },
    /// `window(length, slide)`.
    Window(Window),
    /// `reduce_by_key_and_window`, incremental with an inverse.
    ReduceByKeyAndWindow {
        /// How values are combined.
        reducer: Reducer,
        /// The inverse of a user reducer.
        inverse: Option<FunctionId>,
        /// Which keys the window values keep (incremental forms).
        filter: Option<KeyFilter>,
        /// The window.
        window: Window,
        /// Partitions; the host default when `None`.
        partitions: Option<u32>,
    },
    /// `update_state_by_key(f)`.
    UpdateStateByKey {
        /// Called through `update-state`.
        function: FunctionId,
        /// Codec descriptor of the state.
        state_codec: String,
        /// Partitions; the host default when `None`.
        partitions: Option<u32>,
    },
    /// `map_with_state(spec)`.
    MapWithState {
        /// Called through `map-with-state`.
        function: FunctionId,
        /// Codec descriptor of the state.
        state_codec: String,
        /// Idle keys time out after this long.
        timeout: Option<Duration>,
        /// Partitions; the host default when `None`.
        partitions: Option<u32>,
    },
    /// The whole state of the `map_with_state` node it reads.
    StateSnapshots,
    /// A join of two pair streams.
    Join {
        /// Which join.
        kind: JoinKind,
        /// Partitions; the host default when `None`.
        partitions: Option<u32>,
    },
    /// `cogroup` of two pair streams.
    Cogroup {
        /// Partitions; the host default when `None`.
        partitions: Option<u32>,
    },
    /// A user function over a whole batch.
    Transform(FunctionId),
    /// A join of a pair stream with a reference dataset.
    JoinDataset {
        /// Path or object store URL of the dataset.
        location: String,
        /// `Inner` or `LeftOuter`.
        kind: JoinKind,
    },
    /// Output: print the first `n` records of each batch.
    Print(u32),
    /// Output: one directory per batch.
    SaveAsTextFiles {
        /// Path or URL prefix of the directories.
        prefix: String,
        /// Optional suffix after the batch time.
        suffix: Option<String>,
    },
    /// Output: a user function per partition.
    ForeachPartition(FunctionId),
    /// Output: each batch's records in one SQLite transaction, with the
    /// batch time it commits.
    SaveToSqlite {
        /// Local path of the database file.
        path: String,
        /// The table.
        table: String,
    },
}

impl NodeKind {
    /// Narrow operators run fused in one guest call per partition.
    pub fn narrow_function(&self) -> Option<FunctionId> {
        match *self {
            NodeKind::Map(f)
            | NodeKind::FlatMap(f)
            | NodeKind::Filter(f)
            | NodeKind::MapPartitions(f) => Some(f),
            _ => None,
        }
    }

    /// Outputs consume a stream and produce none.
    pub fn is_output(&self) -> bool {
        matches!(
            self,
            NodeKind::Print(_)
                | NodeKind::SaveAsTextFiles { .. }
                | NodeKind::ForeachPartition(_)
                | NodeKind::SaveToSqlite { .. }
        )
    }

    /// The word a user would use for this kind, for messages.
    pub fn label(&self) -> &'static str {
        match self {
            NodeKind::Source(_) => "source",
            NodeKind::Map(_) => "map",
            NodeKind::FlatMap(_) => "flat_map",
            NodeKind::Filter(_) => "filter",
            NodeKind::MapPartitions(_) => "map_partitions",
            NodeKind::Repartition(_) => "repartition",
            NodeKind::Union => "union",
            NodeKind::Count => "count",
            NodeKind::Reduce(_) => "reduce",
            NodeKind::ReduceByKey { .. } => "reduce_by_key",
            NodeKind::GroupByKey { .. } => "group_by_key",
            NodeKind::Window(_) => "window",
            NodeKind::ReduceByKeyAndWindow { .. } => "reduce_by_key_and_window",
            NodeKind::UpdateStateByKey { .. } => "update_state_by_key",
            NodeKind::MapWithState { .. } => "map_with_state",
            NodeKind::StateSnapshots => "state_snapshots",
            NodeKind::Join { kind, .. } => kind.label(),
            NodeKind::Cogroup { .. } => "cogroup",
            NodeKind::Transform(_) => "transform",
            NodeKind::JoinDataset {
                kind: JoinKind::LeftOuter,
                ..
            } => "left_outer_join_dataset",
            NodeKind::JoinDataset { .. } => "join_dataset",
            NodeKind::Print(_) => "print",
            NodeKind::SaveAsTextFiles { .. } => "save_as_text_files",
            NodeKind::ForeachPartition(_) => "foreach_partition",
            NodeKind::SaveToSqlite { .. } => "save_to_sqlite",
        }
    }
}

/// A node, for tests.
#[cfg(test)]
pub(crate) fn test_node(name: &str, kind: NodeKind, inputs: &[usize], codec: &str) -> Node {
    Node {
        name: name.into(),
        uid: None,
        checkpoint: None,
        kind,
        inputs: inputs.to_vec(),
        codec: codec.into(),
    }
}

/// A socket source node, for tests.
#[cfg(test)]
pub(crate) fn test_socket() -> Node {
    test_node(
        "socket_text_stream at src/lib.rs:1:1",
        NodeKind::Source(SourceSpec::SocketText {
            host: "localhost".into(),
            port: 9999,
        }),
        &[],
        "string",
    )
}

/// One step of a fused guest call (the WIT `stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A narrow operator's function.
    Apply(FunctionId),
    /// Map-side combine of a `reduce_by_key` with a user reducer.
    Combine(FunctionId),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(nodes: Vec<Node>) -> JobGraph {
        JobGraph {
            name: "job".into(),
            nodes,
            broadcasts: Vec::new(),
            remember: None,
        }
    }

    #[test]
    fn first_difference_names_the_node_and_the_functions() {
        let map = |name: &str, f| test_node(name, NodeKind::Map(f), &[0], "string");
        let first = graph(vec![
            test_socket(),
            map("map at a.rs:1:1", 0),
            map("map at a.rs:2:1", 1),
        ]);
        assert_eq!(first.first_difference(&first.clone()), None);

        let swapped = graph(vec![
            test_socket(),
            map("map at a.rs:2:1", 0),
            map("map at a.rs:1:1", 1),
        ]);
        assert_eq!(
            first.first_difference(&swapped).unwrap(),
            "node 1 was `map at a.rs:1:1` (map of function 0, reading [0], codec `string`) \
             and became `map at a.rs:2:1` (map of function 0, reading [0], codec `string`)"
        );
        let shorter = graph(first.nodes[..2].to_vec());
        assert_eq!(
            first.first_difference(&shorter).unwrap(),
            "the graph had 3 nodes and now has 2"
        );
        let renamed = JobGraph {
            name: "other".into(),
            ..first.clone()
        };
        assert_eq!(
            first.first_difference(&renamed).unwrap(),
            "job name `job` became `other`"
        );
    }
}
