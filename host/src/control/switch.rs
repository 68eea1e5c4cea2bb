//! The batch loop's hooks of a running job ([`Control`]): checkpoints
//! after batches, the switch to an upgrade's new version between two
//! batches, and the probation during which a failing batch rolls the job
//! back (the steps are described in [`super::job`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::Instant;

use super::JobConfig;
use super::JobError;
use super::checkpointing::Checkpointing;
use super::job::{Pending, Shared, UpgradeError, UpgradeOutcome, VersionEventKind};
use super::version::Version;
use crate::batching::{BatchTime, rows_bytes};
use crate::data::Rows;
use crate::exec::scheduler::{HookError, Hooks, ScheduleError};
use crate::exec::{BatchOutcome, ExecError, Executor, StateStore};
use crate::monitor::{Accumulators, Metrics};
use crate::plan::NodeId;

/// The batch loop's [`Hooks`]: checkpoints, upgrades and their rollback.
pub(super) struct Control<'a> {
    shared: &'a Shared,
    config: &'a JobConfig,
    io: tokio::runtime::Handle,
    commands: mpsc::Receiver<Pending>,
    checkpointing: Option<&'a mut Checkpointing>,
    pending: Option<Pending>,
    probation: Option<Probation>,
    last_run: Option<BatchTime>,
    /// Write a checkpoint after the next batch whatever its time (after a
    /// rollback).
    force_checkpoint: bool,
}

/// A new version's first batches, during which a failure rolls back.
struct Probation {
    /// The version before the switch.
    previous: Version,
    /// What the previous version held at the switch.
    state: StateStore,
    windows: Vec<u8>,
    accumulators: Accumulators,
    /// The raw input of each batch since the switch.
    inputs: Vec<(BatchTime, HashMap<NodeId, Vec<Rows>>)>,
    /// Their bytes: past the job's byte budget, the probation ends.
    input_bytes: u64,
    /// Batches left.
    left: u32,
    /// The upgrade's caller, until the new version ran a batch with records.
    reply: Option<(
        mpsc::Sender<Result<UpgradeOutcome, UpgradeError>>,
        UpgradeOutcome,
    )>,
}

impl Probation {
    fn reply(
        &mut self,
        result: impl FnOnce(UpgradeOutcome) -> Result<UpgradeOutcome, UpgradeError>,
    ) {
        if let Some((reply, outcome)) = self.reply.take() {
            let _ = reply.send(result(outcome));
        }
    }
}

impl<'a> Control<'a> {
    /// Hooks for the job `shared` describes, upgrades arriving on
    /// `commands`, checkpoints through `checkpointing`.
    pub(super) fn new(
        shared: &'a Shared,
        io: tokio::runtime::Handle,
        commands: mpsc::Receiver<Pending>,
        checkpointing: Option<&'a mut Checkpointing>,
    ) -> Control<'a> {
        Control {
            shared,
            config: shared.config(),
            io,
            commands,
            checkpointing,
            pending: None,
            probation: None,
            last_run: None,
            force_checkpoint: false,
        }
    }

    /// The loop ended: callers still waiting hear why. Gives the
    /// checkpoints back, for the last one.
    pub(super) fn end(mut self) -> Option<&'a mut Checkpointing> {
        if let Some(pending) = self.pending.take() {
            let _ = pending.reply.send(Err(UpgradeError::NotRunning {
                state: "stopping".into(),
            }));
            pending.executor.shutdown();
        }
        if let Some(probation) = &mut self.probation {
            probation.reply(Ok);
        }
        self.checkpointing
    }

    /// Switches to the pending version before batch `time`.
    fn switch(&mut self, time: BatchTime, executor: &mut Arc<Executor>, metrics: &Metrics) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let started = Instant::now();
        let old = std::mem::replace(executor, pending.executor);
        let probation = Probation {
            previous: self.shared.current(),
            state: old.state().deep_copy(),
            windows: old.windows_snapshot(),
            accumulators: metrics.accumulator_totals().clone(),
            inputs: Vec::new(),
            input_bytes: 0,
            left: self.config.probation_batches.max(1),
            reply: None,
        };
        executor.take_over(&old, &pending.takeover.handover);
        shut_down_in_background(old);
        let from = probation.previous.digest().to_string();
        let to = pending.version.digest().to_string();
        // Checkpoints from now on name the new version. Until the next one,
        // a restart resumes the old version from the last checkpoint (and
        // replays the log with it), which is as consistent as this.
        if let Some(checkpointing) = &mut self.checkpointing {
            checkpointing.set_version(to.clone(), &pending.version.graph);
        }
        let pause = started.elapsed();
        tracing::info!(
            batch = time.as_millis(),
            pause_ms = pause.as_secs_f64() * 1000.0,
            "upgraded from {} to {}: batch {time} and later run the new version",
            &from[..12],
            pending.version.short()
        );
        self.shared.event(
            &to,
            VersionEventKind::Upgraded,
            format!("from {} at batch {}", &from[..12], time.as_millis()),
        );
        self.shared.run_version(pending.version);
        self.probation = Some(Probation {
            reply: Some((
                pending.reply,
                UpgradeOutcome {
                    from,
                    to,
                    switched_at_ms: time.as_millis(),
                    pause_ms: pause.as_secs_f64() * 1000.0,
                },
            )),
            ..probation
        });
    }

    /// Goes back to the version before the switch after batch `time` failed
    /// with `error`, and runs the batches since the switch again with it.
    fn roll_back(
        &mut self,
        time: BatchTime,
        error: ExecError,
        executor: &mut Arc<Executor>,
        metrics: &mut Metrics,
    ) -> Result<BatchOutcome, ScheduleError> {
        let mut probation = self.probation.take().expect("on probation");
        let failed = self.shared.current();
        let reason = format!("version {} failed: {error}", failed.short());
        tracing::error!(
            "{reason}; rolling back to {} and running the batches since the switch again",
            probation.previous.short()
        );
        let hook = |e: JobError| ScheduleError::Hook(Box::new(e));
        let previous = probation
            .previous
            .executor(self.config, &self.io, Some(&self.shared.log))
            .map_err(hook)?;
        previous.restore_state_from(&probation.state);
        previous
            .restore_windows(&probation.windows)
            .map_err(|e| hook(e.into()))?;
        metrics.restore_accumulators(probation.accumulators.clone());
        shut_down_in_background(std::mem::replace(executor, previous));
        let mut inputs = std::mem::take(&mut probation.inputs);
        let (last, blocks) = inputs.pop().expect("the failed batch's input was kept");
        debug_assert_eq!(last, time);
        for (batch, blocks) in inputs {
            let outcome = executor.run_batch(batch, blocks)?;
            metrics.add_replayed(&outcome.accumulators);
        }
        let outcome = executor.run_batch(time, blocks)?;
        let digest = probation.previous.digest().to_string();
        if let Some(checkpointing) = &mut self.checkpointing {
            checkpointing.set_version(digest.clone(), &probation.previous.graph);
        }
        self.force_checkpoint = true;
        self.shared.error(reason.clone());
        self.shared.event(
            &digest,
            VersionEventKind::RolledBack,
            format!("{reason} (batch {})", time.as_millis()),
        );
        tracing::warn!("rolled back to {}", probation.previous.short());
        probation.reply(|_| Err(UpgradeError::RolledBack { reason }));
        self.shared.run_version(probation.previous);
        Ok(outcome)
    }

    fn update_status(&self, metrics: &Metrics) {
        let summary = metrics.summary();
        let mut status = self.shared.status();
        status.batches = summary.batches;
        status.records = summary.records;
        status.accumulators = summary.accumulators;
        status.last_batches = metrics.recent().cloned().collect();
    }
}

