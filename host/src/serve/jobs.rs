//! The jobs a host runs, and their supervisor: deploy, upgrade, rollback
//! and stop each go through here, which keeps the registry (the data
//! directory's records) in step with the running jobs.
//!
//! A job runs on its own threads ([`Job`], the job control's handle); this
//! module only starts, asks and stops them. A supervisor thread polls every
//! job and reaps the ones that ended: one that ended with an error is marked
//! failed, with its reason, in its record and its status, and the others go
//! on. Every call here that waits for a job (start, upgrade, the end of a
//! stop) blocks: the HTTP handlers call it through `spawn_blocking`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::api::{DeployRequest, JobStatus, JobSummary, LiveStatus, UpgradeDone};
use super::registry::{JobRecord, Registry, RegistryError, validate_name};
use crate::control::JobConfig;
use crate::monitor::logs::{DEFAULT_CAPACITY, JobLog};

/// How often the supervisor looks for jobs that ended.
const POLL: Duration = Duration::from_millis(100);

/// A running job, as the host sees it: the job control's handle
/// (`control::JobHandle`, see `super::handle`), or a fake in tests.
pub trait Job: Send + Sync {
    /// What it reports now.
    fn status(&self) -> LiveStatus;
    /// Replaces its component by `plugin` (digest `digest`); blocks until
    /// the new version runs, or it was refused or rolled back.
    fn upgrade(
        &self,
        plugin: PathBuf,
        reset_state: Vec<String>,
    ) -> Result<UpgradeOutcome, UpgradeFailure>;
    /// Asks it to stop (gracefully, or `now`); returns at once.
    fn stop(&self, now: bool);
    /// Whether its threads have ended.
    fn is_finished(&self) -> bool;
    /// Once it has finished: how it ended (`Err` with the reason it
    /// failed). `None` while it runs, or once the end was taken.
    fn join(&self) -> Option<Result<(), String>>;
}

/// What a successful upgrade reports.
#[derive(Debug, Clone)]
pub struct UpgradeOutcome {
    /// The version it ran.
    pub from: String,
    /// The version it runs now.
    pub to: String,
    /// The first batch time of the new version.
    pub switched_at_ms: u64,
    /// The extra delay of that batch, ms.
    pub pause_ms: f64,
}

/// Why an upgrade did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpgradeFailure {
    /// Incompatible, or the new component could not be loaded.
    #[error("{reason}")]
    Refused {
        /// Why.
        reason: String,
        /// A readable diff of the two graphs.
        diff: String,
    },
    /// The new version failed and the job went back to the previous one.
    #[error("{reason}")]
    RolledBack {
        /// Why.
        reason: String,
    },
    /// The job does not run.
    #[error("the job is {state}, not running")]
    NotRunning {
        /// Its state.
        state: String,
    },
}

/// Why a job did not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartFailure {
    /// Its checkpoint location holds the checkpoints of another component.
    #[error("{message}")]
    OtherPlugin {
        /// The digest the checkpoints were made by.
        found: String,
        /// The whole message.
        message: String,
    },
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

/// Starts jobs: the job control (`control::JobHandle::start`), or a fake in
/// tests.
pub trait Launcher: Send + Sync {
    /// Builds and starts a job; returns once it runs.
    fn start(
        &self,
        name: &str,
        config: JobConfig,
        log: Arc<JobLog>,
    ) -> Result<Arc<dyn Job>, StartFailure>;
}

/// Why an API call failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such job or component (404).
    #[error("{0}")]
    NotFound(String),
    /// The name is taken, the job does not run, or an upgrade is under way
    /// (409).
    #[error("{0}")]
    Conflict(String),
    /// An incompatible upgrade (409), with the diff.
    #[error("{reason}")]
    Refused {
        /// Why.
        reason: String,
        /// The diff of the graphs.
        diff: String,
    },
    /// The new version failed and was rolled back (422).
    #[error("{0}")]
    RolledBack(String),
    /// The job failed to start (422).
    #[error("{0}")]
    Failed(String),
    /// The data directory could not be written (500).
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// One job of the host.
struct Entry {
    record: JobRecord,
    job: Option<Arc<dyn Job>>,
    log: Arc<JobLog>,
    /// What the job reported last (kept once it ended).
    last: Option<LiveStatus>,
    /// Set while a deploy, upgrade, rollback or stop of it is under way.
    busy: bool,
}

