//! Tests of `wasm/` against real components: the plugins that
//! `sluice-test-artifacts` builds from `plugins/` and `tests/plugins/`.
//! `misbehaving` panics, loops, allocates without bound or returns an error
//! on request; `contract-0-1` exports the previous contract version.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use sluice_test_artifacts::{CONTRACT_0_1, MISBEHAVING, NETWORK_WORD_COUNT};

use super::*;
use crate::data::Rows;
use crate::plan::graph::{JobGraph, NodeKind, Reducer, Stage};

const MEMORY_LIMIT: usize = 64 << 20;
const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// One runtime with small limits, and each plugin compiled once, for all tests.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(WasmConfig {
            memory_limit: MEMORY_LIMIT,
            call_timeout: CALL_TIMEOUT,
            cache_dir: None,
            grants: Default::default(),
        })
        .expect("engine")
    })
}

fn word_count() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| runtime().load(Path::new(NETWORK_WORD_COUNT)).expect("load"))
}

fn misbehaving() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| runtime().load(Path::new(MISBEHAVING)).expect("load"))
}

fn args(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A `misbehaving` instance with `fault`, and the function of its `map`.
fn misbehaving_map(fault: &str) -> (Instance, JobGraph, u32) {
    let mut instance = misbehaving()
        .instantiate("misbehaving")
        .expect("instantiate");
    instance.set_task(&format!("test {fault}"));
    let graph = instance
        .define(&args(&[
            ("fault", fault),
            ("host", "localhost"),
            ("port", "9"),
        ]))
        .expect("define");
    let map = graph
        .nodes
        .iter()
        .find_map(|n| match n.kind {
            NodeKind::Map(f) => Some(f),
            _ => None,
        })
        .expect("a map node");
    (instance, graph, map)
}

fn lines() -> Rows {
    ["to be or not to be", "that is the question"]
        .into_iter()
        .collect()
}

#[test]
fn instances_cross_threads_and_plugins_are_shared() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync + Clone>() {}
    send::<Instance>();
    send_sync::<Runtime>();
    send_sync::<Plugin>();
}

#[test]
fn word_count_chain_runs_fused_and_leaves_the_input() {
    let plugin = word_count();
    assert_eq!(plugin.contract_version(), CONTRACT_VERSION);
    assert_eq!(plugin.digest().len(), 64);
    // The words borrowed from the lines (flat_map_str → combine), or a
    // String per word (flat_map → map → combine): the same counts.
    for (words, stages) in [("borrowed", 2), ("owned", 3)] {
        let mut instance = plugin.instantiate("wc").unwrap();
        let graph = instance
            .define(&args(&[
                ("host", "localhost"),
                ("port", "9999"),
                ("words", words),
            ]))
            .unwrap();
        let chain: Vec<Stage> = graph
            .nodes
            .iter()
            .filter_map(|n| match n.kind {
                NodeKind::FlatMap(f) | NodeKind::Map(f) => Some(Stage::Apply(f)),
                NodeKind::ReduceByKey {
                    reducer: Reducer::Function(f),
                    ..
                } => Some(Stage::Combine(f)),
                _ => None,
            })
            .collect();
        assert_eq!(chain.len(), stages, "{graph:?}");
        let mut input = lines();
        let out = instance.run_chain(&chain, &mut input).unwrap();
        assert_eq!(input, lines());
        let mut counts: Vec<(String, i64)> = out
            .iter()
            .map(|r| {
                let len = u32::from_le_bytes(r[..4].try_into().unwrap()) as usize;
                let word = String::from_utf8(r[4..4 + len].to_vec()).unwrap();
                (word, i64::from_le_bytes(r[4 + len..].try_into().unwrap()))
            })
            .collect();
        counts.sort();
        assert_eq!(counts[0], ("be".to_string(), 2));
        assert_eq!(counts.len(), 8);
        assert!(instance.memory_bytes() > 0);
    }
}

#[test]
fn panic_traps_with_the_guest_message_and_keeps_the_input() {
    let (mut instance, _, map) = misbehaving_map("panic");
    let mut input = lines();
    let err = instance
        .run_chain(&[Stage::Apply(map)], &mut input)
        .unwrap_err();
    let CallError::Trap {
        reason,
        detail,
        guest_stderr,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*reason, TrapReason::Trap);
    assert!(detail.contains("unreachable"), "{detail}");
    assert!(guest_stderr.contains("panic in map at"), "{guest_stderr}");
    assert!(
        guest_stderr.contains("boom: deliberate failure"),
        "{guest_stderr}"
    );
    assert!(err.to_string().contains("boom: deliberate failure"));
    assert_eq!(input, lines(), "the input is put back for a retry");

    refused_then_run_on_a_fresh_instance(instance, map, input);
}

/// A trapped instance refuses further calls; a fresh one runs the input.
fn refused_then_run_on_a_fresh_instance(mut trapped: Instance, map: u32, mut input: Rows) {
    let again = trapped.run_chain(&[Stage::Apply(map)], &mut input);
    assert!(matches!(again, Err(CallError::Trap { .. })), "{again:?}");
    let (mut fresh, _, map) = misbehaving_map("none");
    assert_eq!(
        fresh.run_chain(&[Stage::Apply(map)], &mut input).unwrap(),
        lines()
    );
}

#[test]
fn busy_loop_hits_the_time_limit() {
    let (mut instance, _, map) = misbehaving_map("loop");
    let err = instance
        .run_chain(&[Stage::Apply(map)], &mut lines())
        .unwrap_err();
    let CallError::Trap { reason, detail, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*reason, TrapReason::Timeout);
    assert_eq!(detail, "call exceeded the 500 ms time limit");
}

