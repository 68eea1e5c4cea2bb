//! [`JobGraph`]: the DStream graph a plugin's `define` returned, as plain host
//! data. It mirrors the WIT `job-graph` record field for field; `wasm/`
//! converts one into the other, so nothing past `wasm/` sees a binding type.

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
}

impl JobGraph {
    /// The first difference between this graph and `other`, for a message
    /// (`None` when they are equal): every instance of a plugin must define
    /// the same graph, since the host calls functions by their number.
    pub fn first_difference(&self, other: &JobGraph) -> Option<String> {
        if self.name != other.name {
            return Some(format!("job name `{}` became `{}`", self.name, other.name));
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
    /// What the node does.
    pub kind: NodeKind,
    /// The nodes it reads.
    pub inputs: Vec<NodeId>,
    /// The codec descriptor of its records, as the plugin gave it; empty for
    /// outputs. [`crate::plan::validate`] parses it.
    pub codec: String,
}

impl Node {
    /// `` `map at src/lib.rs:3:7` (map of function 2, reading node 1, codec `string`) ``.
    fn describe(&self) -> String {
        let function = match &self.kind {
            NodeKind::Map(f)
            | NodeKind::FlatMap(f)
            | NodeKind::Filter(f)
            | NodeKind::MapPartitions(f)
            | NodeKind::Reduce(f)
            | NodeKind::ForeachPartition(f)
            | NodeKind::ReduceByKey {
                reducer: Reducer::Function(f),
                ..
            } => format!(" of function {f}"),
            _ => String::new(),
        };
        let inputs: Vec<String> = self.inputs.iter().map(ToString::to_string).collect();
        format!(
            "`{}` ({}{function}, reading [{}], codec `{}`)",
            self.name,
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
    Reduce(FunctionId),
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
            NodeKind::Print(_) | NodeKind::SaveAsTextFiles { .. } | NodeKind::ForeachPartition(_)
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
            NodeKind::Print(_) => "print",
            NodeKind::SaveAsTextFiles { .. } => "save_as_text_files",
            NodeKind::ForeachPartition(_) => "foreach_partition",
        }
    }
}

/// A node, for tests.
#[cfg(test)]
pub(crate) fn test_node(name: &str, kind: NodeKind, inputs: &[usize], codec: &str) -> Node {
    Node {
        name: name.into(),
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
