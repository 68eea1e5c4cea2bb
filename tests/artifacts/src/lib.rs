//! Paths of the plugins under `plugins/` and `tests/plugins/`, built for
//! `wasm32-wasip2` (release) by this crate's build script, for the host's
//! tests and benchmarks.
//!
//! Each plugin crate `foo-bar` gives a constant `FOO_BAR`, the absolute path
//! of its component, and a line in [`foreach_plugin!`] and [`PLUGINS`]:
//!
//! ```
//! let wasm = std::path::Path::new(sluice_test_artifacts::NETWORK_WORD_COUNT);
//! assert!(wasm.is_file());
//! ```
//!
//! `cargo test` builds them: nothing to do by hand but
//! `rustup target add wasm32-wasip2`.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
