//! The job graph a plugin defines ([`graph`]), its validation
//! ([`validate()`]), and the physical [`Plan`] the executor runs each batch:
//! narrow operators fused into one guest call, the map-side combine of a keyed
//! reduce folded into the call before it, and one step per node whose output
//! is materialized.
//!
//! ```text
//! socket ─ flat_map ─ map ─ reduce_by_key(f) ─ print
//!   Source   Chain[apply flat_map, apply map, combine f]   ReduceByKey   Output
//! ```

pub mod graph;
mod physical;
mod validate;

pub use graph::{
    Broadcast, BroadcastValue, FunctionId, JobGraph, JoinKind, KeyFilter, Node, NodeId, NodeKind,
    Reducer, SourceSpec, Stage, Window,
};
pub use physical::{NativeCombine, OutputKind, Plan, Step, StepKind};
pub use validate::{PlanError, Validated, check_timing, validate};
