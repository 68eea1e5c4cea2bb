//! The job graph under construction: nodes in definition order, the function
//! table filled alongside, and the mistakes found while building, reported
//! when `define` returns.

use std::panic::Location;
use std::rc::Rc;
use std::time::Duration;

use crate::bindings::sluice::plugin::types::{
    Broadcast, BroadcastValue, FunctionId, JobGraph, Node, NodeId, NodeKind,
};
use crate::function::{Entry, Function};

/// Nodes and functions of one `define` call.
pub(crate) struct Graph {
    name: String,
    nodes: Vec<Node>,
    functions: Vec<Entry>,
    broadcasts: Vec<Broadcast>,
    remember_ms: Option<u64>,
    errors: Vec<String>,
}

impl Graph {
    pub(crate) fn new(name: String) -> Self {
        Self {
            name,
            nodes: Vec::new(),
            functions: Vec::new(),
            broadcasts: Vec::new(),
            remember_ms: None,
            errors: Vec::new(),
        }
    }

    /// Registers a user function under its node's name; ids follow
    /// definition order, so every instance that runs the same `define` agrees.
    pub(crate) fn add_function(&mut self, name: &Rc<str>, function: Function) -> FunctionId {
        let id = to_u32(self.functions.len());
        self.functions.push(Entry {
            name: Rc::clone(name),
            function,
        });
        id
    }

    /// Appends a node; `codec` is empty for outputs.
    pub(crate) fn add_node(
        &mut self,
        name: &Rc<str>,
        kind: NodeKind,
        inputs: Vec<NodeId>,
        codec: String,
    ) -> NodeId {
        let id = to_u32(self.nodes.len());
        self.nodes.push(Node {
            name: name.to_string(),
            uid: None,
            kind,
            inputs,
            codec,
            checkpoint_ms: None,
        });
        id
    }

    /// Asks for checkpoints of the job at least every `interval` (node `id`'s
    /// `.checkpoint(..)`).
    pub(crate) fn set_checkpoint(&mut self, id: NodeId, interval: Duration) {
        let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        let Some(node) = self.nodes.get_mut(id as usize) else {
            return;
        };
        if ms == 0 {
            let message = format!("{}: a checkpoint interval must be positive", node.name);
            self.error(message);
            return;
        }
        node.checkpoint_ms = Some(ms);
    }

    /// Gives node `id` the user's name (`uid`); names are unique in a graph.
    pub(crate) fn set_uid(&mut self, id: NodeId, uid: &str) {
        let taken = self
            .nodes
            .iter()
            .enumerate()
            .find(|(i, n)| n.uid.as_deref() == Some(uid) && *i != id as usize);
        if let Some((_, other)) = taken {
            let message = format!(
                "{}: the name {uid:?} is already the name of {}; names are unique in a job",
                self.node_name(id).unwrap_or("?"),
                other.name
            );
            self.error(message);
            return;
        }
        if let Some(node) = self.nodes.get_mut(id as usize) {
            if let Some(old) = &node.uid
                && old != uid
            {
                let message = format!(
                    "{}: named {uid:?}, but it is already named {old:?}",
                    node.name
                );
                self.error(message);
                return;
            }
            node.uid = Some(uid.to_string());
        }
    }

    /// Declares a broadcast value; names are unique.
    pub(crate) fn add_broadcast(&mut self, name: &str, value: BroadcastValue, at: &str) {
        if self.broadcasts.iter().any(|b| b.name == name) {
            self.error(format!(
                "broadcast at {at}: the name {name:?} is already a broadcast's"
            ));
        }
        self.broadcasts.push(Broadcast {
            name: name.to_string(),
            value,
        });
    }

    /// Keeps every stream's batches at least `ms` (the longest asked wins).
    pub(crate) fn remember(&mut self, ms: u64) {
        self.remember_ms = Some(self.remember_ms.map_or(ms, |old| old.max(ms)));
    }

    /// The name of node `id`, for `Debug`.
    pub(crate) fn node_name(&self, id: NodeId) -> Option<&str> {
        self.nodes.get(id as usize).map(|n| n.name.as_str())
    }

    /// Records a mistake in the job's definition; `define` fails with it.
    pub(crate) fn error(&mut self, message: String) {
        self.errors.push(message);
    }

    /// The graph for the host and the function table, or the first mistake.
    pub(crate) fn finish(self) -> Result<(JobGraph, Vec<Entry>), String> {
        if let Some(first) = self.errors.into_iter().next() {
            return Err(first);
        }
        Ok((
            JobGraph {
                name: self.name,
                nodes: self.nodes,
                broadcasts: self.broadcasts,
                remember_ms: self.remember_ms,
            },
            self.functions,
        ))
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("fewer than 2^32 nodes and functions")
}

/// `"<op> at <file>:<line>:<column>"`, like Spark's `"map at Job.scala:40"`.
pub(crate) fn node_name(op: &str, at: &Location<'_>) -> Rc<str> {
    format!("{op} at {}:{}:{}", at.file(), at.line(), at.column()).into()
}
