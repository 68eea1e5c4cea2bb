//! [`Instance`]: one sandboxed instance of a plugin and the calls into it.
//!
//! Every call runs under the time limit (an epoch deadline set before the
//! call) and the memory limit (the store's [`Limits`]). Its outcome is
//! sorted into the three [`CallError`]s: the guest's own `err` (the instance
//! lives on), a trap or limit (the instance is finished; the input was put
//! back so the task can run again on a fresh one), or an answer the host
//! cannot use. After every call the guest's complete output lines are logged.
//!
//! Calls block the thread for as long as the guest runs: make them from a
//! worker thread (rayon, `spawn_blocking`), never from a tokio worker, where
//! WASI's blocking stdout would panic.

use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, WasmBacktrace};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings;
use super::convert::{job_graph, lend_rows, restore_rows, rows_from_guest, stage_to_wit};
use super::error::{CallError, TrapReason};
use super::limits::{Limits, format_bytes, format_duration};
use super::output::{Capture, Stream};
use super::plugin::Plugin;
use super::runtime::WasmConfig;
use crate::data::Rows;
use crate::plan::graph::{FunctionId, JobGraph, Stage};

/// Bytes of the guest's stderr returned with a trap.
const STDERR_TAIL: usize = 4096;

/// Most wasm frames listed in a trap's detail.
const BACKTRACE_FRAMES: usize = 8;

/// The data of an instance's store: its WASI context and its limits.
pub(super) struct StoreState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: Limits,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// An instance of a plugin, with its own memory and output. `Send`, used by
/// one thread at a time. Drop it after a [`CallError::Trap`].
pub struct Instance {
    plugin: Plugin,
    store: Store<StoreState>,
    bindings: bindings::Plugin,
    label: String,
    task: String,
    stdout: Capture,
    stderr: Capture,
    trapped: bool,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("plugin", &self.plugin.path())
            .field("label", &self.label)
            .field("task", &self.task)
            .field("trapped", &self.trapped)
            .finish_non_exhaustive()
    }
}

impl Instance {
    pub(super) fn new(
        plugin: Plugin,
        store: Store<StoreState>,
        bindings: bindings::Plugin,
        label: &str,
        stdout: Capture,
        stderr: Capture,
    ) -> Instance {
        let mut instance = Instance {
            plugin,
            store,
            bindings,
            label: label.to_string(),
            task: "instantiate".to_string(),
            stdout,
            stderr,
            trapped: false,
        };
        instance.drain_output(false);
        instance
    }

    /// Names what the instance runs next, for the guest's log lines, e.g.
    /// `"batch 1700000000000 map#3 p2"`.
    pub fn set_task(&mut self, task: &str) {
        self.task.clear();
        self.task.push_str(task);
    }

    /// Calls `define`: the job graph, given the `--arg KEY=VALUE` pairs. Fills
    /// the instance's function table, so call it on every fresh instance
    /// before the other functions.
    pub fn define(&mut self, args: &[(String, String)]) -> Result<JobGraph, CallError> {
        let graph = self.call(|job, store| job.call_define(store, args))?;
        job_graph(graph)
    }

    /// Runs a fused chain of stages over one partition. `input` is left as it
    /// was, whatever the outcome.
    pub fn run_chain(&mut self, stages: &[Stage], input: &mut Rows) -> Result<Rows, CallError> {
        let stages: Vec<bindings::wit::Stage> = stages.iter().map(stage_to_wit).collect();
        let lent = lend_rows(input);
        let result = self.call(|job, store| job.call_run_chain(store, &stages, &lent));
        restore_rows(input, lent);
        rows_from_guest(result?, "run-chain")
    }

    /// Reduces grouped values (`tuple<k, list<v>>` records) with a user
    /// reducer, one `tuple<k, v>` per key. `groups` is left as it was.
    pub fn reduce_groups(
        &mut self,
        reducer: FunctionId,
        groups: &mut Rows,
    ) -> Result<Rows, CallError> {
        let lent = lend_rows(groups);
        let result = self.call(|job, store| job.call_reduce_groups(store, reducer, &lent));
        restore_rows(groups, lent);
        rows_from_guest(result?, "reduce-groups")
    }

    /// Reduces all records to one (none for an empty input). `input` is left
    /// as it was.
    pub fn reduce_all(&mut self, reducer: FunctionId, input: &mut Rows) -> Result<Rows, CallError> {
        let lent = lend_rows(input);
        let result = self.call(|job, store| job.call_reduce_all(store, reducer, &lent));
        restore_rows(input, lent);
        rows_from_guest(result?, "reduce-all")
    }

