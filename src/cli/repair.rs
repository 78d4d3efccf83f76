//! `envsnap repair`

use anyhow::Result;
use envsnap::repository::Access;

use super::context::{Context, Global};

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
        "rebuilt the catalog from the store: {} snapshots, {} packs, {} blobs",
        report.snapshots, report.packs, report.blobs
    );
    Ok(())
}
