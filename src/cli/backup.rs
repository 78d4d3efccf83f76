//! `envsnap backup`

use std::io::Write;

use std::sync::atomic::AtomicBool;

use anyhow::{Context as _, Result};
use envsnap::Error;
use envsnap::backup::{BackupReport, ServiceSource};
use envsnap::config::OverLimit;
use envsnap::element::mount::Mount;
use envsnap::forget;
use envsnap::id::ObjectId;
use envsnap::jobs::{self, Job, JobRequest};
use envsnap::repository::{Access, Repository};
use envsnap::snapshot::{ElementKind, Mode, Trigger};

use super::activity;
use super::clock;
use super::context::{Context, Global};
use super::format::{SHORT_ID, SnapshotView, bytes, counted};
use super::output::{self, detail, note};
use super::take::{Request, hostname, jobs_catalog, take, whoami};

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
    /// Return at once, printing the job's id (with --json: the queued job as a snapshot
    /// object), while the snapshot is taken by a process of its own; `envsnap wait ID`
    /// waits for it.
    #[arg(long)]
    pub no_wait: bool,
    /// Answer yes to any question, as the platforms' cron lines
    /// (`backup:create --yes --no-wait`) expect; a backup asks none today.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Run the queued job ID (the process `--no-wait` starts).
    #[arg(long, hide = true, value_name = "ID")]
    pub job: Option<String>,
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let started = std::time::Instant::now();
    let context = Context::discover(global)?;
    let env = context.workspace.environment(args.env.as_deref())?;
    activity::env(&env);
    // Everything that can be checked is checked before the job is queued.
    let (mounts, services) = elements(&context, &env, context.work_tree(), &args.elements)?;
    let partial = is_partial(&context, &args.elements)?;
    let trigger: Trigger = args.trigger.parse().map_err(anyhow::Error::msg)?;
    let commit = commit_of(&context, &env)?;
    let mode = if args.live { Mode::Live } else { Mode::Consistent };
    let catalog = jobs_catalog(&context)?;
    jobs::reap(&context.repository_path, &catalog)?;

    // The job, and the lock that says it is alive: held here, or handed to the
    // process that runs it in the background.
    let (job, _alive) = match &args.job {
        Some(id) => {
            let job = catalog.jobs_with_prefix(id)?.into_iter().find(|job| &job.id == id && !job.state.ended());
            let job = job.with_context(|| format!("no queued job {id} in {}", context.repository_path.display()))?;
            ignore_hangup()?;
            (job, None)
        }
        None => {
            let user = envsnap::git::branch::user_email(context.work_tree()).unwrap_or_else(whoami);
            // The configured keep_for is for what people ask for, not for automated snapshots.
            let retention = context.config.as_ref().and_then(|config| config.retention());
            let keep_for = args.keep_for.or(retention.filter(|_| trigger == Trigger::Manual).and_then(|r| r.keep_for));
            let request = JobRequest {
                env: &env,
                commit: commit.clone(),
                trigger,
                mode,
                note: args.note.clone(),
                keep_for,
                user: &user,
                host: &hostname(),
            };
            let job = Job::new(request, clock::now()?);
            let alive = jobs::hold(&context.repository_path, &job.id)?;
            catalog.add_job(&job)?;
            if args.no_wait {
                return start_in_background(&context, &job, alive, args.json);
            }
            (job, Some(alive))
        }
    };
    let outcome =
        run_job(&context, &job, args, Capture { env: &env, commit, mounts, services, trigger, mode, partial });
    // Anew: a `repair` may have replaced the catalog's file while the job waited.
    let catalog = jobs_catalog(&context).unwrap_or(catalog);
    let report = match outcome {
        Ok(report) => {
            // The snapshot is published: a job record that cannot be written (a full
            // disk, say) must not make it look failed.
            if let Err(error) =
                jobs::finish(&context.repository_path, &catalog, &job.id, Some(&report.snapshot.id), None)
            {
                eprintln!(
                    "envsnap: warning: snapshot {} is complete, but its job record is not: {error}",
                    report.snapshot.id
                );
            }
            report
        }
        Err(error) => {
            // A refused job was removed, and this changes nothing. The backup's own
            // error is the one to report, even if its record cannot be written.
            let failure = format!("{error:#}");
            if let Err(record) = jobs::finish(&context.repository_path, &catalog, &job.id, None, Some(&failure)) {
                eprintln!("envsnap: warning: could not record the failure of job {}: {record}", job.id);
            }
            return Err(error);
        }
    };
    let snapshot = &report.snapshot;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &SnapshotView::of(snapshot))?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", snapshot.id)?;
    }
    if output::says(output::Level::Normal) {
        eprint!("{}", summary(&report));
    }
    for element in &report.snapshot.manifest.elements {
        let took = report.durations.iter().find(|(name, _)| name == &element.name).map(|(_, took)| *took);
        let took = took.map(|took| format!(" in {:.2} s", took.as_secs_f64())).unwrap_or_default();
        detail!("  {} ({}): {}{took}", element.name, element.kind.as_str(), bytes(element.size));
    }
    if let Some(paused) = report.paused {
        detail!("the environment was paused for {:.2} s", paused.as_secs_f64());
    }
    detail!("took {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// What a backup job captures.
struct Capture<'a> {
    env: &'a str,
    commit: Option<String>,
    mounts: Vec<Mount>,
    services: Vec<ServiceSource>,
    trigger: Trigger,
    mode: Mode,
    partial: bool,
}

