//! [`Runtime`]: the process's one wasmtime engine, the small tokio runtime
//! that drives it (the epoch that interrupts running Wasm code, and the
//! timers and I/O of WASI calls), the WASI linker shared by every plugin, and
//! [`Runtime::load`], which turns a `.wasm` file into a checked, compiled
//! [`Plugin`].
//!
//! Every guest call is async (`call_async` on a fiber), driven to completion
//! on the calling thread by [`Runtime::block_on`] under a timeout, so the
//! per-call time limit holds in both places a guest can spend its time:
//! running Wasm code (the epoch deadline traps it) and blocked inside a WASI
//! import such as a `poll` on a clock (the timeout drops the call, and with
//! it the instance).
//!
//! Loading refuses, with a message that says what to do: a file that is not a
//! component (a core module is told to build for `wasm32-wasip2`), a component
//! that does not export `sluice:plugin/job`, one built against an
//! incompatible contract version, and one whose imports or exports do not fit
//! (anything but WASI p2 imported, a `job` of the wrong shape).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::PluginPre;
use super::cache;
use super::contract::{self, ContractError};
use super::error::WasmError;
use super::grants::{Grants, Sandbox};
use super::instance::StoreState;
use super::plugin::Plugin;

/// Limits and cache of a [`Runtime`].
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// Most bytes of linear memory an instance may have (default 1 GiB). A
    /// guest that asks for more traps with [`TrapReason::MemoryLimit`](super::TrapReason).
    pub memory_limit: usize,
    /// Longest a single call may run (default 60 s). A call that runs longer
    /// traps with [`TrapReason::Timeout`](super::TrapReason).
    pub call_timeout: Duration,
    /// Where compiled components are kept between runs; compile in memory
    /// every time when `None`.
    pub cache_dir: Option<PathBuf>,
    /// What the sandbox of every instance grants (default: nothing).
    /// Checked by [`Runtime::new`].
    pub grants: Grants,
}

impl Default for WasmConfig {
    fn default() -> Self {
        WasmConfig {
            memory_limit: 1 << 30,
            call_timeout: Duration::from_secs(60),
            cache_dir: None,
            grants: Grants::default(),
        }
    }
}

