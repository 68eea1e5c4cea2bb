//! `sluice run --watch`: runs the job and, whenever its plugin file changes,
//! upgrades the running job to the new file through the same path as
//! `sluice upgrade` (state and positions kept, refused when incompatible,
//! rolled back when the new version fails) — no restart.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::control::{JobConfig, JobError, JobHandle, UpgradeRequest};
use crate::monitor::Summary;
use crate::monitor::logs::{self, JobLog};
use crate::sources::StopSignal;

/// How often the plugin file is looked at.
const POLL: Duration = Duration::from_millis(300);

/// The file's modification time and length: a change of either is a new
/// version to try (the digest decides whether it is one).
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Runs `config`'s job, upgrading it each time its plugin file changes.
pub fn run(config: JobConfig, stop: StopSignal) -> Result<Summary, JobError> {
    let plugin = config.plugin.clone();
    let mut seen = stamp(&plugin);
    let job = JobHandle::start_with("job", config, JobLog::new(logs::DEFAULT_CAPACITY), stop)?;
    tracing::info!("watching {} for new versions", plugin.display());
    while !job.is_finished() {
        std::thread::sleep(POLL);
        let now = stamp(&plugin);
        if now == seen || now.is_none() {
            continue;
        }
        // Wait until the file stops changing (a build still writing it).
        std::thread::sleep(POLL);
        if stamp(&plugin) != now {
            continue;
        }
        seen = now;
        let request = UpgradeRequest {
            plugin: plugin.clone(),
            reset_state: Vec::new(),
        };
        match job.upgrade(request) {
            Ok(outcome) if outcome.from == outcome.to => {}
            Ok(outcome) => tracing::info!(
                "now running {} (switched at batch {} ms, pause {:.1} ms)",
                &outcome.to[..12],
                outcome.switched_at_ms,
                outcome.pause_ms
            ),
            Err(e) => tracing::error!("{} not taken: {e}", plugin.display()),
        }
    }
    job.join()
}
