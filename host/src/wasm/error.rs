//! The errors of `wasm/`: [`WasmError`] when a plugin cannot be loaded or
//! instantiated, [`CallError`] when a call into an instance fails. Both carry
//! plain strings, never wasmtime types, and name the file, version or node
//! the user has to look at.

use std::fmt;
use std::path::PathBuf;

/// A plugin could not be loaded or instantiated.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The wasmtime engine could not be configured or its epoch thread started.
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    /// A sandbox grant cannot be given (a directory that does not exist, a
    /// name that does not resolve).
    #[error("cannot grant {0}")]
    Grant(#[from] crate::wasm::GrantError),
    /// The plugin file could not be read.
    #[error("cannot read plugin {}: {source}", path.display())]
    Read {
        /// The plugin file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a WebAssembly component (random bytes, a core module).
    #[error("plugin {} is not a WebAssembly component: {reason}", path.display())]
    NotAComponent {
        /// The plugin file.
        path: PathBuf,
        /// What it is instead, and what to do.
        reason: String,
    },
    /// The file is a component but does not export `sluice:plugin/job`.
    #[error(
        "plugin {} is a WebAssembly component but not a Sluice plugin: it does not export \
         `sluice:plugin/job@{}` (it exports: {})",
        path.display(),
        crate::wasm::CONTRACT_VERSION,
        list_or_nothing(exports)
    )]
    NotAPlugin {
        /// The plugin file.
        path: PathBuf,
        /// The names the component exports.
        exports: Vec<String>,
    },
    /// The plugin was built against an incompatible version of the contract.
    #[error(
        "plugin {} was built against sluice:plugin@{found} but this host speaks \
         sluice:plugin@{expected}; rebuild it against sluice-guest {}",
        path.display(),
        sdk_series(expected)
    )]
    Version {
        /// The plugin file.
        path: PathBuf,
        /// The `sluice:plugin` version the plugin exports.
        found: String,
        /// The version this host speaks ([`crate::wasm::CONTRACT_VERSION`]).
        expected: String,
    },
    /// Compilation failed (invalid or unsupported WebAssembly).
    #[error("cannot compile plugin {}: {reason}", path.display())]
    Compile {
        /// The plugin file.
        path: PathBuf,
        /// The compiler's message.
        reason: String,
    },
    /// The plugin imports something the sandbox does not provide, or its
    /// `job` interface does not have the shape of the contract.
    #[error("plugin {} cannot be linked: {reason}", path.display())]
    Link {
        /// The plugin file.
        path: PathBuf,
        /// What is missing or mismatched.
        reason: String,
    },
    /// A fresh instance could not be created (its start code trapped or went
    /// over a limit).
    #[error("cannot instantiate plugin {} for job {label}: {reason}", path.display())]
    Instantiate {
        /// The plugin file.
        path: PathBuf,
        /// The label given to [`crate::wasm::Plugin::instantiate`].
        label: String,
        /// What went wrong.
        reason: String,
    },
}

/// A call into an [`Instance`](crate::wasm::Instance) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The guest returned `err(message)`: a user error. The instance is still
    /// usable, and running the same input again gives the same error.
    #[error("{0}")]
    Guest(String),
    /// The guest trapped or hit a limit. The instance must be dropped; the
    /// input was put back, so the call can be retried on a fresh instance.
    #[error("{detail}{}", stderr_suffix(guest_stderr))]
    Trap {
        /// Why the instance stopped.
        reason: TrapReason,
        /// A readable description (the limit, or the trap and where it
        /// happened in the guest).
        detail: String,
        /// The last few KiB the guest wrote to stderr during the call: the
        /// Rust SDK prints its panic message there.
        guest_stderr: String,
    },
    /// The guest answered something the host cannot use (malformed rows, a
    /// graph with a bad node reference).
    #[error("{0}")]
    Host(String),
}

/// Why an instance stopped in the middle of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapReason {
    /// The call ran past [`WasmConfig::call_timeout`](crate::wasm::WasmConfig).
    Timeout,
    /// The instance tried to grow its memory past
    /// [`WasmConfig::memory_limit`](crate::wasm::WasmConfig).
    MemoryLimit,
    /// Any other trap: a panic, `unreachable`, an out-of-bounds access.
    Trap,
}

impl fmt::Display for TrapReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrapReason::Timeout => "time limit",
            TrapReason::MemoryLimit => "memory limit",
            TrapReason::Trap => "trap",
        })
    }
}

fn list_or_nothing(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".to_string()
    } else {
        names.join(", ")
    }
}

/// `0.1.3` → `0.1`, `1.4.0` → `1`: the SDK releases compatible with a contract
/// version.
fn sdk_series(version: &str) -> String {
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some("0"), Some(minor)) => format!("0.{minor}"),
        (Some(major), _) => major.to_string(),
        _ => version.to_string(),
    }
}

fn stderr_suffix(stderr: &str) -> String {
    let stderr = stderr.trim_end();
    if stderr.is_empty() {
        String::new()
    } else {
        format!("\nguest stderr:\n{stderr}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_error_names_both_versions_and_the_sdk_to_use() {
        let e = WasmError::Version {
            path: "foo.wasm".into(),
            found: "0.2.0".into(),
            expected: "0.1.0".into(),
        };
        assert_eq!(
            e.to_string(),
            "plugin foo.wasm was built against sluice:plugin@0.2.0 but this host speaks \
             sluice:plugin@0.1.0; rebuild it against sluice-guest 0.1"
        );
    }

    #[test]
    fn trap_message_carries_the_guest_stderr() {
        let e = CallError::Trap {
            reason: TrapReason::Trap,
            detail: "wasm trap: wasm `unreachable` instruction executed".into(),
            guest_stderr: "panic in map at src/lib.rs:3:7: boom (at src/lib.rs:4:9)\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "wasm trap: wasm `unreachable` instruction executed\nguest stderr:\n\
             panic in map at src/lib.rs:3:7: boom (at src/lib.rs:4:9)"
        );
    }
}
