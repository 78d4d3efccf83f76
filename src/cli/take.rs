//! Taking a snapshot from the command line: the backup itself, then its git note.
//! Shared by `backup`, the safety snapshot of `restore`, and the git hooks.

use anyhow::Result;
use envsnap::backup::{BackupOptions, BackupReport, PauseControl, ServiceSource, backup};
use envsnap::element::mount::Mount;
use envsnap::git::notes;
use envsnap::progress::Progress;
use envsnap::repository::Repository;
use envsnap::snapshot::{Mode, Snapshot, Trigger};

use super::clock;
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
    /// Days retention must keep it, whatever the rules say.
    pub keep_for: Option<u32>,
    /// Where progress goes; `None`: a bar on a terminal.
    pub progress: Option<&'a dyn Progress>,
}

/// Takes the snapshot and notes its id on its commit (`refs/notes/envsnap`). A note
/// that cannot be written is a warning: the snapshot itself is safe.
pub fn take(context: &Context, repository: &Repository, request: Request<'_>) -> Result<BackupReport> {
    let pause = match (request.mode, context.config.as_ref()) {
        (Mode::Consistent, Some(config)) => {
            let lookup = &envsnap::config::process_environment;
            ShellPause::new(context, config.pause_for(request.env, lookup)?, config.resume_for(request.env, lookup)?)
        }
        _ => None,
    };
    let created = clock::now()?;
    let options = BackupOptions {
        env: request.env.to_owned(),
        commit: request.commit,
        created,
        trigger: request.trigger,
        mode: request.mode,
        note: request.note,
        expires: request.keep_for.map(|days| created + chrono::Duration::days(i64::from(days))),
        user: envsnap::git::branch::user_email(context.work_tree()).unwrap_or_else(whoami),
        host: hostname(),
        mounts: request.mounts,
        services: request.services,
        pause: pause.map(|pause| Box::new(pause) as Box<dyn PauseControl>),
    };
    // A bar only when the caller brings no progress of its own.
    let bar = request.progress.is_none().then(reporter);
    let progress = request.progress.or(bar.as_deref()).unwrap_or(&envsnap::progress::NoProgress);
    let report = backup(repository, &options, progress)?;
    if let Some(error) = &report.resume_error {
        eprintln!("envsnap: {error}; the snapshot is complete, but the environment may still be paused");
    }
    if let Some(commit) = &report.snapshot.manifest.commit
        && let Err(error) = notes::add_line(context.work_tree(), commit, &note_line(&report.snapshot))
    {
        eprintln!("envsnap: warning: could not note snapshot {} on commit {commit}: {error}", report.snapshot.id);
    }
    Ok(report)
}

/// The `pause` and `resume` commands of envsnap.toml, run with `sh -c` in the work tree.
struct ShellPause {
    work_tree: std::path::PathBuf,
    pause: Option<String>,
    resume: Option<String>,
}

impl ShellPause {
    /// `None` when neither command is configured.
    fn new(context: &Context, pause: Option<String>, resume: Option<String>) -> Option<Self> {
        (pause.is_some() || resume.is_some()).then(|| ShellPause {
            work_tree: context.work_tree().to_owned(),
            pause,
            resume,
        })
    }
}

/// The resume command of a paused environment, for the interrupt handler: an
/// interrupted consistent snapshot must still resume the environment.
static PAUSED: std::sync::Mutex<Option<(std::path::PathBuf, String)>> = std::sync::Mutex::new(None);

impl PauseControl for ShellPause {
    fn pause(&self) -> envsnap::Result<()> {
        if let Some(resume) = &self.resume {
            *PAUSED.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((self.work_tree.clone(), resume.clone()));
            // Installed once per process; a second install fails harmlessly.
            let _ = ctrlc::set_handler(|| {
                let paused = PAUSED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
                if let Some((work_tree, resume)) = paused {
                    eprintln!("\nenvsnap: interrupted; resuming the environment with `{resume}`");
                    let _ = run_shell(&work_tree, "resume", &resume);
                }
                std::process::exit(130);
            });
        }
        match &self.pause {
            Some(command) => run_shell(&self.work_tree, "pause", command),
            None => Ok(()),
        }
    }

    fn resume(&self) -> envsnap::Result<()> {
        let paused = PAUSED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        match (&self.resume, paused) {
            (Some(command), Some(_)) => run_shell(&self.work_tree, "resume", command),
            _ => Ok(()),
        }
    }
}

/// Runs a `pause` or `resume` command with `sh -c` in the work tree.
fn run_shell(work_tree: &std::path::Path, which: &'static str, command: &str) -> envsnap::Result<()> {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(work_tree)
        .stdin(std::process::Stdio::null())
        .status();
    let outcome = match status {
        Ok(status) if status.success() => return Ok(()),
        Ok(status) => format!("failed ({status})"),
        Err(error) => format!("cannot be run ({error})"),
    };
    let consequence = if which == "pause" { "no snapshot was taken" } else { "the environment may still be paused" };
    let detail = format!("{outcome}; {consequence}; fix `{which}` in envsnap.toml, or take a --live snapshot");
    Err(envsnap::Error::PauseFailed { which, command: command.to_owned(), detail })
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
