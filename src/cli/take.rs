//! Taking a snapshot from the command line: the backup itself as a job, then its git
//! note. Shared by `backup`, the safety snapshot of `restore`, the git hooks and
//! `schedule run`.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use envsnap::Error;
use envsnap::backup::{BackupOptions, BackupReport, PauseControl, ServiceSource, backup};
use envsnap::catalog::Catalog;
use envsnap::element::mount::Mount;
use envsnap::git::notes;
use envsnap::jobs::{self, Job, JobRequest};
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
    /// Whether these are only some of the environment's elements (`--element`).
    pub partial: bool,
    /// The job this snapshot is, recorded and started by `backup`. `None`: the
    /// snapshot is recorded as a job of its own, running from the start (its caller
    /// holds the writers' lock), so that `list` and `status` show the snapshots of
    /// hooks, schedules and restores at work too, and a killed one is marked failed.
    pub job: Option<&'a Job>,
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
    let user = envsnap::git::branch::user_email(context.work_tree()).unwrap_or_else(whoami);
    let record = match request.job {
        Some(job) => JobRecord::Given(job),
        None => JobRecord::Own(Box::new(OwnJob::start(context, &request, &user, created)?)),
    };
    let job = record.job();
    // Whatever fails from here on fails the job, which its record must say.
    let outcome = (|| -> Result<BackupReport> {
        // Progress is measured against the size of the environment's last snapshot.
        let expected = repository.snapshots(Some(request.env))?.first().map(|last| last.manifest.size());
        let bar = reporter();
        let progress = JobProgress::new(context, &job.id, expected, bar.as_ref())?;
        let options = BackupOptions {
            env: request.env.to_owned(),
            commit: request.commit,
            created,
            trigger: request.trigger,
            mode: request.mode,
            note: request.note,
            expires: request.keep_for.map(|days| created + chrono::Duration::days(i64::from(days))),
            user,
            host: hostname(),
            mounts: request.mounts,
            services: request.services,
            partial: request.partial,
            pause: pause.map(|pause| Box::new(pause) as Box<dyn PauseControl>),
        };
        Ok(backup(repository, &options, &progress)?)
    })();
    if let JobRecord::Own(own) = &record {
        own.finish(&outcome);
    }
    let report = outcome?;
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

/// The job a snapshot is: its caller's, or one of its own.
enum JobRecord<'a> {
    /// Recorded, started and finished by the caller (`backup`).
    Given(&'a Job),
    /// Recorded here; finished here too.
    Own(Box<OwnJob>),
}

impl JobRecord<'_> {
    fn job(&self) -> &Job {
        match self {
            JobRecord::Given(job) => job,
            JobRecord::Own(own) => &own.job,
        }
    }
}

/// The job a snapshot taken without one is recorded as, and the lock that says it is
/// alive.
struct OwnJob {
    job: Job,
    root: std::path::PathBuf,
    catalog: Catalog,
    _alive: std::fs::File,
}

impl OwnJob {
    /// Records the job of `request`, running from now.
    fn start(
        context: &Context,
        request: &Request<'_>,
        user: &str,
        created: chrono::DateTime<chrono::Utc>,
    ) -> Result<Self> {
        let asked = JobRequest {
            env: request.env,
            commit: request.commit.clone(),
            trigger: request.trigger,
            mode: request.mode,
            note: request.note.clone(),
            keep_for: request.keep_for,
            user,
            host: &hostname(),
        };
        let job = Job::new(asked, created);
        let alive = jobs::hold(&context.repository_path, &job.id)?;
        let catalog = jobs_catalog(context)?;
        catalog.add_job(&job)?;
        catalog.start_job(&job.id, chrono::Utc::now())?;
        Ok(OwnJob { job, root: context.repository_path.clone(), catalog, _alive: alive })
    }

    /// Records how the backup ended. The backup's own outcome is what counts: a record
    /// that cannot be written is a warning.
    fn finish(&self, outcome: &Result<BackupReport>) {
        let (snapshot, error) = match outcome {
            Ok(report) => (Some(&report.snapshot.id), None),
            Err(error) => (None, Some(format!("{error:#}"))),
        };
        let recorded = jobs::finish(&self.root, &self.catalog, &self.job.id, snapshot, error.as_deref());
        if let Err(error) = recorded {
            eprintln!("envsnap: warning: could not record the end of job {}: {error}", self.job.id);
        }
    }
}

