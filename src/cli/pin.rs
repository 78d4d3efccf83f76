//! `envsnap pin` and `envsnap unpin`

use anyhow::Result;
use envsnap::repository::Access;

use super::activity;
use super::context::{Context, Global};
use super::format::SHORT_ID;

/// Options of `envsnap pin` and `envsnap unpin`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshots: id prefixes of at least 4 characters, or `latest`.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// Pins the snapshots (`pin`), or unpins them.
pub fn run(global: &Global, args: &Args, pin: bool) -> Result<()> {
    let context = Context::discover(global)?;
    let repository = context.open(Access::Write)?;
    // Resolve every id before changing any, so a typo changes nothing.
    let snapshots = args.ids.iter().map(|id| context.resolve(&repository, id, None)).collect::<Result<Vec<_>>>()?;
    for snapshot in snapshots {
        activity::env(&snapshot.manifest.env);
        activity::snapshot(&snapshot.id);
        if pin {
            repository.pin(&snapshot.id)?;
        } else {
            repository.unpin(&snapshot.id)?;
        }
        println!(
            "{} snapshot {} of {} taken {}",
            if pin { "pinned" } else { "unpinned" },
            snapshot.id.short(SHORT_ID),
            snapshot.manifest.env,
            snapshot.manifest.created.format("%Y-%m-%d %H:%M:%S")
        );
    }
    Ok(())
}