/// Period of the epoch ticker: the resolution of the call time limit.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process's WebAssembly engine. Cheap to clone; its driver thread stops
/// when the last clone, and the last [`Plugin`] loaded with it, is dropped.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<StoreState>,
    config: WasmConfig,
    /// [`WasmConfig::grants`], checked against the host.
    sandbox: Sandbox,
    /// Epoch ticks a call may run: the time limit in [`EPOCH_TICK`]s.
    deadline_ticks: u64,
    driver: Driver,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// The engine (component model, epoch interruption) and its driver
    /// thread. Checks the grants first: a granted directory that does not
    /// exist, or a granted host name that does not resolve, is an error
    /// naming the flag and the grant. Resolving names blocks: call it off
    /// the async runtime.
    pub fn new(config: WasmConfig) -> Result<Runtime, WasmError> {
        Self::with_engine_settings(config, |_| {})
    }

    /// [`new`](Self::new), with `settings` changing wasmtime's `Config`
    /// after Sluice's own: for measuring other engine settings against
    /// Sluice's (`bench/wasm-ceiling --engine`), never for running jobs (a
    /// setting can take away the time limit).
    #[doc(hidden)]
    pub fn with_engine_settings(
        config: WasmConfig,
        settings: impl FnOnce(&mut Config),
    ) -> Result<Runtime, WasmError> {
        let sandbox = config.grants.resolve()?;
        let mut wasmtime_config = Config::new();
        wasmtime_config
            .wasm_component_model(true)
            .epoch_interruption(true);
        // `perf` names guest functions from /tmp/perf-<pid>.map.
        if std::env::var_os("SLUICE_PERF_MAP").is_some() {
            wasmtime_config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        settings(&mut wasmtime_config);
        let engine =
            Engine::new(&wasmtime_config).map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| WasmError::Engine(format!("cannot link WASI: {e:#}")))?;
        super::bindings::sluice::plugin::host::add_to_linker::<_, HasSelf<StoreState>>(
            &mut linker,
            |state| state,
        )
        .map_err(|e| WasmError::Engine(format!("cannot link the host interface: {e:#}")))?;
        let driver = Driver::start(engine.clone()).map_err(|e| {
            WasmError::Engine(format!("cannot start the engine's driver thread: {e}"))
        })?;
        // Round up, plus one: the deadline counts from the tick in progress.
        let deadline_ticks = config
            .call_timeout
            .as_nanos()
            .div_ceil(EPOCH_TICK.as_nanos());
        let deadline_ticks = u64::try_from(deadline_ticks).unwrap_or(u64::MAX / 2) + 1;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                config,
                sandbox,
                deadline_ticks,
                driver,
            }),
        })
    }

    /// Reads, checks and compiles the plugin at `path` (through the cache
    /// when [`WasmConfig::cache_dir`] is set). Compiling a large component
    /// takes seconds and blocks: call it off the async runtime (e.g.
    /// `spawn_blocking`), which also keeps an upgrade off the hot path.
    pub fn load(&self, path: &Path) -> Result<Plugin, WasmError> {
        let bytes = std::fs::read(path).map_err(|source| WasmError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if let Err(reason) = check_header(&bytes) {
            return Err(WasmError::NotAComponent {
                path: path.to_path_buf(),
                reason,
            });
        }
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let engine = &self.inner.engine;
        let component = cache::compile(
            engine,
            &bytes,
            &digest,
            self.inner.config.cache_dir.as_deref(),
            path,
        )
        .map_err(|e| WasmError::Compile {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        })?;

        let ty = component.component_type();
        let version = contract::check_exports(ty.exports(engine).map(|(name, _)| name)).map_err(
            |e| match e {
                ContractError::Missing { exports } => WasmError::NotAPlugin {
                    path: path.to_path_buf(),
                    exports,
                },
                ContractError::Version { found } => WasmError::Version {
                    path: path.to_path_buf(),
                    found,
                    expected: contract::CONTRACT_VERSION.to_string(),
                },
            },
        )?;

        let instance_pre = self.inner.linker.instantiate_pre(&component).map_err(|e| {
            WasmError::Link {
                path: path.to_path_buf(),
                reason: format!(
                    "it imports something the sandbox does not provide (only WASI 0.2 is): {e:#}"
                ),
            }
        })?;
        let pre = PluginPre::new(instance_pre).map_err(|e| WasmError::Link {
            path: path.to_path_buf(),
            reason: format!(
                "its `{}@{version}` export does not match the contract sluice:plugin@{}: {e:#}",
                contract::JOB_INTERFACE,
                contract::CONTRACT_VERSION
            ),
        })?;
        tracing::debug!(plugin = %path.display(), contract = %version, "loaded plugin");
        Ok(Plugin::new(
            self.clone(),
            path.to_path_buf(),
            hex::encode(digest),
            version,
            pre,
        ))
    }

    pub(super) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(super) fn config(&self) -> &WasmConfig {
        &self.inner.config
    }

    pub(super) fn sandbox(&self) -> &Sandbox {
        &self.inner.sandbox
    }

    pub(super) fn deadline_ticks(&self) -> u64 {
        self.inner.deadline_ticks
    }

    /// Runs a guest call (or an instantiation) to completion on this thread,
    /// or until the call time limit has passed; `None` then, and `future`
    /// is dropped, which unwinds the guest out of whatever it was blocked in.
    ///
    /// Wasm code that runs past the limit is stopped by its epoch deadline
    /// (a trap that says where it was); the timeout, a little later, is for
    /// a guest blocked in a host call, which the epoch cannot interrupt.
    ///
    /// It blocks the thread: call it from a worker thread (rayon,
    /// `spawn_blocking`). From a task of a multi-threaded tokio runtime it
    /// still works, through `block_in_place` (which stalls that worker);
    /// from a current-thread runtime it panics.
    pub(super) fn block_on<F: Future>(&self, future: F) -> Option<F::Output> {
        let limit = self
            .inner
            .config
            .call_timeout
            .saturating_add(2 * EPOCH_TICK);
        let handle = self.inner.driver.handle();
        let timed = async move { tokio::time::timeout(limit, future).await.ok() };
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::task::block_in_place(|| handle.block_on(timed))
        } else {
            handle.block_on(timed)
        }
    }
}

