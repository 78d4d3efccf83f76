//! `envsnap status`

use std::io::Write;

use anyhow::Result;
use envsnap::activity::Activity;
use envsnap::config::ConfigError;
use envsnap::jobs::JobState;
use envsnap::repository::Access;
use envsnap::snapshot::Trigger;
use envsnap::store::lock::RepositoryLock;
use serde::Serialize;

use super::context::{Context, Global};
use super::format::{SHORT_ID, SnapshotView, bytes, counted};

/// Options of `envsnap status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment (default: the checked-out branch).
    #[arg(long, value_name = "BRANCH")]
    pub env: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One element of the environment, as configured for it.
#[derive(Serialize)]
struct ElementStatus {
    name: String,
    kind: &'static str,
    /// The directory of a mount; the address of a service.
    location: String,
}

/// What `status --json` prints.
#[derive(Serialize)]
struct Status {
    env: String,
    #[serde(rename = "type")]
    env_type: String,
    protected: bool,
    commit: Option<String>,
    elements: Vec<ElementStatus>,
    newest: Option<SnapshotView>,
    snapshots: usize,
    /// The writer at work in the repository, by its own description.
    running: Option<String>,
    /// The backup jobs of every environment that are queued or running.
    jobs: Vec<SnapshotView>,
    /// Whether `[schedule]` snapshots this environment, and when it was last due.
    scheduled: bool,
    recent: Vec<Activity>,
}

/// What `status` shows for an element it cannot resolve for want of an environment
/// variable; any other error is an error.
fn unresolved(error: anyhow::Error) -> Result<String> {
    match error.downcast_ref::<ConfigError>() {
        Some(ConfigError::UnsetVariable { variable, .. }) => Ok(format!("needs ${{{variable}}}, which is not set")),
        _ => Err(error),
    }
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let env = context.workspace.environment(args.env.as_deref())?;
    let config = context.config()?;
    let repository = context.open(Access::Read)?;
    // Status needs no secret: an element whose `${VAR}` is not set is shown with
    // what it needs instead of its address, and the others as usual.
    let root = context.work_tree();
    let mut elements = Vec::new();
    for mount in config.mounts() {
        let location = match context.mount_named(&mount.name, &env, root) {
            Ok(Some(resolved)) => resolved.path.display().to_string(),
            Ok(None) => continue,
            Err(error) => unresolved(error)?,
        };
        elements.push(ElementStatus { name: mount.name.clone(), kind: "mount", location });
    }
    for service in config.services() {
        let location = match context.service_named(&service.name, &env) {
            Ok(Some(resolved)) => resolved.service.address(),
            Ok(None) => continue,
            Err(error) => unresolved(error)?,
        };
        elements.push(ElementStatus { name: service.name.clone(), kind: "service", location });
    }
    let snapshots = repository.snapshots(Some(&env))?;
    let commit = super::backup::commit_of(&context, &env)?;
    let status = Status {
        env_type: config.environment_type(&env).to_string(),
        protected: config.is_protected(&env),
        commit,
        elements,
        newest: snapshots.first().map(SnapshotView::of),
        snapshots: snapshots.len(),
        running: RepositoryLock::writer(&context.repository_path)?,
        jobs: repository.jobs(None)?.iter().filter(|job| !job.state.ended()).map(SnapshotView::of_job).collect(),
        scheduled: config.schedule().is_some_and(|schedule| schedule.applies_to(&env)),
        recent: repository.activities(Some(&env), Some(5))?,
        env,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &status)?;
        writeln!(out)?;
        return Ok(());
    }
    let mut kind = status.env_type.clone();
    if status.protected {
        kind.push_str(", protected");
    }
    writeln!(out, "environment  {} ({kind})", status.env)?;
    if let Some(commit) = &status.commit {
        writeln!(out, "commit       {}", commit.get(..10).unwrap_or(commit))?;
    }
    for (index, element) in status.elements.iter().enumerate() {
        let label = if index == 0 { "elements" } else { "" };
        writeln!(out, "{label:<12} {} ({}: {})", element.name, element.kind, element.location)?;
    }
    match snapshots.first() {
        Some(newest) => writeln!(
            out,
            "newest       {}, {} ({}), {}; {} in this environment",
            newest.id.short(SHORT_ID),
            newest.manifest.created.format("%Y-%m-%d %H:%M:%S UTC"),
            newest.manifest.trigger,
            bytes(newest.manifest.size()),
            counted(status.snapshots as u64, "snapshot", "snapshots"),
        )?,
        None => writeln!(out, "newest       none yet: take one with `envsnap backup`")?,
    }
    let automated = snapshots.iter().find(|snapshot| snapshot.manifest.trigger == Trigger::Schedule);
    match (status.scheduled, config.schedule(), automated) {
        (true, Some(schedule), Some(last)) => writeln!(
            out,
            "schedule     `{}`; last automated snapshot {}",
            schedule.cron.as_str(),
            last.manifest.created.format("%Y-%m-%d %H:%M UTC")
        )?,
        (true, Some(schedule), None) => {
            writeln!(out, "schedule     `{}`; no automated snapshot yet", schedule.cron.as_str())?;
        }
        _ => writeln!(out, "schedule     none for this environment")?,
    }
    // A running backup holds the writers' lock: its job line says more than the
    // lock's note, which is shown for the writers that are not backups (a prune, say).
    let backing_up = status.jobs.iter().any(|job| job.state == JobState::Running.as_str());
    match &status.running {
        Some(holder) if !backing_up => writeln!(out, "running      {holder}")?,
        None if status.jobs.is_empty() => writeln!(out, "running      nothing")?,
        _ => {}
    }
    for job in &status.jobs {
        writeln!(
            out,
            "{:<12} {} backup {} of {}, {}%, asked for {}",
            job.state,
            job.trigger,
            job.id.get(..SHORT_ID).unwrap_or(&job.id),
            job.env,
            job.progress,
            job.created.replace('T', " ").trim_end_matches('Z'),
        )?;
    }
    for (index, entry) in status.recent.iter().enumerate() {
        let label = if index == 0 { "recent" } else { "" };
        writeln!(
            out,
            "{label:<12} {} {} {} by {}{}",
            entry.started.format("%Y-%m-%d %H:%M"),
            entry.action,
            entry.result.as_str(),
            entry.user,
            entry.detail.as_deref().map(|detail| format!(": {detail}")).unwrap_or_default()
        )?;
    }
    Ok(())
}
