//! The host's [`Launcher`]: jobs started by the job control
//! ([`JobHandle`]), whose status, upgrade, stop and end are mapped onto the
//! API's types here (the control types stay free of API concerns).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::api::{BatchView, LiveStatus, VersionEventView};
use super::jobs::{Job, Launcher, StartFailure, UpgradeFailure, UpgradeOutcome};
use crate::control::{
    JobConfig, JobError, JobHandle, JobState, JobStatus, UpgradeError, UpgradeRequest,
};
use crate::monitor::logs::JobLog;

/// Starts jobs through the job control.
#[derive(Debug, Clone, Copy, Default)]
pub struct ControlLauncher;

impl Launcher for ControlLauncher {
    fn start(
        &self,
        name: &str,
        config: JobConfig,
        log: Arc<JobLog>,
    ) -> Result<Arc<dyn Job>, StartFailure> {
        match JobHandle::start(name, config, log) {
            Ok(handle) => Ok(Arc::new(Handle {
                handle: RwLock::new(Some(handle)),
                last: Mutex::new(None),
            })),
            Err(JobError::OtherPlugin {
                location,
                found,
                now,
            }) => {
                let message = JobError::OtherPlugin {
                    location,
                    found: found.clone(),
                    now,
                }
                .to_string();
                Err(StartFailure::OtherPlugin { found, message })
            }
            Err(other) => Err(StartFailure::Failed(other.to_string())),
        }
    }
}

/// A [`JobHandle`], shared by the API's calls; taken out by `join` once the
/// job has ended.
struct Handle {
    handle: RwLock<Option<JobHandle>>,
    /// The status when the job ended.
    last: Mutex<Option<LiveStatus>>,
}

/// The API's view of a job's status.
fn live(status: JobStatus) -> LiveStatus {
    let (state, reason) = match status.state {
        JobState::Starting => ("starting", None),
        JobState::Running => ("running", None),
        JobState::Upgrading => ("upgrading", None),
        JobState::Stopping => ("stopping", None),
        JobState::Stopped => ("stopped", None),
        JobState::Failed { reason } => ("failed", Some(reason)),
    };
    LiveStatus {
        state: state.into(),
        reason,
        version: status.version,
        started_ms: status.started_ms,
        batches: status.batches,
        records: status.records,
        last_batches: status.last_batches.iter().map(BatchView::from).collect(),
        errors: status.errors,
        accumulators: status
            .accumulators
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    crate::monitor::AccumulatorValue::Int(n) => serde_json::Value::from(n),
                    crate::monitor::AccumulatorValue::Float(x) => serde_json::Value::from(x),
                };
                (name.to_string(), value)
            })
            .collect(),
        history: status
            .history
            .into_iter()
            .map(|event| VersionEventView {
                at_ms: event.at_ms,
                digest: event.digest,
                // The control's serde names (kebab-case).
                kind: serde_json::to_value(event.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                detail: event.detail,
            })
            .collect(),
    }
}

impl Handle {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<JobHandle>> {
        self.handle.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Job for Handle {
    fn status(&self) -> LiveStatus {
        match &*self.read() {
            Some(handle) => live(handle.status()),
            None => self
                .last
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_default(),
        }
    }

    fn upgrade(
        &self,
        plugin: PathBuf,
        reset_state: Vec<String>,
    ) -> Result<UpgradeOutcome, UpgradeFailure> {
        let guard = self.read();
        let Some(handle) = &*guard else {
            return Err(UpgradeFailure::NotRunning {
                state: "ended".into(),
            });
        };
        match handle.upgrade(UpgradeRequest {
            plugin,
            reset_state,
        }) {
            Ok(outcome) => Ok(UpgradeOutcome {
                from: outcome.from,
                to: outcome.to,
                switched_at_ms: outcome.switched_at_ms,
                pause_ms: outcome.pause_ms,
            }),
            Err(UpgradeError::Refused { reason, diff }) => {
                Err(UpgradeFailure::Refused { reason, diff })
            }
            Err(UpgradeError::RolledBack { reason }) => Err(UpgradeFailure::RolledBack { reason }),
            Err(UpgradeError::NotRunning { state }) => Err(UpgradeFailure::NotRunning { state }),
        }
    }

    fn stop(&self, now: bool) {
        if let Some(handle) = &*self.read() {
            handle.stop(now);
        }
    }

    fn is_finished(&self) -> bool {
        self.read().as_ref().is_none_or(JobHandle::is_finished)
    }

    fn join(&self) -> Option<Result<(), String>> {
        // An upgrade holding the handle returns soon once the job ended:
        // take the handle at a later poll then.
        let mut guard = self.handle.try_write().ok()?;
        if !guard.as_ref()?.is_finished() {
            return None;
        }
        let handle = guard.take()?;
        let status = live(handle.status());
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(status);
        Some(handle.join().map(|_| ()).map_err(|e| e.to_string()))
    }
}
