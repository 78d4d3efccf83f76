//! `envsnap export` (alias `backup:get`): one element of a snapshot as a standard file.

use std::path::PathBuf;

use anyhow::Result;
use envsnap::export::Export;
use envsnap::repository::Access;

use super::context::{Context, Global};
use super::format::{SHORT_ID, bytes};
use super::output::note;
use super::progress::reporter;

/// Options of `envsnap export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot: an id prefix of at least 4 characters, or `latest` (the default):
    /// the newest complete snapshot of the whole environment (the current one, or
    /// --env) taken by a user, a hook or a schedule; never a safety or --element one.
    #[arg(default_value = "latest")]
    pub id: String,
    /// The element to export: a mount or a service of the snapshot.
    #[arg(long, value_name = "NAME")]
    pub element: String,
    /// The file to write; its name chooses the format: .tar.gz or .tar.zst for a mount;
    /// the dump's own extension (.sql, .rdb, .sqlite, …), optionally .gz or .zst, for a
    /// service. An existing file is never overwritten.
    #[arg(long, value_name = "PATH")]
    pub to: PathBuf,
    /// For `latest`: the environment (default: the checked-out branch).
    #[arg(long, value_name = "BRANCH")]
    pub env: Option<String>,
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let repository = context.open(Access::Read)?;
    repository.require_read_key("export snapshots")?;
    let snapshot = context.resolve(&repository, &args.id, args.env.as_deref())?;
    let export = Export::new(&repository, &snapshot, &args.element)?;
    let report = export.to_file(&args.to, reporter().as_ref())?;
    note!(
        "exported {} of snapshot {} to {} ({}, {} of data)",
        args.element,
        snapshot.id.short(SHORT_ID),
        args.to.display(),
        bytes(report.written_bytes),
        bytes(report.content_bytes)
    );
    Ok(())
}