impl Hooks for Control<'_> {
    fn early_chains(&self) -> bool {
        self.pending.is_none() && self.probation.is_none()
    }

    fn before(
        &mut self,
        time: BatchTime,
        executor: &mut Arc<Executor>,
        metrics: &Metrics,
    ) -> Result<(), HookError> {
        while let Ok(pending) = self.commands.try_recv() {
            // A new upgrade ends the probation of the one before: that
            // version is the one to go back to.
            if let Some(mut probation) = self.probation.take() {
                probation.reply(Ok);
            }
            if let Some(previous) = self.pending.replace(pending) {
                let _ = previous.reply.send(Err(UpgradeError::NotRunning {
                    state: "upgrading to another version".into(),
                }));
            }
        }
        if self.pending.is_some() && !executor.has_early_work_from(time) {
            self.switch(time, executor, metrics);
        }
        Ok(())
    }

    fn input(&mut self, time: BatchTime, blocks: &HashMap<NodeId, Vec<Rows>>) {
        if let Some(probation) = &mut self.probation {
            probation.input_bytes += blocks.values().flatten().map(rows_bytes).sum::<u64>();
            probation.inputs.push((time, blocks.clone()));
        }
    }

    fn after(
        &mut self,
        time: BatchTime,
        executor: &Executor,
        metrics: &Metrics,
    ) -> Result<(), HookError> {
        self.last_run = Some(time);
        if let Some(probation) = &mut self.probation {
            if metrics.recent().last().is_some_and(|b| b.records > 0) {
                probation.reply(Ok);
            }
            probation.left -= 1;
            // Keeping more input than the job may hold unprocessed would
            // cost more memory than the budget promises: accept the version.
            if probation.left == 0 || probation.input_bytes > self.config.max_pending_bytes as u64 {
                probation.reply(Ok);
                tracing::info!(
                    "version {} passed its probation; the previous version's copy is dropped",
                    self.shared.current().short()
                );
                self.probation = None;
            }
        }
        if let Some(checkpointing) = &mut self.checkpointing {
            if std::mem::take(&mut self.force_checkpoint) {
                checkpointing.write_now(time, executor, metrics)?;
            } else {
                checkpointing.after_batch(time, executor, metrics)?;
            }
        }
        self.update_status(metrics);
        Ok(())
    }

    fn failed(
        &mut self,
        time: BatchTime,
        error: ExecError,
        executor: &mut Arc<Executor>,
        metrics: &mut Metrics,
    ) -> Result<BatchOutcome, ScheduleError> {
        if self.probation.is_some() {
            return self.roll_back(time, error, executor, metrics);
        }
        self.shared.error(error.to_string());
        Err(error.into())
    }

    fn abort(&self) -> bool {
        self.shared.abort.load(Ordering::SeqCst)
    }
}

/// Stops an executor that runs no batch any more on a thread of its own,
/// so that the batch loop does not wait for its threads to exit.
fn shut_down_in_background(executor: Arc<Executor>) {
    let spawned = std::thread::Builder::new()
        .name("sluice-retire".into())
        .spawn(move || executor.shutdown());
    if let Err(e) = spawned {
        tracing::warn!("cannot stop a replaced executor in the background: {e}");
    }
}
