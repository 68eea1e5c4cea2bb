//! The HTTP API's request and response bodies (JSON), with their OpenAPI
//! schemas. These are the API's own types: the server maps the job control
//! types onto them, so that the wire format changes only on purpose.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::registry::{JobRecord, VersionRecord};
use crate::control::JobConfig;
use crate::data::KeyGroups;
use crate::wasm::Grants;

/// One `--arg KEY=VALUE` of a job's `define`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobArg {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// How a job runs: what `sluice run` takes as flags, for a deployed job.
/// Every field but `args` may be left out (the `sluice run` default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Arguments of the job's `define`, in order.
    #[serde(default)]
    pub args: Vec<JobArg>,
    /// Time between batches, ms [default: 1000].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_interval_ms: Option<u64>,
    /// Time between blocks of a receiver, ms [default: 200, or the largest
    /// divisor of the batch interval below it].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_interval_ms: Option<u64>,
    /// Where the job checkpoints (a directory or an object store URL)
    /// (default: `<data-dir>/jobs/<name>/checkpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Time between checkpoints, ms [default: the smallest multiple of the
    /// batch interval that is at least 10 s].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_interval_ms: Option<u64>,
    /// Worker threads [default: number of cores].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Linear memory cap of one plugin instance, bytes [default: 1 GiB].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
    /// Time limit of one guest call, ms [default: 60000].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_timeout_ms: Option<u64>,
    /// Retries of a task whose guest trapped [default: 4].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_retries: Option<u32>,
    /// Key groups of keyed operators, 1 to 32768 [default: 128].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_groups: Option<u32>,
    /// Bytes received but not processed above which receivers stop reading
    /// [default: 16 MiB].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending: Option<u64>,
    /// Replace a worker's instance after this many calls [default: never
    /// for that reason].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recycle_after_calls: Option<u64>,
    /// Replace a worker's instance once its memory grew this many bytes
    /// above its size after `define` [default: 32 MiB].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recycle_above_growth: Option<u64>,
    /// What the job's sandbox grants its plugin [default: nothing].
    #[serde(default, skip_serializing_if = "Grants::is_empty")]
    #[schema(value_type = GrantsSchema)]
    pub grants: Grants,
}

/// The OpenAPI shape of [`Grants`]: each grant in its flag's syntax.
#[derive(ToSchema)]
#[schema(as = Grants)]
#[allow(dead_code)]
pub struct GrantsSchema {
    /// Host directories preopened in the guest, as
    /// `HOST_PATH[:GUEST_PATH][:ro]` (`--allow-dir`).
    #[schema(required = false)]
    dirs: Vec<String>,
    /// Addresses the guest may open TCP connections to, as `HOST:PORT`
    /// (`--allow-net`).
    #[schema(required = false)]
    net: Vec<String>,
    /// The guest's environment variables, as `NAME=VALUE` (`--env`).
    #[schema(required = false)]
    env: Vec<String>,
}

