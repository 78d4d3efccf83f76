//! Taking a snapshot from the command line: the backup itself, then its git note.
//! Shared by `backup`, the safety snapshot of `restore`, and the git hooks.

use anyhow::Result;
use envsnap::backup::{BackupOptions, BackupReport, ServiceSource, backup};
use envsnap::element::mount::Mount;
use envsnap::git::notes;
use envsnap::repository::Repository;
use envsnap::snapshot::{Mode, Snapshot, Trigger};

use super::context::Context;
use super::progress::reporter;

/// What a snapshot is of and why; the rest comes from the context.
pub struct Request<'a> {
    /// The environment.
    pub env: &'a str,
    /// Its commit, when known.
    pub commit: Option<String>,
    /// Its mounts.
    pub mounts: Vec<Mount>,
    /// Its services.
    pub services: Vec<ServiceSource>,
    /// Why.
    pub trigger: Trigger,
    /// Consistent or live.
    pub mode: Mode,
    /// A note.
    pub note: Option<String>,
    /// When retention may remove it.
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
}

/// Takes the snapshot and notes its id on its commit (`refs/notes/envsnap`). A note
/// that cannot be written is a warning: the snapshot itself is safe.
pub fn take(context: &Context, repository: &Repository, request: Request<'_>) -> Result<BackupReport> {
    let options = BackupOptions {
        env: request.env.to_owned(),
        commit: request.commit,
        trigger: request.trigger,
        mode: request.mode,
        note: request.note,
        expires: request.expires,
        user: whoami(),
        host: hostname(),
        mounts: request.mounts,
        services: request.services,
    };
    let pause = match (request.mode, context.config.as_ref()) {
        (Mode::Consistent, Some(config)) => {
            let lookup = &envsnap::config::process_environment;
            Some((config.pause_for(request.env, lookup)?, config.resume_for(request.env, lookup)?))
        }
        _ => None,
    };
    if let Some((Some(command), _)) = &pause {
        run_hook_command(context, "pause", command)
            .map_err(|error| anyhow::anyhow!("{error}; no snapshot was taken (a --live snapshot needs no pause)"))?;
    }
    let outcome = backup(repository, &options, reporter().as_ref());
    if let Some((_, Some(command))) = &pause {
        // Resumed whatever the backup's outcome: an environment left paused is worse
        // than a failed snapshot.
        if let Err(error) = run_hook_command(context, "resume", command) {
            eprintln!("envsnap: {error}; the environment may still be paused: run `{command}` by hand");
        }
    }
    let report = outcome?;
    if let Some(commit) = &report.snapshot.manifest.commit
        && let Err(error) = notes::add_line(context.work_tree(), commit, &note_line(&report.snapshot))
    {
        eprintln!("envsnap: warning: could not note snapshot {} on commit {commit}: {error}", report.snapshot.id);
    }
    Ok(report)
}

/// Runs a `pause` or `resume` command of envsnap.toml with `sh -c` in the work tree.
fn run_hook_command(context: &Context, which: &str, command: &str) -> Result<()> {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(context.work_tree())
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(|error| anyhow::anyhow!("cannot run the {which} command `{command}`: {error}"))?;
    if !status.success() {
        anyhow::bail!("the {which} command `{command}` failed ({status}); fix `{which}` in envsnap.toml");
    }
    Ok(())
}

/// The line a snapshot adds to its commit's note.
pub fn note_line(snapshot: &Snapshot) -> String {
    let manifest = &snapshot.manifest;
    format!(
        "envsnap snapshot {} env={} trigger={} created={}",
        snapshot.id,
        manifest.env,
        manifest.trigger,
        manifest.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// The user's name, for the record.
pub fn whoami() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".to_owned())
}

/// The machine's name, for the record.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