    /// Calls an output function on one partition of a batch. `input` is left
    /// as it was.
    pub fn foreach_partition(
        &mut self,
        f: FunctionId,
        batch_time_ms: u64,
        partition: u32,
        input: &mut Rows,
    ) -> Result<(), CallError> {
        let lent = lend_rows(input);
        let result = self.call(|job, store| {
            job.call_foreach_partition(store, f, batch_time_ms, partition, &lent)
        });
        restore_rows(input, lent);
        result
    }

    /// Bytes of linear memory the instance holds now. Linear memory never
    /// shrinks, so an instance above a watermark is best replaced.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limits.memory_bytes()
    }

    /// Runs one export under the limits and sorts out its outcome.
    fn call<R>(
        &mut self,
        f: impl FnOnce(
            &bindings::exports::sluice::plugin::job::Guest,
            &mut Store<StoreState>,
        ) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, CallError> {
        if self.trapped {
            return Err(CallError::Trap {
                reason: TrapReason::Trap,
                detail: "this instance trapped in an earlier call and cannot be called again"
                    .to_string(),
                guest_stderr: String::new(),
            });
        }
        self.store.data_mut().limits.reset();
        self.store
            .set_epoch_deadline(self.plugin.runtime().deadline_ticks());
        let outcome = f(self.bindings.sluice_plugin_job(), &mut self.store);
        match outcome {
            Ok(Ok(value)) => {
                self.drain_output(false);
                Ok(value)
            }
            Ok(Err(message)) => {
                self.drain_output(false);
                Err(CallError::Guest(message))
            }
            Err(error) => {
                self.trapped = true;
                let guest_stderr = self.stderr.tail(STDERR_TAIL);
                self.drain_output(true);
                let refused_at = self.store.data().limits.refused_at();
                let (reason, detail) =
                    classify(&error, refused_at, self.plugin.runtime().config());
                Err(CallError::Trap {
                    reason,
                    detail,
                    guest_stderr,
                })
            }
        }
    }

    fn drain_output(&mut self, all: bool) {
        self.stdout
            .drain(Stream::Stdout, all, &self.label, &self.task);
        self.stderr
            .drain(Stream::Stderr, all, &self.label, &self.task);
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.drain_output(true);
    }
}

/// Sorts a failed call (or instantiation): the memory limit when the limiter
/// refused a growth, the time limit on an epoch interrupt, else a trap with
/// its message and where it happened in the guest.
pub(super) fn classify(
    error: &wasmtime::Error,
    memory_refused_at: Option<usize>,
    config: &WasmConfig,
) -> (TrapReason, String) {
    if let Some(asked) = memory_refused_at {
        return (
            TrapReason::MemoryLimit,
            format!(
                "instance exceeded the {} memory limit (it asked for {} of linear memory)",
                format_bytes(config.memory_limit),
                format_bytes(asked)
            ),
        );
    }
    let trap = error.downcast_ref::<Trap>();
    if trap == Some(&Trap::Interrupt) {
        return (
            TrapReason::Timeout,
            format!(
                "call exceeded the {} time limit",
                format_duration(config.call_timeout)
            ),
        );
    }
    let mut detail = match trap {
        Some(trap) => trap.to_string(),
        None => format!("{:#}", error),
    };
    if let Some(backtrace) = error.downcast_ref::<WasmBacktrace>() {
        let frames = backtrace.frames();
        for frame in frames.iter().take(BACKTRACE_FRAMES) {
            let name = frame
                .symbols()
                .first()
                .and_then(|s| s.name())
                .or_else(|| frame.func_name())
                .map(str::to_string)
                .unwrap_or_else(|| format!("<function {}>", frame.func_index()));
            detail.push_str("\n    at ");
            detail.push_str(&name);
            if let Some((file, line)) = frame
                .symbols()
                .first()
                .and_then(|s| Some((s.file()?, s.line()?)))
            {
                detail.push_str(&format!(" ({file}:{line})"));
            }
        }
        if frames.len() > BACKTRACE_FRAMES {
            detail.push_str(&format!(
                "\n    ... {} more frames",
                frames.len() - BACKTRACE_FRAMES
            ));
        }
    }
    (TrapReason::Trap, detail)
}
