//! [`Instance`]: one sandboxed instance of a plugin and the calls into it.
//!
//! Every call runs under the time limit — an epoch deadline set before the
//! call for Wasm code, and a timeout around the whole async call for time
//! spent blocked inside WASI imports ([`Runtime::block_on`](super::runtime::Runtime)) —
//! and the memory limit (the store's [`Limits`]). Its outcome is
//! sorted into the three [`CallError`]s: the guest's own `err` (the instance
//! lives on), a trap or limit (the instance is finished; the input was put
//! back so the task can run again on a fresh one), or an answer the host
//! cannot use. After every call the guest's complete output lines are logged.
//!
//! Calls block the thread for as long as the guest runs: make them from a
//! worker thread (rayon, `spawn_blocking`). Made from a task of a
//! multi-threaded tokio runtime they still work (through `block_in_place`,
//! which stalls that worker); from a current-thread runtime they panic.
//! The guest runs on a fiber of the calling thread.

use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, WasmBacktrace};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings;
use super::convert::{job_graph, lend_rows, restore_rows, rows_from_guest, stage_to_wit};
use super::error::{CallError, TrapReason};
use super::host_api::HostState;
use super::limits::{Limits, format_bytes, format_duration};
use super::output::{Capture, Stream};
use super::plugin::Plugin;
use super::runtime::WasmConfig;
use crate::data::Rows;
use crate::monitor::Accumulators;
use crate::plan::graph::{FunctionId, JobGraph, Stage};

/// Bytes of the guest's stderr returned with a trap.
const STDERR_TAIL: usize = 4096;

/// Most wasm frames listed in a trap's detail.
const BACKTRACE_FRAMES: usize = 10;