impl Entry {
    fn status(&mut self, registry: &Registry) -> JobStatus {
        let (state, reason) = match &self.job {
            Some(job) => {
                let live = job.status();
                let state = (live.state.clone(), live.reason.clone());
                self.last = Some(live);
                state
            }
            None if self.busy && self.last.is_none() => ("starting".into(), None),
            None => match &self.record.failed {
                Some(reason) => ("failed".into(), Some(reason.clone())),
                None => ("stopped".into(), None),
            },
        };
        let live = self.last.clone().map(|mut live| {
            if self.job.is_none() {
                live.state.clone_from(&state);
                live.reason.clone_from(&reason);
            }
            live
        });
        JobStatus::new(
            &self.record,
            registry.job_dir(&self.record.name).join("checkpoint"),
            state,
            reason,
            live,
        )
    }
}

/// Every job of the host, and their records.
pub struct Jobs {
    registry: Registry,
    launcher: Arc<dyn Launcher>,
    entries: Mutex<BTreeMap<String, Entry>>,
    shutting_down: AtomicBool,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Jobs {
    /// The jobs of `registry` (none running yet: see [`Jobs::resume`]).
    pub fn new(registry: Registry, launcher: Arc<dyn Launcher>) -> Arc<Jobs> {
        Arc::new(Jobs {
            registry,
            launcher,
            entries: Mutex::new(BTreeMap::new()),
            shutting_down: AtomicBool::new(false),
        })
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes a line into a job's log and the host's log.
    fn note(&self, log: &JobLog, name: &str, message: &str) {
        tracing::info!(job = name, "{message}");
        log.push(format!(
            "{}  INFO {message}",
            humantime::format_rfc3339_millis(std::time::SystemTime::now())
        ));
    }

    /// Loads every recorded job and starts, in parallel, those whose record
    /// says they should run, each with the version its latest checkpoint was
    /// made by. A job that does not start is marked failed; the others go on.
    pub fn resume(self: &Arc<Self>) -> Result<(), RegistryError> {
        let mut to_start = Vec::new();
        for record in self.registry.load_jobs()? {
            let record = match record {
                Ok(record) => record,
                Err(e) => {
                    tracing::error!("skipping a job: {e}");
                    continue;
                }
            };
            let name = record.name.clone();
            if record.should_run {
                to_start.push(name.clone());
            }
            self.entries().insert(
                name,
                Entry {
                    busy: record.should_run,
                    record,
                    job: None,
                    log: JobLog::new(DEFAULT_CAPACITY),
                    last: None,
                },
            );
        }
        std::thread::scope(|scope| {
            for name in &to_start {
                scope.spawn(move || self.resume_one(name));
            }
        });
        Ok(())
    }

    fn resume_one(&self, name: &str) {
        // A failure is in the record, the status and the log.
        let _ = self.launch(name, "resuming");
    }

    /// Starts the recorded job `name` (marked busy by the caller) with its
    /// current version — or with the known version its latest checkpoint
    /// was made by — and records the outcome: running, or failed with the
    /// reason (which is returned).
    fn launch(&self, name: &str, what: &str) -> Result<(), String> {
        let (mut record, log) = {
            let entries = self.entries();
            let entry = entries
                .get(name)
                .ok_or_else(|| format!("no job named `{name}`"))?;
            (entry.record.clone(), Arc::clone(&entry.log))
        };
        self.note(
            &log,
            name,
            &format!("{what} with version {}", short(&record.current)),
        );
        let mut result = self.start(&record, &record.current, &log);
        if let Err(StartFailure::OtherPlugin { found, .. }) = &result
            && record.versions.iter().any(|v| &v.digest == found)
        {
            // The latest checkpoint was made by another known version (the
            // host was killed between an upgrade and its record): that one.
            let found = found.clone();
            self.note(
                &log,
                name,
                &format!(
                    "its latest checkpoint was made by version {}: starting that one",
                    short(&found)
                ),
            );
            result = self.start(&record, &found, &log);
            if result.is_ok() {
                record.switch_to(&found, now_ms());
            }
        }
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(name) else {
            return Err(format!("job `{name}` vanished"));
        };
        entry.busy = false;
        let outcome = match result {
            Ok(job) => {
                if let Some(v) = record
                    .versions
                    .iter_mut()
                    .find(|v| v.digest == record.current)
                {
                    v.last_ran_ms = now_ms();
                }
                record.failed = None;
                record.should_run = true;
                entry.job = Some(job);
                entry.last = None;
                Ok(())
            }
            Err(e) => {
                let reason = format!("cannot start: {e}");
                tracing::error!(job = name, "{reason}");
                log.push(format!(
                    "{} ERROR {reason}",
                    humantime::format_rfc3339_millis(std::time::SystemTime::now())
                ));
                record.failed = Some(reason.clone());
                record.should_run = false;
                Err(reason)
            }
        };
        entry.record = record;
        if let Err(e) = self.registry.save_job(&entry.record) {
            tracing::error!(job = name, "{e}");
        }
        outcome
    }

    /// Starts a stopped or failed job again, from its checkpoint, with its
    /// current version; returns once it runs.
    pub fn start_again(&self, name: &str) -> Result<JobStatus, JobsError> {
        {
            let mut entries = self.entries();
            self.refuse_when_shutting_down("starts")?;
            let entry = entries.get_mut(name).ok_or_else(|| not_found(name))?;
            if entry.busy || entry.job.is_some() {
                let state = entry.status(&self.registry).state;
                return Err(JobsError::Conflict(format!(
                    "job `{name}` is {state}: only a stopped or failed job can be started"
                )));
            }
            entry.busy = true;
        }
        self.launch(name, "starting")
            .map_err(|reason| JobsError::Failed(format!("job `{name}`: {reason}")))?;
        self.status(name)
    }

    /// Forgets a stopped or failed job: its record, and its checkpoints if
    /// they are in the default location (`<data-dir>/jobs/<name>/`).
    pub fn remove(&self, name: &str) -> Result<(), JobsError> {
        let mut entries = self.entries();
        let entry = entries.get_mut(name).ok_or_else(|| not_found(name))?;
        if entry.busy || entry.job.is_some() {
            let state = entry.status(&self.registry).state;
            return Err(JobsError::Conflict(format!(
                "job `{name}` is {state}: stop it first"
            )));
        }
        entries.remove(name);
        drop(entries);
        tracing::info!(job = name, "removed");
        Ok(self.registry.remove_job(name)?)
    }

    /// Starts `record`'s job with version `digest`.
    fn start(
        &self,
        record: &JobRecord,
        digest: &str,
        log: &Arc<JobLog>,
    ) -> Result<Arc<dyn Job>, StartFailure> {
        let plugin = self.registry.plugin(digest).ok_or_else(|| {
            StartFailure::Failed(format!(
                "component {digest} is not in {}",
                self.registry.root().join("plugins").display()
            ))
        })?;
        let config = record
            .spec
            .config(
                &plugin,
                &self.registry.job_dir(&record.name),
                self.registry.root(),
            )
            .map_err(StartFailure::Failed)?;
        self.launcher.start(&record.name, config, Arc::clone(log))
    }

    /// Deploys a new job and starts it; returns once it runs.
    pub fn deploy(&self, request: DeployRequest) -> Result<JobStatus, JobsError> {
        self.refuse_when_shutting_down("deploys")?;
        validate_name(&request.name).map_err(JobsError::BadRequest)?;
        if self.registry.plugin(&request.digest).is_none() {
            return Err(JobsError::NotFound(format!(
                "no component {} was uploaded (PUT /v1/plugins first)",
                request.digest
            )));
        }
        let name = request.name.clone();
        let now = now_ms();
        let record = JobRecord {
            name: name.clone(),
            spec: request.spec,
            current: request.digest.clone(),
            versions: Vec::new(),
            should_run: true,
            failed: None,
            deployed_ms: now,
        };
        // Refuse a bad spec before taking the name.
        record
            .spec
            .config(
                std::path::Path::new("plugin.wasm"),
                &self.registry.job_dir(&name),
                self.registry.root(),
            )
            .map_err(JobsError::BadRequest)?;
        let log = JobLog::new(DEFAULT_CAPACITY);
        {
            let mut entries = self.entries();
            // Checked again under the lock that `shutdown` reads `busy` under.
            self.refuse_when_shutting_down("deploys")?;
            if let Some(existing) = entries.get_mut(&name) {
                let state = existing.status(&self.registry).state;
                return Err(JobsError::Conflict(format!(
                    "a job named `{name}` exists ({state})"
                )));
            }
            if self.registry.job_dir(&name).exists() {
                return Err(JobsError::Conflict(format!(
                    "{} exists: the name `{name}` is taken",
                    self.registry.job_dir(&name).display()
                )));
            }
            entries.insert(
                name.clone(),
                Entry {
                    record: record.clone(),
                    job: None,
                    log: Arc::clone(&log),
                    last: None,
                    busy: true,
                },
            );
        }
        self.note(
            &log,
            &name,
            &format!("deploying version {}", short(&request.digest)),
        );
        let started = self.start(&record, &request.digest, &log);
        let mut entries = self.entries();
        match started {
            Ok(job) => {
                let Some(entry) = entries.get_mut(&name) else {
                    return Err(JobsError::Failed(format!("job `{name}` vanished")));
                };
                entry.record.switch_to(&request.digest, now_ms());
                entry.job = Some(job);
                entry.busy = false;
                let saved = self.registry.save_job(&entry.record);
                let status = entry.status(&self.registry);
                saved?;
                Ok(status)
            }
            Err(e) => {
                entries.remove(&name);
                drop(entries);
                self.registry.remove_job(&name)?;
                Err(JobsError::Failed(format!(
                    "job `{name}` did not start: {e}"
                )))
            }
        }
    }

    /// Every job's summary line, by name.
    pub fn list(&self) -> Vec<JobSummary> {
        self.entries()
            .values_mut()
            .map(|entry| entry.status(&self.registry).summary())
            .collect()
    }

    /// A job's status.
    pub fn status(&self, name: &str) -> Result<JobStatus, JobsError> {
        let mut entries = self.entries();
        let entry = entries.get_mut(name).ok_or_else(|| not_found(name))?;
        Ok(entry.status(&self.registry))
    }

    /// A job's log.
    pub fn log(&self, name: &str) -> Result<Arc<JobLog>, JobsError> {
        let entries = self.entries();
        let entry = entries.get(name).ok_or_else(|| not_found(name))?;
        Ok(Arc::clone(&entry.log))
    }

    /// Whether a job has ended (it no longer runs, and is not starting).
    pub fn has_ended(&self, name: &str) -> bool {
        let entries = self.entries();
        entries
            .get(name)
            .is_none_or(|entry| entry.job.is_none() && !entry.busy)
    }

    /// Takes a job for an upgrade, rollback or stop: its handle and log.
    fn take_busy(&self, name: &str) -> Result<(Arc<dyn Job>, Arc<JobLog>), JobsError> {
        let mut entries = self.entries();
        let entry = entries.get_mut(name).ok_or_else(|| not_found(name))?;
        if entry.busy {
            return Err(JobsError::Conflict(format!(
                "job `{name}` is busy: a deploy, upgrade, rollback or stop of it is under way"
            )));
        }
        let Some(job) = entry.job.clone() else {
            let state = entry.status(&self.registry).state;
            return Err(JobsError::Conflict(format!(
                "job `{name}` is {state}, not running"
            )));
        };
        entry.busy = true;
        Ok((job, Arc::clone(&entry.log)))
    }

    fn release(&self, name: &str) {
        if let Some(entry) = self.entries().get_mut(name) {
            entry.busy = false;
        }
    }

    /// Upgrades a running job to component `digest`; returns once the new
    /// version runs, or with why it was refused or rolled back.
    pub fn upgrade(
        &self,
        name: &str,
        digest: &str,
        reset_state: Vec<String>,
    ) -> Result<UpgradeDone, JobsError> {
        let plugin = self.registry.plugin(digest).ok_or_else(|| {
            JobsError::NotFound(format!(
                "no component {digest} was uploaded (PUT /v1/plugins first)"
            ))
        })?;
        let (job, log) = self.take_busy(name)?;
        self.note(
            &log,
            name,
            &format!("upgrading to version {}", short(digest)),
        );
        let result = job.upgrade(plugin, reset_state);
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(name) else {
            return Err(not_found(name));
        };
        entry.busy = false;
        match result {
            Ok(outcome) => {
                // The first batch of the new version, when there was a switch.
                let at = match outcome.switched_at_ms {
                    0 => now_ms(),
                    at => at,
                };
                entry.record.switch_to(&outcome.to, at);
                self.registry.save_job(&entry.record)?;
                drop(entries);
                self.note(
                    &log,
                    name,
                    &format!(
                        "now runs version {} (was {}; pause {:.1} ms)",
                        short(&outcome.to),
                        short(&outcome.from),
                        outcome.pause_ms
                    ),
                );
                Ok(UpgradeDone {
                    name: name.to_string(),
                    from: outcome.from,
                    to: outcome.to,
                    switched_at_ms: outcome.switched_at_ms,
                    pause_ms: outcome.pause_ms,
                })
            }
            Err(UpgradeFailure::Refused { reason, diff }) => {
                Err(JobsError::Refused { reason, diff })
            }
            Err(UpgradeFailure::RolledBack { reason }) => Err(JobsError::RolledBack(format!(
                "version {} failed and job `{name}` went back to version {}: {reason}",
                short(digest),
                short(&entry.record.current)
            ))),
            Err(UpgradeFailure::NotRunning { state }) => Err(JobsError::Conflict(format!(
                "job `{name}` is {state}, not running"
            ))),
        }
    }

    /// Returns a running job to the version it ran before the current one,
    /// or to the one `to` (a digest prefix of at least 12 characters) names:
    /// an upgrade to that version.
    pub fn rollback(
        &self,
        name: &str,
        to: Option<&str>,
        reset_state: Vec<String>,
    ) -> Result<UpgradeDone, JobsError> {
        let digest = {
            let entries = self.entries();
            let entry = entries.get(name).ok_or_else(|| not_found(name))?;
            let record = &entry.record;
            match to {
                Some(prefix) if prefix.len() < 12 => {
                    return Err(JobsError::BadRequest(format!(
                        "`{prefix}` is too short to name a version: give at least 12 characters"
                    )));
                }
                Some(prefix) => record
                    .version_by_prefix(prefix)
                    .map_err(JobsError::NotFound)?
                    .digest
                    .clone(),
                None => record
                    .previous_version()
                    .ok_or_else(|| {
                        JobsError::Conflict(format!(
                            "job `{name}` has run only version {}: nothing to roll back to",
                            short(&record.current)
                        ))
                    })?
                    .digest
                    .clone(),
            }
        };
        self.upgrade(name, &digest, reset_state)
    }

    /// Stops a job (gracefully, or `now`) and waits for its end; a stopped
    /// job stays stopped when the host restarts.
    pub fn stop(&self, name: &str, now: bool) -> Result<JobStatus, JobsError> {
        let (job, log) = self.take_busy(name)?;
        {
            let mut entries = self.entries();
            if let Some(entry) = entries.get_mut(name) {
                entry.record.should_run = false;
                if let Err(e) = self.registry.save_job(&entry.record) {
                    entry.busy = false;
                    return Err(e.into());
                }
            }
        }
        self.note(
            &log,
            name,
            if now {
                "stopping now"
            } else {
                "stopping gracefully"
            },
        );
        job.stop(now);
        while !job.is_finished() {
            std::thread::sleep(POLL / 2);
        }
        self.release(name);
        self.reap(name);
        self.status(name)
    }

    /// If `name`'s job has ended, takes its end and records it: a failure
    /// marks it failed, with its reason, in its record.
    fn reap(&self, name: &str) {
        let job = {
            let entries = self.entries();
            match entries.get(name) {
                Some(Entry { job: Some(job), .. }) if job.is_finished() => Arc::clone(job),
                _ => return,
            }
        };
        let last = job.status();
        let Some(end) = job.join() else {
            return;
        };
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(name) else {
            return;
        };
        entry.job = None;
        entry.last = Some(last);
        match end {
            Ok(()) => self.note(&entry.log, name, "stopped"),
            Err(reason) => {
                tracing::error!(job = name, "failed: {reason}");
                entry.log.push(format!(
                    "{} ERROR failed: {reason}",
                    humantime::format_rfc3339_millis(std::time::SystemTime::now())
                ));
                entry.record.failed = Some(reason);
                entry.record.should_run = false;
                if let Err(e) = self.registry.save_job(&entry.record) {
                    tracing::error!(job = name, "{e}");
                }
            }
        }
    }

    /// Starts the supervisor thread: it reaps jobs that ended, until
    /// [`Jobs::shutdown`].
    pub fn supervise(self: &Arc<Self>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let jobs = Arc::clone(self);
        std::thread::Builder::new()
            .name("sluice-supervisor".into())
            .spawn(move || {
                while !jobs.shutting_down.load(Ordering::Relaxed) {
                    let names: Vec<String> = jobs.entries().keys().cloned().collect();
                    for name in names {
                        jobs.reap(&name);
                    }
                    std::thread::sleep(POLL);
                }
            })
    }

    /// Stops every job gracefully, all at once, and waits for them; their
    /// records still say they should run, so the next host resumes them.
    /// From now on no job is deployed or started; one whose deploy or start
    /// was under way is stopped once it runs.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        loop {
            let (running, busy) = {
                let entries = self.entries();
                let running: Vec<(String, Arc<dyn Job>)> = entries
                    .iter()
                    .filter_map(|(name, e)| e.job.as_ref().map(|j| (name.clone(), Arc::clone(j))))
                    .collect();
                (running, entries.values().any(|e| e.busy))
            };
            if running.is_empty() && !busy {
                return;
            }
            for (name, job) in &running {
                tracing::info!(job = %name, "stopping gracefully");
                job.stop(false);
            }
            for (name, job) in &running {
                while !job.is_finished() {
                    std::thread::sleep(POLL / 2);
                }
                self.reap(name);
            }
            // A deploy, start or upgrade still under way, or a job whose
            // end could not be taken yet: look again.
            std::thread::sleep(POLL / 2);
        }
    }

