//! `envsnap repair`

use anyhow::Result;
use envsnap::repository::Access;

use super::context::{Context, Global};
use super::format::counted;

/// Options of `envsnap repair`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(global: &Global, _args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let repository = context.open(Access::Write)?;
    let report = repository.repair()?;
    for problem in &report.unreadable {
        println!("skipped {problem}");
    }
    println!(
        "rebuilt the catalog from the store: {}, {}, {}",
        counted(report.snapshots as u64, "snapshot", "snapshots"),
        counted(report.packs as u64, "pack", "packs"),
        counted(report.blobs as u64, "blob", "blobs")
    );
    Ok(())
}
