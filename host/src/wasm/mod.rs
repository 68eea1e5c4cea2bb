//! The WebAssembly side of Sluice: one wasmtime engine for the process
//! ([`Runtime`]), compiled plugins and their on-disk cache ([`Plugin`]), and
//! sandboxed instances that run the user's functions over partitions
//! ([`Instance`]).
//!
//! This is the only module that touches wasmtime types: its API speaks
//! [`Rows`](crate::data::Rows), the [`plan`](crate::plan) graph types and its
//! own errors ([`WasmError`] when loading, [`CallError`] when calling).
//!
//! ```no_run
//! use sluice::data::Rows;
//! use sluice::plan::Stage;
//! use sluice::wasm::{Runtime, WasmConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::new(WasmConfig::default())?;
//! let plugin = runtime.load("network_word_count.wasm".as_ref())?;
//! // Guest calls block: make them on a worker thread (rayon), not on a tokio one.
//! let mut instance = plugin.instantiate("word-count")?;
//! let _graph = instance.define(&[])?;
//! let mut input: Rows = ["to be or not to be"].into_iter().collect();
//! instance.set_task("batch 1700000000000 flat_map#1 p0");
//! let _words = instance.run_chain(&[Stage::Apply(0)], &mut input)?;
//! # Ok(()) }
//! ```
//!
//! Files: [`runtime`](self::Runtime) (engine, epoch ticker, loading),
//! `contract` (the `sluice:plugin` version this host speaks), `cache`
//! (precompiled components on disk), `plugin` and `instance` (instantiation
//! and calls), `limits` (memory accounting), `output` (guest stdout/stderr),
//! `convert` (WIT values to plan types), `error`.

mod bindings;
mod cache;
mod contract;
mod convert;
mod error;
mod instance;
mod limits;
mod output;
mod plugin;
mod runtime;
#[cfg(test)]
mod tests;

pub use contract::CONTRACT_VERSION;
pub use error::{CallError, TrapReason, WasmError};
pub use instance::Instance;
pub use plugin::Plugin;
pub use runtime::{Runtime, WasmConfig};
