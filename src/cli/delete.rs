//! `envsnap delete`

use anyhow::Result;
use envsnap::Error;
use envsnap::repository::Access;

use super::activity;
use super::context::{Context, Global};
use super::format::SHORT_ID;

/// Options of `envsnap delete`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshots to delete: id prefixes of at least 4 characters.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let repository = context.open(Access::Write)?;
    // Resolve every id before deleting any, so a typo deletes nothing.
    let snapshots = args.ids.iter().map(|id| context.resolve(&repository, id, None)).collect::<Result<Vec<_>>>()?;
    for snapshot in &snapshots {
        super::restore::require_admin(&context, &snapshot.manifest.env, "delete a snapshot of")?;
    }
    let pinned = repository.pinned()?;
    if let Some(snapshot) = snapshots.iter().find(|snapshot| pinned.contains(&snapshot.id)) {
        return Err(Error::Pinned { id: snapshot.id.short(SHORT_ID) }.into());
    }
    for snapshot in snapshots {
        activity::env(&snapshot.manifest.env);
        activity::snapshot(&snapshot.id);
        repository.delete(&snapshot.id)?;
        println!(
            "deleted snapshot {} of {} taken {}",
            snapshot.id.short(SHORT_ID),
            snapshot.manifest.env,
            snapshot.manifest.created.format("%Y-%m-%d %H:%M:%S")
        );
    }
    Ok(())
}