    /// A 409 once the host is shutting down.
    fn refuse_when_shutting_down(&self, what: &str) -> Result<(), JobsError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(JobsError::Conflict(format!(
                "the host is shutting down: it {what} no more jobs"
            )));
        }
        Ok(())
    }
}

fn not_found(name: &str) -> JobsError {
    JobsError::NotFound(format!("no job named `{name}`"))
}

/// The first 12 characters of a digest, as logs and tables show it (of
/// any text: it may come from outside).
pub fn short(digest: &str) -> &str {
    digest
        .char_indices()
        .nth(12)
        .map_or(digest, |(end, _)| &digest[..end])
}

#[cfg(test)]
pub(crate) mod fake {
    //! A [`Launcher`] whose jobs do nothing, for the API's tests.

    use super::*;

    /// A job that runs until stopped.
    pub struct FakeJob {
        digest: Mutex<String>,
        stopped: AtomicBool,
        ended: Mutex<Option<Result<(), String>>>,
    }

    impl Job for FakeJob {
        fn status(&self) -> LiveStatus {
            LiveStatus {
                state: if self.stopped.load(Ordering::Relaxed) {
                    "stopped".into()
                } else {
                    "running".into()
                },
                version: self.digest.lock().unwrap().clone(),
                ..LiveStatus::default()
            }
        }
        fn upgrade(
            &self,
            plugin: PathBuf,
            _: Vec<String>,
        ) -> Result<UpgradeOutcome, UpgradeFailure> {
            let to = plugin
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let from = std::mem::replace(&mut *self.digest.lock().unwrap(), to.clone());
            Ok(UpgradeOutcome {
                from,
                to,
                switched_at_ms: 0,
                pause_ms: 0.0,
            })
        }
        fn stop(&self, _: bool) {
            self.stopped.store(true, Ordering::Relaxed);
        }
        fn is_finished(&self) -> bool {
            self.stopped.load(Ordering::Relaxed)
        }
        fn join(&self) -> Option<Result<(), String>> {
            if !self.is_finished() {
                return None;
            }
            self.ended.lock().unwrap().take()
        }
    }

