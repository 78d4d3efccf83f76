//! `envsnap delete`

use anyhow::Result;
use envsnap::Error;
use envsnap::repository::Access;

use super::activity;
use super::confirm::{Question, confirm};
use super::context::{Context, Global};
use super::format::SHORT_ID;

/// Options of `envsnap delete`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshots to delete: id prefixes of at least 4 characters.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Do not ask before deleting a snapshot of a protected environment.
    #[arg(long, short = 'y')]
    pub yes: bool,
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
    // A protected environment's snapshot may be the one thing that can bring it back:
    // asked for as a restore into it is.
    let config = context.config()?;
    let protected: Vec<String> = snapshots
        .iter()
        .filter(|snapshot| {
            let env = &snapshot.manifest.env;
            env == config.production() || config.is_protected(env)
        })
        .map(|snapshot| {
            format!(
                "{} of `{}` ({})",
                snapshot.id.short(SHORT_ID),
                snapshot.manifest.env,
                snapshot.manifest.created.format("%Y-%m-%d %H:%M")
            )
        })
        .collect();
    if !protected.is_empty() {
        let question = format!(
            "Delete snapshot{} {} of a protected environment?",
            if protected.len() == 1 { "" } else { "s" },
            protected.join(", ")
        );
        confirm(args.yes, &Question { text: &question, verb: "delete it", action: "delete" })?;
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