/// `fault` blocks the guest inside WASI calls (or loops through them): the
/// call still ends at the limit, the instance is finished, and a fresh one
/// runs the same input.
fn blocked_guest_hits_the_time_limit(fault: &str) -> String {
    let (mut instance, _, map) = misbehaving_map(fault);
    let mut input = lines();
    let err = instance
        .run_chain(&[Stage::Apply(map)], &mut input)
        .unwrap_err();
    let CallError::Trap { reason, detail, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*reason, TrapReason::Timeout, "{err}");
    // The epoch stops Wasm code; the timeout a guest blocked in a host call.
    // Either may come first for a guest that loops through host calls.
    assert!(
        detail.starts_with("call exceeded the 500 ms time limit"),
        "{detail}"
    );
    assert_eq!(input, lines(), "the input is put back for a retry");
    let detail = detail.clone();
    refused_then_run_on_a_fresh_instance(instance, map, input);
    detail
}

#[test]
fn guest_sleeping_in_a_wasi_call_hits_the_time_limit() {
    let detail = blocked_guest_hits_the_time_limit("sleep");
    assert!(detail.ends_with("(blocked in a host call)"), "{detail}");
}

#[test]
fn guest_reading_stdin_forever_hits_the_time_limit() {
    // No stdin is granted: each read ends at once and the guest loops.
    blocked_guest_hits_the_time_limit("stdin");
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let (mut instance, _, map) = misbehaving_map("alloc");
    let err = instance
        .run_chain(&[Stage::Apply(map)], &mut lines())
        .unwrap_err();
    let CallError::Trap { reason, detail, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*reason, TrapReason::MemoryLimit);
    assert!(
        detail.starts_with("instance exceeded the 64 MiB memory limit"),
        "{detail}"
    );
    assert!(instance.memory_bytes() <= MEMORY_LIMIT);
}

#[test]
fn guest_error_leaves_the_instance_usable() {
    let (mut instance, graph, map) = misbehaving_map("error");
    let output = graph
        .nodes
        .iter()
        .find_map(|n| match n.kind {
            NodeKind::ForeachPartition(f) => Some(f),
            _ => None,
        })
        .unwrap();
    for _ in 0..2 {
        let err = instance
            .foreach_partition(output, 1_700_000_000_000, 3, &mut lines())
            .unwrap_err();
        assert!(
            matches!(&err, CallError::Guest(m) if m.contains("deliberate error in batch 1700000000000 partition 3")),
            "{err:?}"
        );
    }
    assert_eq!(
        instance
            .run_chain(&[Stage::Apply(map)], &mut lines())
            .unwrap(),
        lines()
    );
}

#[test]
fn define_error_is_a_guest_error() {
    let mut instance = misbehaving().instantiate("misbehaving").unwrap();
    let err = instance.define(&args(&[("fault", "nope")])).unwrap_err();
    assert!(
        matches!(&err, CallError::Guest(m) if m.contains("argument `fault`: expected panic, loop") && m.contains("got \"nope\"")),
        "{err:?}"
    );
}

#[test]
fn other_contract_version_is_refused_naming_both() {
    let err = runtime().load(Path::new(CONTRACT_0_1)).unwrap_err();
    let WasmError::Version {
        found, expected, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(found, "0.1.0");
    assert_eq!(expected, CONTRACT_VERSION);
    assert!(
        err.to_string()
            .ends_with("was built against sluice:plugin@0.1.0 but this host speaks sluice:plugin@0.4.0; rebuild it against sluice-guest 0.4"),
        "{err}"
    );
}

#[test]
fn memory_limit_below_the_initial_memory_fails_instantiation() {
    let runtime = Runtime::new(WasmConfig {
        memory_limit: 64 << 10,
        ..WasmConfig::default()
    })
    .unwrap();
    // Through the cache of nothing: compiles again, but only this once.
    let plugin = runtime.load(Path::new(NETWORK_WORD_COUNT)).unwrap();
    let err = plugin.instantiate("tiny").unwrap_err();
    assert!(matches!(err, WasmError::Instantiate { .. }), "{err:?}");
    assert!(
        err.to_string().contains("exceeded the 64 KiB memory limit"),
        "{err}"
    );
}

#[test]
fn cache_round_trip_and_a_corrupt_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let config = WasmConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..WasmConfig::default()
    };
    let entries = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect::<Vec<_>>()
    };

    let first = Runtime::new(config.clone())
        .unwrap()
        .load(Path::new(MISBEHAVING))
        .unwrap();
    let written = entries();
    assert_eq!(
        written.len(),
        1,
        "one entry, no temporary file left: {written:?}"
    );
    assert_eq!(written[0].extension().unwrap(), "cwasm");

    // A new engine with the same settings finds the entry, and it runs.
    let second = Runtime::new(config.clone())
        .unwrap()
        .load(Path::new(MISBEHAVING))
        .unwrap();
    assert_eq!(first.digest(), second.digest());
    let mut instance = second.instantiate("cached").unwrap();
    instance
        .define(&args(&[("host", "localhost"), ("port", "9")]))
        .unwrap();

    drop((instance, second));

    // A damaged entry is ignored and replaced. (Replaced by a rename: writing
    // into a file that a live component has mapped would crash the process,
    // which is why the cache itself only ever renames.)
    let damaged = dir.path().join("damaged");
    std::fs::write(&damaged, b"not a compiled component").unwrap();
    std::fs::rename(&damaged, &written[0]).unwrap();
    let third = Runtime::new(config)
        .unwrap()
        .load(Path::new(MISBEHAVING))
        .unwrap();
    assert_eq!(third.digest(), first.digest());
    assert!(std::fs::metadata(&written[0]).unwrap().len() > 1000);
    assert_eq!(entries().len(), 1);
}