    impl FakeJob {
        /// Ends the job by itself with `reason`, as a job whose batch failed.
        pub fn fail(&self, reason: &str) {
            *self.ended.lock().unwrap() = Some(Err(reason.into()));
            self.stopped.store(true, Ordering::Relaxed);
        }
    }

    /// Starts [`FakeJob`]s, and keeps them for the test.
    #[derive(Default)]
    pub struct FakeLauncher {
        /// Every job started, by name.
        pub started: Mutex<Vec<(String, Arc<FakeJob>)>>,
        /// The version "the checkpoints" were made by: starting another
        /// fails as `JobHandle::start` does.
        pub checkpointed_by: Option<String>,
    }

    impl Launcher for FakeLauncher {
        fn start(
            &self,
            name: &str,
            config: JobConfig,
            _: Arc<JobLog>,
        ) -> Result<Arc<dyn Job>, StartFailure> {
            let digest = config
                .plugin
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(found) = &self.checkpointed_by
                && *found != digest
            {
                return Err(StartFailure::OtherPlugin {
                    found: found.clone(),
                    message: format!("the checkpoints were made by {found}"),
                });
            }
            let job = Arc::new(FakeJob {
                digest: Mutex::new(digest),
                stopped: AtomicBool::new(false),
                ended: Mutex::new(Some(Ok(()))),
            });
            self.started
                .lock()
                .unwrap()
                .push((name.to_string(), Arc::clone(&job)));
            Ok(job)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeLauncher;
    use super::*;
    use crate::serve::api::JobSpec;

    #[test]
    fn short_keeps_the_first_twelve_characters_of_any_text() {
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("ééééééééééééé"), "éééééééééééé");
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn shutdown_stops_every_job_keeps_it_to_resume_and_refuses_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let a = registry.store_plugin(b"version a").unwrap();
        let launcher = Arc::new(FakeLauncher::default());
        let jobs = Jobs::new(registry.clone(), launcher.clone());
        let deploy = |name: &str| {
            jobs.deploy(DeployRequest {
                name: name.into(),
                digest: a.clone(),
                spec: JobSpec::default(),
            })
        };
        deploy("one").unwrap();
        deploy("two").unwrap();
        jobs.shutdown();
        let started = launcher.started.lock().unwrap();
        assert_eq!(started.len(), 2);
        assert!(started.iter().all(|(_, job)| job.is_finished()));
        drop(started);
        assert_eq!(jobs.status("one").unwrap().state, "stopped");
        let records: Vec<(String, bool)> = registry
            .load_jobs()
            .unwrap()
            .into_iter()
            .map(|r| r.map(|r| (r.name, r.should_run)).unwrap())
            .collect();
        assert_eq!(records, [("one".into(), true), ("two".into(), true)]);
        assert!(matches!(deploy("three"), Err(JobsError::Conflict(_))));
        assert!(matches!(
            jobs.start_again("one"),
            Err(JobsError::Conflict(_))
        ));
        assert_eq!(launcher.started.lock().unwrap().len(), 2);
    }

