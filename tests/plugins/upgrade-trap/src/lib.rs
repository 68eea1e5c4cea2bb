//! Test fixture for hot upgrades: the same graph, but every word traps (a panic), so every batch with records fails.
//! (See `upgrade-common` for the job and its arguments.)

use sluice_guest::prelude::*;

/// The job.
pub struct UpgradeWordCount;

impl Job for UpgradeWordCount {
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
        upgrade_common::define(ctx, args, |w| panic!("deliberate trap on `{w}`"))
    }
}

sluice_guest::export_job!(UpgradeWordCount);
