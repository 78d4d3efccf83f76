//! `envsnap undo`: put back what the last restore overwrote.

use anyhow::{Result, bail};
use envsnap::repository::Access;
use envsnap::repository::RestoreState;

use super::context::{Context, Global};
use super::format::SHORT_ID;
use super::output::note;
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
    repository.require_read_key("undo a restore")?;
    // Undo acts on the restore that last changed the environment, as recorded when it
    // began changing it: a restore refused or stopped before that changed nothing.
    // Undoing is a restore too, recorded the same way, so a second undo redoes.
    let Some(last) = repository.last_restore(&env)? else {
        bail!("nothing to undo: no restore has changed environment `{env}` (see `envsnap list --env {env}`)");
    };
    let when = last.started.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M");
    let Some(safety_id) = last.safety else {
        bail!(
            "nothing to undo: the last restore into `{env}` (snapshot {}, {when}) took no safety snapshot, \
             so what it overwrote was not kept",
            last.restored.short(SHORT_ID)
        );
    };
    let Some(safety) = repository.snapshots(Some(&env))?.into_iter().find(|snapshot| snapshot.id == safety_id) else {
        bail!(
            "cannot undo the last restore into `{env}` (snapshot {}, {when}): its safety snapshot {} no longer \
             exists (see `envsnap list --env {env}`)",
            last.restored.short(SHORT_ID),
            safety_id.short(SHORT_ID)
        );
    };
    let stopped = if last.state == RestoreState::Done { "" } else { ", which did not finish" };
    note!(
        "undoing the restore of snapshot {} into `{env}` ({when}{stopped}): putting back safety snapshot {}",
        last.restored.short(SHORT_ID),
        safety.id.short(SHORT_ID)
    );
    safety.manifest.check_element_names()?;
    let elements = chosen_elements(&safety, &[])?;
    // The safety snapshot was taken of this very server, whose roles it names.
    let options = Options { yes: args.yes, safety: true, dry_run: args.dry_run, no_owner: false };
    into_environment(&context, &repository, &safety, &elements, &env, None, options)
}
