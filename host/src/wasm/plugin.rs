//! [`Plugin`]: a loaded, checked and compiled plugin, ready to be
//! instantiated any number of times (its imports are resolved once, so a
//! fresh instance costs microseconds). Each instance is sandboxed: a WASI
//! context that grants only the job's [`Grants`](super::Grants) (none by
//! default: no directories, environment, network; never arguments or
//! stdin), its stdout and stderr captured, its memory capped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtxBuilder;

use super::bindings::PluginPre;
use super::error::WasmError;
use super::host_api::{Broadcasts, HostState};
use super::instance::{Instance, StoreState, classify, timeout_detail};
use super::limits::Limits;
use super::output::Capture;
use super::runtime::Runtime;

/// A compiled plugin. Cheap to clone; keeps its [`Runtime`] alive.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
    /// What the `broadcast-value` import of its instances returns.
    broadcasts: Broadcasts,
}

struct PluginInner {
    runtime: Runtime,
    path: PathBuf,
    digest: String,
    contract_version: String,
    pre: PluginPre<StoreState>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.inner.path)
            .field("digest", &self.inner.digest)
            .field("contract_version", &self.inner.contract_version)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    pub(super) fn new(
        runtime: Runtime,
        path: PathBuf,
        digest: String,
        contract_version: String,
        pre: PluginPre<StoreState>,
    ) -> Plugin {
        Plugin {
            inner: Arc::new(PluginInner {
                runtime,
                path,
                digest,
                contract_version,
                pre,
            }),
            broadcasts: Broadcasts::default(),
        }
    }

    /// This plugin, with instances that read `broadcasts` (the job's
    /// broadcast values, loaded after `define`).
    pub fn with_broadcasts(&self, broadcasts: Broadcasts) -> Plugin {
        Plugin {
            inner: Arc::clone(&self.inner),
            broadcasts,
        }
    }

    /// SHA-256 of the plugin file, in hex: identifies the code a checkpoint
    /// was made with.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// The `sluice:plugin` version the plugin was built against (e.g.
    /// `"0.2.0"`), compatible with [`crate::wasm::CONTRACT_VERSION`].
    pub fn contract_version(&self) -> &str {
        &self.inner.contract_version
    }

    /// The file the plugin was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A fresh, sandboxed instance. `label` (e.g. the job name) prefixes the
    /// guest's log lines.
    pub fn instantiate(&self, label: &str) -> Result<Instance, WasmError> {
        let runtime = &self.inner.runtime;
        let stdout = Capture::default();
        let stderr = Capture::default();
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        // Nothing else unless granted: no stdin, arguments, directories,
        // environment or sockets.
        if let Err(reason) = runtime.sandbox().apply(&mut wasi, label) {
            return Err(WasmError::Instantiate {
                path: self.inner.path.clone(),
                label: label.to_string(),
                reason,
            });
        }
        let wasi = wasi.build();
        let mut store = Store::new(
            runtime.engine(),
            StoreState {
                wasi,
                table: ResourceTable::new(),
                limits: Limits::new(runtime.config().memory_limit),
                host: HostState {
                    broadcasts: Arc::clone(&self.broadcasts),
                    ..HostState::default()
                },
            },
        );
        store.limiter(|state| &mut state.limits);
        // Start code (static constructors) runs under the same time limit.
        store.set_epoch_deadline(runtime.deadline_ticks());
        let instantiated = runtime.block_on(self.inner.pre.instantiate_async(&mut store));
        match instantiated {
            Some(Ok(bindings)) => Ok(Instance::new(
                self.clone(),
                store,
                bindings,
                label,
                stdout,
                stderr,
            )),
            failed => {
                let detail = match failed {
                    Some(Err(e)) => {
                        classify(&e, store.data().limits.refused_at(), runtime.config()).1
                    }
                    _ => timeout_detail(runtime.config(), " (blocked in a host call)"),
                };
                let guest_stderr = stderr.tail(4096);
                Err(WasmError::Instantiate {
                    path: self.inner.path.clone(),
                    label: label.to_string(),
                    reason: if guest_stderr.trim().is_empty() {
                        detail
                    } else {
                        format!("{detail}\nguest stderr:\n{}", guest_stderr.trim_end())
                    },
                })
            }
        }
    }

    pub(super) fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }
}