/// Runs a queued job: waits for the repository (the job stays `queued`), checks the
/// manual limit, then captures (`running`, with progress) and publishes.
fn run_job(context: &Context, job: &Job, args: &Args, capture: Capture<'_>) -> Result<BackupReport> {
    let Capture { env, commit, mounts, services, trigger, mode, partial } = capture;
    // First come, first served: the job waits in line, then for any other writer.
    jobs::wait_for_turn(&context.repository_path, &job.id, &mut |ahead| {
        note!(
            "envsnap: backup of {} queued behind the backup {} of {} ({})",
            env,
            ahead.id.get(..SHORT_ID).unwrap_or(&ahead.id),
            ahead.env,
            ahead.state.as_str()
        );
    })?;
    let repository = context.open(Access::Write)?;
    // Anew, under the writers' lock: a `repair` may have replaced the catalog's file
    // while this job waited.
    let catalog = &jobs_catalog(context)?;
    let retention = context.config.as_ref().and_then(|config| config.retention());
    let limit = match (trigger, retention, context.config.as_ref()) {
        (Trigger::Manual, Some(retention), Some(config)) => {
            let env_type = config.environment_type(env);
            retention.policy.manual_limit.get(&env_type).map(|&limit| (limit, env_type, retention.over_limit))
        }
        _ => None,
    };
    if let Some((limit, env_type, OverLimit::Refuse)) = limit {
        let manual = forget::manual_snapshots(&repository, env)?;
        if let Some(oldest) = manual.last().filter(|_| manual.len() >= limit as usize) {
            // Refused before it began: no job to show, unless it ran in the background,
            // where the job's record is the only place `wait` finds the reason.
            if args.job.is_none() {
                catalog.remove_job(&job.id)?;
            }
            // The one to name is the oldest that `delete` takes: pinned ones it refuses.
            let pinned = repository.pinned()?;
            let error = match manual.iter().rev().find(|snapshot| !pinned.contains(&snapshot.id)) {
                Some(unpinned) => Error::ManualLimit {
                    env: env.to_owned(),
                    env_type,
                    limit,
                    oldest: unpinned.id.short(SHORT_ID),
                    oldest_created: unpinned.manifest.created.format("%Y-%m-%d %H:%M UTC").to_string(),
                },
                None => {
                    Error::ManualLimitPinned { env: env.to_owned(), env_type, limit, oldest: oldest.id.short(SHORT_ID) }
                }
            };
            return Err(error.into());
        }
    }
    catalog.start_job(&job.id, chrono::Utc::now())?;
    let request = Request {
        env,
        commit,
        mounts,
        services,
        trigger,
        mode,
        note: job.note.clone(),
        keep_for: job.keep_for,
        partial,
        job: Some(job),
    };
    let report = take(context, &repository, request)?;
    activity::snapshot(&report.snapshot.id);
    if let Some((limit, _, OverLimit::DropOldest)) = limit
        && let Err(error) = drop_oldest_manual(&repository, env, limit, &report.snapshot.id)
    {
        // The snapshot is published: failing to drop an older one is not its failure.
        eprintln!("envsnap: warning: snapshot {} is complete, but: {error:#}", report.snapshot.id);
    }
    Ok(report)
}

/// Starts this same command again as a process of its own that runs job `job`,
/// handing it the job's lock as its standard input, and returns.
fn start_in_background(context: &Context, job: &Job, alive: std::fs::File, json: bool) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let log_path = context.repository_path.join("jobs").join(format!("{}.log", job.id));
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let arguments: Vec<std::ffi::OsString> =
        std::env::args_os().skip(1).filter(|argument| argument != "--no-wait").collect();
    std::process::Command::new(std::env::current_exe().context("finding the envsnap binary")?)
        .args(arguments)
        .args(["--job", &job.id])
        .envs(super::password::prompted().map(|password| ("ENVSNAP_PASSWORD", password)))
        .stdin(alive)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        // Out of the terminal's process group: closing the terminal or Ctrl-C there
        // does not reach it.
        .process_group(0)
        .spawn()
        .context("starting the background backup")?;
    activity::handed_off();
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &SnapshotView::of_job(job))?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", job.id)?;
    }
    note!(
        "backup of {} queued as {}; `envsnap wait {}` waits for it, `envsnap list` shows its progress",
        job.env,
        job.id.get(..SHORT_ID).unwrap_or(&job.id),
        job.id.get(..SHORT_ID).unwrap_or(&job.id)
    );
    Ok(())
}