/// The catalog of the repository, opened on its own for the jobs table: the job is
/// recorded before the repository is opened for writing, which may wait.
pub fn jobs_catalog(context: &Context) -> Result<Catalog> {
    let root = &context.repository_path;
    if !root.join("config.json").is_file() {
        return Err(Error::RepositoryMissing { path: root.clone() }.into());
    }
    Ok(Catalog::open(&root.join("catalog.sqlite"))?)
}

/// Progress of a running job: into the catalog (at most twice a second) for `list`
/// and `wait`, and on to the terminal's bar.
struct JobProgress<'a> {
    id: &'a str,
    /// The size of the environment's last snapshot.
    expected: Option<u64>,
    /// Without a last snapshot: the sum of the estimates of the mounts counted so far.
    estimated: AtomicU64,
    done: AtomicU64,
    /// A connection of its own, the last write's time and figure.
    written: std::sync::Mutex<(Catalog, std::time::Instant, u8)>,
    bar: &'a dyn Progress,
}

impl<'a> JobProgress<'a> {
    fn new(context: &Context, id: &'a str, expected: Option<u64>, bar: &'a dyn Progress) -> Result<Self> {
        let long_ago = std::time::Instant::now().checked_sub(std::time::Duration::from_secs(1));
        Ok(JobProgress {
            id,
            expected,
            estimated: AtomicU64::new(0),
            done: AtomicU64::new(0),
            written: std::sync::Mutex::new((
                jobs_catalog(context)?,
                long_ago.unwrap_or_else(std::time::Instant::now),
                0,
            )),
            bar,
        })
    }
}

impl Progress for JobProgress<'_> {
    fn begin(&self, phase: &str, total_bytes: Option<u64>) {
        self.bar.begin(phase, total_bytes);
    }

    fn estimate(&self, total_bytes: u64) {
        self.bar.estimate(total_bytes);
        self.estimated.fetch_add(total_bytes, Ordering::Relaxed);
        // What was read while the count ran may already be a figure worth writing.
        self.report(self.done.load(Ordering::Relaxed));
    }

    fn add_bytes(&self, bytes: u64) {
        self.bar.add_bytes(bytes);
        self.report(self.done.fetch_add(bytes, Ordering::Relaxed) + bytes);
    }

    fn add_file(&self) {
        self.bar.add_file();
    }

    fn finish(&self) {
        self.bar.finish();
    }
}

impl JobProgress<'_> {
    /// Writes the figure `done` bytes make, if it grew and the last write is old enough.
    fn report(&self, done: u64) {
        let expected = self.expected.unwrap_or_else(|| self.estimated.load(Ordering::Relaxed));
        // Called for every chunk from every thread: a thread that finds another one
        // writing leaves the figure to it rather than wait.
        let mut written = match self.written.try_lock() {
            Ok(written) => written,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        let (catalog, last, figure) = &mut *written;
        // Never 100 before the snapshot is published; unknown stays where it was.
        let percent = match expected {
            0 => *figure,
            _ => u8::try_from((done.saturating_mul(100) / expected).min(99)).unwrap_or(99),
        };
        // A new figure twice a second at most; the same one every few seconds, as the
        // sign of life a reaper dates a dead job's end by.
        let since = last.elapsed();
        if (percent > *figure && since >= std::time::Duration::from_millis(500))
            || since >= std::time::Duration::from_secs(5)
        {
            // Progress is a courtesy: a busy catalog must not fail the backup.
            let _ = catalog.set_job_progress(self.id, percent, chrono::Utc::now());
            (*last, *figure) = (std::time::Instant::now(), percent);
        }
    }
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

/// What a process told to stop by `signal` does (see `main`): stops the tools it runs,
/// resumes the environment if a snapshot paused it, and exits with 128 + `signal`.
/// The resume command is held throughout, so the snapshot's own resume, which its
/// failing tools may set off meanwhile, waits and finds nothing left to do.
pub(crate) fn interrupted(signal: i32) -> ! {
    let mut paused = PAUSED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    envsnap::element::service::stop_tools();
    if let Some((work_tree, resume)) = paused.take() {
        eprintln!("\nenvsnap: interrupted; resuming the environment with `{resume}`");
        let _ = run_shell(&work_tree, "resume", &resume);
    }
    std::process::exit(128 + signal)
}

impl PauseControl for ShellPause {
    fn pause(&self) -> envsnap::Result<()> {
        if let Some(resume) = &self.resume {
            *PAUSED.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((self.work_tree.clone(), resume.clone()));
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
