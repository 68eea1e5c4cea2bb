//! Sluice: a stream-processing engine in the spirit of Spark Streaming whose
//! user logic runs as WebAssembly components.
//!
//! Data flows through the modules in this order (see `ARCHITECTURE.md`):
//! [`sources`] (receivers) → [`batching`] (blocks, batch clock) → [`plan`]
//! (the job graph from the plugin, fused into stages) → [`exec`] (scheduler,
//! narrow stages, shuffle) → [`sinks`] (outputs). Beside them: [`wasm`]
//! (engine, component cache, instances, limits — the only module that touches
//! wasmtime), [`data`] (the partition format and codecs), [`monitor`] (batch
//! metrics), [`storage`] (paths and object store URLs for checkpoints,
//! outputs and reference data, and their options), [`checkpoint`] (state
//! and metadata written incrementally to a checkpoint location and read
//! back), [`control`] (starting and stopping a job), [`serve`] (`sluice
//! serve`: the HTTP API, the registry of deployed jobs, their supervisor)
//! and [`cli`] (the `sluice` command, also the API's client).

pub mod batching;
pub mod checkpoint;
pub mod cli;
pub mod control;
pub mod data;
pub mod exec;
pub mod monitor;
pub mod plan;
pub mod serve;
pub mod sinks;
pub mod sources;
pub mod storage;
pub mod wasm;