    #[test]
    fn deploy_upgrade_rollback_and_stop_keep_the_record_in_step() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let a = registry.store_plugin(b"version a").unwrap();
        let b = registry.store_plugin(b"version b").unwrap();
        let jobs = Jobs::new(registry.clone(), Arc::new(FakeLauncher::default()));
        let deploy = |name: &str, digest: &str| {
            jobs.deploy(DeployRequest {
                name: name.into(),
                digest: digest.into(),
                spec: JobSpec::default(),
            })
        };
        assert_eq!(deploy("wc", &a).unwrap().state, "running");
        assert!(matches!(deploy("wc", &a), Err(JobsError::Conflict(_))));
        assert!(matches!(deploy("Wc", &a), Err(JobsError::BadRequest(_))));
        assert!(matches!(
            deploy("other", &"0".repeat(64)),
            Err(JobsError::NotFound(_))
        ));
        assert!(matches!(
            jobs.rollback("wc", None, Vec::new()),
            Err(JobsError::Conflict(_))
        ));
        let done = jobs.upgrade("wc", &b, Vec::new()).unwrap();
        assert_eq!(
            (done.from.as_str(), done.to.as_str()),
            (a.as_str(), b.as_str())
        );
        let back = jobs.rollback("wc", None, Vec::new()).unwrap();
        assert_eq!(back.to, a);
        let forth = jobs.rollback("wc", Some(&b[..12]), Vec::new()).unwrap();
        assert_eq!(forth.to, b);
        assert!(matches!(
            jobs.rollback("wc", Some(&b[..11]), Vec::new()),
            Err(JobsError::BadRequest(_))
        ));

