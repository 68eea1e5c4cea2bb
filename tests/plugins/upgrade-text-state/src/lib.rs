//! Test fixture for hot upgrades: the same names, but the state of `running-counts` is the count as text: another state codec, an incompatible upgrade.
//! (See `upgrade-common` for the job and its arguments.)

use sluice_guest::prelude::*;

/// The job.
pub struct UpgradeWordCount;

impl Job for UpgradeWordCount {
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
        upgrade_common::define_text(ctx, args, str::to_string)
    }
}

sluice_guest::export_job!(UpgradeWordCount);
