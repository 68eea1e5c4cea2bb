//! End-to-end tests: the real `sluice` binary (`CARGO_BIN_EXE_sluice`) run
//! against real TCP sockets, real directories and the real plugins, which
//! `sluice-test-artifacts` builds for `wasm32-wasip2` during `cargo test`.
//!
//! One test binary with modules, not one per file: linking is the slow part.
//! Every run has a deadline ([`util::RUN_TIMEOUT`]): a stuck job fails its
//! test instead of hanging the suite.

mod all_operators;
mod bad_input;
#[path = "../conformance/mod.rs"]
mod conformance;
mod crash;
mod examples;
mod file_stream;
mod instances;
mod keyed;
mod merges;
mod outputs;
#[cfg(unix)]
mod recovery;
mod sandbox;
mod sdks;
#[cfg(unix)]
mod serve;
#[cfg(unix)]
mod stopping;
mod upgrade;
mod util;
mod wordcount;

/// Every plugin built by `sluice-test-artifacts` is used by a test here (the
/// wasmtime test-programs check): a new plugin must be added to this list,
/// and so to a test.
#[test]
fn every_plugin_is_tested() {
    macro_rules! tested {
        ($name:ident, $path:ident) => {
            assert!(
                [
                    "all_operators",
                    "blacklist_filter",
                    "conformance_js",
                    "conformance_py",
                    "conformance_rust",
                    "contract_0_1",
                    "keyed_ops",
                    "misbehaving",
                    "network_word_count",
                    "network_word_count_js",
                    "network_word_count_py",
                    "stateful_network_word_count_py",
                    "stateful_word_count",
                    "stream_join",
                    "upgrade_lower",
                    "upgrade_text_state",
                    "upgrade_trap",
                    "upgrade_v1",
                    "windowed_word_count"
                ]
                .contains(&stringify!($name)),
                "plugin `{}` ({}) has no end-to-end test: add one in tests/e2e/ and list it here",
                stringify!($name),
                sluice_test_artifacts::$path,
            );
        };
    }
    sluice_test_artifacts::foreach_plugin!(tested);
}