/// Says what a file is when it is not a component, from its header: the
/// magic `\0asm`, then a version and layer (`01 00 00 00` for a core module,
/// `0d 00 01 00` for a component).
pub(super) fn check_header(bytes: &[u8]) -> Result<(), String> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(
            "it is not a WebAssembly file (it does not start with the `\\0asm` magic bytes)"
                .to_string(),
        );
    }
    let layer = u16::from_le_bytes([bytes[6], bytes[7]]);
    match (bytes[4..8] == CORE_MODULE, layer) {
        (true, _) => Err(
            "it is a core WebAssembly module, not a component; build with --target wasm32-wasip2"
                .to_string(),
        ),
        (false, 1) => Ok(()),
        (false, _) => Err(format!(
            "it is a WebAssembly binary of unknown kind (header version {:#06x}, layer {layer})",
            u16::from_le_bytes([bytes[4], bytes[5]])
        )),
    }
}

/// The thread behind every guest call: a one-worker tokio runtime whose
/// worker advances the engine's epoch every [`EPOCH_TICK`] and runs the
/// timers and I/O drivers that WASI's host calls wait on. The calls
/// themselves run on the threads that make them ([`Runtime::block_on`]).
/// The thread stops when this value is dropped.
struct Driver {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Driver {
    fn start(engine: Engine) -> std::io::Result<Driver> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sluice-wasm")
            .enable_all()
            .build()?;
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(EPOCH_TICK);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                engine.increment_epoch();
            }
        });
        Ok(Driver {
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("present until dropped")
            .handle()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Blocking here panics when the last `Runtime` goes away inside
            // an async context: let the thread end on its own.
            runtime.shutdown_background();
        } else {
            // Joins the thread (its one task, the ticker, stops at once).
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_bytes(bytes: &[u8]) -> Result<Plugin, WasmError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("foo.wasm");
        std::fs::write(&path, bytes).unwrap();
        Runtime::new(WasmConfig::default()).unwrap().load(&path)
    }

    #[test]
    fn random_bytes_are_not_a_component() {
        let err = load_bytes(b"this is not wasm at all").unwrap_err();
        assert!(matches!(err, WasmError::NotAComponent { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("foo.wasm is not a WebAssembly component"),
            "{msg}"
        );
        assert!(msg.contains("not a WebAssembly file"), "{msg}");
    }

    #[test]
    fn core_module_is_told_to_build_for_wasip2() {
        // `(module)`: the magic and version 1, nothing else.
        let err = load_bytes(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(matches!(err, WasmError::NotAComponent { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("is a core WebAssembly module, not a component"),
            "{msg}"
        );
        assert!(msg.contains("--target wasm32-wasip2"), "{msg}");
    }

    #[test]
    fn empty_component_is_not_a_plugin() {
        // `(component)`: the magic, version 0x0d, layer 1.
        let err = load_bytes(b"\0asm\x0d\0\x01\0").unwrap_err();
        let WasmError::NotAPlugin { exports, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(exports.is_empty());
        let msg = err.to_string();
        assert!(msg.contains("not a Sluice plugin"), "{msg}");
        assert!(msg.contains("sluice:plugin/job@0.4.0"), "{msg}");
        assert!(msg.contains("it exports: nothing"), "{msg}");
    }

    #[test]
    fn truncated_component_does_not_compile() {
        let err = load_bytes(b"\0asm\x0d\0\x01\0\x07\xff").unwrap_err();
        assert!(matches!(err, WasmError::Compile { .. }), "{err:?}");
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let runtime = Runtime::new(WasmConfig::default()).unwrap();
        let err = runtime
            .load(Path::new("/nonexistent/foo.wasm"))
            .unwrap_err();
        assert!(matches!(err, WasmError::Read { .. }), "{err:?}");
    }

    #[test]
    fn driver_stops_with_the_last_clone() {
        let runtime = Runtime::new(WasmConfig::default()).unwrap();
        let clone = runtime.clone();
        let handle = runtime.inner.driver.handle().clone();
        let runs = |handle: &tokio::runtime::Handle| {
            futures::executor::block_on(handle.spawn(async { 7 })).ok()
        };
        assert_eq!(runs(&handle), Some(7));
        drop(runtime);
        assert_eq!(runs(&handle), Some(7), "a clone keeps the driver running");
        drop(clone);
        assert_eq!(runs(&handle), None, "the driver is shut down");
    }
}
