//! `envsnap check`

use anyhow::{Result, bail};
use envsnap::check::check;
use envsnap::repository::Access;

use super::context::{Context, Global};
use super::format::{SHORT_ID, counted};
use super::progress::reporter;

/// Options of `envsnap check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also read every pack and verify every byte against its hash.
    #[arg(long)]
    pub read_data: bool,
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let repository = context.open(Access::Verify)?;
    let report = check(&repository, args.read_data, reporter().as_ref())?;
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    for damaged in &report.damaged_packs {
        let users: Vec<String> = damaged.snapshots.iter().map(|id| id.short(SHORT_ID)).collect();
        println!("damaged pack {}: {}", damaged.pack, damaged.detail);
        if users.is_empty() {
            println!("  no snapshot needs its damaged data");
        } else {
            println!("  needed by snapshots: {}", users.join(", "));
        }
    }
    for (key, problem) in &report.damaged_keys {
        println!(
            "damaged key file {key}: {problem}; its password no longer opens the repository (add a new key with `envsnap key add`, then remove this one)"
        );
    }
    for problem in &report.damaged_records {
        println!("damaged record: {problem}");
    }
    for (id, problem) in &report.damaged_snapshots {
        println!("snapshot {} cannot be fully restored: {problem}", id.short(SHORT_ID));
    }
    let scope = if args.read_data {
        format!(", read {} in full", counted(report.packs_read as u64, "pack", "packs"))
    } else {
        String::new()
    };
    if report.is_clean() {
        println!(
            "no errors: {}, {}{scope}",
            counted(report.snapshots as u64, "snapshot", "snapshots"),
            counted(report.packs as u64, "pack", "packs")
        );
        Ok(())
    } else {
        let restorable = report.snapshots - report.damaged_snapshots.len();
        if report.damaged_snapshots.is_empty() && report.damaged_packs.is_empty() {
            let keys = (!report.damaged_keys.is_empty())
                .then(|| counted(report.damaged_keys.len() as u64, "key file", "key files"));
            let records = (!report.damaged_records.is_empty())
                .then(|| counted(report.damaged_records.len() as u64, "record", "records"));
            let damaged: Vec<String> = keys.into_iter().chain(records).collect();
            bail!("the repository is damaged: {} cannot be read; every snapshot is restorable", damaged.join(" and "))
        }
        bail!(
            "the repository is damaged: {} of {} snapshots are affected, {restorable} are fully restorable; \
             restoring an affected snapshot restores every file whose data is intact",
            report.damaged_snapshots.len(),
            report.snapshots
        )
    }
}
