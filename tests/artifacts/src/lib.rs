//! Paths of every plugin (Rust, Python and JavaScript, under `plugins/`,
//! `tests/plugins/` and `tests/conformance/plugins/`), built by this crate's
//! build script with `scripts/build-plugins` into `target/plugins/`, for the
//! host's tests and benchmarks.
//!
//! Each plugin folder `foo-bar` gives a constant `FOO_BAR`, the absolute path
//! of its component (`target/plugins/foo-bar.wasm`), and a line in
//! [`foreach_plugin!`] and [`PLUGINS`]:
//!
//! ```
//! let wasm = std::path::Path::new(sluice_test_artifacts::NETWORK_WORD_COUNT);
//! assert!(wasm.is_file());
//! ```
//!
//! `cargo test` builds them: nothing to do by hand but
//! `rustup target add wasm32-wasip2` (the Python and JavaScript SDKs' build
//! tools install their own toolchains from PyPI and npm on first use).

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
