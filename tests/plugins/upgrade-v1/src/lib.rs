//! Test fixture for hot upgrades: the stateful word count, words as they are.
//! (See `upgrade-common` for the job and its arguments.)

use sluice_guest::prelude::*;

/// The job.
pub struct UpgradeWordCount;

impl Job for UpgradeWordCount {
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
        upgrade_common::define(ctx, args, str::to_string)
    }
}

sluice_guest::export_job!(UpgradeWordCount);
