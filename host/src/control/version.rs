//! One version of a job's code, built the same way for a start, an upgrade
//! and a rollback (the "topology builder"): load and compile the component,
//! ask it for its graph (twice: `define` must be deterministic), validate
//! and plan the graph, and make an executor for it.

use std::path::Path;
use std::sync::Arc;

use super::{JobConfig, JobError, load_broadcasts};
use crate::exec::{Datasets, Executor, Workers, WorkersConfig};
use crate::monitor::logs::JobLog;
use crate::plan::{self, JobGraph, Plan};
use crate::sinks::Sinks;
use crate::wasm::{Plugin, Runtime};

/// A compiled plugin and the graph it defines.
#[derive(Clone)]
pub(super) struct Version {
    /// The compiled component.
    pub plugin: Plugin,
    /// The graph its `define` returned for the job's arguments.
    pub graph: JobGraph,
}

impl Version {
    /// Loads, compiles and checks the plugin at `path`, and asks it for its
    /// graph. Compiling happens here, on the caller's thread: for an
    /// upgrade, off the batch loop.
    pub fn build(runtime: &Runtime, config: &JobConfig, path: &Path) -> Result<Version, JobError> {
        let plugin = runtime.load(path)?;
        let label = path
            .file_stem()
            .map_or_else(|| "job".to_string(), |s| s.to_string_lossy().into_owned());
        let define = || -> Result<JobGraph, JobError> {
            let mut instance = plugin.instantiate(&label)?;
            instance.set_task("define");
            instance.define(&config.args).map_err(JobError::Define)
        };
        let graph = define()?;
        // Every instance must define this graph; the workers check each fresh
        // one, and a second instance now refuses most offenders before the start.
        if let Some(difference) = graph.first_difference(&define()?) {
            return Err(JobError::UnstableDefine {
                plugin: path.to_path_buf(),
                difference,
            });
        }
        let version = Version { plugin, graph };
        // Validated now, so that an invalid graph is refused before anything
        // starts or switches.
        version.plan(config)?;
        Ok(version)
    }

    /// The plugin's SHA-256, in hex.
    pub fn digest(&self) -> &str {
        self.plugin.digest()
    }

    /// The first 12 characters of the digest, as logs and tables show it.
    pub fn short(&self) -> &str {
        &self.digest()[..12.min(self.digest().len())]
    }

    /// Validates and plans the graph for `config`.
    pub fn plan(&self, config: &JobConfig) -> Result<Plan, JobError> {
        let validated = plan::validate(
            &self.graph,
            config.batch_interval,
            config.block_interval,
            config.key_groups,
        )?;
        for warning in &validated.warnings {
            tracing::warn!(job = %self.graph.name, "{warning}");
        }
        Ok(Plan::new(
            &self.graph,
            validated,
            config.key_groups,
            config.batch_interval,
        ))
    }

    /// An executor running this version: its worker threads (attached to
    /// `log`), sinks and datasets, its broadcast values loaded. It holds no
    /// state yet.
    pub fn executor(
        &self,
        config: &JobConfig,
        io: &tokio::runtime::Handle,
        log: Option<&Arc<JobLog>>,
    ) -> Result<Arc<Executor>, JobError> {
        let plan = self.plan(config)?;
        let broadcasts = load_broadcasts(&self.graph, io, &config.storage_options)?;
        let workers = Workers::new(
            self.plugin.with_broadcasts(broadcasts),
            self.graph.clone(),
            config.args.clone(),
            WorkersConfig {
                threads: config.workers,
                retries: config.task_retries,
                recycle: crate::exec::Recycle {
                    growth_above: (config.memory_limit / 2).min(config.recycle.growth_above),
                    ..config.recycle
                },
                log: log.cloned(),
            },
        )
        .map_err(|e| JobError::Threads(e.to_string()))?;
        Ok(Arc::new(Executor::new(
            plan,
            workers,
            Sinks::new(io.clone()).with_storage_options(config.storage_options.clone()),
            Datasets::new(io.clone(), config.storage_options.clone()),
        )))
    }
}
