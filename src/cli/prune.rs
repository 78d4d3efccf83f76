//! `envsnap prune`

use anyhow::Result;
use envsnap::repository::{Access, Repository};

use super::activity;
use super::context::{Context, Global};
use super::format::{bytes, counted};
use super::output::note;

/// Seconds prune waits for readers by default: long enough for a restore or an
/// export to finish, short enough not to hold back the backups queued behind it.
pub const DEFAULT_WAIT: u64 = 60;

/// Options of `envsnap prune`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Say what would be freed, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for readers (a restore, an export, `envsnap mount`) before
    /// leaving the unused packs for the next prune.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_WAIT)]
    pub wait: u64,
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let repository = context.open(if args.dry_run { Access::Verify } else { Access::Write })?;
    prune(&repository, args, &mut std::io::stdout().lock())
}

/// Prunes an open repository and says what was freed, on `out`; shared with
/// `forget --prune` (whose `--json` keeps stdout for the plan) and `schedule run`.
pub fn prune(repository: &Repository, args: &Args, out: &mut dyn std::io::Write) -> Result<()> {
    let patience = std::time::Duration::from_secs(args.wait);
    let report = envsnap::prune::prune(repository, args.dry_run, patience, &mut |holder| {
        note!(
            "envsnap: waiting for readers of the repository to finish (a restore, an export or `envsnap mount`: \
             unmount it); {}",
            if holder.is_empty() { "they hold its readers' lock".to_owned() } else { format!("last: {holder}") }
        );
    })?;
    if report.packs_left > 0 {
        writeln!(
            out,
            "freed nothing yet: {} no longer used, but readers of the repository stayed longer than {} s; \
             run `envsnap prune` again once they are done (unmount any `envsnap mount`)",
            counted(report.packs_left as u64, "pack is", "packs are"),
            args.wait
        )?;
        return Ok(());
    }
    let verb = if report.dry_run { "would free" } else { "freed" };
    activity::detail(format!("{verb} {} of {}", bytes(report.bytes_freed), bytes(report.bytes)));
    writeln!(
        out,
        "{verb} {} of {}: {} deleted, {} repacked into {}; {} kept for {}; {} unused left in packs not worth repacking",
        bytes(report.bytes_freed),
        bytes(report.bytes),
        counted(report.packs_deleted as u64, "pack", "packs"),
        counted(report.packs_repacked as u64, "pack", "packs"),
        if report.dry_run { "new ones".to_owned() } else { counted(report.packs_written as u64, "pack", "packs") },
        counted((report.packs - report.packs_deleted - report.packs_repacked) as u64, "pack", "packs"),
        counted(report.snapshots as u64, "snapshot", "snapshots"),
        bytes(report.unused_kept),
    )?;
    Ok(())
}
