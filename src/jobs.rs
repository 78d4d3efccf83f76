//! Backups as jobs: `queued` while they wait for the repository, `running` with a
//! progress figure, then `complete` or `failed`.
//!
//! Every backup is recorded as a job in the catalog before it starts, so that
//! `list` and `status` show what is waiting and what is running, and `wait` can
//! follow a backup started with `--no-wait`. The process that runs a job holds an
//! exclusive `flock` on `jobs/<id>.lock` in the repository for as long as it lives;
//! the kernel drops it when the process dies, however it dies. So a job left
//! `queued` or `running` whose lock anyone can take is dead, and the next command
//! that looks marks it `failed` ([`reap`]): the catalog never claims a dead
//! process is still at work.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::activity::{Activity, Outcome};
use crate::catalog::Catalog;
use crate::error::Result;
use crate::id::ObjectId;
use crate::snapshot::{Mode, Trigger};
use crate::store::lock::{LockKind, RepositoryLock};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for the repository, behind another writer.
    Queued,
    /// Capturing data.
    Running,
    /// Its snapshot is published.
    Complete,
    /// It ended without a snapshot; [`Job::error`] says why.
    Failed,
}

impl JobState {
    /// The word stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Complete => "complete",
            JobState::Failed => "failed",
        }
    }

    /// The state a stored word names; anything unknown counts as failed.
    pub fn parse(text: &str) -> Self {
        match text {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "complete" => JobState::Complete,
            _ => JobState::Failed,
        }
    }

    /// Whether the job has ended.
    pub const fn ended(self) -> bool {
        matches!(self, JobState::Complete | JobState::Failed)
    }
}

/// One backup job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id: 64 hex digits, like a snapshot's, and accepted wherever one is.
    pub id: String,
    /// The environment.
    pub env: String,
    /// The environment's commit.
    pub commit: Option<String>,
    /// Why it runs.
    pub trigger: Trigger,
    /// Consistent or live.
    pub mode: Mode,
    /// When it was asked for.
    pub created: DateTime<Utc>,
    /// Where it is.
    pub state: JobState,
    /// 0–100: bytes captured against the size of the environment's last snapshot, or
    /// without one against a count of the mounts' bytes (never 100 before it is
    /// complete).
    pub progress: u8,
    /// Who asked for it: git's `user.email`, else the login name.
    pub user: String,
    /// The machine it was asked for on.
    pub host: String,
    /// When it started running.
    pub started: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished: Option<DateTime<Utc>>,
    /// The snapshot it made.
    pub snapshot: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

impl Job {
    /// A new queued job of `env`, asked for at `created` by `user` on `host`.
    pub fn new(request: JobRequest<'_>, created: DateTime<Utc>) -> Self {
        let JobRequest { env, commit, trigger, mode, user, host } = request;
        let seed = format!(
            "{env}\0{}\0{}\0{:?}",
            created.timestamp_nanos_opt().unwrap_or_default(),
            std::process::id(),
            std::time::SystemTime::now()
        );
        Job {
            id: ObjectId::of(seed.as_bytes()).to_hex(),
            env: env.to_owned(),
            commit,
            trigger,
            mode,
            created,
            state: JobState::Queued,
            progress: 0,
            user: user.to_owned(),
            host: host.to_owned(),
            started: None,
            finished: None,
            snapshot: None,
            error: None,
        }
    }
}

/// What a new job is asked to do, and by whom.
#[derive(Debug, Clone)]
pub struct JobRequest<'a> {
    /// The environment.
    pub env: &'a str,
    /// The environment's commit.
    pub commit: Option<String>,
    /// Why it runs.
    pub trigger: Trigger,
    /// Consistent or live.
    pub mode: Mode,
    /// Who asks.
    pub user: &'a str,
    /// The machine asked on.
    pub host: &'a str,
}

/// The lock file of job `id` in the repository at `root`.
pub fn lock_path(root: &Path, id: &str) -> PathBuf {
    root.join("jobs").join(format!("{id}.lock"))
}

/// Takes the lock that says job `id` is alive, creating `jobs/` if need be. The job
/// is alive while the returned file, or any process it is handed to (as a child's
/// standard input, say), keeps it open: closing it in one process does not unlock it
/// while another holds it.
pub fn hold(root: &Path, id: &str) -> Result<std::fs::File> {
    let path = lock_path(root, id);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|error| crate::Error::io("creating", parent, error))?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|error| crate::Error::io("opening", &path, error))?;
    file.lock().map_err(|error| crate::Error::io("locking", &path, error))?;
    Ok(file)
}

/// What a dead job's error says.
pub const DIED: &str = "the process running it ended before the snapshot was complete (killed, crashed, \
                        or the machine stopped); nothing of it was published: take the snapshot again";

/// Marks `failed` every job left `queued` or `running` whose process is gone, records
/// each in the activity log as the failed backup it was, and removes the lock files of
/// ended jobs. Returns how many it marked.
pub fn reap(root: &Path, catalog: &Catalog) -> Result<usize> {
    let mut reaped = 0;
    for job in catalog.jobs(None)? {
        let path = lock_path(root, &job.id);
        if job.state.ended() {
            let _ = std::fs::remove_file(&path);
            // A failed job's log stays, for whoever looks into why.
            if job.state == JobState::Complete {
                let _ = std::fs::remove_file(path.with_extension("log"));
            }
            continue;
        }
        if alive(root, &job.id)? {
            continue;
        }
        let now = Utc::now();
        if catalog.fail_dead_job(&job.id, now, DIED)? {
            let _ = std::fs::remove_file(&path);
            // The process that died could not say so itself.
            catalog.record(&Activity {
                started: job.created,
                duration_ms: u64::try_from((now - job.created).num_milliseconds()).unwrap_or(0),
                user: job.user.clone(),
                host: job.host.clone(),
                action: "backup".to_owned(),
                env: Some(job.env.clone()),
                snapshots: Vec::new(),
                result: Outcome::Failure,
                detail: Some(DIED.to_owned()),
            })?;
            reaped += 1;
        }
    }
    Ok(reaped)
}

/// Whether the process of job `id` still holds its lock. Taking the lock proves
/// nobody holds it. A job whose file is gone never had a process that took it, or lost
/// it to [`reap`] after it ended.
fn alive(root: &Path, id: &str) -> Result<bool> {
    let path = lock_path(root, id);
    if std::fs::metadata(&path).is_err() {
        return Ok(false);
    }
    Ok(RepositoryLock::acquire_within(&path, LockKind::Exclusive, Duration::ZERO, &mut |_| {})?.is_none())
}

/// Waits until job `id` is first in line: until no job queued before it, of any
/// environment, is still queued or running. Writers take the repository one at a time
/// and the lock wakes its waiters in no particular order, so without this a backup
/// asked for later could go first. Jobs whose process died are reaped as it waits, so
/// a killed job holds up nobody. `waiting` is called once, with the job ahead, if it
/// has to wait.
pub fn wait_for_turn(root: &Path, catalog: &Catalog, id: &str, waiting: &mut dyn FnMut(&Job)) -> Result<()> {
    let mut told = false;
    loop {
        reap(root, catalog)?;
        let Some(ahead) = catalog.job_ahead_of(id)? else { return Ok(()) };
        if !told {
            waiting(&ahead);
            told = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
