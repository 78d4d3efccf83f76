//! `envsnap undo`: put back what the last restore overwrote.

use anyhow::{Result, bail};
use envsnap::repository::Access;
use envsnap::snapshot::Trigger;

use super::context::{Context, Global};
use super::restore::{Options, chosen_elements, into_environment};

/// Options of `envsnap undo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment whose last restore to undo (default: the checked-out branch).
    #[arg(long, value_name = "BRANCH")]
    pub env: Option<String>,
    /// Say what would be overwritten, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let env = context.workspace.environment(args.env.as_deref())?;
    let repository = context.open(if args.dry_run { Access::Read } else { Access::Write })?;
    // The safety snapshot of the last restore is the newest one of the environment.
    // Undoing takes a safety snapshot too, so a second undo redoes the restore.
    let Some(safety) =
        repository.snapshots(Some(&env))?.into_iter().find(|snapshot| snapshot.manifest.trigger == Trigger::Safety)
    else {
        bail!("no restore into `{env}` to undo: no safety snapshot of it exists (see `envsnap list --env {env}`)");
    };
    safety.manifest.check_element_names()?;
    let elements = chosen_elements(&safety, &[])?;
    let options = Options { yes: args.yes, safety: true, dry_run: args.dry_run };
    into_environment(&context, &repository, &safety, &elements, &env, None, options)
}
