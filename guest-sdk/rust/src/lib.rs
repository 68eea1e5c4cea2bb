//! # sluice-guest: write Sluice jobs in Rust
//!
//! A Sluice job is a WebAssembly component that defines a graph of
//! discretized streams, in the style of Spark Streaming, and runs the user
//! functions of that graph when the host calls it. This crate hides the
//! component interface (`wit/sluice.wit`) behind a typed DStream API:
//!
//! ```
//! use sluice_guest::prelude::*;
//!
//! struct NetworkWordCount;
//!
//! impl Job for NetworkWordCount {
//!     fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
//!         let lines = ctx.socket_text_stream(args.require("host")?, args.parse::<u16>("port")?);
//!         lines
//!             .flat_map(|l: String| l.split(' ').map(String::from).collect::<Vec<_>>())
//!             .map(|w| (w, 1i64))
//!             .reduce_by_key(|a, b| a + b)
//!             .print();
//!         Ok(())
//!     }
//! }
//!
//! sluice_guest::export_job!(NetworkWordCount);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (the crate is
//! a `cdylib`) and run it with
//! `sluice run target/wasm32-wasip2/release/network_word_count.wasm --arg host=localhost --arg port=9999`.
//! See `guest-sdk/rust/README.md` for the whole walk-through.
//!
//! ## How it runs
//!
//! - The host calls [`Job::define`] once in every instance of the plugin.
//!   Each operator adds a node to the graph; each closure is registered in a
//!   function table, numbered in definition order, so ids agree in every
//!   instance. Nodes are named after the operator and its call site
//!   (`"flat_map at src/lib.rs:12:10"`); the host uses the name in messages.
//! - The host then calls the plugin once per partition per batch: for a
//!   chain of fused narrow operators, for the reducer of a keyed reduce, for
//!   an output function. A partition crosses the boundary as one buffer and
//!   one offset list, encoded with the stream's [`codec`].
//! - Windows, state and joins are nodes the host runs: the host keeps
//!   window values and per-key state (as codec bytes, under the operator's
//!   [`name`](DStream::name)) and calls the plugin's `update-state`,
//!   `map-with-state` and `transform` exports with the record formats of
//!   "State calls" in `wit/sluice.wit`; an instance holds no state between
//!   calls. Accumulators and broadcast values go through the `host` import
//!   ([`shared`]).
//! - A decode error, or an `Err` from a `foreach_partition` function, fails
//!   the call with a message naming the operator. A panic aborts the
//!   instance (there is no unwinding on wasm32-wasip2); the SDK's panic hook
//!   first writes `panic in <node>: <message> (at <file:line:col>)` to
//!   stderr, which the host reports.
//!
//! Closures must not depend on state that differs between instances or
//! calls (global counters, randomness, the clock) if the job is to give the
//! same results when a batch is re-run.

#![forbid(missing_docs)]
#![deny(unsafe_code)]

#[cfg(any(
    test,
    all(
        feature = "allocator",
        target_arch = "wasm32",
        not(target_feature = "atomics")
    )
))]
mod alloc;
mod args;
pub mod codec;
mod context;
mod dstream;
mod function;
mod graph;
mod output;
mod rows;
mod runtime;
pub mod shared;
mod state;
pub mod text;
mod time;

pub use args::Args;

/// Small allocations from reusable chunks (`alloc.rs`); the `allocator`
/// feature, on by default.
#[cfg(all(
    feature = "allocator",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: alloc::Arena<std::alloc::System> = alloc::Arena::new(std::alloc::System);
pub use codec::{Bytes, Data, DecodeError, Json, Numeric};
pub use context::{Job, StreamingContext};
pub use dstream::{DStream, MapWithStateDStream};
pub use function::{Emit, Emitter};
pub use output::IdempotencyKey;
pub use shared::{Broadcast, DoubleAccumulator, LongAccumulator};
pub use state::{Runs, State, StateSpec};

