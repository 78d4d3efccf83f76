//! `envsnap diff`

use std::io::Write;

use anyhow::Result;
use envsnap::diff::{ChangeKind, diff};
use envsnap::repository::Access;

use super::context::{Context, Global};
use super::format::SHORT_ID;
use super::output::note;

/// Options of `envsnap diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The older snapshot.
    pub old: String,
    /// The newer snapshot.
    pub new: String,
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let repository = context.open(Access::Read)?;
    repository.require_read_key("diff snapshots")?;
    let old = context.resolve(&repository, &args.old, None)?;
    let new = context.resolve(&repository, &args.new, None)?;
    let changes = diff(&repository, &old.manifest, &new.manifest)?;
    let mut out = std::io::stdout().lock();
    let mut counts = [0usize; 5];
    for change in &changes {
        let slash = if change.is_dir { "/" } else { "" };
        writeln!(out, "{}  {}{slash}", change.kind.mark(), change.path.display())?;
        counts[change.kind as usize] += 1;
    }
    note!(
        "{} → {}: {} added, {} removed, {} modified, {} metadata only, {} changed type",
        old.id.short(SHORT_ID),
        new.id.short(SHORT_ID),
        counts[ChangeKind::Added as usize],
        counts[ChangeKind::Removed as usize],
        counts[ChangeKind::Modified as usize],
        counts[ChangeKind::Metadata as usize],
        counts[ChangeKind::TypeChanged as usize],
    );
    Ok(())
}
