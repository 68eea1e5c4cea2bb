//! The job graph under construction: nodes in definition order, the function
//! table filled alongside, and the mistakes found while building, reported
//! when `define` returns.

use std::panic::Location;
use std::rc::Rc;

use crate::bindings::sluice::plugin::types::{FunctionId, JobGraph, Node, NodeId, NodeKind};
use crate::function::{Entry, Function};

/// Nodes and functions of one `define` call.
pub(crate) struct Graph {
    name: String,
    nodes: Vec<Node>,
    functions: Vec<Entry>,
    errors: Vec<String>,
}

impl Graph {
    pub(crate) fn new(name: String) -> Self {
        Self {
            name,
            nodes: Vec::new(),
            functions: Vec::new(),
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
        });
        id
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
                broadcasts: Vec::new(),
                remember_ms: None,
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
