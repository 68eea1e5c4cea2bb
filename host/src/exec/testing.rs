//! Test support shared by the executor's tests: a plugin built by
//! `sluice-test-artifacts`, loaded once per process, and an [`Executor`] over
//! it, planned from its `define` with 1 s batches, driven as the scheduler
//! drives it (`run_batch` with each source's partitions); encoded pairs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::{Executor, Workers, WorkersConfig};
use crate::data::KeyGroups;
use crate::plan::{NodeId, Plan, validate};
use crate::sinks::Sinks;
use crate::wasm::{Plugin, Runtime, WasmConfig};

/// `(key, i64)` pairs as encoded `tuple<string, s64>` records.
pub(crate) fn pairs<K: AsRef<str>>(items: &[(K, i64)]) -> crate::data::Rows {
    let mut rows = crate::data::Rows::new();
    for (k, v) in items {
        let mut record = Vec::new();
        crate::data::codec::write_pair(k.as_ref().as_bytes(), &v.to_le_bytes(), &mut record)
            .expect("a short key");
        rows.push(&record);
    }
    rows
}

/// The batch interval of every test executor.
pub(crate) const BATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Worker threads of every test executor (so a keyed step has two
/// partitions).
pub(crate) const WORKERS: usize = 2;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(WasmConfig {
            memory_limit: 256 << 20,
            call_timeout: Duration::from_secs(60),
            cache_dir: None,
            grants: Default::default(),
        })
        .expect("engine")
    })
}

/// The plugin at `path` (a `sluice_test_artifacts` constant), compiled once.
pub(crate) fn plugin(path: &'static str) -> Plugin {
    static PLUGINS: OnceLock<Mutex<HashMap<&'static str, Plugin>>> = OnceLock::new();
    let mut plugins = PLUGINS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    plugins
        .entry(path)
        .or_insert_with(|| runtime().load(Path::new(path)).expect("load"))
        .clone()
}

/// The tokio runtime the test executors' sinks write with.
fn io() -> &'static tokio::runtime::Runtime {
    static IO: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    IO.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio")
    })
}

/// `--arg` pairs.
pub(crate) fn args<K: ToString, V: ToString>(pairs: &[(K, V)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An executor for the plugin at `path` with `args`, planned for
/// `key_groups` and changed by `tweak` first, and the node of its first
/// source.
pub(crate) fn executor(
    path: &'static str,
    args: Vec<(String, String)>,
    key_groups: KeyGroups,
    tweak: impl FnOnce(&mut Plan),
) -> (Executor, NodeId) {
    let plugin = plugin(path);
    let graph = plugin
        .instantiate("test")
        .expect("instantiate")
        .define(&args)
        .expect("define");
    let validated = validate(
        &graph,
        BATCH_INTERVAL,
        Duration::from_millis(200),
        key_groups,
    )
    .expect("valid");
    let mut plan = Plan::new(&graph, validated, key_groups, BATCH_INTERVAL);
    tweak(&mut plan);
    let source = plan.sources[0].0;
    let workers = Workers::new(
        plugin,
        graph,
        args,
        WorkersConfig {
            threads: WORKERS,
            retries: 0,
            recycle: crate::exec::Recycle {
                after_calls: None,
                growth_above: 32 << 20,
            },
            log: None,
        },
    )
    .expect("workers");
    let executor = Executor::new(
        plan,
        workers,
        Sinks::new(io().handle().clone()),
        Default::default(),
    );
    (executor, source)
}