impl JobSpec {
    /// The job's configuration: its plugin file, this spec, its checkpoint
    /// location (by default `<job_dir>/checkpoint`) and the data directory
    /// (for compiled components). Refuses values `sluice run` refuses.
    pub fn config(
        &self,
        plugin: &Path,
        job_dir: &Path,
        data_dir: &Path,
    ) -> Result<JobConfig, String> {
        let mut config = JobConfig::new(plugin.to_path_buf());
        config.args = self
            .args
            .iter()
            .map(|a| (a.key.clone(), a.value.clone()))
            .collect();
        let ms = Duration::from_millis;
        if let Some(batch) = self.batch_interval_ms {
            if batch == 0 {
                return Err("batch_interval_ms must be positive".into());
            }
            config.batch_interval = ms(batch);
        }
        config.block_interval = match self.block_interval_ms {
            Some(block) => ms(block),
            None => crate::cli::default_block_interval(config.batch_interval),
        };
        config.checkpoint = Some(
            self.checkpoint
                .clone()
                .unwrap_or_else(|| job_dir.join("checkpoint").to_string_lossy().into_owned()),
        );
        config.checkpoint_interval = self.checkpoint_interval_ms.map(ms);
        if let Some(workers) = self.workers {
            if workers == 0 {
                return Err("workers must be at least 1".into());
            }
            config.workers = workers;
        }
        if let Some(limit) = self.memory_limit {
            config.memory_limit =
                usize::try_from(limit).map_err(|_| format!("memory_limit {limit} is too large"))?;
        }
        if let Some(timeout) = self.call_timeout_ms {
            config.call_timeout = ms(timeout);
        }
        if let Some(retries) = self.task_retries {
            config.task_retries = retries;
        }
        if let Some(groups) = self.key_groups {
            config.key_groups = KeyGroups::new(groups.into()).map_err(|e| e.to_string())?;
        }
        if let Some(pending) = self.max_pending {
            config.max_pending_bytes = usize::try_from(pending)
                .map_err(|_| format!("max_pending {pending} is too large"))?;
        }
        if self.recycle_after_calls.is_some() {
            config.recycle.after_calls = self.recycle_after_calls;
        }
        if let Some(growth) = self.recycle_above_growth {
            config.recycle.growth_above = usize::try_from(growth)
                .map_err(|_| format!("recycle_above_growth {growth} is too large"))?;
        }
        config.grants = self.grants.clone();
        config.data_dir = Some(data_dir.to_path_buf());
        Ok(config)
    }
}

/// `PUT /v1/plugins`: the stored component.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PluginStored {
    /// SHA-256 of the component, in hex: its name in the API.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

/// `POST /v1/jobs`: deploy a stored component as a new job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The job's name: `[a-z0-9][a-z0-9-_]*`, at most 64 characters.
    pub name: String,
    /// The component's digest (from `PUT /v1/plugins`).
    pub digest: String,
    /// How the job runs.
    #[serde(default)]
    pub spec: JobSpec,
}

/// `POST /v1/jobs/{name}/upgrade`: replace a running job's component.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// The new component's digest (from `PUT /v1/plugins`).
    pub digest: String,
    /// Stateful operators whose state is dropped (removed ones, or ones whose
    /// codecs changed).
    #[serde(default)]
    pub reset_state: Vec<String>,
}

/// `POST /v1/jobs/{name}/rollback`: go back to an earlier version.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// A digest, or its first 12 characters or more, of a version the job
    /// ran [default: the version it ran before the current one].
    #[serde(default)]
    pub to: Option<String>,
    /// Stateful operators whose state is dropped (ones the earlier version
    /// does not have, or has with other codecs).
    #[serde(default)]
    pub reset_state: Vec<String>,
}

/// `POST /v1/jobs/{name}/stop`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    /// Stop now, without finishing what was received (a job with a
    /// checkpoint replays it at its next start) [default: false: graceful].
    #[serde(default)]
    pub now: bool,
}

/// A finished upgrade or rollback.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpgradeDone {
    /// The job.
    pub name: String,
    /// The version it ran.
    pub from: String,
    /// The version it runs now.
    pub to: String,
    /// The first batch time the new version ran (ms since the Unix epoch).
    pub switched_at_ms: u64,
    /// The extra delay of the first batch after the switch, ms.
    pub pause_ms: f64,
}

/// One batch, as `sluice status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchView {
    /// The batch time (ms since the Unix epoch).
    pub batch_time_ms: u64,
    /// Records received for it.
    pub records: u64,
    /// Records the sources skipped.
    pub invalid_records: u64,
    /// Time it waited for earlier batches, ms.
    pub scheduling_delay_ms: f64,
    /// Its processing time, ms.
    pub processing_ms: f64,
    /// Scheduling delay plus processing time, ms.
    pub total_delay_ms: f64,
}