/// A background job outlives the terminal that started it: a hangup is ignored.
fn ignore_hangup() -> Result<()> {
    signal_hook::flag::register(signal_hook::consts::SIGHUP, std::sync::Arc::new(AtomicBool::new(false)))
        .context("ignoring SIGHUP")?;
    Ok(())
}

/// Deletes the oldest manual snapshots of `env` past `limit`, sparing those that are
/// pinned or whose `--keep-for` date is ahead: they were asked to stay.
fn drop_oldest_manual(repository: &Repository, env: &str, limit: u32, taken: &ObjectId) -> Result<()> {
    let manual = forget::manual_snapshots(repository, env)?;
    let pinned = repository.pinned()?;
    let now = clock::now()?;
    let mut excess = manual.len().saturating_sub(limit as usize);
    for snapshot in manual.iter().rev() {
        if excess == 0 {
            break;
        }
        // The snapshot just taken is never the one to go.
        if &snapshot.id == taken
            || pinned.contains(&snapshot.id)
            || snapshot.manifest.expires.is_some_and(|until| until > now)
        {
            continue;
        }
        repository.delete(&snapshot.id)?;
        activity::detail(format!("dropped the oldest manual snapshot, {}", snapshot.id.short(SHORT_ID)));
        excess -= 1;
        eprintln!(
            "dropped manual snapshot {} of {env} taken {}, the oldest past the limit of {limit} \
             (manual_over_limit = \"drop-oldest\")",
            snapshot.id.short(SHORT_ID),
            snapshot.manifest.created.format("%Y-%m-%d %H:%M UTC"),
        );
    }
    if excess > 0 {
        eprintln!(
            "envsnap: {env} keeps {} past its limit of {limit}: they are pinned or kept by --keep-for",
            counted(excess as u64, "manual snapshot", "manual snapshots")
        );
    }
    Ok(())
}

/// The elements of environment `env` to capture, relative mount paths taken from
/// `root`: all of them, or those `only` names. Only the elements captured are
/// resolved, so `--element files` works without the database's `${PASSWORD}`.
pub fn elements(
    context: &Context,
    env: &str,
    root: &std::path::Path,
    only: &[String],
) -> Result<(Vec<Mount>, Vec<ServiceSource>)> {
    if only.is_empty() {
        let (mounts, services) = (context.mounts_in(env, root)?, context.services(env)?);
        if mounts.is_empty() && services.is_empty() {
            return Err(Error::NoElements.into());
        }
        return Ok((mounts, services));
    }
    let config = context.config()?;
    let known: Vec<String> = config.element_names().map(str::to_owned).collect();
    if let Some(name) = only.iter().find(|name| !known.contains(name)) {
        return Err(Error::UnknownElement { name: name.clone(), context: " in envsnap.toml".into(), known }.into());
    }
    // In the order envsnap.toml gives them, each once.
    let (mut mounts, mut services) = (Vec::new(), Vec::new());
    for name in known.iter().filter(|name| only.contains(name)) {
        if let Some(mount) = context.mount_named(name, env, root)? {
            mounts.push(mount);
        } else if let Some(service) = context.service_named(name, env)? {
            services.push(service);
        }
    }
    Ok((mounts, services))
}

/// Whether the elements `only` names leave out some of envsnap.toml's: the snapshot
/// is then partial, and never what `latest` names.
pub fn is_partial(context: &Context, only: &[String]) -> Result<bool> {
    Ok(!only.is_empty() && context.config()?.element_names().any(|name| !only.iter().any(|given| given == name)))
}

/// The commit of environment `env`'s branch, which need not be checked out.
pub fn commit_of(context: &Context, env: &str) -> Result<Option<String>> {
    if context.workspace.branch.as_deref() == Some(env) {
        Ok(context.workspace.commit.clone())
    } else {
        Ok(envsnap::git::branch_commit(&context.workspace.work_tree, env)?)
    }
}

/// What a backup captured, in a line or two for the user.
pub fn summary(report: &BackupReport) -> String {
    let snapshot = &report.snapshot;
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
    let mut text = format!(
        "snapshot {} of {}: {} in {}, {} new in the repository\n",
        snapshot.id.short(SHORT_ID),
        snapshot.manifest.env,
        bytes(snapshot.manifest.size()),
        parts.join(" and "),
        bytes(snapshot.manifest.stored),
    );
    if report.skipped > 0 {
        text.push_str(&format!("left out {} special files (sockets, fifos, devices)\n", report.skipped));
    }
    text
}