        let stopped = jobs.stop("wc", false).unwrap();
        assert_eq!(stopped.state, "stopped");
        assert!(matches!(
            jobs.stop("wc", false),
            Err(JobsError::Conflict(_))
        ));
        // Started again, and stopped; a running job is neither started nor
        // removed.
        assert_eq!(jobs.start_again("wc").unwrap().state, "running");
        assert!(matches!(
            jobs.start_again("wc"),
            Err(JobsError::Conflict(_))
        ));
        assert!(matches!(jobs.remove("wc"), Err(JobsError::Conflict(_))));
        assert!(
            registry.load_jobs().unwrap()[0]
                .as_ref()
                .unwrap()
                .should_run
        );
        jobs.stop("wc", false).unwrap();
        let record = registry.load_jobs().unwrap().remove(0).unwrap();
        assert_eq!(record.current, b);
        assert!(!record.should_run);
        assert_eq!(
            record
                .versions
                .iter()
                .map(|v| &v.digest)
                .collect::<Vec<_>>(),
            [&a, &b]
        );
        assert!(
            record
                .spec
                .config(
                    std::path::Path::new("x.wasm"),
                    &registry.job_dir("wc"),
                    dir.path()
                )
                .unwrap()
                .checkpoint
                .unwrap()
                .ends_with("jobs/wc/checkpoint")
        );
        jobs.remove("wc").unwrap();
        assert!(registry.load_jobs().unwrap().is_empty());
        assert!(matches!(jobs.status("wc"), Err(JobsError::NotFound(_))));
        assert!(matches!(jobs.remove("wc"), Err(JobsError::NotFound(_))));
    }