/// Everything a job definition needs: `use sluice_guest::prelude::*;`.
pub mod prelude {
    pub use crate::args::Args;
    pub use crate::codec::{Bytes, Data, Json, Numeric};
    pub use crate::context::{Job, StreamingContext};
    pub use crate::dstream::{DStream, MapWithStateDStream};
    pub use crate::function::{Emit, Emitter};
    pub use crate::output::IdempotencyKey;
    pub use crate::shared::{Broadcast, DoubleAccumulator, LongAccumulator};
    pub use crate::state::{Runs, State, StateSpec};
}

/// The bindings generated from `wit/sluice.wit`. Not part of the API: plugin
/// code never uses them directly.
#[doc(hidden)]
#[allow(unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "::sluice_guest::bindings",
    });
}

/// What [`export_job!`] expands to refers to these. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::exports::sluice::plugin::job::Guest;
    pub use crate::bindings::sluice::plugin::types::{JobGraph, Rows, Stage};
    pub use crate::runtime::{
        define, foreach_partition, map_with_state, reduce_all, reduce_groups, run_chain, transform,
        update_state,
    };
}

/// Exports a [`Job`] as the plugin's implementation of the `sluice:plugin`
/// contract. Use it once, at the top level of the plugin crate.
///
/// ```
/// use sluice_guest::prelude::*;
///
/// struct Echo;
/// impl Job for Echo {
///     fn define(ctx: &mut StreamingContext, _args: &Args) -> Result<(), String> {
///         ctx.socket_text_stream("localhost", 9999).print();
///         Ok(())
///     }
/// }
/// sluice_guest::export_job!(Echo);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_job {
    ($job:ty) => {
        const _: () = {
            struct SluiceJobExport;

            impl $crate::__private::Guest for SluiceJobExport {
                fn define(
                    args: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<$crate::__private::JobGraph, ::std::string::String>
                {
                    $crate::__private::define::<$job>(args)
                }

                fn run_chain(
                    stages: ::std::vec::Vec<$crate::__private::Stage>,
                    input: $crate::__private::Rows,
                ) -> ::std::result::Result<$crate::__private::Rows, ::std::string::String> {
                    $crate::__private::run_chain(stages, input)
                }

                fn reduce_groups(
                    reducer: u32,
                    groups: $crate::__private::Rows,
                ) -> ::std::result::Result<$crate::__private::Rows, ::std::string::String> {
                    $crate::__private::reduce_groups(reducer, groups)
                }

                fn reduce_all(
                    reducer: u32,
                    input: $crate::__private::Rows,
                ) -> ::std::result::Result<$crate::__private::Rows, ::std::string::String> {
                    $crate::__private::reduce_all(reducer, input)
                }

                fn foreach_partition(
                    function: u32,
                    batch_time_ms: u64,
                    partition: u32,
                    input: $crate::__private::Rows,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::foreach_partition(function, batch_time_ms, partition, input)
                }

                fn update_state(
                    function: u32,
                    batch_time_ms: u64,
                    input: $crate::__private::Rows,
                ) -> ::std::result::Result<$crate::__private::Rows, ::std::string::String> {
                    $crate::__private::update_state(function, batch_time_ms, input)
                }

                fn map_with_state(
                    function: u32,
                    batch_time_ms: u64,
                    input: $crate::__private::Rows,
                ) -> ::std::result::Result<$crate::__private::Rows, ::std::string::String> {
                    $crate::__private::map_with_state(function, batch_time_ms, input)
                }

                fn transform(
                    function: u32,
                    batch_time_ms: u64,
                    input: $crate::__private::Rows,
                ) -> ::std::result::Result<$crate::__private::Rows, ::std::string::String> {
                    $crate::__private::transform(function, batch_time_ms, input)
                }
            }

    $crate::bindings::__export_plugin!(SluiceJobExport with_types_in $crate::bindings);
        };
    };
}