/// The data of an instance's store: its WASI context and its limits.
pub(super) struct StoreState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: Limits,
    pub(super) host: HostState,
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
        let graph = self.call(async |job, store| job.call_define(store, args).await)?;
        job_graph(graph)
    }

    /// Calls an export that takes `input` and returns rows: `input` is lent
    /// to the call and put back as it was, whatever the outcome; the rows
    /// returned are checked (`export` names it in the message).
    fn call_on_rows(
        &mut self,
        export: &str,
        input: &mut Rows,
        f: impl AsyncFnOnce(
            &bindings::exports::sluice::plugin::job::Guest,
            &mut Store<StoreState>,
            &bindings::wit::Rows,
        ) -> wasmtime::Result<Result<bindings::wit::Rows, String>>,
    ) -> Result<Rows, CallError> {
        let lent = lend_rows(input);
        let result = self.call(async |job, store| f(job, store, &lent).await);
        restore_rows(input, lent);
        rows_from_guest(result?, export)
    }

    /// Runs a fused chain of stages over one partition. `input` is left as it
    /// was, whatever the outcome.
    pub fn run_chain(&mut self, stages: &[Stage], input: &mut Rows) -> Result<Rows, CallError> {
        let stages: Vec<bindings::wit::Stage> = stages.iter().map(stage_to_wit).collect();
        self.call_on_rows("run-chain", input, async |job, store, rows| {
            job.call_run_chain(store, &stages, rows).await
        })
    }

    /// Reduces grouped values (`tuple<k, list<v>>` records) with a user
    /// reducer, one `tuple<k, v>` per key. `groups` is left as it was.
    pub fn reduce_groups(
        &mut self,
        reducer: FunctionId,
        groups: &mut Rows,
    ) -> Result<Rows, CallError> {
        self.call_on_rows("reduce-groups", groups, async |job, store, rows| {
            job.call_reduce_groups(store, reducer, rows).await
        })
    }

    /// Reduces all records to one (none for an empty input). `input` is left
    /// as it was.
    pub fn reduce_all(&mut self, reducer: FunctionId, input: &mut Rows) -> Result<Rows, CallError> {
        self.call_on_rows("reduce-all", input, async |job, store, rows| {
            job.call_reduce_all(store, reducer, rows).await
        })
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
        let result = self.call(async |job, store| {
            job.call_foreach_partition(store, f, batch_time_ms, partition, &lent)
                .await
        });
        restore_rows(input, lent);
        result
    }

    /// Calls `update-state-by-key`'s function over one partition's keys
    /// (`tuple<k, list<tuple<u32, v>>, option<s>>` records, the values as
    /// runs; one `option<s>` back per record). `input` is left as it was.
    pub fn update_state(
        &mut self,
        f: FunctionId,
        batch_time_ms: u64,
        input: &mut Rows,
    ) -> Result<Rows, CallError> {
        self.call_on_rows("update-state", input, async |job, store, rows| {
            job.call_update_state(store, f, batch_time_ms, rows).await
        })
    }

    /// Calls `map-with-state`'s function over one partition's keys
    /// (`tuple<k, option<s>, option<list<tuple<u32, v>>>>` records, the
    /// values as runs; one `tuple<option<s>, list<m>>` back per record).
    /// `input` is left as it was.
    pub fn map_with_state(
        &mut self,
        f: FunctionId,
        batch_time_ms: u64,
        input: &mut Rows,
    ) -> Result<Rows, CallError> {
        self.call_on_rows("map-with-state", input, async |job, store, rows| {
            job.call_map_with_state(store, f, batch_time_ms, rows).await
        })
    }

    /// Calls a `transform` function on a whole batch. `input` is left as it
    /// was.
    pub fn transform(
        &mut self,
        f: FunctionId,
        batch_time_ms: u64,
        input: &mut Rows,
    ) -> Result<Rows, CallError> {
        self.call_on_rows("transform", input, async |job, store, rows| {
            job.call_transform(store, f, batch_time_ms, rows).await
        })
    }

    /// What the last call added to accumulators (empty after a failed call),
    /// taken: a second call returns nothing.
    pub fn take_accumulators(&mut self) -> Accumulators {
        std::mem::take(&mut self.store.data_mut().host.accumulators)
    }

    /// Bytes of linear memory the instance holds now. Linear memory never
    /// shrinks, so an instance above a watermark is best replaced.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limits.memory_bytes()
    }

    /// Runs one export under the limits and sorts out its outcome.
    fn call<R>(
        &mut self,
        f: impl AsyncFnOnce(
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
        self.store.data_mut().host.reset();
        self.store
            .set_epoch_deadline(self.plugin.runtime().deadline_ticks());
        let (job, store) = (self.bindings.sluice_plugin_job(), &mut self.store);
        let Some(outcome) = self.plugin.runtime().block_on(f(job, store)) else {
            // Blocked in a host call past the limit: the call was dropped,
            // and the instance with it.
            self.trapped = true;
            let guest_stderr = self.stderr.tail(STDERR_TAIL);
            self.drain_output(true);
            return Err(CallError::Trap {
                reason: TrapReason::Timeout,
                detail: timeout_detail(self.plugin.runtime().config(), " (blocked in a host call)"),
                guest_stderr,
            });
        };
        match outcome {
            Ok(Ok(value)) => {
                self.drain_output(false);
                match self.store.data_mut().host.mismatch.take() {
                    Some(mismatch) => {
                        self.store.data_mut().host.reset();
                        Err(CallError::Guest(mismatch.to_string()))
                    }
                    None => Ok(value),
                }
            }
            Ok(Err(message)) => {
                self.drain_output(false);
                self.store.data_mut().host.reset();
                Err(CallError::Guest(message))
            }
            Err(error) => {
                self.trapped = true;
                self.store.data_mut().host.reset();
                let guest_stderr = self.stderr.tail(STDERR_TAIL);
                self.drain_output(true);
                let refused_at = self.store.data().limits.refused_at();
                let (reason, detail) = classify(&error, refused_at, self.plugin.runtime().config());
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

/// `call exceeded the 2 s time limit`, then `suffix`.
pub(super) fn timeout_detail(config: &WasmConfig, suffix: &str) -> String {
    format!(
        "call exceeded the {} time limit{suffix}",
        format_duration(config.call_timeout)
    )
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
        return (TrapReason::Timeout, timeout_detail(config, ""));
    }
    let mut detail = match trap {
        Some(trap) => trap.to_string(),
        // A host function failed; the cause is at the root of the chain.
        None if error.downcast_ref::<WasmBacktrace>().is_some() => error.root_cause().to_string(),
        None => format!("{error:#}"),
    };
    if let Some(backtrace) = error.downcast_ref::<WasmBacktrace>() {
        detail.push_str(&summarize_backtrace(&backtrace.to_string()));
    }
    (TrapReason::Trap, detail)
}

/// The frames of a wasm backtrace (as wasmtime displays it, demangled), one
/// per line, without the panic machinery on top, crate hashes, or the
/// module name: `"\n    at misbehaving::f (src/lib.rs:3)"`.
fn summarize_backtrace(display: &str) -> String {
    let mut frames: Vec<String> = Vec::new();
    for line in display.lines() {
        let trimmed = line.trim_start();
        let is_frame = trimmed
            .split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if is_frame {
            let name = trimmed.split_once(" - ").map_or(trimmed, |(_, name)| name);
            // `module.wasm!name` when wasmtime has no debug info for the frame.
            let name = match name.split_once('!') {
                Some((module, rest)) if !module.contains([':', '<', ' ']) => rest,
                _ => name,
            };
            frames.push(without_hashes(name));
        } else if let (Some(location), Some(last)) =
            (trimmed.strip_prefix("at "), frames.last_mut())
            && !last.ends_with(')')
        {
            last.push_str(&format!(" ({location})"));
        }
    }
    // The Rust panic path: `abort`, `std::panicking::*`, `__rustc::*`,
    // `rust_begin_unwind`, `core::panicking::panic_fmt`.
    let runtime = |name: &String| {
        name.contains("panic")
            || name.contains("abort")
            || name.contains("__rust")
            || name.contains("rust_begin_unwind")
    };
    let skipped = frames.iter().take_while(|f| runtime(f)).count();
    let shown = &frames[skipped..];
    let mut out = String::new();
    for frame in shown.iter().take(BACKTRACE_FRAMES) {
        out.push_str("\n    at ");
        out.push_str(frame);
    }
    if shown.len() > BACKTRACE_FRAMES {
        out.push_str(&format!(
            "\n    ... {} more frames",
            shown.len() - BACKTRACE_FRAMES
        ));
    }
    out
}

/// `std[d123b7a1a2ed1472]::process::abort` → `std::process::abort`;
/// `f::h8a8dbd4bd4ba73f1` → `f`.
fn without_hashes(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) if close > 0 && after[..close].bytes().all(|b| b.is_ascii_hexdigit()) => {
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    if let Some((head, hash)) = out.rsplit_once("::h")
        && hash.len() == 16
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
    {
        out.truncate(head.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PANIC_BACKTRACE: &str = "error while executing at wasm backtrace:
    0:  0x14838 - misbehaving.wasm!abort
    1:  0x11c9b - misbehaving.wasm!std[d123b7a1a2ed1472]::sys::pal::wasi::helpers::abort_internal
    2:  0x10ccc - misbehaving.wasm!std[d123b7a1a2ed1472]::process::abort
    3:  0x1129e - misbehaving.wasm!__rustc[b7974e8690430dd9]::__rust_abort
    4:   0xfce5 - misbehaving.wasm!__rustc[b7974e8690430dd9]::__rust_start_panic
    5:  0x110cb - misbehaving.wasm!__rustc[b7974e8690430dd9]::rust_panic
    6:  0x10540 - misbehaving.wasm!std[d123b7a1a2ed1472]::panicking::panic_with_hook
    7:  0x10120 - misbehaving.wasm!std[d123b7a1a2ed1472]::panicking::panic_handler::{closure#0}
    8:  0x100b3 - misbehaving.wasm!std[d123b7a1a2ed1472]::sys::backtrace::__rust_end_short_backtrace::<std[d123b7a1a2ed1472]::panicking::panic_handler::{closure#0}, !>
    9:  0x11381 - misbehaving.wasm!__rustc[b7974e8690430dd9]::rust_begin_unwind
   10:  0x19522 - misbehaving.wasm!core[6d9e98711c484d2e]::panicking::panic_fmt
   11:   0x8802 - misbehaving.wasm!core::ops::function::impls::<impl core::ops::function::FnMut<A> for &F>::call_mut::h8a8dbd4bd4ba73f1
                    at /src/lib.rs:72:29
   12:   0x43a7 - misbehaving.wasm!alloc::vec::in_place_collect::from_iter_in_place::h965341ddbfe627a6
   13:   0x91fd - misbehaving.wasm!sluice:plugin/job@0.1.0#run-chain
note: using the `WASMTIME_BACKTRACE_DETAILS=1` environment variable may show more debugging information";

    #[test]
    fn backtrace_summary_skips_the_panic_machinery() {
        assert_eq!(
            summarize_backtrace(PANIC_BACKTRACE),
            "\n    at core::ops::function::impls::<impl core::ops::function::FnMut<A> for &F>::call_mut (/src/lib.rs:72:29)\
             \n    at alloc::vec::in_place_collect::from_iter_in_place\
             \n    at sluice:plugin/job@0.1.0#run-chain"
        );
    }

    #[test]
    fn hashes_are_removed_from_names() {
        assert_eq!(
            without_hashes("std[d123b7a1a2ed1472]::process::abort"),
            "std::process::abort"
        );
        assert_eq!(without_hashes("f::h8a8dbd4bd4ba73f1"), "f");
        assert_eq!(without_hashes("a[i]::b"), "a[i]::b");
        assert_eq!(without_hashes("<[u8]>::len"), "<[u8]>::len");
    }
}
