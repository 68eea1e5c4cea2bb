//! Test fixture for hot upgrades: the same graph, words lower-cased: other code, same state.
//! (See `upgrade-common` for the job and its arguments.)

use sluice_guest::prelude::*;

/// The job.
pub struct UpgradeWordCount;

impl Job for UpgradeWordCount {
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
        upgrade_common::define(ctx, args, str::to_lowercase)
    }
}

sluice_guest::export_job!(UpgradeWordCount);