impl From<&crate::monitor::BatchInfo> for BatchView {
    fn from(b: &crate::monitor::BatchInfo) -> BatchView {
        BatchView {
            batch_time_ms: b.batch_time_ms,
            records: b.records,
            invalid_records: b.invalid_records,
            scheduling_delay_ms: b.scheduling_delay.as_secs_f64() * 1000.0,
            processing_ms: b.processing.as_secs_f64() * 1000.0,
            total_delay_ms: b.total_delay.as_secs_f64() * 1000.0,
        }
    }
}

/// One event of a job's version history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionEventView {
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
    /// The version concerned.
    pub digest: String,
    /// `started`, `upgraded`, `rolled-back` or `refused`.
    pub kind: String,
    /// What happened, in words.
    pub detail: String,
}

/// What a running job reports about itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct LiveStatus {
    /// `starting`, `running`, `upgrading`, `stopping`, `stopped` or `failed`.
    pub state: String,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The digest of the running component.
    pub version: String,
    /// When it started (ms since the Unix epoch).
    pub started_ms: u64,
    /// Batches run.
    pub batches: u64,
    /// Records processed.
    pub records: u64,
    /// The last batches (up to 20), oldest first.
    pub last_batches: Vec<BatchView>,
    /// Errors it met (failed tasks, a refused or rolled-back upgrade).
    pub errors: Vec<String>,
    /// Accumulators' totals, by name.
    #[schema(value_type = Object)]
    pub accumulators: BTreeMap<String, serde_json::Value>,
    /// Its version history since this host started it.
    pub history: Vec<VersionEventView>,
}

/// `GET /v1/jobs/{name}`: a job's status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobStatus {
    /// The job's name.
    pub name: String,
    /// `starting`, `running`, `upgrading`, `stopping`, `stopped` or `failed`.
    pub state: String,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The digest of the component it runs (or ran last).
    pub version: String,
    /// Where its checkpoints go.
    pub checkpoint: String,
    /// What the running job reports (the last report, once it ended);
    /// absent before it first ran in this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveStatus>,
    /// Every version it ran, in the order it first ran them.
    pub versions: Vec<VersionRecord>,
    /// How it was deployed.
    pub spec: JobSpec,
    /// Whether a restarted host starts it.
    pub should_run: bool,
}

/// `GET /v1/jobs`: one line per job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobSummary {
    /// The job's name.
    pub name: String,
    /// Its state.
    pub state: String,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The digest of the component it runs (or ran last).
    pub version: String,
    /// Batches run by this host.
    pub batches: u64,
    /// Records processed by this host.
    pub records: u64,
}

/// `GET /v1/versions`: every stored component.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Versions {
    /// Their digests, sorted.
    pub plugins: Vec<String>,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words.
    pub error: String,
    /// `bad-request`, `unauthorized`, `not-found`, `conflict`, `refused`,
    /// `rolled-back`, `failed` or `internal`.
    pub kind: String,
    /// For a refused upgrade: a readable diff of the two graphs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

impl JobStatus {
    /// A job's status from its record and what it reported last.
    pub fn new(
        record: &JobRecord,
        checkpoint: PathBuf,
        state: String,
        reason: Option<String>,
        live: Option<LiveStatus>,
    ) -> JobStatus {
        JobStatus {
            name: record.name.clone(),
            state,
            reason,
            version: record.current.clone(),
            checkpoint: record
                .spec
                .checkpoint
                .clone()
                .unwrap_or_else(|| checkpoint.to_string_lossy().into_owned()),
            live,
            versions: record.versions.clone(),
            spec: record.spec.clone(),
            should_run: record.should_run,
        }
    }

    /// The line of `GET /v1/jobs`.
    pub fn summary(&self) -> JobSummary {
        JobSummary {
            name: self.name.clone(),
            state: self.state.clone(),
            reason: self.reason.clone(),
            version: self.version.clone(),
            batches: self.live.as_ref().map_or(0, |l| l.batches),
            records: self.live.as_ref().map_or(0, |l| l.records),
        }
    }
}