    #[test]
    fn a_job_that_fails_is_marked_failed_with_its_reason_and_the_others_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let a = registry.store_plugin(b"version a").unwrap();
        let launcher = Arc::new(FakeLauncher::default());
        let jobs = Jobs::new(registry.clone(), launcher.clone());
        let supervisor = jobs.supervise().unwrap();
        for name in ["bad", "good"] {
            jobs.deploy(DeployRequest {
                name: name.into(),
                digest: a.clone(),
                spec: JobSpec::default(),
            })
            .unwrap();
        }
        launcher.started.lock().unwrap()[0]
            .1
            .fail("batch 1000 failed after 4 retries");
        let mut bad = jobs.status("bad").unwrap();
        for _ in 0..100 {
            if bad.state == "failed" {
                break;
            }
            std::thread::sleep(POLL);
            bad = jobs.status("bad").unwrap();
        }
        assert_eq!(bad.state, "failed");
        assert_eq!(
            bad.reason.as_deref(),
            Some("batch 1000 failed after 4 retries")
        );
        assert_eq!(jobs.status("good").unwrap().state, "running");
        let records: Vec<JobRecord> = registry
            .load_jobs()
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            records[0].failed.as_deref(),
            Some("batch 1000 failed after 4 retries")
        );
        assert!(!records[0].should_run);
        assert!(records[1].should_run && records[1].failed.is_none());
        assert!(matches!(
            jobs.upgrade("bad", &a, Vec::new()),
            Err(JobsError::Conflict(_))
        ));
        jobs.shutdown();
        supervisor.join().unwrap();
        // A graceful host stop leaves the good one to be resumed.
        let record = registry.load_jobs().unwrap().remove(1).unwrap();
        assert!(record.should_run);
    }

    #[test]
    fn a_resumed_job_runs_the_known_version_its_checkpoint_was_made_by() {
        // The host was killed between an upgrade's switch (the checkpoint
        // under the new digest) and its record.
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let a = registry.store_plugin(b"version a").unwrap();
        let b = registry.store_plugin(b"version b").unwrap();
        let mut record = JobRecord {
            name: "wc".into(),
            spec: JobSpec::default(),
            current: a.clone(),
            versions: Vec::new(),
            should_run: true,
            failed: None,
            deployed_ms: 1,
        };
        record.switch_to(&a, 1);
        record.switch_to(&b, 2);
        record.switch_to(&a, 3);
        registry.save_job(&record).unwrap();
        let launcher = FakeLauncher {
            checkpointed_by: Some(b.clone()),
            ..FakeLauncher::default()
        };
        let jobs = Jobs::new(registry.clone(), Arc::new(launcher));
        jobs.resume().unwrap();
        let status = jobs.status("wc").unwrap();
        assert_eq!(
            (status.state.as_str(), status.version.as_str()),
            ("running", b.as_str())
        );
        assert_eq!(
            registry.load_jobs().unwrap()[0].as_ref().unwrap().current,
            b
        );

        // A version it never ran: not started, marked failed.
        let c = registry.store_plugin(b"version c").unwrap();
        let launcher = FakeLauncher {
            checkpointed_by: Some(c),
            ..FakeLauncher::default()
        };
        let jobs = Jobs::new(registry.clone(), Arc::new(launcher));
        jobs.resume().unwrap();
        let status = jobs.status("wc").unwrap();
        assert_eq!(status.state, "failed");
        assert!(status.reason.unwrap().contains("cannot start"));
    }

    #[test]
    fn a_restarted_host_resumes_the_jobs_that_should_run() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let a = registry.store_plugin(b"version a").unwrap();
        let jobs = Jobs::new(registry.clone(), Arc::new(FakeLauncher::default()));
        for name in ["one", "two", "three"] {
            jobs.deploy(DeployRequest {
                name: name.into(),
                digest: a.clone(),
                spec: JobSpec::default(),
            })
            .unwrap();
        }
        jobs.stop("two", false).unwrap();
        let again = Jobs::new(registry, Arc::new(FakeLauncher::default()));
        again.resume().unwrap();
        let states: Vec<(String, String)> = again
            .list()
            .into_iter()
            .map(|j| (j.name, j.state))
            .collect();
        assert_eq!(
            states,
            [
                ("one".to_string(), "running".to_string()),
                ("three".to_string(), "running".to_string()),
                ("two".to_string(), "stopped".to_string()),
            ]
        );
    }
}
