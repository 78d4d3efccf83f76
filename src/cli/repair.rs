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
    let repository = context.open(Access::Repair)?;
    let report = repository.repair()?;
    if let Some((aside, damage)) = &report.moved_aside {
        println!("the catalog was damaged ({damage}): moved it aside to {}", aside.display());
    }
    if let Some(records) = &report.records {
        let kept: Vec<String> = records.kept.iter().map(|(table, rows)| format!("{rows} {table}")).collect();
        println!(
            "the jobs and the activity log were damaged ({}): kept what could be read ({}), moved the damaged file \
             aside to {}",
            records.damage,
            kept.join(", "),
            records.aside.display()
        );
        for table in &records.cut_short {
            println!("could not read to the end: {table}");
        }
    }
    for restored in &report.manifests_restored {
        println!("restored from the catalog's copy: {restored}");
    }
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
