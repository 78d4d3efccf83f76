//! `envsnap backup`

use std::io::Write;

use anyhow::Result;
use chrono::{Duration, Utc};
use envsnap::Error;
use envsnap::repository::Access;
use envsnap::snapshot::{ElementKind, Mode, Trigger};

use super::context::{Context, Global};
use super::format::{SHORT_ID, SnapshotView, bytes, counted};
use super::take::{Request, take};

/// Options of `envsnap backup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment (branch) to snapshot; default: the checked-out branch.
    #[arg(long, value_name = "BRANCH")]
    pub env: Option<String>,
    /// Do not pause the environment; elements may disagree slightly.
    #[arg(long)]
    pub live: bool,
    /// Only these elements (repeatable).
    #[arg(long = "element", value_name = "NAME")]
    pub elements: Vec<String>,
    /// Let retention remove the snapshot after DAYS days.
    #[arg(long, value_name = "DAYS")]
    pub keep_for: Option<u32>,
    /// A note to keep with the snapshot.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// Print the snapshot as JSON.
    #[arg(long)]
    pub json: bool,
    /// Why the snapshot is taken (used by hooks and schedules).
    #[arg(long, default_value = "manual", hide = true)]
    pub trigger: String,
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let env = context.workspace.environment(args.env.as_deref())?;
    let mut mounts = context.mounts(&env)?;
    let mut services = context.services(&env)?;
    if !args.elements.is_empty() {
        let known: Vec<String> =
            mounts.iter().map(|mount| mount.name.clone()).chain(services.iter().map(|s| s.name.clone())).collect();
        for name in &args.elements {
            if !known.contains(name) {
                return Err(
                    Error::UnknownElement { name: name.clone(), context: " in envsnap.toml".into(), known }.into()
                );
            }
        }
        mounts.retain(|mount| args.elements.contains(&mount.name));
        services.retain(|service| args.elements.contains(&service.name));
    }
    if mounts.is_empty() && services.is_empty() {
        return Err(Error::NoElements.into());
    }
    let trigger: Trigger = args.trigger.parse().map_err(anyhow::Error::msg)?;
    // The commit is that of the environment's branch, which need not be checked out.
    let commit = if args.env.is_none() || context.workspace.branch.as_deref() == Some(env.as_str()) {
        context.workspace.commit.clone()
    } else {
        envsnap::git::branch_commit(&context.workspace.work_tree, &env)?
    };
    let repository = context.open(Access::Write)?;
    let request = Request {
        env: &env,
        commit,
        mounts,
        services,
        trigger,
        mode: if args.live { Mode::Live } else { Mode::Consistent },
        note: args.note.clone(),
        expires: args.keep_for.map(|days| Utc::now() + Duration::days(i64::from(days))),
    };
    let report = take(&context, &repository, request)?;
    let snapshot = &report.snapshot;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &SnapshotView::of(snapshot))?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", snapshot.id)?;
    }
    let services = snapshot.manifest.elements.iter().filter(|element| element.kind == ElementKind::Service).count();
    let mut parts = Vec::new();
    if services < snapshot.manifest.elements.len() {
        parts.push(format!(
            "{} ({} read, {} unchanged)",
            counted(report.files_read + report.files_unchanged, "file", "files"),
            report.files_read,
            report.files_unchanged
        ));
    }
    if services > 0 {
        parts.push(counted(services as u64, "service", "services"));
    }
    eprintln!(
        "snapshot {} of {env}: {} in {}, {} new in the repository",
        snapshot.id.short(SHORT_ID),
        bytes(snapshot.manifest.size()),
        parts.join(" and "),
        bytes(snapshot.manifest.stored),
    );
    if report.skipped > 0 {
        eprintln!("left out {} special files (sockets, fifos, devices)", report.skipped);
    }
    Ok(())
}
